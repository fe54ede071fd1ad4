//! Client session: `snapshot()` / `restore()` keep the durable session state (in-flight
//! publishes with payloads, pending PUBRELs, inbound QoS 2 awaiting PUBREL, the id allocator)
//! so a restarted process resumes the session.
//!
//! Statement ids name their version (3.1.1 or 5.0) in each test's first comment line.

mod support;

use mqtt_streaming_proto::{Packet, Publish, QoS, ReasonCode};
use mqtt_streaming_session::{
    AbandonCause, ClientConfig, ClientEvent, ClientSnapshot, OutboundStage,
};
use support::client::*;

/// A session with: QoS 1 id 1 unacked, QoS 2 id 2 awaiting PUBREC, QoS 2 id 3 released
/// (awaiting PUBCOMP), QoS 1 id 4 completed; inbound QoS 2 ids 7 and 9 awaiting PUBREL.
fn busy(version: mqtt_streaming_proto::ProtocolVersion) -> Script<u32> {
    let mut s = connected(version);
    s.publish(msg("a", QoS::AtLeastOnce, "one"), 1).unwrap();
    s.publish(msg("b", QoS::ExactlyOnce, "two"), 2).unwrap();
    s.publish(msg("c", QoS::ExactlyOnce, "three"), 3).unwrap();
    s.publish(msg("d", QoS::AtLeastOnce, "four"), 4).unwrap();
    s.feed(pubrec(3));
    s.feed(puback(4));
    s.feed(server_publish("in", QoS::ExactlyOnce, 9, "x"));
    s.feed(server_publish("in", QoS::ExactlyOnce, 7, "y"));
    s.feed(server_publish("in", QoS::ExactlyOnce, 8, "z"));
    s.feed(pubrel(8));
    s.sent();
    s.events();
    s
}

#[test]
fn snapshot_holds_the_durable_state() {
    // [MQTT-4.1.0-1] (3.1.1): the client's session state is the QoS 1/2 messages sent and not
    // completely acknowledged and the QoS 2 messages received and not completely acknowledged.
    let s = busy(V5);
    let snap = s.session.snapshot();
    let outbound: Vec<_> = snap
        .outbound
        .iter()
        .map(|f| {
            (
                f.publish.qos_pid.packet_id().unwrap().get(),
                f.publish.topic.as_str().to_owned(),
                f.publish.payload.clone(),
                f.stage,
                f.publish.dup,
            )
        })
        .collect();
    assert_eq!(
        outbound,
        [
            (
                1,
                "a".into(),
                "one".into(),
                OutboundStage::AwaitingPubAck,
                false
            ),
            (
                2,
                "b".into(),
                "two".into(),
                OutboundStage::AwaitingPubRec,
                false
            ),
            (
                3,
                "c".into(),
                "three".into(),
                OutboundStage::AwaitingPubComp,
                false
            ),
        ]
    );
    let mut inbound: Vec<_> = snap
        .inbound_awaiting_pubrel
        .iter()
        .map(|id| id.get())
        .collect();
    inbound.sort_unstable();
    assert_eq!(inbound, [7, 9]);
    assert_eq!(snap.next_packet_id.get(), 5);
}

#[test]
fn restored_session_resends_on_connect_with_session_present() {
    // [MQTT-4.4.0-1], [MQTT-3.3.1-1], [MQTT-4.6.0-1] (3.1.1 and 5.0): a restored session
    // re-sends like a live one: DUP PUBLISHes with their ids and PUBRELs, in order.
    for version in [V3, V5] {
        let snap: ClientSnapshot = busy(version).session.snapshot();
        // Plain data: it survives a copy (e.g. through storage).
        let stored = snap.clone();
        let mut given = Vec::new();
        let mut s: Script<u32> =
            Script::restored(version, ClientConfig::default(), stored, |p: &Publish| {
                let token = 100 + u32::from(p.qos_pid.packet_id().unwrap().get());
                given.push(token);
                token
            });
        assert_eq!(given, [101, 102, 103]);
        assert_eq!(
            s.session.snapshot(),
            snap,
            "restore then snapshot is the identity"
        );
        assert_eq!(s.session.inflight_len(), 3);

        s.connect(resume(version, "c"));
        assert_eq!(briefs(&s.sent()), ["CONNECT"]);
        s.feed(connack(true));
        let sent = s.sent();
        assert_eq!(briefs(&sent), ["PUBLISH1 DUP", "PUBLISH2 DUP", "PUBREL3"]);
        let p = publishes(&sent);
        assert_eq!(&p[0].payload[..], b"one");
        assert_eq!(p[1].qos_pid.qos(), QoS::ExactlyOnce);

        // Inbound QoS 2 state survived: a re-sent PUBLISH 9 is not delivered again, and the
        // PUBREL for 7 gets a normal PUBCOMP.
        let mut again = server_publish("in", QoS::ExactlyOnce, 9, "x");
        if let Packet::Publish(p) = &mut again {
            p.dup = true;
        }
        s.feed(again);
        s.feed(pubrel(7));
        let sent = s.sent();
        assert_eq!(briefs(&sent), ["PUBREC9", "PUBCOMP7"]);
        assert!(matches!(&sent[1], Packet::PubComp(r) if r.reason_code == ReasonCode::Success));
        assert!(delivered(&s.events()).is_empty());

        // The id allocator survived: the next publish takes id 5.
        s.publish(msg("e", QoS::AtLeastOnce, "five"), 5).unwrap();
        assert_eq!(briefs(&s.sent()), ["PUBLISH5"]);

        // The restored flows complete with the restored tokens.
        s.feed(puback(1));
        s.feed(pubrec(2));
        assert_eq!(briefs(&s.sent()), ["PUBREL2"]);
        s.feed(pubcomp(2));
        s.feed(pubcomp(3));
        s.feed(puback(5));
        let done: Vec<u32> = published(&s.events()).into_iter().map(|d| d.0).collect();
        assert_eq!(done, [101, 102, 103, 5]);
        assert_eq!(s.session.inflight_len(), 0);
    }
}

#[test]
fn restored_session_without_a_server_session_abandons_with_the_new_tokens() {
    // [MQTT-3.2.2-5] (5.0): the server kept nothing, so the restored flows are abandoned
    // (tokens from restore, messages handed back) and ids start again at 1.
    let snap = busy(V5).session.snapshot();
    let mut s: Script<u32> = Script::restored(V5, ClientConfig::default(), snap, |p: &Publish| {
        u32::from(p.qos_pid.packet_id().unwrap().get()) * 10
    });
    s.connect(resume(V5, "c"));
    s.sent();
    s.feed(connack(false));
    let lost: Vec<_> = s
        .events()
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::Abandoned {
                token,
                cause: AbandonCause::SessionLost,
                message: Some(m),
            } => Some((token, m.topic.as_str().to_owned())),
            _ => None,
        })
        .collect();
    assert_eq!(lost, [(10, "a".into()), (20, "b".into()), (30, "c".into())]);
    s.publish(msg("t", QoS::AtLeastOnce, "m"), 1).unwrap();
    assert_eq!(briefs(&s.sent()), ["PUBLISH1"]);
    // A PUBLISH 9 is now new.
    s.feed(server_publish("in", QoS::ExactlyOnce, 9, "x"));
    assert_eq!(delivered(&s.events()).len(), 1);
}

#[test]
fn snapshot_after_the_id_counter_wrapped() {
    // [MQTT-2.3.1-2] (3.1.1): ids not in use; a restored allocator keeps skipping the ids its
    // restored flows hold, across the wrap from 65,535 to 1.
    let mut s = connected(V3);
    s.publish(msg("t", QoS::AtLeastOnce, "m"), 1).unwrap();
    s.sent();
    let mut snap = s.session.snapshot();
    snap.next_packet_id = pid(65_535);
    let mut s: Script<u32> = Script::restored(V3, ClientConfig::default(), snap, |_| 1);
    s.connect(resume(V3, "c"));
    s.sent();
    s.feed(connack(true));
    assert_eq!(briefs(&s.sent()), ["PUBLISH1 DUP"]);
    s.publish(msg("t", QoS::AtLeastOnce, "m"), 2).unwrap();
    s.publish(msg("t", QoS::AtLeastOnce, "m"), 3).unwrap();
    assert_eq!(briefs(&s.sent()), ["PUBLISH65535", "PUBLISH2"]);
}
