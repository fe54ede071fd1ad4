//! Issue 10, item 3: the retained messages a SUBSCRIBE asks for ([MQTT-3.3.1-9] in 5.0,
//! [MQTT-3.3.1-8] in 3.1.1) are sent in bounded turns, as the subscriber's session has room;
//! none is dropped because the session's queue was full, and one SUBSCRIBE matching many never
//! makes one call to the broker do work in proportion to them.

use bytes::BytesMut;
use mqtt_streaming_proto::{
    Connect, Decoder, MqttString, Packet, PacketId, ProtocolVersion, PubResponse, Publish, QoS,
    QosPid, Subscribe, SubscriptionOptions, TopicFilter, TopicName,
};
use mqtt_streaming_session::broker::{Broker, BrokerConfig, ConnectionId};
use mqtt_streaming_session::Instant;

const V5: ProtocolVersion = ProtocolVersion::V5;

fn now() -> Instant {
    Instant::from_millis(1)
}

fn feed(broker: &mut Broker, id: ConnectionId, packets: Vec<Packet>) {
    let mut buf = BytesMut::new();
    for p in packets {
        p.encode(V5, &mut buf).unwrap();
    }
    broker.handle_read(now(), id, &mut buf);
    assert!(buf.is_empty());
}

/// Everything the broker has to send to `id`, decoded (other connections' bytes dropped).
fn received(broker: &mut Broker, id: ConnectionId) -> Vec<Packet> {
    let mut packets = Vec::new();
    let mut out = BytesMut::new();
    while let Some(to) = broker.poll_transmit(now(), &mut out) {
        if to == id {
            let decoder = Decoder::new(V5);
            while let Some(p) = decoder.decode(&mut out).unwrap() {
                packets.push(p);
            }
        }
        out.clear();
    }
    while broker.poll_event().is_some() {}
    packets
}

fn connect(broker: &mut Broker, client_id: &str, receive_maximum: Option<u16>) -> ConnectionId {
    let id = broker.open(now()).unwrap();
    let mut c = Connect::new(V5, MqttString::new(client_id).unwrap());
    c.properties.receive_maximum = receive_maximum.and_then(std::num::NonZeroU16::new);
    feed(broker, id, vec![Packet::from(c)]);
    received(broker, id);
    id
}

/// Stores `n` retained messages `r/{i}` at `qos`.
fn retain(broker: &mut Broker, n: usize, qos: QoS) {
    let publisher = connect(broker, "pub", None);
    let packets = (0..n)
        .map(|i| {
            let qos_pid = match qos {
                QoS::AtMostOnce => QosPid::AtMostOnce,
                _ => QosPid::AtLeastOnce(PacketId::new((i % 60_000 + 1) as u16).unwrap()),
            };
            let mut p = Publish::new(TopicName::new(&format!("r/{i:05}")).unwrap(), qos_pid, "v");
            p.retain = true;
            Packet::Publish(p)
        })
        .collect();
    feed(broker, publisher, packets);
    received(broker, publisher);
    assert_eq!(broker.stats().retained, n);
}

fn subscribe(filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe::new(
        PacketId::new(1).unwrap(),
        TopicFilter::new(filter).unwrap(),
        SubscriptionOptions::new(qos),
    ))
}

fn publishes(packets: &[Packet]) -> Vec<Publish> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn retained_messages_beyond_the_queue_are_delivered_later_not_dropped() {
    // [MQTT-3.3.1-9] (5.0): every matching retained message is sent after the SUBSCRIBE. The
    // subscriber takes 5 in flight (its Receive Maximum) and the broker queues 10 more per
    // session; 200 retained messages match.
    let mut broker = Broker::new(BrokerConfig {
        server: BrokerConfig::default().server.with_max_queued(10),
        ..BrokerConfig::default()
    });
    retain(&mut broker, 200, QoS::AtLeastOnce);
    let sub = connect(&mut broker, "sub", Some(5));
    feed(&mut broker, sub, vec![subscribe("r/#", QoS::AtLeastOnce)]);
    let mut got: Vec<Publish> = Vec::new();
    let mut rounds = 0;
    loop {
        let fresh = publishes(&received(&mut broker, sub));
        if fresh.is_empty() && broker.poll_timeout().is_none_or(|t| t > now()) {
            break;
        }
        // The client acknowledges what it got; the broker continues when a turn is due.
        let acks = fresh
            .iter()
            .map(|p| Packet::PubAck(PubResponse::new(p.qos_pid.packet_id().unwrap())))
            .collect::<Vec<_>>();
        got.extend(fresh);
        if !acks.is_empty() {
            feed(&mut broker, sub, acks);
        }
        if broker.poll_timeout().is_some_and(|t| t <= now()) {
            broker.handle_timeout(now());
        }
        rounds += 1;
        assert!(rounds < 1000, "delivery makes progress");
    }
    let mut topics: Vec<String> = got.iter().map(|p| p.topic.as_str().to_string()).collect();
    assert!(got.iter().all(|p| p.retain), "sent with RETAIN set");
    topics.dedup();
    assert_eq!(
        topics.len(),
        200,
        "every retained message, once, in topic order"
    );
    assert_eq!(broker.stats().dropped_queue_full, 0);
}

#[test]
fn one_subscribe_matching_many_retained_messages_is_sent_in_bounded_turns() {
    // 2,000 retained QoS 0 messages match; the session would take them all (queue of 4,096).
    let mut broker = Broker::new(BrokerConfig::default());
    retain(&mut broker, 2_000, QoS::AtMostOnce);
    let sub = connect(&mut broker, "sub", None);
    feed(&mut broker, sub, vec![subscribe("r/+", QoS::AtMostOnce)]);
    let first = publishes(&received(&mut broker, sub));
    assert!(!first.is_empty(), "the first turn starts at once");
    assert!(
        first.len() <= 256,
        "{} messages in the SUBSCRIBE's own turn",
        first.len()
    );
    // The rest follow in turns, each bounded, each asked for by an immediate deadline.
    let mut total = first.len();
    let mut turns = 0;
    while let Some(at) = broker.poll_timeout().filter(|t| *t <= now()) {
        assert!(at <= now());
        broker.handle_timeout(now());
        let n = publishes(&received(&mut broker, sub)).len();
        assert!(n <= 256, "{n} messages in one turn");
        total += n;
        turns += 1;
        assert!(turns < 100);
    }
    assert_eq!(total, 2_000);
    assert!(turns >= 7, "{turns} turns");
}

#[test]
fn unsubscribe_stops_the_retained_messages_still_owed() {
    let mut broker = Broker::new(BrokerConfig::default());
    retain(&mut broker, 1_000, QoS::AtMostOnce);
    let sub = connect(&mut broker, "sub", None);
    feed(&mut broker, sub, vec![subscribe("r/+", QoS::AtMostOnce)]);
    let first = publishes(&received(&mut broker, sub)).len();
    assert!(first < 1_000);
    feed(
        &mut broker,
        sub,
        vec![Packet::Unsubscribe(mqtt_streaming_proto::Unsubscribe {
            packet_id: PacketId::new(2).unwrap(),
            filters: vec![TopicFilter::new("r/+").unwrap()],
            properties: Default::default(),
        })],
    );
    received(&mut broker, sub);
    while broker.poll_timeout().is_some_and(|t| t <= now()) {
        broker.handle_timeout(now());
    }
    assert!(publishes(&received(&mut broker, sub)).is_empty());
}

#[test]
fn retained_store_byte_limit_refuses_new_topics_but_still_routes() {
    // `max_retained_bytes`: a retained message that would take the store beyond it is not
    // retained, and is still routed to the subscribers it matches.
    let mut broker = Broker::new(BrokerConfig {
        max_retained_bytes: 4096,
        ..BrokerConfig::default()
    });
    let sub = connect(&mut broker, "sub", None);
    feed(&mut broker, sub, vec![subscribe("big/+", QoS::AtMostOnce)]);
    received(&mut broker, sub);
    let publisher = connect(&mut broker, "pub", None);
    let packets = ["big/1", "big/2"]
        .iter()
        .map(|t| {
            let mut p = Publish::new(
                TopicName::new(t).unwrap(),
                QosPid::AtMostOnce,
                vec![7u8; 3000],
            );
            p.retain = true;
            Packet::Publish(p)
        })
        .collect();
    feed(&mut broker, publisher, packets);
    assert_eq!(
        publishes(&received(&mut broker, sub)).len(),
        2,
        "both routed"
    );
    let stats = broker.stats();
    assert_eq!(stats.retained, 1);
    assert_eq!(stats.dropped_retained_full, 1);
}
