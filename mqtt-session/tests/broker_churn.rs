//! Issue 10, item 5 ("memory is not given back"): after rounds of connect-and-close, the
//! broker core holds the heap it held before them. Every byte a connection, its session, its
//! subscriptions, its will, its timers and its messages cost is given back when the
//! connection closes and its session ends; nothing grows from round to round.
//!
//! Each scenario drives [`Broker`] directly, the way a driver does: `open`, the client's
//! bytes into `handle_read`, then `poll_transmit` and `poll_event` drained after every input,
//! and `handle_closed` / `handle_timeout` to end connections. A round connects `CLIENTS`
//! clients (MQTT 3.1.1 and 5.0 alternately) and closes them all, either one client at a time
//! or all open at once and then all closed. "Busy" clients also have a QoS 1 will, subscribe
//! (a filter of their own, a shared one, everyone's wills, and the 100 retained messages the
//! broker holds from the start, sent in turns), publish QoS 1 to another client and acknowledge
//! every QoS 1 message they get. After each round the clock moves past every will delay and
//! session expiry. The heap is counted by a global allocator that wraps `System`
//! (`stats_alloc`: the workspace forbids `unsafe`, which a `GlobalAlloc` needs); every buffer
//! the test itself uses is freed or allocated before the counts are taken.
//!
//! The counters are global, so this binary holds one test, which runs the scenarios in turn.

use std::alloc::System;
use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    Connect, Decoder, Disconnect, MqttString, Packet, PacketId, ProtocolVersion, PubResponse,
    Publish, QoS, QosPid, ReasonCode, Subscribe, SubscriptionOptions, TopicFilter, TopicName, Will,
};
use mqtt_streaming_session::broker::{Broker, BrokerConfig, BrokerEvent, ConnectionId};
use mqtt_streaming_session::{Instant, Message};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Clients per round.
const CLIENTS: usize = 500;
/// Rounds after the first.
const ROUNDS: usize = 3;
/// Bytes a later round may hold beyond the first one (allocator-independent: requested
/// bytes). A leak of even one byte per connection would exceed it.
const ROUND_SLACK: isize = 256;
/// Bytes the broker may hold after the first round beyond what it held new: the room its
/// emptied queues keep (a fixed number of entries, whatever the number of clients: 7 KiB at
/// most here, for 500 clients as for 2,000). Before they gave back the rest, a round in which
/// 1,000 clients timed out at once left 120 KB. A leak of 17 bytes per connection exceeds it.
const FIRST_ROUND_SLACK: isize = 8 * 1024;
/// The same for MQTT 3.1.1 sessions that never expire, whose queues and in-flight windows hold
/// different messages from round to round. A leak of 17 bytes per connection would exceed it.
const KEPT_SLACK: isize = 8 * 1024;
/// Retained messages the broker holds from the start; busy clients subscribe to all of them.
const RETAINED: usize = 100;
/// Session Expiry Interval of the persistent MQTT 5 sessions, in seconds.
const EXPIRY_S: u32 = 10;
/// Will Delay Interval of the delayed wills, in seconds.
const WILL_DELAY_S: u32 = 5;

/// Live heap bytes of the whole process. (`stats_alloc` already counts a reallocation's growth
/// in `bytes_allocated` and its shrinking in `bytes_deallocated`; `bytes_reallocated` is the
/// same change again.)
fn held() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// How a client's connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The client sends DISCONNECT, then the transport closes.
    Disconnect,
    /// The transport is lost without a DISCONNECT (the will is published).
    Lost,
    /// The client goes silent; the keep-alive timer closes it.
    KeepAlive,
    /// The transport closes before any CONNECT.
    NoConnect,
    /// No CONNECT arrives; the CONNECT timer closes it.
    ConnectTimeout,
    /// The client breaks the protocol (a second CONNECT); the broker closes it.
    ProtocolError,
    /// A second connection with the same client identifier takes the session over, then
    /// sends DISCONNECT.
    Takeover,
}

#[derive(Clone, Copy, Debug)]
struct Scenario {
    name: &'static str,
    /// All clients connected at once, then all closed; otherwise one client at a time.
    concurrent: bool,
    /// Clean Start off; MQTT 5 sessions expire after `EXPIRY_S`, MQTT 3.1.1 ones never.
    persistent: bool,
    /// Only MQTT 5 clients (otherwise 3.1.1 and 5.0 alternately).
    v5_only: bool,
    /// A QoS 1 will (delayed by `WILL_DELAY_S` for MQTT 5 when `persistent`).
    will: bool,
    /// Subscriptions (own, shared, everyone's wills, the retained messages) and QoS 1 publishes
    /// to another client.
    traffic: bool,
    end: End,
}

impl Scenario {
    const fn new(name: &'static str, end: End) -> Self {
        Self {
            name,
            concurrent: false,
            persistent: false,
            v5_only: false,
            will: false,
            traffic: false,
            end,
        }
    }
    const fn concurrent(mut self) -> Self {
        self.concurrent = true;
        self
    }
    const fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }
    const fn v5_only(mut self) -> Self {
        self.v5_only = true;
        self
    }
    const fn busy(mut self) -> Self {
        self.will = true;
        self.traffic = true;
        self
    }
}

/// A broker and what a driver keeps: the clock, a reused output buffer, the event counts, and
/// each connected client's version (its clients acknowledge every QoS 1 message they get).
struct Driver {
    broker: Broker,
    now: Instant,
    out: BytesMut,
    versions: BTreeMap<ConnectionId, ProtocolVersion>,
    connected: usize,
    closed: usize,
}

impl Driver {
    /// A broker holding `RETAINED` retained messages.
    fn new() -> Self {
        let mut broker = Broker::new(BrokerConfig {
            max_connections: 2 * CLIENTS,
            ..BrokerConfig::default()
        });
        let now = Instant::from_millis(0);
        for k in 0..RETAINED {
            let topic = TopicName::new(&format!("churn/retained/{k}")).unwrap();
            let mut message = Message::new(topic, QoS::AtLeastOnce, &b"kept"[..]);
            message.retain = true;
            broker.publish(now, message);
        }
        Self {
            broker,
            now,
            out: BytesMut::new(),
            versions: BTreeMap::new(),
            connected: 0,
            closed: 0,
        }
    }

    /// The drain rule: every byte to send, read by its client, which answers each QoS 1
    /// PUBLISH with PUBACK; then every event. Until nothing is left to answer.
    fn drain(&mut self) {
        loop {
            let mut acks = Vec::new();
            while let Some(id) = self.broker.poll_transmit(self.now, &mut self.out) {
                if let Some(&version) = self.versions.get(&id) {
                    let decoder = Decoder::new(version);
                    while let Some(packet) = decoder.decode(&mut self.out).unwrap() {
                        if let Packet::Publish(p) = packet {
                            if let QosPid::AtLeastOnce(pid) = p.qos_pid {
                                acks.push((id, version, pid));
                            }
                        }
                    }
                }
                self.out.clear();
            }
            while let Some(event) = self.broker.poll_event() {
                match event {
                    BrokerEvent::Connected { .. } => self.connected += 1,
                    BrokerEvent::Close { connection, .. } => {
                        self.closed += 1;
                        self.versions.remove(&connection);
                    }
                    // Nothing is held back here: every client reads at once.
                    BrokerEvent::ReadResumed { .. } => {}
                }
            }
            // Retained messages owed to subscribers go out in turns, when due.
            let due = self.broker.poll_timeout().is_some_and(|at| at <= self.now);
            if due {
                self.broker.handle_timeout(self.now);
            }
            if acks.is_empty() && !due {
                return;
            }
            for (id, version, pid) in acks {
                let mut buf = BytesMut::new();
                Packet::PubAck(PubResponse::new(pid))
                    .encode(version, &mut buf)
                    .unwrap();
                self.broker.handle_read(self.now, id, &mut buf);
            }
        }
    }

    fn feed(&mut self, id: ConnectionId, version: ProtocolVersion, packets: &[Packet]) {
        let mut buf = BytesMut::new();
        for packet in packets {
            packet.clone().encode(version, &mut buf).unwrap();
        }
        if packets.iter().any(|p| matches!(p, Packet::Connect(_))) {
            self.versions.insert(id, version);
        }
        self.broker.handle_read(self.now, id, &mut buf);
        self.drain();
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        self.broker.handle_timeout(self.now);
        self.drain();
    }
}

fn version_of(s: &Scenario, i: usize) -> ProtocolVersion {
    if s.v5_only || i % 2 == 1 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    }
}

fn connect(s: &Scenario, i: usize) -> Packet {
    let version = version_of(s, i);
    let mut c = Connect::new(version, MqttString::new(&format!("churn-{i}")).unwrap());
    c.clean_start = !s.persistent;
    c.keep_alive = if s.end == End::KeepAlive { 1 } else { 60 };
    if s.persistent && version.is_v5() {
        c.properties.session_expiry_interval = Some(EXPIRY_S);
    }
    if s.will {
        let mut will = Will {
            topic: TopicName::new(&format!("churn/will/{i}")).unwrap(),
            payload: Bytes::from_static(b"gone without a word"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
        };
        if s.persistent && version.is_v5() {
            will.properties.will_delay_interval = Some(WILL_DELAY_S);
        }
        c.will = Some(will);
    }
    c.into()
}

fn traffic(i: usize) -> Vec<Packet> {
    let pid = |n| PacketId::new(n).unwrap();
    let filter = |f: &str| TopicFilter::new(f).unwrap();
    let mut subscribe = Subscribe::new(
        pid(1),
        filter(&format!("churn/{i}/+")),
        SubscriptionOptions::new(QoS::AtLeastOnce),
    );
    for f in ["churn/will/#", "$share/g/churn/shared", "churn/retained/#"] {
        let mut more = Subscribe::new(
            pid(1),
            filter(f),
            SubscriptionOptions::new(QoS::AtLeastOnce),
        );
        subscribe.subscriptions.append(&mut more.subscriptions);
    }
    let publish = |n: u16, topic: String| {
        Packet::from(Publish::new(
            TopicName::new(&topic).unwrap(),
            QosPid::AtLeastOnce(pid(n)),
            Bytes::from_static(&[0x5a; 32]),
        ))
    };
    vec![
        subscribe.into(),
        publish(2, format!("churn/{}/x", (i + 1) % CLIENTS)),
        publish(3, "churn/shared".into()),
    ]
}

/// Connects client `i` on connection `id`: CONNECT, then its traffic.
fn start(d: &mut Driver, s: &Scenario, i: usize, id: ConnectionId) {
    if matches!(s.end, End::NoConnect | End::ConnectTimeout) {
        return;
    }
    let version = version_of(s, i);
    d.feed(id, version, &[connect(s, i)]);
    if s.traffic {
        d.feed(id, version, &traffic(i));
    }
}

/// Ends client `i`'s connection `id`.
fn end(d: &mut Driver, s: &Scenario, i: usize, id: ConnectionId) {
    let version = version_of(s, i);
    match s.end {
        End::Disconnect => {
            d.feed(id, version, &[Disconnect::new(ReasonCode::Success).into()]);
            d.broker.handle_closed(d.now, id);
            d.drain();
        }
        End::Lost | End::NoConnect => {
            d.broker.handle_closed(d.now, id);
            d.drain();
        }
        End::KeepAlive | End::ConnectTimeout => {}
        End::ProtocolError => d.feed(id, version, &[connect(s, i)]),
        End::Takeover => {
            let second = d.broker.open(d.now).unwrap();
            d.feed(second, version, &[connect(s, i)]);
            d.feed(
                second,
                version,
                &[Disconnect::new(ReasonCode::Success).into()],
            );
            d.broker.handle_closed(d.now, second);
            // The first connection's transport goes after the broker closed it.
            d.broker.handle_closed(d.now, id);
            d.drain();
        }
    }
}

fn round(d: &mut Driver, s: &Scenario) {
    if s.concurrent {
        let ids: Vec<ConnectionId> = (0..CLIENTS)
            .map(|i| {
                let id = d.broker.open(d.now).unwrap();
                start(d, s, i, id);
                id
            })
            .collect();
        for (i, id) in ids.into_iter().enumerate() {
            end(d, s, i, id);
        }
    } else {
        for i in 0..CLIENTS {
            let id = d.broker.open(d.now).unwrap();
            start(d, s, i, id);
            end(d, s, i, id);
        }
    }
    // Keep-alive and CONNECT timeouts, then will delays and session expiry.
    d.advance(Duration::from_secs(2));
    d.advance(Duration::from_secs(60));
    assert_eq!(
        d.broker.stats().connections,
        0,
        "{}: connections left",
        s.name
    );
}

/// Runs `s` for 1 + `ROUNDS` rounds; returns the bytes held after each, relative to the new
/// broker.
fn run(s: &Scenario) -> Vec<isize> {
    let mut d = Driver::new();
    d.out = BytesMut::new();
    let fresh = held();
    let mut after = Vec::new();
    for r in 0..=ROUNDS {
        round(&mut d, s);
        let stats = d.broker.stats();
        // Only MQTT 3.1.1 persistent sessions outlive the round (they never expire).
        let kept = if s.persistent && !s.v5_only && s.end != End::NoConnect {
            (0..CLIENTS).filter(|&i| !version_of(s, i).is_v5()).count()
        } else {
            0
        };
        assert_eq!(stats.sessions, kept, "{}: sessions after round {r}", s.name);
        if kept == 0 {
            assert_eq!(stats.subscriptions, 0, "{}: subscriptions", s.name);
        }
        // The driver's output buffer is not the broker's: it goes before the count (its
        // room grew to the largest drain, wills for a thousand subscribers at once).
        d.out = BytesMut::new();
        after.push(held() - fresh);
    }
    let expected_connects = match s.end {
        End::NoConnect | End::ConnectTimeout => 0,
        End::Takeover => 2 * CLIENTS,
        _ => CLIENTS,
    };
    assert_eq!(d.connected, expected_connects * (ROUNDS + 1), "{}", s.name);
    let expected_closes = match s.end {
        End::Takeover => 2 * CLIENTS,
        _ => CLIENTS,
    };
    assert_eq!(d.closed, expected_closes * (ROUNDS + 1), "{}", s.name);
    if s.will && matches!(s.end, End::Lost | End::KeepAlive) {
        assert_eq!(
            d.broker.stats().wills_published,
            (CLIENTS * (ROUNDS + 1)) as u64,
            "{}: wills",
            s.name
        );
    }
    after
}

const SCENARIOS: &[Scenario] = &[
    Scenario::new("clean, DISCONNECT, one at a time", End::Disconnect),
    Scenario::new("clean, DISCONNECT, all at once", End::Disconnect).concurrent(),
    Scenario::new("clean, busy, DISCONNECT, all at once", End::Disconnect)
        .busy()
        .concurrent(),
    Scenario::new("clean, busy, transport lost, one at a time", End::Lost).busy(),
    Scenario::new("clean, busy, transport lost, all at once", End::Lost)
        .busy()
        .concurrent(),
    Scenario::new(
        "clean, busy, keep-alive timeout, all at once",
        End::KeepAlive,
    )
    .busy()
    .concurrent(),
    Scenario::new("no CONNECT, transport lost, all at once", End::NoConnect).concurrent(),
    Scenario::new(
        "no CONNECT, CONNECT timeout, all at once",
        End::ConnectTimeout,
    )
    .concurrent(),
    Scenario::new(
        "clean, busy, protocol error, all at once",
        End::ProtocolError,
    )
    .busy()
    .concurrent(),
    Scenario::new("clean, busy, takeover, one at a time", End::Takeover).busy(),
    Scenario::new(
        "persistent 5.0, busy, transport lost, all at once",
        End::Lost,
    )
    .persistent()
    .v5_only()
    .busy()
    .concurrent(),
    Scenario::new(
        "persistent 5.0, busy, takeover, one at a time",
        End::Takeover,
    )
    .persistent()
    .v5_only()
    .busy(),
    Scenario::new(
        "persistent 3.1.1 + 5.0, busy, DISCONNECT, all at once",
        End::Disconnect,
    )
    .persistent()
    .busy()
    .concurrent(),
];

#[test]
fn connect_close_rounds_give_every_byte_back() {
    let mut failures = Vec::new();
    for s in SCENARIOS {
        let after = run(s);
        println!("{:<58} held after each round (bytes): {after:?}", s.name);
        let kept = s.persistent && !s.v5_only;
        if !kept && after[0] > FIRST_ROUND_SLACK {
            failures.push(format!(
                "{}: {} bytes held after the first round of {CLIENTS} clients",
                s.name, after[0]
            ));
        }
        // Sessions that never expire hold their state; from the second round on (the first
        // to resume them, with messages queued while they were away) it must stay the same.
        let (reference, slack) = if kept {
            (1, KEPT_SLACK)
        } else {
            (0, ROUND_SLACK)
        };
        for (r, &h) in after.iter().enumerate().skip(reference + 1) {
            if (h - after[reference]).abs() > slack {
                failures.push(format!(
                    "{}: round {r} holds {h} bytes, round {reference} {}",
                    s.name, after[reference]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
