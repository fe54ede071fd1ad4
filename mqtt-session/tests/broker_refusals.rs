//! Issue 10 item 6 and issue 11 (correctness), the broker's side: every refusal is said in
//! the client's version before the close, and no connection is left in limbo. Exchanges fed
//! straight into a `Broker` where the exact answer matters, `BrokerNet` where routing does.
#![cfg(feature = "sim")]

mod broker_support;

use broker_support::*;
use bytes::BytesMut;
use mqtt_streaming_proto::{
    Auth, AuthProperties, Connect, Decoder, Packet, ProtocolVersion, ReasonCode, TopicName,
};
use mqtt_streaming_session::broker::{
    AuthDecision, Broker, BrokerConfig, BrokerEvent, BrokerHooks, ConnectionId,
};
use mqtt_streaming_session::{CloseReason, Instant, Message};

/// Feeds `bytes` to connection `conn` and returns what the broker answered, decoded in
/// `version`.
fn feed<H: BrokerHooks>(
    broker: &mut Broker<H>,
    conn: ConnectionId,
    version: ProtocolVersion,
    bytes: &mut BytesMut,
) -> Vec<Packet> {
    let now = Instant::from_millis(1);
    broker.handle_read(now, conn, bytes);
    let mut out = BytesMut::new();
    while broker.poll_transmit(now, &mut out).is_some() {}
    let decoder = Decoder::new(version);
    let mut answers = Vec::new();
    while let Some(p) = decoder.decode(&mut out).unwrap() {
        answers.push(p);
    }
    assert!(out.is_empty());
    answers
}

fn encoded(packets: &[Packet], version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    for p in packets {
        p.encode(version, &mut buf).unwrap();
    }
    buf
}

fn codes(answers: &[Packet]) -> Vec<(&'static str, ReasonCode)> {
    answers
        .iter()
        .map(|p| match p {
            Packet::ConnAck(a) => ("CONNACK", a.reason_code),
            Packet::Disconnect(d) => ("DISCONNECT", d.reason_code),
            Packet::Auth(a) => ("AUTH", a.reason_code),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

fn events<H: BrokerHooks>(broker: &mut Broker<H>) -> Vec<BrokerEvent> {
    std::iter::from_fn(|| broker.poll_event()).collect()
}

fn closed_reason(events: &[BrokerEvent], conn: ConnectionId) -> Option<CloseReason> {
    events.iter().find_map(|e| match e {
        BrokerEvent::Close {
            connection, reason, ..
        } if *connection == conn => Some(reason.clone()),
        _ => None,
    })
}

fn with_method(id: &str, method: &str) -> Connect {
    let mut c = connect_packet(V5, id, true, 0);
    c.properties.authentication_method = Some(string(method));
    c
}

// ----- [MQTT-4.12.0-1]: a method nobody handles -----

#[test]
fn unknown_authentication_method_refused_0x8c_mqtt_4_12_0_1() {
    // [MQTT-4.12.0-1] (5.0): a Server that does not support the client's Authentication
    // Method MAY send CONNACK 0x8C (or 0x87) and MUST close. The default hooks handle no
    // method; they used to accept such a CONNECT with 0x00 as if it had been carried out.
    let mut broker = Broker::new(BrokerConfig::default());
    let conn = broker.open(Instant::from_millis(1)).unwrap();
    let mut bytes = encoded(&[Packet::from(with_method("c", "SCRAM-SHA-256"))], V5);
    let answers = feed(&mut broker, conn, V5, &mut bytes);
    assert_eq!(
        codes(&answers),
        [("CONNACK", ReasonCode::BadAuthenticationMethod)]
    );
    assert_eq!(
        closed_reason(&events(&mut broker), conn),
        Some(CloseReason::ConnectRefused(
            ReasonCode::BadAuthenticationMethod
        ))
    );
    assert_eq!(broker.stats().sessions, 0);

    // Without a method, the default hooks still let everyone in.
    let conn = broker.open(Instant::from_millis(1)).unwrap();
    let mut bytes = encoded(&[Packet::from(connect_packet(V5, "c", true, 0))], V5);
    let answers = feed(&mut broker, conn, V5, &mut bytes);
    assert_eq!(codes(&answers), [("CONNACK", ReasonCode::Success)]);
}

// ----- [MQTT-4.12.1-2]: a refused re-authentication closes -----

/// Accepts any method in one step; refuses every re-authentication with a CONNACK-only code,
/// as `AuthDecision::Reject`'s docs invite.
struct RefuseReauth;

impl BrokerHooks for RefuseReauth {
    fn authenticate(&mut self, _connect: &Connect) -> AuthDecision {
        AuthDecision::Accept
    }

    fn continue_authentication(&mut self, _client_id: &str, _auth: &Auth) -> AuthDecision {
        AuthDecision::Reject(ReasonCode::BadUserNameOrPassword)
    }
}

#[test]
fn refused_reauthentication_disconnects_0x87_and_closes_mqtt_4_12_1_2() {
    // [MQTT-4.12.1-2] (5.0): a failed re-authentication SHOULD get a DISCONNECT with an
    // appropriate Reason Code and MUST close the connection. Issue 11: the hook's 0x86 is not
    // valid in DISCONNECT; the encode used to fail silently and the client stayed connected.
    // Now DISCONNECT 0x87 Not authorized goes out and the connection closes.
    let mut broker = Broker::with_hooks(BrokerConfig::default(), RefuseReauth);
    let conn = broker.open(Instant::from_millis(1)).unwrap();
    let mut bytes = encoded(&[Packet::from(with_method("c", "token"))], V5);
    let answers = feed(&mut broker, conn, V5, &mut bytes);
    assert_eq!(codes(&answers), [("CONNACK", ReasonCode::Success)]);
    events(&mut broker);

    let reauth = Auth {
        reason_code: ReasonCode::ReAuthenticate,
        properties: AuthProperties {
            authentication_method: Some(string("token")),
            ..AuthProperties::default()
        },
    };
    let mut bytes = encoded(&[Packet::Auth(reauth)], V5);
    let answers = feed(&mut broker, conn, V5, &mut bytes);
    assert_eq!(codes(&answers), [("DISCONNECT", ReasonCode::NotAuthorized)]);
    assert_eq!(
        closed_reason(&events(&mut broker), conn),
        Some(CloseReason::Disconnect(ReasonCode::NotAuthorized))
    );
    assert_eq!(broker.stats().connections, 0);
    assert_eq!(broker.stats().session_errors, 0);
}

// ----- issue 10 item 6: CONNECT and a bad packet in one read -----

#[test]
fn connect_and_a_malformed_packet_in_one_read_connack_then_disconnect_mqtt_4_13_1_1() {
    // [MQTT-4.13.1-1] (5.0): a Malformed Packet closes, after a DISCONNECT with its reason
    // code where one can be sent ([MQTT-3.14.0-1]: only after the CONNACK). The CONNACK used to
    // be lost when the bad bytes came in the same read as the CONNECT.
    let mut broker = Broker::new(BrokerConfig::default());
    let conn = broker.open(Instant::from_millis(1)).unwrap();
    let mut bytes = encoded(&[Packet::from(connect_packet(V5, "c", true, 0))], V5);
    bytes.extend_from_slice(&[0x00, 0x00]); // reserved packet type 0
    let answers = feed(&mut broker, conn, V5, &mut bytes);
    assert_eq!(
        codes(&answers),
        [
            ("CONNACK", ReasonCode::Success),
            ("DISCONNECT", ReasonCode::MalformedPacket)
        ]
    );
    let events = events(&mut broker);
    assert!(
        matches!(events[0], BrokerEvent::Connected { .. }),
        "{events:?}"
    );
    assert!(matches!(
        closed_reason(&events, conn),
        Some(CloseReason::Malformed(_))
    ));
}

// ----- issue 10 item 6: $SYS is the broker's -----

#[test]
fn client_publishes_to_sys_are_dropped_mqtt_4_7_2_1() {
    // Issue 10 item 6; [MQTT-4.7.2-1] context: topics starting with "$" are the server's
    // (kept from wildcard subscriptions), "$SYS/" by convention its statistics. A client's
    // PUBLISH there is dropped and counted: MQTT 5 gets PUBACK 0x87 Not authorized, 3.1.1 a
    // plain PUBACK (no negative acknowledgement there). It is not retained either.
    // `Broker::publish` from the application still reaches $SYS subscribers.
    let mut net = net();
    let sub = client(&mut net, V5, "sub", true, 0);
    subscribe(&mut net, sub, "$SYS/#", Q1);
    let p5 = client(&mut net, V5, "p5", true, 0);
    let p3 = client(&mut net, V3, "p3", true, 0);
    publish(&mut net, p5, "$SYS/broker/uptime", Q1, "forged");
    publish(&mut net, p3, "$SYS/broker/uptime", Q1, "forged");
    publish(&mut net, p5, "$SYS", Q1, "forged");
    let mut retained = Message::new(topic("$SYS/broker/version"), Q1, "forged");
    retained.retain = true;
    send(&mut net, p5, retained);
    net.run_for(SETTLE_MS);
    assert_eq!(
        publish_acks(&net, p5),
        [ReasonCode::NotAuthorized; 3].to_vec()
    );
    assert_eq!(publish_acks(&net, p3), [ReasonCode::Success]);
    assert!(payloads(&net, sub).is_empty());
    assert_eq!(net.broker.stats().dropped_sys_topic, 4);
    assert_eq!(net.broker.stats().retained, 0);

    // A topic that merely starts with the same letters is an ordinary one.
    let any = client(&mut net, V5, "any", true, 0);
    subscribe(&mut net, any, "$SYSTEM/#", Q1);
    publish(&mut net, p5, "$SYSTEM/x", Q1, "fine");
    assert_eq!(payloads(&net, any), ["fine"]);

    let now = net.now;
    let name = TopicName::new("$SYS/broker/uptime").unwrap();
    net.broker.publish(now, Message::new(name, Q1, "42"));
    net.run_for(SETTLE_MS);
    assert_eq!(payloads(&net, sub), ["42"]);
}

#[test]
fn will_to_sys_is_dropped() {
    // Issue 10 item 6: a will is a publish of its client; one to $SYS is dropped too.
    let mut net = net();
    let sub = client(&mut net, V5, "sub", true, 0);
    subscribe(&mut net, sub, "$SYS/#", Q1);
    let c = net.add_client(mqtt_streaming_session::ClientConfig::default());
    let mut connect = connect_packet(V5, "dev", true, 0);
    connect.will = Some(mqtt_streaming_proto::Will {
        topic: topic("$SYS/broker/clients/connected"),
        payload: bytes::Bytes::from_static(b"0"),
        qos: Q1,
        retain: false,
        properties: mqtt_streaming_proto::WillProperties::default(),
    });
    broker_support::connect(&mut net, c, connect);
    cut(&mut net, c);
    assert!(payloads(&net, sub).is_empty());
    assert_eq!(net.broker.stats().dropped_sys_topic, 1);
    assert_eq!(net.broker.stats().wills_published, 0);
}

// ----- issue 10 item 6: refused at max_connections, with a word -----

#[test]
fn connect_beyond_max_connections_gets_connack_quota_exceeded() {
    // Issue 10 item 6; 5.0 section 3.2.2.2 (0x97 Quota exceeded) and [MQTT-3.2.2-7] (5.0) /
    // [MQTT-3.2.2-5] (3.1.1): a CONNACK with an error code, then the close. A client beyond
    // `max_connections` used to get a bare TCP close; now up to `max_refusing_connections`
    // of them get the refusal in their own version (3.1.1: return code 3 Server unavailable)
    // and beyond those `open` still refuses at once.
    let mut broker = Broker::new(BrokerConfig {
        max_connections: 1,
        max_refusing_connections: 1,
        ..BrokerConfig::default()
    });
    let now = Instant::from_millis(1);
    let first = broker.open(now).unwrap();
    let mut bytes = encoded(&[Packet::from(connect_packet(V5, "a", true, 0))], V5);
    assert_eq!(
        codes(&feed(&mut broker, first, V5, &mut bytes)),
        [("CONNACK", ReasonCode::Success)]
    );
    events(&mut broker);

    let second = broker.open(now).expect("a refusing connection");
    assert!(broker.open(now).is_err(), "beyond the refusing ones");
    let mut bytes = encoded(&[Packet::from(connect_packet(V5, "b", true, 0))], V5);
    assert_eq!(
        codes(&feed(&mut broker, second, V5, &mut bytes)),
        [("CONNACK", ReasonCode::QuotaExceeded)]
    );
    assert_eq!(
        closed_reason(&events(&mut broker), second),
        Some(CloseReason::ConnectRefused(ReasonCode::QuotaExceeded))
    );

    // Its slot is free again once its CONNACK is out; a 3.1.1 client gets return code 3.
    let third = broker.open(now).expect("the refusing slot is free again");
    let mut bytes = encoded(&[Packet::from(connect_packet(V3, "c", true, 0))], V3);
    broker.handle_read(now, third, &mut bytes);
    let mut out = BytesMut::new();
    assert_eq!(broker.poll_transmit(now, &mut out), Some(third));
    assert_eq!(&out[..], [0x20, 0x02, 0x00, 0x03]);

    let stats = broker.stats();
    assert_eq!(stats.connections_refused, 3);
    assert_eq!(stats.connections_total, 1);
    assert_eq!(stats.sessions, 1, "refused clients get no session");
}

#[test]
fn refusing_connection_waits_for_connect_no_longer_than_the_connect_timeout() {
    // Issue 10 item 6: the refusing connections are bounded in number and in time: one that
    // sends nothing is closed at the CONNECT timeout like any other.
    let config = BrokerConfig {
        max_connections: 0,
        max_refusing_connections: 1,
        ..BrokerConfig::default()
    };
    let timeout = config.server.connect_timeout;
    let mut broker = Broker::new(config);
    let conn = broker.open(Instant::from_millis(0)).unwrap();
    assert_eq!(
        broker.poll_timeout(),
        Some(Instant::from_millis(timeout.as_millis() as u64))
    );
    broker.handle_timeout(Instant::from_millis(timeout.as_millis() as u64));
    assert_eq!(
        closed_reason(&events(&mut broker), conn),
        Some(CloseReason::ConnectTimeout)
    );
    assert!(broker
        .open(Instant::from_millis(timeout.as_millis() as u64))
        .is_ok());
}

/// Starts an enhanced-authentication exchange for every CONNECT and never ends it.
struct EndlessChallenge;

impl BrokerHooks for EndlessChallenge {
    fn authenticate(&mut self, _connect: &Connect) -> AuthDecision {
        AuthDecision::Continue(AuthProperties::default())
    }

    fn continue_authentication(&mut self, _client_id: &str, _auth: &Auth) -> AuthDecision {
        AuthDecision::Continue(AuthProperties::default())
    }
}

#[test]
fn undecided_connects_get_an_answer_at_shutdown_and_at_the_decide_deadline() {
    // Issue 11: no connection waits undecided. A CONNECT in an enhanced-authentication
    // exchange ([MQTT-4.12.0-2] 5.0, AUTH 0x18) gets CONNACK 0x88 Server unavailable when the
    // broker shuts down (it used to be closed without a word), and CONNACK 0x89 Server busy
    // when the exchange outlasts the decide timeout.
    let mut broker = Broker::with_hooks(BrokerConfig::default(), EndlessChallenge);
    let conn = broker.open(Instant::from_millis(1)).unwrap();
    let mut bytes = encoded(&[Packet::from(with_method("c", "m"))], V5);
    let answers = feed(&mut broker, conn, V5, &mut bytes);
    assert_eq!(
        codes(&answers),
        [("AUTH", ReasonCode::ContinueAuthentication)]
    );
    broker.shutdown(Instant::from_millis(2));
    let mut out = BytesMut::new();
    assert_eq!(
        broker.poll_transmit(Instant::from_millis(2), &mut out),
        Some(conn)
    );
    assert_eq!(&out[..], [0x20, 0x03, 0x00, 0x88, 0x00]);

    let mut broker = Broker::with_hooks(BrokerConfig::default(), EndlessChallenge);
    let conn = broker.open(Instant::from_millis(1)).unwrap();
    let mut bytes = encoded(&[Packet::from(with_method("c", "m"))], V5);
    feed(&mut broker, conn, V5, &mut bytes);
    events(&mut broker);
    let deadline = broker.poll_timeout().expect("the decide deadline");
    assert_eq!(
        deadline,
        Instant::from_millis(1) + BrokerConfig::default().server.decide_timeout
    );
    broker.handle_timeout(deadline);
    let mut out = BytesMut::new();
    assert_eq!(broker.poll_transmit(deadline, &mut out), Some(conn));
    assert_eq!(&out[..], [0x20, 0x03, 0x00, 0x89, 0x00]);
    assert_eq!(
        closed_reason(&events(&mut broker), conn),
        Some(CloseReason::DecideTimeout)
    );
}
