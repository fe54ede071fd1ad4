//! Issue 5, hooks (authentication, enhanced authentication, topic ACLs) and limits with their
//! reason codes, and the counters. Simulation through `BrokerNet`, plus a few exchanges fed
//! straight into the `Broker` where the exact bytes it answers with matter.
#![cfg(feature = "sim")]

mod broker_support;

use broker_support::*;
use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    Auth, AuthProperties, Connect, Decoder, Packet, PacketId, ProtocolVersion, Publish, QosPid,
    ReasonCode, TopicFilter, TopicName, Will, WillProperties,
};
use mqtt_streaming_session::broker::{
    AuthDecision, Broker, BrokerConfig, BrokerHooks, ConnectionId,
};
use mqtt_streaming_session::sim::{BrokerNet, NetworkConfig};
use mqtt_streaming_session::{AckMode, ClientConfig, ClientEvent, CloseReason, Instant, Message};

/// Users: "bad" refused with 0x86, "nobody" with 0x87; method "challenge" needs the data
/// "right" after one round; nobody may publish or subscribe under "secret/".
struct Policy;

impl BrokerHooks for Policy {
    fn authenticate(&mut self, connect: &Connect) -> AuthDecision {
        match connect.client_id.as_str() {
            "bad" => AuthDecision::Reject(ReasonCode::BadUserNameOrPassword),
            "nobody" => AuthDecision::Reject(ReasonCode::NotAuthorized),
            _ if connect.properties.authentication_method.is_some() => {
                AuthDecision::Continue(AuthProperties {
                    authentication_data: Some(Bytes::from_static(b"nonce")),
                    ..AuthProperties::default()
                })
            }
            _ => AuthDecision::Accept,
        }
    }

    fn continue_authentication(&mut self, _client_id: &str, auth: &Auth) -> AuthDecision {
        match auth.properties.authentication_data.as_deref() {
            Some(b"right") => AuthDecision::Accept,
            _ => AuthDecision::Reject(ReasonCode::NotAuthorized),
        }
    }

    fn authorize_publish(&mut self, _client_id: &str, topic: &TopicName) -> bool {
        !topic.as_str().starts_with("secret/")
    }

    fn authorize_subscribe(&mut self, _client_id: &str, filter: &TopicFilter) -> bool {
        !filter.as_str().starts_with("secret/")
    }
}

fn policy_net() -> BrokerNet<Policy> {
    BrokerNet::with_broker(
        7,
        NetworkConfig::default(),
        Broker::with_hooks(BrokerConfig::default(), Policy),
    )
}

/// Feeds `packets` to connection `conn` of a bare broker and returns what it answered.
fn exchange<H: BrokerHooks>(
    broker: &mut Broker<H>,
    conn: ConnectionId,
    version: ProtocolVersion,
    packets: Vec<Packet>,
) -> Vec<Packet> {
    let now = Instant::from_millis(1);
    let mut buf = BytesMut::new();
    for p in packets {
        p.encode(version, &mut buf).unwrap();
    }
    broker.handle_read(now, conn, &mut buf);
    let mut out = BytesMut::new();
    while broker.poll_transmit(now, &mut out).is_some() {}
    let decoder = Decoder::new(version);
    let mut answers = Vec::new();
    while let Some(p) = decoder.decode(&mut out).unwrap() {
        answers.push(p);
    }
    answers
}

fn bare(config: BrokerConfig, version: ProtocolVersion) -> (Broker, ConnectionId) {
    let mut broker = Broker::new(config);
    let conn = broker.open(Instant::from_millis(1)).unwrap();
    let answers = exchange(
        &mut broker,
        conn,
        version,
        vec![Packet::from(connect_packet(version, "c", true, 0))],
    );
    assert!(matches!(&answers[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::Success));
    (broker, conn)
}

fn disconnect_code(answers: &[Packet]) -> Option<ReasonCode> {
    answers.iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.reason_code),
        _ => None,
    })
}

fn raw_publish(t: &str, qos: u8, id: u16, len: usize) -> Packet {
    let pid = PacketId::new(id).unwrap();
    let qos_pid = match qos {
        0 => QosPid::AtMostOnce,
        1 => QosPid::AtLeastOnce(pid),
        _ => QosPid::ExactlyOnce(pid),
    };
    Packet::Publish(Publish::new(topic(t), qos_pid, vec![b'x'; len]))
}

// ----- hooks -----

#[test]
fn authenticate_reject_v5_reason_codes() {
    // [MQTT-3.2.2-6] 5.0 (CONNACK with an error code, then close): 0x86 and 0x87.
    let mut net = policy_net();
    let bad = client(&mut net, V5, "bad", true, 0);
    let nobody = client(&mut net, V5, "nobody", true, 0);
    assert_eq!(
        close_reason(&net, bad),
        Some(CloseReason::ConnectRefused(
            ReasonCode::BadUserNameOrPassword
        ))
    );
    assert_eq!(
        close_reason(&net, nobody),
        Some(CloseReason::ConnectRefused(ReasonCode::NotAuthorized))
    );
    assert_eq!(net.broker.stats().sessions, 0);
}

#[test]
fn authenticate_reject_v311_return_codes() {
    // 3.1.1 3.2.2.3: return codes 0x04 bad user name or password, 0x05 not authorized.
    for (id, code) in [("bad", 0x04), ("nobody", 0x05)] {
        let mut broker = Broker::with_hooks(BrokerConfig::default(), Policy);
        let conn = broker.open(Instant::from_millis(1)).unwrap();
        let mut buf = BytesMut::new();
        Packet::from(connect_packet(V3, id, true, 0))
            .encode(V3, &mut buf)
            .unwrap();
        let now = Instant::from_millis(1);
        broker.handle_read(now, conn, &mut buf);
        let mut out = BytesMut::new();
        assert_eq!(broker.poll_transmit(now, &mut out), Some(conn));
        assert_eq!(&out[..], [0x20, 0x02, 0x00, code]);
    }
}

#[test]
fn enhanced_authentication_continue_then_accept() {
    // [MQTT-4.12.0-1], [MQTT-4.12.0-5] 5.0: AUTH 0x18 Continue, the client's AUTH, then CONNACK
    // with the method.
    for (data, accepted) in [(&b"right"[..], true), (&b"wrong"[..], false)] {
        let mut net = policy_net();
        let c = net.add_client(ClientConfig::default());
        let mut connect = connect_packet(V5, "dev", true, 0);
        connect.properties.authentication_method = Some(string("challenge"));
        net.connect(c, connect).unwrap();
        net.run_for(SETTLE_MS);
        let challenge = net.clients[c].events.iter().find_map(|e| match e {
            ClientEvent::Auth(a) => Some(a.clone()),
            _ => None,
        });
        let challenge = challenge.expect("AUTH from the broker");
        assert_eq!(challenge.reason_code, ReasonCode::ContinueAuthentication);
        assert_eq!(
            challenge.properties.authentication_data.as_deref(),
            Some(&b"nonce"[..])
        );
        let now = net.now;
        let reply = Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties: AuthProperties {
                authentication_method: Some(string("challenge")),
                authentication_data: Some(Bytes::copy_from_slice(data)),
                ..AuthProperties::default()
            },
        };
        net.clients[c].session.auth(now, reply).unwrap();
        net.run_for(SETTLE_MS);
        if accepted {
            let ack = connack(&net, c);
            assert_eq!(ack.reason_code, ReasonCode::Success);
            assert_eq!(
                ack.properties.authentication_method,
                Some(string("challenge"))
            );
        } else {
            assert_eq!(
                close_reason(&net, c),
                Some(CloseReason::ConnectRefused(ReasonCode::NotAuthorized))
            );
        }
    }
}

#[test]
fn authorize_publish_refused_v5_puback_0x87_and_dropped() {
    // Issue 5 hooks; 5.0 3.4.2.1: PUBACK 0x87 Not authorized; the message is not routed.
    let mut net = policy_net();
    let s = client(&mut net, V5, "s", true, 0);
    subscribe(&mut net, s, "#", Q1);
    let p = client(&mut net, V5, "p", true, 0);
    publish(&mut net, p, "secret/x", Q1, "no");
    publish(&mut net, p, "open/x", Q1, "yes");
    assert_eq!(
        publish_acks(&net, p),
        [ReasonCode::NotAuthorized, ReasonCode::Success]
    );
    assert_eq!(payloads(&net, s), ["yes"]);
    assert_eq!(net.broker.stats().dropped_unauthorized, 1);
}

#[test]
fn authorize_publish_refused_v311_acked_and_dropped() {
    // 3.1.1 has no negative PUBACK: the message is acknowledged and dropped.
    let mut net = policy_net();
    let s = client(&mut net, V3, "s", true, 0);
    subscribe(&mut net, s, "#", Q1);
    let p = client(&mut net, V3, "p", true, 0);
    publish(&mut net, p, "secret/x", Q1, "no");
    assert_eq!(publish_acks(&net, p), [ReasonCode::Success]);
    assert!(payloads(&net, s).is_empty());
}

#[test]
fn authorize_subscribe_refused_0x87_v5_0x80_v311() {
    // 5.0 3.9.3 (0x87 Not authorized) / [MQTT-3.9.3-2] 3.1.1 (0x80 Failure), per filter.
    let mut net = policy_net();
    let a = client(&mut net, V5, "a", true, 0);
    let b = client(&mut net, V3, "b", true, 0);
    for i in [a, b] {
        let req = mqtt_streaming_session::SubscribeRequest::new(filter("secret/#"), Q1).and(
            filter("open/#"),
            mqtt_streaming_proto::SubscriptionOptions::new(Q1),
        );
        subscribe_req(&mut net, i, req);
    }
    assert_eq!(
        suback_codes(&net, a),
        [ReasonCode::NotAuthorized, ReasonCode::GrantedQoS1]
    );
    assert_eq!(
        suback_codes(&net, b),
        [ReasonCode::UnspecifiedError, ReasonCode::GrantedQoS1]
    );
    assert_eq!(net.broker.stats().subscriptions, 2);
}

#[test]
fn will_to_unauthorized_topic_not_published() {
    // Issue 5 hooks: a will is a publish of its client, subject to authorize_publish.
    let mut net = policy_net();
    let s = client(&mut net, V5, "s", true, 0);
    subscribe(&mut net, s, "#", Q1);
    let c = net.add_client(ClientConfig::default());
    let mut connect = connect_packet(V5, "dev", true, 0);
    connect.will = Some(Will {
        topic: topic("secret/will"),
        payload: Bytes::from_static(b"w"),
        qos: Q1,
        retain: false,
        properties: WillProperties::default(),
    });
    broker_support::connect(&mut net, c, connect);
    cut(&mut net, c);
    assert!(payloads(&net, s).is_empty());
    assert_eq!(net.broker.stats().dropped_unauthorized, 1);
}

// ----- limits -----

#[test]
fn max_connections_refuses_open() {
    // Issue 5 limits: `open` refuses beyond max_connections (with no refusing connections
    // allowed, see broker_refusals for those), counted.
    let mut net = net_with(BrokerConfig {
        max_connections: 2,
        max_refusing_connections: 0,
        ..BrokerConfig::default()
    });
    client(&mut net, V5, "a", true, 0);
    client(&mut net, V5, "b", true, 0);
    let c = net.add_client(ClientConfig::default());
    assert!(net.connect(c, connect_packet(V5, "c", true, 0)).is_err());
    let stats = net.broker.stats();
    assert_eq!((stats.connections, stats.connections_refused), (2, 1));
}

#[test]
fn max_packet_size_exceeded_disconnect_0x95() {
    // [MQTT-3.2.2-15] 5.0 (announced in CONNACK) and 4.13: DISCONNECT 0x95 Packet too large.
    let config = BrokerConfig {
        server: BrokerConfig::default().server.with_max_packet_size(100),
        ..BrokerConfig::default()
    };
    let (mut broker, conn) = bare(config, V5);
    let answers = exchange(&mut broker, conn, V5, vec![raw_publish("t", 0, 1, 200)]);
    assert_eq!(disconnect_code(&answers), Some(ReasonCode::PacketTooLarge));
    assert_eq!(broker.stats().connections, 0);
}

#[test]
fn maximum_qos_exceeded_disconnect_0x9b() {
    // [MQTT-3.2.2-11] 5.0: a PUBLISH above the announced Maximum QoS: DISCONNECT 0x9B.
    let mut config = BrokerConfig::default();
    config.server.maximum_qos = Q1;
    let (mut broker, conn) = bare(config, V5);
    let answers = exchange(&mut broker, conn, V5, vec![raw_publish("t", 2, 1, 1)]);
    assert_eq!(disconnect_code(&answers), Some(ReasonCode::QoSNotSupported));
}

#[test]
fn receive_maximum_exceeded_disconnect_0x93() {
    // [MQTT-3.3.4-9] 5.0: more unacknowledged QoS 2 PUBLISHes than Receive Maximum: 0x93.
    let mut config = BrokerConfig::default();
    config.server.receive_maximum = 2;
    let (mut broker, conn) = bare(config, V5);
    let answers = exchange(
        &mut broker,
        conn,
        V5,
        vec![raw_publish("t", 2, 1, 1), raw_publish("t", 2, 2, 1)],
    );
    assert!(disconnect_code(&answers).is_none());
    let answers = exchange(&mut broker, conn, V5, vec![raw_publish("t", 2, 3, 1)]);
    assert_eq!(
        disconnect_code(&answers),
        Some(ReasonCode::ReceiveMaximumExceeded)
    );
}

#[test]
fn receive_maximum_of_the_client_respected_outbound() {
    // [MQTT-3.3.4-7] 5.0: the broker sends no more unacknowledged QoS 1/2 than the client's
    // Receive Maximum; the rest follow as acknowledgements come.
    let mut net = net();
    let s = net.add_client(
        ClientConfig::default()
            .with_ack_mode(AckMode::Manual)
            .with_receive_maximum(2),
    );
    connect(&mut net, s, connect_packet(V5, "s", true, 0));
    subscribe(&mut net, s, "t", Q1);
    let p = client(&mut net, V5, "p", true, 0);
    for n in 0..5 {
        send(&mut net, p, Message::new(topic("t"), Q1, format!("{n}")));
    }
    net.run_for(SETTLE_MS);
    assert_eq!(payloads(&net, s), ["0", "1"]);
    let acks: Vec<_> = net.clients[s]
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message { ack, .. } => *ack,
            _ => None,
        })
        .collect();
    let now = net.now;
    for a in acks {
        net.clients[s]
            .session
            .ack(now, a, ReasonCode::Success)
            .unwrap();
    }
    net.run_for(SETTLE_MS);
    assert_eq!(payloads(&net, s), ["0", "1", "2", "3"]);
}

#[test]
fn topic_alias_maximum_exceeded_disconnect_0x94() {
    // [MQTT-3.3.2-9] 5.0: an alias above the announced Topic Alias Maximum: DISCONNECT 0x94.
    let mut config = BrokerConfig::default();
    config.server.topic_alias_maximum = 2;
    let (mut broker, conn) = bare(config, V5);
    let mut p = Publish::new(topic("t"), QosPid::AtMostOnce, &b"x"[..]);
    p.properties.topic_alias = std::num::NonZeroU16::new(3);
    let answers = exchange(&mut broker, conn, V5, vec![Packet::Publish(p)]);
    assert_eq!(
        disconnect_code(&answers),
        Some(ReasonCode::TopicAliasInvalid)
    );
}

#[test]
fn topic_alias_resolved_before_routing() {
    // [MQTT-3.3.2-12] 5.0: a PUBLISH by alias is routed to the topic the alias stands for, and
    // forwarded with the topic name (the broker's aliases to subscribers are its own).
    let mut net = net();
    let s = client(&mut net, V5, "s", true, 0);
    subscribe(&mut net, s, "long/topic/name", Q0);
    let p = client(&mut net, V5, "p", true, 0);
    let mut m = Message::new(topic("long/topic/name"), Q0, "1");
    m.properties.topic_alias = std::num::NonZeroU16::new(1);
    send(&mut net, p, m);
    let mut m = Message::new(TopicName::empty(), Q0, "2");
    m.properties.topic_alias = std::num::NonZeroU16::new(1);
    send(&mut net, p, m);
    net.run_for(SETTLE_MS);
    let got = received(&net, s);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|p| p.topic.as_str() == "long/topic/name"));
}

#[test]
fn max_subscriptions_per_session_0x97() {
    // Issue 5 limits; 5.0 3.9.3: 0x97 Quota exceeded (3.1.1: 0x80).
    let config = BrokerConfig {
        max_subscriptions_per_session: 2,
        ..BrokerConfig::default()
    };
    let mut net = net_with(config);
    let a = client(&mut net, V5, "a", true, 0);
    let b = client(&mut net, V3, "b", true, 0);
    for i in [a, b] {
        subscribe(&mut net, i, "one", Q1);
        let req = mqtt_streaming_session::SubscribeRequest::new(filter("one"), Q1)
            .and(
                filter("two"),
                mqtt_streaming_proto::SubscriptionOptions::new(Q1),
            )
            .and(
                filter("three"),
                mqtt_streaming_proto::SubscriptionOptions::new(Q1),
            );
        subscribe_req(&mut net, i, req);
    }
    let g = ReasonCode::GrantedQoS1;
    assert_eq!(suback_codes(&net, a), [g, g, ReasonCode::QuotaExceeded]);
    assert_eq!(suback_codes(&net, b), [g, g, ReasonCode::UnspecifiedError]);
}

#[test]
fn counters_connections_messages_bytes() {
    // Issue 5 observability: counters readable from the core.
    let mut net = net();
    let s = client(&mut net, V5, "s", true, 0);
    let t = client(&mut net, V3, "t", true, 0);
    subscribe(&mut net, s, "x", Q1);
    subscribe(&mut net, t, "x", Q0);
    let p = client(&mut net, V5, "p", true, 0);
    publish(&mut net, p, "x", Q1, "hello");
    publish(&mut net, p, "y", Q0, "nobody");
    let stats = net.broker.stats();
    assert_eq!(stats.connections, 3);
    assert_eq!(stats.connections_total, 3);
    assert_eq!(stats.messages_in, 2);
    assert_eq!(stats.messages_out, 2);
    assert_eq!(stats.subscriptions, 2);
    // Every byte the clients sent was read, every byte the broker wrote arrived.
    assert!(stats.bytes_in > 0 && stats.bytes_out > 0);
    cut(&mut net, t);
    assert_eq!(net.broker.stats().connections, 2);
}

#[test]
fn message_too_large_for_subscriber_dropped_and_counted() {
    // [MQTT-3.1.2-24] 5.0: never send a packet above the client's Maximum Packet Size; the
    // message is dropped for that client (counted), others still get it.
    let mut net = net();
    let small = net.add_client(ClientConfig::default().with_max_packet_size(64));
    connect(&mut net, small, connect_packet(V5, "small", true, 0));
    subscribe(&mut net, small, "t", Q1);
    let big = client(&mut net, V5, "big", true, 0);
    subscribe(&mut net, big, "t", Q1);
    let p = client(&mut net, V5, "p", true, 0);
    publish(&mut net, p, "t", Q1, &"x".repeat(200));
    assert!(payloads(&net, small).is_empty());
    assert_eq!(payloads(&net, big).len(), 1);
    assert_eq!(net.broker.stats().dropped_too_large, 1);
}
