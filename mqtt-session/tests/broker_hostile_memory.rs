//! Issue 10, item 1, memory: the heap the broker holds for subscriptions stays within the
//! subscription byte budgets, whatever shape the clients give their filters. Counted by a
//! global allocator that wraps `System` (`stats_alloc`: the workspace forbids the `unsafe` a
//! `GlobalAlloc` needs); its counters are global, so this binary holds one test.
//!
//! Before the budgets, one client's 1,000 subscriptions of 128 empty levels (133 KB sent) made
//! the broker hold 11.6 MB (90 bytes per level, from 1 byte sent per level); now the budget
//! stops it at 98 subscriptions and 0.8 MB (63 bytes per level).

use std::alloc::System;

use bytes::BytesMut;
use mqtt_streaming_proto::{
    Connect, MqttString, Packet, PacketId, ProtocolVersion, QoS, Subscribe, Subscription,
    SubscriptionOptions, TopicFilter,
};
use mqtt_streaming_session::broker::{Broker, BrokerConfig};
use mqtt_streaming_session::Instant;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const V5: ProtocolVersion = ProtocolVersion::V5;

/// Heap the test's own bookkeeping may leave between two counts (drained output, the
/// connection's buffers after a SUBACK); far below what is measured.
const SLACK: isize = 64 * 1024;

/// The wire bytes of a CONNECT and of SUBSCRIBEs of `filters`, 50 filters a packet.
fn wire(client: &str, filters: &[String]) -> (BytesMut, Vec<BytesMut>) {
    let mut connect = BytesMut::new();
    Packet::from(Connect::new(V5, MqttString::new(client).unwrap()))
        .encode(V5, &mut connect)
        .unwrap();
    let subscribes = filters
        .chunks(50)
        .enumerate()
        .map(|(i, chunk)| {
            let mut s = Subscribe::new(
                PacketId::new(i as u16 % 60_000 + 1).unwrap(),
                TopicFilter::new(&chunk[0]).unwrap(),
                SubscriptionOptions::new(QoS::AtLeastOnce),
            );
            for f in &chunk[1..] {
                s.subscriptions.push(Subscription {
                    filter: TopicFilter::new(f).unwrap(),
                    options: SubscriptionOptions::new(QoS::AtLeastOnce),
                });
            }
            let mut buf = BytesMut::new();
            Packet::from(s).encode(V5, &mut buf).unwrap();
            buf
        })
        .collect();
    (connect, subscribes)
}

/// Connects one client per entry of `clients` and sends its SUBSCRIBEs; returns the heap held
/// by the broker for the subscribing (the CONNECTs are not counted).
fn held(broker: &mut Broker, clients: Vec<Client>) -> isize {
    let now = Instant::from_millis(0);
    let mut out = BytesMut::with_capacity(1 << 20);
    let mut inputs: Vec<_> = clients.iter().map(|(c, f)| wire(c, f)).collect();
    let mut conns = Vec::new();
    for (connect, _) in &mut inputs {
        let id = broker.open(now).unwrap();
        broker.handle_read(now, id, connect);
        conns.push(id);
    }
    while broker.poll_transmit(now, &mut out).is_some() {
        out.clear();
    }
    while broker.poll_event().is_some() {}
    let region = Region::new(GLOBAL);
    for ((_, subscribes), id) in inputs.iter_mut().zip(&conns) {
        for s in subscribes {
            broker.handle_read(now, *id, s);
            assert!(s.is_empty());
            while broker.poll_transmit(now, &mut out).is_some() {
                out.clear();
            }
        }
    }
    let change = region.change();
    drop(inputs);
    // What reallocations grew or shrank is already in these two (`bytes_reallocated` repeats it).
    change.bytes_allocated as isize - change.bytes_deallocated as isize
}

/// A client id and the filters it subscribes to.
type Client = (String, Vec<String>);

/// `{prefix}` followed by empty levels up to `levels` levels.
fn chain(prefix: &str, levels: usize) -> String {
    format!("{prefix}{}", "/".repeat(levels - 1))
}

#[test]
fn subscriptions_hold_no_more_heap_than_their_budgets() {
    let config = BrokerConfig::default();
    let per_session = config.max_subscription_bytes_per_session;
    let mut shapes: Vec<(&str, BrokerConfig, Vec<Client>)> = Vec::new();
    // One client, filters of the most levels allowed, all empty but the first: as many as
    // the budget takes (far fewer than the 1,000 the count limit allows).
    shapes.push((
        "deep empty levels",
        config.clone(),
        vec![(
            "deep".into(),
            (0..1000).map(|i| chain(&i.to_string(), 128)).collect(),
        )],
    ));
    // One level each: up to the count limit, under the root's map grown into a B-tree.
    shapes.push((
        "wide",
        config.clone(),
        vec![("wide".into(), (0..1000).map(|i| format!("w{i}")).collect())],
    ));
    // Levels of one byte, every level a new node.
    shapes.push((
        "deep one-byte levels",
        config.clone(),
        vec![(
            "bytes".into(),
            (0..1000)
                .map(|i| format!("{i}/{}", ["x"; 127].join("/")))
                .collect(),
        )],
    ));
    // Shared groups, one per filter.
    shapes.push((
        "shared",
        config.clone(),
        vec![(
            "shared".into(),
            (0..1000)
                .map(|i| format!("$share/g{i}/{}", chain("t", 20)))
                .collect(),
        )],
    ));
    // Many clients, the broker's budget binding before theirs.
    let total = 4 * per_session;
    shapes.push((
        "many sessions",
        BrokerConfig {
            max_subscription_bytes_total: total,
            ..config.clone()
        },
        (0..16)
            .map(|c| {
                let filters = (0..1000).map(|i| chain(&format!("{c}-{i}"), 128)).collect();
                (format!("c{c}"), filters)
            })
            .collect(),
    ));
    for (name, config, clients) in shapes {
        let sessions = clients.len();
        let sent: usize = clients
            .iter()
            .flat_map(|(_, f)| f.iter().map(|f| f.len() + 3))
            .sum();
        let mut broker = Broker::new(config.clone());
        let bytes = held(&mut broker, clients);
        let stats = broker.stats();
        println!(
            "{name}: {} subscriptions, weight {} B, heap held {bytes} B ({:.0} B per \
             subscription), {sent} B of filters offered",
            stats.subscriptions,
            stats.subscription_bytes,
            bytes as f64 / stats.subscriptions as f64
        );
        assert!(stats.subscriptions > 0, "{name}");
        // The weights are an upper bound of what the subscriptions hold...
        assert!(
            bytes <= stats.subscription_bytes as isize + SLACK,
            "{name}: {bytes} > weight {}",
            stats.subscription_bytes
        );
        // ...and the budgets bound the weights.
        assert!(
            stats.subscription_bytes <= config.max_subscription_bytes_total,
            "{name}"
        );
        assert!(
            stats.subscription_bytes <= sessions * config.max_subscription_bytes_per_session,
            "{name}"
        );
        assert!(
            bytes <= config.max_subscription_bytes_total as isize + SLACK,
            "{name}: {bytes}"
        );
        drop(broker);
    }
}
