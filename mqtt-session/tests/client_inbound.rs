//! Client session: inbound QoS 0, 1 and 2, automatic and manual acknowledgements, QoS 2
//! exactly-once, our Receive Maximum and inbound topic aliases.
//!
//! Statement ids name their version (3.1.1 or 5.0) in each test's first comment line.

mod support;

use core::num::NonZeroU16;

use bytes::Bytes;
use mqtt_streaming_proto::{Packet, Publish, QoS, QosPid, ReasonCode};
use mqtt_streaming_session::{AckMode, ClientConfig, CloseReason, CommandError, ProtocolViolation};
use support::client::*;

fn manual() -> ClientConfig {
    ClientConfig::default().with_ack_mode(AckMode::Manual)
}

fn dup(packet: Packet) -> Packet {
    match packet {
        Packet::Publish(mut p) => {
            p.dup = true;
            Packet::Publish(p)
        }
        other => other,
    }
}

#[test]
fn inbound_qos0_is_delivered_and_not_acknowledged() {
    // [MQTT-3.3.4-1] (3.1.1 and 5.0): QoS 0 expects no response.
    for version in [V3, V5] {
        let mut s = connected(version);
        s.feed(server_publish("a/b", QoS::AtMostOnce, 1, "zero"));
        let d = delivered(&s.events());
        assert_eq!(d, [("a/b".to_owned(), Bytes::from_static(b"zero"), None)]);
        assert!(s.sent().is_empty());
    }
}

#[test]
fn inbound_qos1_is_delivered_and_acked_automatically() {
    // [MQTT-4.3.2-2] (3.1.1); [MQTT-4.3.2-4] (5.0): PUBACK with the PUBLISH's packet id;
    // [MQTT-4.5.0-2]: every PUBLISH is acknowledged.
    for version in [V3, V5] {
        let mut s = connected(version);
        s.feed(server_publish("t", QoS::AtLeastOnce, 42, "one"));
        assert_eq!(delivered(&s.events()).len(), 1);
        let sent = s.sent();
        assert_eq!(briefs(&sent), ["PUBACK42"]);
        let Packet::PubAck(r) = &sent[0] else {
            unreachable!()
        };
        assert_eq!(r.reason_code, ReasonCode::Success);
    }
}

#[test]
fn inbound_qos1_with_a_used_id_is_a_new_message() {
    // [MQTT-4.3.2-2] (3.1.1); [MQTT-4.3.2-5] (5.0): after PUBACK, a PUBLISH with the same id
    // is new whatever its DUP flag says: delivered again, acked again.
    for version in [V3, V5] {
        let mut s = connected(version);
        s.feed(server_publish("t", QoS::AtLeastOnce, 7, "a"));
        s.feed(dup(server_publish("t", QoS::AtLeastOnce, 7, "a")));
        s.feed(server_publish("t", QoS::AtLeastOnce, 7, "b"));
        assert_eq!(delivered(&s.events()).len(), 3);
        assert_eq!(briefs(&s.sent()), ["PUBACK7", "PUBACK7", "PUBACK7"]);
    }
}

#[test]
fn inbound_qos2_is_delivered_exactly_once() {
    // [MQTT-4.3.3-2] (3.1.1); [MQTT-4.3.3-8], [MQTT-4.3.3-10], [MQTT-4.3.3-11],
    // [MQTT-4.3.3-12] (5.0): PUBREC; a DUP re-send before PUBREL is answered with PUBREC again
    // and not delivered; PUBREL gets PUBCOMP; afterwards the id starts a new message.
    for version in [V3, V5] {
        let mut s = connected(version);
        s.feed(server_publish("t", QoS::ExactlyOnce, 9, "once"));
        assert_eq!(delivered(&s.events()).len(), 1);
        assert_eq!(briefs(&s.sent()), ["PUBREC9"]);

        s.feed(dup(server_publish("t", QoS::ExactlyOnce, 9, "once")));
        s.feed(dup(server_publish("t", QoS::ExactlyOnce, 9, "once")));
        assert!(s.events().is_empty(), "a re-send is not delivered again");
        assert_eq!(briefs(&s.sent()), ["PUBREC9", "PUBREC9"]);

        s.feed(pubrel(9));
        let sent = s.sent();
        assert_eq!(briefs(&sent), ["PUBCOMP9"]);
        let Packet::PubComp(r) = &sent[0] else {
            unreachable!()
        };
        assert_eq!(r.reason_code, ReasonCode::Success);
        assert!(s.events().is_empty());

        s.feed(server_publish("t", QoS::ExactlyOnce, 9, "again"));
        let d = delivered(&s.events());
        assert_eq!(d.len(), 1);
        assert_eq!(&d[0].1[..], b"again");
        assert_eq!(briefs(&s.sent()), ["PUBREC9"]);
    }
}

#[test]
fn v5_pubrel_for_an_unknown_id_gets_pubcomp_0x92() {
    // [MQTT-4.3.3-11] (5.0): every PUBREL is answered with PUBCOMP; for an id nothing awaits,
    // with Packet Identifier not found.
    let mut s = connected(V5);
    s.feed(pubrel(5));
    let sent = s.sent();
    let [Packet::PubComp(r)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(r.packet_id, pid(5));
    assert_eq!(r.reason_code, ReasonCode::PacketIdentifierNotFound);
    assert!(s.events().is_empty());
}

#[test]
fn manual_acks_in_any_order_leave_in_arrival_order() {
    // [MQTT-4.6.0-2], [MQTT-4.6.0-3] (3.1.1 and 5.0): PUBACKs and PUBRECs in the order the
    // PUBLISHes arrived, whatever order the application acknowledges them in.
    for version in [V3, V5] {
        let mut s: Script<u32> = connected_with(
            version,
            manual(),
            mqtt_streaming_proto::ConnAck::new(ReasonCode::Success),
        );
        let arrivals = [
            (QoS::AtLeastOnce, 1),
            (QoS::ExactlyOnce, 2),
            (QoS::AtLeastOnce, 3),
            (QoS::ExactlyOnce, 4),
            (QoS::AtLeastOnce, 5),
        ];
        for (qos, id) in arrivals {
            s.feed(server_publish("t", qos, id, "m"));
        }
        let ids: Vec<_> = delivered(&s.events())
            .into_iter()
            .map(|(_, _, ack)| ack.expect("manual mode hands out an ack id"))
            .collect();
        assert_eq!(
            ids.iter().map(|i| i.packet_id().get()).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert!(
            s.sent().is_empty(),
            "nothing is acked before the application acks"
        );

        s.ack(ids[4], ReasonCode::Success).unwrap();
        s.ack(ids[2], ReasonCode::Success).unwrap();
        assert!(s.sent().is_empty(), "5 and 3 wait for 1");
        s.ack(ids[0], ReasonCode::Success).unwrap();
        assert_eq!(briefs(&s.sent()), ["PUBACK1"], "3 waits for 2");
        s.ack(ids[1], ReasonCode::Success).unwrap();
        assert_eq!(briefs(&s.sent()), ["PUBREC2", "PUBACK3"]);
        s.ack(ids[3], ReasonCode::Success).unwrap();
        assert_eq!(briefs(&s.sent()), ["PUBREC4", "PUBACK5"]);
        assert!(s.events().is_empty());
    }
}

#[test]
fn double_ack_is_refused() {
    // Alpakka "double ack": a second ack of the same message is an UnknownAck error and sends
    // nothing.
    let mut s: Script<u32> = connected_with(
        V3,
        manual(),
        mqtt_streaming_proto::ConnAck::new(ReasonCode::Success),
    );
    s.feed(server_publish("t", QoS::AtLeastOnce, 1, "m"));
    let id = delivered(&s.events())[0].2.unwrap();
    s.ack(id, ReasonCode::Success).unwrap();
    assert_eq!(briefs(&s.sent()), ["PUBACK1"]);
    assert_eq!(
        s.ack(id, ReasonCode::Success),
        Err(CommandError::UnknownAck)
    );
    s.assert_quiet();

    // Also while the first ack is still held back behind an earlier message.
    s.feed(server_publish("t", QoS::AtLeastOnce, 2, "m"));
    s.feed(server_publish("t", QoS::AtLeastOnce, 3, "m"));
    let ids: Vec<_> = delivered(&s.events())
        .into_iter()
        .map(|d| d.2.unwrap())
        .collect();
    s.ack(ids[1], ReasonCode::Success).unwrap();
    assert_eq!(
        s.ack(ids[1], ReasonCode::Success),
        Err(CommandError::UnknownAck)
    );
    s.ack(ids[0], ReasonCode::Success).unwrap();
    assert_eq!(briefs(&s.sent()), ["PUBACK2", "PUBACK3"]);
}

#[test]
fn v5_manual_ack_with_an_error_code() {
    // [MQTT-3.4.2-1], [MQTT-3.5.2-1] (5.0): the application's PUBACK/PUBREC code is sent;
    // [MQTT-4.3.3-9] (5.0): after a PUBREC of 0x80 or more the id starts a new message.
    let mut s: Script<u32> = connected_with(
        V5,
        manual(),
        mqtt_streaming_proto::ConnAck::new(ReasonCode::Success),
    );
    s.feed(server_publish("t", QoS::AtLeastOnce, 1, "m"));
    s.feed(server_publish("t", QoS::ExactlyOnce, 2, "m"));
    let ids: Vec<_> = delivered(&s.events())
        .into_iter()
        .map(|d| d.2.unwrap())
        .collect();
    s.ack(ids[0], ReasonCode::NotAuthorized).unwrap();
    s.ack(ids[1], ReasonCode::QuotaExceeded).unwrap();
    let sent = s.sent();
    match &sent[..] {
        [Packet::PubAck(a), Packet::PubRec(b)] => {
            assert_eq!(a.reason_code, ReasonCode::NotAuthorized);
            assert_eq!(b.reason_code, ReasonCode::QuotaExceeded);
        }
        other => panic!("{other:?}"),
    }
    // Id 2 is free again: the same id is a new message, delivered, and a PUBREL for the old
    // one is unknown.
    s.feed(server_publish("t", QoS::ExactlyOnce, 2, "new"));
    assert_eq!(delivered(&s.events()).len(), 1);

    // A code PUBACK/PUBREC cannot carry is refused.
    s.feed(server_publish("t", QoS::AtLeastOnce, 3, "m"));
    let id = delivered(&s.events())[0].2.unwrap();
    assert!(matches!(
        s.ack(id, ReasonCode::ServerBusy),
        Err(CommandError::ReasonCodeNotAllowed {
            code: ReasonCode::ServerBusy,
            ..
        })
    ));
}

#[test]
fn v311_manual_ack_accepts_only_success() {
    // 3.1.1 PUBACK and PUBREC carry no reason code, so an error verdict cannot be sent.
    let mut s: Script<u32> = connected_with(
        V3,
        manual(),
        mqtt_streaming_proto::ConnAck::new(ReasonCode::Success),
    );
    s.feed(server_publish("t", QoS::AtLeastOnce, 1, "m"));
    let id = delivered(&s.events())[0].2.unwrap();
    assert!(matches!(
        s.ack(id, ReasonCode::NotAuthorized),
        Err(CommandError::ReasonCodeNotAllowed {
            code: ReasonCode::NotAuthorized,
            ..
        })
    ));
    s.ack(id, ReasonCode::Success).unwrap();
    assert_eq!(briefs(&s.sent()), ["PUBACK1"]);
}

#[test]
fn manual_qos2_resend_before_ack_is_not_delivered_again() {
    // [MQTT-4.3.3-10] (5.0) / [MQTT-4.3.3-2] (3.1.1): no duplicate delivery onwards; the
    // PUBREC goes out once, when the application acks.
    let mut s: Script<u32> = connected_with(
        V5,
        manual(),
        mqtt_streaming_proto::ConnAck::new(ReasonCode::Success),
    );
    s.feed(server_publish("t", QoS::ExactlyOnce, 4, "m"));
    let id = delivered(&s.events())[0].2.unwrap();
    s.feed(dup(server_publish("t", QoS::ExactlyOnce, 4, "m")));
    s.assert_quiet();
    s.ack(id, ReasonCode::Success).unwrap();
    assert_eq!(briefs(&s.sent()), ["PUBREC4"]);
    s.feed(dup(server_publish("t", QoS::ExactlyOnce, 4, "m")));
    assert_eq!(briefs(&s.sent()), ["PUBREC4"]);
    assert!(s.events().is_empty());
    s.feed(pubrel(4));
    assert_eq!(briefs(&s.sent()), ["PUBCOMP4"]);
}

#[test]
fn v5_pubrel_before_the_application_acked_is_a_protocol_error() {
    // [MQTT-4.3.3-4] (5.0, the sender's side): PUBREL only answers a PUBREC; one for a message
    // whose PUBREC was never sent is a protocol error.
    let mut s: Script<u32> = connected_with(
        V5,
        manual(),
        mqtt_streaming_proto::ConnAck::new(ReasonCode::Success),
    );
    s.feed(server_publish("t", QoS::ExactlyOnce, 4, "m"));
    s.events();
    s.feed(pubrel(4));
    assert_violation(
        &mut s,
        ReasonCode::ProtocolError,
        CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedAck(
            mqtt_streaming_proto::PacketType::PubRel,
            pid(4),
        )),
    );
}

#[test]
fn v5_inbound_receive_maximum_exceeded_disconnects_with_0x93() {
    // [MQTT-3.3.4-9] (5.0): the server may not exceed our Receive Maximum; QoS 2 messages
    // awaiting PUBREL count until PUBCOMP.
    let config = ClientConfig::default().with_receive_maximum(2);
    let mut s: Script<u32> = connected_with(
        V5,
        config,
        mqtt_streaming_proto::ConnAck::new(ReasonCode::Success),
    );
    s.feed(server_publish("t", QoS::ExactlyOnce, 1, "m"));
    // A QoS 1 message counts until its PUBACK (sent at once here).
    s.feed(server_publish("t", QoS::AtLeastOnce, 3, "m"));
    s.feed(server_publish("t", QoS::ExactlyOnce, 2, "m"));
    // QoS 0 never counts.
    s.feed(server_publish("t", QoS::AtMostOnce, 1, "m"));
    // PUBCOMP for id 1 frees a slot.
    s.feed(pubrel(1));
    s.feed(server_publish("t", QoS::ExactlyOnce, 5, "m"));
    assert_eq!(delivered(&s.events()).len(), 5);
    assert_eq!(
        briefs(&s.sent()),
        ["PUBREC1", "PUBACK3", "PUBREC2", "PUBCOMP1", "PUBREC5"]
    );
    // Two QoS 2 messages await PUBREL: a third QoS 1 or 2 PUBLISH exceeds the maximum.
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut s = two_awaiting_pubrel();
        s.feed(server_publish("t", qos, 6, "m"));
        assert_violation(
            &mut s,
            ReasonCode::ReceiveMaximumExceeded,
            CloseReason::ProtocolViolation(ProtocolViolation::ReceiveMaximumExceeded),
        );
    }
    s.feed(server_publish("t", QoS::ExactlyOnce, 6, "m"));
    assert_violation(
        &mut s,
        ReasonCode::ReceiveMaximumExceeded,
        CloseReason::ProtocolViolation(ProtocolViolation::ReceiveMaximumExceeded),
    );
}

/// A session with Receive Maximum 2 and two QoS 2 messages awaiting PUBREL.
fn two_awaiting_pubrel() -> Script<u32> {
    let config = ClientConfig::default().with_receive_maximum(2);
    let mut s: Script<u32> = connected_with(
        V5,
        config,
        mqtt_streaming_proto::ConnAck::new(ReasonCode::Success),
    );
    s.feed(server_publish("t", QoS::ExactlyOnce, 1, "m"));
    s.feed(server_publish("t", QoS::ExactlyOnce, 2, "m"));
    assert_eq!(briefs(&s.sent()), ["PUBREC1", "PUBREC2"]);
    s.events();
    s
}

#[test]
fn v311_inbound_bound_is_enforced_by_closing() {
    // 3.1.1 cannot announce a Receive Maximum; the bound still holds (memory stays bounded),
    // enforced by closing without a DISCONNECT.
    let config = ClientConfig::default().with_receive_maximum(1);
    let mut s: Script<u32> = connected_with(
        V3,
        config,
        mqtt_streaming_proto::ConnAck::new(ReasonCode::Success),
    );
    s.feed(server_publish("t", QoS::ExactlyOnce, 1, "m"));
    s.sent();
    s.events();
    s.feed(server_publish("t", QoS::ExactlyOnce, 2, "m"));
    assert!(s.sent().is_empty());
    assert_closed(
        &s.events(),
        mqtt_streaming_session::Initiator::Session,
        CloseReason::ProtocolViolation(ProtocolViolation::ReceiveMaximumExceeded),
    );
}

fn aliased(topic_name: &str, alias: u16, qos: QoS, id: u16) -> Packet {
    let mut p = Publish::new(
        if topic_name.is_empty() {
            mqtt_streaming_proto::TopicName::empty()
        } else {
            topic(topic_name)
        },
        QosPid::new(qos, pid(id)),
        Bytes::from_static(b"p"),
    );
    p.properties.topic_alias = NonZeroU16::new(alias);
    Packet::Publish(p)
}

#[test]
fn v5_inbound_topic_aliases_are_resolved() {
    // [MQTT-3.3.2-10] (5.0): the client accepts every alias from 1 to its Topic Alias Maximum;
    // an empty topic with a known alias is delivered under the mapped topic, and a new topic
    // for an alias replaces the mapping.
    let config = ClientConfig::default().with_topic_alias_maximum(3);
    let mut s: Script<u32> = connected_with(
        V5,
        config,
        mqtt_streaming_proto::ConnAck::new(ReasonCode::Success),
    );
    s.feed(aliased("a/1", 1, QoS::AtMostOnce, 1));
    s.feed(aliased("a/3", 3, QoS::AtLeastOnce, 1));
    s.feed(aliased("", 1, QoS::AtMostOnce, 1));
    s.feed(aliased("", 3, QoS::ExactlyOnce, 2));
    s.feed(aliased("b/1", 1, QoS::AtMostOnce, 1));
    s.feed(aliased("", 1, QoS::AtMostOnce, 1));
    let topics: Vec<_> = delivered(&s.events()).into_iter().map(|d| d.0).collect();
    assert_eq!(topics, ["a/1", "a/3", "a/1", "a/3", "b/1", "b/1"]);
    assert_eq!(briefs(&s.sent()), ["PUBACK1", "PUBREC2"]);
}

#[test]
fn v5_inbound_topic_alias_above_our_maximum_disconnects_with_0x94() {
    // [MQTT-3.1.2-26], [MQTT-3.1.2-27] (5.0): the server may not exceed our Topic Alias
    // Maximum, nor send any alias when it is 0; the client answers with DISCONNECT 0x94.
    for (max, alias) in [(3u16, 4u16), (0, 1)] {
        let config = ClientConfig::default().with_topic_alias_maximum(max);
        let mut s: Script<u32> = connected_with(
            V5,
            config,
            mqtt_streaming_proto::ConnAck::new(ReasonCode::Success),
        );
        s.feed(aliased("t", alias, QoS::AtMostOnce, 1));
        assert_violation(
            &mut s,
            ReasonCode::TopicAliasInvalid,
            CloseReason::ProtocolViolation(ProtocolViolation::TopicAliasInvalid),
        );
    }
}

#[test]
fn v5_inbound_unknown_topic_alias_is_a_protocol_error() {
    // [MQTT-3.3.2-7] (5.0): aliases do not outlive their connection; an empty topic with an
    // alias never mapped (on this connection) is a protocol error, 0x82.
    let mut s = connected(V5);
    s.feed(aliased("", 2, QoS::AtMostOnce, 1));
    assert_violation(
        &mut s,
        ReasonCode::ProtocolError,
        CloseReason::ProtocolViolation(ProtocolViolation::UnknownTopicAlias),
    );

    // Mapped on one connection, used on the next: refused the same way.
    let mut s = connected(V5);
    s.feed(aliased("a", 2, QoS::AtMostOnce, 1));
    assert_eq!(delivered(&s.events()).len(), 1);
    s.transport_closed();
    s.events();
    s.connect(connect(V5, "c"));
    s.sent();
    s.feed(connack(false));
    s.events();
    s.feed(aliased("", 2, QoS::AtMostOnce, 1));
    assert_violation(
        &mut s,
        ReasonCode::ProtocolError,
        CloseReason::ProtocolViolation(ProtocolViolation::UnknownTopicAlias),
    );
}
