//! Client session: MQTT 5 enhanced authentication (AUTH during connect, re-authentication)
//! and AUTH packets that do not fit the exchange.
//!
//! Statement ids are MQTT 5.0.

mod support;

use bytes::Bytes;
use mqtt_streaming_proto::{
    Auth, AuthProperties, ConnAck, MqttString, Packet, PacketType, QoS, ReasonCode,
};
use mqtt_streaming_session::{
    ClientConfig, ClientEvent, CloseReason, CommandError, ConnectionState, ProtocolViolation,
};
use support::client::*;

const METHOD: &str = "SCRAM-SHA-256";

fn auth(code: ReasonCode, method: &str, data: &'static [u8]) -> Auth {
    Auth {
        reason_code: code,
        properties: AuthProperties {
            authentication_method: Some(MqttString::new(method).unwrap()),
            authentication_data: Some(Bytes::from_static(data)),
            ..AuthProperties::default()
        },
    }
}

fn connecting_with_method() -> Script<u32> {
    let mut s: Script<u32> = Script::new(V5, ClientConfig::default());
    let mut c = connect(V5, "c");
    c.properties.authentication_method = Some(MqttString::new(METHOD).unwrap());
    c.properties.authentication_data = Some(Bytes::from_static(b"client-first"));
    s.connect(c);
    let sent = s.sent();
    let [Packet::Connect(c)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(
        c.properties
            .authentication_method
            .as_ref()
            .unwrap()
            .as_str(),
        METHOD
    );
    s
}

fn connack_with_method(method: Option<&str>) -> Packet {
    let mut ack = ConnAck::new(ReasonCode::Success);
    ack.properties.authentication_method = method.map(|m| MqttString::new(m).unwrap());
    Packet::ConnAck(Box::new(ack))
}

#[test]
fn auth_exchange_during_connect() {
    // [MQTT-4.12.0-2], [MQTT-4.12.0-3], [MQTT-4.12.0-5], [MQTT-3.1.2-30] (5.0): the server
    // continues with AUTH 0x18, the application answers with AUTH 0x18 through `auth`, all
    // with the same method; nothing but AUTH leaves before CONNACK.
    let mut s = connecting_with_method();
    s.publish(msg("t", QoS::AtLeastOnce, "m"), 1).unwrap();
    let challenge = auth(ReasonCode::ContinueAuthentication, METHOD, b"server-first");
    s.feed(Packet::Auth(challenge.clone()));
    match &s.events()[..] {
        [ClientEvent::Auth(a)] => assert_eq!(*a, challenge),
        other => panic!("{other:?}"),
    }
    assert!(s.sent().is_empty());
    let answer = auth(ReasonCode::ContinueAuthentication, METHOD, b"client-final");
    s.auth(answer.clone()).unwrap();
    assert_eq!(s.sent(), [Packet::Auth(answer)]);
    assert_eq!(s.session.state(), ConnectionState::Connecting);
    s.feed(connack_with_method(Some(METHOD)));
    assert!(matches!(s.events()[0], ClientEvent::Connected(_)));
    assert_eq!(briefs(&s.sent()), ["PUBLISH1"]);
}

#[test]
fn re_authentication() {
    // [MQTT-4.12.1-1] (5.0): re-authentication uses the original method: the client starts
    // with AUTH 0x19, the server continues with 0x18 and ends with 0x00.
    let mut s = connecting_with_method();
    s.feed(connack_with_method(Some(METHOD)));
    s.events();
    let start = auth(ReasonCode::ReAuthenticate, METHOD, b"again");
    s.auth(start.clone()).unwrap();
    assert_eq!(s.sent(), [Packet::Auth(start)]);
    s.feed(Packet::Auth(auth(
        ReasonCode::ContinueAuthentication,
        METHOD,
        b"challenge",
    )));
    assert!(matches!(s.events()[..], [ClientEvent::Auth(_)]));
    s.auth(auth(
        ReasonCode::ContinueAuthentication,
        METHOD,
        b"response",
    ))
    .unwrap();
    assert_eq!(briefs(&s.sent()), ["AUTH(0x18)"]);
    s.feed(Packet::Auth(auth(ReasonCode::Success, METHOD, b"ok")));
    match &s.events()[..] {
        [ClientEvent::Auth(a)] => assert_eq!(a.reason_code, ReasonCode::Success),
        other => panic!("{other:?}"),
    }
    // Traffic goes on during and after re-authentication.
    s.publish(msg("t", QoS::AtMostOnce, "m"), 1).unwrap();
    assert_eq!(publishes(&s.sent()).len(), 1);
    assert_eq!(s.session.state(), ConnectionState::Connected);
}

#[test]
fn auth_with_a_different_method_is_0x8c() {
    // [MQTT-4.12.0-5] (5.0): every AUTH carries the CONNECT's method; another one is a bad
    // authentication method: DISCONNECT 0x8C, during connect and after.
    let mut s = connecting_with_method();
    s.feed(Packet::Auth(auth(
        ReasonCode::ContinueAuthentication,
        "PLAIN",
        b"x",
    )));
    assert_violation(
        &mut s,
        ReasonCode::BadAuthenticationMethod,
        CloseReason::ProtocolViolation(ProtocolViolation::BadAuthentication),
    );

    let mut s = connecting_with_method();
    s.feed(connack_with_method(Some(METHOD)));
    s.events();
    s.feed(Packet::Auth(auth(
        ReasonCode::ContinueAuthentication,
        "PLAIN",
        b"x",
    )));
    assert_violation(
        &mut s,
        ReasonCode::BadAuthenticationMethod,
        CloseReason::ProtocolViolation(ProtocolViolation::BadAuthentication),
    );
}

#[test]
fn auth_without_a_method_in_connect_is_refused_both_ways() {
    // [MQTT-4.12.0-6] (5.0): no method in CONNECT, so the server may not send AUTH (the
    // client closes with 0x8C); [MQTT-4.12.0-7] (5.0): nor may the client.
    let mut s = connected(V5);
    assert!(matches!(
        s.auth(auth(ReasonCode::ReAuthenticate, METHOD, b"x")),
        Err(CommandError::NoAuthenticationMethod)
    ));
    s.assert_quiet();
    s.feed(Packet::Auth(auth(
        ReasonCode::ContinueAuthentication,
        METHOD,
        b"x",
    )));
    assert_violation(
        &mut s,
        ReasonCode::BadAuthenticationMethod,
        CloseReason::ProtocolViolation(ProtocolViolation::BadAuthentication),
    );
}

#[test]
fn auth_command_needs_v5_and_a_connection() {
    // AUTH exists only in MQTT 5 and only on a connection.
    let mut s = connected(V3);
    assert_eq!(
        s.auth(auth(ReasonCode::ReAuthenticate, METHOD, b"x")),
        Err(CommandError::RequiresV5)
    );
    let mut s = connecting_with_method();
    s.feed(connack_with_method(Some(METHOD)));
    s.transport_closed();
    s.events();
    assert_eq!(
        s.auth(auth(ReasonCode::ReAuthenticate, METHOD, b"x")),
        Err(CommandError::NotConnected)
    );
    s.assert_quiet();
}

#[test]
fn server_auth_with_a_reason_code_it_may_not_send_is_a_protocol_error() {
    // [MQTT-4.12.0-2] (5.0): the server asks for more with 0x18; it never sends 0x19, and it
    // ends the connect exchange with CONNACK, not AUTH 0x00. Stricter reading: both are
    // protocol errors (DISCONNECT 0x82).
    let mut s = connecting_with_method();
    s.feed(Packet::Auth(auth(ReasonCode::ReAuthenticate, METHOD, b"x")));
    assert_violation(
        &mut s,
        ReasonCode::ProtocolError,
        CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedPacket(PacketType::Auth)),
    );
    let mut s = connecting_with_method();
    s.feed(Packet::Auth(auth(ReasonCode::Success, METHOD, b"x")));
    assert_violation(
        &mut s,
        ReasonCode::ProtocolError,
        CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedPacket(PacketType::Auth)),
    );
}

#[test]
fn connack_must_carry_the_connects_authentication_method() {
    // [MQTT-4.12.0-5] (5.0): a successful CONNACK carries the same method; [MQTT-4.12.0-6]
    // (5.0): none when the CONNECT had none. Otherwise: DISCONNECT 0x8C.
    for method in [None, Some("PLAIN")] {
        let mut s = connecting_with_method();
        s.feed(connack_with_method(method));
        assert_violation(
            &mut s,
            ReasonCode::BadAuthenticationMethod,
            CloseReason::ProtocolViolation(ProtocolViolation::BadAuthentication),
        );
    }
    let mut s: Script<u32> = Script::new(V5, ClientConfig::default());
    s.connect(connect(V5, "c"));
    s.sent();
    s.feed(connack_with_method(Some(METHOD)));
    assert_violation(
        &mut s,
        ReasonCode::BadAuthenticationMethod,
        CloseReason::ProtocolViolation(ProtocolViolation::BadAuthentication),
    );
}
