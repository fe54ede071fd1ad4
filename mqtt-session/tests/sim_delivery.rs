//! Delivery guarantees end to end: a client session and server sessions joined by the
//! simulated network (random delays and fragmentation), with random publishes in both
//! directions, connection cuts and reconnects on a persistent session.
//!
//! [MQTT-4.3.2-1]/[MQTT-4.3.3-1] (QoS 1 at least once, QoS 2 exactly once), [MQTT-4.4.0-1]
//! (re-send on reconnect), [MQTT-4.6.0-1] (order kept), checked as properties.
#![cfg(feature = "sim")]

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicName};
use mqtt_streaming_session::sim::{NetworkConfig, Pair, PairEvent};
use mqtt_streaming_session::{
    ClientConfig, ClientEvent, Message, ServerConfig, ServerEvent, ServerState,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    ClientPublish { topic: u8, qos: u8 },
    ServerPublish { topic: u8, qos: u8 },
    Advance(u64),
    Cut,
    Reconnect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3, 0u8..3).prop_map(|(topic, qos)| Op::ClientPublish { topic, qos }),
        6 => (0u8..3, 0u8..3).prop_map(|(topic, qos)| Op::ServerPublish { topic, qos }),
        4 => (0u64..120).prop_map(Op::Advance),
        1 => Just(Op::Cut),
        1 => Just(Op::Reconnect),
    ]
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![Just(ProtocolVersion::V3_1_1), Just(ProtocolVersion::V5)]
}

fn connect(version: ProtocolVersion, clean: bool) -> Connect {
    let mut c = Connect::new(version, MqttString::new("sim-client").unwrap());
    c.clean_start = clean;
    c.keep_alive = 5;
    if version.is_v5() {
        // A session that never expires, so it survives every cut.
        c.properties.session_expiry_interval = Some(u32::MAX);
    }
    c
}

fn qos(n: u8) -> QoS {
    QoS::from_u8(n).unwrap()
}

fn message(id: u64, topic: u8, qos: QoS) -> Message {
    let topic = TopicName::new(&format!("t/{topic}")).unwrap();
    Message::new(topic, qos, Bytes::from(id.to_be_bytes().to_vec()))
}

fn id_of(payload: &Bytes) -> u64 {
    u64::from_be_bytes(payload[..8].try_into().unwrap())
}

/// What one direction sent and what arrived.
#[derive(Default)]
struct Ledger {
    /// id -> (topic, qos) of every message the sending session accepted.
    sent: BTreeMap<u64, (u8, QoS)>,
    /// ids in arrival order.
    received: Vec<u64>,
    /// ids whose token came back (Published or Abandoned), with the count.
    tokens: BTreeMap<u64, usize>,
}

impl Ledger {
    fn check(&self, direction: &str) {
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for id in &self.received {
            *counts.entry(*id).or_default() += 1;
        }
        for (id, (_, qos)) in &self.sent {
            let n = counts.get(id).copied().unwrap_or(0);
            match qos {
                QoS::AtMostOnce => assert!(
                    n <= 1,
                    "{direction}: QoS 0 message {id} delivered {n} times"
                ),
                QoS::AtLeastOnce => assert!(n >= 1, "{direction}: QoS 1 message {id} lost"),
                QoS::ExactlyOnce => {
                    assert_eq!(n, 1, "{direction}: QoS 2 message {id} delivered {n} times")
                }
            }
        }
        for id in counts.keys() {
            assert!(
                self.sent.contains_key(id),
                "{direction}: message {id} was never sent"
            );
        }
        // Order: within one topic and QoS > 0, first deliveries follow sending order.
        let mut seen = BTreeSet::new();
        let mut last: BTreeMap<(u8, QoS), u64> = BTreeMap::new();
        for id in &self.received {
            if !seen.insert(*id) {
                continue;
            }
            let (topic, qos) = self.sent[id];
            if qos == QoS::AtMostOnce {
                continue;
            }
            if let Some(prev) = last.insert((topic, qos), *id) {
                assert!(
                    prev < *id,
                    "{direction}: order broken on t/{topic} {qos}: {prev} then {id}"
                );
            }
        }
        // Every token comes back exactly once.
        for id in self.sent.keys() {
            let n = self.tokens.get(id).copied().unwrap_or(0);
            assert_eq!(n, 1, "{direction}: token {id} returned {n} times");
        }
    }
}

fn run(seed: u64, version: ProtocolVersion, ops: Vec<Op>) {
    let net = NetworkConfig {
        min_delay_ms: 1,
        max_delay_ms: 30,
        max_chunk: 17,
    };
    let client_config = ClientConfig::default().with_max_inflight(4);
    let server_config = ServerConfig::default().with_max_inflight(3);
    let mut pair = Pair::new(seed, net, client_config, server_config);
    // Persistent from the start (3.1.1 clean session 0; 5.0 expiry "never"), so no message
    // may ever be abandoned.
    pair.connect(connect(version, false)).unwrap();
    pair.run_for(50);

    let mut up = Ledger::default();
    let mut down = Ledger::default();
    let mut next_id = 0u64;
    for op in ops {
        match op {
            Op::ClientPublish { topic, qos: q } => {
                next_id += 1;
                if pair
                    .client
                    .publish(pair.now, message(next_id, topic, qos(q)), next_id)
                    .is_ok()
                {
                    up.sent.insert(next_id, (topic, qos(q)));
                }
            }
            Op::ServerPublish { topic, qos: q } => {
                next_id += 1;
                let m = message(next_id, topic, qos(q));
                let now = pair.now;
                // To the live session when there is one, else into the stored session the
                // way a broker queues for an offline client.
                let accepted = match &mut pair.server {
                    Some(server) if server.state() == ServerState::Connected => {
                        server.publish(now, m, next_id).is_ok()
                    }
                    _ => match &mut pair.stored_session {
                        Some(state) => state.enqueue(now, m, next_id).is_ok(),
                        None => false,
                    },
                };
                if accepted {
                    down.sent.insert(next_id, (topic, qos(q)));
                }
            }
            Op::Advance(ms) => pair.run_for(ms),
            Op::Cut => pair.cut(),
            Op::Reconnect => {
                if !pair.is_linked() {
                    pair.connect(connect(version, false)).unwrap();
                }
            }
        }
    }
    // Let everything settle on a healthy connection.
    for _ in 0..3 {
        if !pair.is_linked()
            || pair.client.state() != mqtt_streaming_session::ConnectionState::Connected
        {
            if pair.is_linked() {
                pair.cut();
            }
            pair.connect(connect(version, false)).unwrap();
        }
        pair.run_for(3_000);
    }
    assert_eq!(
        pair.client.state(),
        mqtt_streaming_session::ConnectionState::Connected
    );

    for event in &pair.events {
        match event {
            PairEvent::Server(ServerEvent::Message { publish, .. }) => {
                up.received.push(id_of(&publish.payload))
            }
            PairEvent::Client(ClientEvent::Message { publish, .. }) => {
                down.received.push(id_of(&publish.payload))
            }
            PairEvent::Client(ClientEvent::Published {
                token, reason_code, ..
            }) => {
                assert!(
                    !reason_code.is_error(),
                    "client publish {token} failed: {reason_code}"
                );
                *up.tokens.entry(*token).or_default() += 1;
            }
            PairEvent::Client(ClientEvent::Abandoned { token, cause, .. }) => {
                panic!("client publish {token} abandoned ({cause:?}) on a persistent session");
            }
            PairEvent::Server(ServerEvent::Published { token, .. }) => {
                *down.tokens.entry(*token).or_default() += 1;
            }
            PairEvent::Server(ServerEvent::Abandoned { token, cause, .. }) => {
                panic!("server publish {token} abandoned ({cause:?}) on a persistent session");
            }
            PairEvent::ServerSessionEnded { token, .. } => {
                panic!("server session ended holding {token}")
            }
            _ => {}
        }
    }
    up.check("client->server");
    down.check("server->client");
    assert!(pair.client.inflight_len() == 0 && pair.client.queued_len() == 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// [MQTT-4.3.2-1] [MQTT-4.3.3-1] [MQTT-4.4.0-1] [MQTT-4.6.0-1]: no loss for QoS 1 and 2,
    /// no duplicate for QoS 2, order per topic, every token back once, across cuts.
    #[test]
    fn delivery_guarantees_hold_across_cuts(seed in any::<u64>(), version in version(), ops in prop::collection::vec(op(), 1..80)) {
        run(seed, version, ops);
    }
}

#[test]
fn many_messages_one_topic_no_head_of_line_blocking() {
    // Alpakka kept one message in flight per topic; here the window fills on one topic.
    let mut pair = Pair::new(
        1,
        NetworkConfig::default(),
        ClientConfig::default(),
        ServerConfig::default(),
    );
    pair.connect(connect(ProtocolVersion::V5, true)).unwrap();
    pair.run_for(50);
    for id in 1..=50u64 {
        pair.client
            .publish(pair.now, message(id, 0, QoS::ExactlyOnce), id)
            .unwrap();
    }
    assert_eq!(
        pair.client.inflight_len(),
        50,
        "all 50 QoS 2 messages are in flight at once"
    );
    pair.run_for(2_000);
    let received: Vec<u64> = pair
        .events
        .iter()
        .filter_map(|e| match e {
            PairEvent::Server(ServerEvent::Message { publish, .. }) => {
                Some(id_of(&publish.payload))
            }
            _ => None,
        })
        .collect();
    assert_eq!(received, (1..=50).collect::<Vec<_>>());
}
