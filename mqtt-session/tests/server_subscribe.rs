//! Server session: SUBSCRIBE and UNSUBSCRIBE reach the application as events and are answered
//! with `suback` / `unsuback`: per-filter codes, counts and identifiers checked, answers scoped
//! to the connection, back-pressure while requests wait, problem information and the client's
//! Maximum Packet Size respected.
//!
//! Statement ids name their version (3.1.1 or 5.0) in each test's first comment line.

mod support;

use core::num::NonZeroU32;

use bytes::BytesMut;
use mqtt_streaming_proto::{
    AckProperties, Packet, QoS, ReasonCode, RetainHandling, Subscribe, SubscribeProperties,
    SubscriptionId, SubscriptionOptions, UnsubscribeProperties, UserProperty,
};
use mqtt_streaming_session::{
    CloseReason, CommandError, ProtocolViolation, ServerConfig, ServerEvent,
};
use support::server::*;

fn raw(s: &mut Server) -> Vec<u8> {
    let mut wire = BytesMut::new();
    while s.session.poll_transmit(s.now, &mut wire) > 0 {}
    wire.to_vec()
}

fn full_subscribe() -> Subscribe {
    Subscribe {
        packet_id: pid(12),
        subscriptions: vec![
            mqtt_streaming_proto::Subscription {
                filter: filter("a/+/c"),
                options: SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            },
            mqtt_streaming_proto::Subscription {
                filter: filter("$share/g/x/#"),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: RetainHandling::SendAtSubscribeIfNew,
                },
            },
            mqtt_streaming_proto::Subscription {
                filter: filter("z"),
                options: SubscriptionOptions::new(QoS::AtMostOnce),
            },
        ],
        properties: SubscribeProperties {
            subscription_identifier: SubscriptionId::new(77),
            user_properties: vec![UserProperty::new("k", "v").unwrap()],
        },
    }
}

#[test]
fn subscribe_event_carries_every_option_and_suback_answers_it_v5() {
    // [MQTT-3.8.4-1], [MQTT-3.8.4-2], [MQTT-3.8.4-6], [MQTT-3.9.3-1] (5.0): the SUBSCRIBE
    // reaches the application with every option; the SUBACK carries its packet id and one
    // code per filter, in order.
    let mut s = accepted(V5);
    let sub = full_subscribe();
    s.feed(Packet::Subscribe(sub.clone()));
    assert!(s.sent().is_empty(), "the application answers");
    match &s.events()[..] {
        [ServerEvent::Subscribe(got)] => assert_eq!(got, &sub),
        other => panic!("{other:?}"),
    }
    let codes = [
        ReasonCode::GrantedQoS2,
        ReasonCode::SharedSubscriptionsNotSupported,
        ReasonCode::Success,
    ];
    let props = AckProperties {
        reason_string: Some(mstr("partly")),
        user_properties: vec![UserProperty::new("a", "b").unwrap()],
    };
    s.suback_with(12, &codes, props.clone()).unwrap();
    match &s.sent()[..] {
        [Packet::SubAck(ack)] => {
            assert_eq!(ack.packet_id, pid(12));
            assert_eq!(ack.reason_codes, codes);
            assert_eq!(ack.properties, props);
        }
        other => panic!("{other:?}"),
    }
    assert!(s.events().is_empty());
}

#[test]
fn suback_count_kind_and_id_are_checked() {
    // [MQTT-3.8.4-6] (5.0) / [MQTT-3.8.4-5] (3.1.1): one code per filter: a wrong count is
    // refused, as is an id with nothing pending or pending for the other request type, or one
    // already answered. Nothing is sent by a refused answer.
    for version in [V3, V5] {
        let mut s = accepted(version);
        s.feed(subscribe(
            1,
            &[("a", QoS::AtMostOnce), ("b", QoS::AtLeastOnce)],
        ));
        s.feed(unsubscribe(2, &["c"]));
        s.events();
        assert!(matches!(
            s.suback(1, &[ReasonCode::Success]),
            Err(CommandError::ReasonCodeCountMismatch {
                expected: 2,
                given: 1
            })
        ));
        assert!(matches!(
            s.suback(
                1,
                &[
                    ReasonCode::Success,
                    ReasonCode::Success,
                    ReasonCode::Success
                ]
            ),
            Err(CommandError::ReasonCodeCountMismatch {
                expected: 2,
                given: 3
            })
        ));
        assert_eq!(
            s.suback(3, &[ReasonCode::Success]),
            Err(CommandError::UnknownAck)
        );
        assert!(matches!(
            s.suback(2, &[ReasonCode::Success]),
            Err(CommandError::UnknownAck)
        ));
        assert!(matches!(
            s.unsuback(1, &[ReasonCode::Success, ReasonCode::Success]),
            Err(CommandError::UnknownAck)
        ));
        s.assert_quiet();
        s.suback(1, &[ReasonCode::Success, ReasonCode::GrantedQoS1])
            .unwrap();
        s.unsuback(2, &[ReasonCode::Success]).unwrap();
        assert_eq!(briefs(&s.sent()), ["SUBACK1", "UNSUBACK2"]);
        assert_eq!(
            s.suback(1, &[ReasonCode::Success, ReasonCode::GrantedQoS1]),
            Err(CommandError::UnknownAck)
        );
        assert_eq!(
            s.unsuback(2, &[ReasonCode::Success]),
            Err(CommandError::UnknownAck)
        );
        s.assert_quiet();
    }
}

#[test]
fn suback_codes_must_be_subscribe_codes_v5() {
    // [MQTT-3.9.3-2] (5.0): only Subscribe Reason Codes; another code is refused and the
    // SUBSCRIBE still waits for a valid answer.
    let mut s = accepted(V5);
    s.feed(subscribe(1, &[("a", QoS::AtMostOnce)]));
    s.events();
    assert!(s.suback(1, &[ReasonCode::SessionTakenOver]).is_err());
    assert!(s.suback(1, &[ReasonCode::NoSubscriptionExisted]).is_err());
    s.assert_quiet();
    s.suback(1, &[ReasonCode::NotAuthorized]).unwrap();
    assert_eq!(briefs(&s.sent()), ["SUBACK1"]);
}

#[test]
fn v311_suback_failure_becomes_0x80() {
    // [MQTT-3.9.3-2] (3.1.1): the only return codes are 0x00, 0x01, 0x02 and 0x80: every
    // failure code goes out as 0x80.
    let mut s = accepted(V3);
    s.feed(subscribe(
        0x0102,
        &[
            ("a", QoS::AtMostOnce),
            ("b", QoS::ExactlyOnce),
            ("c", QoS::AtLeastOnce),
            ("d", QoS::AtLeastOnce),
        ],
    ));
    s.events();
    s.session
        .suback(
            s.now,
            pid(0x0102),
            vec![
                ReasonCode::Success,
                ReasonCode::GrantedQoS2,
                ReasonCode::NotAuthorized,
                ReasonCode::UnspecifiedError,
            ],
            AckProperties {
                reason_string: Some(mstr("dropped in 3.1.1")),
                ..AckProperties::default()
            },
        )
        .unwrap();
    assert_eq!(
        raw(&mut s),
        [0x90, 0x06, 0x01, 0x02, 0x00, 0x02, 0x80, 0x80]
    );
}

#[test]
fn unsubscribe_event_and_unsuback() {
    // [MQTT-3.10.4-4], [MQTT-3.10.4-5], [MQTT-3.11.3-1] (5.0): UNSUBACK with the same id,
    // sent even when nothing was subscribed, one code per filter in order; 3.1.1
    // ([MQTT-3.10.4-4], [MQTT-3.10.4-5] 3.1.1) has no codes: four bytes.
    let mut s = accepted(V5);
    let unsub = mqtt_streaming_proto::Unsubscribe {
        packet_id: pid(4),
        filters: vec![filter("a/#"), filter("b")],
        properties: UnsubscribeProperties {
            user_properties: vec![UserProperty::new("k", "v").unwrap()],
        },
    };
    s.feed(Packet::Unsubscribe(unsub.clone()));
    match &s.events()[..] {
        [ServerEvent::Unsubscribe(got)] => assert_eq!(got, &unsub),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.unsuback(4, &[ReasonCode::Success]),
        Err(CommandError::ReasonCodeCountMismatch {
            expected: 2,
            given: 1
        })
    ));
    s.unsuback(4, &[ReasonCode::Success, ReasonCode::NoSubscriptionExisted])
        .unwrap();
    match &s.sent()[..] {
        [Packet::UnsubAck(ack)] => {
            assert_eq!(ack.packet_id, pid(4));
            assert_eq!(
                ack.reason_codes,
                [ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
            );
        }
        other => panic!("{other:?}"),
    }

    let mut s = accepted(V3);
    s.feed(unsubscribe(0x0304, &["a", "b", "c"]));
    s.events();
    s.session
        .unsuback(s.now, pid(0x0304), vec![], AckProperties::default())
        .unwrap();
    assert_eq!(raw(&mut s), [0xB0, 0x02, 0x03, 0x04]);
}

#[test]
fn answers_are_scoped_to_the_connection() {
    // [MQTT-3.8.4-2] (3.1.1 and 5.0): a SUBACK answers this connection's SUBSCRIBE; another
    // connection's session cannot answer it (Alpakka let one client ack another's packet id),
    // and a new connection of the same client cannot answer the old one's either.
    let mut first = accepted(V3);
    let mut second = accepted(V3);
    first.feed(subscribe(1, &[("a", QoS::AtLeastOnce)]));
    first.events();
    assert_eq!(
        second.suback(1, &[ReasonCode::GrantedQoS1]),
        Err(CommandError::UnknownAck)
    );
    second.assert_quiet();
    first.assert_quiet();
    // The connection ends before the answer: the request dies with it.
    first.transport_closed();
    first.events();
    assert_eq!(
        first.suback(1, &[ReasonCode::GrantedQoS1]),
        Err(CommandError::NotConnected)
    );
    first.assert_quiet();
    let state = first.session.detach();
    let mut again = Server::new(V3, ServerConfig::default());
    again.connect(resume(V3, "c"));
    again.accept_with(Default::default(), state);
    assert_eq!(
        again.suback(1, &[ReasonCode::GrantedQoS1]),
        Err(CommandError::UnknownAck)
    );
    again.assert_quiet();
}

#[test]
fn reading_stops_while_too_many_requests_wait() {
    // Bounded memory: with max_pending_requests unanswered SUBSCRIBE/UNSUBSCRIBE the session
    // stops reading; the bytes stay in the caller's buffer until the application answers.
    let config = ServerConfig::default().with_max_pending_requests(2);
    let mut s = accepted_with(config, connect(V5, "c"));
    let mut bytes = BytesMut::new();
    bytes.extend_from_slice(&encode(&subscribe(1, &[("a", QoS::AtMostOnce)]), V5));
    bytes.extend_from_slice(&encode(&unsubscribe(2, &["b"]), V5));
    let third = encode(&subscribe(3, &[("c", QoS::AtMostOnce)]), V5);
    bytes.extend_from_slice(&third);
    bytes.extend_from_slice(&encode(&Packet::PingReq, V5));
    s.feed_bytes(&bytes);
    let events = s.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(s.sent().is_empty());
    assert_eq!(s.inbox.len(), third.len() + 2, "left unread");
    s.read();
    s.assert_quiet();
    assert_eq!(s.inbox.len(), third.len() + 2);
    s.unsuback(2, &[ReasonCode::Success]).unwrap();
    assert_eq!(briefs(&s.sent()), ["UNSUBACK2"]);
    s.read();
    // SUBSCRIBE 3 is read and fills the two slots again: the PINGREQ waits.
    assert!(matches!(&s.events()[..], [ServerEvent::Subscribe(sub)] if sub.packet_id == pid(3)));
    assert!(s.sent().is_empty());
    assert_eq!(s.inbox.len(), 2);
    s.suback(1, &[ReasonCode::Success]).unwrap();
    assert_eq!(briefs(&s.sent()), ["SUBACK1"]);
    s.read();
    assert!(s.inbox.is_empty());
    assert_eq!(briefs(&s.sent()), ["PINGRESP"]);
}

#[test]
fn reusing_a_pending_request_id_is_a_protocol_error_v5() {
    // [MQTT-2.2.1-3] (5.0): a new SUBSCRIBE must use an unused packet id; reusing the id of
    // one still waiting for its SUBACK is a Protocol Error (0x82).
    let mut s = accepted(V5);
    s.feed(subscribe(5, &[("a", QoS::AtMostOnce)]));
    s.events();
    s.feed(unsubscribe(5, &["a"]));
    assert_violation(
        &mut s,
        ReasonCode::ProtocolError,
        CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedPacket(
            mqtt_streaming_proto::PacketType::Unsubscribe,
        )),
    );
}

#[test]
fn problem_information_0_strips_reason_strings_and_user_properties_v5() {
    // [MQTT-3.1.2-29] (5.0): with Request Problem Information 0 the server sends no Reason
    // String or User Properties on SUBACK and UNSUBACK; with it absent (default 1) they go out.
    for (request, stripped) in [(Some(false), true), (None, false), (Some(true), false)] {
        let mut c = connect(V5, "c");
        c.properties.request_problem_information = request;
        let mut s = accepted_with(ServerConfig::default(), c);
        s.feed(subscribe(1, &[("a", QoS::AtMostOnce)]));
        s.feed(unsubscribe(2, &["a"]));
        s.events();
        let props = AckProperties {
            reason_string: Some(mstr("because")),
            user_properties: vec![UserProperty::new("k", "v").unwrap()],
        };
        s.suback_with(1, &[ReasonCode::NotAuthorized], props.clone())
            .unwrap();
        s.unsuback_with(2, &[ReasonCode::NotAuthorized], props.clone())
            .unwrap();
        let expected = if stripped {
            AckProperties::default()
        } else {
            props
        };
        match &s.sent()[..] {
            [Packet::SubAck(a), Packet::UnsubAck(b)] => {
                assert_eq!(a.properties, expected, "{request:?}");
                assert_eq!(b.properties, expected, "{request:?}");
                assert_eq!(a.reason_codes, [ReasonCode::NotAuthorized]);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn acks_do_not_exceed_the_clients_maximum_packet_size_v5() {
    // [MQTT-3.9.2-1], [MQTT-3.9.2-2], [MQTT-3.11.2-1], [MQTT-3.11.2-2] (5.0): a Reason String
    // or User Properties that would push a SUBACK or UNSUBACK over the client's Maximum Packet
    // Size are left out; the codes still go out.
    let mut c = connect(V5, "c");
    c.properties.maximum_packet_size = NonZeroU32::new(24);
    let mut s = accepted_with(ServerConfig::default(), c);
    s.feed(subscribe(1, &[("a", QoS::AtMostOnce)]));
    s.feed(unsubscribe(2, &["a"]));
    s.events();
    let props = AckProperties {
        reason_string: Some(mstr("a reason string far too long for 24 bytes")),
        user_properties: vec![],
    };
    s.suback_with(1, &[ReasonCode::GrantedQoS1], props.clone())
        .unwrap();
    s.unsuback_with(2, &[ReasonCode::Success], props).unwrap();
    let sent = s.sent();
    match &sent[..] {
        [Packet::SubAck(a), Packet::UnsubAck(b)] => {
            assert_eq!(a.reason_codes, [ReasonCode::GrantedQoS1]);
            assert_eq!(a.properties, AckProperties::default());
            assert_eq!(b.properties, AckProperties::default());
        }
        other => panic!("{other:?}"),
    }
    assert!(sent.iter().all(|p| encode(p, V5).len() <= 24));
    // Short properties that fit are kept.
    s.feed(subscribe(3, &[("a", QoS::AtMostOnce)]));
    s.events();
    let short = AckProperties {
        reason_string: Some(mstr("ok")),
        user_properties: vec![],
    };
    s.suback_with(3, &[ReasonCode::Success], short.clone())
        .unwrap();
    match &s.sent()[..] {
        [Packet::SubAck(a)] => assert_eq!(a.properties, short),
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_subscriptions_to_one_topic() {
    // Alpakka "two subscriptions to one topic" ([MQTT-3.8.4-3] 3.1.1: a repeated filter is the
    // application's to replace): both SUBSCRIBEs arrive and are answered separately, and
    // messages flow to the client afterwards.
    let mut s = accepted(V3);
    s.feed(subscribe(1, &[("news", QoS::AtLeastOnce)]));
    s.feed(subscribe(2, &[("news", QoS::AtMostOnce)]));
    let ids: Vec<_> = s
        .events()
        .into_iter()
        .map(|e| match e {
            ServerEvent::Subscribe(sub) => (sub.packet_id.get(), sub.subscriptions[0].options.qos),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, [(1, QoS::AtLeastOnce), (2, QoS::AtMostOnce)]);
    s.suback(2, &[ReasonCode::Success]).unwrap();
    s.suback(1, &[ReasonCode::GrantedQoS1]).unwrap();
    assert_eq!(briefs(&s.sent()), ["SUBACK2", "SUBACK1"]);
    s.publish(msg("news", QoS::AtMostOnce, "x"), 1).unwrap();
    assert_eq!(briefs(&s.sent()), ["PUBLISH0 news"]);
}

#[test]
fn unsubscribe_then_flows_finish() {
    // Alpakka "unsubscribe"; [MQTT-3.10.4-3] (3.1.1 and 5.0): QoS 1 and 2 deliveries already
    // started finish after the UNSUBACK.
    let mut s = accepted(V3);
    s.feed(subscribe(1, &[("t", QoS::AtLeastOnce)]));
    s.events();
    s.suback(1, &[ReasonCode::GrantedQoS1]).unwrap();
    s.publish(msg("t", QoS::AtLeastOnce, "x"), 7).unwrap();
    assert_eq!(briefs(&s.sent()), ["SUBACK1", "PUBLISH1 t"]);
    s.feed(unsubscribe(2, &["t"]));
    assert!(matches!(&s.events()[..], [ServerEvent::Unsubscribe(u)] if u.filters == [filter("t")]));
    s.unsuback(2, &[]).unwrap();
    assert_eq!(briefs(&s.sent()), ["UNSUBACK2"]);
    s.feed(puback(1));
    assert_eq!(published(&s.events()), [(7, ReasonCode::Success)]);
}
