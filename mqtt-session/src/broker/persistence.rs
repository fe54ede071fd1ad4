//! Persistence: what changed in the broker's durable state, as data, and a broker rebuilt from
//! it after a restart.
//!
//! With [`BrokerConfig::persistence`](super::BrokerConfig::persistence) on, the broker records
//! every change of what must survive a restart (retained messages; persistent sessions: their
//! will and expiry, subscriptions, the QoS 1/2 messages queued or in flight to them, their
//! packet identifiers and stages, and the inbound QoS 2 identifiers awaiting PUBREL) as a
//! [`Change`], which the driver takes with [`Broker::poll_change`] and writes to a store:
//! [`Change::ops`] turns each into puts and deletes of byte keys and values, and
//! [`Snapshot::load`] reads those keys and values back. [`Broker::restore`] rebuilds a new
//! broker from the snapshot. Off (the default), nothing is recorded and nothing is paid.
//!
//! Sessions that end with their connection (MQTT 3.1.x Clean Session, MQTT 5 Session Expiry
//! Interval 0) and QoS 0 messages are not recorded.
//!
//! # What is durable when: the driver's part
//!
//! The core does no I/O: a change is durable once the driver's store has it. A driver that
//! promises a publisher that its acknowledged messages survive a crash must not let a peer see
//! the effect of a change before the change is durable. The rule:
//!
//! > The bytes [`Broker::poll_transmit`] hands out after a change was made are written to
//! > their transport only once the store has that change (and every one before it).
//!
//! PUBACK and PUBREC to a publisher then leave after the message is durable in every session
//! it was queued for; a PUBLISH to a subscriber leaves after its packet identifier is durable
//! (a restarted broker re-sends it with the same identifier and DUP set, so a QoS 2
//! subscriber recognises it: [MQTT-4.3.3-10]); a PUBCOMP after the PUBREL's release is durable.
//! Holding output rather than acknowledgements only is what makes this hold for subscribers
//! too: a QoS 2 PUBLISH that left before its identifier was durable would be re-sent under a
//! new identifier after a crash and delivered twice. Bytes handed out when no change is
//! pending can go at once. (`mqtt-streaming-tokio`'s broker does this with group commits: the
//! changes of one turn of its loop are one transaction, and that turn's output is released
//! when the transaction is durable.)
//!
//! The changes taken after one input (every `poll_change` until `None`) belong together: a
//! store commits them as one transaction, or a crash between two of them may leave a QoS 2
//! message recorded for its subscribers without its publisher's packet identifier, and the
//! publisher's re-send would then reach them a second time.
//!
//! A faster mode writes the changes every few seconds and holds nothing back, as mosquitto's
//! `autosave_interval`: a crash loses what changed since the last save.
//!
//! # Held-back messages
//!
//! A QoS 1/2 message held back from its publisher while a subscriber is full (see
//! [`BrokerConfig`](super::BrokerConfig), "Overload") has not been acknowledged: its PUBACK or
//! PUBREC leaves only once every subscriber took it (and the records of that are durable, by
//! the rule above), and the publisher's later QoS 1/2 messages wait behind it, unrouted and
//! unacknowledged too. So nothing acknowledged is ever only in the held-back state. What a
//! crash must not do is deliver a message twice or lose one whose acknowledgement then goes
//! out, and the publisher re-sends (DUP) whatever it has no acknowledgement for:
//!
//! - A held-back message still waiting behind an earlier one was routed nowhere and is not
//!   recorded: the re-send routes it, once.
//! - A held-back QoS 1 message some subscribers took: they keep their recorded copies, and the
//!   re-send is routed to every subscriber again, the full ones included (QoS 1 is at least
//!   once: those that took it get it twice).
//! - A held-back QoS 2 message routed to its subscribers: the copies that subscribers took
//!   are recorded as they take them, the copies waiting for full subscribers are recorded as
//!   queued for them when they start waiting (and that record is replaced when they take
//!   them), and the publisher's packet identifier is recorded with its session's flows as
//!   awaiting PUBREL ([`StoredFlows::inbound_awaiting_pubrel`]). A restored broker therefore
//!   has the message in every persistent session it was routed to, and answers the
//!   publisher's re-send with PUBREC without routing it again ([MQTT-4.3.3-10]): exactly
//!   once. So does it once every subscriber took it while its publisher was away (its PUBREC
//!   waits for the publisher's return).
//!
//! (Subscribers whose sessions end with their connection are gone after a crash in any case,
//! with whatever they were owed.)
//!
//! # Not covered
//!
//! - A client connected at the crash is treated, on restore, as if its connection was lost at
//!   the restore: its will is published after its Will Delay Interval, and its session expires
//!   its Session Expiry Interval later.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;
use core::time::Duration;

use bytes::{BufMut, BytesMut};
use mqtt_streaming_proto::{
    Connect, Decoder, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS, Subscribe,
    SubscribeProperties, Subscription, SubscriptionId, SubscriptionOptions, TopicFilter, TopicName,
    Will, PROTOCOL_MAX_PACKET_SIZE,
};

use super::small_map::SmallMap;
use super::subscriptions::{SessionKey, Sub};
use super::{Broker, BrokerHooks, RecordTimer, SessionRecord, Token};
use crate::message::Message;
use crate::server::{SessionExpiry, SessionState};
use crate::shared::flows::Queued;
use crate::shared::inflight::OutboundStage as Stage;
use crate::time::Instant;

/// One change of the broker's durable state (see the [module docs](self)). Each owns its
/// bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// The retained message of `topic` is now `message`, stored at `at`; `None`: deleted.
    Retained {
        /// The topic.
        topic: TopicName,
        /// The message, or `None`.
        message: Option<Box<Message>>,
        /// When it was stored (its Message Expiry Interval counts from then).
        at: Instant,
    },
    /// A persistent session was created, or its will or expiry changed (every connection,
    /// disconnection and will publication).
    Session(Box<SessionHeader>),
    /// A session ended (expired, discarded by a Clean Start, or no longer persistent): forget
    /// it and everything recorded under its client identifier.
    SessionRemoved {
        /// The client identifier.
        client_id: MqttString,
    },
    /// The session subscribed to `filter` (or replaced that subscription).
    SubscriptionAdded {
        /// The client identifier.
        client_id: MqttString,
        /// The filter.
        filter: TopicFilter,
        /// Its options.
        options: SubscriptionOptions,
        /// Its Subscription Identifier.
        id: Option<SubscriptionId>,
    },
    /// The session unsubscribed from `filter`.
    SubscriptionRemoved {
        /// The client identifier.
        client_id: MqttString,
        /// The filter.
        filter: TopicFilter,
    },
    /// A QoS 1/2 message was given to the session (queued or sent), numbered `seq`. Numbers
    /// grow with each message, across sessions and restarts; a session's messages are sent
    /// in the order of their numbers.
    MessageQueued {
        /// The client identifier.
        client_id: MqttString,
        /// The message's number.
        seq: u64,
        /// The message as the session sends it (QoS, RETAIN and Subscription Identifiers of
        /// its subscription).
        message: Box<Message>,
        /// When it was queued (its Message Expiry Interval counts from then).
        at: Instant,
    },
    /// Message `seq` of the session is done: acknowledged by the client, expired, dropped or
    /// passed to another member of its shared subscription.
    MessageDone {
        /// The client identifier.
        client_id: MqttString,
        /// The message's number.
        seq: u64,
    },
    /// The session's publish flows now stand so: which of its messages are in flight under
    /// which packet identifier and stage, and the inbound QoS 2 identifiers awaiting PUBREL.
    Flows {
        /// The client identifier.
        client_id: MqttString,
        /// The flows.
        flows: StoredFlows,
    },
}

/// The durable header of a persistent session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionHeader {
    /// The client identifier.
    pub client_id: MqttString,
    /// How long the session outlives its connection ([`SessionExpiry::AtClose`] is never
    /// recorded).
    pub expiry: SessionExpiry,
    /// While connected, the will the connection carries (published if the connection is lost,
    /// or, after a crash, on restore); while disconnected, the will waiting for its Will Delay
    /// Interval.
    pub will: Option<Will>,
    /// When the connection ended; `None` while connected.
    pub disconnected_at: Option<Instant>,
    /// The User Name of the session's latest accepted CONNECT: the authorisation hooks see it
    /// for messages routed to the restored session before its client connects again
    /// ([`BrokerHooks::authorize_delivery`]).
    pub username: Option<MqttString>,
}

/// Where a session's publish flows stand (see [`Change::Flows`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredFlows {
    /// The messages in flight to the client, in re-send order.
    pub outbound: Vec<StoredFlow>,
    /// Inbound QoS 2 packet identifiers answered with PUBREC and awaiting PUBREL: a PUBLISH
    /// re-sent with one of them is not delivered again ([MQTT-4.3.3-9]). Also those whose
    /// PUBREC is still held back though their message is recorded wherever it was routed (see
    /// "Held-back messages" in the [module docs](self)): a restored broker answers them as
    /// answered.
    pub inbound_awaiting_pubrel: Vec<PacketId>,
}

/// One message in flight to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredFlow {
    /// The message's number ([`Change::MessageQueued`]).
    pub seq: u64,
    /// The packet identifier it was sent with.
    pub packet_id: PacketId,
    /// How far its flow got.
    pub stage: crate::OutboundStage,
}

/// What the driver's store does for one [`Change`]: byte keys and values, ordered so that a
/// session's records share a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Set `key`, which was never written before, to `value` (a message queued: numbers are
    /// not reused). A store that gathers operations before it commits them may drop both
    /// this and a later `Delete` of the same key (a message done before it was saved);
    /// otherwise it is a `Put`.
    Insert(Vec<u8>, Vec<u8>),
    /// Delete `key`.
    Delete(Vec<u8>),
    /// Delete every key that starts with these bytes.
    DeletePrefix(Vec<u8>),
}

/// The version of the key and value layout, stored under [`Snapshot::VERSION_KEY`].
const FORMAT: u8 = 1;
const TAG_RETAINED: u8 = b'R';
const TAG_SESSION: u8 = b'S';
const KIND_HEADER: u8 = b'h';
const KIND_FLOWS: u8 = b'f';
const KIND_MESSAGE: u8 = b'm';
const KIND_SUBSCRIPTION: u8 = b's';

fn session_prefix(client_id: &MqttString) -> Vec<u8> {
    let id = client_id.as_str().as_bytes();
    let mut key = Vec::with_capacity(3 + id.len() + 9);
    key.push(TAG_SESSION);
    // A client identifier is at most 65,535 bytes (an MQTT string).
    key.extend_from_slice(&(id.len() as u16).to_be_bytes());
    key.extend_from_slice(id);
    key
}

fn session_key(client_id: &MqttString, kind: u8, rest: &[u8]) -> Vec<u8> {
    let mut key = session_prefix(client_id);
    key.push(kind);
    key.extend_from_slice(rest);
    key
}

/// The durable clock's reading at `at`: `clock_at_zero` is its reading at `Instant::ZERO`.
fn stamp(at: Instant, clock_at_zero: u64) -> u64 {
    clock_at_zero.saturating_add(at.as_millis())
}

fn encode_packet(packet: &Packet, out: &mut Vec<u8>) {
    let mut buf = BytesMut::new();
    // Messages, wills and subscriptions the broker holds were valid packets when they
    // arrived; an encode error would be a bug, and leaves an empty (undecodable) record.
    let result = packet.encode(ProtocolVersion::V5, &mut buf);
    debug_assert!(result.is_ok(), "{result:?}");
    out.extend_from_slice(&buf);
}

fn encode_message(message: &Message, stamp: u64) -> Vec<u8> {
    let mut value = Vec::with_capacity(16 + message.topic.len() + message.payload.len());
    value.extend_from_slice(&stamp.to_be_bytes());
    let publish = message.clone().into_publish(PacketId::MIN);
    encode_packet(&Packet::Publish(publish), &mut value);
    value
}

impl Change {
    /// Appends what a store does for this change to `out`. `clock_at_zero` is the reading,
    /// at `Instant::ZERO` of this broker, of a clock that goes on across restarts (the
    /// milliseconds of UNIX time, say): times are stored on it, so that a restore knows how
    /// long messages waited and sessions were away.
    pub fn ops(&self, clock_at_zero: u64, out: &mut Vec<StoreOp>) {
        match self {
            Self::Retained { topic, message, at } => {
                let mut key = Vec::with_capacity(1 + topic.len());
                key.push(TAG_RETAINED);
                key.extend_from_slice(topic.as_str().as_bytes());
                match message {
                    Some(message) => out.push(StoreOp::Put(
                        key,
                        encode_message(message, stamp(*at, clock_at_zero)),
                    )),
                    None => out.push(StoreOp::Delete(key)),
                }
            }
            Self::Session(header) => {
                let mut value = Vec::with_capacity(32);
                value.push(FORMAT);
                match header.expiry {
                    SessionExpiry::AtClose => value.push(0),
                    SessionExpiry::After(d) => {
                        value.push(1);
                        value.extend_from_slice(&d.as_secs().to_be_bytes());
                    }
                    SessionExpiry::Never => value.push(2),
                }
                match header.disconnected_at {
                    Some(at) => {
                        value.push(1);
                        value.extend_from_slice(&stamp(at, clock_at_zero).to_be_bytes());
                    }
                    None => value.push(0),
                }
                if header.will.is_some() || header.username.is_some() {
                    let mut connect = Connect::new(ProtocolVersion::V5, header.client_id.clone());
                    connect.will = header.will.clone();
                    connect.username = header.username.clone();
                    encode_packet(&Packet::Connect(Box::new(connect)), &mut value);
                }
                out.push(StoreOp::Put(
                    session_key(&header.client_id, KIND_HEADER, &[]),
                    value,
                ));
            }
            Self::SessionRemoved { client_id } => {
                out.push(StoreOp::DeletePrefix(session_prefix(client_id)));
            }
            Self::SubscriptionAdded {
                client_id,
                filter,
                options,
                id,
            } => {
                let subscribe = Subscribe {
                    packet_id: PacketId::MIN,
                    subscriptions: alloc::vec![Subscription {
                        filter: filter.clone(),
                        options: *options,
                    }],
                    properties: SubscribeProperties {
                        subscription_identifier: *id,
                        ..SubscribeProperties::default()
                    },
                };
                let mut value = Vec::new();
                encode_packet(&Packet::Subscribe(subscribe), &mut value);
                out.push(StoreOp::Put(
                    session_key(client_id, KIND_SUBSCRIPTION, filter.filter().as_bytes()),
                    value,
                ));
            }
            Self::SubscriptionRemoved { client_id, filter } => {
                out.push(StoreOp::Delete(session_key(
                    client_id,
                    KIND_SUBSCRIPTION,
                    filter.filter().as_bytes(),
                )));
            }
            Self::MessageQueued {
                client_id,
                seq,
                message,
                at,
            } => out.push(StoreOp::Insert(
                session_key(client_id, KIND_MESSAGE, &seq.to_be_bytes()),
                encode_message(message, stamp(*at, clock_at_zero)),
            )),
            Self::MessageDone { client_id, seq } => out.push(StoreOp::Delete(session_key(
                client_id,
                KIND_MESSAGE,
                &seq.to_be_bytes(),
            ))),
            Self::Flows { client_id, flows } => {
                let mut value = Vec::with_capacity(
                    9 + flows.outbound.len() * 11 + flows.inbound_awaiting_pubrel.len() * 2,
                );
                value.push(FORMAT);
                value.put_u32(flows.outbound.len() as u32);
                for flow in &flows.outbound {
                    value.put_u64(flow.seq);
                    value.put_u16(flow.packet_id.get());
                    value.push(match flow.stage {
                        Stage::AwaitingPubAck => 0,
                        Stage::AwaitingPubRec => 1,
                        Stage::AwaitingPubComp => 2,
                    });
                }
                value.put_u32(flows.inbound_awaiting_pubrel.len() as u32);
                for id in &flows.inbound_awaiting_pubrel {
                    value.put_u16(id.get());
                }
                out.push(StoreOp::Put(session_key(client_id, KIND_FLOWS, &[]), value));
            }
        }
    }
}

/// A record of the store that [`Snapshot::load`] could not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptRecord {
    /// Its key.
    pub key: Vec<u8>,
}

impl core::fmt::Display for CorruptRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "unreadable persistence record (key {:02x?})", self.key)
    }
}

impl core::error::Error for CorruptRecord {}

/// A stored message with the durable clock's reading when it was stored or queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// The message.
    pub message: Message,
    /// The durable clock's reading (see [`Change::ops`]).
    pub stored_at: u64,
}

/// One persistent session as read back from a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSession {
    /// How long it outlives its connection.
    pub expiry: SessionExpiry,
    /// Its will (see [`SessionHeader::will`]).
    pub will: Option<Will>,
    /// The durable clock's reading when its connection ended; `None`: it was connected.
    pub disconnected_at: Option<u64>,
    /// The User Name of its latest accepted CONNECT (see [`SessionHeader::username`]).
    pub username: Option<MqttString>,
    /// Its subscriptions.
    pub subscriptions: BTreeMap<TopicFilter, (SubscriptionOptions, Option<SubscriptionId>)>,
    /// Its QoS 1/2 messages not done, by number.
    pub messages: BTreeMap<u64, StoredMessage>,
    /// Its flows.
    pub flows: StoredFlows,
}

/// The durable state read back from a store: what [`Broker::restore`] rebuilds a broker from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Retained messages by topic.
    pub retained: BTreeMap<TopicName, StoredMessage>,
    /// Persistent sessions by client identifier.
    pub sessions: BTreeMap<MqttString, StoredSession>,
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_be_bytes(a))
    }
}

fn decode_packet(bytes: &[u8]) -> Option<Packet> {
    let mut buf = BytesMut::from(bytes);
    let decoder = Decoder::new(ProtocolVersion::V5).with_max_packet_size(PROTOCOL_MAX_PACKET_SIZE);
    match decoder.decode(&mut buf) {
        Ok(Some(packet)) if buf.is_empty() => Some(packet),
        _ => None,
    }
}

fn decode_message(value: &[u8]) -> Option<StoredMessage> {
    let mut r = Reader(value);
    let stored_at = r.u64()?;
    match decode_packet(r.0)? {
        Packet::Publish(publish) => Some(StoredMessage {
            message: Message::from_publish(publish).to_owned_compact(),
            stored_at,
        }),
        _ => None,
    }
}

impl Snapshot {
    /// The key under which a store keeps the layout version ([`Snapshot::version_record`]).
    pub const VERSION_KEY: &'static [u8] = b"V";

    /// The record a new store starts with: the layout version of the keys and values.
    pub fn version_record() -> (Vec<u8>, Vec<u8>) {
        (Self::VERSION_KEY.to_vec(), alloc::vec![FORMAT])
    }

    /// Reads a store's keys and values (as [`Change::ops`] wrote them, in any order).
    ///
    /// # Errors
    ///
    /// The first record that is not one this version wrote.
    pub fn load<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, CorruptRecord> {
        let mut snapshot = Self::default();
        let mut flows: BTreeMap<MqttString, StoredFlows> = BTreeMap::new();
        let mut subscriptions = Vec::new();
        let mut messages = Vec::new();
        for (key, value) in pairs {
            let (key, value) = (key.as_ref(), value.as_ref());
            let corrupt = || CorruptRecord { key: key.to_vec() };
            if key == Self::VERSION_KEY {
                if value != [FORMAT] {
                    return Err(corrupt());
                }
                continue;
            }
            match key.first() {
                Some(&TAG_RETAINED) => {
                    let topic = core::str::from_utf8(&key[1..])
                        .ok()
                        .and_then(|t| TopicName::new(t).ok())
                        .ok_or_else(corrupt)?;
                    let message = decode_message(value).ok_or_else(corrupt)?;
                    snapshot.retained.insert(topic.to_owned_compact(), message);
                }
                Some(&TAG_SESSION) => {
                    let mut r = Reader(&key[1..]);
                    let len = r.u16().ok_or_else(corrupt)?;
                    let id = r.take(usize::from(len)).ok_or_else(corrupt)?;
                    let client_id = core::str::from_utf8(id)
                        .ok()
                        .and_then(|s| MqttString::new(s).ok())
                        .ok_or_else(corrupt)?
                        .to_owned_compact();
                    let kind = r.u8().ok_or_else(corrupt)?;
                    let rest = r.0;
                    match kind {
                        KIND_HEADER => {
                            let session = decode_header(value).ok_or_else(corrupt)?;
                            snapshot.sessions.insert(client_id, session);
                        }
                        KIND_FLOWS => {
                            flows.insert(client_id, decode_flows(value).ok_or_else(corrupt)?);
                        }
                        KIND_MESSAGE => {
                            let seq = Reader(rest).u64().ok_or_else(corrupt)?;
                            let message = decode_message(value).ok_or_else(corrupt)?;
                            messages.push((client_id, seq, message));
                        }
                        KIND_SUBSCRIPTION => {
                            let Some(Packet::Subscribe(mut subscribe)) = decode_packet(value)
                            else {
                                return Err(corrupt());
                            };
                            let s = subscribe.subscriptions.pop().ok_or_else(corrupt)?;
                            subscriptions.push((
                                client_id,
                                s.filter.to_owned_compact(),
                                s.options,
                                subscribe.properties.subscription_identifier,
                            ));
                        }
                        _ => return Err(corrupt()),
                    }
                }
                _ => return Err(corrupt()),
            }
        }
        // Records of a session whose header is missing are left over: ignored.
        for (client_id, filter, options, id) in subscriptions {
            if let Some(s) = snapshot.sessions.get_mut(&client_id) {
                s.subscriptions.insert(filter, (options, id));
            }
        }
        for (client_id, seq, message) in messages {
            if let Some(s) = snapshot.sessions.get_mut(&client_id) {
                s.messages.insert(seq, message);
            }
        }
        for (client_id, f) in flows {
            if let Some(s) = snapshot.sessions.get_mut(&client_id) {
                s.flows = f;
            }
        }
        Ok(snapshot)
    }
}

fn decode_header(value: &[u8]) -> Option<StoredSession> {
    let mut r = Reader(value);
    if r.u8()? != FORMAT {
        return None;
    }
    let expiry = match r.u8()? {
        0 => SessionExpiry::AtClose,
        1 => SessionExpiry::After(Duration::from_secs(r.u64()?)),
        2 => SessionExpiry::Never,
        _ => return None,
    };
    let disconnected_at = match r.u8()? {
        0 => None,
        1 => Some(r.u64()?),
        _ => return None,
    };
    // A CONNECT carrying the will and the user name, when there is either.
    let (will, username) = if r.0.is_empty() {
        (None, None)
    } else {
        match decode_packet(r.0)? {
            Packet::Connect(connect) => {
                if connect.will.is_none() && connect.username.is_none() {
                    return None;
                }
                (
                    connect.will.map(|w| w.to_owned_compact()),
                    connect.username.map(|u| u.to_owned_compact()),
                )
            }
            _ => return None,
        }
    };
    Some(StoredSession {
        expiry,
        will,
        disconnected_at,
        username,
        subscriptions: BTreeMap::new(),
        messages: BTreeMap::new(),
        flows: StoredFlows::default(),
    })
}

fn decode_flows(value: &[u8]) -> Option<StoredFlows> {
    let mut r = Reader(value);
    if r.u8()? != FORMAT {
        return None;
    }
    let n = r.u32()?;
    let mut flows = StoredFlows::default();
    for _ in 0..n {
        let seq = r.u64()?;
        let packet_id = PacketId::new(r.u16()?)?;
        let stage = match r.u8()? {
            0 => Stage::AwaitingPubAck,
            1 => Stage::AwaitingPubRec,
            2 => Stage::AwaitingPubComp,
            _ => return None,
        };
        flows.outbound.push(StoredFlow {
            seq,
            packet_id,
            stage,
        });
    }
    let n = r.u32()?;
    for _ in 0..n {
        flows.inbound_awaiting_pubrel.push(PacketId::new(r.u16()?)?);
    }
    r.0.is_empty().then_some(flows)
}

/// What the broker knows of a persistent session for its records.
#[derive(Debug)]
struct Durable {
    expiry: SessionExpiry,
    /// The will of its connection, while connected.
    will: Option<Will>,
    disconnected_at: Option<Instant>,
}

/// The broker's record keeping, when persistence is on.
#[derive(Debug, Default)]
pub(super) struct Journal {
    changes: VecDeque<Change>,
    durable: BTreeMap<SessionKey, Durable>,
    /// Sessions whose flows may have changed since their last `Change::Flows`.
    dirty: BTreeSet<SessionKey>,
    /// The flows last recorded, per session.
    flows: BTreeMap<SessionKey, StoredFlows>,
    /// The next message number.
    next_seq: u64,
}

impl Journal {
    pub(super) fn new() -> Self {
        Self {
            next_seq: 1,
            ..Self::default()
        }
    }
}

/// A message's remaining Message Expiry Interval after `waited`; `None` when it expired
/// ([MQTT-3.3.2-5]).
fn aged(mut message: Message, waited: Duration) -> Option<Message> {
    if let Some(interval) = message.properties.message_expiry_interval {
        let waited = u32::try_from(waited.as_secs()).unwrap_or(u32::MAX);
        if waited >= interval {
            return None;
        }
        message.properties.message_expiry_interval = Some(interval - waited);
    }
    Some(message)
}

impl<H: BrokerHooks> Broker<H> {
    /// The next change of the durable state (see the [module docs](self)), `None` when there
    /// is none (always, unless [`BrokerConfig::persistence`](super::BrokerConfig::persistence)
    /// is on). Drain it after every input, with `poll_transmit` and `poll_event`; write what
    /// `poll_transmit` handed out since the first change to its transports only once the
    /// changes are durable.
    pub fn poll_change(&mut self) -> Option<Change> {
        let journal = self.journal.as_mut()?;
        if let Some(change) = journal.changes.pop_front() {
            return Some(change);
        }
        while let Some(key) = journal.dirty.pop_first() {
            let Some(record) = self.sessions.get(&key) else {
                journal.flows.remove(&key);
                continue;
            };
            if !journal.durable.contains_key(&key) {
                continue;
            }
            let held = super::backpressure::routed_qos2(&self.parked, key);
            let flows = match record.connection.and_then(|id| self.connections.get(&id)) {
                Some(conn) if conn.key() == Some(key) => {
                    stored_flows(conn.session.flows_for_persistence(), held)
                }
                _ => match &record.stored {
                    Some(state) => stored_flows(&state.flows, held),
                    None => stored_flows(&Default::default(), held),
                },
            };
            if journal.flows.get(&key) == Some(&flows) {
                continue;
            }
            journal.flows.insert(key, flows.clone());
            return Some(Change::Flows {
                client_id: record.client_id.clone(),
                flows,
            });
        }
        if journal.changes.capacity() > 64 {
            journal.changes.shrink_to(64);
        }
        None
    }

    /// Whether a change is waiting in [`poll_change`](Self::poll_change).
    pub fn has_changes(&self) -> bool {
        self.journal
            .as_ref()
            .is_some_and(|j| !j.changes.is_empty() || !j.dirty.is_empty())
    }

    /// Rebuilds the broker's retained messages and persistent sessions from `snapshot` (read
    /// with [`Snapshot::load`]), on a broker that has served nothing yet. `clock_now` is the
    /// durable clock's reading now (see [`Change::ops`]): messages whose Message Expiry
    /// Interval passed meanwhile are dropped, sessions whose Session Expiry Interval passed
    /// end (their pending will is published), and wills whose delay passed are published,
    /// all at the first [`handle_timeout`](Self::handle_timeout), which is due at once.
    /// Sessions that were connected are taken as disconnected now (see the module docs).
    ///
    /// Records keep coming from the restored broker as usual; a driver writing to the store
    /// it loaded from needs nothing else.
    pub fn restore(&mut self, now: Instant, snapshot: Snapshot, clock_now: u64) {
        self.now = now;
        let since = |at: u64| Duration::from_millis(clock_now.saturating_sub(at));
        for (_, stored) in snapshot.retained {
            if let Some(message) = aged(stored.message, since(stored.stored_at)) {
                self.retain(now, &message);
            }
        }
        let max_queued = self.config.server.max_queued;
        for (client_id, stored) in snapshot.sessions {
            if stored.expiry == SessionExpiry::AtClose || self.by_client_id.contains_key(&client_id)
            {
                continue;
            }
            let key = self.next_session;
            self.next_session += 1;
            let away = stored.disconnected_at.map_or(Duration::ZERO, since);
            let mut state: SessionState<Token> = SessionState::new(max_queued);
            let mut messages = stored.messages;
            let mut max_seq = 0;
            for flow in &stored.flows.outbound {
                let Some(m) = messages.remove(&flow.seq) else {
                    continue;
                };
                max_seq = max_seq.max(flow.seq);
                let token = Token {
                    shared: None,
                    seq: flow.seq,
                };
                let publish: Publish = m.message.into_publish(flow.packet_id);
                state
                    .flows
                    .tables_mut()
                    .inflight
                    .restore(publish, token, flow.stage);
            }
            for id in &stored.flows.inbound_awaiting_pubrel {
                state
                    .flows
                    .tables_mut()
                    .inbound
                    .restore_awaiting_pubrel(*id);
            }
            for (seq, m) in messages {
                max_seq = max_seq.max(seq);
                let Some(message) = aged(m.message, since(m.stored_at)) else {
                    self.stats.dropped_expired += 1;
                    if let Some(journal) = self.journal.as_mut() {
                        journal.changes.push_back(Change::MessageDone {
                            client_id: client_id.clone(),
                            seq,
                        });
                    }
                    continue;
                };
                state.flows.push_queued(Queued {
                    message,
                    token: Token { shared: None, seq },
                    since: now,
                });
            }
            let mut subscriptions = SmallMap::default();
            let mut subscription_weight = 0;
            for (filter, (options, id)) in stored.subscriptions {
                let sub = Sub { options, id };
                self.index.insert(key, &filter, sub);
                subscription_weight += super::subscriptions::subscription_weight(&filter);
                subscriptions.insert(filter, sub);
            }
            // As if its connection ended `away` ago (now, if it was connected). Recorded
            // again as disconnected now, with what remains of its expiry and will delay.
            let (expiry, expires_at) = match stored.expiry {
                SessionExpiry::After(d) => {
                    let left = d.saturating_sub(away);
                    (SessionExpiry::After(left), Some(now + left))
                }
                other => (other, None),
            };
            let pending_will = stored.will.map(|mut will| {
                let delay = u64::from(will.properties.will_delay_interval.unwrap_or(0));
                let left = Duration::from_secs(delay).saturating_sub(away);
                if will.properties.will_delay_interval.is_some() {
                    let secs = u32::try_from(left.as_secs()).unwrap_or(u32::MAX);
                    will.properties.will_delay_interval = Some(secs);
                }
                Box::new((will, now + left))
            });
            if let Some(p) = &pending_will {
                self.record_timers.insert((p.1, key, RecordTimer::Will));
            }
            if let Some(at) = expires_at {
                self.record_timers.insert((at, key, RecordTimer::Expiry));
            }
            self.by_client_id.insert(client_id.clone(), key);
            self.sessions.insert(
                key,
                Box::new(SessionRecord {
                    client_id: client_id.clone(),
                    // As of its latest CONNECT, for the authorisation hooks until it connects
                    // again.
                    username: stored.username.map(Box::new),
                    connection: None,
                    stored: Some(Box::new(state)),
                    subscriptions,
                    subscription_weight,
                    expires_at,
                    pending_will,
                }),
            );
            if let Some(journal) = self.journal.as_mut() {
                journal.next_seq = journal.next_seq.max(max_seq + 1);
                journal.durable.insert(
                    key,
                    Durable {
                        expiry,
                        will: None,
                        disconnected_at: Some(now),
                    },
                );
                journal.flows.insert(key, stored.flows);
            }
            // A session that was connected is recorded as disconnected now.
            self.journal_header(key);
        }
    }

    // ----- the records, from the rest of the broker -----

    /// Session `key` was admitted with this expiry and will; `clean_start` discarded what it
    /// held.
    pub(super) fn journal_admitted(
        &mut self,
        key: SessionKey,
        clean_start: bool,
        expiry: SessionExpiry,
        will: Option<&Will>,
    ) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        let Some(record) = self.sessions.get(&key) else {
            return;
        };
        let was = journal.durable.remove(&key);
        if was.is_some() && (clean_start || expiry == SessionExpiry::AtClose) {
            journal.flows.remove(&key);
            journal.changes.push_back(Change::SessionRemoved {
                client_id: record.client_id.clone(),
            });
        }
        if expiry == SessionExpiry::AtClose {
            return;
        }
        let fresh = was.is_none() || clean_start;
        journal.durable.insert(
            key,
            Durable {
                expiry,
                will: will.map(Will::to_owned_compact),
                disconnected_at: None,
            },
        );
        journal.dirty.insert(key);
        if fresh {
            // Subscriptions it kept from a life that was not recorded.
            for (filter, sub) in record.subscriptions.iter() {
                journal.changes.push_back(Change::SubscriptionAdded {
                    client_id: record.client_id.clone(),
                    filter: filter.clone(),
                    options: sub.options,
                    id: sub.id,
                });
            }
        }
        self.journal_header(key);
    }

    /// Session `key`'s connection ended at `now`; it lives on with `expiry`.
    pub(super) fn journal_closed(&mut self, now: Instant, key: SessionKey, expiry: SessionExpiry) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        let Some(durable) = journal.durable.get_mut(&key) else {
            return;
        };
        durable.expiry = expiry;
        durable.will = None;
        durable.disconnected_at = Some(now);
        journal.dirty.insert(key);
        self.journal_header(key);
    }

    /// Records session `key`'s header as it stands.
    pub(super) fn journal_header(&mut self, key: SessionKey) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        let (Some(durable), Some(record)) = (journal.durable.get(&key), self.sessions.get(&key))
        else {
            return;
        };
        let will = match durable.disconnected_at {
            None => durable.will.clone(),
            Some(_) => record.pending_will.as_ref().map(|p| p.0.clone()),
        };
        journal
            .changes
            .push_back(Change::Session(Box::new(SessionHeader {
                client_id: record.client_id.clone(),
                expiry: durable.expiry,
                will,
                disconnected_at: durable.disconnected_at,
                username: record.username.as_deref().cloned(),
            })));
    }

    /// Session `key` (with client identifier `client_id`) ended.
    pub(super) fn journal_ended(&mut self, key: SessionKey, client_id: &MqttString) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        journal.flows.remove(&key);
        journal.dirty.remove(&key);
        if journal.durable.remove(&key).is_some() {
            journal.changes.push_back(Change::SessionRemoved {
                client_id: client_id.clone(),
            });
        }
    }

    /// Session `key` subscribed to `filter` (`Some`) or unsubscribed (`None`).
    pub(super) fn journal_subscription(
        &mut self,
        key: SessionKey,
        filter: &TopicFilter,
        sub: Option<Sub>,
    ) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        if !journal.durable.contains_key(&key) {
            return;
        }
        let Some(record) = self.sessions.get(&key) else {
            return;
        };
        let client_id = record.client_id.clone();
        let filter = filter.to_owned_compact();
        journal.changes.push_back(match sub {
            Some(sub) => Change::SubscriptionAdded {
                client_id,
                filter,
                options: sub.options,
                id: sub.id,
            },
            None => Change::SubscriptionRemoved { client_id, filter },
        });
    }

    /// A QoS 1/2 message is about to be given to session `key`: numbered and recorded when
    /// the session is persistent (the token carries the number). Undone with
    /// [`journal_done`](Self::journal_done) if the session refuses it.
    pub(super) fn journal_delivery(
        &mut self,
        now: Instant,
        key: SessionKey,
        message: &Message,
        token: &mut Token,
    ) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        if message.qos == QoS::AtMostOnce || !journal.durable.contains_key(&key) {
            return;
        }
        let Some(record) = self.sessions.get(&key) else {
            return;
        };
        let seq = journal.next_seq;
        journal.next_seq += 1;
        token.seq = seq;
        journal.dirty.insert(key);
        journal.changes.push_back(Change::MessageQueued {
            client_id: record.client_id.clone(),
            seq,
            message: Box::new(message.clone()),
            at: now,
        });
    }

    /// Session `key` is done with the message `token` numbered (if any).
    pub(super) fn journal_done(&mut self, key: Option<SessionKey>, token: &Token) {
        let (Some(journal), Some(key)) = (self.journal.as_mut(), key) else {
            return;
        };
        if token.seq == 0 || !journal.durable.contains_key(&key) {
            return;
        }
        let Some(record) = self.sessions.get(&key) else {
            return;
        };
        journal.dirty.insert(key);
        journal.changes.push_back(Change::MessageDone {
            client_id: record.client_id.clone(),
            seq: token.seq,
        });
    }

    /// Session `key`'s flows may have changed (its connection had events).
    pub(super) fn journal_dirty(&mut self, key: SessionKey) {
        if let Some(journal) = self.journal.as_mut() {
            if journal.durable.contains_key(&key) {
                journal.dirty.insert(key);
            }
        }
    }

    /// The retained message of `topic` was stored (`Some`) or deleted.
    pub(super) fn journal_retained(
        &mut self,
        now: Instant,
        topic: &TopicName,
        message: Option<&Message>,
    ) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        journal.changes.push_back(Change::Retained {
            topic: topic.to_owned_compact(),
            message: message.map(|m| {
                let mut m = m.clone();
                m.properties.topic_alias = None;
                m.properties.subscription_identifiers.clear();
                Box::new(m)
            }),
            at: now,
        });
    }
}

/// The flows of a session as recorded; `held`: its held-back QoS 2 messages that were routed.
///
/// The inbound identifiers recorded as awaiting PUBREL are those answered with PUBREC, those
/// accepted whose PUBREC waits (for the client to reconnect), and those of routed held-back
/// messages: for each, the message is in the records wherever it was routed, so a restored
/// broker answers a re-send with PUBREC and does not route it again.
fn stored_flows(
    flows: &crate::shared::flows::Flows<Token>,
    held: impl Iterator<Item = PacketId>,
) -> StoredFlows {
    let tables = flows.tables();
    let mut inbound: Vec<PacketId> = tables
        .into_iter()
        .flat_map(|t| t.inbound.awaiting_pubrel().chain(t.inbound.accepted_qos2()))
        .chain(held)
        .collect();
    inbound.sort_unstable();
    inbound.dedup();
    StoredFlows {
        outbound: tables
            .into_iter()
            .flat_map(|t| t.inflight.iter_in_order())
            .filter(|flow| flow.token.seq != 0)
            .filter_map(|flow| {
                Some(StoredFlow {
                    seq: flow.token.seq,
                    packet_id: flow.publish()?.qos_pid.packet_id()?,
                    stage: flow.stage()?,
                })
            })
            .collect(),
        inbound_awaiting_pubrel: inbound,
    }
}
