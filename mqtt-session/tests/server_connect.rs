//! Server session: the CONNECT exchange. First packet, second CONNECT, CONNECT timeout, protocol
//! level, client identifiers, the `Connect` event, `accept` and its CONNACK properties,
//! `reject`, packets sent before the answer, and MQTT 5 enhanced authentication.
//!
//! Statement ids name their version (3.1.1 or 5.0) in each test's first comment line.

mod support;

use core::num::{NonZeroU16, NonZeroU32};
use core::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    AckProperties, Auth, AuthProperties, ConnAckProperties, Connect, ConnectProperties, Packet,
    PayloadFormat, QoS, ReasonCode, UserProperty, Will, WillProperties,
};
use mqtt_streaming_session::{
    CloseReason, CommandError, Initiator, Instant, ProtocolViolation, ServerConfig, ServerEvent,
    ServerState,
};
use support::server::*;

/// The raw bytes the server has waiting (drained, not decoded).
fn raw(s: &mut Server) -> Vec<u8> {
    let mut wire = BytesMut::new();
    while s.session.poll_transmit(s.now, &mut wire) > 0 {}
    wire.to_vec()
}

/// The bytes of a CONNECT of `version` with its protocol level byte replaced by `level`.
fn connect_with_level(version: mqtt_streaming_proto::ProtocolVersion, level: u8) -> Vec<u8> {
    let mut bytes = encode(&Packet::Connect(Box::new(connect(version, "lvl"))), version).to_vec();
    // Fixed header (2 bytes for a short packet), then the protocol name (2 + 4 or 6 bytes).
    let at = 2 + 2 + version.protocol_name().len();
    assert_eq!(bytes[at], version.level());
    bytes[at] = level;
    bytes
}

// ----- first packet, second CONNECT, timeout -----

#[test]
fn first_packet_other_than_connect_closes_without_a_reply() {
    // [MQTT-3.1.0-1] (3.1.1 and 5.0): the first packet must be CONNECT; anything else closes
    // the connection and nothing is sent (no CONNACK, no DISCONNECT before CONNACK,
    // [MQTT-3.14.0-1] 5.0).
    let firsts = [
        Packet::PingReq,
        client_publish("a", QoS::AtLeastOnce, 1, "x"),
        subscribe(1, &[("a", QoS::AtMostOnce)]),
        disconnect_packet(ReasonCode::Success),
        Packet::Auth(Auth::default()),
    ];
    for first in firsts {
        let version = if matches!(first, Packet::Auth(_)) {
            V5
        } else {
            V3
        };
        let mut s = Server::new(version, ServerConfig::default());
        let mut bytes = encode(&first, version);
        // A CONNECT right behind it is not read either.
        bytes.extend_from_slice(&encode(
            &Packet::Connect(Box::new(connect(version, "c"))),
            version,
        ));
        s.feed_bytes(&bytes);
        assert!(s.sent().is_empty(), "{first:?}");
        let events = s.events();
        assert!(!events.iter().any(|e| matches!(e, ServerEvent::Connect(_))));
        // Before CONNECT the version is unknown, so AUTH (type 15 exists only in 5.0) is a
        // reserved packet type to the decoder.
        let reason = if version.is_v5() {
            CloseReason::Malformed(mqtt_streaming_proto::DecodeError::ReservedPacketType(15))
        } else {
            CloseReason::ProtocolViolation(ProtocolViolation::SecondConnect)
        };
        let will = assert_closed(&events, Initiator::Session, reason);
        assert!(will.is_none());
        assert_eq!(s.state(), ServerState::Closed);
        assert_eq!(s.session.poll_timeout(), None);
        s.transport_closed();
        s.assert_quiet();
    }
}

#[test]
fn second_connect_after_accept_is_a_protocol_error_v5() {
    // [MQTT-3.1.0-2] (5.0): a second CONNECT is a Protocol Error: DISCONNECT 0x82, then close.
    let mut c = connect(V5, "c");
    c.will = Some(will("w", "gone"));
    let mut s = accepted_with(ServerConfig::default(), c.clone());
    s.feed(Packet::Connect(Box::new(c)));
    let will = assert_violation(
        &mut s,
        ReasonCode::ProtocolError,
        CloseReason::ProtocolViolation(ProtocolViolation::SecondConnect),
    );
    // Closed without a normal DISCONNECT: the will is handed over ([MQTT-3.1.2-8] 5.0).
    assert_eq!(will.map(|w| w.topic), Some(topic("w")));
}

#[test]
fn second_connect_after_accept_closes_v311() {
    // [MQTT-3.1.0-2] (3.1.1): a second CONNECT is a protocol violation: disconnect (3.1.1 has
    // no DISCONNECT from the server, so nothing is sent).
    let mut s = accepted(V3);
    s.feed(Packet::Connect(Box::new(connect(V3, "c"))));
    assert!(s.sent().is_empty());
    assert_closed(
        &s.events(),
        Initiator::Session,
        CloseReason::ProtocolViolation(ProtocolViolation::SecondConnect),
    );
    assert_eq!(s.state(), ServerState::Closed);
}

#[test]
fn second_connect_before_the_answer_closes_without_connack() {
    // [MQTT-3.1.0-2] (5.0) and [MQTT-3.14.0-1] (5.0): a second CONNECT while the first awaits
    // its answer closes the connection; no DISCONNECT before a CONNACK, and accept is refused.
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(connect(V5, "c"));
    s.feed(Packet::Connect(Box::new(connect(V5, "c"))));
    assert!(s.sent().is_empty());
    assert_closed(
        &s.events(),
        Initiator::Session,
        CloseReason::ProtocolViolation(ProtocolViolation::SecondConnect),
    );
    assert!(s
        .session
        .accept(s.now, ConnAckProperties::default(), None)
        .is_err());
    s.drain();
    s.assert_quiet();
}

#[test]
fn connect_timeout_closes_an_idle_socket() {
    // The configured CONNECT timeout closes a connection that never sends CONNECT; a partial
    // CONNECT does not extend it and nothing is sent.
    let config = ServerConfig::default().with_connect_timeout(Duration::from_secs(5));
    let mut s = Server::at(V3, config, Instant::from_millis(1_000));
    assert_eq!(s.session.poll_timeout(), Some(Instant::from_millis(6_000)));
    let bytes = encode(&Packet::Connect(Box::new(connect(V3, "c"))), V3);
    s.advance(3_000);
    s.feed_bytes(&bytes[..bytes.len() - 1]);
    s.assert_quiet();
    assert_eq!(s.session.poll_timeout(), Some(Instant::from_millis(6_000)));
    // Early or repeated timeouts are harmless.
    s.session.handle_timeout(Instant::from_millis(5_999));
    s.drain();
    s.assert_quiet();
    s.advance(1_999);
    s.assert_quiet();
    s.advance(1);
    assert_eq!(s.now, Instant::from_millis(6_000));
    assert!(s.sent().is_empty());
    assert_closed(&s.events(), Initiator::Session, CloseReason::ConnectTimeout);
    assert_eq!(s.session.poll_timeout(), None);
    // The rest of the CONNECT arriving late changes nothing.
    s.feed_bytes(&bytes[bytes.len() - 1..]);
    s.session.handle_timeout(Instant::from_millis(7_000));
    s.drain();
    s.assert_quiet();
}

#[test]
fn connect_in_time_cancels_the_connect_timeout() {
    // The CONNECT timeout no longer applies once CONNECT arrived (the decide timeout does,
    // from the CONNECT's arrival); with keep alive 0 there is no deadline after accept (3.1.1
    // section 3.1.2.10: keep alive 0 turns it off).
    let mut s = Server::new(V3, ServerConfig::default());
    s.advance(9_999);
    s.connect(connect(V3, "c"));
    assert_eq!(
        s.session.poll_timeout(),
        Some(Instant::from_millis(9_999 + 30_000))
    );
    s.advance(29_999);
    s.assert_quiet();
    s.accept();
    assert_eq!(s.session.poll_timeout(), None);
    s.advance(3_600_000);
    s.assert_quiet();
    assert_eq!(s.state(), ServerState::Connected);
}

// ----- protocol level -----

#[test]
fn protocol_level_selects_the_version() {
    // [MQTT-3.1.2-2] (3.1.1): levels 3 (MQTT 3.1, "MQIsdp"), 4 (3.1.1) and 5 are accepted and
    // the session speaks the client's version: a 3.1.x CONNACK is two bytes with no
    // properties, a 5.0 CONNACK carries the server's limits.
    for version in [V31, V3, V5] {
        let mut s = Server::new(version, ServerConfig::default());
        let c = s.connect(connect(version, "c"));
        assert_eq!(c.protocol, version);
        assert_eq!(s.session.version(), version);
        s.session
            .accept(s.now, ConnAckProperties::default(), None)
            .unwrap();
        let bytes = raw(&mut s);
        if version.is_v5() {
            assert_eq!(&bytes[..2], [0x20, bytes.len() as u8 - 2]);
            assert_eq!(&bytes[2..4], [0x00, 0x00]);
            assert!(bytes.len() > 5, "properties follow: {bytes:?}");
        } else {
            assert_eq!(bytes, [0x20, 0x02, 0x00, 0x00]);
        }
        // The session decodes the client's version: a 3.1.x PINGREQ or a 5.0 one.
        s.feed(Packet::PingReq);
        assert_eq!(briefs(&s.sent()), ["PINGRESP"]);
    }
}

#[test]
fn unsupported_protocol_level_gets_the_right_connack() {
    // [MQTT-3.1.2-2] (3.1.1): an unsupported level gets CONNACK return code 0x01 and the
    // connection closes; [MQTT-3.1.2-2] (5.0): 0x84 in the 5.0 format. Level 6 is answered
    // as 5.0, levels below 3 as 3.1.1.
    let cases: [(mqtt_streaming_proto::ProtocolVersion, u8, &[u8]); 4] = [
        (V5, 6, &[0x20, 0x03, 0x00, 0x84, 0x00]),
        (V5, 0xFF, &[0x20, 0x03, 0x00, 0x84, 0x00]),
        (V3, 2, &[0x20, 0x02, 0x00, 0x01]),
        (V3, 0, &[0x20, 0x02, 0x00, 0x01]),
    ];
    for (version, level, expected) in cases {
        let mut s = Server::new(version, ServerConfig::default());
        let mut bytes = connect_with_level(version, level);
        // Whatever follows is not read ([MQTT-3.1.4-5] 3.1.1).
        bytes.extend_from_slice(&[0xC0, 0x00]);
        s.inbox.extend_from_slice(&bytes);
        s.session.handle_read(s.now, &mut s.inbox);
        assert_eq!(raw(&mut s), expected, "level {level}");
        let events: Vec<_> = std::iter::from_fn(|| s.session.poll_event()).collect();
        assert!(!events.iter().any(|e| matches!(e, ServerEvent::Connect(_))));
        let closes = closes(&events);
        assert_eq!(closes.len(), 1, "{events:?}");
        assert_eq!(closes[0].0, Initiator::Session);
        assert!(
            matches!(
                closes[0].1,
                CloseReason::Malformed(mqtt_streaming_proto::DecodeError::UnsupportedProtocolVersion(l))
                    if l == level
            ),
            "{closes:?}"
        );
        assert_eq!(s.state(), ServerState::Closed);
    }
}

#[test]
fn disabled_versions_are_refused_with_the_right_connack() {
    // [MQTT-3.1.2-2] (3.1.1 and 5.0): a level the server does not accept gets 0x01 in the
    // 3.1.x format or 0x84 in the 5.0 format, then the connection closes, without a Connect
    // event.
    let cases = [
        (
            V5,
            ServerConfig::default().with_accept_v5(false),
            vec![0x20, 0x03, 0x00, 0x84, 0x00],
        ),
        (
            V3,
            ServerConfig::default().with_accept_v3_1_1(false),
            vec![0x20, 0x02, 0x00, 0x01],
        ),
        (
            V31,
            ServerConfig::default().with_accept_v3_1(false),
            vec![0x20, 0x02, 0x00, 0x01],
        ),
    ];
    for (version, config, expected) in cases {
        let mut s = Server::new(version, config);
        let mut c = connect(version, "c");
        c.will = Some(will("w", "x"));
        s.inbox
            .extend_from_slice(&encode(&Packet::Connect(Box::new(c)), version));
        s.session.handle_read(s.now, &mut s.inbox);
        assert_eq!(raw(&mut s), expected, "{version:?}");
        s.drain();
        let events = s.events();
        assert!(!events.iter().any(|e| matches!(e, ServerEvent::Connect(_))));
        // A refused CONNECT hands over no will ([MQTT-3.1.2-8] 5.0).
        let will = assert_closed(
            &events,
            Initiator::Session,
            CloseReason::ConnectRefused(ReasonCode::UnsupportedProtocolVersion),
        );
        assert!(will.is_none());
        assert!(s.session.detach().is_none(), "never accepted: no session");
    }
    // The other versions still work with those configs.
    let mut s = Server::new(V3, ServerConfig::default().with_accept_v5(false));
    s.connect(connect(V3, "c"));
}

// ----- client identifiers -----

#[test]
fn empty_client_id_with_persistent_session_is_refused_v311() {
    // [MQTT-3.1.3-8] (3.1.1): a zero-length ClientId with CleanSession 0 gets CONNACK 0x02 and
    // the connection is closed; with CleanSession 1 it reaches the application
    // ([MQTT-3.1.3-6] 3.1.1: the server assigns one itself).
    let mut s = Server::new(V3, ServerConfig::default());
    let mut c = connect(V3, "");
    c.clean_start = false;
    s.inbox
        .extend_from_slice(&encode(&Packet::Connect(Box::new(c)), V3));
    s.session.handle_read(s.now, &mut s.inbox);
    assert_eq!(raw(&mut s), [0x20, 0x02, 0x00, 0x02]);
    s.drain();
    assert_closed(
        &s.events(),
        Initiator::Session,
        CloseReason::ConnectRefused(ReasonCode::ClientIdentifierNotValid),
    );

    let mut s = Server::new(V3, ServerConfig::default());
    let c = s.connect(connect(V3, ""));
    assert!(c.client_id.is_empty());
    s.accept();
}

#[test]
fn empty_client_id_is_refused_in_mqtt_3_1() {
    // MQTT 3.1 (level 3) requires a client identifier of 1 to 23 characters: an empty one gets
    // return code 0x02 whatever the clean session flag.
    let mut s = Server::new(V31, ServerConfig::default());
    s.inbox
        .extend_from_slice(&encode(&Packet::Connect(Box::new(connect(V31, ""))), V31));
    s.session.handle_read(s.now, &mut s.inbox);
    assert_eq!(raw(&mut s), [0x20, 0x02, 0x00, 0x02]);
    assert_eq!(s.state(), ServerState::Closed);
}

#[test]
fn empty_client_id_v5_gets_the_assigned_identifier_the_application_chose() {
    // [MQTT-3.1.3-7] and [MQTT-3.2.2-16] (5.0): a zero-length ClientID reaches the application
    // (even with Clean Start 0); an Assigned Client Identifier it sets is passed through and
    // becomes the session's client id.
    let mut s = Server::new(V5, ServerConfig::default());
    let mut c = connect(V5, "");
    c.clean_start = false;
    s.connect(c);
    let props = ConnAckProperties {
        assigned_client_identifier: Some(mstr("auto-17")),
        ..ConnAckProperties::default()
    };
    let sent = s.accept_with(props, None);
    let Packet::ConnAck(ack) = &sent[0] else {
        panic!()
    };
    assert_eq!(
        ack.properties.assigned_client_identifier,
        Some(mstr("auto-17"))
    );
    assert_eq!(s.session.client_id().as_str(), "auto-17");
}

#[test]
fn empty_client_id_gets_an_assigned_identifier_by_default_mqtt_3_2_2_16() {
    // [MQTT-3.2.2-16] (5.0) / [MQTT-3.1.3-6] (3.1.1): an application that accepts a client
    // with an empty ClientID without choosing an identifier no longer gets a refusal (which
    // left the connection undecided): the session assigns one, unique per session, tells an
    // MQTT 5 client in CONNACK and keeps it as the client id in both versions.
    let mut ids = Vec::new();
    for version in [V5, V5, V3] {
        let mut s = Server::new(version, ServerConfig::default());
        s.connect(connect(version, ""));
        let sent = s.accept_with(ConnAckProperties::default(), None);
        let Packet::ConnAck(ack) = &sent[0] else {
            panic!()
        };
        let id = s.session.client_id().clone();
        assert!(id.as_str().starts_with("auto"), "{id:?}");
        // [MQTT-3.1.3-5] (3.1.1): 1 to 23 characters from 0-9a-zA-Z, which every server accepts.
        assert!(id.len() <= 23 && id.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
        if version == V5 {
            assert_eq!(
                ack.properties.assigned_client_identifier.as_ref(),
                Some(&id)
            );
        }
        assert_eq!(s.state(), ServerState::Connected);
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "assigned identifiers are unique");
}

// ----- the Connect event -----

fn full_v5_connect() -> Connect {
    let mut c = Connect::new(V5, mstr("dev-5"));
    c.clean_start = false;
    c.keep_alive = 45;
    c.username = Some(mstr("bob"));
    c.password = Some(Bytes::from_static(b"pw\0\xff"));
    c.will = Some(Will {
        topic: topic("dev/5/status"),
        payload: Bytes::from_static(b"offline"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: WillProperties {
            will_delay_interval: Some(30),
            payload_format: Some(PayloadFormat::Utf8),
            message_expiry_interval: Some(600),
            content_type: Some(mstr("text/plain")),
            response_topic: Some(topic("dev/5/reply")),
            correlation_data: Some(Bytes::from_static(b"corr")),
            user_properties: vec![
                UserProperty::new("k", "1").unwrap(),
                UserProperty::new("k", "2").unwrap(),
            ],
        },
    });
    c.properties = ConnectProperties {
        session_expiry_interval: Some(120),
        receive_maximum: NonZeroU16::new(7),
        maximum_packet_size: NonZeroU32::new(4096),
        topic_alias_maximum: Some(3),
        request_response_information: Some(true),
        request_problem_information: Some(false),
        user_properties: vec![UserProperty::new("a", "b").unwrap()],
        authentication_method: Some(mstr("SCRAM-SHA-1")),
        authentication_data: Some(Bytes::from_static(b"client-first")),
    };
    c
}

#[test]
fn connect_event_carries_everything_v5() {
    // [MQTT-3.1.2-7] (5.0) and [MQTT-3.1.3-10] (5.0): the Connect event hands the application
    // the client id, credentials, will (properties in order, delay intact), every CONNECT
    // property and the authentication method and data, exactly as sent.
    let c = full_v5_connect();
    let mut s = Server::new(V5, ServerConfig::default());
    assert_eq!(s.connect(c.clone()), c);
    assert_eq!(s.session.client_id().as_str(), "dev-5");
    assert_eq!(s.state(), ServerState::Deciding);
    // The only deadline while deciding: the decide timeout.
    assert_eq!(
        s.session.poll_timeout(),
        Some(s.now + ServerConfig::default().decide_timeout)
    );
}

#[test]
fn connect_event_carries_everything_v311() {
    // [MQTT-3.1.2-8] (3.1.1) and [MQTT-3.1.2-19], [MQTT-3.1.2-21] (3.1.1): will, user name and
    // password reach the application as sent.
    let mut c = Connect::new(V3, mstr("dev-3"));
    c.clean_start = false;
    c.keep_alive = 10;
    c.username = Some(mstr("alice"));
    c.password = Some(Bytes::from_static(b"secret"));
    c.will = Some(Will {
        retain: true,
        qos: QoS::ExactlyOnce,
        ..will("dev/3/status", "offline")
    });
    let mut s = Server::new(V3, ServerConfig::default());
    assert_eq!(s.connect(c.clone()), c);
}

// ----- accept -----

#[test]
fn accept_fills_connack_limits_from_the_config_v5() {
    // [MQTT-3.2.2-9] (5.0): a server below QoS 2 announces Maximum QoS; Receive Maximum,
    // Maximum Packet Size, Topic Alias Maximum and Retain Available come from the config too,
    // and defaults (QoS 2, retain available, no aliases) are left out.
    let config = ServerConfig::default()
        .with_receive_maximum(10)
        .with_max_packet_size(2000)
        .with_topic_alias_maximum(5)
        .with_maximum_qos(QoS::AtLeastOnce)
        .with_retain_available(false);
    let mut s = Server::new(V5, config);
    s.connect(connect(V5, "c"));
    let ack = s.accept();
    assert!(!ack.session_present);
    assert_eq!(
        ack.properties,
        ConnAckProperties {
            receive_maximum: NonZeroU16::new(10),
            maximum_packet_size: NonZeroU32::new(2000),
            topic_alias_maximum: Some(5),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            ..ConnAckProperties::default()
        }
    );

    let config = ServerConfig::default().with_topic_alias_maximum(0);
    let mut s = Server::new(V5, config.clone());
    s.connect(connect(V5, "c"));
    let ack = s.accept();
    assert_eq!(
        ack.properties,
        ConnAckProperties {
            receive_maximum: NonZeroU16::new(config.receive_maximum),
            maximum_packet_size: NonZeroU32::new(config.max_packet_size),
            ..ConnAckProperties::default()
        }
    );
}

#[test]
fn accept_keeps_the_applications_values_and_enforces_them_v5() {
    // [MQTT-3.2.2-11], [MQTT-3.2.2-14], [MQTT-3.2.2-15], [MQTT-3.2.2-17] (5.0): limits the
    // application sets in CONNACK replace the config's, go out as given, and are what the
    // session enforces: Maximum QoS 0 (0x9B), Retain Available 0 (0x9A), Maximum Packet Size
    // 64 (0x95), Topic Alias Maximum 1 (0x94). (Receive Maximum: server_publish.rs.)
    let props = ConnAckProperties {
        receive_maximum: NonZeroU16::new(2),
        maximum_qos: Some(QoS::AtMostOnce),
        retain_available: Some(false),
        maximum_packet_size: NonZeroU32::new(64),
        topic_alias_maximum: Some(1),
        server_keep_alive: Some(20),
        wildcard_subscription_available: Some(false),
        subscription_identifiers_available: Some(false),
        shared_subscription_available: Some(false),
        reason_string: Some(mstr("welcome")),
        user_properties: vec![UserProperty::new("region", "eu").unwrap()],
        server_reference: Some(mstr("other:1883")),
        session_expiry_interval: Some(60),
        ..ConnAckProperties::default()
    };
    let fresh = |props: &ConnAckProperties| {
        let mut s = Server::new(V5, ServerConfig::default());
        s.connect(connect(V5, "c"));
        let sent = s.accept_with(props.clone(), None);
        let Packet::ConnAck(ack) = &sent[0] else {
            panic!()
        };
        assert_eq!(&ack.properties, props);
        s
    };
    // Maximum QoS 0: a QoS 1 PUBLISH is refused with 0x9B.
    let mut s = fresh(&props);
    s.feed(client_publish("t", QoS::AtLeastOnce, 1, "x"));
    assert_violation(
        &mut s,
        ReasonCode::QoSNotSupported,
        CloseReason::ProtocolViolation(ProtocolViolation::QoSNotSupported),
    );
    // Retain Available 0: 0x9A.
    let mut s = fresh(&props);
    let mut p = publish("t", QoS::AtMostOnce, 0, "x");
    p.retain = true;
    s.feed(Packet::Publish(p));
    assert_violation(
        &mut s,
        ReasonCode::RetainNotSupported,
        CloseReason::ProtocolViolation(ProtocolViolation::RetainNotSupported),
    );
    // Maximum Packet Size 64: a 65-byte packet is refused from its header with 0x95.
    let mut s = fresh(&props);
    s.feed(client_publish("t", QoS::AtMostOnce, 0, "x"));
    assert_eq!(s.events().len(), 1);
    let payload: &'static str = Box::leak("p".repeat(64 - 2 - 3 - 1).into_boxed_str());
    let big = client_publish("t", QoS::AtMostOnce, 0, payload);
    assert_eq!(encode(&big, V5).len(), 64);
    s.feed(big);
    assert_eq!(s.events().len(), 1, "64 bytes pass");
    let payload: &'static str = Box::leak("p".repeat(64 - 2 - 3).into_boxed_str());
    s.feed(client_publish("t", QoS::AtMostOnce, 0, payload));
    assert_violation(
        &mut s,
        ReasonCode::PacketTooLarge,
        CloseReason::Malformed(mqtt_streaming_proto::DecodeError::PacketTooLarge {
            size: 65,
            max: 64,
        }),
    );
    // Topic Alias Maximum 1: alias 2 is refused with 0x94.
    let mut s = fresh(&props);
    let mut p = publish("t", QoS::AtMostOnce, 0, "x");
    p.properties.topic_alias = NonZeroU16::new(2);
    s.feed(Packet::Publish(p));
    assert_violation(
        &mut s,
        ReasonCode::TopicAliasInvalid,
        CloseReason::ProtocolViolation(ProtocolViolation::TopicAliasInvalid),
    );
}

#[test]
fn accept_announces_server_keep_alive_and_uses_it() {
    // [MQTT-3.1.2-21] and [MQTT-3.2.2-21] (5.0): with Server Keep Alive in CONNACK the client
    // uses the server's value, so the server enforces 1.5x that value instead of the client's
    // ([MQTT-3.1.2-22] 5.0); [MQTT-3.2.2-22] (5.0): without it, the client's value applies.
    let mut c = connect(V5, "c");
    c.keep_alive = 100;
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(c.clone());
    let props = ConnAckProperties {
        server_keep_alive: Some(10),
        ..ConnAckProperties::default()
    };
    s.accept_with(props, None);
    assert_eq!(s.session.poll_timeout(), Some(Instant::from_millis(15_000)));
    s.advance(14_999);
    assert_eq!(s.state(), ServerState::Connected);
    s.advance(1);
    assert_violation(
        &mut s,
        ReasonCode::KeepAliveTimeout,
        CloseReason::KeepAliveTimeout,
    );

    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(c.clone());
    s.accept();
    assert_eq!(
        s.session.poll_timeout(),
        Some(Instant::from_millis(150_000))
    );

    // Server Keep Alive 0 turns keep alive off.
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(c);
    s.accept_with(
        ConnAckProperties {
            server_keep_alive: Some(0),
            ..ConnAckProperties::default()
        },
        None,
    );
    assert_eq!(s.session.poll_timeout(), None);
}

#[test]
fn response_information_only_when_requested() {
    // [MQTT-3.1.2-28] (5.0): with Request Response Information 0 (or absent) the server must
    // not return Response Information; with 1 it goes out as the application set it.
    for request in [None, Some(false), Some(true)] {
        let mut c = connect(V5, "c");
        c.properties.request_response_information = request;
        let mut s = Server::new(V5, ServerConfig::default());
        s.connect(c);
        let sent = s.accept_with(
            ConnAckProperties {
                response_information: Some(mstr("reply/here")),
                ..ConnAckProperties::default()
            },
            None,
        );
        let Packet::ConnAck(ack) = &sent[0] else {
            panic!()
        };
        let expected = (request == Some(true)).then(|| mstr("reply/here"));
        assert_eq!(ack.properties.response_information, expected, "{request:?}");
    }
}

#[test]
fn accept_and_reject_need_a_pending_connect() {
    // accept and reject answer a CONNECT awaiting an answer, once: before CONNECT, after an
    // answer and after the close they are refused and send nothing ([MQTT-3.2.0-2] 5.0: one
    // CONNACK per connection).
    let mut s = Server::new(V5, ServerConfig::default());
    assert!(s
        .session
        .accept(s.now, ConnAckProperties::default(), None)
        .is_err());
    assert!(s.reject(ReasonCode::NotAuthorized).is_err());
    s.assert_quiet();
    s.connect(connect(V5, "c"));
    s.accept();
    assert!(s
        .session
        .accept(s.now, ConnAckProperties::default(), None)
        .is_err());
    assert!(s.reject(ReasonCode::NotAuthorized).is_err());
    s.drain();
    s.assert_quiet();
    assert_eq!(s.state(), ServerState::Connected);
}

#[test]
fn v311_connack_has_no_properties() {
    // 3.1.1 section 3.2: the CONNACK is four bytes whatever properties the application passes.
    let mut s = Server::new(V3, ServerConfig::default());
    s.connect(connect(V3, "c"));
    s.session
        .accept(
            s.now,
            ConnAckProperties {
                receive_maximum: NonZeroU16::new(3),
                reason_string: Some(mstr("hi")),
                ..ConnAckProperties::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(raw(&mut s), [0x20, 0x02, 0x00, 0x00]);
}

// ----- reject -----

#[test]
fn reject_sends_connack_with_the_code_and_closes_v5() {
    // [MQTT-3.2.2-6] and [MQTT-3.2.2-7] (5.0): a refusing CONNACK has Session Present 0 and
    // the connection closes after it; no will is handed over ([MQTT-3.1.2-8] 5.0).
    for code in [
        ReasonCode::NotAuthorized,
        ReasonCode::BadUserNameOrPassword,
        ReasonCode::Banned,
        ReasonCode::ServerBusy,
        ReasonCode::QuotaExceeded,
        ReasonCode::UseAnotherServer,
    ] {
        let mut c = connect(V5, "c");
        c.clean_start = false;
        c.will = Some(will("w", "x"));
        let mut s = Server::new(V5, ServerConfig::default());
        s.connect(c);
        s.reject(code).unwrap();
        let sent = s.sent();
        match &sent[..] {
            [Packet::ConnAck(ack)] => {
                assert_eq!(ack.reason_code, code);
                assert!(!ack.session_present);
            }
            other => panic!("{other:?}"),
        }
        let will = assert_closed(
            &s.events(),
            Initiator::Session,
            CloseReason::ConnectRefused(code),
        );
        assert!(will.is_none());
        assert_eq!(s.state(), ServerState::Closed);
        assert!(s.session.detach().is_none());
        s.transport_closed();
        s.assert_quiet();
    }
}

#[test]
fn reject_maps_to_v311_return_codes() {
    // [MQTT-3.2.2-4] and [MQTT-3.2.2-5] (3.1.1): the refusing CONNACK has Session Present 0
    // and the nearest 3.1.1 return code, then the connection closes.
    let cases = [
        (ReasonCode::BadUserNameOrPassword, 4u8),
        (ReasonCode::NotAuthorized, 5),
        (ReasonCode::ServerUnavailable, 3),
        (ReasonCode::ClientIdentifierNotValid, 2),
        (ReasonCode::UnsupportedProtocolVersion, 1),
    ];
    for (code, v3) in cases {
        let mut s = Server::new(V3, ServerConfig::default());
        let mut c = connect(V3, "c");
        c.clean_start = false;
        s.connect(c);
        s.session
            .reject(s.now, code, ConnAckProperties::default())
            .unwrap();
        assert_eq!(raw(&mut s), [0x20, 0x02, 0x00, v3], "{code:?}");
        assert_eq!(s.state(), ServerState::Closed);
    }
}

#[test]
fn reject_needs_an_error_code_valid_in_connack() {
    // [MQTT-3.2.2-8] (5.0): only CONNACK reason codes; Success is not a refusal. Refused
    // commands send nothing and leave the CONNECT pending.
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(connect(V5, "c"));
    for code in [
        ReasonCode::Success,
        ReasonCode::SessionTakenOver,
        ReasonCode::GrantedQoS1,
        ReasonCode::KeepAliveTimeout,
    ] {
        assert!(
            matches!(
                s.reject(code),
                Err(CommandError::ReasonCodeNotAllowed {
                    packet: mqtt_streaming_proto::PacketType::ConnAck,
                    ..
                })
            ),
            "{code:?}"
        );
        s.assert_quiet();
    }
    assert_eq!(s.state(), ServerState::Deciding);
    s.accept();
}

#[test]
fn packets_after_a_rejected_connect_are_not_processed() {
    // [MQTT-3.1.4-5] (3.1.1) / [MQTT-3.1.4-6] (5.0): after refusing the CONNECT the server
    // processes nothing the client sent behind it.
    let mut s = Server::new(V3, ServerConfig::default());
    let mut bytes = encode(&Packet::Connect(Box::new(connect(V3, "c"))), V3);
    bytes.extend_from_slice(&encode(&subscribe(1, &[("a", QoS::AtLeastOnce)]), V3));
    bytes.extend_from_slice(&encode(&client_publish("a", QoS::AtLeastOnce, 2, "x"), V3));
    bytes.extend_from_slice(&encode(&Packet::PingReq, V3));
    s.feed_bytes(&bytes);
    assert!(matches!(&s.events()[..], [ServerEvent::Connect(_)]));
    s.assert_quiet();
    s.reject(ReasonCode::NotAuthorized).unwrap();
    // 3.1.1 return code 5, read back as 0x87 Not authorized.
    assert_eq!(briefs(&s.sent()), ["CONNACK(0x87)"]);
    let events = s.events();
    assert_eq!(events.len(), 1, "only Closed: {events:?}");
    assert_closed(
        &events,
        Initiator::Session,
        CloseReason::ConnectRefused(ReasonCode::NotAuthorized),
    );
    s.read();
    s.assert_quiet();
}

// ----- packets before the answer -----

#[test]
fn packets_before_accept_are_processed_after_it() {
    // [MQTT-3.2.0-1] (3.1.1 and 5.0): the CONNACK is the first packet the server sends; what
    // the client sent behind its CONNECT (allowed in 3.1.1 section 3.1.4 and 5.0 section
    // 3.1.4) is processed after it, in order.
    for version in [V3, V5] {
        let mut s = Server::new(version, ServerConfig::default());
        let mut bytes = encode(&Packet::Connect(Box::new(connect(version, "c"))), version);
        for p in [
            subscribe(1, &[("a/#", QoS::AtLeastOnce)]),
            client_publish("a/b", QoS::AtLeastOnce, 7, "one"),
            Packet::PingReq,
            client_publish("a/c", QoS::ExactlyOnce, 8, "two"),
        ] {
            bytes.extend_from_slice(&encode(&p, version));
        }
        s.feed_bytes(&bytes);
        assert!(matches!(&s.events()[..], [ServerEvent::Connect(_)]));
        s.assert_quiet();
        assert!(s.inbox.is_empty(), "a few packets are read and held");
        let sent = s.accept_with(ConnAckProperties::default(), None);
        assert_eq!(
            briefs(&sent),
            ["CONNACK(0x00)", "PUBACK7", "PINGRESP", "PUBREC8"]
        );
        let events = s.events();
        assert!(matches!(&events[0], ServerEvent::Subscribe(sub) if sub.packet_id == pid(1)));
        assert_eq!(
            delivered(&events)
                .iter()
                .map(|(t, p, _)| (t.as_str(), &p[..]))
                .collect::<Vec<_>>(),
            [("a/b", &b"one"[..]), ("a/c", &b"two"[..])]
        );
        s.suback(1, &[ReasonCode::GrantedQoS1]).unwrap();
        assert_eq!(briefs(&s.sent()), ["SUBACK1"]);
    }
}

#[test]
fn reading_stops_while_too_many_packets_wait_for_the_answer() {
    // Bounded memory: at most 16 packets are held before the answer; the rest stay in the
    // caller's buffer and are read after accept.
    let mut s = Server::new(V3, ServerConfig::default());
    let mut bytes = encode(&Packet::Connect(Box::new(connect(V3, "c"))), V3);
    for _ in 0..20 {
        bytes.extend_from_slice(&[0xC0, 0x00]);
    }
    s.feed_bytes(&bytes);
    assert_eq!(s.events().len(), 1);
    assert_eq!(s.inbox.len(), 4 * 2, "four PINGREQs left unread");
    s.read();
    assert_eq!(s.inbox.len(), 8);
    let sent = s.accept_with(ConnAckProperties::default(), None);
    assert_eq!(sent.len(), 1 + 16);
    assert_eq!(s.inbox.len(), 8);
    s.read();
    assert_eq!(briefs(&s.sent()), ["PINGRESP"; 4]);
    assert!(s.inbox.is_empty());
}

// ----- enhanced authentication -----

fn auth(code: ReasonCode, method: &str, data: &'static [u8]) -> Auth {
    Auth {
        reason_code: code,
        properties: AuthProperties {
            authentication_method: Some(mstr(method)),
            authentication_data: Some(Bytes::from_static(data)),
            ..AuthProperties::default()
        },
    }
}

fn auth_connect() -> Connect {
    let mut c = connect(V5, "c");
    c.properties.authentication_method = Some(mstr("SCRAM"));
    c.properties.authentication_data = Some(Bytes::from_static(b"client-first"));
    c
}

#[test]
fn enhanced_authentication_exchange_v5() {
    // [MQTT-4.12.0-2], [MQTT-4.12.0-3], [MQTT-4.12.0-5] (5.0): CONNECT with a method -> the
    // server's AUTH 0x18 -> the client's AUTH 0x18 (an Auth event) -> CONNACK carrying the
    // same Authentication Method.
    let mut s = Server::new(V5, ServerConfig::default());
    let c = s.connect(auth_connect());
    assert_eq!(
        c.properties.authentication_data.as_deref(),
        Some(&b"client-first"[..])
    );
    s.auth(auth(
        ReasonCode::ContinueAuthentication,
        "SCRAM",
        b"server-first",
    ))
    .unwrap();
    let sent = s.sent();
    match &sent[..] {
        [Packet::Auth(a)] => {
            assert_eq!(a.reason_code, ReasonCode::ContinueAuthentication);
            assert_eq!(
                a.properties.authentication_data.as_deref(),
                Some(&b"server-first"[..])
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(s.events().is_empty());
    assert_eq!(s.state(), ServerState::Deciding);
    s.feed(Packet::Auth(auth(
        ReasonCode::ContinueAuthentication,
        "SCRAM",
        b"client-final",
    )));
    match &s.events()[..] {
        [ServerEvent::Auth(a)] => {
            assert_eq!(
                a.properties.authentication_data.as_deref(),
                Some(&b"client-final"[..])
            )
        }
        other => panic!("{other:?}"),
    }
    let sent = s.accept_with(
        ConnAckProperties {
            authentication_data: Some(Bytes::from_static(b"server-final")),
            ..ConnAckProperties::default()
        },
        None,
    );
    let Packet::ConnAck(ack) = &sent[0] else {
        panic!()
    };
    assert_eq!(ack.properties.authentication_method, Some(mstr("SCRAM")));
    assert_eq!(
        ack.properties.authentication_data.as_deref(),
        Some(&b"server-final"[..])
    );
    assert_eq!(s.state(), ServerState::Connected);
}

#[test]
fn enhanced_authentication_can_end_in_a_refusal_v5() {
    // [MQTT-4.12.0-4] (5.0): the server may refuse at any point with a CONNACK 0x80 or above
    // and must close.
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(auth_connect());
    s.auth(auth(
        ReasonCode::ContinueAuthentication,
        "SCRAM",
        b"challenge",
    ))
    .unwrap();
    s.sent();
    s.feed(Packet::Auth(auth(
        ReasonCode::ContinueAuthentication,
        "SCRAM",
        b"wrong",
    )));
    s.events();
    s.reject(ReasonCode::NotAuthorized).unwrap();
    assert_eq!(briefs(&s.sent()), ["CONNACK(0x87)"]);
    assert_eq!(s.state(), ServerState::Closed);
}

#[test]
fn reauthentication_v5() {
    // [MQTT-4.12.1-1] (5.0): after CONNACK the client re-authenticates with AUTH 0x19 and the
    // same method; the server answers AUTH 0x18 to continue and AUTH 0x00 on success.
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(auth_connect());
    s.accept();
    s.feed(Packet::Auth(auth(
        ReasonCode::ReAuthenticate,
        "SCRAM",
        b"again",
    )));
    assert!(
        matches!(&s.events()[..], [ServerEvent::Auth(a)] if a.reason_code == ReasonCode::ReAuthenticate)
    );
    s.auth(auth(
        ReasonCode::ContinueAuthentication,
        "SCRAM",
        b"challenge",
    ))
    .unwrap();
    assert_eq!(briefs(&s.sent()), ["AUTH(0x18)"]);
    s.feed(Packet::Auth(auth(
        ReasonCode::ContinueAuthentication,
        "SCRAM",
        b"response",
    )));
    assert!(matches!(&s.events()[..], [ServerEvent::Auth(_)]));
    s.auth(auth(ReasonCode::Success, "SCRAM", b"ok")).unwrap();
    assert_eq!(briefs(&s.sent()), ["AUTH(0x00)"]);
    // Re-authentication does not disturb the connection.
    s.feed(Packet::PingReq);
    assert_eq!(briefs(&s.sent()), ["PINGRESP"]);
    // [MQTT-4.12.1-2] (5.0): a failed re-authentication ends with a DISCONNECT.
    s.disconnect(mqtt_streaming_proto::Disconnect::new(
        ReasonCode::NotAuthorized,
    ))
    .unwrap();
    assert_eq!(briefs(&s.sent()), ["DISCONNECT(0x87)"]);
    assert_closed(
        &s.events(),
        Initiator::Application,
        CloseReason::Disconnect(ReasonCode::NotAuthorized),
    );
}

#[test]
fn auth_with_a_wrong_method_is_refused_v5() {
    // [MQTT-4.12.1-1] (5.0): re-authentication must use the original method; a different one
    // gets DISCONNECT 0x8C Bad authentication method.
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(auth_connect());
    s.accept();
    s.feed(Packet::Auth(auth(
        ReasonCode::ReAuthenticate,
        "PLAIN",
        b"x",
    )));
    assert_violation(
        &mut s,
        ReasonCode::BadAuthenticationMethod,
        CloseReason::ProtocolViolation(ProtocolViolation::BadAuthentication),
    );
    // During the CONNECT exchange a wrong method closes the connection (no DISCONNECT before
    // CONNACK, [MQTT-3.14.0-1] 5.0).
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(auth_connect());
    s.feed(Packet::Auth(auth(
        ReasonCode::ContinueAuthentication,
        "PLAIN",
        b"x",
    )));
    assert!(s.sent().is_empty());
    assert_closed(
        &s.events(),
        Initiator::Session,
        CloseReason::ProtocolViolation(ProtocolViolation::BadAuthentication),
    );
}

#[test]
fn auth_without_a_method_in_connect_v5() {
    // [MQTT-4.12.0-7] (5.0): a client that sent no Authentication Method must not send AUTH:
    // the server closes with 0x8C. [MQTT-4.12.0-6] (5.0): and the server must not send AUTH
    // to it, so `auth` is refused.
    let mut s = accepted(V5);
    assert!(matches!(
        s.auth(auth(ReasonCode::ContinueAuthentication, "SCRAM", b"x")),
        Err(CommandError::NoAuthenticationMethod)
    ));
    s.assert_quiet();
    s.feed(Packet::Auth(auth(
        ReasonCode::ReAuthenticate,
        "SCRAM",
        b"x",
    )));
    assert_violation(
        &mut s,
        ReasonCode::BadAuthenticationMethod,
        CloseReason::ProtocolViolation(ProtocolViolation::BadAuthentication),
    );
}

#[test]
fn auth_packet_without_a_method_is_a_protocol_error_v5() {
    // 5.0 section 3.15.2.2.2: it is a Protocol Error to omit the Authentication Method from
    // AUTH: DISCONNECT 0x82.
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(auth_connect());
    s.accept();
    s.feed(Packet::Auth(Auth {
        reason_code: ReasonCode::ReAuthenticate,
        properties: AuthProperties::default(),
    }));
    let sent = s.sent();
    assert_eq!(briefs(&sent), ["DISCONNECT(0x82)"]);
    assert_eq!(closes(&s.events()).len(), 1);
}

#[test]
fn auth_with_a_server_code_or_out_of_turn_is_a_protocol_error_v5() {
    // 5.0 section 3.15.2.1: 0x00 Success is sent only by the server, and 0x19 Re-authenticate
    // only after CONNACK (section 4.12.1): either from the client is a Protocol Error.
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(auth_connect());
    s.accept();
    s.feed(Packet::Auth(auth(ReasonCode::Success, "SCRAM", b"x")));
    assert_violation(
        &mut s,
        ReasonCode::ProtocolError,
        CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedPacket(
            mqtt_streaming_proto::PacketType::Auth,
        )),
    );
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(auth_connect());
    s.feed(Packet::Auth(auth(
        ReasonCode::ReAuthenticate,
        "SCRAM",
        b"x",
    )));
    assert!(s.sent().is_empty(), "no DISCONNECT before CONNACK");
    assert_closed(
        &s.events(),
        Initiator::Session,
        CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedPacket(
            mqtt_streaming_proto::PacketType::Auth,
        )),
    );
}

#[test]
fn server_auth_rules_v5() {
    // [MQTT-4.12.0-5] (5.0): the server's AUTH carries the CONNECT's method (filled in when
    // left out, refused when different); 5.0 section 3.15.2.1: 0x19 is the client's code, and
    // 3.1.x has no AUTH at all.
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(auth_connect());
    assert!(matches!(
        s.auth(auth(ReasonCode::ContinueAuthentication, "PLAIN", b"x")),
        Err(CommandError::AuthenticationMethodMismatch)
    ));
    assert!(matches!(
        s.auth(auth(ReasonCode::ReAuthenticate, "SCRAM", b"x")),
        Err(CommandError::ReasonCodeNotAllowed {
            code: ReasonCode::ReAuthenticate,
            packet: mqtt_streaming_proto::PacketType::Auth
        })
    ));
    s.assert_quiet();
    s.auth(Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties::default(),
    })
    .unwrap();
    match &s.sent()[..] {
        [Packet::Auth(a)] => assert_eq!(a.properties.authentication_method, Some(mstr("SCRAM"))),
        other => panic!("{other:?}"),
    }

    let mut s = Server::new(V3, ServerConfig::default());
    s.connect(connect(V3, "c"));
    assert_eq!(
        s.auth(auth(ReasonCode::ContinueAuthentication, "SCRAM", b"x")),
        Err(CommandError::RequiresV5)
    );
}

#[test]
fn auth_strips_problem_information_when_not_requested_v5() {
    // [MQTT-3.1.2-29] (5.0): with Request Problem Information 0 the server sends no Reason
    // String or User Properties on AUTH (only PUBLISH, CONNACK and DISCONNECT may carry them).
    let mut c = auth_connect();
    c.properties.request_problem_information = Some(false);
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(c);
    let mut a = auth(ReasonCode::ContinueAuthentication, "SCRAM", b"x");
    a.properties.reason_string = Some(mstr("why"));
    a.properties.user_properties = vec![UserProperty::new("k", "v").unwrap()];
    s.auth(a).unwrap();
    match &s.sent()[..] {
        [Packet::Auth(a)] => {
            assert_eq!(a.properties.reason_string, None);
            assert!(a.properties.user_properties.is_empty());
            assert_eq!(a.properties.authentication_data.as_deref(), Some(&b"x"[..]));
        }
        other => panic!("{other:?}"),
    }
    // CONNACK may still carry them.
    let sent = s.accept_with(
        ConnAckProperties {
            reason_string: Some(mstr("hello")),
            ..ConnAckProperties::default()
        },
        None,
    );
    let Packet::ConnAck(ack) = &sent[0] else {
        panic!()
    };
    assert_eq!(ack.properties.reason_string, Some(mstr("hello")));
    let _ = AckProperties::default();
}

#[test]
fn will_beyond_the_servers_capabilities_is_refused_v5() {
    // [MQTT-3.2.2-12] and [MQTT-3.2.2-13] (5.0): a will QoS above the server's maximum gets
    // CONNACK 0x9B, a retained will without retain support 0x9A; the connection closes and
    // the application never sees the CONNECT.
    let config = ServerConfig::default()
        .with_maximum_qos(QoS::AtLeastOnce)
        .with_retain_available(false);
    let cases = [
        (QoS::ExactlyOnce, false, ReasonCode::QoSNotSupported),
        (QoS::AtLeastOnce, true, ReasonCode::RetainNotSupported),
    ];
    for (qos, retain, code) in cases {
        let mut c = connect(V5, "c");
        c.will = Some(Will {
            qos,
            retain,
            ..will("w", "x")
        });
        let mut s = Server::new(V5, config.clone());
        s.feed(Packet::Connect(Box::new(c)));
        match &s.sent()[..] {
            [Packet::ConnAck(ack)] => assert_eq!(ack.reason_code, code),
            other => panic!("{other:?}"),
        }
        let events = s.events();
        assert!(!events.iter().any(|e| matches!(e, ServerEvent::Connect(_))));
        assert!(assert_closed(
            &events,
            Initiator::Session,
            CloseReason::ConnectRefused(code)
        )
        .is_none());
    }
    // Within the limits the CONNECT reaches the application.
    let mut c = connect(V5, "c");
    c.will = Some(will("w", "x"));
    let mut s = Server::new(V5, config);
    s.connect(c);
    // And accept refuses to announce limits the will already exceeds.
    let mut c = connect(V5, "c");
    c.will = Some(Will {
        qos: QoS::ExactlyOnce,
        ..will("w", "x")
    });
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(c);
    assert!(s
        .session
        .accept(
            s.now,
            ConnAckProperties {
                maximum_qos: Some(QoS::AtLeastOnce),
                ..ConnAckProperties::default()
            },
            None
        )
        .is_err());
    s.drain();
    s.assert_quiet();
}

// ----- issue 10 / issue 11: the answer to a CONNECT always goes out, and never waits forever -----

#[test]
fn connect_and_a_malformed_packet_in_one_read_connack_first_then_disconnect_mqtt_4_13_1_1() {
    // Issue 10 item 6 / [MQTT-4.13.1-1] (5.0): a Malformed Packet closes the connection, with a
    // DISCONNECT carrying the reason code; [MQTT-3.14.0-1] (5.0): no DISCONNECT before the
    // CONNACK. A CONNECT and a bad packet arriving in one read used to close the connection
    // before the application answered: the CONNACK was lost and the client got no reason.
    // Now the error waits for the answer: CONNACK, then DISCONNECT 0x81, then the close.
    for version in [V5, V3] {
        let mut s = Server::new(version, ServerConfig::default());
        s.version = version;
        let mut bytes = encode(&Packet::Connect(Box::new(connect(version, "c"))), version);
        bytes.extend_from_slice(&[0x00, 0x00]); // reserved packet type 0: malformed
        s.feed_bytes(&bytes);
        assert!(s.sent().is_empty());
        assert!(matches!(&s.events()[..], [ServerEvent::Connect(_)]));
        assert_eq!(s.state(), ServerState::Deciding);
        s.session
            .accept(s.now, ConnAckProperties::default(), None)
            .expect("the CONNECT is still awaiting its answer");
        s.drain();
        let expected: &[&str] = if version == V5 {
            &["CONNACK(0x00)", "DISCONNECT(0x81)"]
        } else {
            &["CONNACK(0x00)"]
        };
        assert_eq!(briefs(&s.sent()), expected, "{version:?}");
        let closes = closes(&s.events());
        assert!(
            matches!(
                &closes[..],
                [(Initiator::Session, CloseReason::Malformed(_), _)]
            ),
            "{closes:?}"
        );
        assert_eq!(s.state(), ServerState::Closed);
    }

    // A refusal is just the refusal: CONNACK with its code, then the close.
    let mut s = Server::new(V5, ServerConfig::default());
    let mut bytes = encode(&Packet::Connect(Box::new(connect(V5, "c"))), V5);
    bytes.extend_from_slice(&[0x00, 0x00]);
    s.feed_bytes(&bytes);
    s.events();
    s.reject(ReasonCode::NotAuthorized).unwrap();
    assert_eq!(briefs(&s.sent()), ["CONNACK(0x87)"]);
    assert_closed(
        &s.events(),
        Initiator::Session,
        CloseReason::ConnectRefused(ReasonCode::NotAuthorized),
    );
}

#[test]
fn undecided_connect_is_refused_at_the_decide_deadline_server_busy_mqtt_3_2_2_7() {
    // Issue 11: every state has a deadline. A CONNECT the application never answers is
    // refused `decide_timeout` after it arrived with 0x89 Server busy (5.0 section 3.2.2.2:
    // "try again later"; 3.1.1 has no such code: 3 Server unavailable), then the connection
    // closes ([MQTT-3.2.2-7] in 5.0, [MQTT-3.2.2-5] in 3.1.1).
    let config = ServerConfig::default().with_decide_timeout(Duration::from_secs(5));
    for (version, expected) in [
        (V5, [0x20, 0x03, 0x00, 0x89, 0x00]),
        (V3, [0x20, 0x02, 0x00, 0x03, 0]),
    ] {
        let mut s = Server::new(version, config.clone());
        s.advance(1_000);
        s.connect(connect(version, "c"));
        assert_eq!(s.session.poll_timeout(), Some(Instant::from_millis(6_000)));
        s.session.handle_timeout(Instant::from_millis(5_999));
        assert_eq!(s.state(), ServerState::Deciding);
        s.session.handle_timeout(Instant::from_millis(6_000));
        let len = if version == V5 { 5 } else { 4 };
        assert_eq!(raw(&mut s), expected[..len], "{version:?}");
        s.drain();
        assert_closed(&s.events(), Initiator::Session, CloseReason::DecideTimeout);
        assert_eq!(s.session.poll_timeout(), None);
        // Too late now.
        let late = s.session.accept(s.now, ConnAckProperties::default(), None);
        assert!(matches!(late, Err(ref r) if r.error == CommandError::NoConnectPending));
    }
}

#[test]
fn undecided_enhanced_authentication_is_refused_at_the_decide_deadline() {
    // Issue 11: the deadline covers an MQTT 5 enhanced-authentication exchange too
    // ([MQTT-4.12.0-2] AUTH 0x18 sent, the client never answers).
    let mut s = Server::new(V5, ServerConfig::default());
    let mut c = connect(V5, "c");
    c.properties.authentication_method = Some(mstr("SCRAM-SHA-1"));
    s.connect(c);
    let challenge = Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties::default(),
    };
    s.auth(challenge).unwrap();
    assert_eq!(briefs(&s.sent()), ["AUTH(0x18)"]);
    s.advance(ServerConfig::default().decide_timeout.as_millis() as u64);
    assert_eq!(briefs(&s.sent()), ["CONNACK(0x89)"]);
    assert_closed(&s.events(), Initiator::Session, CloseReason::DecideTimeout);
}

#[test]
fn refused_accept_hands_the_session_and_properties_back() {
    // Issue 11: `accept` validates first and consumes last. A refused accept (here MQTT 5
    // CONNACK properties naming an Authentication Method the CONNECT did not,
    // [MQTT-4.12.0-6]) sends nothing and hands back the stored session with its queued message
    // and the properties; the connection still awaits its answer, and the same session can
    // then be resumed.
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(resume(V5, "c"));
    let mut stored: mqtt_streaming_session::SessionState<u32> =
        mqtt_streaming_session::SessionState::new(8);
    stored
        .enqueue(s.now, msg("t", QoS::AtLeastOnce, "kept"), 7)
        .unwrap();
    let bad = ConnAckProperties {
        authentication_method: Some(mstr("made-up")),
        ..ConnAckProperties::default()
    };
    let rejected = s
        .session
        .accept(s.now, bad.clone(), Some(stored))
        .unwrap_err();
    assert!(matches!(
        rejected.error,
        CommandError::AuthenticationMethodMismatch
    ));
    assert_eq!(rejected.properties, bad);
    let stored = rejected.session.expect("the session comes back");
    assert_eq!(stored.queued_len(), 1);
    s.drain();
    s.assert_quiet();
    assert_eq!(s.state(), ServerState::Deciding);

    let sent = s.accept_with(ConnAckProperties::default(), Some(stored));
    assert!(matches!(&sent[0], Packet::ConnAck(a) if a.session_present));
    assert_eq!(publishes(&sent).len(), 1);

    // After the close, too: the session comes back instead of being dropped.
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(resume(V5, "c"));
    s.transport_closed();
    let mut stored: mqtt_streaming_session::SessionState<u32> =
        mqtt_streaming_session::SessionState::new(8);
    stored
        .enqueue(s.now, msg("t", QoS::AtLeastOnce, "kept"), 7)
        .unwrap();
    let rejected = s
        .session
        .accept(s.now, ConnAckProperties::default(), Some(stored))
        .unwrap_err();
    assert_eq!(rejected.session.map(|s| s.queued_len()), Some(1));
}
