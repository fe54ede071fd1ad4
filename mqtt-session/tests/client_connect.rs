//! Client session: CONNECT options on the wire, CONNACK handling (timeout, refusal, session
//! present), and commands issued before CONNACK.
//!
//! Statement ids name their version (3.1.1 or 5.0) in each test's first comment line.

mod support;

use core::num::{NonZeroU16, NonZeroU32};
use core::time::Duration;

use bytes::Bytes;
use mqtt_streaming_proto::{
    ConnAck, Connect, ConnectProperties, MqttString, Packet, PacketType, PayloadFormat, QoS,
    ReasonCode, TopicName, UserProperty, Will, WillProperties,
};
use mqtt_streaming_session::{
    ClientConfig, ClientEvent, CloseReason, CommandError, ConnectionState, Initiator, Instant,
    ProtocolViolation, SubscribeRequest, UnsubscribeRequest,
};
use support::client::*;

fn sent_connect(s: &mut Script<u32>) -> Connect {
    match &s.sent()[..] {
        [Packet::Connect(c)] => (**c).clone(),
        other => panic!("expected one CONNECT, got {other:?}"),
    }
}

#[test]
fn v311_connect_carries_every_option() {
    // [MQTT-3.1.2-9], [MQTT-3.1.2-14], [MQTT-3.1.2-17], [MQTT-3.1.2-19], [MQTT-3.1.2-21]
    // (3.1.1): will QoS/retain/topic/message, user name and password reach the wire as given.
    for clean in [true, false] {
        for qos in qos_all() {
            for retain in [false, true] {
                let mut connect = Connect::new(support::V3, MqttString::new("dev-1").unwrap());
                connect.clean_start = clean;
                connect.keep_alive = 17;
                connect.will = Some(Will {
                    topic: topic("dev/1/status"),
                    payload: Bytes::from_static(b"offline"),
                    qos,
                    retain,
                    properties: WillProperties::default(),
                });
                connect.username = Some(MqttString::new("alice").unwrap());
                connect.password = Some(Bytes::from_static(b"s3cret\0\xff"));
                let mut s = Script::new(support::V3, ClientConfig::default());
                s.connect(connect.clone());
                assert_eq!(sent_connect(&mut s), connect);
                assert_eq!(s.session.state(), ConnectionState::Connecting);
            }
        }
    }
}

#[test]
fn v311_connect_minimal_and_without_will_or_credentials() {
    // [MQTT-3.1.2-11], [MQTT-3.1.2-18], [MQTT-3.1.2-20] (3.1.1): no will, no user name, no
    // password when not given; the config's v5 limits are not added to a 3.1.1 CONNECT.
    let connect = Connect::new(support::V3, MqttString::new("").unwrap());
    let mut s = Script::new(
        support::V3,
        ClientConfig::default()
            .with_receive_maximum(3)
            .with_topic_alias_maximum(4),
    );
    s.connect(connect.clone());
    let sent = sent_connect(&mut s);
    assert_eq!(sent, connect);
    assert_eq!(sent.properties, ConnectProperties::default());
}

fn every_v5_property() -> Connect {
    let mut connect = Connect::new(support::V5, MqttString::new("dev-5").unwrap());
    connect.clean_start = false;
    connect.keep_alive = 45;
    connect.username = Some(MqttString::new("bob").unwrap());
    connect.password = Some(Bytes::from_static(b"pw"));
    connect.will = Some(Will {
        topic: topic("dev/5/will"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: WillProperties {
            will_delay_interval: Some(120),
            payload_format: Some(PayloadFormat::Utf8),
            message_expiry_interval: Some(3600),
            content_type: Some(MqttString::new("text/plain").unwrap()),
            response_topic: Some(TopicName::new("dev/5/reply").unwrap()),
            correlation_data: Some(Bytes::from_static(b"\x01\x02")),
            user_properties: vec![
                UserProperty::new("k", "v1").unwrap(),
                UserProperty::new("k", "v2").unwrap(),
            ],
        },
    });
    connect.properties = ConnectProperties {
        session_expiry_interval: Some(86_400),
        receive_maximum: NonZeroU16::new(5),
        maximum_packet_size: NonZeroU32::new(2048),
        topic_alias_maximum: Some(3),
        request_response_information: Some(true),
        request_problem_information: Some(false),
        user_properties: vec![UserProperty::new("app", "test").unwrap()],
        authentication_method: Some(MqttString::new("SCRAM-SHA-1").unwrap()),
        authentication_data: Some(Bytes::from_static(b"client-first")),
    };
    connect
}

#[test]
fn v5_connect_carries_every_property_and_will_property() {
    // [MQTT-3.1.2-9] (5.0): the Will Properties (incl. Will Delay Interval), will topic and
    // payload are present; every CONNECT property reaches the wire unchanged when set.
    let connect = every_v5_property();
    let mut s = Script::new(support::V5, ClientConfig::default());
    s.connect(connect.clone());
    assert_eq!(sent_connect(&mut s), connect);
}

#[test]
fn v5_connect_limits_left_unset_come_from_the_config() {
    // [MQTT-3.3.2-10] (5.0): the Topic Alias Maximum the client announces is the one it then
    // accepts; Receive Maximum and Maximum Packet Size are announced from the config too.
    let config = ClientConfig::default()
        .with_receive_maximum(7)
        .with_max_packet_size(5000)
        .with_topic_alias_maximum(9);
    let mut s = Script::new(support::V5, config);
    s.connect(connect(support::V5, "c"));
    let p = sent_connect(&mut s).properties;
    assert_eq!(p.receive_maximum, NonZeroU16::new(7));
    assert_eq!(p.maximum_packet_size, NonZeroU32::new(5000));
    assert_eq!(p.topic_alias_maximum, Some(9));

    // Topic Alias Maximum 0 in the config: the property is left out (absent means 0).
    let mut s = Script::new(
        support::V5,
        ClientConfig::default().with_topic_alias_maximum(0),
    );
    s.connect(connect(support::V5, "c"));
    assert_eq!(sent_connect(&mut s).properties.topic_alias_maximum, None);
}

#[test]
fn v5_connect_limits_given_in_connect_win_and_are_enforced() {
    // [MQTT-3.3.4-9] (5.0, the server's duty; the client enforces it with 0x93): a Receive
    // Maximum set in the CONNECT (2) overrides the config (1024) and is what is enforced.
    let mut s: Script<u32> = Script::new(
        support::V5,
        ClientConfig::default().with_ack_mode(mqtt_streaming_session::AckMode::Manual),
    );
    let mut c = connect(support::V5, "c");
    c.properties.receive_maximum = NonZeroU16::new(2);
    s.connect(c);
    assert_eq!(
        sent_connect(&mut s).properties.receive_maximum,
        NonZeroU16::new(2)
    );
    s.feed(connack(false));
    s.events();
    s.feed(server_publish("t", QoS::AtLeastOnce, 1, "a"));
    s.feed(server_publish("t", QoS::AtLeastOnce, 2, "b"));
    assert_eq!(delivered(&s.events()).len(), 2);
    s.feed(server_publish("t", QoS::AtLeastOnce, 3, "c"));
    assert_violation(
        &mut s,
        ReasonCode::ReceiveMaximumExceeded,
        CloseReason::ProtocolViolation(ProtocolViolation::ReceiveMaximumExceeded),
    );
}

#[test]
fn v5_connect_maximum_packet_size_is_enforced_inbound() {
    // [MQTT-3.1.2-24] (5.0): the server must not exceed our Maximum Packet Size; a packet that
    // does is refused from its fixed header with DISCONNECT 0x95.
    let mut s: Script<u32> = Script::new(support::V5, ClientConfig::default());
    let mut c = connect(support::V5, "c");
    c.properties.maximum_packet_size = NonZeroU32::new(64);
    s.connect(c);
    s.sent();
    s.feed(connack(false));
    s.events();
    // A PUBLISH of exactly 64 bytes is fine: 2 (fixed header) + 3 (topic) + 1 (props) + 58.
    let payload: &'static str = Box::leak("x".repeat(58).into_boxed_str());
    s.feed(server_publish("t", QoS::AtMostOnce, 1, payload));
    assert_eq!(delivered(&s.events()).len(), 1);
    let payload: &'static str = Box::leak("x".repeat(59).into_boxed_str());
    // Only the fixed header of the oversized packet is given: it is refused before its body.
    let mut bytes = bytes::BytesMut::new();
    server_publish("t", QoS::AtMostOnce, 1, payload)
        .encode(support::V5, &mut bytes)
        .unwrap();
    s.feed_bytes(&bytes[..2]);
    assert!(matches!(
        s.events()[..],
        [ClientEvent::Closed {
            initiator: Initiator::Session,
            reason: CloseReason::Malformed(
                mqtt_streaming_proto::DecodeError::PacketTooLarge { .. }
            )
        }]
    ));
    let sent = s.sent();
    assert!(
        matches!(&sent[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::PacketTooLarge),
        "{sent:?}"
    );
}

#[test]
fn connect_that_cannot_be_encoded_is_refused_and_changes_nothing() {
    // v5 Authentication Data without an Authentication Method is not encodable. Issue 11: the
    // CONNECT comes back exactly as given (the limits the session fills in are not left in it).
    let mut s: Script<u32> = Script::new(support::V5, ClientConfig::default());
    let mut c = connect(support::V5, "c");
    c.properties.authentication_data = Some(Bytes::from_static(b"x"));
    let rejected = s.session.connect(s.now, c.clone()).unwrap_err();
    assert!(matches!(rejected.error, CommandError::Encode(_)));
    assert_eq!(rejected.connect, c);
    s.drain();
    s.assert_quiet();
    assert_eq!(s.session.state(), ConnectionState::Disconnected);
    assert_eq!(s.session.poll_timeout(), None);
}

#[test]
fn connect_while_connecting_or_connected_is_refused() {
    let mut s: Script<u32> = Script::new(support::V5, ClientConfig::default());
    s.connect(connect(support::V5, "c"));
    s.sent();
    let again = connect(support::V5, "again");
    let rejected = s.session.connect(s.now, again.clone()).unwrap_err();
    assert_eq!(rejected.error, CommandError::AlreadyConnected);
    assert_eq!(rejected.connect, again);
    s.feed(connack(false));
    s.events();
    assert_eq!(
        s.session
            .connect(s.now, connect(support::V5, "c"))
            .unwrap_err()
            .error,
        CommandError::AlreadyConnected
    );
    s.drain();
    s.assert_quiet();
}

#[test]
fn connack_timeout_closes_the_connection() {
    // Alpakka "CONNACK timeout": no CONNACK within the configured time closes the connection.
    for version in [support::V3, support::V5] {
        let mut s: Script<u32> = Script::new(
            version,
            ClientConfig::default().with_connack_timeout(Duration::from_secs(5)),
        );
        s.advance(1000);
        s.connect(connect(version, "c"));
        s.sent();
        assert_eq!(s.session.poll_timeout(), Some(Instant::from_millis(6000)));
        s.advance(4999);
        s.assert_quiet();
        assert_eq!(s.session.state(), ConnectionState::Connecting);
        s.advance(1);
        assert_closed(&s.events(), Initiator::Session, CloseReason::ConnAckTimeout);
        assert_eq!(s.session.state(), ConnectionState::Disconnected);
        assert_eq!(s.session.poll_timeout(), None);
        // A late CONNACK on the dead transport is ignored; the transport loss adds nothing.
        s.feed(connack(false));
        s.transport_closed();
        s.assert_quiet();
    }
}

#[test]
fn v5_refused_connack_closes_with_its_reason() {
    // [MQTT-4.13.2-1] (5.0): after a CONNACK with a code of 0x80 or more the connection is
    // closed; the client reports the server's reason once and sends nothing.
    for code in [
        ReasonCode::UnspecifiedError,
        ReasonCode::BadUserNameOrPassword,
        ReasonCode::NotAuthorized,
        ReasonCode::ServerBusy,
        ReasonCode::Banned,
        ReasonCode::BadAuthenticationMethod,
        ReasonCode::QoSNotSupported,
        ReasonCode::UseAnotherServer,
    ] {
        let mut s: Script<u32> = Script::new(support::V5, ClientConfig::default());
        s.connect(connect(support::V5, "c"));
        s.sent();
        s.publish(msg("t", QoS::AtLeastOnce, "kept"), 1).unwrap();
        s.feed(Packet::ConnAck(Box::new(ConnAck::new(code))));
        assert_closed(
            &s.events(),
            Initiator::Peer,
            CloseReason::ConnectRefused(code),
        );
        assert!(s.sent().is_empty());
        assert_eq!(s.session.state(), ConnectionState::Disconnected);
        // The queued publish is neither sent nor lost: it waits for the next connection.
        assert_eq!(s.session.queued_len(), 1);
        s.transport_closed();
        s.assert_quiet();
    }
}

#[test]
fn v311_refused_connack_closes_with_its_return_code() {
    // [MQTT-3.2.2-5] (3.1.1): the server closes after a non-zero return code; the client
    // reports which one (return codes 1..=5 map to the matching v5 codes).
    for (byte, code) in [
        (1u8, ReasonCode::UnsupportedProtocolVersion),
        (2, ReasonCode::ClientIdentifierNotValid),
        (3, ReasonCode::ServerUnavailable),
        (4, ReasonCode::BadUserNameOrPassword),
        (5, ReasonCode::NotAuthorized),
    ] {
        let mut s: Script<u32> = Script::new(support::V3, ClientConfig::default());
        s.connect(connect(support::V3, "c"));
        s.sent();
        s.feed_bytes(&[0x20, 0x02, 0x00, byte]);
        assert_closed(
            &s.events(),
            Initiator::Peer,
            CloseReason::ConnectRefused(code),
        );
        assert!(s.sent().is_empty());
    }
}

#[test]
fn commands_before_connack_wait_for_it() {
    // [MQTT-3.1.2-30] (5.0) is only required with an Authentication Method; the session is
    // stricter and holds every command until CONNACK, when the server's limits are known.
    for version in [support::V3, support::V5] {
        let mut s: Script<u32> = Script::new(version, ClientConfig::default());
        s.connect(connect(version, "c"));
        assert!(matches!(s.sent()[..], [Packet::Connect(_)]));
        s.publish(msg("a", QoS::AtMostOnce, "0"), 1).unwrap();
        s.publish(msg("a", QoS::AtLeastOnce, "1"), 2).unwrap();
        s.publish(msg("a", QoS::ExactlyOnce, "2"), 3).unwrap();
        s.subscribe(SubscribeRequest::new(filter("b/#"), QoS::AtLeastOnce), 4)
            .unwrap();
        s.unsubscribe(UnsubscribeRequest::new(filter("c")), 5)
            .unwrap();
        // Nothing leaves before CONNACK, and nothing completes.
        s.assert_quiet();
        assert_eq!(s.session.queued_len(), 5);

        s.feed(connack(false));
        let sent = s.sent();
        assert_eq!(
            briefs(&sent),
            [
                "SUBSCRIBE1",
                "UNSUBSCRIBE2",
                "PUBLISH0 a",
                "PUBLISH3",
                "PUBLISH4"
            ],
            "requests first, then publishes in order"
        );
        let p = publishes(&sent);
        assert_eq!(
            p.iter().map(|p| p.payload.clone()).collect::<Vec<_>>(),
            ["0", "1", "2"]
        );
        let events = s.events();
        assert!(matches!(events[0], ClientEvent::Connected(_)), "{events:?}");
        assert_eq!(published(&events), [(1, ReasonCode::Success)]);
        assert_eq!(s.session.queued_len(), 0);
        assert_eq!(s.session.inflight_len(), 2);
    }
}

#[test]
fn v5_connected_event_carries_the_connack_and_assigned_client_identifier() {
    // [MQTT-3.2.2-16] (5.0): an empty client id gets an Assigned Client Identifier, which the
    // application sees in the Connected event.
    let mut s: Script<u32> = Script::new(support::V5, ClientConfig::default());
    s.connect(connect(support::V5, ""));
    s.sent();
    let mut ack = ConnAck::new(ReasonCode::Success);
    ack.properties.assigned_client_identifier = Some(MqttString::new("auto-42").unwrap());
    ack.properties.reason_string = Some(MqttString::new("welcome").unwrap());
    s.feed(Packet::ConnAck(Box::new(ack.clone())));
    match &s.events()[..] {
        [ClientEvent::Connected(c)] => {
            assert_eq!(**c, ack);
            assert_eq!(
                c.properties
                    .assigned_client_identifier
                    .as_ref()
                    .unwrap()
                    .as_str(),
                "auto-42"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.session.state(), ConnectionState::Connected);
}

#[test]
fn session_present_after_clean_start_is_a_protocol_violation() {
    // [MQTT-3.2.2-2] (5.0) and [MQTT-3.2.2-1] (3.1.1): a clean start is answered with Session
    // Present 0; [MQTT-3.2.2-4] (5.0): a client without session state that gets Session Present
    // 1 closes the connection.
    let mut s: Script<u32> = Script::new(support::V5, ClientConfig::default());
    s.connect(connect(support::V5, "c"));
    s.sent();
    s.feed(connack(true));
    assert_violation(
        &mut s,
        ReasonCode::ProtocolError,
        CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedPacket(PacketType::ConnAck)),
    );

    let mut s: Script<u32> = Script::new(support::V3, ClientConfig::default());
    s.connect(connect(support::V3, "c"));
    s.sent();
    s.feed(connack(true));
    // 3.1.1 has no DISCONNECT from the client to explain it: only the close.
    assert!(s.sent().is_empty());
    assert_closed(
        &s.events(),
        Initiator::Session,
        CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedPacket(PacketType::ConnAck)),
    );
}

#[test]
fn v5_second_connack_is_a_protocol_violation() {
    // [MQTT-3.2.0-2] (5.0): the server sends at most one CONNACK per connection.
    let mut s = connected(support::V5);
    s.feed(connack(false));
    assert_violation(
        &mut s,
        ReasonCode::ProtocolError,
        CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedPacket(PacketType::ConnAck)),
    );
}

#[test]
fn v5_packet_before_connack_is_a_protocol_violation() {
    // [MQTT-3.2.0-1] (5.0): nothing but CONNACK (or AUTH) comes first.
    for packet in [
        server_publish("t", QoS::AtMostOnce, 1, "x"),
        Packet::PingResp,
        suback(1, &[ReasonCode::Success]),
    ] {
        let mut s: Script<u32> = Script::new(support::V5, ClientConfig::default());
        s.connect(connect(support::V5, "c"));
        s.sent();
        let t = packet.packet_type();
        s.feed(packet);
        assert_violation(
            &mut s,
            ReasonCode::ProtocolError,
            CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedPacket(t)),
        );
    }
}

#[test]
fn v311_packet_before_connack_closes_without_disconnect() {
    // [MQTT-3.2.0-1] (3.1.1): the first packet from the server must be CONNACK; [MQTT-4.8.0-1]
    // (3.1.1): a protocol violation closes the connection.
    let mut s: Script<u32> = Script::new(support::V3, ClientConfig::default());
    s.connect(connect(support::V3, "c"));
    s.sent();
    s.feed(server_publish("t", QoS::AtLeastOnce, 1, "x"));
    assert!(s.sent().is_empty());
    assert_closed(
        &s.events(),
        Initiator::Session,
        CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedPacket(PacketType::Publish)),
    );
}
