//! Client session: SUBSCRIBE and UNSUBSCRIBE with every option, per-filter results, wrong
//! answers, connection loss with requests pending, and a publish racing an unsubscribe.
//!
//! Statement ids name their version (3.1.1 or 5.0) in each test's first comment line.

mod support;

use mqtt_streaming_proto::{
    AckProperties, MqttString, Packet, PacketType, QoS, ReasonCode, RetainHandling, SubAck,
    Subscribe, SubscribeProperties, Subscription, SubscriptionId, SubscriptionOptions, Unsubscribe,
    UnsubscribeProperties, UserProperty,
};
use mqtt_streaming_session::{
    AbandonCause, ClientEvent, CloseReason, CommandError, Initiator, ProtocolViolation,
    SubscribeRequest, UnsubscribeRequest,
};
use support::client::*;

fn every_option() -> SubscribeRequest {
    SubscribeRequest {
        subscriptions: vec![
            Subscription {
                filter: filter("a/+"),
                options: SubscriptionOptions {
                    qos: QoS::AtMostOnce,
                    no_local: true,
                    retain_as_published: false,
                    retain_handling: RetainHandling::SendAtSubscribe,
                },
            },
            Subscription {
                filter: filter("b/#"),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: false,
                    retain_as_published: true,
                    retain_handling: RetainHandling::SendAtSubscribeIfNew,
                },
            },
            Subscription {
                filter: filter("$share/grp/c"),
                options: SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: false,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            },
        ],
        properties: SubscribeProperties {
            subscription_identifier: SubscriptionId::new(268_435_455),
            user_properties: vec![
                UserProperty::new("k", "1").unwrap(),
                UserProperty::new("k", "2").unwrap(),
            ],
        },
    }
}

#[test]
fn v5_subscribe_carries_every_option_and_reports_per_filter_results() {
    // [MQTT-3.8.4-2], [MQTT-3.8.4-6], [MQTT-3.9.3-1] (5.0): the SUBACK with the SUBSCRIBE's id
    // holds one code per filter, in order; the completion hands them over with the token.
    let mut s = connected(V5);
    let request = every_option();
    s.subscribe(request.clone(), 77).unwrap();
    let sent = s.sent();
    let [Packet::Subscribe(sub)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(
        *sub,
        Subscribe {
            packet_id: pid(1),
            subscriptions: request.subscriptions.clone(),
            properties: request.properties.clone(),
        }
    );
    let codes = [
        ReasonCode::GrantedQoS1,
        ReasonCode::NotAuthorized,
        ReasonCode::GrantedQoS2,
    ];
    let suback = SubAck {
        packet_id: pid(1),
        reason_codes: codes.to_vec(),
        properties: AckProperties {
            reason_string: Some(MqttString::new("partly").unwrap()),
            user_properties: vec![],
        },
    };
    s.feed(Packet::SubAck(suback.clone()));
    match &s.events()[..] {
        [ClientEvent::Subscribed {
            token: 77,
            suback: got,
        }] => assert_eq!(*got, suback),
        other => panic!("{other:?}"),
    }
    assert!(s.sent().is_empty());
}

#[test]
fn v311_subscribe_with_several_filters() {
    // [MQTT-3.8.4-4], [MQTT-3.8.4-5], [MQTT-3.9.3-1] (3.1.1): one SUBACK, one return code per
    // filter in order, 0x80 for a failure.
    let mut s = connected(V3);
    let request = SubscribeRequest::new(filter("a"), QoS::ExactlyOnce)
        .and(filter("b/#"), SubscriptionOptions::new(QoS::AtMostOnce))
        .and(filter("c/+"), SubscriptionOptions::new(QoS::AtLeastOnce));
    s.subscribe(request.clone(), 1).unwrap();
    let sent = s.sent();
    let [Packet::Subscribe(sub)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(sub.subscriptions, request.subscriptions);
    // Raw 3.1.1 SUBACK: id 1, codes 2, 0, 0x80.
    s.feed_bytes(&[0x90, 0x05, 0x00, 0x01, 0x02, 0x00, 0x80]);
    match &s.events()[..] {
        [ClientEvent::Subscribed { token: 1, suback }] => assert_eq!(
            suback.reason_codes,
            [
                ReasonCode::GrantedQoS2,
                ReasonCode::Success,
                ReasonCode::UnspecifiedError
            ]
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn suback_with_the_wrong_number_of_codes_is_a_protocol_error() {
    // [MQTT-3.8.4-6], [MQTT-3.9.3-1] (5.0) / [MQTT-3.8.4-5] (3.1.1): one code per filter; a
    // SUBACK with another count is a protocol error (v5: DISCONNECT 0x82). The request's token
    // comes back as abandoned.
    for version in [V3, V5] {
        let mut s = connected(version);
        let request = SubscribeRequest::new(filter("a"), QoS::AtMostOnce)
            .and(filter("b"), SubscriptionOptions::new(QoS::AtMostOnce));
        s.subscribe(request, 9).unwrap();
        s.sent();
        s.feed(suback(1, &[ReasonCode::Success]));
        let sent = s.sent();
        if version == V5 {
            assert_eq!(briefs(&sent), ["DISCONNECT(0x82)"]);
        } else {
            assert!(sent.is_empty());
        }
        let events = s.events();
        assert!(
            matches!(
                events[0],
                ClientEvent::Abandoned {
                    token: 9,
                    cause: AbandonCause::ConnectionLost,
                    message: None
                }
            ),
            "{events:?}"
        );
        assert_closed(
            &events,
            Initiator::Session,
            CloseReason::ProtocolViolation(ProtocolViolation::AckCountMismatch),
        );
    }
}

#[test]
fn v5_suback_or_unsuback_for_nothing_pending_is_a_protocol_error() {
    // [MQTT-3.8.4-2], [MQTT-3.10.4-5] (5.0): acks carry the id of a request we sent; anything
    // else (unknown id, or the wrong kind of ack for the id) is a protocol error.
    let cases = [
        (suback(3, &[ReasonCode::Success]), PacketType::SubAck, 3),
        (unsuback(3, &[ReasonCode::Success]), PacketType::UnsubAck, 3),
        (unsuback(1, &[ReasonCode::Success]), PacketType::UnsubAck, 1),
    ];
    for (packet, kind, id) in cases {
        let mut s = connected(V5);
        s.subscribe(SubscribeRequest::new(filter("a"), QoS::AtMostOnce), 1)
            .unwrap();
        s.sent();
        s.feed(packet);
        let sent = s.sent();
        assert_eq!(briefs(&sent), ["DISCONNECT(0x82)"]);
        assert_closed(
            &s.events(),
            Initiator::Session,
            CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedAck(kind, pid(id))),
        );
    }
}

#[test]
fn v5_unsubscribe_with_properties_and_per_filter_results() {
    // [MQTT-3.10.4-4], [MQTT-3.10.4-5], [MQTT-3.11.3-1] (5.0): one UNSUBACK with the id and
    // one code per filter, in order.
    let mut s = connected(V5);
    let request = UnsubscribeRequest {
        filters: vec![filter("a/+"), filter("b/#")],
        properties: UnsubscribeProperties {
            user_properties: vec![UserProperty::new("why", "done").unwrap()],
        },
    };
    s.unsubscribe(request.clone(), 5).unwrap();
    let sent = s.sent();
    let [Packet::Unsubscribe(u)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(
        *u,
        Unsubscribe {
            packet_id: pid(1),
            filters: request.filters.clone(),
            properties: request.properties.clone(),
        }
    );
    let codes = [ReasonCode::Success, ReasonCode::NoSubscriptionExisted];
    s.feed(unsuback(1, &codes));
    match &s.events()[..] {
        [ClientEvent::Unsubscribed { token: 5, unsuback }] => {
            assert_eq!(unsuback.reason_codes, codes)
        }
        other => panic!("{other:?}"),
    }

    // [MQTT-3.11.3-1] (5.0): a count mismatch is a protocol error.
    s.unsubscribe(request, 6).unwrap();
    s.sent();
    s.feed(unsuback(2, &[ReasonCode::Success]));
    assert_eq!(briefs(&s.sent()), ["DISCONNECT(0x82)"]);
    let events = s.events();
    assert!(matches!(
        events[0],
        ClientEvent::Abandoned {
            token: 6,
            cause: AbandonCause::ConnectionLost,
            ..
        }
    ));
    assert_closed(
        &events,
        Initiator::Session,
        CloseReason::ProtocolViolation(ProtocolViolation::AckCountMismatch),
    );
}

#[test]
fn v311_unsubscribe_is_answered_by_an_unsuback_without_codes() {
    // [MQTT-3.10.4-4], [MQTT-3.10.4-6] (3.1.1): one UNSUBACK with the same id for all filters.
    let mut s = connected(V3);
    s.unsubscribe(
        UnsubscribeRequest {
            filters: vec![filter("a"), filter("b")],
            properties: UnsubscribeProperties::default(),
        },
        4,
    )
    .unwrap();
    assert_eq!(briefs(&s.sent()), ["UNSUBSCRIBE1"]);
    s.feed_bytes(&[0xB0, 0x02, 0x00, 0x01]);
    assert!(matches!(
        s.events()[..],
        [ClientEvent::Unsubscribed { token: 4, .. }]
    ));
}

#[test]
fn empty_requests_are_refused() {
    // [MQTT-3.8.3-3], [MQTT-3.10.3-2] (3.1.1) / [MQTT-3.8.3-2], [MQTT-3.10.3-2] (5.0): at
    // least one filter.
    let mut s = connected(V5);
    let empty = SubscribeRequest {
        subscriptions: vec![],
        properties: SubscribeProperties::default(),
    };
    let r = s.subscribe(empty.clone(), 1).unwrap_err();
    assert!(matches!(r.error, CommandError::Encode(_)));
    assert_eq!((r.command, r.token), (empty, 1));
    let empty = UnsubscribeRequest {
        filters: vec![],
        properties: UnsubscribeProperties::default(),
    };
    let r = s.unsubscribe(empty.clone(), 2).unwrap_err();
    assert!(matches!(r.error, CommandError::Encode(_)));
    assert_eq!((r.command, r.token), (empty, 2));
    s.assert_quiet();
}

#[test]
fn pending_requests_are_abandoned_when_the_connection_is_lost() {
    // Alpakka "SUBACK timeout" equivalent: a SUBSCRIBE or UNSUBSCRIBE never answered before
    // the connection ends comes back as Abandoned(ConnectionLost) (not re-sent on reconnect);
    // one still queued (never sent) is sent on the next connection.
    let mut s = connected(V5);
    s.subscribe(SubscribeRequest::new(filter("a"), QoS::AtLeastOnce), 1)
        .unwrap();
    s.unsubscribe(UnsubscribeRequest::new(filter("b")), 2)
        .unwrap();
    s.sent();
    s.transport_closed();
    let events = s.events();
    let abandoned: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Abandoned {
                token,
                cause: AbandonCause::ConnectionLost,
                message: None,
            } => Some(*token),
            _ => None,
        })
        .collect();
    assert_eq!(abandoned, [1, 2]);
    assert!(
        matches!(events.last(), Some(ClientEvent::Closed { .. })),
        "{events:?}"
    );
    assert_closed(&events, Initiator::Transport, CloseReason::TransportClosed);

    // Queued while disconnected: sent after the next CONNACK, ids start afresh.
    s.subscribe(SubscribeRequest::new(filter("c"), QoS::AtLeastOnce), 3)
        .unwrap();
    s.assert_quiet();
    s.connect(connect(V5, "c"));
    assert_eq!(briefs(&s.sent()), ["CONNECT"]);
    s.feed(connack(false));
    assert_eq!(briefs(&s.sent()), ["SUBSCRIBE1"]);
    // Id 1 now belongs to the new request: its SUBACK completes it.
    s.feed(suback(1, &[ReasonCode::GrantedQoS1]));
    let events = s.events();
    assert!(matches!(
        events[..],
        [
            ClientEvent::Connected(_),
            ClientEvent::Subscribed { token: 3, .. }
        ]
    ));
}

#[test]
fn suback_that_never_comes_is_caught_by_keep_alive() {
    // Alpakka "SUBACK timeout": there is no per-request timer; a server that stops answering
    // is detected by keep alive ([MQTT-3.1.2-24] (3.1.1) is the server's 1.5x rule, applied
    // by the client symmetrically) and the pending SUBSCRIBE is abandoned then.
    let mut s: Script<u32> = Script::new(V3, mqtt_streaming_session::ClientConfig::default());
    let mut c = connect(V3, "c");
    c.keep_alive = 10;
    s.connect(c);
    s.sent();
    s.feed(connack(false));
    s.events();
    s.subscribe(SubscribeRequest::new(filter("a"), QoS::AtLeastOnce), 1)
        .unwrap();
    s.sent();
    s.advance(15_000);
    let events = s.events();
    assert!(matches!(
        events[0],
        ClientEvent::Abandoned {
            token: 1,
            cause: AbandonCause::ConnectionLost,
            ..
        }
    ));
    assert_closed(&events, Initiator::Session, CloseReason::KeepAliveTimeout);
}

#[test]
fn unsubscribe_with_a_publish_racing_it() {
    // Alpakka "unsubscribe with a publish racing it"; [MQTT-3.10.4-3] (3.1.1 and 5.0): the
    // server finishes QoS 1/2 deliveries it started, before and after the UNSUBACK; the client
    // delivers and acknowledges them normally ([MQTT-4.5.0-2]).
    for version in [V3, V5] {
        let mut s = connected(version);
        s.subscribe(SubscribeRequest::new(filter("r/#"), QoS::ExactlyOnce), 1)
            .unwrap();
        s.feed(suback(1, &[ReasonCode::GrantedQoS2]));
        s.sent();
        s.events();
        s.feed(server_publish("r/1", QoS::ExactlyOnce, 10, "started"));
        s.unsubscribe(UnsubscribeRequest::new(filter("r/#")), 2)
            .unwrap();
        // A publish on the topic crosses the UNSUBSCRIBE on the wire.
        s.feed(server_publish("r/2", QoS::AtLeastOnce, 11, "racing"));
        s.feed(if version == V5 {
            unsuback(2, &[ReasonCode::Success])
        } else {
            unsuback(2, &[])
        });
        // The QoS 2 delivery started before finishes after the UNSUBACK.
        s.feed(pubrel(10));
        assert_eq!(
            briefs(&s.sent()),
            ["PUBREC10", "UNSUBSCRIBE2", "PUBACK11", "PUBCOMP10"]
        );
        let events = s.events();
        let topics: Vec<_> = delivered(&events).into_iter().map(|d| d.0).collect();
        assert_eq!(topics, ["r/1", "r/2"]);
        assert!(matches!(
            events.last(),
            Some(ClientEvent::Unsubscribed { token: 2, .. })
        ));
        assert_eq!(
            s.session.state(),
            mqtt_streaming_session::ConnectionState::Connected
        );
    }
}

#[test]
fn v5_no_local_on_a_shared_subscription_is_refused() {
    // [MQTT-3.8.3-4] (5.0): No Local on a Shared Subscription is a protocol error, so the
    // session refuses to send it rather than be disconnected for it.
    let mut s = connected(V5);
    let mut options = SubscriptionOptions::new(QoS::AtLeastOnce);
    options.no_local = true;
    let request =
        SubscribeRequest::new(filter("a"), QoS::AtMostOnce).and(filter("$share/g/t"), options);
    let r = s.subscribe(request.clone(), 1).unwrap_err();
    assert_eq!(
        r.error,
        CommandError::Encode(mqtt_streaming_proto::EncodeError::NoLocalOnSharedSubscription)
    );
    assert_eq!((r.command, r.token), (request, 1));
    s.assert_quiet();
    // No Local on an ordinary filter is fine.
    let request = SubscribeRequest::new(filter("a"), QoS::AtMostOnce).and(filter("t"), options);
    s.subscribe(request, 2).unwrap();
    let sent = s.sent();
    assert!(matches!(&sent[..], [Packet::Subscribe(p)] if p.subscriptions[1].options.no_local));
}

#[test]
fn requests_and_publishes_share_one_packet_id_space() {
    // [MQTT-2.2.1-3] (5.0; [MQTT-2.3.1-2] in 3.1.1): SUBSCRIBE, UNSUBSCRIBE and PUBLISH take
    // their identifiers from one space, none reused while in flight. A publish acknowledgement
    // for a request's identifier completes nothing and leaves the request waiting.
    let mut s = connected(V5);
    s.subscribe(SubscribeRequest::new(filter("a"), QoS::AtLeastOnce), 1)
        .unwrap();
    s.publish(msg("t", QoS::AtLeastOnce, "m"), 2).unwrap();
    s.unsubscribe(UnsubscribeRequest::new(filter("a")), 3)
        .unwrap();
    assert_eq!(
        briefs(&s.sent()),
        ["SUBSCRIBE1", "PUBLISH2", "UNSUBSCRIBE3"]
    );
    s.feed(puback(1));
    s.feed(puback(3));
    s.assert_quiet();
    s.feed(suback(1, &[ReasonCode::GrantedQoS1]));
    s.feed(puback(2));
    s.feed(unsuback(3, &[ReasonCode::Success]));
    let events = s.events();
    assert!(
        matches!(
            events[..],
            [
                ClientEvent::Subscribed { token: 1, .. },
                ClientEvent::Published { token: 2, .. },
                ClientEvent::Unsubscribed { token: 3, .. }
            ]
        ),
        "{events:?}"
    );
    // The allocator moves on: the next identifier is 4, not a freed one.
    s.publish(msg("t", QoS::AtLeastOnce, "m"), 4).unwrap();
    assert_eq!(briefs(&s.sent()), ["PUBLISH4"]);
    assert_eq!(s.session.inflight_len(), 1);
}
