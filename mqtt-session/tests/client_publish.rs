//! Client session: outbound QoS 0, 1 and 2 flows, their completion events, wrong
//! acknowledgements, packet identifiers and the bounded queue.
//!
//! Statement ids name their version (3.1.1 or 5.0) in each test's first comment line.

mod support;

use std::collections::BTreeSet;

use mqtt_streaming_proto::{
    AckProperties, MqttString, Packet, PacketType, PubResponse, QoS, ReasonCode, UserProperty,
};
use mqtt_streaming_session::{
    ClientConfig, ClientEvent, CloseReason, CommandError, ConnectionState, Initiator,
    ProtocolViolation,
};
use support::client::*;

#[test]
fn qos0_publish_completes_once_handed_to_the_transport() {
    // [MQTT-4.3.1-1] (3.1.1 and 5.0): QoS 0 goes out with QoS 0 and DUP 0; [MQTT-3.3.1-2]
    // (5.0): never DUP. Its token comes back at once with Success.
    for version in [V3, V5] {
        let mut s = connected(version);
        s.publish(msg("a/b", QoS::AtMostOnce, "hi").retained(), 10)
            .unwrap();
        let sent = s.sent();
        let p = publishes(&sent);
        assert_eq!(p.len(), 1);
        assert!(!p[0].dup);
        assert!(p[0].retain);
        assert_eq!(p[0].qos_pid.qos(), QoS::AtMostOnce);
        assert_eq!(p[0].topic.as_str(), "a/b");
        assert_eq!(&p[0].payload[..], b"hi");
        assert_eq!(published(&s.events()), [(10, ReasonCode::Success)]);
        assert_eq!(s.session.inflight_len(), 0);
    }
}

#[test]
fn qos1_publish_completes_on_puback_only() {
    // [MQTT-4.3.2-1] (3.1.1); [MQTT-4.3.2-1], [MQTT-4.3.2-2], [MQTT-4.3.2-3] (5.0): a fresh
    // packet id, QoS 1, DUP 0, unacknowledged until the PUBACK with that id.
    for version in [V3, V5] {
        let mut s = connected(version);
        s.publish(msg("t", QoS::AtLeastOnce, "one"), 11).unwrap();
        let sent = s.sent();
        let p = publishes(&sent);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].qos_pid.qos(), QoS::AtLeastOnce);
        assert!(!p[0].dup);
        let id = id_of(p[0]);
        assert!(s.events().is_empty(), "no completion before PUBACK");
        assert_eq!(s.session.inflight_len(), 1);
        s.feed(puback(id));
        assert_eq!(published(&s.events()), [(11, ReasonCode::Success)]);
        assert_eq!(s.session.inflight_len(), 0);
        assert!(s.sent().is_empty(), "nothing answers a PUBACK");
    }
}

#[test]
fn v5_puback_reason_code_and_properties_reach_the_completion() {
    // [MQTT-3.4.2-1] (5.0): the PUBACK's reason code (success or error) and its properties
    // come back with the token.
    let mut s = connected(V5);
    s.publish(msg("t", QoS::AtLeastOnce, "a"), 1).unwrap();
    s.publish(msg("t", QoS::AtLeastOnce, "b"), 2).unwrap();
    s.sent();
    let props = AckProperties {
        reason_string: Some(MqttString::new("nobody listens").unwrap()),
        user_properties: vec![UserProperty::new("x", "y").unwrap()],
    };
    s.feed(Packet::PubAck(PubResponse {
        reason_code: ReasonCode::NoMatchingSubscribers,
        properties: props.clone(),
        ..PubResponse::new(pid(1))
    }));
    s.feed(Packet::PubAck(response(2, ReasonCode::NotAuthorized)));
    let events = s.events();
    match &events[..] {
        [ClientEvent::Published {
            token: 1,
            reason_code: ReasonCode::NoMatchingSubscribers,
            properties,
        }, ClientEvent::Published {
            token: 2,
            reason_code: ReasonCode::NotAuthorized,
            ..
        }] => assert_eq!(*properties, props),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.session.state(), ConnectionState::Connected);
}

#[test]
fn qos2_publish_runs_pubrec_pubrel_pubcomp() {
    // [MQTT-4.3.3-1] (3.1.1); [MQTT-4.3.3-2], [MQTT-4.3.3-3], [MQTT-4.3.3-4], [MQTT-4.3.3-5]
    // (5.0): QoS 2 DUP 0, PUBREL with the same id after PUBREC, done only at PUBCOMP.
    for version in [V3, V5] {
        let mut s = connected(version);
        s.publish(msg("t", QoS::ExactlyOnce, "two"), 12).unwrap();
        let sent = s.sent();
        let p = publishes(&sent);
        assert_eq!(p[0].qos_pid.qos(), QoS::ExactlyOnce);
        assert!(!p[0].dup);
        let id = id_of(p[0]);
        s.feed(pubrec(id));
        assert_eq!(briefs(&s.sent()), [format!("PUBREL{id}")]);
        assert!(s.events().is_empty(), "not complete at PUBREC");
        assert_eq!(s.session.inflight_len(), 1);
        s.feed(pubcomp(id));
        assert_eq!(published(&s.events()), [(12, ReasonCode::Success)]);
        assert_eq!(s.session.inflight_len(), 0);
        assert!(s.sent().is_empty());
    }
}

#[test]
fn v5_pubrec_with_error_code_ends_the_qos2_flow() {
    // [MQTT-4.3.3-4] (5.0): PUBREL only after a PUBREC below 0x80; [MQTT-4.4.0-2] (5.0): an
    // error PUBREC counts as acknowledged and the PUBLISH is never retransmitted.
    let mut s = connected(V5);
    s.publish(msg("t", QoS::ExactlyOnce, "x"), 5).unwrap();
    s.publish(msg("t", QoS::ExactlyOnce, "y"), 6).unwrap();
    s.sent();
    s.feed(Packet::PubRec(response(1, ReasonCode::QuotaExceeded)));
    assert!(s.sent().is_empty(), "no PUBREL after an error PUBREC");
    assert_eq!(published(&s.events()), [(5, ReasonCode::QuotaExceeded)]);
    assert_eq!(s.session.inflight_len(), 1);

    // On a resumed session only the other flow is re-sent.
    s.transport_closed();
    s.events();
    s.connect(resume(V5, "c"));
    s.sent();
    s.feed(connack(true));
    let sent = s.sent();
    assert_eq!(briefs(&sent), ["PUBLISH2 DUP"]);
}

#[test]
fn v5_pubrec_for_a_qos1_publish_is_a_protocol_error() {
    // [MQTT-4.13.1-1] (5.0): a PUBREC for a QoS 1 flow is a protocol error: DISCONNECT 0x82 and one Closed.
    let mut s = connected(V5);
    s.publish(msg("t", QoS::AtLeastOnce, "x"), 1).unwrap();
    s.sent();
    s.feed(pubrec(1));
    assert_violation(
        &mut s,
        ReasonCode::ProtocolError,
        CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedAck(
            PacketType::PubRec,
            pid(1),
        )),
    );
    // The flow is still owed: it is not completed by the wrong ack.
    assert_eq!(s.session.inflight_len(), 1);
}

#[test]
fn v5_puback_for_a_qos2_publish_is_a_protocol_error() {
    // [MQTT-4.13.1-1] (5.0): a PUBACK for a QoS 2 flow is a protocol error (DISCONNECT 0x82).
    let mut s = connected(V5);
    s.publish(msg("t", QoS::ExactlyOnce, "x"), 1).unwrap();
    s.sent();
    s.feed(puback(1));
    assert_violation(
        &mut s,
        ReasonCode::ProtocolError,
        CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedAck(
            PacketType::PubAck,
            pid(1),
        )),
    );
    assert_eq!(s.session.inflight_len(), 1);
}

#[test]
fn v311_wrong_ack_kind_closes_without_disconnect() {
    // [MQTT-4.8.0-1] (3.1.1): a protocol violation closes the connection (no DISCONNECT from a
    // 3.1.1 client to explain it).
    let mut s = connected(V3);
    s.publish(msg("t", QoS::AtLeastOnce, "x"), 1).unwrap();
    s.sent();
    s.feed(pubrec(1));
    assert!(s.sent().is_empty());
    assert_closed(
        &s.events(),
        Initiator::Session,
        CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedAck(
            PacketType::PubRec,
            pid(1),
        )),
    );
}

#[test]
fn v5_pubcomp_before_pubrec_is_a_protocol_error() {
    // [MQTT-4.13.1-1] (5.0): a PUBCOMP for a flow still waiting for its PUBREC is a protocol
    // error.
    let mut s = connected(V5);
    s.publish(msg("t", QoS::ExactlyOnce, "x"), 1).unwrap();
    s.sent();
    s.feed(pubcomp(1));
    assert_violation(
        &mut s,
        ReasonCode::ProtocolError,
        CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedAck(
            PacketType::PubComp,
            pid(1),
        )),
    );
}

#[test]
fn acks_for_unknown_ids_are_tolerated_packet_identifier_not_found() {
    // Issue 10 item 6; 5.0 section 3.6.2.1 (0x92 Packet Identifier not found: "not an error
    // during recovery", a session-state mismatch otherwise); 3.1.1 has no rule on them. A
    // PUBACK or PUBCOMP for nothing outstanding is ignored (they used to close the
    // connection); a PUBREC for nothing outstanding gets a PUBREL (0x92 in 5.0) so the server
    // frees the identifier ([MQTT-4.3.3-10] in 5.0 / [MQTT-4.3.3-2] in 3.1.1: it would take
    // our next QoS 2 PUBLISH with it for a duplicate); one with an error code gets nothing.
    for version in [V5, V3] {
        let mut s = connected(version);
        s.publish(msg("t", QoS::ExactlyOnce, "x"), 1).unwrap();
        s.sent();
        s.feed(puback(9));
        s.feed(pubcomp(9));
        s.feed(pubrec(9));
        match &s.sent()[..] {
            [Packet::PubRel(r)] => {
                assert_eq!(r.packet_id, pid(9));
                let code = if version == V5 {
                    ReasonCode::PacketIdentifierNotFound
                } else {
                    ReasonCode::Success
                };
                assert_eq!(r.reason_code, code);
            }
            other => panic!("{version:?}: {other:?}"),
        }
        if version == V5 {
            s.feed(Packet::PubRec(mqtt_streaming_proto::PubResponse {
                reason_code: ReasonCode::UnspecifiedError,
                ..mqtt_streaming_proto::PubResponse::new(pid(9))
            }));
            assert!(s.sent().is_empty());
        }
        assert!(s.events().is_empty(), "{version:?}");
        assert_eq!(
            s.session.state(),
            mqtt_streaming_session::ConnectionState::Connected
        );
        // The real flow is untouched and completes.
        assert_eq!(s.session.inflight_len(), 1);
        s.feed(pubrec(1));
        s.feed(pubcomp(1));
        assert_eq!(s.session.inflight_len(), 0);
    }
}

#[test]
fn pubrels_leave_in_the_order_their_pubrecs_arrived() {
    // [MQTT-4.6.0-4] (3.1.1 and 5.0): PUBRELs in PUBREC order, not publish order.
    let mut s = connected(V5);
    for t in 1..=3 {
        s.publish(msg("t", QoS::ExactlyOnce, "x"), t).unwrap();
    }
    s.sent();
    s.feed(pubrec(3));
    s.feed(pubrec(1));
    s.feed(pubrec(2));
    assert_eq!(briefs(&s.sent()), ["PUBREL3", "PUBREL1", "PUBREL2"]);
    s.feed(pubcomp(1));
    s.feed(pubcomp(3));
    s.feed(pubcomp(2));
    assert_eq!(
        published(&s.events()),
        [
            (1, ReasonCode::Success),
            (3, ReasonCode::Success),
            (2, ReasonCode::Success)
        ]
    );
}

#[test]
fn every_packet_id_is_usable_and_none_is_reused_in_flight() {
    // [MQTT-2.3.1-2], [MQTT-2.3.1-3] (3.1.1); [MQTT-2.2.1-3], [MQTT-4.3.2-1] (5.0): all 65,535 ids are used, distinct while in flight; the next publish waits, and goes out
    // with the id freed by a PUBACK.
    let config = ClientConfig::default()
        .with_max_inflight(u16::MAX)
        .with_max_queued(10);
    let mut s: Script<u32> = connected_with(
        V3,
        config,
        mqtt_streaming_proto::ConnAck::new(ReasonCode::Success),
    );
    let mut ids = BTreeSet::new();
    for token in 0..u32::from(u16::MAX) {
        s.session
            .publish(s.now, msg("t", QoS::AtLeastOnce, "p"), token)
            .unwrap();
        if token % 4096 == 4095 {
            s.drain();
            for p in s.sent() {
                let Packet::Publish(p) = p else { panic!() };
                assert!(ids.insert(id_of(&p)), "id {} reused", id_of(&p));
            }
        }
    }
    s.drain();
    for p in s.sent() {
        let Packet::Publish(p) = p else { panic!() };
        assert!(ids.insert(id_of(&p)), "id {} reused", id_of(&p));
    }
    assert_eq!(ids.len(), 65_535);
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.last(), Some(&65_535));
    assert_eq!(s.session.inflight_len(), 65_535);
    assert!(s.events().is_empty());

    // The 65,536th waits.
    s.publish(msg("t", QoS::AtLeastOnce, "late"), 99_999)
        .unwrap();
    assert!(s.sent().is_empty());
    assert_eq!(s.session.queued_len(), 1);

    // A PUBACK frees id 777 (token 776): the waiting publish goes out with it.
    s.feed(puback(777));
    assert_eq!(published(&s.events()), [(776, ReasonCode::Success)]);
    let sent = s.sent();
    let p = publishes(&sent);
    assert_eq!(p.len(), 1);
    assert_eq!(id_of(p[0]), 777);
    assert_eq!(&p[0].payload[..], b"late");
    assert_eq!(s.session.queued_len(), 0);

    // Acknowledging the re-used id completes the new publish, not the old one.
    s.feed(puback(777));
    assert_eq!(published(&s.events()), [(99_999, ReasonCode::Success)]);
}

#[test]
fn ids_are_not_reused_while_a_subscribe_holds_one() {
    // [MQTT-2.3.1-2] (3.1.1) / [MQTT-2.2.1-3] (5.0): an id not currently in use; a SUBSCRIBE
    // waiting for its SUBACK keeps its id out of the publishes' reach.
    let mut s = connected(V5);
    s.subscribe(
        mqtt_streaming_session::SubscribeRequest::new(filter("f"), QoS::AtLeastOnce),
        100,
    )
    .unwrap();
    assert_eq!(briefs(&s.sent()), ["SUBSCRIBE1"]);
    for t in 0..3 {
        s.publish(msg("t", QoS::AtLeastOnce, "x"), t).unwrap();
    }
    assert_eq!(briefs(&s.sent()), ["PUBLISH2", "PUBLISH3", "PUBLISH4"]);
}

#[test]
fn full_queue_hands_the_message_and_token_back() {
    // The bounded FIFO: beyond `max_queued`, `publish` refuses with QueueFull and returns the
    // message and the token unchanged.
    let config = ClientConfig::default().with_max_queued(2);
    let mut s: Script<u32> = Script::new(V5, config);
    s.publish(msg("t", QoS::AtLeastOnce, "1"), 1).unwrap();
    s.publish(msg("t", QoS::AtMostOnce, "2"), 2).unwrap();
    let third = msg("t", QoS::ExactlyOnce, "3");
    let rejected = s.publish(third.clone(), 3).unwrap_err();
    assert_eq!(rejected.error, CommandError::QueueFull);
    assert_eq!(rejected.command, third);
    assert_eq!(rejected.token, 3);
    s.assert_quiet();

    // Once connected the queue drains in order and the refused message can be retried.
    s.connect(connect(V5, "c"));
    s.sent();
    s.feed(connack(false));
    let sent = s.sent();
    assert_eq!(
        publishes(&sent)
            .iter()
            .map(|p| p.payload.clone())
            .collect::<Vec<_>>(),
        ["1", "2"]
    );
    s.publish(rejected.command, rejected.token).unwrap();
    assert_eq!(publishes(&s.sent()).len(), 1);
}

#[test]
fn full_window_and_queue_refuse_while_connected() {
    // Window = min(max_inflight, server Receive Maximum) = 1, then a queue of 1, then refusal.
    let config = ClientConfig::default()
        .with_max_inflight(1)
        .with_max_queued(1);
    let mut s: Script<u32> = connected_with(
        V3,
        config,
        mqtt_streaming_proto::ConnAck::new(ReasonCode::Success),
    );
    s.publish(msg("t", QoS::AtLeastOnce, "1"), 1).unwrap();
    s.publish(msg("t", QoS::AtLeastOnce, "2"), 2).unwrap();
    let r = s.publish(msg("t", QoS::AtLeastOnce, "3"), 3).unwrap_err();
    assert_eq!((r.error, r.token), (CommandError::QueueFull, 3));
    assert_eq!(briefs(&s.sent()), ["PUBLISH1"]);
    s.feed(puback(1));
    assert_eq!(briefs(&s.sent()), ["PUBLISH2"]);
    assert_eq!(published(&s.events()), [(1, ReasonCode::Success)]);
}

#[test]
fn a_full_transmit_buffer_pushes_back() {
    // Back-pressure: encoded bytes not yet taken by poll_transmit are bounded too.
    let config = ClientConfig::default().with_max_transmit_buffer(64);
    let mut s: Script<u32> = connected_with(
        V3,
        config,
        mqtt_streaming_proto::ConnAck::new(ReasonCode::Success),
    );
    let mut accepted = 0;
    let refused = loop {
        match s
            .session
            .publish(s.now, msg("t", QoS::AtMostOnce, "0123456789"), accepted)
        {
            Ok(()) => accepted += 1,
            Err(r) => break r,
        }
        assert!(accepted < 100, "never pushed back");
    };
    assert_eq!(refused.error, CommandError::TransmitBufferFull);
    assert_eq!(refused.token, accepted);
    // Draining the transmit buffer makes room again.
    s.drain();
    assert_eq!(publishes(&s.sent()).len(), accepted as usize);
    s.publish(refused.command, refused.token).unwrap();
}

#[test]
fn publish_with_an_empty_topic_and_no_alias_is_refused() {
    // [MQTT-4.7.3-1] (5.0): a topic name is at least one character (unless an alias stands
    // for it).
    let mut s = connected(V5);
    let m = mqtt_streaming_session::Message::new(
        mqtt_streaming_proto::TopicName::empty(),
        QoS::AtMostOnce,
        "x",
    );
    let r = s.publish(m.clone(), 1).unwrap_err();
    assert!(matches!(r.error, CommandError::Encode(_)));
    assert_eq!((r.command, r.token), (m, 1));
    s.assert_quiet();
}
