//! Client session: every token given with a command comes back exactly once (in a completion,
//! an abandonment or a refusal) across a long mixed scenario with drops and reconnects; and
//! the window survives a reconnect to a server with a smaller Receive Maximum.
//!
//! Statement ids name their version (3.1.1 or 5.0) in each test's first comment line.

mod support;

use std::collections::BTreeMap;

use mqtt_streaming_proto::{ConnAck, Packet, QoS, ReasonCode};
use mqtt_streaming_session::{ClientConfig, ClientEvent, SubscribeRequest, UnsubscribeRequest};
use support::client::*;

/// A scripted server that answers what the client sends, except that it can go silent.
fn answer(sent: &[Packet], version: mqtt_streaming_proto::ProtocolVersion) -> Vec<Packet> {
    let mut out = Vec::new();
    for p in sent {
        match p {
            Packet::Publish(p) => match p.qos_pid {
                mqtt_streaming_proto::QosPid::AtMostOnce => {}
                mqtt_streaming_proto::QosPid::AtLeastOnce(id) => {
                    out.push(Packet::PubAck(mqtt_streaming_proto::PubResponse::new(id)))
                }
                mqtt_streaming_proto::QosPid::ExactlyOnce(id) => {
                    out.push(Packet::PubRec(mqtt_streaming_proto::PubResponse::new(id)))
                }
            },
            Packet::PubRel(r) => out.push(Packet::PubComp(mqtt_streaming_proto::PubResponse::new(
                r.packet_id,
            ))),
            Packet::Subscribe(s) => out.push(suback(
                s.packet_id.get(),
                &vec![ReasonCode::GrantedQoS1; s.subscriptions.len()],
            )),
            Packet::Unsubscribe(u) => out.push(if version.is_v5() {
                unsuback(
                    u.packet_id.get(),
                    &vec![ReasonCode::Success; u.filters.len()],
                )
            } else {
                unsuback(u.packet_id.get(), &[])
            }),
            _ => {}
        }
    }
    out
}

#[test]
fn every_token_comes_back_exactly_once() {
    // The correlation contract on ClientSession: each token of publish/subscribe/unsubscribe
    // comes back once, in Published, Subscribed, Unsubscribed, Abandoned or a Rejected.
    for version in [V3, V5] {
        let config = ClientConfig::default()
            .with_max_inflight(4)
            .with_max_queued(6);
        let mut s: Script<u32> = Script::new(version, config);
        let mut returned: BTreeMap<u32, u32> = BTreeMap::new();
        let mut given = 0u32;
        let mut seed: u32 = 12345;
        let mut rnd = move |n: u32| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) % n
        };
        let count = |events: Vec<ClientEvent<u32>>, returned: &mut BTreeMap<u32, u32>| {
            for e in events {
                let token = match e {
                    ClientEvent::Published { token, .. }
                    | ClientEvent::Subscribed { token, .. }
                    | ClientEvent::Unsubscribed { token, .. }
                    | ClientEvent::Abandoned { token, .. } => token,
                    _ => continue,
                };
                *returned.entry(token).or_default() += 1;
            }
        };
        let mut silent = false;
        for step in 0..600 {
            if s.session.state() == mqtt_streaming_session::ConnectionState::Disconnected
                && step % 7 == 0
            {
                s.connect(resume(version, "c"));
                s.sent();
                let present = rnd(3) != 0;
                s.feed(connack(present && step > 0));
                silent = rnd(4) == 0;
            }
            for _ in 0..rnd(4) {
                given += 1;
                let token = given;
                let refused = match rnd(5) {
                    0 => s
                        .subscribe(
                            SubscribeRequest::new(filter("f/#"), QoS::AtLeastOnce),
                            token,
                        )
                        .err()
                        .map(|r| r.token),
                    1 => s
                        .unsubscribe(UnsubscribeRequest::new(filter("f/#")), token)
                        .err()
                        .map(|r| r.token),
                    n => {
                        let qos =
                            [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][(n - 2) as usize];
                        s.publish(msg("t", qos, "m"), token).err().map(|r| r.token)
                    }
                };
                if let Some(t) = refused {
                    assert_eq!(t, token);
                    *returned.entry(t).or_default() += 1;
                }
            }
            let sent = s.sent();
            if !silent && s.session.state() == mqtt_streaming_session::ConnectionState::Connected {
                for p in answer(&sent, version) {
                    s.feed(p);
                }
                // Answers to the answers (PUBREL -> PUBCOMP), and what the window released.
                for _ in 0..4 {
                    let more = s.sent();
                    for p in answer(&more, version) {
                        s.feed(p);
                    }
                }
            }
            if rnd(25) == 0 {
                s.transport_closed();
            }
            count(s.events(), &mut returned);
        }
        // Wind down: reconnect to a server with no session, answer everything.
        s.transport_closed();
        s.connect(resume(version, "c"));
        s.sent();
        s.feed(connack(false));
        for _ in 0..10 {
            let sent = s.sent();
            for p in answer(&sent, version) {
                s.feed(p);
            }
        }
        count(s.events(), &mut returned);
        assert_eq!(s.session.inflight_len(), 0);
        assert_eq!(s.session.queued_len(), 0);
        assert!(given > 500, "the scenario gave {given} tokens");
        let missing: Vec<_> = (1..=given).filter(|t| !returned.contains_key(t)).collect();
        let twice: Vec<_> = returned.iter().filter(|(_, n)| **n != 1).collect();
        assert!(missing.is_empty(), "never returned: {missing:?}");
        assert!(twice.is_empty(), "returned more than once: {twice:?}");
        assert_eq!(returned.len() as u32, given);
    }
}

#[test]
fn v5_resend_respects_a_smaller_receive_maximum() {
    // [MQTT-3.3.4-7], [MQTT-4.9.0-2] (5.0): the send quota is the new connection's Receive
    // Maximum, re-sent PUBLISHes included; the rest are re-sent as acks free the window, still
    // before anything new and in their original order. Stricter reading: a re-send is a QoS>0
    // PUBLISH and counts against the quota like any other.
    let mut s = connected(V5);
    for t in 1..=5 {
        s.publish(msg("t", QoS::AtLeastOnce, "m"), t).unwrap();
    }
    s.publish(msg("t", QoS::ExactlyOnce, "q2"), 6).unwrap();
    s.feed(pubrec(6));
    s.sent();
    s.transport_closed();
    s.events();
    s.publish(msg("t", QoS::AtLeastOnce, "new"), 7).unwrap();
    s.connect(resume(V5, "c"));
    s.sent();
    let mut ack = ConnAck::new(ReasonCode::Success);
    ack.session_present = true;
    ack.properties.receive_maximum = core::num::NonZeroU16::new(2);
    s.feed(Packet::ConnAck(Box::new(ack)));
    let first = briefs(&s.sent());
    let publishes_out = first.iter().filter(|b| b.starts_with("PUBLISH")).count();
    // Flows awaiting PUBCOMP count against the quota too (section 4.9 of 5.0), so at most one
    // PUBLISH fits next to the PUBREL.
    assert!(
        publishes_out < 2,
        "more unacknowledged QoS>0 PUBLISHes than the server's Receive Maximum: {first:?}"
    );
    assert!(first.contains(&"PUBREL6".to_owned()), "{first:?}");
    assert_eq!(first, ["PUBLISH1 DUP", "PUBREL6"]);
    // Acks release the remaining re-sends in order, then the new publish.
    let mut all = first.clone();
    for id in 1..=5u16 {
        s.feed(puback(id));
        all.extend(briefs(&s.sent()));
    }
    s.feed(pubcomp(6));
    all.extend(briefs(&s.sent()));
    let order: Vec<_> = all
        .iter()
        .filter(|b| b.starts_with("PUBLISH"))
        .cloned()
        .collect();
    assert_eq!(
        order,
        [
            "PUBLISH1 DUP",
            "PUBLISH2 DUP",
            "PUBLISH3 DUP",
            "PUBLISH4 DUP",
            "PUBLISH5 DUP",
            "PUBLISH7"
        ]
    );
}
