//! Issue 14: what a broker program configures in the core. Server Keep Alive, the
//! availability of shared, wildcard and identified subscriptions, and the authorisation hooks
//! that see the user name and choose the SUBACK reason code. Exchanges fed straight into a
//! bare `Broker`, where the exact bytes it answers with matter.

use bytes::BytesMut;
use mqtt_streaming_proto::{
    ConnAck, Connect, Decoder, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS, QosPid,
    ReasonCode, SubAck, Subscribe, Subscription, SubscriptionId, SubscriptionOptions, TopicFilter,
    TopicName,
};
use mqtt_streaming_session::broker::{Broker, BrokerConfig, BrokerHooks, ClientInfo, ConnectionId};
use mqtt_streaming_session::Instant;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V3: ProtocolVersion = ProtocolVersion::V3_1_1;

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

fn connect(version: ProtocolVersion, id: &str, keep_alive: u16, user: Option<&str>) -> Packet {
    let mut c = Connect::new(version, MqttString::new(id).unwrap());
    c.keep_alive = keep_alive;
    c.username = user.map(|u| MqttString::new(u).unwrap());
    Packet::from(c)
}

fn connack(answers: &[Packet]) -> ConnAck {
    match answers.first() {
        Some(Packet::ConnAck(a)) => (**a).clone(),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn suback(answers: &[Packet]) -> SubAck {
    answers
        .iter()
        .find_map(|p| match p {
            Packet::SubAck(a) => Some(a.clone()),
            _ => None,
        })
        .expect("a SUBACK")
}

fn subscribe(id: u16, filters: &[&str], subscription_id: Option<u32>) -> Packet {
    let mut s = Subscribe::new(
        PacketId::new(id).unwrap(),
        TopicFilter::new(filters[0]).unwrap(),
        SubscriptionOptions::new(QoS::AtLeastOnce),
    );
    for f in &filters[1..] {
        s.subscriptions.push(Subscription {
            filter: TopicFilter::new(f).unwrap(),
            options: SubscriptionOptions::new(QoS::AtLeastOnce),
        });
    }
    s.properties.subscription_identifier = subscription_id.and_then(SubscriptionId::new);
    Packet::Subscribe(s)
}

fn open<H: BrokerHooks>(broker: &mut Broker<H>) -> ConnectionId {
    broker.open(Instant::from_millis(1)).unwrap()
}

#[test]
fn server_keep_alive_told_to_v5_client_asking_longer_or_none() {
    // [MQTT-3.2.2-21]: the client must use the Server Keep Alive the CONNACK carries.
    let config = BrokerConfig {
        server_keep_alive: Some(60),
        ..BrokerConfig::default()
    };
    let mut broker = Broker::new(config);
    for (keep_alive, told) in [(120, Some(60)), (0, Some(60)), (30, None), (60, None)] {
        let conn = open(&mut broker);
        let id = format!("k{keep_alive}");
        let answers = exchange(
            &mut broker,
            conn,
            V5,
            vec![connect(V5, &id, keep_alive, None)],
        );
        let ack = connack(&answers);
        assert_eq!(ack.reason_code, ReasonCode::Success);
        assert_eq!(
            ack.properties.server_keep_alive, told,
            "keep alive {keep_alive}"
        );
    }
}

#[test]
fn server_keep_alive_refuses_v311_client_asking_longer() {
    // MQTT 3.1.1 cannot be told: return code 2 Identifier rejected (as mosquitto's
    // `max_keepalive`), [MQTT-3.2.2-5] (then close).
    let config = BrokerConfig {
        server_keep_alive: Some(60),
        ..BrokerConfig::default()
    };
    let mut broker = Broker::new(config);
    let conn = open(&mut broker);
    let answers = exchange(&mut broker, conn, V3, vec![connect(V3, "long", 61, None)]);
    assert_eq!(
        connack(&answers).reason_code,
        ReasonCode::ClientIdentifierNotValid
    );
    let conn = open(&mut broker);
    let answers = exchange(&mut broker, conn, V3, vec![connect(V3, "short", 60, None)]);
    assert_eq!(connack(&answers).reason_code, ReasonCode::Success);
}

#[test]
fn no_server_keep_alive_by_default() {
    let mut broker = Broker::new(BrokerConfig::default());
    let conn = open(&mut broker);
    let answers = exchange(&mut broker, conn, V5, vec![connect(V5, "c", 0, None)]);
    assert_eq!(connack(&answers).properties.server_keep_alive, None);
}

#[test]
fn unavailable_features_announced_and_refused_in_suback() {
    // 5.0 sections 3.2.2.3.13-15 (announced), 3.9.3 (SUBACK 0x9E, 0xA1, 0xA2).
    let config = BrokerConfig {
        shared_subscriptions_available: false,
        wildcard_subscriptions_available: false,
        subscription_identifiers_available: false,
        ..BrokerConfig::default()
    };
    let mut broker = Broker::new(config);
    let conn = open(&mut broker);
    let answers = exchange(&mut broker, conn, V5, vec![connect(V5, "c", 0, None)]);
    let p = connack(&answers).properties;
    assert_eq!(p.shared_subscription_available, Some(false));
    assert_eq!(p.wildcard_subscription_available, Some(false));
    assert_eq!(p.subscription_identifiers_available, Some(false));
    let answers = exchange(
        &mut broker,
        conn,
        V5,
        vec![subscribe(1, &["$share/g/a", "a/+", "a/b"], None)],
    );
    assert_eq!(
        suback(&answers).reason_codes,
        vec![
            ReasonCode::SharedSubscriptionsNotSupported,
            ReasonCode::WildcardSubscriptionsNotSupported,
            ReasonCode::GrantedQoS1,
        ]
    );
    let answers = exchange(&mut broker, conn, V5, vec![subscribe(2, &["a/c"], Some(7))]);
    assert_eq!(
        suback(&answers).reason_codes,
        vec![ReasonCode::SubscriptionIdentifiersNotSupported]
    );
}

#[test]
fn features_available_by_default_and_not_announced() {
    let mut broker = Broker::new(BrokerConfig::default());
    let conn = open(&mut broker);
    let answers = exchange(&mut broker, conn, V5, vec![connect(V5, "c", 0, None)]);
    let p = connack(&answers).properties;
    assert_eq!(p.shared_subscription_available, None);
    assert_eq!(p.wildcard_subscription_available, None);
    assert_eq!(p.subscription_identifiers_available, None);
    let answers = exchange(
        &mut broker,
        conn,
        V5,
        vec![subscribe(1, &["$share/g/a", "a/+"], Some(3))],
    );
    assert_eq!(
        suback(&answers).reason_codes,
        vec![ReasonCode::GrantedQoS1, ReasonCode::GrantedQoS1]
    );
}

#[test]
fn unavailable_wildcard_is_0x80_for_v311() {
    // [MQTT-3.9.3-2] of 3.1.1: the only failure code is 0x80.
    let config = BrokerConfig {
        wildcard_subscriptions_available: false,
        ..BrokerConfig::default()
    };
    let mut broker = Broker::new(config);
    let conn = open(&mut broker);
    exchange(&mut broker, conn, V3, vec![connect(V3, "c", 0, None)]);
    let answers = exchange(&mut broker, conn, V3, vec![subscribe(1, &["a/#"], None)]);
    assert_eq!(
        suback(&answers).reason_codes,
        vec![ReasonCode::UnspecifiedError]
    );
}

/// Refuses `deny/...` with 0x80, `secret/...` with 0x87, `odd/...` with a code no SUBACK
/// carries; lets "writer" alone publish under `w/`.
struct ByUser;

impl BrokerHooks for ByUser {
    fn authorize_publish_from(&mut self, client: &ClientInfo<'_>, topic: &TopicName) -> bool {
        !topic.as_str().starts_with("w/") || client.username == Some("writer")
    }

    fn authorize_subscription(
        &mut self,
        _client: &ClientInfo<'_>,
        filter: &TopicFilter,
    ) -> Result<(), ReasonCode> {
        let f = filter.as_str();
        if f.starts_with("deny/") {
            Err(ReasonCode::UnspecifiedError)
        } else if f.starts_with("secret/") {
            Err(ReasonCode::NotAuthorized)
        } else if f.starts_with("odd/") {
            Err(ReasonCode::BadUserNameOrPassword)
        } else {
            Ok(())
        }
    }
}

#[test]
fn subscription_hook_chooses_the_suback_code() {
    // 5.0 section 3.9.3: 0x80 and 0x87 are both SUBACK reason codes; a code that is not one
    // becomes 0x87. 3.1.1 [MQTT-3.9.3-2]: 0x80 Failure whatever the hook said.
    let mut broker = Broker::with_hooks(BrokerConfig::default(), ByUser);
    let conn = open(&mut broker);
    exchange(&mut broker, conn, V5, vec![connect(V5, "c5", 0, None)]);
    let answers = exchange(
        &mut broker,
        conn,
        V5,
        vec![subscribe(1, &["deny/a", "secret/a", "odd/a", "ok/a"], None)],
    );
    assert_eq!(
        suback(&answers).reason_codes,
        vec![
            ReasonCode::UnspecifiedError,
            ReasonCode::NotAuthorized,
            ReasonCode::NotAuthorized,
            ReasonCode::GrantedQoS1,
        ]
    );
    let conn = open(&mut broker);
    exchange(&mut broker, conn, V3, vec![connect(V3, "c3", 0, None)]);
    let answers = exchange(
        &mut broker,
        conn,
        V3,
        vec![subscribe(1, &["deny/a", "secret/a", "ok/a"], None)],
    );
    assert_eq!(
        suback(&answers).reason_codes,
        vec![
            ReasonCode::UnspecifiedError,
            ReasonCode::UnspecifiedError,
            ReasonCode::GrantedQoS1,
        ]
    );
}

#[test]
fn publish_hook_sees_the_user_name() {
    // 5.0 section 3.4.2.1: PUBACK 0x87 Not authorized for a refused PUBLISH.
    let mut broker = Broker::with_hooks(BrokerConfig::default(), ByUser);
    let publish = |id: u16| {
        Packet::Publish(Publish::new(
            TopicName::new("w/x").unwrap(),
            QosPid::AtLeastOnce(PacketId::new(id).unwrap()),
            "v",
        ))
    };
    let puback = |answers: &[Packet]| {
        answers
            .iter()
            .find_map(|p| match p {
                Packet::PubAck(a) => Some(a.reason_code),
                _ => None,
            })
            .expect("a PUBACK")
    };
    let writer = open(&mut broker);
    exchange(
        &mut broker,
        writer,
        V5,
        vec![connect(V5, "a", 0, Some("writer"))],
    );
    let other = open(&mut broker);
    exchange(
        &mut broker,
        other,
        V5,
        vec![connect(V5, "b", 0, Some("reader"))],
    );
    // No subscriber: an authorized one gets 0x10 No matching subscribers.
    assert_eq!(
        puback(&exchange(&mut broker, writer, V5, vec![publish(1)])),
        ReasonCode::NoMatchingSubscribers
    );
    assert_eq!(
        puback(&exchange(&mut broker, other, V5, vec![publish(1)])),
        ReasonCode::NotAuthorized
    );
    assert_eq!(broker.stats().dropped_unauthorized, 1);
}
