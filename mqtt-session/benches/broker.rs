//! Broker core benchmarks (issue 5): routing one PUBLISH through `Broker` with 1 and with
//! 100,000 subscriptions on distinct filters (matching cost must not grow with the total),
//! a fan-out of one PUBLISH to 1,000 subscribers and to 50 (one and 32 PUBLISHes per read), and a SUBSCRIBE with 1 and with 100,000
//! retained messages in the store (issue 10).
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

criterion_group!(benches, routing, fan_out, subscribe_with_retained);
criterion_main!(benches);
