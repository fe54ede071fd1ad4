//! Broker core benchmarks (issue 5): routing one PUBLISH through `Broker` with 1 and with
//! 100,000 subscriptions on distinct filters (matching cost must not grow with the total),
//! a fan-out of one PUBLISH to 1,000 subscribers and to 50 (one and 32 PUBLISHes per read), and a SUBSCRIBE with 1 and with 100,000
//! retained messages in the store (issue 10); and QoS 1 end to end in the core (issue 12): 50
//! pairs (publisher i to subscriber i) and 8 publishers to one subscriber, each PUBLISH
//! acknowledged by the broker to its publisher and each delivery acknowledged by its subscriber.
//!
//! Each iteration feeds the encoded QoS 0 PUBLISH into the publisher's connection and drains
//! every byte the broker has to send, so the figure covers decode, authorization, matching,
//! the per-subscriber copy and the encoding of each outgoing PUBLISH.
#![allow(missing_docs)]

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mqtt_streaming_proto::{
    Connect, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS, QosPid, Subscribe,
    Subscription, SubscriptionOptions, TopicFilter, TopicName,
};
use mqtt_streaming_session::broker::{Broker, BrokerConfig, ConnectionId};
use mqtt_streaming_session::Instant;

const V: ProtocolVersion = ProtocolVersion::V3_1_1;

fn now() -> Instant {
    Instant::from_millis(1)
}

fn drain(broker: &mut Broker, out: &mut BytesMut) -> usize {
    let mut n = 0;
    while broker.poll_transmit(now(), out).is_some() {
        n += out.len();
        out.clear();
    }
    while broker.poll_event().is_some() {}
    n
}

/// Opens and connects a client, then subscribes it to `filters` (1,000 per SUBSCRIBE).
fn client(broker: &mut Broker, id: &str, filters: &[String]) -> ConnectionId {
    let conn = broker.open(now()).unwrap();
    let mut buf = BytesMut::new();
    Packet::from(Connect::new(V, MqttString::new(id).unwrap()))
        .encode(V, &mut buf)
        .unwrap();
    for (n, chunk) in filters.chunks(1000).enumerate() {
        let subscribe = Subscribe {
            packet_id: PacketId::new(n as u16 + 1).unwrap(),
            subscriptions: chunk
                .iter()
                .map(|f| Subscription {
                    filter: TopicFilter::new(f).unwrap(),
                    options: SubscriptionOptions::new(QoS::AtMostOnce),
                })
                .collect(),
            properties: Default::default(),
        };
        Packet::Subscribe(subscribe).encode(V, &mut buf).unwrap();
    }
    while !buf.is_empty() {
        broker.handle_read(now(), conn, &mut buf);
        drain(broker, &mut BytesMut::new());
    }
    conn
}

fn publish_wire(topic: &str) -> BytesMut {
    let mut wire = BytesMut::new();
    Packet::Publish(Publish::new(
        TopicName::new(topic).unwrap(),
        QosPid::AtMostOnce,
        &[0u8; 64][..],
    ))
    .encode(V, &mut wire)
    .unwrap();
    wire
}

fn config() -> BrokerConfig {
    BrokerConfig {
        max_subscriptions_per_session: usize::MAX,
        ..BrokerConfig::default()
    }
}

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("broker_route_one_publish");
    group.throughput(Throughput::Elements(1));
    for total in [1usize, 100_000] {
        let mut broker = Broker::new(config());
        // Distinct filters of a typical shape; the topic published matches exactly one.
        let filters: Vec<String> = (0..total).map(|i| format!("devices/{i}/cmd/+")).collect();
        // 1,000 filters per subscriber, as many subscribers as needed.
        for (n, chunk) in filters.chunks(1000).enumerate() {
            client(&mut broker, &format!("sub-{n}"), chunk);
        }
        assert_eq!(broker.stats().subscriptions, total);
        let publisher = client(&mut broker, "pub", &[]);
        let wire = publish_wire("devices/0/cmd/reboot");
        let mut out = BytesMut::with_capacity(1 << 16);
        // One delivery per PUBLISH.
        let mut buf = wire.clone();
        broker.handle_read(now(), publisher, &mut buf);
        assert!(drain(&mut broker, &mut out) > 64);
        group.bench_with_input(BenchmarkId::from_parameter(total), &total, |b, _| {
            b.iter(|| {
                let mut buf = wire.clone();
                broker.handle_read(now(), publisher, &mut buf);
                drain(&mut broker, &mut out)
            })
        });
    }
    group.finish();
}

/// Opens and connects a client subscribed to `filter` at QoS 1.
fn qos1_client(broker: &mut Broker, id: &str, filter: Option<&str>) -> ConnectionId {
    let conn = broker.open(now()).unwrap();
    let mut buf = BytesMut::new();
    Packet::from(Connect::new(V, MqttString::new(id).unwrap()))
        .encode(V, &mut buf)
        .unwrap();
    if let Some(filter) = filter {
        Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            subscriptions: vec![Subscription {
                filter: TopicFilter::new(filter).unwrap(),
                options: SubscriptionOptions::new(QoS::AtLeastOnce),
            }],
            properties: Default::default(),
        })
        .encode(V, &mut buf)
        .unwrap();
    }
    broker.handle_read(now(), conn, &mut buf);
    drain(broker, &mut BytesMut::new());
    conn
}

/// `n` QoS 1 PUBLISHes (64 B payloads) on `topic`, packet identifiers 1..=n, in one buffer.
fn qos1_wire(topic: &str, n: u16) -> BytesMut {
    let mut wire = BytesMut::new();
    for pid in 1..=n {
        Packet::Publish(Publish::new(
            TopicName::new(topic).unwrap(),
            QosPid::AtLeastOnce(PacketId::new(pid).unwrap()),
            &[0u8; 64][..],
        ))
        .encode(V, &mut wire)
        .unwrap();
    }
    wire
}

/// Appends a PUBACK to `acks` for every QoS 1 PUBLISH in `out` (MQTT 3.1.1 bytes: fixed
/// header, topic, packet identifier); returns how many.
fn puback_all(out: &[u8], acks: &mut BytesMut) -> usize {
    let mut n = 0;
    let mut at = 0;
    while at < out.len() {
        let first = out[at];
        let (mut len, mut shift, mut i) = (0usize, 0, at + 1);
        loop {
            let b = out[i];
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        if first & 0xf0 == 0x30 && first & 0x06 == 0x02 {
            let topic_len = usize::from(u16::from_be_bytes([out[i], out[i + 1]]));
            let pid = &out[i + 2 + topic_len..i + 4 + topic_len];
            acks.extend_from_slice(&[0x40, 0x02, pid[0], pid[1]]);
            n += 1;
        }
        at = i + len;
    }
    n
}

/// QoS 1 through the core, both acknowledgements included: each publisher's read of
/// `per_read` PUBLISHes is routed (and acknowledged to it once its subscriber took them), every
/// byte drained, then each subscriber's read of PUBACKs for all it got. Throughput is counted
/// in deliveries. `pairs`: publisher i publishes on `pair/i`, subscriber i subscribes to it;
/// `fan_in`: 8 publishers on `bench/i`, one subscriber on `bench/#`.
fn qos1(c: &mut Criterion) {
    let mut group = c.benchmark_group("broker_qos1");
    for (name, publishers, subscribers, per_read) in [
        ("pairs_50x8_per_read", 50usize, 50usize, 8u16),
        ("fan_in_8x8_per_read", 8, 1, 8),
    ] {
        let deliveries = publishers * usize::from(per_read);
        group.throughput(Throughput::Elements(deliveries as u64));
        let mut broker = Broker::new(config());
        let subs: Vec<ConnectionId> = (0..subscribers)
            .map(|i| {
                let filter = if subscribers == 1 {
                    "bench/#".to_string()
                } else {
                    format!("pair/{i}")
                };
                qos1_client(&mut broker, &format!("sub-{i}"), Some(&filter))
            })
            .collect();
        let pubs: Vec<(ConnectionId, BytesMut)> = (0..publishers)
            .map(|i| {
                let topic = if subscribers == 1 {
                    format!("bench/{i}")
                } else {
                    format!("pair/{i}")
                };
                let conn = qos1_client(&mut broker, &format!("pub-{i}"), None);
                (conn, qos1_wire(&topic, per_read))
            })
            .collect();
        let mut out = BytesMut::with_capacity(1 << 16);
        let mut acks: Vec<BytesMut> = vec![BytesMut::new(); subscribers];
        let mut round = |broker: &mut Broker| {
            let mut delivered = 0;
            for (conn, wire) in &pubs {
                let mut buf = wire.clone();
                broker.handle_read(now(), *conn, &mut buf);
            }
            while let Some(id) = broker.poll_transmit(now(), &mut out) {
                if let Some(k) = subs.iter().position(|s| *s == id) {
                    delivered += puback_all(&out, &mut acks[k]);
                }
                out.clear();
            }
            while broker.poll_event().is_some() {}
            for (k, sub) in subs.iter().enumerate() {
                broker.handle_read(now(), *sub, &mut acks[k]);
                acks[k].clear();
            }
            drain(broker, &mut out);
            delivered
        };
        // Every PUBLISH reached its subscriber, and every publisher got its PUBACKs (the next
        // round reuses the packet identifiers).
        for _ in 0..3 {
            assert_eq!(round(&mut broker), deliveries);
        }
        assert_eq!(broker.stats().parked, 0);
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| round(&mut broker))
        });
    }
    group.finish();
}

/// One QoS 0 PUBLISH to 1,000 subscribers per read, and the 1→50 shape of the end-to-end
/// matrix: one read of 1 or of 32 PUBLISHes (flat out, a read carries many) to 50 subscribers.
/// Throughput is counted in deliveries.
fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("broker_fan_out");
    for (subscribers, per_read) in [(1_000usize, 1usize), (50, 1), (50, 32)] {
        group.throughput(Throughput::Elements((subscribers * per_read) as u64));
        let mut broker = Broker::new(config());
        for n in 0..subscribers {
            client(&mut broker, &format!("sub-{n}"), &["fan/out".to_string()]);
        }
        let publisher = client(&mut broker, "pub", &[]);
        let one = publish_wire("fan/out");
        let mut wire = BytesMut::new();
        for _ in 0..per_read {
            wire.extend_from_slice(&one);
        }
        let mut out = BytesMut::with_capacity(1 << 16);
        let mut buf = wire.clone();
        broker.handle_read(now(), publisher, &mut buf);
        // Every subscriber got every PUBLISH (2 + 7 + 64 bytes each).
        assert_eq!(
            drain(&mut broker, &mut out),
            subscribers * per_read * one.len()
        );
        let name = if per_read == 1 {
            format!("{subscribers}")
        } else {
            format!("{subscribers}x{per_read}_per_read")
        };
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let mut buf = wire.clone();
                broker.handle_read(now(), publisher, &mut buf);
                drain(&mut broker, &mut out)
            })
        });
    }
    group.finish();
}

/// Issue 10: one SUBSCRIBE (QoS 0, a filter matching one retained message) with 100,000
/// retained messages in the store, and with one: the SUBACK and the retained message drained.
/// The cost must not grow with the store.
fn subscribe_with_retained(c: &mut Criterion) {
    let mut group = c.benchmark_group("broker_subscribe_with_retained");
    group.throughput(Throughput::Elements(1));
    for total in [1usize, 100_000] {
        let mut broker = Broker::new(config());
        let publisher = client(&mut broker, "pub", &[]);
        for chunk in (0..total).collect::<Vec<_>>().chunks(1000) {
            let mut buf = BytesMut::new();
            for i in chunk {
                let mut publish = Publish::new(
                    TopicName::new(&format!("devices/{i}/state")).unwrap(),
                    QosPid::AtMostOnce,
                    &b"on"[..],
                );
                publish.retain = true;
                Packet::Publish(publish).encode(V, &mut buf).unwrap();
            }
            broker.handle_read(now(), publisher, &mut buf);
            drain(&mut broker, &mut BytesMut::new());
        }
        assert_eq!(broker.stats().retained, total);
        let subscriber = client(&mut broker, "sub", &[]);
        let mut wire = BytesMut::new();
        Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            subscriptions: vec![Subscription {
                filter: TopicFilter::new("devices/0/state").unwrap(),
                options: SubscriptionOptions::new(QoS::AtMostOnce),
            }],
            properties: Default::default(),
        })
        .encode(V, &mut wire)
        .unwrap();
        let mut out = BytesMut::with_capacity(1 << 16);
        let mut buf = wire.clone();
        broker.handle_read(now(), subscriber, &mut buf);
        // SUBACK (5 bytes) and the retained PUBLISH.
        assert!(drain(&mut broker, &mut out) > 5);
        group.bench_with_input(BenchmarkId::from_parameter(total), &total, |b, _| {
            b.iter(|| {
                let mut buf = wire.clone();
                broker.handle_read(now(), subscriber, &mut buf);
                drain(&mut broker, &mut out)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, routing, fan_out, subscribe_with_retained, qos1);
criterion_main!(benches);
