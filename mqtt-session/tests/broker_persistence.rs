//! Issue 14, crash-safe persistence, in the pure core: the change records a broker with
//! `persistence` on reports, written to an in-memory key-value store through their byte
//! layout (`Change::ops`, `Snapshot::load`), and a broker rebuilt from that store
//! (`Broker::restore`) standing in for the crashed one.
#![cfg(feature = "sim")]

mod broker_support;

use std::collections::BTreeMap;
use std::time::Duration;

use broker_support::*;
use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    Decoder, Packet, PacketId, ProtocolVersion, PubResponse, Publish, QosPid, ReasonCode,
};
use mqtt_streaming_session::broker::{
    Broker, BrokerConfig, Change, ConnectionId, Snapshot, StoreOp,
};
use mqtt_streaming_session::sim::BrokerNet;
use mqtt_streaming_session::{AckMode, ClientConfig, ClientEvent, Instant, Message};

/// A key-value store as a driver keeps one.
#[derive(Default)]
struct Store(BTreeMap<Vec<u8>, Vec<u8>>);

impl Store {
    fn apply(&mut self, change: &Change) {
        let mut ops = Vec::new();
        change.ops(0, &mut ops);
        for op in ops {
            match op {
                StoreOp::Put(k, v) | StoreOp::Insert(k, v) => {
                    self.0.insert(k, v);
                }
                StoreOp::Delete(k) => {
                    self.0.remove(&k);
                }
                StoreOp::DeletePrefix(p) => self.0.retain(|k, _| !k.starts_with(&p)),
            }
        }
    }

    /// Takes every change the broker has.
    fn drain(&mut self, broker: &mut Broker) -> Vec<Change> {
        let mut changes = Vec::new();
        while let Some(change) = broker.poll_change() {
            self.apply(&change);
            changes.push(change);
        }
        changes
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::load(self.0.iter()).unwrap()
    }

    fn messages_of(&self, client_id: &str) -> usize {
        let mut prefix = vec![b'S'];
        prefix.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
        prefix.extend_from_slice(client_id.as_bytes());
        prefix.push(b'm');
        self.0.keys().filter(|k| k.starts_with(&prefix)).count()
    }
}

fn persistent() -> BrokerConfig {
    BrokerConfig {
        persistence: true,
        ..BrokerConfig::default()
    }
}

/// Runs the network, writing every change to the store as it comes.
fn run(net: &mut BrokerNet, store: &mut Store, ms: u64) {
    let step = 5;
    let mut left = ms;
    while left > 0 {
        net.run_for(step.min(left));
        store.drain(&mut net.broker);
        left = left.saturating_sub(step);
    }
}

/// The broker dies (`kill -9`): every client's transport is gone, and a new broker is
/// rebuilt from the store, `after` later on the durable clock.
fn crash(net: &mut BrokerNet, store: &mut Store, after: Duration) {
    store.drain(&mut net.broker);
    net.now = net.now + after;
    let now = net.now;
    for c in &mut net.clients {
        c.link = None;
        c.session.handle_closed(now);
    }
    let mut broker = Broker::new(persistent());
    broker.restore(now, store.snapshot(), now.as_millis());
    net.broker = broker;
    run(net, store, 1);
}

#[test]
fn off_by_default_nothing_is_recorded() {
    // A broker without `persistence` pays nothing: no records at all.
    let mut net = net();
    let s = client(&mut net, V5, "sub", false, 600);
    subscribe(&mut net, s, "a/#", Q1);
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "a/1", Q1, "x");
    net.broker
        .publish(net.now, Message::new(topic("r"), Q1, "kept").retained());
    assert_eq!(payloads(&net, s), ["x"]);
    assert!(!net.broker.has_changes());
    assert_eq!(net.broker.poll_change(), None);
}

#[test]
fn records_of_a_persistent_session_and_a_retained_message() {
    // What a subscription, a delivery and its acknowledgement, and a retained message are
    // recorded as; a clean session (expiry 0) records nothing of its own.
    let mut net = net_with(persistent());
    let mut store = Store::default();
    let s = client(&mut net, V5, "sub", false, 600);
    let changes = store.drain(&mut net.broker);
    assert!(
        changes.iter().any(|c| matches!(c, Change::Session(h)
            if h.client_id.as_str() == "sub" && h.disconnected_at.is_none())),
        "{changes:?}"
    );
    subscribe(&mut net, s, "a/#", Q1);
    let changes = store.drain(&mut net.broker);
    assert!(changes
        .iter()
        .any(|c| matches!(c, Change::SubscriptionAdded { filter, .. }
        if filter.filter() == "a/#")));
    let p = client(&mut net, V3, "pub", true, 0);
    let changes = store.drain(&mut net.broker);
    assert!(
        !changes
            .iter()
            .any(|c| matches!(c, Change::Session(h) if h.client_id.as_str() == "pub")),
        "a clean session is not recorded: {changes:?}"
    );
    publish(&mut net, p, "a/1", Q1, "one");
    let changes = store.drain(&mut net.broker);
    let queued = changes
        .iter()
        .filter(|c| matches!(c, Change::MessageQueued { .. }))
        .count();
    let done = changes
        .iter()
        .filter(|c| matches!(c, Change::MessageDone { .. }))
        .count();
    assert_eq!((queued, done), (1, 1), "{changes:?}");
    assert_eq!(
        store.messages_of("sub"),
        0,
        "acknowledged: gone from the store"
    );
    publish_retained(&mut net, p, "r/1", "kept");
    store.drain(&mut net.broker);
    assert_eq!(store.snapshot().retained.len(), 1);
    // [MQTT-3.3.1-6] (5.0): an empty retained payload deletes it, in the store too.
    publish_retained(&mut net, p, "r/1", "");
    store.drain(&mut net.broker);
    assert!(store.snapshot().retained.is_empty());
}

fn publish_retained(net: &mut BrokerNet, i: usize, t: &str, p: &str) {
    send(
        net,
        i,
        Message::new(topic(t), Q1, Bytes::copy_from_slice(p.as_bytes())).retained(),
    );
    net.run_for(SETTLE_MS);
}

#[test]
fn offline_queue_subscriptions_and_retained_survive_a_crash() {
    // [MQTT-3.1.2-23] (5.0): the session state is kept after the connection closes, across
    // a crash of the broker too; [MQTT-3.2.2-2] (3.1.1): Session Present on resumption;
    // [MQTT-3.3.1-5]: retained messages stay stored.
    let mut net = net_with(persistent());
    let mut store = Store::default();
    let s = client(&mut net, V5, "sub", false, 600);
    subscribe(&mut net, s, "a/#", Q2);
    cut(&mut net, s);
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "a/1", Q1, "one");
    publish(&mut net, p, "a/2", Q2, "two");
    publish_retained(&mut net, p, "r/1", "kept");
    assert_eq!(publish_acks(&net, p).len(), 3);
    crash(&mut net, &mut store, Duration::from_secs(5));

    connect(&mut net, s, connect_packet(V5, "sub", false, 600));
    run(&mut net, &mut store, SETTLE_MS);
    assert!(connack(&net, s).session_present);
    assert_eq!(
        payloads(&net, s),
        ["one", "two"],
        "queued messages, in order"
    );
    // The subscription is back.
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "a/3", Q1, "three");
    run(&mut net, &mut store, SETTLE_MS);
    assert_eq!(payloads(&net, s), ["one", "two", "three"]);
    // The retained message is back.
    let r = client(&mut net, V5, "reader", true, 0);
    subscribe(&mut net, r, "r/#", Q1);
    assert_eq!(payloads(&net, r), ["kept"]);
    run(&mut net, &mut store, SETTLE_MS);
    assert_eq!(store.messages_of("sub"), 0, "every message acknowledged");
}

#[test]
fn qos2_in_flight_to_a_subscriber_is_not_delivered_twice_after_a_crash() {
    // [MQTT-4.4.0-1]: the restored session re-sends the unacknowledged PUBLISH with its
    // original packet identifier (DUP), so the subscriber, which holds that identifier
    // ([MQTT-4.3.3-10]), does not deliver it again.
    let mut net = net_with(persistent());
    let mut store = Store::default();
    let s = net.add_client(ClientConfig::default().with_ack_mode(AckMode::Manual));
    connect(&mut net, s, connect_packet(V5, "sub", false, 600));
    subscribe(&mut net, s, "a", Q2);
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "a", Q2, "once");
    run(&mut net, &mut store, SETTLE_MS);
    assert_eq!(payloads(&net, s), ["once"]);
    let first = received(&net, s)[0].qos_pid.packet_id();
    // Not acknowledged yet (manual acks): the broker dies with the flow open.
    crash(&mut net, &mut store, Duration::from_secs(1));
    connect(&mut net, s, connect_packet(V5, "sub", false, 600));
    run(&mut net, &mut store, SETTLE_MS);
    assert!(connack(&net, s).session_present);
    assert_eq!(payloads(&net, s), ["once"], "not delivered a second time");
    // The client finishes the exchange: the message is done in the store.
    let ack = net.clients[s]
        .events
        .iter()
        .find_map(|e| match e {
            ClientEvent::Message { ack: Some(id), .. } => Some(*id),
            _ => None,
        })
        .unwrap();
    assert_eq!(Some(ack.packet_id()), first);
    let now = net.now;
    net.clients[s]
        .session
        .ack(now, ack, ReasonCode::Success)
        .unwrap();
    run(&mut net, &mut store, SETTLE_MS);
    assert_eq!(store.messages_of("sub"), 0);
    assert_eq!(payloads(&net, s), ["once"]);
}

/// What the broker sent each connection, decoded.
fn sent(broker: &mut Broker, now: Instant) -> BTreeMap<ConnectionId, Vec<Packet>> {
    let mut out = BTreeMap::<ConnectionId, Vec<Packet>>::new();
    let mut buf = BytesMut::new();
    while let Some(id) = broker.poll_transmit(now, &mut buf) {
        let decoder = Decoder::new(ProtocolVersion::V5);
        while let Some(p) = decoder.decode(&mut buf).unwrap() {
            out.entry(id).or_default().push(p);
        }
        buf.clear();
    }
    out
}

fn feed(broker: &mut Broker, now: Instant, id: ConnectionId, packets: Vec<Packet>) {
    let mut buf = BytesMut::new();
    for p in packets {
        p.encode(ProtocolVersion::V5, &mut buf).unwrap();
    }
    broker.handle_read(now, id, &mut buf);
}

#[test]
fn inbound_qos2_awaiting_pubrel_survives_a_crash() {
    // [MQTT-4.3.3-10] (5.0): until PUBREL arrives, a PUBLISH re-sent with the same packet
    // identifier is answered with PUBREC and not delivered onward, also by a restarted
    // broker; [MQTT-4.3.3-11]: its PUBREL gets PUBCOMP.
    let mut store = Store::default();
    let mut now = Instant::from_millis(10);
    let mut broker = Broker::new(persistent());
    let sub = broker.open(now).unwrap();
    feed(
        &mut broker,
        now,
        sub,
        vec![
            Packet::from(connect_packet(V5, "sub", false, 600)),
            Packet::Subscribe(mqtt_streaming_proto::Subscribe::new(
                PacketId::MIN,
                filter("t"),
                mqtt_streaming_proto::SubscriptionOptions::new(Q0),
            )),
        ],
    );
    let publisher = broker.open(now).unwrap();
    let publish = Publish::new(topic("t"), QosPid::ExactlyOnce(PacketId::MIN), "exactly");
    feed(
        &mut broker,
        now,
        publisher,
        vec![
            Packet::from(connect_packet(V5, "pub", false, 600)),
            Packet::Publish(publish.clone()),
        ],
    );
    let out = sent(&mut broker, now);
    assert!(out[&publisher]
        .iter()
        .any(|p| matches!(p, Packet::PubRec(r) if r.packet_id == PacketId::MIN)));
    assert_eq!(
        out[&sub]
            .iter()
            .filter(|p| matches!(p, Packet::Publish(_)))
            .count(),
        1
    );
    store.drain(&mut broker);

    // kill -9, restart.
    now = now + Duration::from_secs(1);
    let mut broker = Broker::new(persistent());
    broker.restore(now, store.snapshot(), now.as_millis());
    store.drain(&mut broker);
    let sub = broker.open(now).unwrap();
    feed(
        &mut broker,
        now,
        sub,
        vec![Packet::from(connect_packet(V5, "sub", false, 600))],
    );
    let publisher = broker.open(now).unwrap();
    let mut dup = publish;
    dup.dup = true;
    feed(
        &mut broker,
        now,
        publisher,
        vec![
            Packet::from(connect_packet(V5, "pub", false, 600)),
            Packet::Publish(dup),
            Packet::PubRel(PubResponse::new(PacketId::MIN)),
        ],
    );
    let out = sent(&mut broker, now);
    let to_pub = &out[&publisher];
    assert!(to_pub
        .iter()
        .any(|p| matches!(p, Packet::PubRec(r) if r.packet_id == PacketId::MIN)));
    assert!(to_pub.iter().any(|p| matches!(p, Packet::PubComp(r)
        if r.packet_id == PacketId::MIN && r.reason_code == ReasonCode::Success)));
    assert!(
        !out.get(&sub)
            .is_some_and(|ps| ps.iter().any(|p| matches!(p, Packet::Publish(_)))),
        "the re-sent PUBLISH is not delivered again"
    );
    store.drain(&mut broker);
    let snapshot = store.snapshot();
    assert!(snapshot.sessions[&string("pub")]
        .flows
        .inbound_awaiting_pubrel
        .is_empty());
}

#[test]
fn an_expired_session_does_not_come_back_after_a_restart() {
    // [MQTT-3.1.2-23] (5.0): the session is kept for its Session Expiry Interval, measured
    // across the broker's downtime: past it, the restarted broker has no session.
    let mut net = net_with(persistent());
    let mut store = Store::default();
    let short = client(&mut net, V5, "short", false, 10);
    subscribe(&mut net, short, "a", Q1);
    let long = client(&mut net, V5, "long", false, 3600);
    subscribe(&mut net, long, "a", Q1);
    cut(&mut net, short);
    cut(&mut net, long);
    run(&mut net, &mut store, 10);
    crash(&mut net, &mut store, Duration::from_secs(20));
    run(&mut net, &mut store, 10);
    assert_eq!(net.broker.stats().sessions, 1);
    connect(&mut net, short, connect_packet(V5, "short", false, 10));
    assert!(!connack(&net, short).session_present);
    connect(&mut net, long, connect_packet(V5, "long", false, 3600));
    assert!(connack(&net, long).session_present);
    store.drain(&mut net.broker);
    let snapshot = store.snapshot();
    assert!(snapshot.sessions[&string("short")].subscriptions.is_empty());
    assert_eq!(snapshot.sessions[&string("long")].subscriptions.len(), 1);
}

#[test]
fn a_session_connected_at_the_crash_publishes_its_will_after_restore() {
    // The crash ends the connection without DISCONNECT: on restore the will is published
    // (after its Will Delay Interval, here 0), as for a lost connection ([MQTT-3.1.2-8]).
    let mut net = net_with(persistent());
    let mut store = Store::default();
    let w = net.add_client(ClientConfig::default());
    let mut c = connect_packet(V5, "dev", false, 600);
    c.will = Some(mqtt_streaming_proto::Will {
        topic: topic("status/dev"),
        payload: Bytes::from_static(b"gone"),
        qos: Q1,
        retain: true,
        properties: Default::default(),
    });
    connect(&mut net, w, c);
    run(&mut net, &mut store, 10);
    crash(&mut net, &mut store, Duration::from_secs(1));
    run(&mut net, &mut store, 10);
    let r = client(&mut net, V5, "reader", true, 0);
    subscribe(&mut net, r, "status/#", Q1);
    assert_eq!(payloads(&net, r), ["gone"]);
    assert_eq!(net.broker.stats().wills_published, 1);
}

#[test]
fn random_crashes_keep_qos2_exactly_once_and_qos1_at_least_once() {
    // [MQTT-4.3.3-10] and [MQTT-4.4.0-1] (5.0) across crashes at random points of a stream:
    // publishers and subscribers with persistent sessions, the broker killed and rebuilt
    // from its records three times; every message is acknowledged to its publisher, every
    // QoS 2 one reaches its subscriber exactly once, every QoS 1 one at least once.
    const PER_ROUND: u64 = 15;
    const ROUNDS: u64 = 4;
    for seed in 1..=12u64 {
        let mut next = random_below(seed);
        let mut net = BrokerNet::new(
            seed,
            mqtt_streaming_session::sim::NetworkConfig::default(),
            persistent(),
        );
        let mut store = Store::default();
        let ids = ["sub1", "sub2", "pub1", "pub2"];
        let clients: Vec<usize> = ids
            .iter()
            .map(|id| client(&mut net, V5, id, true, 600))
            .collect();
        subscribe(&mut net, clients[0], "q1", Q1);
        subscribe(&mut net, clients[1], "q2", Q2);
        run(&mut net, &mut store, 10);
        let mut sent = 0;
        for round in 0..ROUNDS {
            for _ in 0..PER_ROUND {
                let payload = Bytes::from(sent.to_string());
                send(
                    &mut net,
                    clients[2],
                    Message::new(topic("q1"), Q1, payload.clone()),
                );
                send(&mut net, clients[3], Message::new(topic("q2"), Q2, payload));
                sent += 1;
            }
            // Mid-stream: some of the round's exchanges are done, some not.
            run(&mut net, &mut store, 1 + next(40));
            if round + 1 < ROUNDS {
                crash(&mut net, &mut store, Duration::from_millis(100));
                for (i, id) in ids.iter().enumerate() {
                    connect(&mut net, clients[i], connect_packet(V5, id, false, 600));
                    assert!(
                        connack(&net, clients[i]).session_present,
                        "seed {seed}: {id}"
                    );
                }
                run(&mut net, &mut store, 1);
            }
        }
        run(&mut net, &mut store, 3_000);
        for p in [clients[2], clients[3]] {
            assert_eq!(publish_acks(&net, p).len() as u64, sent, "seed {seed}");
        }
        let count = |i: usize| {
            let mut seen = BTreeMap::<String, usize>::new();
            for p in payloads(&net, i) {
                *seen.entry(p).or_default() += 1;
            }
            seen
        };
        let q1 = count(clients[0]);
        let q2 = count(clients[1]);
        for n in 0..sent {
            assert!(
                q1.contains_key(&n.to_string()),
                "seed {seed}: QoS 1 {n} lost"
            );
            assert_eq!(q2.get(&n.to_string()), Some(&1), "seed {seed}: QoS 2 {n}");
        }
        assert_eq!(q2.len() as u64, sent, "seed {seed}");
        assert_eq!(store.messages_of("sub1") + store.messages_of("sub2"), 0);
    }
}

/// Acknowledges every message manual-ack client `s` was given and has not acknowledged yet
/// (`acked`: the events already handled).
fn ack_all(net: &mut BrokerNet, s: usize, acked: &mut usize) {
    let now = net.now;
    let ids: Vec<_> = net.clients[s].events[*acked..]
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message { ack: Some(id), .. } => Some(*id),
            _ => None,
        })
        .collect();
    *acked = net.clients[s].events.len();
    for id in ids {
        // A stale id (its session was discarded) is refused: nothing to acknowledge.
        let _ = net.clients[s].session.ack(now, id, ReasonCode::Success);
    }
}

#[test]
fn held_back_messages_survive_a_crash_qos2_exactly_once_qos1_at_least_once() {
    // Messages held back from their publisher because a subscriber is full (the broker's
    // overload policy) were routed to some subscribers and not yet to others, and their
    // PUBACK / PUBREC is withheld. A crash at any point of that, then a restore from the
    // records: every message is acknowledged to its publisher in the end, nothing is lost,
    // and a QoS 2 one reaches each subscriber exactly once ([MQTT-4.3.3-10] in 5.0: the
    // publisher's re-send after the restart is answered with PUBREC and not routed again).
    const N: u64 = 24;
    let config = || BrokerConfig {
        persistence: true,
        server: BrokerConfig::default()
            .server
            .with_max_queued(3)
            .with_receive_maximum(8),
        ..BrokerConfig::default()
    };
    for seed in 1..=16u64 {
        let mut next = random_below(seed);
        let mut net = BrokerNet::new(
            seed,
            mqtt_streaming_session::sim::NetworkConfig::default(),
            config(),
        );
        let mut store = Store::default();
        // `slow` acknowledges by hand with a window of 2: it fills, and the publishers are
        // held back; `fast` takes everything at once.
        let slow = net.add_client(
            ClientConfig::default()
                .with_ack_mode(AckMode::Manual)
                .with_receive_maximum(2),
        );
        connect(&mut net, slow, connect_packet(V5, "slow", false, 600));
        let fast = client(&mut net, V5, "fast", false, 600);
        for s in [slow, fast] {
            subscribe(&mut net, s, "q1", Q1);
            subscribe(&mut net, s, "q2", Q2);
        }
        let p1 = client(&mut net, V5, "pub1", false, 600);
        let p2 = client(&mut net, V5, "pub2", false, 600);
        run(&mut net, &mut store, 10);
        for n in 0..N {
            let payload = Bytes::from(n.to_string());
            send(&mut net, p1, Message::new(topic("q1"), Q1, payload.clone()));
            send(&mut net, p2, Message::new(topic("q2"), Q2, payload));
        }
        let mut acked = 0;
        let mut parked_seen = 0;
        // Two crashes at random points while messages are held back.
        for _ in 0..2 {
            run(&mut net, &mut store, 20 + next(60));
            parked_seen = parked_seen.max(net.broker.stats().parked);
            if next(3) == 0 {
                // The publishers go away: what the subscribers take meanwhile is answered
                // when they come back.
                cut(&mut net, p1);
                cut(&mut net, p2);
            }
            if next(2) == 0 {
                ack_all(&mut net, slow, &mut acked);
                run(&mut net, &mut store, 1 + next(20));
            }
            crash(&mut net, &mut store, Duration::from_millis(100));
            for (i, id) in [(slow, "slow"), (fast, "fast"), (p1, "pub1"), (p2, "pub2")] {
                connect(&mut net, i, connect_packet(V5, id, false, 600));
                assert!(connack(&net, i).session_present, "seed {seed}: {id}");
            }
        }
        for _ in 0..400 {
            ack_all(&mut net, slow, &mut acked);
            run(&mut net, &mut store, 20);
        }
        assert!(parked_seen > 0, "seed {seed}: nothing was held back");
        assert_eq!(net.broker.stats().parked, 0, "seed {seed}");
        assert_eq!(publish_acks(&net, p1).len() as u64, N, "seed {seed}");
        assert_eq!(publish_acks(&net, p2).len() as u64, N, "seed {seed}");
        for (s, name) in [(slow, "slow"), (fast, "fast")] {
            let mut seen = BTreeMap::<(String, String), usize>::new();
            for p in received(&net, s) {
                let text = String::from_utf8(p.payload.to_vec()).unwrap();
                *seen.entry((p.topic.as_str().to_owned(), text)).or_default() += 1;
            }
            for n in 0..N {
                let n = n.to_string();
                assert!(
                    seen.contains_key(&("q1".to_owned(), n.clone())),
                    "seed {seed}: {name} lost QoS 1 {n}"
                );
                assert_eq!(
                    seen.get(&("q2".to_owned(), n.clone())),
                    Some(&1),
                    "seed {seed}: {name}, QoS 2 {n}"
                );
            }
        }
        store.drain(&mut net.broker);
        assert_eq!(store.messages_of("slow") + store.messages_of("fast"), 0);
    }
}

#[test]
fn held_back_qos2_finished_while_its_publisher_is_away_is_not_routed_again_after_a_crash() {
    // A held-back QoS 2 message whose subscribers all took it while its publisher was away:
    // its PUBREC waits for the publisher's return ("sent after CONNACK"). The broker crashes
    // meanwhile; after the restore the publisher re-sends it (DUP) and gets PUBREC, and
    // nobody gets it twice ([MQTT-4.3.3-10] in 5.0).
    let config = BrokerConfig {
        persistence: true,
        server: BrokerConfig::default().server.with_max_queued(1),
        ..BrokerConfig::default()
    };
    let mut net = net_with(config.clone());
    let mut store = Store::default();
    let slow = net.add_client(
        ClientConfig::default()
            .with_ack_mode(AckMode::Manual)
            .with_receive_maximum(1),
    );
    connect(&mut net, slow, connect_packet(V5, "slow", false, 600));
    let fast = client(&mut net, V5, "fast", false, 600);
    subscribe(&mut net, slow, "t", Q2);
    subscribe(&mut net, fast, "t", Q2);
    let p = client(&mut net, V5, "pub", false, 600);
    for n in 0..4 {
        send(
            &mut net,
            p,
            Message::new(topic("t"), Q2, Bytes::from(format!("{n}"))),
        );
    }
    run(&mut net, &mut store, SETTLE_MS);
    assert!(net.broker.stats().parked > 0, "held back");
    assert!(publish_acks(&net, p).len() < 4);
    cut(&mut net, p);
    let mut acked = 0;
    for _ in 0..20 {
        ack_all(&mut net, slow, &mut acked);
        run(&mut net, &mut store, 50);
    }
    assert_eq!(
        net.broker.stats().parked,
        0,
        "all taken while the publisher is away"
    );
    assert_eq!(payloads(&net, fast), ["0", "1", "2", "3"]);
    // kill -9 and restart from the records.
    net.now = net.now + Duration::from_secs(1);
    store.drain(&mut net.broker);
    let now = net.now;
    for c in &mut net.clients {
        c.link = None;
        c.session.handle_closed(now);
    }
    let mut broker = Broker::new(config);
    broker.restore(now, store.snapshot(), now.as_millis());
    net.broker = broker;
    for (i, id) in [(slow, "slow"), (fast, "fast"), (p, "pub")] {
        connect(&mut net, i, connect_packet(V5, id, false, 600));
        assert!(connack(&net, i).session_present, "{id}");
    }
    for _ in 0..20 {
        ack_all(&mut net, slow, &mut acked);
        run(&mut net, &mut store, 50);
    }
    assert_eq!(publish_acks(&net, p), [ReasonCode::Success; 4]);
    assert_eq!(payloads(&net, fast), ["0", "1", "2", "3"], "none twice");
    assert_eq!(
        payloads(&net, slow),
        ["0", "1", "2", "3"],
        "none lost, none twice"
    );
    store.drain(&mut net.broker);
    assert!(store.snapshot().sessions[&string("pub")]
        .flows
        .inbound_awaiting_pubrel
        .is_empty());
}

/// A seeded xorshift generator: each call gives a number below its argument.
fn random_below(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    }
}
