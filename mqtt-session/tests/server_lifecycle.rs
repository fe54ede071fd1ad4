//! Server session: how a connection lives and ends. Keep alive (1.5x, inbound only), PINGREQ,
//! server-initiated DISCONNECT, the client's DISCONNECT, the will, Session Expiry, and every
//! protocol violation ending in one DISCONNECT with the right code and one `Closed` event.
//!
//! Statement ids name their version (3.1.1 or 5.0) in each test's first comment line.

mod support;

use core::num::NonZeroU32;
use core::time::Duration;

use bytes::Bytes;
use mqtt_streaming_proto::{
    ConnAck, ConnAckProperties, Disconnect, DisconnectProperties, Packet, QoS, ReasonCode, SubAck,
    UnsubAck, Will, WillProperties,
};
use mqtt_streaming_session::{
    AckMode, CloseReason, CommandError, Initiator, Instant, ProtocolViolation, ServerConfig,
    ServerEvent, ServerState, SessionExpiry,
};
use support::server::*;

fn keep_alive(version: mqtt_streaming_proto::ProtocolVersion, secs: u16) -> Server {
    let mut c = connect(version, "c");
    c.keep_alive = secs;
    c.will = Some(will("c/status", "lost"));
    accepted_with(ServerConfig::default(), c)
}

// ----- keep alive -----

#[test]
fn keep_alive_closes_after_one_and_a_half_periods_v311() {
    // [MQTT-3.1.2-24] (3.1.1): no packet within 1.5x the Keep Alive: the server disconnects as
    // if the network failed (no packet; the will is handed over).
    let mut s = keep_alive(V3, 10);
    assert_eq!(s.session.poll_timeout(), Some(Instant::from_millis(15_000)));
    s.advance(14_999);
    s.assert_quiet();
    s.advance(1);
    assert!(s.sent().is_empty());
    let will = assert_closed(
        &s.events(),
        Initiator::Session,
        CloseReason::KeepAliveTimeout,
    );
    assert_eq!(will.map(|w| w.topic), Some(topic("c/status")));
    assert_eq!(s.session.poll_timeout(), None);
}

#[test]
fn keep_alive_timeout_v5() {
    // [MQTT-3.1.2-22] (5.0): after 1.5x the Keep Alive without a packet the server closes;
    // it says why with DISCONNECT 0x8D and hands over the will.
    let mut s = keep_alive(V5, 4);
    s.advance(5_999);
    s.assert_quiet();
    s.advance(1);
    let will = assert_violation(
        &mut s,
        ReasonCode::KeepAliveTimeout,
        CloseReason::KeepAliveTimeout,
    );
    assert!(will.is_some());
}

#[test]
fn every_inbound_packet_restarts_keep_alive_but_outbound_ones_do_not() {
    // [MQTT-3.1.2-24] (3.1.1) / [MQTT-3.1.2-22] (5.0): the deadline counts from the last
    // packet received from the client; what the server sends does not extend it, nor do the
    // bytes of a packet not complete yet.
    for version in [V3, V5] {
        let mut s = keep_alive(version, 10);
        s.advance(9_000);
        s.feed(client_publish("t", QoS::AtMostOnce, 0, "x"));
        assert_eq!(s.session.poll_timeout(), Some(Instant::from_millis(24_000)));
        s.advance(10_000);
        // The server publishes to the client: no effect on the deadline.
        s.publish(msg("down", QoS::AtLeastOnce, "y"), 1).unwrap();
        s.sent();
        assert_eq!(s.session.poll_timeout(), Some(Instant::from_millis(24_000)));
        // Half a PINGREQ does not count either.
        s.feed_bytes(&[0xC0]);
        assert_eq!(s.session.poll_timeout(), Some(Instant::from_millis(24_000)));
        s.advance(3_000);
        s.feed_bytes(&[0x00]);
        assert_eq!(briefs(&s.sent()), ["PINGRESP"]);
        assert_eq!(s.session.poll_timeout(), Some(Instant::from_millis(37_000)));
        s.advance(14_999);
        assert_eq!(s.state(), ServerState::Connected);
        s.advance(1);
        assert_eq!(s.state(), ServerState::Closed);
        assert_eq!(closes(&s.events()).len(), 1);
    }
}

#[test]
fn keep_alive_zero_means_no_deadline() {
    // 3.1.1 section 3.1.2.10 / 5.0 section 3.1.2.10: Keep Alive 0 turns the mechanism off.
    let mut s = keep_alive(V5, 0);
    assert_eq!(s.session.poll_timeout(), None);
    s.advance(86_400_000);
    s.assert_quiet();
}

#[test]
fn ping_reply_and_close_on_missing_ping() {
    // [MQTT-3.12.4-1] (3.1.1 and 5.0): every PINGREQ gets a PINGRESP (Alpakka "ping reply");
    // a client that stops pinging is closed (Alpakka "close on missing ping").
    for version in [V31, V3, V5] {
        let mut s = keep_alive(version, 2);
        for _ in 0..5 {
            s.advance(2_000);
            s.feed(Packet::PingReq);
            assert_eq!(briefs(&s.sent()), ["PINGRESP"]);
            assert!(s.events().is_empty());
        }
        s.advance(3_000);
        assert_eq!(s.state(), ServerState::Closed);
        let events = s.events();
        let will = assert_closed(&events, Initiator::Session, CloseReason::KeepAliveTimeout);
        assert!(will.is_some());
    }
}

// ----- server-initiated DISCONNECT -----

#[test]
fn server_disconnect_with_a_reason_v5() {
    // [MQTT-3.1.4-3] (5.0): a takeover sends DISCONNECT 0x8E to the old connection and closes
    // it; shutdown (0x8B) and administrative action (0x98) likewise. The will is handed over
    // (no normal DISCONNECT from the client, [MQTT-3.1.2-8] 5.0), and after the DISCONNECT
    // nothing else is sent ([MQTT-3.14.4-1] 5.0).
    for code in [
        ReasonCode::SessionTakenOver,
        ReasonCode::ServerShuttingDown,
        ReasonCode::AdministrativeAction,
    ] {
        let mut s = keep_alive(V5, 10);
        let mut d = Disconnect::new(code);
        d.properties.reason_string = Some(mstr("bye"));
        d.properties.server_reference = Some(mstr("other:1883"));
        s.disconnect(d.clone()).unwrap();
        match &s.sent()[..] {
            [Packet::Disconnect(got)] => assert_eq!(got, &d),
            other => panic!("{other:?}"),
        }
        let will = assert_closed(
            &s.events(),
            Initiator::Application,
            CloseReason::Disconnect(code),
        );
        assert_eq!(will.map(|w| w.payload), Some(Bytes::from_static(b"lost")));
        assert_eq!(s.state(), ServerState::Closed);
        assert_eq!(s.session.poll_timeout(), None);
        assert_eq!(
            s.publish(msg("t", QoS::AtMostOnce, "x"), 1)
                .unwrap_err()
                .error,
            CommandError::NotConnected
        );
        s.feed(Packet::PingReq);
        s.transport_closed();
        s.advance(60_000);
        s.assert_quiet();
        assert_eq!(
            s.disconnect(Disconnect::new(code)),
            Err(CommandError::NotConnected)
        );
    }
}

#[test]
fn server_disconnect_v311_just_closes() {
    // 3.1.1 has no server DISCONNECT: the connection closes without a packet, the will is
    // handed over.
    let mut s = keep_alive(V3, 10);
    s.disconnect(Disconnect::new(ReasonCode::SessionTakenOver))
        .unwrap();
    assert!(s.sent().is_empty());
    let will = assert_closed(
        &s.events(),
        Initiator::Application,
        CloseReason::Disconnect(ReasonCode::SessionTakenOver),
    );
    assert!(will.is_some());
}

#[test]
fn server_disconnect_rules_v5() {
    // [MQTT-3.14.2-2] (5.0): the server must not send a Session Expiry Interval on DISCONNECT;
    // 0x04 is a client's code. Issue 11: a `disconnect` always closes, so neither is refused:
    // the interval is left out and 0x04 becomes 0x00.
    let mut s = keep_alive(V5, 10);
    let mut d = Disconnect::new(ReasonCode::ServerShuttingDown);
    d.properties.session_expiry_interval = Some(0);
    s.disconnect(d).unwrap();
    match &s.sent()[..] {
        [Packet::Disconnect(d)] => {
            assert_eq!(d.reason_code, ReasonCode::ServerShuttingDown);
            assert_eq!(d.properties.session_expiry_interval, None);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.state(), ServerState::Closed);
    assert_eq!(closes(&s.events()).len(), 1);

    let mut s = keep_alive(V5, 10);
    s.disconnect(Disconnect::new(ReasonCode::DisconnectWithWillMessage))
        .unwrap();
    assert_eq!(briefs(&s.sent()), ["DISCONNECT(0x00)"]);
    assert_eq!(s.state(), ServerState::Closed);
}

#[test]
fn server_disconnect_with_a_connack_only_code_still_closes_mqtt_4_12_1_2() {
    // Issue 11 / [MQTT-4.12.1-2] (5.0): a refused re-authentication ends with DISCONNECT and a
    // close. A CONNACK-only code (0x86 Bad User Name or Password, 0x8A Banned: not valid in
    // DISCONNECT, 5.0 section 3.14.2.1) used to fail to encode and leave the client connected;
    // it is now sent as 0x87 Not authorized and the connection closes, reported once.
    for (given, sent) in [
        (ReasonCode::BadUserNameOrPassword, ReasonCode::NotAuthorized),
        (ReasonCode::Banned, ReasonCode::NotAuthorized),
        (ReasonCode::ServerUnavailable, ReasonCode::ServerBusy),
        (
            ReasonCode::UnsupportedProtocolVersion,
            ReasonCode::UnspecifiedError,
        ),
        (
            ReasonCode::BadAuthenticationMethod,
            ReasonCode::BadAuthenticationMethod,
        ),
    ] {
        let mut s = keep_alive(V5, 10);
        s.disconnect(Disconnect::new(given)).unwrap();
        match &s.sent()[..] {
            [Packet::Disconnect(d)] => assert_eq!(d.reason_code, sent, "{given:?}"),
            other => panic!("{given:?}: {other:?}"),
        }
        assert_eq!(s.state(), ServerState::Closed);
        assert_closed(
            &s.events(),
            Initiator::Application,
            CloseReason::Disconnect(sent),
        );
    }
}

#[test]
fn server_disconnect_before_connack_sends_nothing_v5() {
    // [MQTT-3.14.0-1] (5.0): no DISCONNECT before a CONNACK with a code below 0x80: closing
    // while the CONNECT awaits its answer (or before it arrives) sends nothing, and no will.
    let mut s = Server::new(V5, ServerConfig::default());
    let mut c = connect(V5, "c");
    c.will = Some(will("w", "x"));
    s.connect(c);
    s.disconnect(Disconnect::new(ReasonCode::ServerShuttingDown))
        .unwrap();
    assert!(s.sent().is_empty());
    let will = assert_closed(
        &s.events(),
        Initiator::Application,
        CloseReason::Disconnect(ReasonCode::ServerShuttingDown),
    );
    assert!(will.is_none());
    assert!(s.session.detach().is_none());

    let mut s = Server::new(V5, ServerConfig::default());
    s.disconnect(Disconnect::new(ReasonCode::ServerShuttingDown))
        .unwrap();
    assert!(s.sent().is_empty());
    assert_eq!(closes(&s.events()).len(), 1);
}

#[test]
fn server_disconnect_drops_oversized_reason_string_v5() {
    // [MQTT-3.14.2-3] (5.0): a Reason String that would exceed the client's Maximum Packet
    // Size is left out; the DISCONNECT still goes out with its code.
    let mut c = connect(V5, "c");
    c.properties.maximum_packet_size = NonZeroU32::new(16);
    let mut s = accepted_with(ServerConfig::default(), c);
    let mut d = Disconnect::new(ReasonCode::AdministrativeAction);
    d.properties.reason_string = Some(mstr("a very long explanation of why"));
    s.disconnect(d).unwrap();
    match &s.sent()[..] {
        [Packet::Disconnect(got)] => {
            assert_eq!(got.reason_code, ReasonCode::AdministrativeAction);
            assert_eq!(got.properties.reason_string, None);
        }
        other => panic!("{other:?}"),
    }
}

// ----- the client's DISCONNECT and the will -----

fn v5_will() -> Will {
    Will {
        topic: topic("dev/status"),
        payload: Bytes::from_static(b"offline"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: WillProperties {
            will_delay_interval: Some(90),
            message_expiry_interval: Some(3600),
            content_type: Some(mstr("text/plain")),
            ..WillProperties::default()
        },
    }
}

fn with_will(version: mqtt_streaming_proto::ProtocolVersion) -> Server {
    let mut c = connect(version, "c");
    c.will = Some(if version.is_v5() {
        v5_will()
    } else {
        Will {
            properties: WillProperties::default(),
            ..v5_will()
        }
    });
    accepted_with(ServerConfig::default(), c)
}

#[test]
fn normal_disconnect_discards_the_will() {
    // [MQTT-3.1.2-10] and [MQTT-3.14.4-3] (3.1.1) / [MQTT-3.1.2-10] and [MQTT-3.14.4-3] (5.0):
    // on DISCONNECT (0x00) the will is discarded; the close is the peer's, normal, and
    // reported once (Alpakka "disconnect notification").
    for version in [V3, V5] {
        let mut s = with_will(version);
        let mut bytes = encode(&disconnect_packet(ReasonCode::Success), version);
        // Nothing after the DISCONNECT is processed.
        bytes.extend_from_slice(&encode(&Packet::PingReq, version));
        s.feed_bytes(&bytes);
        assert!(s.sent().is_empty());
        let events = s.events();
        let will = assert_closed(
            &events,
            Initiator::Peer,
            CloseReason::Disconnect(ReasonCode::Success),
        );
        assert!(will.is_none(), "{version:?}");
        assert!(CloseReason::Disconnect(ReasonCode::Success).is_normal());
        s.transport_closed();
        s.assert_quiet();
    }
}

#[test]
fn transport_loss_hands_over_the_will_with_its_delay() {
    // [MQTT-3.1.2-8] (3.1.1 and 5.0): the connection closed without DISCONNECT: the will goes
    // to the application, in 5.0 with its Will Delay Interval and properties intact.
    for version in [V3, V5] {
        let mut s = with_will(version);
        s.transport_closed();
        let will = assert_closed(
            &s.events(),
            Initiator::Transport,
            CloseReason::TransportClosed,
        )
        .expect("will");
        if version.is_v5() {
            assert_eq!(will, v5_will());
            assert_eq!(will.properties.will_delay_interval, Some(90));
        } else {
            assert_eq!(will.topic, topic("dev/status"));
            assert!(will.retain);
        }
        s.transport_closed();
        s.assert_quiet();
    }
}

#[test]
fn disconnect_with_will_message_hands_over_the_will_v5() {
    // [MQTT-3.1.2-8] (5.0): DISCONNECT 0x04 (Disconnect with Will Message) keeps the will.
    let mut s = with_will(V5);
    s.feed(disconnect_packet(ReasonCode::DisconnectWithWillMessage));
    let will = assert_closed(
        &s.events(),
        Initiator::Peer,
        CloseReason::Disconnect(ReasonCode::DisconnectWithWillMessage),
    );
    assert_eq!(will, Some(v5_will()));
}

#[test]
fn disconnect_with_an_error_code_keeps_the_will_v5() {
    // [MQTT-3.1.2-8] and [MQTT-3.1.2-10] (5.0): only Reason Code 0x00 deletes the will; a
    // client DISCONNECT with an error code leaves it to be published.
    for code in [ReasonCode::UnspecifiedError, ReasonCode::MessageRateTooHigh] {
        let mut s = with_will(V5);
        s.feed(disconnect_packet(code));
        let will = assert_closed(&s.events(), Initiator::Peer, CloseReason::Disconnect(code));
        assert_eq!(will, Some(v5_will()), "{code:?}");
    }
}

#[test]
fn no_will_without_one_or_after_a_refused_connect() {
    // [MQTT-3.1.2-12] (3.1.1): with Will Flag 0 nothing is handed over; a refused CONNECT
    // never armed its will ([MQTT-3.1.2-8] 5.0).
    let mut s = accepted(V3);
    s.transport_closed();
    assert!(assert_closed(
        &s.events(),
        Initiator::Transport,
        CloseReason::TransportClosed
    )
    .is_none());

    let mut s = Server::new(V5, ServerConfig::default());
    let mut c = connect(V5, "c");
    c.will = Some(v5_will());
    s.connect(c);
    s.reject(ReasonCode::NotAuthorized).unwrap();
    s.sent();
    assert!(closes(&s.events())[0].2.is_none());
    s.transport_closed();
    s.assert_quiet();
}

// ----- Session Expiry -----

#[test]
fn session_expiry_from_connect() {
    // [MQTT-3.1.2-4], [MQTT-3.1.2-6] (3.1.1): CleanSession 1 ends the session with the
    // connection, 0 keeps it; [MQTT-3.1.2-23] (5.0): the Session Expiry Interval says how long
    // (absent or 0: at close; 0xFFFFFFFF: never).
    let cases: [(
        mqtt_streaming_proto::ProtocolVersion,
        bool,
        Option<u32>,
        SessionExpiry,
    ); 7] = [
        (V3, true, None, SessionExpiry::AtClose),
        (V3, false, None, SessionExpiry::Never),
        (V31, false, None, SessionExpiry::Never),
        (V5, false, None, SessionExpiry::AtClose),
        (V5, true, Some(0), SessionExpiry::AtClose),
        (
            V5,
            true,
            Some(300),
            SessionExpiry::After(Duration::from_secs(300)),
        ),
        (V5, false, Some(u32::MAX), SessionExpiry::Never),
    ];
    for (version, clean, interval, expected) in cases {
        let mut c = connect(version, "c");
        c.clean_start = clean;
        c.properties.session_expiry_interval = interval;
        let mut s = Server::new(version, ServerConfig::default());
        s.connect(c);
        assert_eq!(
            s.session.session_expiry(),
            expected,
            "{version:?} {clean} {interval:?}"
        );
        s.accept();
        assert_eq!(s.session.session_expiry(), expected);
    }
}

#[test]
fn session_expiry_updated_by_disconnect_v5() {
    // [MQTT-3.1.2-23] (5.0) and 5.0 section 3.14.2.2.2: the client's DISCONNECT may change a
    // non-zero Session Expiry Interval, including to 0 or to never.
    let cases = [
        (0u32, SessionExpiry::AtClose),
        (u32::MAX, SessionExpiry::Never),
        (7, SessionExpiry::After(Duration::from_secs(7))),
    ];
    for (interval, expected) in cases {
        let mut c = connect(V5, "c");
        c.properties.session_expiry_interval = Some(60);
        let mut s = accepted_with(ServerConfig::default(), c);
        let mut d = Disconnect::new(ReasonCode::Success);
        d.properties = DisconnectProperties {
            session_expiry_interval: Some(interval),
            ..DisconnectProperties::default()
        };
        s.feed(Packet::Disconnect(d));
        assert!(s.sent().is_empty());
        assert_closed(
            &s.events(),
            Initiator::Peer,
            CloseReason::Disconnect(ReasonCode::Success),
        );
        assert_eq!(s.session.session_expiry(), expected);
    }
}

#[test]
fn disconnect_raising_expiry_after_zero_is_a_protocol_error_v5() {
    // 5.0 section 3.14.2.2.2 (no numbered statement; the task brief cited [MQTT-3.14.2-2],
    // which is the server-side rule): after CONNECT set 0, a DISCONNECT with a non-zero Session
    // Expiry Interval is a Protocol Error: DISCONNECT 0x82, and the will is handed over since
    // the close is not a normal one. Setting it to 0 again is allowed.
    let mut s = with_will(V5);
    let mut d = Disconnect::new(ReasonCode::Success);
    d.properties.session_expiry_interval = Some(30);
    s.feed(Packet::Disconnect(d));
    let will = assert_violation(
        &mut s,
        ReasonCode::ProtocolError,
        CloseReason::ProtocolViolation(ProtocolViolation::SessionExpiryAfterZero),
    );
    assert!(will.is_some());
    assert_eq!(s.session.session_expiry(), SessionExpiry::AtClose);

    let mut s = with_will(V5);
    let mut d = Disconnect::new(ReasonCode::Success);
    d.properties.session_expiry_interval = Some(0);
    s.feed(Packet::Disconnect(d));
    assert!(s.sent().is_empty());
    let will = assert_closed(
        &s.events(),
        Initiator::Peer,
        CloseReason::Disconnect(ReasonCode::Success),
    );
    assert!(will.is_none());
}

#[test]
fn connack_session_expiry_replaces_the_clients_v5() {
    // 5.0 section 3.2.2.3.2: a Session Expiry Interval in CONNACK is the one the server uses;
    // session_expiry() reports it.
    let mut c = connect(V5, "c");
    c.properties.session_expiry_interval = Some(u32::MAX);
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(c);
    s.accept_with(
        ConnAckProperties {
            session_expiry_interval: Some(600),
            ..ConnAckProperties::default()
        },
        None,
    );
    assert_eq!(
        s.session.session_expiry(),
        SessionExpiry::After(Duration::from_secs(600))
    );
}

// ----- protocol violations -----

#[test]
fn malformed_bytes_v5() {
    // [MQTT-4.13.1-1] (5.0): a Malformed Packet closes the connection after DISCONNECT 0x81:
    // a PUBLISH with QoS 3 ([MQTT-3.3.1-4]), a SUBSCRIBE with wrong fixed-header flags
    // ([MQTT-3.8.1-1]), an UNSUBSCRIBE with wrong flags ([MQTT-3.10.1-1]), a DISCONNECT with
    // reserved flags ([MQTT-3.14.1-1]), a reserved packet type, a remaining length of five
    // bytes. One Closed event, the will handed over, and nothing after it is read.
    let cases: [&[u8]; 6] = [
        &[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01],
        &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00],
        &[0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'],
        &[0xE1, 0x00],
        &[0x00, 0x00],
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
    ];
    for bytes in cases {
        let mut s = with_will(V5);
        let mut input = bytes.to_vec();
        input.extend_from_slice(&[0xC0, 0x00]);
        s.feed_bytes(&input);
        let sent = s.sent();
        assert_eq!(briefs(&sent), ["DISCONNECT(0x81)"], "{bytes:02x?}");
        let events = s.events();
        let closes = closes(&events);
        assert_eq!(closes.len(), 1, "{events:?}");
        assert_eq!(closes[0].0, Initiator::Session);
        assert!(
            matches!(closes[0].1, CloseReason::Malformed(_)),
            "{closes:?}"
        );
        assert!(closes[0].2.is_some(), "the will is handed over");
        s.transport_closed();
        s.feed(Packet::PingReq);
        s.assert_quiet();
    }
}

#[test]
fn malformed_bytes_v311_close_without_a_packet() {
    // [MQTT-3.3.1-4], [MQTT-3.8.1-1], [MQTT-3.14.1-1] (3.1.1): a malformed packet closes the
    // connection; 3.1.1 has no server DISCONNECT, so nothing is sent.
    for bytes in [
        &[0x36u8, 0x05, 0x00, 0x01, b'a', 0x00, 0x01][..],
        &[0x82, 0x00],
        &[0xE1, 0x00],
    ] {
        let mut s = with_will(V3);
        s.feed_bytes(bytes);
        assert!(s.sent().is_empty());
        let events = s.events();
        assert_eq!(closes(&events).len(), 1);
        assert!(matches!(closes(&events)[0].1, CloseReason::Malformed(_)));
        assert_eq!(s.state(), ServerState::Closed);
    }
}

#[test]
fn packet_too_large_v5() {
    // [MQTT-3.2.2-15] (5.0): the client must not exceed our Maximum Packet Size; one that
    // does is refused from its fixed header (before its body arrives) with DISCONNECT 0x95.
    let config = ServerConfig::default().with_max_packet_size(100);
    let mut s = accepted_with(config, connect(V5, "c"));
    // Only the fixed header of a 1000-byte PUBLISH.
    s.feed_bytes(&[0x30, 0xE5, 0x07]);
    assert_violation(
        &mut s,
        ReasonCode::PacketTooLarge,
        CloseReason::Malformed(mqtt_streaming_proto::DecodeError::PacketTooLarge {
            size: 1000,
            max: 100,
        }),
    );
}

#[test]
fn packet_too_large_before_connect() {
    // The configured Maximum Packet Size bounds the CONNECT too: an oversized one closes the
    // connection without a reply (nothing is buffered for it).
    let config = ServerConfig::default().with_max_packet_size(64);
    let mut s = Server::new(V3, config);
    s.feed_bytes(&[0x10, 0xE5, 0x07]);
    assert!(s.sent().is_empty());
    assert!(matches!(
        closes(&s.events())[..],
        [(Initiator::Session, CloseReason::Malformed(_), None)]
    ));
}

#[test]
fn packets_a_server_never_receives_are_protocol_errors_v5() {
    // [MQTT-4.13.1-1] (5.0): CONNACK, SUBACK, UNSUBACK and PINGRESP from a client are Protocol
    // Errors: DISCONNECT 0x82, one Closed event.
    let cases = [
        Packet::ConnAck(Box::new(ConnAck::new(ReasonCode::Success))),
        Packet::SubAck(SubAck {
            packet_id: pid(1),
            reason_codes: vec![ReasonCode::Success],
            properties: Default::default(),
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: pid(1),
            reason_codes: vec![ReasonCode::Success],
            properties: Default::default(),
        }),
        Packet::PingResp,
    ];
    for packet in cases {
        let kind = packet.packet_type();
        let mut s = accepted(V5);
        s.feed(packet);
        assert_violation(
            &mut s,
            ReasonCode::ProtocolError,
            CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedPacket(kind)),
        );
    }
}

#[test]
fn acks_for_unknown_ids_from_the_client_are_tolerated() {
    // Issue 10 item 6; 5.0 section 3.6.2.1 (0x92 Packet Identifier not found is "not an error
    // during recovery"); 3.1.1 has no rule on them; mosquitto ignores them. A PUBACK or
    // PUBCOMP for nothing outstanding is ignored (it used to close the connection); a PUBREC
    // gets a PUBREL, with 0x92 in 5.0, so the client can free the identifier.
    for version in [V5, V3] {
        let mut s = accepted(version);
        s.feed(puback(1));
        s.feed(pubcomp(2));
        s.feed(pubrec(3));
        match &s.sent()[..] {
            [Packet::PubRel(r)] => {
                assert_eq!(r.packet_id, pid(3));
                let code = if version == V5 {
                    ReasonCode::PacketIdentifierNotFound
                } else {
                    ReasonCode::Success
                };
                assert_eq!(r.reason_code, code, "{version:?}");
            }
            other => panic!("{version:?}: {other:?}"),
        }
        assert!(s.events().is_empty());
        assert_eq!(s.state(), ServerState::Connected);
    }
}

#[test]
fn wrong_acks_from_the_client_are_protocol_errors_v5() {
    // [MQTT-4.13.1-1] (5.0): a PUBREL for a QoS 2 message whose PUBREC was never sent is a
    // Protocol Error (0x82). (A PUBACK/PUBREC/PUBCOMP for nothing outstanding is not: issue 10
    // item 6, see `acks_for_unknown_ids_from_the_client_are_tolerated`.)
    let mut s = accepted_with(
        ServerConfig::default().with_ack_mode(AckMode::Manual),
        connect(V5, "c"),
    );
    s.feed(client_publish("t", QoS::ExactlyOnce, 4, "x"));
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
fn violation_reports_once_and_ignores_later_input() {
    // [MQTT-3.14.4-1] (5.0): nothing is sent after the DISCONNECT; timers, transport loss and
    // commands after the close add no second Closed.
    let mut s = keep_alive(V5, 1);
    s.feed(Packet::PingResp);
    assert_eq!(briefs(&s.sent()), ["DISCONNECT(0x82)"]);
    assert_eq!(closes(&s.events()).len(), 1);
    s.advance(10_000);
    s.transport_closed();
    s.feed(Packet::PingReq);
    assert!(s
        .disconnect(Disconnect::new(ReasonCode::ServerShuttingDown))
        .is_err());
    s.assert_quiet();
    let none: Option<ServerEvent<u32>> = s.session.poll_event();
    assert!(none.is_none());
}
