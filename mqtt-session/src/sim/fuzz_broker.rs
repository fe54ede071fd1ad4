//! The broker fuzz driver: hostile and well-behaved clients, many at once, against one
//! [`Broker`], with a reference model of what an acknowledged message owes its subscribers.
//!
//! [`check_broker`] is what `fuzz/fuzz_targets/broker.rs` and `tests/fuzz_corpus.rs` call (run
//! it on a thread of [`STACK_SIZE`] bytes); [`check_broker_with_heap`] also bounds the heap
//! (see [`heap_budget`]) when the caller has a counting allocator.
//!
//! # Input format
//!
//! Byte 0 picks the hooks ([`FuzzHooks`]: bit 0 enhanced authentication, bit 1 refuse client
//! ids `c1*`, bit 2 refuse publishes to topics whose first level is `x`, bit 3 refuse
//! subscriptions to filters starting with `+`, bit 4 refuse delivering messages of topics of
//! an odd length to clients whose id ends with an odd byte) and bit 7 the end (clear: close everything and
//! reconnect every session to drain it, then check the model; set: close everything and drop
//! the broker with its sessions, the model unchecked). Byte 1 picks the configuration (bit 0
//! queues of 2 instead of 8, bit 1 in-flight window 1 instead of 4, bit 2 topic aliases
//! towards clients, bit 3 QoS 0 queued offline, bit 4 Maximum QoS 1, bit 5 a 4 KiB inbound
//! packet limit instead of 1 MiB). Then operations, each an opcode byte and its arguments,
//! until the input ends (missing bytes read as 0):
//!
//! | op (byte % 16) | what |
//! | --- | --- |
//! | 0 | open one connection and CONNECT: name, flags (version, clean start, will, enhanced AUTH and its answer, small Maximum Packet Size, silent), session expiry, and for a will its topic, QoS/retain, delay and message expiry |
//! | 1 | open **many** connections in one step: a count byte (`< 128`: 1..=16, else up to 2,000, quadratically), flags (version, small Maximum Packet Size, named `m{i}` or anonymous, silent, session expiry, subscribe) and, when they subscribe, one filter and its QoS, all pipelined after their CONNECTs |
//! | 2 | SUBSCRIBE a connection to a generated filter (options: QoS, No Local, Retain As Published, Retain Handling, a subscription identifier) |
//! | 3 | UNSUBSCRIBE a known or a generated filter |
//! | 4, 5 | PUBLISH from a connection: topic (generated, instantiated from a known filter, or a known topic), QoS, RETAIN, topic alias use, a QoS 2 re-send with DUP, payload size (up to 64 KiB), Message Expiry Interval |
//! | 6 | [`Broker::publish`] |
//! | 7 | up to 64 raw bytes to a connection (its session model is no longer trusted) |
//! | 8 | the clock moves (milliseconds to days) |
//! | 9 | a transport is lost ([`Broker::handle_closed`]) |
//! | 10 | DISCONNECT from a client (normal or with will, a new Session Expiry Interval) |
//! | 11 | [`Broker::shutdown`] |
//! | 12 | AUTH from a client (continue or re-authenticate, good or bad data) |
//! | 13 | the broker is formatted with `Debug` (into a sink) |
//! | 14 | a connection stops or starts answering the PUBLISHes it receives |
//! | 15 | a connection takes over another's client id |
//!
//! Topics and filters come from three bytes (`Input::levels`): a level count (`< 128`:
//! 1..=16, else up to 20,000 levels, quadratically), a pattern (kinds of even and odd levels among
//! empty, `a`, a short literal, `+`; a trailing `#`; a `$share/g/` or `$share/h/` prefix), and a
//! first level (`$SYS`, `$x`, `x`, or as generated). So a handful of bytes reach the largest
//! filters a 64 KiB string can hold.
//!
//! Clients stop sending once 8 MiB have been fed to the broker (a time budget per input).
//!
//! Each step feeds every connection's pending bytes (one connection at a time, its output
//! decoded and answered at once: PUBACK, PUBREC/PUBREL/PUBCOMP, AUTH), fires due timers, and
//! repeats until nothing moves.
//!
//! # Invariants
//!
//! - No panic (and, on a [`STACK_SIZE`] stack, no stack overflow).
//! - Everything the broker transmits decodes, in whole packets, as the connection's version.
//! - `stats().connections <= max_connections`, `stats().retained <= max_retained_messages`.
//! - With a heap probe, after every operation: heap held <= [`heap_budget`].
//! - At the end (bit 7 of byte 0 clear): every connection closed, the clock moved past every
//!   Session Expiry and Will Delay Interval the input could set, every named session reconnected
//!   (MQTT 5, clean start 0, Session Expiry 0) and drained, and the clock moved past again;
//!   then no connection, session or subscription is left, and the reference model holds.
//!
//! # The reference model
//!
//! The model follows each session (by client id) from what the broker said to its
//! connections: a CONNACK with Session Present 0 empties its subscriptions; a SUBACK adds the
//! granted ones; an UNSUBSCRIBE removes its filters when sent. A session is *live* while a
//! connection that got a successful CONNACK for it has not been closed. A connection counts as
//! closed from the broker's output that reports it closed: the driver takes the broker's
//! events before the packets of each output, because one broker call may close a subscriber,
//! end its session (which discards what the session was owed) and only then acknowledge a
//! publisher whose message was held back for that subscriber; the acknowledgement comes after
//! the session ended and owes it nothing. Its model is dropped
//! for good (*tainted*) once raw bytes went to one of its connections, and sessions the end
//! cannot reconnect (MQTT 3.x with an empty client id) are never counted.
//!
//! A message is *tracked* when it is QoS 1 or 2, has a payload (which carries its serial
//! number), its topic does not start with `$` (the broker may treat those specially), and either a client published it and got a PUBACK or PUBREC
//! with a reason code below 0x80 (for MQTT 3.x, also one the hooks allowed), or it went in
//! through [`Broker::publish`]. At that moment it is owed to
//! - each live, untainted session with a subscription granted at QoS 1 or 2 whose filter
//!   matches the topic (not the publisher's own with No Local) and that the hooks let read it,
//!   once; and
//! - each shared subscription (`$share/{g}/{f}`) granted at QoS 1 or 2 to a live, untainted
//!   session, once to any session that ever joined that group.
//!
//! A client's message is owed only where it was owed by the same rule when the client sent
//! it too, to sessions whose subscriptions did not change in between (no UNSUBSCRIBE, no
//! subscription replaced, no new session). The broker routes a message when it reads it (or,
//! held back behind its publisher's earlier messages, when its turn comes) but acknowledges it
//! only once every subscriber it was routed to has it: a subscription made meanwhile is not
//! owed the message. A held-back copy still owed to a subscriber whose session ends (expiry,
//! Clean Start) is dropped with that session and counted in `dropped_session_ended`.
//!
//! Every delivery a client receives is recorded by the serial number in the first four payload
//! bytes. At the end, the owed deliveries that never arrived must not outnumber the messages
//! the broker counted as dropped (`dropped_queue_full + dropped_too_large + dropped_expired +
//! dropped_session_ended + deliveries_unauthorized`): the broker may lose a message only where
//! it says so. While the hooks refuse deliveries, no session they refuse receives such a
//! message. And no
//! session receives a tracked QoS 2 message that was not retained twice as a new delivery (a
//! re-sent PUBLISH of a packet id still awaiting PUBREL is not new), unless it was ever in a
//! shared group or connected with MQTT 3.1 (whose CONNACK cannot say Session Present). Wills
//! and retained deliveries at subscribe are received but owed to no one.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::num::{NonZeroU16, NonZeroU32};
use core::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    topic_matches, Auth, AuthProperties, Connect, Decoder, Disconnect, MqttString, Packet,
    PacketId, ProtocolVersion, PubResponse, Publish, QoS, QosPid, ReasonCode, RetainHandling,
    Subscribe, SubscriptionId, SubscriptionOptions, TopicFilter, TopicName, Unsubscribe,
    UnsubscribeProperties, Will, WillProperties,
};

use super::input::Input;
use crate::broker::{
    AuthDecision, Broker, BrokerConfig, BrokerEvent, BrokerHooks, BrokerStats, ClientInfo,
    ConnectionId,
};
use crate::message::Message;
use crate::server::ServerConfig;
use crate::time::Instant;

/// The stack the fuzz target and the corpus replay run each input on: 512 KiB.
pub const STACK_SIZE: usize = 512 * 1024;

/// K: heap bytes allowed per byte fed to the broker (every byte the driver wrote for it).
/// The topic trie of today's broker keeps about 90 bytes per (one byte) empty level, which this
/// catches; a level of one letter (2 bytes fed) stays just under it.
pub const HEAP_PER_BYTE_FED: usize = 64;
/// Heap bytes allowed per open connection and per session (the session machine, its queues
/// of at most 8 + 4 messages, the record, and the driver's own state for the connection).
pub const HEAP_PER_CONNECTION: usize = 16 * 1024;
/// Heap bytes allowed per subscription beyond its filter's bytes (counted as fed).
pub const HEAP_PER_SUBSCRIPTION: usize = 1024;
/// Heap bytes allowed per retained message beyond its bytes (counted as fed).
pub const HEAP_PER_RETAINED: usize = 1024;
/// C: heap bytes allowed whatever the input.
pub const HEAP_BASE: usize = 256 * 1024;

/// The most heap the broker and the driver may hold after `fed` bytes were fed to a broker in
/// state `stats`: `C + K x fed + 16 KiB x (connections + sessions) + 1 KiB x (subscriptions +
/// retained)`. The reference model's own records are not counted.
pub fn heap_budget(fed: usize, stats: &BrokerStats) -> usize {
    HEAP_BASE
        .saturating_add(HEAP_PER_BYTE_FED.saturating_mul(fed))
        .saturating_add(HEAP_PER_CONNECTION.saturating_mul(stats.connections + stats.sessions))
        .saturating_add(HEAP_PER_SUBSCRIPTION.saturating_mul(stats.subscriptions))
        .saturating_add(HEAP_PER_RETAINED.saturating_mul(stats.retained))
}

/// Most levels a generated topic or filter has.
const MAX_LEVELS: usize = 20_000;
/// Most connections one "open many" operation opens.
const MAX_MANY: usize = 2_000;
/// `max_connections` of the fuzzed broker.
const MAX_CONNECTIONS: usize = 2_100;
const MAX_RETAINED: usize = 16;
/// Bytes fed to the broker after which clients send nothing more (CONNECTs and answers
/// included), so that one input stays within a fuzzing time budget: 2,000 clients subscribing
/// to one 40 KB filter would otherwise feed 80 MB.
const MAX_FED: usize = 8 * 1024 * 1024;
/// Small Maximum Packet Size a client may announce.
const SMALL_PACKET: u32 = 64;
/// Past every Session Expiry and Will Delay Interval the driver sets (at most a day), and
/// every Message Expiry Interval.
const END_OF_TIME: Duration = Duration::from_secs(200_000);

/// Drives a [`Broker`] with the input (see the module docs); panics if an invariant breaks.
pub fn check_broker(data: &[u8]) {
    Driver::new(data, None).run();
}

/// [`check_broker`], and after every operation checks that the heap held since the start
/// (`heap()` minus its value at the start, minus the reference model's own records) is at most
/// [`heap_budget`]. `heap()` returns the bytes the process holds now (a counting allocator).
pub fn check_broker_with_heap(data: &[u8], heap: &dyn Fn() -> usize) {
    Driver::new(data, Some(heap)).run();
}

// ----- hooks -----

/// The broker's hooks in the fuzzer: each bit of the mode turns on one refusal.
#[derive(Clone, Copy, Debug, Default)]
pub struct FuzzHooks {
    /// Bit 0: enhanced authentication with method `fuzz` (data `ok` passes); bit 1: client ids
    /// starting with `c1` are refused; bit 2: publishes to topics whose first level is `x` are
    /// refused; bit 3: subscriptions to filters starting with `+` are refused; bit 4: messages
    /// of topics of an odd length are not delivered to clients whose id ends with an odd
    /// byte.
    pub mode: u8,
}

impl FuzzHooks {
    fn allows_publish(self, topic: &str) -> bool {
        self.mode & 4 == 0 || !(topic == "x" || topic.starts_with("x/"))
    }

    fn allows_delivery(self, client_id: &str, topic: &str) -> bool {
        let odd = |s: &str| s.as_bytes().last().is_some_and(|b| b % 2 == 1);
        self.mode & 16 == 0 || !(odd(client_id) && topic.len() % 2 == 1)
    }
}

impl BrokerHooks for FuzzHooks {
    fn authenticate(&mut self, connect: &Connect) -> AuthDecision {
        if self.mode & 2 != 0 && connect.client_id.as_str().starts_with("c1") {
            return AuthDecision::Reject(ReasonCode::NotAuthorized);
        }
        match &connect.properties.authentication_method {
            Some(method) if self.mode & 1 != 0 => {
                if method.as_str() == "fuzz" {
                    AuthDecision::Continue(AuthProperties {
                        authentication_method: Some(method.clone()),
                        authentication_data: Some(Bytes::from_static(b"challenge")),
                        ..AuthProperties::default()
                    })
                } else {
                    AuthDecision::Reject(ReasonCode::BadAuthenticationMethod)
                }
            }
            _ => AuthDecision::Accept,
        }
    }

    fn continue_authentication(&mut self, _client_id: &str, auth: &Auth) -> AuthDecision {
        if auth.properties.authentication_data.as_deref() == Some(b"ok".as_slice()) {
            AuthDecision::Accept
        } else {
            AuthDecision::Reject(ReasonCode::NotAuthorized)
        }
    }

    fn authorize_publish(&mut self, _client_id: &str, topic: &TopicName) -> bool {
        self.allows_publish(topic.as_str())
    }

    fn authorize_subscribe(&mut self, _client_id: &str, filter: &TopicFilter) -> bool {
        self.mode & 8 == 0 || !filter.as_str().starts_with('+')
    }

    const CHECKS_DELIVERY: bool = true;

    fn authorize_delivery(&mut self, subscriber: &ClientInfo<'_>, topic: &TopicName) -> bool {
        self.allows_delivery(subscriber.client_id, topic.as_str())
    }
}

// ----- input -----

impl<'a> Input<'a> {
    /// A count from one byte: below 128, 1..=16; from 128, 1..=`max` growing with the square
    /// of `b - 128` (so that hundreds, cheap to run, are as reachable as the maximum).
    fn count(&mut self, max: usize) -> usize {
        let b = usize::from(self.byte());
        if b < 128 {
            b % 16 + 1
        } else {
            1 + (b - 128) * (b - 128) * (max - 1) / (127 * 127)
        }
    }

    /// Topic levels joined by `/`, from three bytes (see the module docs). `wildcards` allows
    /// `+`, a trailing `#` and a `$share/` prefix.
    fn levels(&mut self, wildcards: bool) -> String {
        let count = self.count(MAX_LEVELS);
        let pattern = self.byte();
        let first = self.byte();
        let kind = |i: usize| {
            let k = if i % 2 == 0 {
                pattern & 3
            } else {
                (pattern >> 2) & 3
            };
            match k {
                0 => "",
                1 => "a",
                2 => ["b", "cd", "a"][i % 3],
                _ if wildcards => "+",
                _ => "a",
            }
        };
        let mut s = String::new();
        if wildcards && pattern & 0x20 != 0 {
            s.push_str(if pattern & 0x40 != 0 {
                "$share/h/"
            } else {
                "$share/g/"
            });
        }
        for i in 0..count {
            if i > 0 {
                s.push('/');
            }
            s.push_str(match (i, first % 8) {
                (0, 1) => "$SYS",
                (0, 2) => "$x",
                (0, 3) => "x",
                _ => kind(i),
            });
        }
        if wildcards && pattern & 0x10 != 0 {
            s.push_str("/#");
        }
        if pattern & 0x80 != 0 && count == 1 && wildcards {
            // A bare wildcard filter.
            s = String::from(if pattern & 1 != 0 { "#" } else { "+" });
        }
        s
    }
}

// ----- model and driver state -----

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ConnState {
    /// CONNECT sent, no successful CONNACK yet.
    Connecting,
    /// Connected.
    Live,
    /// The broker closed it (or its transport was lost).
    Gone,
}

struct PendingPublish {
    pid: u16,
    serial: u32,
    topic: Option<TopicName>,
    qos: QoS,
    retain: bool,
    /// What it would owe when sent (see `Owed`): it owes at most this at its
    /// acknowledgement.
    owed_at_send: Owed,
}

/// The deliveries a message owes: sessions (with their `epoch`) and shared filters.
#[derive(Default)]
struct Owed {
    direct: Vec<(u32, u32)>,
    groups: Vec<u32>,
}

struct PendingSubscribe {
    pid: u16,
    filters: Vec<(u32, SubscriptionOptions)>,
}

/// One connection, seen from its client.
struct Conn {
    id: ConnectionId,
    version: ProtocolVersion,
    /// Bytes for the broker, fed at the next turn.
    rx: BytesMut,
    /// The model session, once known (named clients at once, anonymous ones at CONNACK).
    key: usize,
    state: ConnState,
    /// The broker reported closing it in the output being handled: its session no longer
    /// counts it as live (see `drain_output`), though what it was sent is still read.
    closing: bool,
    /// Answers PUBLISH with PUBACK / PUBREC and PUBREL with PUBCOMP.
    acks: bool,
    /// Enhanced authentication: whether it answers the challenge with `ok`.
    auth_ok: bool,
    clean_start: bool,
    tainted: bool,
    next_pid: u16,
    publishes: Vec<PendingPublish>,
    subscribes: Vec<PendingSubscribe>,
    /// Topic aliases it set towards the broker (alias 1..=4).
    aliases: [Option<TopicName>; 4],
}

#[derive(Clone, Copy)]
struct ModelSub {
    filter: u32,
    qos: QoS,
    no_local: bool,
}

/// One session (one client id) in the model.
#[derive(Default)]
struct Session {
    /// The client id to reconnect with at the end; `None` when it cannot be reconnected.
    name: Option<MqttString>,
    subs: Vec<ModelSub>,
    /// Shared filters it was ever granted.
    shared_ever: Vec<u32>,
    /// QoS 2 packet ids received and awaiting PUBREL (the client's side of the session).
    awaiting_rel: Vec<u16>,
    ever_v31: bool,
    ever_shared: bool,
    tainted: bool,
    /// A connection used it: the end reconnects it.
    used: bool,
    live: u32,
    /// Bumped whenever it loses or changes a subscription (UNSUBSCRIBE, a SUBACK replacing
    /// one, a new session): a message owed to it when sent and when acknowledged is owed only
    /// if its subscriptions stayed in between.
    epoch: u32,
}

struct Tracked {
    serial: u32,
    qos: QoS,
    retain: bool,
    direct: Vec<u32>,
    groups: Vec<u32>,
}

/// One received PUBLISH: serial, session, whether it counts as a new QoS 2 delivery.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Receipt {
    serial: u32,
    key: u32,
    new_qos2: bool,
    retain: bool,
}

struct Sink(usize);

impl fmt::Write for Sink {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

struct Driver<'a, 'h> {
    input: Input<'a>,
    heap: Option<&'h dyn Fn() -> usize>,
    heap_start: usize,
    broker: Broker<FuzzHooks>,
    hooks: FuzzHooks,
    drain_at_end: bool,
    now: Instant,
    conns: Vec<Conn>,
    sessions: Vec<Session>,
    /// Named client ids (`c0`..`c15` are 0..16, `m0`..`m1999` are 16..2016) to their
    /// sessions; anonymous clients get sessions of their own.
    named: BTreeMap<usize, usize>,
    filters: Vec<TopicFilter>,
    topics: Vec<TopicName>,
    tracked: Vec<Tracked>,
    receipts: Vec<Receipt>,
    next_serial: u32,
    fed: usize,
    /// `MAX_FED` while the input runs; lifted for the end's reconnections.
    fed_limit: usize,
    tx: BytesMut,
    /// Names of "open many" clients are `m{n}` from this counter on (wrapping at 2,000: a
    /// second batch takes the first one's sessions over).
    many_next: usize,
}

impl<'a, 'h> Driver<'a, 'h> {
    fn new(data: &'a [u8], heap: Option<&'h dyn Fn() -> usize>) -> Self {
        let heap_start = heap.map_or(0, |h| h());
        let mut input = Input { data };
        let hooks_byte = input.byte();
        let config_byte = input.byte();
        let hooks = FuzzHooks {
            mode: hooks_byte & 0x1f,
        };
        let config = BrokerConfig {
            server: ServerConfig {
                receive_maximum: 8,
                max_packet_size: if config_byte & 0x20 != 0 {
                    4096
                } else {
                    1024 * 1024
                },
                topic_alias_maximum: 4,
                maximum_qos: if config_byte & 0x10 != 0 {
                    QoS::AtLeastOnce
                } else {
                    QoS::ExactlyOnce
                },
                auto_topic_alias: config_byte & 4 != 0,
                max_inflight: if config_byte & 2 != 0 { 1 } else { 4 },
                max_queued: if config_byte & 1 != 0 { 2 } else { 8 },
                max_transmit_buffer: 256 * 1024,
                max_pending_requests: 4,
                ..ServerConfig::default()
            },
            max_connections: MAX_CONNECTIONS,
            max_subscriptions_per_session: 8,
            max_retained_messages: MAX_RETAINED,
            queue_qos0_offline: config_byte & 8 != 0,
            ..BrokerConfig::default()
        };
        Self {
            input,
            heap,
            heap_start,
            broker: Broker::with_hooks(config, hooks),
            hooks,
            drain_at_end: hooks_byte & 0x80 == 0,
            now: Instant::from_millis(0),
            conns: Vec::new(),
            sessions: Vec::new(),
            named: BTreeMap::new(),
            filters: Vec::new(),
            topics: Vec::new(),
            tracked: Vec::new(),
            receipts: Vec::new(),
            next_serial: 1,
            fed: 0,
            fed_limit: MAX_FED,
            tx: BytesMut::new(),
            many_next: 0,
        }
    }

    fn run(mut self) {
        while !self.input.is_empty() {
            self.step();
            self.turn();
            self.check_step();
        }
        self.finish();
    }

    // ----- operations -----

    fn step(&mut self) {
        let op = self.input.byte() % 16;
        match op {
            0 => self.op_connect(),
            1 => self.op_open_many(),
            2 => self.op_subscribe(),
            3 => self.op_unsubscribe(),
            4 | 5 => self.op_publish(),
            6 => self.op_broker_publish(),
            7 => {
                let i = self.pick();
                let bytes = self.input.bytes(64);
                if let Some(i) = i {
                    self.conns[i].tainted = true;
                    let key = self.conns[i].key;
                    self.sessions[key].tainted = true;
                    self.conns[i].rx.extend_from_slice(bytes);
                    self.fed += bytes.len();
                }
            }
            8 => {
                let b = self.input.byte();
                let step = match b % 4 {
                    0 => Duration::from_millis(u64::from(self.input.u16())),
                    1 => Duration::from_secs(u64::from(self.input.byte())),
                    2 => Duration::from_secs(u64::from(self.input.u16())),
                    _ => Duration::from_secs(86_400),
                };
                self.now = self.now + step;
            }
            9 => {
                if let Some(i) = self.pick() {
                    let id = self.conns[i].id;
                    self.broker.handle_closed(self.now, id);
                    self.drain_output();
                }
            }
            10 => self.op_disconnect(),
            11 => {
                self.broker.shutdown(self.now);
                self.drain_output();
            }
            12 => self.op_auth(),
            13 => {
                let mut sink = Sink(0);
                let _ = fmt::write(&mut sink, format_args!("{:?}", self.broker));
                assert!(sink.0 > 0);
            }
            14 => {
                if let Some(i) = self.pick() {
                    self.conns[i].acks = !self.conns[i].acks;
                }
            }
            _ => self.op_takeover(),
        }
    }

    /// The session of named client `n` (`c{n}` below 16, else `m{n - 16}`).
    fn named_session(&mut self, n: usize) -> usize {
        if let Some(&key) = self.named.get(&n) {
            return key;
        }
        let name = if n < 16 {
            format!("c{n}")
        } else {
            format!("m{}", n - 16)
        };
        self.sessions.push(Session {
            name: MqttString::new(&name).ok(),
            ..Session::default()
        });
        self.named.insert(n, self.sessions.len() - 1);
        self.sessions.len() - 1
    }

    /// A live or connecting connection chosen by the next byte.
    fn pick(&mut self) -> Option<usize> {
        let b = usize::from(self.input.u16());
        let open: usize = self
            .conns
            .iter()
            .filter(|c| c.state != ConnState::Gone)
            .count();
        if open == 0 {
            return None;
        }
        let n = b % open;
        self.conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.state != ConnState::Gone)
            .nth(n)
            .map(|(i, _)| i)
    }

    fn session_expiry(b: u8) -> Option<u32> {
        [
            None,
            Some(0),
            Some(1),
            Some(10),
            Some(300),
            Some(86_400),
            Some(u32::MAX),
            None,
        ][usize::from(b % 8)]
    }

    fn version(b: u8) -> ProtocolVersion {
        match b % 4 {
            0 | 1 => ProtocolVersion::V5,
            2 => ProtocolVersion::V3_1_1,
            _ => ProtocolVersion::V3_1,
        }
    }

    /// Opens a connection and queues its CONNECT; returns its index.
    fn open(
        &mut self,
        key: Option<usize>,
        connect: Connect,
        acks: bool,
        auth_ok: bool,
    ) -> Option<usize> {
        let id = self.broker.open(self.now).ok()?;
        self.drain_output();
        let key = key.unwrap_or_else(|| {
            // Anonymous: a session of its own; reconnectable only if the broker names it.
            self.sessions.push(Session::default());
            self.sessions.len() - 1
        });
        let version = connect.protocol;
        self.sessions[key].used = true;
        if version == ProtocolVersion::V3_1 {
            self.sessions[key].ever_v31 = true;
        }
        let clean_start = connect.clean_start;
        let mut rx = BytesMut::new();
        if self.fed <= self.fed_limit {
            let _ = Packet::from(connect).encode(version, &mut rx);
        }
        self.fed += rx.len();
        self.conns.push(Conn {
            id,
            version,
            rx,
            key,
            state: ConnState::Connecting,
            closing: false,
            acks,
            auth_ok,
            clean_start,
            tainted: false,
            next_pid: 1,
            publishes: Vec::new(),
            subscribes: Vec::new(),
            aliases: [None, None, None, None],
        });
        Some(self.conns.len() - 1)
    }

    fn op_connect(&mut self) {
        let name = usize::from(self.input.byte() % 20);
        let flags = self.input.byte();
        let expiry = self.input.byte();
        let version = Self::version(flags);
        let (key, client_id) = if name < 16 {
            let key = self.named_session(name);
            (
                Some(key),
                self.sessions[key].name.clone().unwrap_or_default(),
            )
        } else {
            (None, MqttString::default())
        };
        let mut connect = Connect::new(version, client_id);
        connect.clean_start = flags & 4 != 0;
        connect.keep_alive = u16::from(expiry >> 6) * 30;
        if version.is_v5() {
            connect.properties.session_expiry_interval = Self::session_expiry(expiry);
            if flags & 0x20 != 0 {
                connect.properties.maximum_packet_size = NonZeroU32::new(SMALL_PACKET);
            }
            if flags & 0x10 != 0 {
                connect.properties.authentication_method =
                    MqttString::new(if flags & 0x80 != 0 { "other" } else { "fuzz" }).ok();
            }
            connect.properties.topic_alias_maximum = Some(u16::from(expiry >> 6));
        }
        if flags & 8 != 0 {
            let topic = self.input.levels(false);
            let wflags = self.input.byte();
            let delay = self.input.byte();
            if let Ok(topic) = TopicName::new(&topic) {
                let serial = self.serial();
                let mut will = Will {
                    topic,
                    payload: self.payload(serial, wflags >> 4),
                    qos: QoS::from_u8((wflags & 3) % 3).unwrap_or_default(),
                    retain: wflags & 4 != 0,
                    properties: WillProperties::default(),
                };
                if version.is_v5() {
                    will.properties.will_delay_interval =
                        [None, Some(0), Some(5), Some(3600)][usize::from(delay % 4)];
                    will.properties.message_expiry_interval =
                        [None, Some(1), Some(100)][usize::from((delay >> 2) % 3)];
                }
                connect.will = Some(will);
            }
        }
        self.open(key, connect, flags & 0x40 == 0, flags & 0x80 == 0);
    }

    fn op_open_many(&mut self) {
        let count = self.input.count(MAX_MANY);
        let flags = self.input.byte();
        let version = Self::version(flags);
        let subscribe = flags & 0x80 != 0;
        let sub = if subscribe {
            let filter = self.input.levels(true);
            let qos = self.input.qos();
            self.intern_filter(&filter).map(|f| (f, qos))
        } else {
            None
        };
        let expiry = Self::session_expiry((flags >> 4) & 3);
        for _ in 0..count {
            let key = if flags & 8 != 0 {
                let n = self.many_next % MAX_MANY;
                self.many_next += 1;
                Some(self.named_session(16 + n))
            } else {
                None
            };
            let client_id = key
                .and_then(|k| self.sessions[k].name.clone())
                .unwrap_or_default();
            let mut connect = Connect::new(version, client_id);
            connect.clean_start = version.is_v5() || key.is_none() || flags & 0x40 != 0;
            if version.is_v5() {
                connect.properties.session_expiry_interval = expiry;
                if flags & 4 != 0 {
                    connect.properties.maximum_packet_size = NonZeroU32::new(SMALL_PACKET);
                }
            }
            let Some(i) = self.open(key, connect, flags & 0x40 == 0, true) else {
                break;
            };
            if let Some((filter, qos)) = sub {
                let options = SubscriptionOptions::new(qos);
                self.send_subscribe(i, alloc::vec![(filter, options)], None);
            }
        }
    }

    fn serial(&mut self) -> u32 {
        let s = self.next_serial;
        self.next_serial += 1;
        s
    }

    /// A payload carrying `serial`: empty for size 0, else 4 + size² bytes (up to 64 KiB).
    fn payload(&self, serial: u32, size: u8) -> Bytes {
        if size == 0 {
            return Bytes::new();
        }
        let n = 4 + usize::from(size) * usize::from(size);
        let mut v = alloc::vec![0u8; n];
        v[..4].copy_from_slice(&serial.to_be_bytes());
        Bytes::from(v)
    }

    fn intern_filter(&mut self, s: &str) -> Option<u32> {
        let filter = TopicFilter::new(s).ok()?;
        if let Some(i) = self.filters.iter().position(|f| f == &filter) {
            return Some(i as u32);
        }
        self.filters.push(filter);
        Some(self.filters.len() as u32 - 1)
    }

    fn next_pid(conn: &mut Conn) -> u16 {
        loop {
            let pid = conn.next_pid;
            conn.next_pid = conn.next_pid.checked_add(1).unwrap_or(1);
            if !conn.publishes.iter().any(|p| p.pid == pid)
                && !conn.subscribes.iter().any(|s| s.pid == pid)
            {
                return pid;
            }
        }
    }

    fn encode(&mut self, i: usize, packet: Packet) {
        if self.fed > self.fed_limit {
            return;
        }
        let conn = &mut self.conns[i];
        let before = conn.rx.len();
        let _ = packet.encode(conn.version, &mut conn.rx);
        self.fed += conn.rx.len() - before;
    }

    fn send_subscribe(
        &mut self,
        i: usize,
        filters: Vec<(u32, SubscriptionOptions)>,
        id: Option<SubscriptionId>,
    ) {
        let Some(&(first, first_options)) = filters.first() else {
            return;
        };
        let pid = Self::next_pid(&mut self.conns[i]);
        let mut subscribe = Subscribe::new(
            PacketId::new(pid).unwrap_or(PacketId::MIN),
            self.filters[first as usize].clone(),
            first_options,
        );
        subscribe.properties.subscription_identifier = id;
        for &(f, options) in &filters[1..] {
            subscribe
                .subscriptions
                .push(mqtt_streaming_proto::Subscription {
                    filter: self.filters[f as usize].clone(),
                    options,
                });
        }
        self.conns[i]
            .subscribes
            .push(PendingSubscribe { pid, filters });
        self.encode(i, Packet::Subscribe(subscribe));
    }

    fn op_subscribe(&mut self) {
        let i = self.pick();
        let filter = self.input.levels(true);
        let opts = self.input.byte();
        let (Some(i), Some(f)) = (i, self.intern_filter(&filter)) else {
            return;
        };
        let mut options =
            SubscriptionOptions::new(QoS::from_u8((opts & 3) % 3).unwrap_or_default());
        let shared = self.filters[f as usize].is_shared();
        options.no_local = opts & 4 != 0 && !shared;
        options.retain_as_published = opts & 8 != 0;
        options.retain_handling = match ((opts >> 4) & 3) % 3 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtSubscribeIfNew,
            _ => RetainHandling::DoNotSend,
        };
        let id = if opts & 0x80 != 0 && self.conns[i].version.is_v5() {
            SubscriptionId::new(u32::from(opts))
        } else {
            None
        };
        let mut filters = alloc::vec![(f, options)];
        if opts & 0x40 != 0 && !self.filters.is_empty() {
            // A second, known filter in the same SUBSCRIBE.
            let g = (usize::from(opts) % self.filters.len()) as u32;
            if g != f {
                filters.push((g, options));
            }
        }
        self.send_subscribe(i, filters, id);
    }

    fn op_unsubscribe(&mut self) {
        let i = self.pick();
        let which = self.input.byte();
        let f = if which & 1 == 0 && !self.filters.is_empty() {
            Some((usize::from(which >> 1) % self.filters.len()) as u32)
        } else {
            let s = self.input.levels(true);
            self.intern_filter(&s)
        };
        let (Some(i), Some(f)) = (i, f) else {
            return;
        };
        let pid = Self::next_pid(&mut self.conns[i]);
        // Removed from the model when sent: the model may only know less than the broker.
        let key = self.conns[i].key;
        self.sessions[key].subs.retain(|s| s.filter != f);
        self.sessions[key].epoch += 1;
        let unsubscribe = Unsubscribe {
            packet_id: PacketId::new(pid).unwrap_or(PacketId::MIN),
            filters: alloc::vec![self.filters[f as usize].clone()],
            properties: UnsubscribeProperties::default(),
        };
        self.encode(i, Packet::Unsubscribe(unsubscribe));
    }

    /// A topic: generated, instantiated from a known filter, or a known topic.
    fn topic(&mut self) -> Option<TopicName> {
        let how = self.input.byte();
        let name = match how % 4 {
            0 | 1 => self.input.levels(false),
            2 if !self.filters.is_empty() => {
                let f = &self.filters[usize::from(how >> 2) % self.filters.len()];
                let mut s = String::new();
                for (n, level) in f.filter().split('/').enumerate() {
                    if n > 0 {
                        s.push('/');
                    }
                    match level {
                        "+" => s.push('a'),
                        "#" => s.push('z'),
                        other => s.push_str(other),
                    }
                }
                if how & 0x80 != 0 && s.ends_with("/z") {
                    // `a/#` also matches `a`.
                    s.truncate(s.len() - 2);
                }
                s
            }
            _ if !self.topics.is_empty() => {
                return Some(self.topics[usize::from(how >> 2) % self.topics.len()].clone());
            }
            _ => self.input.levels(false),
        };
        let topic = TopicName::new(&name).ok()?;
        if self.topics.len() < 64 {
            self.topics.push(topic.clone());
        }
        Some(topic)
    }

    fn op_publish(&mut self) {
        let i = self.pick();
        let topic = self.topic();
        let flags = self.input.byte();
        let size = self.input.byte();
        let expiry = self.input.byte();
        let (Some(i), Some(topic)) = (i, topic) else {
            return;
        };
        let qos = QoS::from_u8((flags & 3) % 3).unwrap_or_default();
        let serial = self.serial();
        let payload = self.payload(serial, size);
        let pid = Self::next_pid(&mut self.conns[i]);
        let qos_pid = match qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            _ => QosPid::new(qos, PacketId::new(pid).unwrap_or(PacketId::MIN)),
        };
        let mut publish = Publish::new(topic.clone(), qos_pid, payload);
        publish.retain = flags & 4 != 0;
        let v5 = self.conns[i].version.is_v5();
        let mut known_topic = Some(topic.clone());
        if v5 {
            publish.properties.message_expiry_interval =
                [None, Some(1), Some(60)][usize::from(expiry % 3)];
            let alias = usize::from((flags >> 5) & 3);
            match (flags >> 3) & 3 {
                1 => {
                    // Set alias n.
                    publish.properties.topic_alias = NonZeroU16::new(alias as u16 + 1);
                    self.conns[i].aliases[alias] = Some(topic.clone());
                }
                2 => {
                    // Use alias n with an empty topic.
                    publish.properties.topic_alias = NonZeroU16::new(alias as u16 + 1);
                    publish.topic = TopicName::empty();
                    known_topic = self.conns[i].aliases[alias].clone();
                }
                _ => {}
            }
        }
        // An empty payload carries no serial: nothing to follow.
        if qos != QoS::AtMostOnce && size != 0 {
            let publisher = self.conns[i].key;
            let owed_at_send = known_topic
                .as_ref()
                .map(|t| self.owed(Some(publisher), t))
                .unwrap_or_default();
            self.conns[i].publishes.push(PendingPublish {
                pid,
                serial,
                topic: known_topic,
                qos,
                retain: publish.retain,
                owed_at_send,
            });
        }
        let resend = qos == QoS::ExactlyOnce && flags & 0x80 != 0;
        let again = publish.clone();
        self.encode(i, Packet::Publish(publish));
        if resend {
            let mut again = again;
            again.dup = true;
            self.encode(i, Packet::Publish(again));
        }
    }

    fn op_broker_publish(&mut self) {
        let topic = self.topic();
        let flags = self.input.byte();
        let size = self.input.byte();
        let Some(topic) = topic else {
            return;
        };
        let serial = self.serial();
        let qos = QoS::from_u8((flags & 3) % 3).unwrap_or_default();
        let mut message = Message::new(topic.clone(), qos, self.payload(serial, size));
        message.retain = flags & 4 != 0;
        // The broker keeps what it routes: count its bytes as fed.
        self.fed += topic.len() + message.payload.len();
        if qos != QoS::AtMostOnce && size != 0 {
            self.track(None, serial, &topic, qos, message.retain, None);
        }
        self.broker.publish(self.now, message);
        self.drain_output();
    }

    fn op_disconnect(&mut self) {
        let i = self.pick();
        let flags = self.input.byte();
        let Some(i) = i else {
            return;
        };
        let mut disconnect = Disconnect::new(if flags & 1 != 0 {
            ReasonCode::DisconnectWithWillMessage
        } else {
            ReasonCode::Success
        });
        if self.conns[i].version.is_v5() {
            disconnect.properties.session_expiry_interval = Self::session_expiry(flags >> 1);
        }
        self.encode(i, Packet::Disconnect(disconnect));
    }

    fn op_auth(&mut self) {
        let i = self.pick();
        let flags = self.input.byte();
        let Some(i) = i else {
            return;
        };
        if !self.conns[i].version.is_v5() {
            return;
        }
        let auth = Auth {
            reason_code: if flags & 1 != 0 {
                ReasonCode::ReAuthenticate
            } else {
                ReasonCode::ContinueAuthentication
            },
            properties: AuthProperties {
                authentication_method: MqttString::new("fuzz").ok(),
                authentication_data: Some(Bytes::from_static(if flags & 2 != 0 {
                    b"ok"
                } else {
                    b"no"
                })),
                ..AuthProperties::default()
            },
        };
        self.encode(i, Packet::Auth(auth));
    }

    fn op_takeover(&mut self) {
        let i = self.pick();
        let flags = self.input.byte();
        let Some(i) = i else {
            return;
        };
        let key = self.conns[i].key;
        let Some(name) = self.sessions[key].name.clone() else {
            return;
        };
        let version = Self::version(flags);
        let mut connect = Connect::new(version, name);
        connect.clean_start = flags & 4 != 0;
        if version.is_v5() {
            connect.properties.session_expiry_interval = Self::session_expiry(flags >> 3);
        }
        self.open(Some(key), connect, true, true);
    }

    // ----- turning the crank -----

    /// Feeds every connection its pending bytes until nothing moves, then fires due timers.
    fn turn(&mut self) {
        for _ in 0..32 {
            let mut moved = false;
            for i in 0..self.conns.len() {
                if self.conns[i].rx.is_empty() || self.conns[i].state == ConnState::Gone {
                    continue;
                }
                let id = self.conns[i].id;
                let mut rx = core::mem::take(&mut self.conns[i].rx);
                let before = rx.len();
                self.broker.handle_read(self.now, id, &mut rx);
                moved |= rx.len() != before;
                // Bytes answered while reading (acks) go after what is left.
                let answered = core::mem::replace(&mut self.conns[i].rx, rx);
                self.conns[i].rx.extend_from_slice(&answered);
                moved |= !answered.is_empty();
                self.drain_output();
            }
            self.broker.handle_timeout(self.now);
            self.drain_output();
            if !moved {
                break;
            }
        }
        self.conns.retain(|c| c.state != ConnState::Gone);
    }

    /// Takes every transmitted byte and event from the broker and lets the clients answer.
    ///
    /// The events come first: a connection the broker closed stops counting for its session's
    /// liveness before any packet of this output is handled (its own packets are still
    /// read). The broker may close a subscriber, end its session and acknowledge a publisher
    /// in one call (a held-back message is acknowledged once the subscriber it waited for is
    /// gone); the acknowledgement must not find that subscriber live.
    fn drain_output(&mut self) {
        let mut closed = Vec::new();
        while let Some(event) = self.broker.poll_event() {
            match event {
                BrokerEvent::Close { connection, .. } => {
                    if let Ok(i) = self.conns.binary_search_by_key(&connection, |c| c.id) {
                        self.closing(i);
                        closed.push(i);
                    }
                }
                // Every turn feeds each connection's pending bytes again until nothing moves,
                // so a connection the broker reads again is fed without being named here.
                BrokerEvent::Connected { .. } | BrokerEvent::ReadResumed { .. } => {}
            }
        }
        let mut tx = core::mem::take(&mut self.tx);
        while let Some(id) = self.broker.poll_transmit(self.now, &mut tx) {
            let i = self.conns.binary_search_by_key(&id, |c| c.id);
            let version = i.map_or(ProtocolVersion::V5, |i| self.conns[i].version);
            let decoder = Decoder::new(version);
            loop {
                match decoder.decode(&mut tx) {
                    Ok(Some(packet)) => {
                        if let Ok(i) = i {
                            self.on_packet(i, packet);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => panic!("the broker sent a malformed packet to {id:?}: {e}"),
                }
            }
            assert!(tx.is_empty(), "the broker sent a partial packet to {id:?}");
        }
        tx.clear();
        self.tx = tx;
        for i in closed {
            self.gone(i);
        }
        let stats = self.broker.stats();
        // Beyond `max_connections`, a few more are admitted only to be refused with a CONNACK.
        let refusing = BrokerConfig::default().max_refusing_connections;
        assert!(stats.connections <= MAX_CONNECTIONS + refusing, "{stats:?}");
        assert!(stats.retained <= MAX_RETAINED, "{stats:?}");
    }

    /// Connection `i` no longer counts for its session's liveness.
    fn closing(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        if conn.state == ConnState::Live && !conn.closing {
            let key = conn.key;
            self.sessions[key].live = self.sessions[key].live.saturating_sub(1);
        }
        conn.closing = true;
    }

    fn gone(&mut self, i: usize) {
        self.closing(i);
        let conn = &mut self.conns[i];
        conn.state = ConnState::Gone;
        conn.rx.clear();
        conn.publishes = Vec::new();
        conn.subscribes = Vec::new();
    }

    fn on_packet(&mut self, i: usize, packet: Packet) {
        if self.conns[i].state == ConnState::Gone {
            return;
        }
        match packet {
            Packet::ConnAck(connack) => {
                if connack.reason_code.is_error() || self.conns[i].state != ConnState::Connecting {
                    return;
                }
                let mut key = self.conns[i].key;
                if let Some(assigned) = &connack.properties.assigned_client_identifier {
                    self.sessions[key].name = Some(assigned.to_owned_compact());
                }
                if self.conns[i].tainted {
                    self.sessions[key].tainted = true;
                }
                if !connack.session_present {
                    self.sessions[key].subs.clear();
                    self.sessions[key].epoch += 1;
                }
                if self.conns[i].clean_start || !connack.session_present {
                    self.sessions[key].awaiting_rel.clear();
                }
                if self.sessions[key].name.is_none() {
                    // MQTT 3.x without a client id: cannot be reconnected at the end.
                    self.sessions[key].tainted = true;
                }
                key = self.conns[i].key;
                if !self.conns[i].closing {
                    self.sessions[key].live += 1;
                }
                self.conns[i].state = ConnState::Live;
            }
            Packet::Auth(auth) if auth.reason_code == ReasonCode::ContinueAuthentication => {
                let data: &'static [u8] = if self.conns[i].auth_ok { b"ok" } else { b"no" };
                let reply = Auth {
                    reason_code: ReasonCode::ContinueAuthentication,
                    properties: AuthProperties {
                        authentication_method: auth.properties.authentication_method,
                        authentication_data: Some(Bytes::from_static(data)),
                        ..AuthProperties::default()
                    },
                };
                self.encode(i, Packet::Auth(reply));
            }
            Packet::Publish(publish) => self.on_publish(i, publish),
            Packet::PubRel(rel) => {
                let key = self.conns[i].key;
                let pid = rel.packet_id.get();
                if self.conns[i].acks {
                    self.sessions[key].awaiting_rel.retain(|p| *p != pid);
                    self.encode(i, Packet::PubComp(PubResponse::new(rel.packet_id)));
                }
            }
            Packet::PubAck(ack) => self.on_ack(i, ack, QoS::AtLeastOnce),
            Packet::PubRec(ack) => {
                let id = ack.packet_id;
                self.on_ack(i, ack, QoS::ExactlyOnce);
                self.encode(i, Packet::PubRel(PubResponse::new(id)));
            }
            Packet::PubComp(_) => {}
            Packet::SubAck(suback) => {
                let pid = suback.packet_id.get();
                let Some(n) = self.conns[i].subscribes.iter().position(|s| s.pid == pid) else {
                    return;
                };
                let pending = self.conns[i].subscribes.swap_remove(n);
                let key = self.conns[i].key;
                if self.conns[i].tainted {
                    return;
                }
                for ((f, options), code) in pending.filters.iter().zip(&suback.reason_codes) {
                    let Some(qos) = code.granted_qos() else {
                        continue;
                    };
                    let session = &mut self.sessions[key];
                    let before = session.subs.len();
                    session.subs.retain(|s| s.filter != *f);
                    if session.subs.len() != before {
                        session.epoch += 1;
                    }
                    session.subs.push(ModelSub {
                        filter: *f,
                        qos,
                        no_local: options.no_local,
                    });
                    if self.filters[*f as usize].is_shared() {
                        session.ever_shared = true;
                        if !session.shared_ever.contains(f) {
                            session.shared_ever.push(*f);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn on_publish(&mut self, i: usize, publish: Publish) {
        let key = self.conns[i].key;
        let mut new_qos2 = false;
        match publish.qos_pid {
            QosPid::AtMostOnce => {}
            QosPid::AtLeastOnce(pid) => {
                if self.conns[i].acks {
                    self.encode(i, Packet::PubAck(PubResponse::new(pid)));
                }
            }
            QosPid::ExactlyOnce(pid) => {
                let session = &mut self.sessions[key];
                if !session.awaiting_rel.contains(&pid.get()) {
                    session.awaiting_rel.push(pid.get());
                    new_qos2 = true;
                }
                if self.conns[i].acks {
                    self.encode(i, Packet::PubRec(PubResponse::new(pid)));
                }
            }
        }
        if let Some(name) = &self.sessions[key].name {
            let topic = publish.topic.as_str();
            // An empty topic is a topic alias's: not known here.
            assert!(
                topic.is_empty()
                    || self
                        .broker
                        .hooks_mut()
                        .allows_delivery(name.as_str(), topic),
                "{topic} delivered to {name:?}, which the hooks do not let read it"
            );
        }
        if publish.payload.len() >= 4 {
            let mut b = [0u8; 4];
            b.copy_from_slice(&publish.payload[..4]);
            let serial = u32::from_be_bytes(b);
            self.receipts.push(Receipt {
                serial,
                key: key as u32,
                new_qos2,
                retain: publish.retain,
            });
        }
    }

    fn on_ack(&mut self, i: usize, ack: PubResponse, qos: QoS) {
        let pid = ack.packet_id.get();
        let Some(n) = self.conns[i]
            .publishes
            .iter()
            .position(|p| p.pid == pid && p.qos == qos)
        else {
            return;
        };
        let pending = self.conns[i].publishes.swap_remove(n);
        let conn = &self.conns[i];
        if conn.tainted || ack.reason_code.is_error() {
            return;
        }
        let Some(topic) = pending.topic else {
            return;
        };
        if !conn.version.is_v5() && !self.hooks.allows_publish(topic.as_str()) {
            return;
        }
        let publisher = conn.key;
        self.track(
            Some(publisher),
            pending.serial,
            &topic,
            qos,
            pending.retain,
            Some(&pending.owed_at_send),
        );
    }

    /// The message `serial` was accepted: records what it owes (see the module docs), at most
    /// `at_send` (what it owed when its publisher sent it) for a client's message.
    fn track(
        &mut self,
        publisher: Option<usize>,
        serial: u32,
        topic: &TopicName,
        qos: QoS,
        retain: bool,
        at_send: Option<&Owed>,
    ) {
        let mut owed = self.owed(publisher, topic);
        if let Some(at_send) = at_send {
            owed.direct.retain(|d| at_send.direct.contains(d));
            owed.groups.retain(|g| at_send.groups.contains(g));
        }
        if owed.direct.is_empty() && owed.groups.is_empty() {
            return;
        }
        self.tracked.push(Tracked {
            serial,
            qos,
            retain,
            direct: owed.direct.into_iter().map(|(key, _)| key).collect(),
            groups: owed.groups,
        });
    }

    /// What a message from `publisher` to `topic` owes now (see the module docs).
    fn owed(&self, publisher: Option<usize>, topic: &TopicName) -> Owed {
        let mut result = Owed::default();
        if topic.is_dollar() {
            return result;
        }
        let topic = topic.as_str();
        // 0 unknown, 1 no match, 2 match.
        let mut cache = alloc::vec![0u8; self.filters.len()];
        for (key, session) in self.sessions.iter().enumerate() {
            if session.live == 0 || session.tainted {
                continue;
            }
            let mut owed = false;
            for sub in &session.subs {
                if sub.qos == QoS::AtMostOnce {
                    continue;
                }
                let f = sub.filter as usize;
                if cache[f] == 0 {
                    cache[f] = 1 + u8::from(topic_matches(self.filters[f].filter(), topic));
                }
                if cache[f] != 2 {
                    continue;
                }
                if self.filters[f].is_shared() {
                    if !result.groups.contains(&sub.filter) {
                        result.groups.push(sub.filter);
                    }
                } else if !(sub.no_local && publisher == Some(key)) {
                    owed = true;
                }
            }
            let readable = session
                .name
                .as_ref()
                .is_none_or(|name| self.hooks.allows_delivery(name.as_str(), topic));
            if owed && readable {
                result.direct.push((key as u32, session.epoch));
            }
        }
        result
    }

    /// The reference model's own heap bytes (not charged to the broker).
    fn model_bytes(&self) -> usize {
        let tracked: usize = self
            .tracked
            .iter()
            .map(|t| (t.direct.capacity() + t.groups.capacity()) * 4)
            .sum();
        let sessions: usize = self
            .sessions
            .iter()
            .map(|s| {
                s.subs.capacity() * core::mem::size_of::<ModelSub>()
                    + (s.shared_ever.capacity() + s.awaiting_rel.capacity()) * 4
                    + s.name.as_ref().map_or(0, |n| n.len() + 64)
            })
            .sum();
        let filters: usize = self.filters.iter().map(|f| f.len() + 64).sum();
        let pending: usize = self
            .conns
            .iter()
            .flat_map(|c| &c.publishes)
            .map(|p| p.owed_at_send.direct.capacity() * 8 + p.owed_at_send.groups.capacity() * 4)
            .sum();
        let topics: usize = self.topics.iter().map(|t| t.len() + 64).sum();
        tracked
            + pending
            + sessions
            + self.named.len() * 64
            + filters
            + topics
            + self.tracked.capacity() * core::mem::size_of::<Tracked>()
            + self.receipts.capacity() * core::mem::size_of::<Receipt>()
            + self.sessions.capacity() * core::mem::size_of::<Session>()
            + self.filters.capacity() * core::mem::size_of::<TopicFilter>()
            + self.topics.capacity() * core::mem::size_of::<TopicName>()
    }

    fn check_step(&mut self) {
        let Some(heap) = self.heap else {
            return;
        };
        let held = heap().saturating_sub(self.heap_start);
        let stats = self.broker.stats();
        let own = self.model_bytes();
        let budget = heap_budget(self.fed, &stats);
        assert!(
            held.saturating_sub(own) <= budget,
            "heap held {held} B (model {own} B) > budget {budget} B after {} B fed ({stats:?})",
            self.fed
        );
    }

    // ----- the end -----

    fn finish(mut self) {
        // Close every connection.
        let ids: Vec<ConnectionId> = self
            .conns
            .iter()
            .filter(|c| c.state != ConnState::Gone)
            .map(|c| c.id)
            .collect();
        for id in ids {
            self.broker.handle_closed(self.now, id);
            self.drain_output();
        }
        self.conns.clear();
        // Past every expiry and will delay.
        self.now = self.now + END_OF_TIME;
        self.broker.handle_timeout(self.now);
        self.drain_output();
        self.check_step();
        if !self.drain_at_end {
            // The broker is dropped with whatever sessions never expire.
            return;
        }
        // Every session that can be named is reconnected, drained and ended.
        self.broker.hooks_mut().mode = 0;
        self.fed_limit = usize::MAX;
        for key in 0..self.sessions.len() {
            let Some(name) = self.sessions[key]
                .name
                .clone()
                .filter(|_| self.sessions[key].used)
            else {
                continue;
            };
            let mut connect = Connect::new(ProtocolVersion::V5, name);
            connect.clean_start = false;
            connect.properties.session_expiry_interval = Some(0);
            let Some(i) = self.open(Some(key), connect, true, true) else {
                continue;
            };
            self.turn_one(i);
            if self
                .conns
                .get(i)
                .is_some_and(|c| c.state == ConnState::Live)
            {
                self.encode(i, Packet::Disconnect(Disconnect::new(ReasonCode::Success)));
                self.turn_one(i);
            }
            if let Some(id) = self
                .conns
                .get(i)
                .filter(|c| c.state != ConnState::Gone)
                .map(|c| c.id)
            {
                self.broker.handle_closed(self.now, id);
                self.drain_output();
            }
            self.conns.clear();
        }
        self.now = self.now + END_OF_TIME;
        self.broker.handle_timeout(self.now);
        self.drain_output();
        let stats = self.broker.stats();
        assert_eq!(stats.connections, 0, "connections left: {stats:?}");
        assert_eq!(stats.sessions, 0, "sessions left: {stats:?}");
        assert_eq!(stats.subscriptions, 0, "subscriptions left: {stats:?}");
        self.check_model(&stats);
    }

    /// Feeds connection `i` until it has nothing more to say.
    fn turn_one(&mut self, i: usize) {
        for _ in 0..1000 {
            let Some(conn) = self.conns.get_mut(i) else {
                return;
            };
            if conn.rx.is_empty() || conn.state == ConnState::Gone {
                return;
            }
            let id = conn.id;
            let mut rx = core::mem::take(&mut conn.rx);
            let before = rx.len();
            self.broker.handle_read(self.now, id, &mut rx);
            let moved = rx.len() != before;
            let answered = core::mem::replace(&mut self.conns[i].rx, rx);
            self.conns[i].rx.extend_from_slice(&answered);
            self.drain_output();
            if !moved && answered.is_empty() {
                return;
            }
        }
    }

    fn check_model(&mut self, stats: &BrokerStats) {
        let mut receipts = core::mem::take(&mut self.receipts);
        receipts.sort_unstable();
        let received = |serial: u32| {
            let start = receipts.partition_point(|r| r.serial < serial);
            let end = receipts.partition_point(|r| r.serial <= serial);
            &receipts[start..end]
        };
        let mut missing = 0u64;
        let mut first_missing = None;
        for t in &self.tracked {
            let got = received(t.serial);
            for &key in &t.direct {
                if !got.iter().any(|r| r.key == key) {
                    missing += 1;
                    first_missing.get_or_insert((t.serial, key));
                }
            }
            for &g in &t.groups {
                if !got
                    .iter()
                    .any(|r| self.sessions[r.key as usize].shared_ever.contains(&g))
                {
                    missing += 1;
                    first_missing.get_or_insert((t.serial, u32::MAX - g));
                }
            }
            if t.qos == QoS::ExactlyOnce && !t.retain {
                for &key in &t.direct {
                    let session = &self.sessions[key as usize];
                    if session.ever_shared || session.ever_v31 || session.tainted {
                        continue;
                    }
                    let n = got
                        .iter()
                        .filter(|r| r.key == key && r.new_qos2 && !r.retain)
                        .count();
                    assert!(
                        n <= 1,
                        "QoS 2 message {} delivered {n} times to session {key}",
                        t.serial
                    );
                }
            }
        }
        let dropped = stats.dropped_queue_full
            + stats.dropped_too_large
            + stats.dropped_expired
            + stats.dropped_session_ended
            + stats.deliveries_unauthorized;
        assert!(
            missing <= dropped,
            "{missing} owed deliveries never arrived (first: message {:?}) but the broker counts \
             {dropped} dropped: {stats:?}",
            first_missing
        );
    }
}
