//! Server session: PUBLISH in both directions. Inbound QoS 0/1/2 with automatic and manual
//! acks, QoS 2 exactly once, our Receive Maximum, topic aliases, Maximum QoS and Retain
//! Available; outbound publishes with tokens and completion events, the client's Receive
//! Maximum as the window, its Maximum Packet Size and its Topic Alias Maximum.
//!
//! Statement ids name their version (3.1.1 or 5.0) in each test's first comment line.

mod support;

use core::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;
use mqtt_streaming_proto::{
    AckProperties, Packet, PubResponse, QoS, ReasonCode, SubscriptionId, UserProperty,
};
use mqtt_streaming_session::{
    AckMode, CloseReason, CommandError, Initiator, ProtocolViolation, ServerConfig, ServerEvent,
    ServerState,
};
use support::server::*;

fn manual() -> ServerConfig {
    ServerConfig::default().with_ack_mode(AckMode::Manual)
}

fn payloads(events: &[ServerEvent<u32>]) -> Vec<String> {
    delivered(events)
        .into_iter()
        .map(|(_, p, _)| String::from_utf8(p.to_vec()).unwrap())
        .collect()
}

// ----- inbound -----

#[test]
fn inbound_qos0_is_delivered_without_an_answer() {
    // [MQTT-3.3.4-1] (3.1.1 and 5.0): QoS 0 gets no response; the message is delivered with no
    // ack id.
    for version in [V31, V3, V5] {
        let mut s = accepted(version);
        s.feed(client_publish("a/b", QoS::AtMostOnce, 0, "hello"));
        assert!(s.sent().is_empty());
        let events = s.events();
        assert_eq!(
            delivered(&events),
            [("a/b".into(), Bytes::from("hello"), None)]
        );
    }
}

#[test]
fn inbound_qos1_is_acknowledged_and_the_id_reused() {
    // [MQTT-4.3.2-4] and [MQTT-4.3.2-5] (5.0) / [MQTT-4.3.2-2] (3.1.1): PUBACK with the same
    // identifier; after it, a PUBLISH reusing the identifier is a new message even with DUP.
    for version in [V3, V5] {
        let mut s = accepted(version);
        s.feed(client_publish("t", QoS::AtLeastOnce, 9, "one"));
        assert_eq!(briefs(&s.sent()), ["PUBACK9"]);
        assert_eq!(payloads(&s.events()), ["one"]);
        let mut again = publish("t", QoS::AtLeastOnce, 9, "two");
        again.dup = true;
        s.feed(Packet::Publish(again));
        assert_eq!(briefs(&s.sent()), ["PUBACK9"]);
        assert_eq!(payloads(&s.events()), ["two"]);
    }
}

#[test]
fn inbound_qos2_exactly_once_duplicate_inbound_publish() {
    // [MQTT-4.3.3-8], [MQTT-4.3.3-10], [MQTT-4.3.3-11], [MQTT-4.3.3-12] (5.0) /
    // [MQTT-4.3.3-2] (3.1.1): PUBREC with the same id; a DUP re-send before PUBREL is answered
    // with PUBREC again and not delivered twice (Alpakka: "duplicate inbound publish"); PUBREL
    // gets PUBCOMP; after that the id is new again.
    for version in [V3, V5] {
        let mut s = accepted(version);
        s.feed(client_publish("t", QoS::ExactlyOnce, 3, "once"));
        assert_eq!(briefs(&s.sent()), ["PUBREC3"]);
        assert_eq!(payloads(&s.events()), ["once"]);
        for _ in 0..2 {
            let mut dup = publish("t", QoS::ExactlyOnce, 3, "once");
            dup.dup = true;
            s.feed(Packet::Publish(dup));
            assert_eq!(briefs(&s.sent()), ["PUBREC3"]);
            assert!(s.events().is_empty(), "not delivered again");
        }
        s.feed(pubrel(3));
        match &s.sent()[..] {
            [Packet::PubComp(r)] => {
                assert_eq!(r.packet_id, pid(3));
                assert_eq!(r.reason_code, ReasonCode::Success);
            }
            other => panic!("{other:?}"),
        }
        // A repeated PUBREL is answered too (5.0: 0x92 Packet Identifier not found).
        s.feed(pubrel(3));
        match &s.sent()[..] {
            [Packet::PubComp(r)] if version.is_v5() => {
                assert_eq!(r.reason_code, ReasonCode::PacketIdentifierNotFound)
            }
            [Packet::PubComp(r)] => assert_eq!(r.packet_id, pid(3)),
            other => panic!("{other:?}"),
        }
        s.feed(client_publish("t", QoS::ExactlyOnce, 3, "next"));
        assert_eq!(briefs(&s.sent()), ["PUBREC3"]);
        assert_eq!(payloads(&s.events()), ["next"]);
        assert_eq!(s.state(), ServerState::Connected);
    }
}

#[test]
fn manual_acks_go_out_in_arrival_order() {
    // [MQTT-4.6.0-2] and [MQTT-4.6.0-3] (3.1.1 and 5.0): PUBACKs and PUBRECs leave in the
    // order the PUBLISHes arrived, whatever order the application acks them in.
    for version in [V3, V5] {
        let mut s = accepted_with(manual(), connect(version, "c"));
        s.feed(client_publish("t", QoS::AtLeastOnce, 1, "a"));
        s.feed(client_publish("t", QoS::ExactlyOnce, 2, "b"));
        s.feed(client_publish("t", QoS::AtMostOnce, 0, "c"));
        s.feed(client_publish("t", QoS::AtLeastOnce, 3, "d"));
        assert!(s.sent().is_empty(), "nothing before the application acks");
        let ids: Vec<_> = delivered(&s.events())
            .into_iter()
            .map(|(_, _, a)| a)
            .collect();
        assert_eq!(ids.len(), 4);
        assert!(ids[2].is_none(), "QoS 0 has nothing to ack");
        let (a, b, d) = (ids[0].unwrap(), ids[1].unwrap(), ids[3].unwrap());
        assert_eq!(
            (a.packet_id(), b.packet_id(), d.packet_id()),
            (pid(1), pid(2), pid(3))
        );
        s.ack(d, ReasonCode::Success).unwrap();
        assert!(s.sent().is_empty(), "3 waits for 1 and 2");
        s.ack(b, ReasonCode::Success).unwrap();
        assert!(s.sent().is_empty(), "2 waits for 1");
        s.ack(a, ReasonCode::Success).unwrap();
        assert_eq!(briefs(&s.sent()), ["PUBACK1", "PUBREC2", "PUBACK3"]);
        // Acking twice is refused.
        assert_eq!(s.ack(a, ReasonCode::Success), Err(CommandError::UnknownAck));
        s.feed(pubrel(2));
        assert_eq!(briefs(&s.sent()), ["PUBCOMP2"]);
    }
}

#[test]
fn manual_ack_codes_v5() {
    // [MQTT-4.3.3-9] (5.0): after a PUBREC with an error code the identifier is free, so the
    // same id is a new message; error codes go out on PUBACK as given. 3.1.1 has no codes.
    let mut s = accepted_with(manual(), connect(V5, "c"));
    s.feed(client_publish("t", QoS::AtLeastOnce, 1, "a"));
    s.feed(client_publish("t", QoS::ExactlyOnce, 2, "b"));
    let ids: Vec<_> = delivered(&s.events())
        .into_iter()
        .map(|(_, _, a)| a.unwrap())
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
    s.feed(client_publish("t", QoS::ExactlyOnce, 2, "b again"));
    assert_eq!(payloads(&s.events()), ["b again"]);

    let mut s = accepted_with(manual(), connect(V3, "c"));
    s.feed(client_publish("t", QoS::AtLeastOnce, 1, "a"));
    let id = delivered(&s.events())[0].2.unwrap();
    assert!(matches!(
        s.ack(id, ReasonCode::NotAuthorized),
        Err(CommandError::ReasonCodeNotAllowed {
            code: ReasonCode::NotAuthorized,
            ..
        })
    ));
    assert!(s.sent().is_empty());
    s.ack(id, ReasonCode::Success).unwrap();
    assert_eq!(briefs(&s.sent()), ["PUBACK1"]);
}

#[test]
fn our_receive_maximum_is_enforced_v5() {
    // [MQTT-3.3.4-7] (5.0): the client must not have more than our Receive Maximum QoS 1 and 2
    // PUBLISHes unacknowledged; one more is answered with DISCONNECT 0x93. Finished ones free
    // their slot.
    let config = ServerConfig::default().with_receive_maximum(2);
    let mut s = accepted_with(config.clone(), connect(V5, "c"));
    // QoS 2 stays unfinished until PUBREL.
    s.feed(client_publish("t", QoS::ExactlyOnce, 1, "a"));
    s.feed(client_publish("t", QoS::ExactlyOnce, 2, "b"));
    s.feed(pubrel(1));
    s.feed(client_publish("t", QoS::ExactlyOnce, 3, "c"));
    assert_eq!(payloads(&s.events()), ["a", "b", "c"]);
    assert_eq!(
        briefs(&s.sent()),
        ["PUBREC1", "PUBREC2", "PUBCOMP1", "PUBREC3"]
    );
    // QoS 0 does not count.
    s.feed(client_publish("t", QoS::AtMostOnce, 0, "q0"));
    assert_eq!(payloads(&s.events()), ["q0"]);
    s.feed(client_publish("t", QoS::ExactlyOnce, 4, "d"));
    assert_violation(
        &mut s,
        ReasonCode::ReceiveMaximumExceeded,
        CloseReason::ProtocolViolation(ProtocolViolation::ReceiveMaximumExceeded),
    );

    // Manual acks: QoS 1 not yet acked counts.
    let mut s = accepted_with(config.with_ack_mode(AckMode::Manual), connect(V5, "c"));
    s.feed(client_publish("t", QoS::AtLeastOnce, 1, "a"));
    s.feed(client_publish("t", QoS::AtLeastOnce, 2, "b"));
    let first = delivered(&s.events())[0].2.unwrap();
    s.ack(first, ReasonCode::Success).unwrap();
    assert_eq!(briefs(&s.sent()), ["PUBACK1"]);
    s.feed(client_publish("t", QoS::AtLeastOnce, 3, "c"));
    assert_eq!(payloads(&s.events()), ["c"]);
    s.feed(client_publish("t", QoS::AtLeastOnce, 4, "d"));
    assert_violation(
        &mut s,
        ReasonCode::ReceiveMaximumExceeded,
        CloseReason::ProtocolViolation(ProtocolViolation::ReceiveMaximumExceeded),
    );
}

#[test]
fn inbound_topic_aliases_are_resolved_v5() {
    // [MQTT-3.3.2-12] (5.0): the server accepts every alias from 1 to its Topic Alias Maximum;
    // a PUBLISH with an empty topic and a known alias is delivered with the mapped topic, and
    // a mapping can be replaced.
    let config = ServerConfig::default().with_topic_alias_maximum(2);
    let mut s = accepted_with(config, connect(V5, "c"));
    let aliased = |t: &str, alias: u16, payload: &'static str| {
        let mut p = publish(
            if t.is_empty() { "placeholder" } else { t },
            QoS::AtLeastOnce,
            alias + 10,
            payload,
        );
        if t.is_empty() {
            p.topic = mqtt_streaming_proto::TopicName::empty();
        }
        p.properties.topic_alias = NonZeroU16::new(alias);
        Packet::Publish(p)
    };
    s.feed(aliased("room/1/temp", 1, "a"));
    s.feed(aliased("room/2/temp", 2, "b"));
    s.feed(aliased("", 1, "c"));
    s.feed(aliased("", 2, "d"));
    s.feed(aliased("room/3/temp", 1, "e"));
    s.feed(aliased("", 1, "f"));
    let topics: Vec<_> = delivered(&s.events())
        .into_iter()
        .map(|(t, _, _)| t)
        .collect();
    assert_eq!(
        topics,
        [
            "room/1/temp",
            "room/2/temp",
            "room/1/temp",
            "room/2/temp",
            "room/3/temp",
            "room/3/temp"
        ]
    );
    assert_eq!(s.sent().len(), 6);
}

#[test]
fn inbound_topic_alias_above_maximum_is_refused_v5() {
    // [MQTT-3.2.2-17] (5.0): the client must not send an alias above our Topic Alias Maximum:
    // DISCONNECT 0x94. [MQTT-3.2.2-18] (5.0): with a maximum of 0 any alias is refused.
    for (max, alias) in [(2u16, 3u16), (0, 1)] {
        let mut s2 = accepted_with(
            ServerConfig::default().with_topic_alias_maximum(max),
            connect(V5, "c"),
        );
        let mut p = publish("t", QoS::AtMostOnce, 0, "x");
        p.properties.topic_alias = NonZeroU16::new(alias);
        s2.feed(Packet::Publish(p));
        let will = assert_violation(
            &mut s2,
            ReasonCode::TopicAliasInvalid,
            CloseReason::ProtocolViolation(ProtocolViolation::TopicAliasInvalid),
        );
        assert!(will.is_none());
    }
}

#[test]
fn unknown_topic_alias_is_a_protocol_error_v5() {
    // [MQTT-3.3.2-7] (5.0): mappings do not survive the connection; an empty topic with an
    // alias never mapped on this connection is a Protocol Error (0x82).
    let mut s = accepted(V5);
    let mut p = publish("t", QoS::AtMostOnce, 0, "x");
    p.topic = mqtt_streaming_proto::TopicName::empty();
    p.properties.topic_alias = NonZeroU16::new(1);
    s.feed(Packet::Publish(p));
    assert_violation(
        &mut s,
        ReasonCode::ProtocolError,
        CloseReason::ProtocolViolation(ProtocolViolation::UnknownTopicAlias),
    );
}

#[test]
fn maximum_qos_is_enforced_v5() {
    // [MQTT-3.2.2-11] (5.0): a PUBLISH above the Maximum QoS the server announced is refused
    // with DISCONNECT 0x9B; at or below it passes.
    let config = ServerConfig::default().with_maximum_qos(QoS::AtLeastOnce);
    let mut s = accepted_with(config, connect(V5, "c"));
    s.feed(client_publish("t", QoS::AtMostOnce, 0, "a"));
    s.feed(client_publish("t", QoS::AtLeastOnce, 1, "b"));
    assert_eq!(payloads(&s.events()), ["a", "b"]);
    assert_eq!(briefs(&s.sent()), ["PUBACK1"]);
    s.feed(client_publish("t", QoS::ExactlyOnce, 2, "c"));
    assert_violation(
        &mut s,
        ReasonCode::QoSNotSupported,
        CloseReason::ProtocolViolation(ProtocolViolation::QoSNotSupported),
    );
}

#[test]
fn retain_when_unavailable_is_refused_v5() {
    // [MQTT-3.2.2-14] (5.0): with Retain Available 0 a retained PUBLISH gets DISCONNECT 0x9A.
    let config = ServerConfig::default().with_retain_available(false);
    let mut s = accepted_with(config, connect(V5, "c"));
    s.feed(client_publish("t", QoS::AtLeastOnce, 1, "plain"));
    assert_eq!(payloads(&s.events()), ["plain"]);
    s.sent();
    let mut p = publish("t", QoS::AtLeastOnce, 2, "kept");
    p.retain = true;
    s.feed(Packet::Publish(p));
    assert_violation(
        &mut s,
        ReasonCode::RetainNotSupported,
        CloseReason::ProtocolViolation(ProtocolViolation::RetainNotSupported),
    );
}

#[test]
fn subscription_identifier_from_a_client_is_a_protocol_error_v5() {
    // [MQTT-3.3.4-6] (5.0): a PUBLISH from a client must not carry a Subscription Identifier;
    // the server treats it as a Protocol Error (0x82), the stricter reading of a "must not".
    let mut s = accepted(V5);
    let mut p = publish("t", QoS::AtMostOnce, 0, "x");
    p.properties.subscription_identifiers = vec![SubscriptionId::new(5).unwrap()];
    s.feed(Packet::Publish(p));
    let sent = s.sent();
    assert_eq!(briefs(&sent), ["DISCONNECT(0x82)"]);
    let events = s.events();
    assert!(delivered(&events).is_empty());
    assert_eq!(closes(&events).len(), 1);
}

#[test]
fn v311_ignores_v5_limits_of_the_config() {
    // 3.1.1 has no Maximum QoS, Retain Available or topic aliases: a 3.1.1 client publishing
    // QoS 2 and retained messages is served even when the v5 config limits are lower.
    let config = ServerConfig::default()
        .with_maximum_qos(QoS::AtMostOnce)
        .with_retain_available(false);
    let mut s = accepted_with(config, connect(V3, "c"));
    let mut p = publish("t", QoS::ExactlyOnce, 1, "x");
    p.retain = true;
    s.feed(Packet::Publish(p));
    assert_eq!(briefs(&s.sent()), ["PUBREC1"]);
    assert_eq!(payloads(&s.events()), ["x"]);
}

// ----- outbound -----

/// `sent` holds exactly one PUBLISH: QoS 0, DUP 0 ([MQTT-3.3.1-2] 3.1.1), carrying `payload`.
fn assert_one_qos0_publish(sent: &[Packet], payload: &[u8]) {
    let ps = publishes(sent);
    assert_eq!(ps.len(), 1);
    assert!(!ps[0].dup);
    assert_eq!(ps[0].qos_pid.qos(), QoS::AtMostOnce);
    assert_eq!(&ps[0].payload[..], payload);
}

#[test]
fn outbound_qos0_completes_at_once() {
    // [MQTT-4.3.1-1] (5.0) / [MQTT-3.3.1-2] (3.1.1): QoS 0 goes out with DUP 0; its token
    // comes back as Published (Success) right away.
    for version in [V3, V5] {
        let mut s = accepted(version);
        s.publish(msg("news", QoS::AtMostOnce, "hi"), 7).unwrap();
        assert_one_qos0_publish(&s.sent(), b"hi");
        assert_eq!(published(&s.events()), [(7, ReasonCode::Success)]);
    }
}

#[test]
fn outbound_qos0_unreported_when_report_qos0_published_is_off() {
    // [MQTT-4.3.1-1] (5.0) / [MQTT-3.3.1-2] (3.1.1): the same PUBLISH goes out (QoS 0, DUP 0);
    // with `report_qos0_published` off no event is queued for it, while a QoS 1 message still
    // completes as Published on its PUBACK.
    for version in [V3, V5] {
        let config = ServerConfig::default().with_report_qos0_published(false);
        let mut s = accepted_with(config, connect(version, "c"));
        s.publish(msg("news", QoS::AtMostOnce, "hi"), 7).unwrap();
        assert_one_qos0_publish(&s.sent(), b"hi");
        assert!(s.events().is_empty());
        s.publish(msg("news", QoS::AtLeastOnce, "q1"), 8).unwrap();
        let id = publishes(&s.sent())[0].qos_pid.packet_id().unwrap();
        s.feed(Packet::PubAck(PubResponse::new(id)));
        assert_eq!(published(&s.events()), [(8, ReasonCode::Success)]);
    }
}

#[test]
fn outbound_qos1_completes_on_puback() {
    // [MQTT-4.3.2-1], [MQTT-4.3.2-2], [MQTT-4.3.2-3] (5.0) / [MQTT-4.3.2-1] (3.1.1): an unused
    // id, QoS 1, DUP 0; unacknowledged until PUBACK, whose code and properties come back with
    // the token.
    let mut s = accepted(V5);
    s.publish(msg("a", QoS::AtLeastOnce, "1"), 1).unwrap();
    s.publish(msg("a", QoS::AtLeastOnce, "2"), 2).unwrap();
    let sent = s.sent();
    assert_eq!(briefs(&sent), ["PUBLISH1 a", "PUBLISH2 a"]);
    assert!(publishes(&sent).iter().all(|p| !p.dup));
    assert!(s.events().is_empty());
    assert_eq!(s.session.inflight_len(), 2);
    s.feed(Packet::PubAck(PubResponse {
        packet_id: pid(2),
        reason_code: ReasonCode::NoMatchingSubscribers,
        properties: AckProperties {
            reason_string: Some(mstr("nobody")),
            user_properties: vec![UserProperty::new("k", "v").unwrap()],
        },
    }));
    match &s.events()[..] {
        [ServerEvent::Published {
            token: 2,
            reason_code: ReasonCode::NoMatchingSubscribers,
            properties,
        }] => assert_eq!(properties.reason_string, Some(mstr("nobody"))),
        other => panic!("{other:?}"),
    }
    s.feed(puback(1));
    assert_eq!(published(&s.events()), [(1, ReasonCode::Success)]);
    assert_eq!(s.session.inflight_len(), 0);
    // A second PUBACK for the same id completes nothing and is ignored (issue 10 item 6: it
    // used to close the connection; see server_lifecycle's unknown-id test).
    s.feed(puback(1));
    s.assert_quiet();
    assert_eq!(s.state(), ServerState::Connected);
}

#[test]
fn outbound_qos2_flow() {
    // [MQTT-4.3.3-1] to [MQTT-4.3.3-6] (5.0) / [MQTT-4.3.3-1] (3.1.1): PUBLISH QoS 2 DUP 0,
    // PUBREC -> PUBREL with the same id, PUBCOMP -> Published; a repeated PUBREC is answered
    // with PUBREL again and the PUBLISH is never re-sent after PUBREL.
    for version in [V3, V5] {
        let mut s = accepted(version);
        s.publish(msg("a", QoS::ExactlyOnce, "x"), 5).unwrap();
        assert_eq!(briefs(&s.sent()), ["PUBLISH1 a"]);
        s.feed(pubrec(1));
        assert_eq!(briefs(&s.sent()), ["PUBREL1"]);
        assert!(s.events().is_empty());
        s.feed(pubrec(1));
        assert_eq!(briefs(&s.sent()), ["PUBREL1"]);
        s.feed(pubcomp(1));
        assert!(s.sent().is_empty());
        assert_eq!(published(&s.events()), [(5, ReasonCode::Success)]);
    }
}

#[test]
fn outbound_qos2_pubrec_error_ends_the_flow_v5() {
    // [MQTT-4.4.0-2] (5.0): a PUBREC with an error code acknowledges the PUBLISH: no PUBREL,
    // the token comes back with the code, and nothing is re-sent on resume.
    let mut s = accepted(V5);
    s.publish(msg("a", QoS::ExactlyOnce, "x"), 5).unwrap();
    s.sent();
    s.feed(Packet::PubRec(PubResponse {
        reason_code: ReasonCode::QuotaExceeded,
        ..PubResponse::new(pid(1))
    }));
    assert!(s.sent().is_empty());
    assert_eq!(published(&s.events()), [(5, ReasonCode::QuotaExceeded)]);
    assert_eq!(s.session.inflight_len(), 0);
}

#[test]
fn the_clients_receive_maximum_is_the_window_v5() {
    // [MQTT-3.3.4-9] (5.0): no more than the client's Receive Maximum QoS 1/2 publishes
    // unacknowledged; the rest wait in order and go out as acks arrive. [MQTT-3.3.4-10] (5.0):
    // other packets are not delayed by a full window.
    let mut c = connect(V5, "c");
    c.properties.receive_maximum = NonZeroU16::new(2);
    let mut s = accepted_with(ServerConfig::default(), c);
    for i in 1..=5u32 {
        let qos = if i == 4 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        s.publish(msg("w", qos, "x"), i).unwrap();
    }
    assert_eq!(briefs(&s.sent()), ["PUBLISH1 w", "PUBLISH2 w"]);
    assert_eq!(s.session.queued_len(), 3);
    s.feed(Packet::PingReq);
    s.feed(subscribe(9, &[("x", QoS::AtMostOnce)]));
    s.suback(9, &[ReasonCode::Success]).unwrap();
    assert_eq!(briefs(&s.sent()), ["PINGRESP", "SUBACK9"]);
    s.feed(puback(2));
    // Token 3 takes the slot; token 4 (QoS 0) follows in order; token 5 waits.
    assert_eq!(briefs(&s.sent()), ["PUBLISH3 w", "PUBLISH0 w"]);
    assert_eq!(
        published(&s.events()),
        [(2, ReasonCode::Success), (4, ReasonCode::Success)]
    );
    s.feed(puback(1));
    assert_eq!(briefs(&s.sent()), ["PUBLISH4 w"]);
    s.feed(puback(3));
    s.feed(puback(4));
    assert_eq!(
        published(&s.events()),
        [
            (1, ReasonCode::Success),
            (3, ReasonCode::Success),
            (5, ReasonCode::Success)
        ]
    );
    assert_eq!(s.session.queued_len(), 0);
}

#[test]
fn our_max_inflight_caps_the_window() {
    // The config's max_inflight caps the window below the client's Receive Maximum (3.1.1 has
    // none: 65,535).
    let config = ServerConfig::default().with_max_inflight(1);
    let mut s = accepted_with(config, connect(V3, "c"));
    s.publish(msg("w", QoS::ExactlyOnce, "x"), 1).unwrap();
    s.publish(msg("w", QoS::AtLeastOnce, "y"), 2).unwrap();
    assert_eq!(briefs(&s.sent()), ["PUBLISH1 w"]);
    s.feed(pubrec(1));
    assert_eq!(briefs(&s.sent()), ["PUBREL1"]);
    s.feed(pubcomp(1));
    assert_eq!(briefs(&s.sent()), ["PUBLISH2 w"]);
}

#[test]
fn the_clients_maximum_packet_size_is_respected_v5() {
    // [MQTT-3.1.2-24] (5.0): the server must not send a packet larger than the client's
    // Maximum Packet Size: the publish is refused (message and token handed back) and nothing
    // is sent; one that fits goes out.
    let mut c = connect(V5, "c");
    c.properties.maximum_packet_size = NonZeroU32::new(32);
    let mut s = accepted_with(ServerConfig::default(), c);
    let big: &'static str = Box::leak("z".repeat(40).into_boxed_str());
    let rejected = s.publish(msg("t", QoS::AtLeastOnce, big), 1).unwrap_err();
    assert!(matches!(
        rejected.error,
        CommandError::PacketTooLarge { max: 32, .. }
    ));
    assert_eq!(rejected.token, 1);
    assert_eq!(rejected.command, msg("t", QoS::AtLeastOnce, big));
    s.assert_quiet();
    assert_eq!(s.session.inflight_len(), 0);
    s.publish(msg("t", QoS::AtLeastOnce, "fits"), 2).unwrap();
    let sent = s.sent();
    assert_eq!(briefs(&sent), ["PUBLISH1 t"]);
    assert!(encode(&sent[0], V5).len() <= 32);
}

#[test]
fn queued_publish_too_large_for_the_client_is_abandoned_v5() {
    // [MQTT-3.1.2-24] (5.0): a publish queued before the client's limits were known and too
    // large for them is never sent; its token comes back as Abandoned with the message.
    let mut c = connect(V5, "c");
    c.properties.maximum_packet_size = NonZeroU32::new(32);
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(c);
    let big: &'static str = Box::leak("z".repeat(40).into_boxed_str());
    s.publish(msg("t", QoS::AtLeastOnce, big), 1).unwrap();
    s.publish(msg("t", QoS::AtLeastOnce, "ok"), 2).unwrap();
    s.assert_quiet();
    let sent = s.accept_with(Default::default(), None);
    assert_eq!(briefs(&sent), ["CONNACK(0x00)", "PUBLISH1 t"]);
    match &s.events()[..] {
        [ServerEvent::Abandoned {
            token: 1,
            cause:
                mqtt_streaming_session::AbandonCause::Refused(CommandError::PacketTooLarge { .. }),
            message: Some(m),
        }] => assert_eq!(m.payload.len(), 40),
        other => panic!("{other:?}"),
    }
}

#[test]
fn outbound_topic_aliases_within_the_clients_maximum_v5() {
    // [MQTT-3.1.2-26] and [MQTT-3.3.2-11] (5.0): with auto_topic_alias the server assigns
    // aliases up to the client's Topic Alias Maximum (first use carries topic and alias, later
    // ones an empty topic); topics beyond it go out plainly.
    let mut c = connect(V5, "c");
    c.properties.topic_alias_maximum = Some(2);
    let config = ServerConfig::default().with_auto_topic_alias(true);
    let mut s = accepted_with(config, c);
    for (i, t) in ["a/1", "a/1", "b/2", "c/3", "b/2", "c/3"]
        .iter()
        .enumerate()
    {
        s.publish(msg(t, QoS::AtMostOnce, "x"), i as u32).unwrap();
    }
    let sent = s.sent();
    let got: Vec<_> = publishes(&sent)
        .iter()
        .map(|p| {
            (
                p.topic.as_str().to_owned(),
                p.properties.topic_alias.map(|a| a.get()),
            )
        })
        .collect();
    let expected: Vec<(String, Option<u16>)> = vec![
        ("a/1".into(), Some(1)),
        ("".into(), Some(1)),
        ("b/2".into(), Some(2)),
        ("c/3".into(), None),
        ("".into(), Some(2)),
        ("c/3".into(), None),
    ];
    assert_eq!(got, expected);
}

#[test]
fn no_topic_aliases_when_the_client_allows_none_v5() {
    // [MQTT-3.1.2-27] (5.0): with the client's Topic Alias Maximum absent or 0 the server
    // sends no alias, automatic or explicit (an explicit one is refused).
    for max in [None, Some(0)] {
        let mut c = connect(V5, "c");
        c.properties.topic_alias_maximum = max;
        let config = ServerConfig::default().with_auto_topic_alias(true);
        let mut s = accepted_with(config, c);
        s.publish(msg("a", QoS::AtMostOnce, "x"), 1).unwrap();
        s.publish(msg("a", QoS::AtMostOnce, "x"), 2).unwrap();
        let sent = s.sent();
        assert!(publishes(&sent)
            .iter()
            .all(|p| p.properties.topic_alias.is_none() && p.topic.as_str() == "a"));
        let mut m = msg("a", QoS::AtMostOnce, "x");
        m.properties.topic_alias = NonZeroU16::new(1);
        let r = s.publish(m, 3).unwrap_err();
        assert!(matches!(
            r.error,
            CommandError::TopicAliasAboveMaximum { alias: 1, .. }
        ));
        assert!(s.sent().is_empty());
    }
}

#[test]
fn publish_before_accept_waits_for_connack_and_after_close_is_refused() {
    // [MQTT-3.2.0-1] (5.0): no PUBLISH before the CONNACK; publishes made while the CONNECT
    // awaits its answer go out after it, in order. After the close, publish is refused.
    let mut s = Server::new(V3, ServerConfig::default());
    s.connect(connect(V3, "c"));
    s.publish(msg("a", QoS::AtLeastOnce, "1"), 1).unwrap();
    s.publish(msg("a", QoS::AtMostOnce, "2"), 2).unwrap();
    s.assert_quiet();
    let sent = s.accept_with(Default::default(), None);
    assert_eq!(briefs(&sent), ["CONNACK(0x00)", "PUBLISH1 a", "PUBLISH0 a"]);
    s.transport_closed();
    s.events();
    let r = s.publish(msg("a", QoS::AtLeastOnce, "3"), 3).unwrap_err();
    assert_eq!(r.error, CommandError::NotConnected);
    assert_eq!(r.token, 3);
}

#[test]
fn outbound_queue_is_bounded() {
    // Bounded memory: beyond max_queued the publish is refused with QueueFull and handed back.
    let mut c = connect(V5, "c");
    c.properties.receive_maximum = NonZeroU16::new(1);
    let config = ServerConfig::default().with_max_queued(2);
    let mut s = accepted_with(config, c);
    for i in 0..3 {
        s.publish(msg("q", QoS::AtLeastOnce, "x"), i).unwrap();
    }
    let r = s.publish(msg("q", QoS::AtLeastOnce, "x"), 3).unwrap_err();
    assert_eq!((r.error, r.token), (CommandError::QueueFull, 3));
    assert_eq!(s.session.queued_len(), 2);
    assert_eq!(s.session.inflight_len(), 1);
}

#[test]
fn closed_event_after_a_transport_loss_keeps_tokens_in_the_session() {
    // Tokens of in-flight and queued publishes are not lost with the connection: they stay in
    // the detached session (re-sent on resume, or handed back by into_abandoned).
    let mut c = connect(V5, "c");
    c.properties.receive_maximum = NonZeroU16::new(1);
    let mut s = accepted_with(ServerConfig::default(), c);
    s.publish(msg("a", QoS::AtLeastOnce, "1"), 1).unwrap();
    s.publish(msg("a", QoS::AtLeastOnce, "2"), 2).unwrap();
    s.transport_closed();
    let events = s.events();
    assert!(published(&events).is_empty());
    assert_closed(&events, Initiator::Transport, CloseReason::TransportClosed);
    let state = s.session.detach().expect("accepted, closed");
    assert_eq!((state.inflight_len(), state.queued_len()), (1, 1));
    let tokens: Vec<u32> = state.into_abandoned().into_iter().map(|(t, _)| t).collect();
    assert_eq!(tokens, [1, 2]);
}
