//! Client session: the MQTT 5 limits a CONNACK announces (Receive Maximum, Maximum QoS, Retain
//! Available, Maximum Packet Size, Topic Alias Maximum, subscription features) and how the
//! session obeys them.
//!
//! Statement ids are MQTT 5.0 unless a test says otherwise.

mod support;

use core::num::{NonZeroU16, NonZeroU32};

use mqtt_streaming_proto::{
    ConnAck, ConnAckProperties, Packet, QoS, ReasonCode, SubscriptionId, SubscriptionOptions,
};
use mqtt_streaming_session::{
    AbandonCause, ClientConfig, ClientEvent, CommandError, Message, SubscribeRequest,
};
use support::client::*;

fn limited(props: ConnAckProperties, config: ClientConfig) -> Script<u32> {
    let mut ack = ConnAck::new(ReasonCode::Success);
    ack.properties = props;
    connected_with(V5, config, ack)
}

#[test]
fn receive_maximum_bounds_the_window_without_head_of_line_blocking() {
    // [MQTT-3.3.4-7], [MQTT-4.9.0-1], [MQTT-4.9.0-2] (5.0): no more than the server's Receive
    // Maximum QoS 1/2 publishes unacknowledged; the rest wait in order. Several messages on
    // one topic are in flight at once (no head-of-line blocking).
    let mut s = limited(
        ConnAckProperties {
            receive_maximum: NonZeroU16::new(3),
            ..Default::default()
        },
        ClientConfig::default(),
    );
    for t in 1..=6 {
        let qos = if t % 2 == 0 {
            QoS::ExactlyOnce
        } else {
            QoS::AtLeastOnce
        };
        s.publish(msg("one/topic", qos, "m"), t).unwrap();
    }
    assert_eq!(briefs(&s.sent()), ["PUBLISH1", "PUBLISH2", "PUBLISH3"]);
    assert_eq!(s.session.inflight_len(), 3);
    assert_eq!(s.session.queued_len(), 3);

    // A PUBREC does not free a slot (the flow continues until PUBCOMP) ...
    s.feed(pubrec(2));
    assert_eq!(briefs(&s.sent()), ["PUBREL2"]);
    // ... a PUBACK does, and so does a PUBCOMP.
    s.feed(puback(1));
    assert_eq!(briefs(&s.sent()), ["PUBLISH4"]);
    s.feed(pubcomp(2));
    assert_eq!(briefs(&s.sent()), ["PUBLISH5"]);
    assert_eq!(s.session.inflight_len(), 3);
    // [MQTT-4.9.0-2]: an error PUBREC frees the slot too.
    s.feed(Packet::PubRec(response(4, ReasonCode::UnspecifiedError)));
    assert_eq!(briefs(&s.sent()), ["PUBLISH6"]);
    assert_eq!(
        published(&s.events()),
        [
            (1, ReasonCode::Success),
            (2, ReasonCode::Success),
            (4, ReasonCode::UnspecifiedError)
        ]
    );
}

#[test]
fn window_is_the_smaller_of_ours_and_the_servers() {
    // [MQTT-4.9.0-1] (5.0): the send quota starts at a value not above the Receive Maximum;
    // our own max_inflight caps it further.
    let mut s = limited(
        ConnAckProperties {
            receive_maximum: NonZeroU16::new(10),
            ..Default::default()
        },
        ClientConfig::default().with_max_inflight(2),
    );
    for t in 1..=4 {
        s.publish(msg("t", QoS::AtLeastOnce, "m"), t).unwrap();
    }
    assert_eq!(publishes(&s.sent()).len(), 2);
}

#[test]
fn subscribe_and_qos0_are_not_blocked_by_a_full_window() {
    // [MQTT-3.3.4-8], [MQTT-4.9.0-3] (5.0): non-PUBLISH packets are not delayed by the
    // Receive Maximum, and acks are still answered.
    let mut s = limited(
        ConnAckProperties {
            receive_maximum: NonZeroU16::new(1),
            ..Default::default()
        },
        ClientConfig::default(),
    );
    s.publish(msg("t", QoS::AtLeastOnce, "m"), 1).unwrap();
    s.publish(msg("t", QoS::AtLeastOnce, "m"), 2).unwrap();
    s.sent();
    s.subscribe(SubscribeRequest::new(filter("f"), QoS::AtLeastOnce), 3)
        .unwrap();
    s.unsubscribe(
        mqtt_streaming_session::UnsubscribeRequest::new(filter("g")),
        4,
    )
    .unwrap();
    assert_eq!(briefs(&s.sent()), ["SUBSCRIBE2", "UNSUBSCRIBE3"]);
    s.feed(server_publish("in", QoS::AtLeastOnce, 1, "x"));
    assert_eq!(briefs(&s.sent()), ["PUBACK1"]);
}

#[test]
fn maximum_qos_is_obeyed() {
    // [MQTT-3.2.2-11] (5.0): no PUBLISH above the server's Maximum QoS: refused with the
    // message and token handed back.
    for max in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        let mut s = limited(
            ConnAckProperties {
                maximum_qos: Some(max),
                ..Default::default()
            },
            ClientConfig::default(),
        );
        for qos in qos_all() {
            let m = msg("t", qos, "m");
            let r = s.publish(m.clone(), 7);
            if qos <= max {
                r.unwrap();
                assert_eq!(publishes(&s.sent()).len(), 1);
            } else {
                let r = r.unwrap_err();
                assert_eq!(r.error, CommandError::QoSNotSupported);
                assert_eq!((r.command, r.token), (m, 7));
                assert!(s.sent().is_empty());
            }
        }
        assert_eq!(s.server_limits_max_qos(), max);
    }
}

trait Limits {
    fn server_limits_max_qos(&self) -> QoS;
}

impl Limits for Script<u32> {
    fn server_limits_max_qos(&self) -> QoS {
        self.session.server_limits().maximum_qos
    }
}

#[test]
fn retain_available_is_obeyed() {
    // [MQTT-3.2.2-14] (5.0): no RETAIN when Retain Available is 0.
    let mut s = limited(
        ConnAckProperties {
            retain_available: Some(false),
            ..Default::default()
        },
        ClientConfig::default(),
    );
    let m = msg("t", QoS::AtLeastOnce, "m").retained();
    let r = s.publish(m.clone(), 1).unwrap_err();
    assert_eq!(r.error, CommandError::RetainNotSupported);
    assert_eq!((r.command, r.token), (m, 1));
    assert!(s.sent().is_empty());
    s.publish(msg("t", QoS::AtLeastOnce, "m"), 2).unwrap();
    assert!(!publishes(&s.sent())[0].retain);
}

#[test]
fn maximum_packet_size_is_a_command_error_not_a_broken_connection() {
    // [MQTT-3.2.2-15] (5.0): nothing larger than the server's Maximum Packet Size is sent;
    // an oversized publish is refused with its message and token, and the connection lives.
    let mut s = limited(
        ConnAckProperties {
            maximum_packet_size: NonZeroU32::new(32),
            ..Default::default()
        },
        ClientConfig::default(),
    );
    // QoS 1, topic "t": 2 (fixed header) + 3 (topic) + 2 (id) + 1 (props) = 8, payload 24.
    let fits = Message::new(topic("t"), QoS::AtLeastOnce, vec![b'x'; 24]);
    let too_big = Message::new(topic("t"), QoS::AtLeastOnce, vec![b'x'; 25]);
    let r = s.publish(too_big.clone(), 1).unwrap_err();
    assert_eq!(r.error, CommandError::PacketTooLarge { size: 33, max: 32 });
    assert_eq!((r.command, r.token), (too_big, 1));
    s.publish(fits, 2).unwrap();
    let sent = s.sent();
    assert_eq!(sent[0].encoded_len(V5).unwrap(), 32);
    assert_eq!(
        s.session.state(),
        mqtt_streaming_session::ConnectionState::Connected
    );

    // A SUBSCRIBE too large for the server is refused the same way.
    let long = "f".repeat(40);
    let request = SubscribeRequest::new(filter(&long), QoS::AtMostOnce);
    let r = s.subscribe(request.clone(), 3).unwrap_err();
    assert!(matches!(
        r.error,
        CommandError::PacketTooLarge { max: 32, .. }
    ));
    assert_eq!((r.command, r.token), (request, 3));
    assert!(s.sent().is_empty());
}

#[test]
fn commands_queued_before_connack_are_refused_by_its_limits() {
    // [MQTT-3.2.2-11], [MQTT-3.2.2-14], [MQTT-3.2.2-15] (5.0): a command queued before the
    // limits were known is checked when they are, and abandoned with the message handed back.
    let mut s: Script<u32> = Script::new(V5, ClientConfig::default());
    s.connect(connect(V5, "c"));
    s.sent();
    let qos2 = msg("t", QoS::ExactlyOnce, "m");
    let retained = msg("t", QoS::AtMostOnce, "m").retained();
    let big = Message::new(topic("t"), QoS::AtMostOnce, vec![0; 100]);
    s.publish(qos2.clone(), 1).unwrap();
    s.publish(retained.clone(), 2).unwrap();
    s.publish(big.clone(), 3).unwrap();
    s.publish(msg("t", QoS::AtLeastOnce, "ok"), 4).unwrap();
    s.subscribe(SubscribeRequest::new(filter("a/+"), QoS::AtMostOnce), 5)
        .unwrap();
    let mut ack = ConnAck::new(ReasonCode::Success);
    ack.properties.maximum_qos = Some(QoS::AtLeastOnce);
    ack.properties.retain_available = Some(false);
    ack.properties.maximum_packet_size = NonZeroU32::new(64);
    ack.properties.wildcard_subscription_available = Some(false);
    s.feed(Packet::ConnAck(Box::new(ack)));
    let events = s.events();
    let mut abandoned = Vec::new();
    for e in &events {
        if let ClientEvent::Abandoned {
            token,
            cause: AbandonCause::Refused(error),
            message,
        } = e
        {
            abandoned.push((*token, error.clone(), message.clone()));
        }
    }
    assert_eq!(
        abandoned,
        [
            (5, CommandError::WildcardSubscriptionsNotSupported, None),
            (1, CommandError::QoSNotSupported, Some(qos2)),
            (2, CommandError::RetainNotSupported, Some(retained)),
            (
                3,
                CommandError::PacketTooLarge { size: 106, max: 64 },
                Some(big)
            ),
        ]
    );
    let sent = s.sent();
    assert_eq!(briefs(&sent), ["PUBLISH1"]);
    assert_eq!(&publishes(&sent)[0].payload[..], b"ok");
}

#[test]
fn subscription_features_the_server_lacks_are_refused() {
    // Wildcard Subscription Available, Subscription Identifiers Available and Shared
    // Subscription Available 0 (section 3.2.2.3 of 5.0): such SUBSCRIBEs are refused locally
    // instead of earning a DISCONNECT 0xA2 / 0xA1 / 0x9E.
    let mut s = limited(
        ConnAckProperties {
            wildcard_subscription_available: Some(false),
            subscription_identifiers_available: Some(false),
            shared_subscription_available: Some(false),
            ..Default::default()
        },
        ClientConfig::default(),
    );
    for (f, error) in [
        ("a/#", CommandError::WildcardSubscriptionsNotSupported),
        ("a/+/b", CommandError::WildcardSubscriptionsNotSupported),
        ("$share/g/a", CommandError::SharedSubscriptionsNotSupported),
    ] {
        let request = SubscribeRequest::new(filter("ok"), QoS::AtMostOnce)
            .and(filter(f), SubscriptionOptions::new(QoS::AtMostOnce));
        let r = s.subscribe(request.clone(), 1).unwrap_err();
        assert_eq!(r.error, error, "{f}");
        assert_eq!(r.command, request);
    }
    let mut request = SubscribeRequest::new(filter("a"), QoS::AtMostOnce);
    request.properties.subscription_identifier = SubscriptionId::new(5);
    let r = s.subscribe(request, 2).unwrap_err();
    assert_eq!(r.error, CommandError::SubscriptionIdentifiersNotSupported);
    assert!(s.sent().is_empty());
    s.subscribe(SubscribeRequest::new(filter("a/b"), QoS::AtMostOnce), 3)
        .unwrap();
    assert_eq!(briefs(&s.sent()), ["SUBSCRIBE1"]);
    let limits = s.session.server_limits();
    assert!(!limits.wildcard_subscriptions);
    assert!(!limits.subscription_identifiers);
    assert!(!limits.shared_subscriptions);
}

fn aliases_on(max: u16) -> Script<u32> {
    limited(
        ConnAckProperties {
            topic_alias_maximum: Some(max),
            ..Default::default()
        },
        ClientConfig::default().with_auto_topic_alias(true),
    )
}

fn alias_view(sent: &[Packet]) -> Vec<(String, Option<u16>)> {
    publishes(sent)
        .iter()
        .map(|p| {
            (
                p.topic.as_str().to_owned(),
                p.properties.topic_alias.map(NonZeroU16::get),
            )
        })
        .collect()
}

#[test]
fn automatic_topic_aliases_within_the_servers_maximum() {
    // [MQTT-3.2.2-17], [MQTT-3.3.2-8], [MQTT-3.3.2-9] (5.0): aliases from 1 up to the
    // server's Topic Alias Maximum, never 0; the first PUBLISH to a topic carries topic and
    // alias, later ones an empty topic and the alias; topics beyond the maximum go unaliased.
    let mut s = aliases_on(2);
    for (t, qos) in [
        ("a", QoS::AtMostOnce),
        ("b", QoS::AtLeastOnce),
        ("a", QoS::ExactlyOnce),
        ("c", QoS::AtMostOnce),
        ("b", QoS::AtMostOnce),
        ("c", QoS::AtLeastOnce),
    ] {
        s.publish(msg(t, qos, "m"), 0).unwrap();
    }
    assert_eq!(
        alias_view(&s.sent()),
        [
            ("a".to_owned(), Some(1)),
            ("b".to_owned(), Some(2)),
            (String::new(), Some(1)),
            ("c".to_owned(), None),
            (String::new(), Some(2)),
            ("c".to_owned(), None),
        ]
    );
}

#[test]
fn automatic_topic_aliases_are_off_without_a_server_maximum() {
    // [MQTT-3.2.2-18] (5.0): Topic Alias Maximum absent or 0: no alias at all.
    let mut s = aliases_on(0);
    s.publish(msg("a", QoS::AtMostOnce, "m"), 0).unwrap();
    s.publish(msg("a", QoS::AtMostOnce, "m"), 0).unwrap();
    assert_eq!(
        alias_view(&s.sent()),
        [("a".to_owned(), None), ("a".to_owned(), None)]
    );
    // An alias set by hand is refused when the server allows none.
    let mut m = msg("a", QoS::AtMostOnce, "m");
    m.properties.topic_alias = NonZeroU16::new(1);
    let r = s.publish(m.clone(), 5).unwrap_err();
    assert!(matches!(
        r.error,
        CommandError::TopicAliasAboveMaximum { alias: 1, max: 0 }
    ));
    assert_eq!((r.command, r.token), (m, 5));
}

#[test]
fn automatic_topic_aliases_reset_on_reconnect_and_resends_carry_the_topic() {
    // [MQTT-3.3.2-7] (5.0): alias mappings do not outlive the connection: after a reconnect
    // the first PUBLISH to a topic carries it again, and re-sent PUBLISHes carry their topic.
    let mut s = aliases_on(5);
    s.publish(msg("a", QoS::AtLeastOnce, "1"), 1).unwrap();
    s.publish(msg("a", QoS::AtLeastOnce, "2"), 2).unwrap();
    assert_eq!(
        alias_view(&s.sent()),
        [("a".to_owned(), Some(1)), (String::new(), Some(1))]
    );
    s.transport_closed();
    s.events();
    s.connect(resume(V5, "c"));
    s.sent();
    let mut ack = ConnAck::new(ReasonCode::Success);
    ack.session_present = true;
    ack.properties.topic_alias_maximum = Some(5);
    s.feed(Packet::ConnAck(Box::new(ack)));
    s.publish(msg("a", QoS::AtMostOnce, "3"), 3).unwrap();
    s.publish(msg("a", QoS::AtMostOnce, "4"), 4).unwrap();
    let sent = s.sent();
    assert_eq!(
        briefs(&sent),
        ["PUBLISH1 DUP", "PUBLISH2 DUP", "PUBLISH0 a", "PUBLISH0 "]
    );
    assert_eq!(
        alias_view(&sent),
        [
            ("a".to_owned(), None),
            ("a".to_owned(), None),
            ("a".to_owned(), Some(1)),
            (String::new(), Some(1)),
        ]
    );
}

#[test]
fn automatic_topic_alias_never_pushes_a_packet_over_the_maximum_size() {
    // [MQTT-3.2.2-15] (5.0): the Topic Alias property adds 3 bytes; a publish that fits the
    // server's Maximum Packet Size without it must not be sent larger than the maximum.
    let mut ack = ConnAck::new(ReasonCode::Success);
    ack.properties.topic_alias_maximum = Some(5);
    ack.properties.maximum_packet_size = NonZeroU32::new(40);
    let mut s: Script<u32> =
        connected_with(V5, ClientConfig::default().with_auto_topic_alias(true), ack);
    // QoS 0, topic "abc": 2 + 5 + 1 (props) = 8, payload 32 -> 40 bytes without an alias.
    let m = Message::new(topic("abc"), QoS::AtMostOnce, vec![b'x'; 32]);
    let outcome = s.publish(m.clone(), 1);
    let sent = s.sent();
    for p in &sent {
        assert!(
            p.encoded_len(V5).unwrap() <= 40,
            "sent {} bytes, over the server's maximum: {p:?}",
            p.encoded_len(V5).unwrap()
        );
    }
    // It fits without an alias, so it goes out without one (and no alias is established).
    outcome.unwrap();
    assert_eq!(alias_view(&sent), [("abc".to_owned(), None)]);
    assert_eq!(sent[0].encoded_len(V5).unwrap(), 40);
    // A smaller publish to the same topic has room for the alias: topic and alias go out
    // together, so the server learns the mapping before it is used with an empty topic.
    s.publish(Message::new(topic("abc"), QoS::AtMostOnce, "small"), 2)
        .unwrap();
    s.publish(Message::new(topic("abc"), QoS::AtMostOnce, "small"), 3)
        .unwrap();
    assert_eq!(
        alias_view(&s.sent()),
        [("abc".to_owned(), Some(1)), (String::new(), Some(1))]
    );
}
