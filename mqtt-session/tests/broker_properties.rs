//! Issue 5, delivery guarantees through the broker core as properties: several clients with
//! persistent sessions over the simulated network (random delays and fragmentation) make
//! random subscribes and QoS 1/2 publishes on a few topics while their connections are cut
//! and resumed.
//!
//! [MQTT-4.3.2-1] / [MQTT-4.3.3-1] (QoS 1 at least once, QoS 2 exactly once, 5.0 and 3.1.1),
//! [MQTT-4.4.0-1] (re-send on resume), [MQTT-4.6.0-6] (per-publisher order kept for each
//! subscriber): no QoS 1/2 message is lost, no QoS 2 delivery is duplicated, and each
//! publisher's messages arrive at each subscriber in the order they were published.
#![cfg(feature = "sim")]

mod broker_support;

use std::collections::BTreeMap;

use broker_support::*;
use mqtt_streaming_proto::{ProtocolVersion, QoS};
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_session::sim::{BrokerNet, NetworkConfig};
use mqtt_streaming_session::{ClientConfig, Message};
use proptest::prelude::*;

const CLIENTS: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    Publish {
        client: usize,
        topic: u8,
        qos2: bool,
    },
    Subscribe {
        client: usize,
        topic: u8,
        qos2: bool,
    },
    Cut(usize),
    Reconnect(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..CLIENTS, 0u8..3, any::<bool>())
            .prop_map(|(client, topic, qos2)| Op::Publish { client, topic, qos2 }),
        1 => (0..CLIENTS, 0u8..3, any::<bool>())
            .prop_map(|(client, topic, qos2)| Op::Subscribe { client, topic, qos2 }),
        2 => (0..CLIENTS).prop_map(Op::Cut),
        2 => (0..CLIENTS).prop_map(Op::Reconnect),
        3 => (0u64..60).prop_map(Op::Advance),
    ]
}

fn version(i: usize) -> ProtocolVersion {
    if i % 2 == 0 {
        V5
    } else {
        V3
    }
}

fn reconnect(net: &mut BrokerNet, i: usize) {
    // Persistent: clean session 0 (3.1.1), Session Expiry "never" (5.0).
    let c = connect_packet(version(i), &format!("c{i}"), false, u32::MAX);
    net.connect(i, c).unwrap();
}

/// Payload: publisher index and its sequence number.
fn payload(publisher: usize, seq: u32) -> Vec<u8> {
    let mut v = vec![publisher as u8];
    v.extend_from_slice(&seq.to_be_bytes());
    v
}

fn run(seed: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut net = BrokerNet::new(seed, NetworkConfig::default(), BrokerConfig::default());
    // Granted QoS per subscriber for "t/#": 2 for even clients, 1 for odd ones.
    for i in 0..CLIENTS {
        net.add_client(ClientConfig::default());
        reconnect(&mut net, i);
    }
    net.run_for(SETTLE_MS);
    for i in 0..CLIENTS {
        let qos = if i % 2 == 0 { Q2 } else { Q1 };
        let now = net.now;
        net.clients[i]
            .session
            .subscribe(
                now,
                mqtt_streaming_session::SubscribeRequest::new(filter("t/#"), qos),
                0,
            )
            .unwrap();
    }
    net.run_for(SETTLE_MS);
    // (publisher, seq) -> QoS published.
    let mut sent: BTreeMap<(usize, u32), QoS> = BTreeMap::new();
    let mut next_seq = [0u32; CLIENTS];
    for op in ops {
        match op {
            Op::Publish {
                client,
                topic,
                qos2,
            } => {
                let qos = if qos2 { Q2 } else { Q1 };
                let seq = next_seq[client];
                next_seq[client] += 1;
                let m = Message::new(
                    broker_support::topic(&format!("t/{topic}")),
                    qos,
                    payload(client, seq),
                );
                let now = net.now;
                net.clients[client].session.publish(now, m, 0).unwrap();
                sent.insert((client, seq), qos);
            }
            Op::Subscribe {
                client,
                topic,
                qos2,
            } => {
                // Overlapping with "t/#": still one delivery per message (at the highest QoS).
                let qos = if qos2 { Q2 } else { Q1 };
                let now = net.now;
                let f = filter(&format!("t/{topic}"));
                let _ = net.clients[client].session.subscribe(
                    now,
                    mqtt_streaming_session::SubscribeRequest::new(f, qos),
                    0,
                );
            }
            Op::Cut(i) => net.cut(i),
            Op::Reconnect(i) => reconnect(&mut net, i),
            Op::Advance(ms) => net.run_for(ms),
        }
    }
    // Everyone comes back and everything settles.
    for i in 0..CLIENTS {
        if net.clients[i].link.is_none() {
            reconnect(&mut net, i);
        }
    }
    for _ in 0..10 {
        net.run_for(1_000);
    }
    for sub in 0..CLIENTS {
        // (publisher, seq) -> (deliveries, highest QoS delivered)
        let mut got: BTreeMap<(usize, u32), (usize, QoS)> = BTreeMap::new();
        let mut last_seq: BTreeMap<usize, u32> = BTreeMap::new();
        for p in net.clients[sub].messages() {
            let publisher = p.payload[0] as usize;
            let seq = u32::from_be_bytes(p.payload[1..5].try_into().unwrap());
            let entry = got.entry((publisher, seq)).or_insert((0, Q0));
            entry.0 += 1;
            entry.1 = entry.1.max(p.qos_pid.qos());
            if entry.0 == 1 {
                // First arrivals of one publisher's messages come in publishing order.
                if let Some(prev) = last_seq.insert(publisher, seq) {
                    prop_assert!(
                        seq > prev,
                        "subscriber {sub}: {publisher}/{seq} after {publisher}/{prev}"
                    );
                }
            }
        }
        for (key, qos) in &sent {
            let Some((count, delivered)) = got.get(key) else {
                return Err(TestCaseError::fail(format!(
                    "subscriber {sub} lost {key:?} (QoS {qos:?})"
                )));
            };
            if *delivered == Q2 {
                prop_assert_eq!(*count, 1, "subscriber {} got QoS 2 {:?} twice", sub, key);
            }
        }
        prop_assert_eq!(
            got.len(),
            sent.len(),
            "subscriber {} got unknown messages",
            sub
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_qos12_loss_no_qos2_duplicate_order_kept(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(seed, ops)?;
    }
}
