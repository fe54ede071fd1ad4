//! An embeddable MQTT broker core as a pure state machine: many [`ServerSession`]s, routing
//! between them, retained messages, wills, persistent sessions with offline queues, shared
//! subscriptions, and hooks for authentication and authorization.
//!
//! Like the sessions it does no I/O and reads no clock. A driver gives it connections
//! ([`Broker::open`]), their bytes ([`Broker::handle_read`]), their loss
//! ([`Broker::handle_closed`]) and the time ([`Broker::handle_timeout`]); it takes back bytes
//! per connection ([`Broker::poll_transmit`]) and events saying which transports to close
//! ([`Broker::poll_event`]).
//!
//! ```
//! use bytes::BytesMut;
//! use mqtt_proto::{Connect, MqttString, Packet, ProtocolVersion};
//! use mqtt_session::broker::{Broker, BrokerConfig, BrokerEvent};
//! use mqtt_session::Instant;
//!
//! let now = Instant::from_millis(0);
//! let mut broker = Broker::new(BrokerConfig::default());
//! let conn = broker.open(now).unwrap();
//! let mut read = BytesMut::new();
//! Packet::from(Connect::new(ProtocolVersion::V3_1_1, MqttString::new("c").unwrap()))
//!     .encode(ProtocolVersion::V3_1_1, &mut read)
//!     .unwrap();
//! broker.handle_read(now, conn, &mut read);
//! let mut out = BytesMut::new();
//! assert_eq!(broker.poll_transmit(now, &mut out), Some(conn));
//! assert_eq!(&out[..], [0x20, 0x02, 0x00, 0x00]); // CONNACK
//! assert!(matches!(broker.poll_event(), Some(BrokerEvent::Connected { .. })));
//! ```

mod config;
mod hooks;
mod retained;
mod small_map;
mod stats;
mod subscriptions;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;
use core::time::Duration;

use bytes::BytesMut;
use mqtt_proto::{
    AckProperties, Auth, AuthProperties, ConnAckProperties, Connect, Disconnect, MqttString,
    ProtocolVersion, PublishProperties, QoS, ReasonCode, RetainHandling, Subscribe, TopicFilter,
    Unsubscribe, Will,
};

pub use config::BrokerConfig;
pub use hooks::{AllowAll, AuthDecision, BrokerHooks};
pub use stats::BrokerStats;

use self::retained::RetainedStore;
use self::small_map::SmallMap;
use self::subscriptions::{Delivery, SessionKey, Sub, SubscriptionIndex};
use crate::client::AckMode;
use crate::error::{CloseReason, CommandError, Rejected};
use crate::message::Message;
use crate::server::{ServerEvent, ServerSession, ServerState, SessionExpiry, SessionState};
use crate::shared::flows::AbandonCause;
use crate::shared::inbound::InboundId;
use crate::time::Instant;

/// Identifies one transport connection of the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// The number behind the id (for logs).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// What the broker tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerEvent {
    /// A client's connection was accepted.
    Connected {
        /// The connection.
        connection: ConnectionId,
        /// The client identifier (assigned by the broker if the client sent none).
        client_id: MqttString,
        /// The protocol version.
        version: ProtocolVersion,
        /// Whether a stored session was resumed.
        session_present: bool,
    },
    /// Write out what [`Broker::poll_transmit`] still holds for this connection, then close
    /// its transport. The connection id is no longer valid afterwards.
    Close {
        /// The connection.
        connection: ConnectionId,
        /// The client identifier, empty if the client never got that far.
        client_id: MqttString,
        /// Why.
        reason: CloseReason,
    },
}

/// The broker's refusal of a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyConnections;

/// What travels with each message a session sends: whether it came through a shared
/// subscription, so that a member that cannot take it passes it to another member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Token {
    shared: Option<TopicFilter>,
}

#[derive(Debug)]
struct Connection {
    session: ServerSession<Token>,
    /// The session record once CONNECT was accepted.
    key: Option<SessionKey>,
    /// The deadline registered in the timer set.
    deadline: Option<Instant>,
    /// A CONNECT waiting for an enhanced-authentication exchange to finish.
    pending_connect: Option<Box<Connect>>,
    /// The session closed; the connection goes once its last bytes are transmitted.
    closed: bool,
}

/// A session, connected or not. Rarely used parts are boxed so that the record of an idle
/// client stays small.
#[derive(Debug)]
struct SessionRecord {
    client_id: MqttString,
    connection: Option<ConnectionId>,
    /// The session state while no connection holds it.
    stored: Option<Box<SessionState<Token>>>,
    subscriptions: SmallMap<TopicFilter, Sub>,
    expires_at: Option<Instant>,
    /// A will waiting for its Will Delay Interval, with its due time.
    pending_will: Option<Box<(Will, Instant)>>,
}

/// Timers of session records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum RecordTimer {
    Will,
    Expiry,
}

/// The broker core. `H` decides who may connect, publish and subscribe; [`AllowAll`] by
/// default.
#[derive(Debug)]
pub struct Broker<H: BrokerHooks = AllowAll> {
    config: BrokerConfig,
    hooks: H,
    /// Boxed: a `ServerSession` is about a kilobyte, and a B-tree node holds room for eleven
    /// values, about half of it unused on average.
    connections: BTreeMap<ConnectionId, Box<Connection>>,
    sessions: BTreeMap<SessionKey, SessionRecord>,
    by_client_id: BTreeMap<MqttString, SessionKey>,
    index: SubscriptionIndex,
    retained: RetainedStore,
    next_connection: u64,
    next_session: SessionKey,
    next_assigned_id: u64,
    /// Connections with bytes to transmit.
    dirty: BTreeSet<ConnectionId>,
    connection_timers: BTreeSet<(Instant, ConnectionId)>,
    record_timers: BTreeSet<(Instant, SessionKey, RecordTimer)>,
    events: VecDeque<BrokerEvent>,
    /// Connections whose session events are still to be handled (see `settle`).
    unsettled: VecDeque<ConnectionId>,
    settling: bool,
    /// Passes of the shared message being re-routed (see `reroute_shared`).
    reroute_hops: usize,
    stats: BrokerStats,
}

impl Broker<AllowAll> {
    /// A broker that lets everyone in.
    pub fn new(config: BrokerConfig) -> Self {
        Self::with_hooks(config, AllowAll)
    }
}

impl<H: BrokerHooks> Broker<H> {
    /// A broker with the application's policy.
    pub fn with_hooks(mut config: BrokerConfig, hooks: H) -> Self {
        config.server.ack_mode = AckMode::Manual;
        Self {
            retained: RetainedStore::new(config.max_retained_messages),
            config,
            hooks,
            connections: BTreeMap::new(),
            sessions: BTreeMap::new(),
            by_client_id: BTreeMap::new(),
            index: SubscriptionIndex::default(),
            next_connection: 1,
            next_session: 1,
            next_assigned_id: 1,
            dirty: BTreeSet::new(),
            connection_timers: BTreeSet::new(),
            record_timers: BTreeSet::new(),
            events: VecDeque::new(),
            unsettled: VecDeque::new(),
            settling: false,
            reroute_hops: 0,
            stats: BrokerStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> BrokerStats {
        let mut stats = self.stats.clone();
        stats.connections = self.connections.len();
        stats.sessions = self.sessions.len();
        stats.subscriptions = self.index.len();
        stats.retained = self.retained.len();
        stats
    }

    /// The hooks.
    pub fn hooks_mut(&mut self) -> &mut H {
        &mut self.hooks
    }

    // ----- inputs -----

    /// A new transport was accepted at `now`. Refused when `max_connections` are open (close
    /// the transport without a word).
    pub fn open(&mut self, now: Instant) -> Result<ConnectionId, TooManyConnections> {
        if self.connections.len() >= self.config.max_connections {
            self.stats.connections_refused += 1;
            return Err(TooManyConnections);
        }
        let id = ConnectionId(self.next_connection);
        self.next_connection += 1;
        self.stats.connections_total += 1;
        let session = ServerSession::new(self.config.server.clone(), now);
        self.connections.insert(
            id,
            Box::new(Connection {
                session,
                key: None,
                deadline: None,
                pending_connect: None,
                closed: false,
            }),
        );
        self.settle(now, id);
        Ok(id)
    }

    /// Bytes read from connection `id`. Whole packets are consumed from the front of `buf`.
    pub fn handle_read(&mut self, now: Instant, id: ConnectionId, buf: &mut BytesMut) {
        let Some(conn) = self.connections.get_mut(&id) else {
            return;
        };
        let before = buf.len();
        conn.session.handle_read(now, buf);
        self.stats.bytes_in += (before - buf.len()) as u64;
        self.settle(now, id);
    }

    /// Connection `id`'s transport is gone.
    pub fn handle_closed(&mut self, now: Instant, id: ConnectionId) {
        if let Some(conn) = self.connections.get_mut(&id) {
            conn.session.handle_closed(now);
            self.settle(now, id);
        }
    }

    /// Fires every timer due at `now`: CONNECT and keep-alive timeouts, will delays and
    /// session expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.connection_timers.first() {
            if at > now {
                break;
            }
            self.connection_timers.remove(&(at, id));
            if let Some(conn) = self.connections.get_mut(&id) {
                conn.deadline = None;
                conn.session.handle_timeout(now);
                self.settle(now, id);
            }
        }
        while let Some(&(at, key, timer)) = self.record_timers.first() {
            if at > now {
                break;
            }
            self.record_timers.remove(&(at, key, timer));
            match timer {
                RecordTimer::Will => self.fire_will(now, key, at),
                RecordTimer::Expiry => self.expire(now, key, at),
            }
        }
    }

    /// Publishes `message` from the broker itself (not from a client), as if a client had sent
    /// it: it is retained when `message.retain`, and routed to every matching subscription.
    pub fn publish(&mut self, now: Instant, message: Message) {
        if message.retain {
            self.retain(now, &message);
        }
        self.route(now, None, message);
    }

    /// Asks every connection to go: MQTT 5 clients get DISCONNECT 0x8B Server shutting down.
    /// Drain `poll_transmit` and `poll_event` afterwards, closing each transport.
    pub fn shutdown(&mut self, now: Instant) {
        let ids: Vec<ConnectionId> = self.connections.keys().copied().collect();
        for id in ids {
            if let Some(conn) = self.connections.get_mut(&id) {
                let _ = conn
                    .session
                    .disconnect(now, Disconnect::new(ReasonCode::ServerShuttingDown));
                self.settle(now, id);
            }
        }
    }

    // ----- outputs -----

    /// Moves the pending bytes of one connection into `buf` and says which connection they
    /// are for; `None` when no connection has anything to send. Call until `None` after every
    /// input.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut BytesMut) -> Option<ConnectionId> {
        while let Some(id) = self.dirty.pop_first() {
            if let Some(conn) = self.connections.get_mut(&id) {
                let n = conn.session.poll_transmit(now, buf);
                if conn.closed {
                    self.connections.remove(&id);
                }
                if n > 0 {
                    self.stats.bytes_out += n as u64;
                    return Some(id);
                }
            }
        }
        None
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<BrokerEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let a = self.connection_timers.first().map(|(t, _)| *t);
        let b = self.record_timers.first().map(|(t, ..)| *t);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- the event loop over sessions -----

    /// Handles the events of connection `id` and of every connection they touch, then
    /// refreshes their transmit and timer bookkeeping; every session is drained before control
    /// returns to the driver.
    ///
    /// Called while events are being handled (routing a message into another session, or into
    /// the publisher's own), it only queues the connection: its events are handled after the
    /// current one. Handling them at once would handle the publisher's next PUBLISH in the
    /// middle of routing the previous one, and subscribers later in the routing order would
    /// get the two in the wrong order ([MQTT-4.6.0-6]).
    fn settle(&mut self, now: Instant, id: ConnectionId) {
        self.unsettled.push_back(id);
        if self.settling {
            return;
        }
        self.settling = true;
        while let Some(id) = self.unsettled.pop_front() {
            self.drain(now, id);
        }
        self.settling = false;
    }

    /// Handles the events of connection `id` now.
    fn drain(&mut self, now: Instant, id: ConnectionId) {
        while let Some(event) = self
            .connections
            .get_mut(&id)
            .and_then(|conn| conn.session.poll_event())
        {
            self.on_event(now, id, event);
        }
        if let Some(conn) = self.connections.get_mut(&id) {
            // An idle connection keeps no empty queue's capacity.
            conn.session.shrink_idle();
        }
        self.refresh(id);
    }

    /// Records whether a connection has bytes to send and when its next timer is.
    fn refresh(&mut self, id: ConnectionId) {
        let Some(conn) = self.connections.get_mut(&id) else {
            self.dirty.remove(&id);
            return;
        };
        if conn.session.transmit_len() > 0 {
            self.dirty.insert(id);
        } else if conn.closed {
            self.connections.remove(&id);
            return;
        }
        let deadline = conn.session.poll_timeout();
        if deadline != conn.deadline {
            if let Some(old) = conn.deadline {
                self.connection_timers.remove(&(old, id));
            }
            if let Some(new) = deadline {
                self.connection_timers.insert((new, id));
            }
            conn.deadline = deadline;
        }
    }

    fn on_event(&mut self, now: Instant, id: ConnectionId, event: ServerEvent<Token>) {
        match event {
            ServerEvent::Connect(connect) => self.on_connect(now, id, *connect),
            ServerEvent::Auth(auth) => self.on_auth(now, id, &auth),
            ServerEvent::Message { publish, ack } => self.on_message(now, id, publish, ack),
            ServerEvent::Subscribe(subscribe) => self.on_subscribe(now, id, subscribe),
            ServerEvent::Unsubscribe(unsubscribe) => self.on_unsubscribe(now, id, unsubscribe),
            ServerEvent::Published { .. } => {}
            ServerEvent::Abandoned {
                token,
                cause,
                message,
            } => {
                let key = self.connections.get(&id).and_then(|c| c.key);
                self.on_abandoned(now, key, token, &cause, message);
            }
            ServerEvent::Closed { reason, will, .. } => self.on_closed(now, id, reason, will),
        }
    }

    // ----- connecting -----

    fn on_connect(&mut self, now: Instant, id: ConnectionId, connect: Connect) {
        match self.hooks.authenticate(&connect) {
            AuthDecision::Accept => self.admit(now, id, &connect),
            AuthDecision::Reject(code) => self.refuse(now, id, code),
            AuthDecision::Continue(properties) => {
                if let Some(conn) = self.connections.get_mut(&id) {
                    conn.pending_connect = Some(Box::new(connect));
                }
                self.challenge(now, id, properties);
            }
        }
    }

    fn on_auth(&mut self, now: Instant, id: ConnectionId, auth: &Auth) {
        let Some(conn) = self.connections.get(&id) else {
            return;
        };
        let client_id = conn.session.client_id().clone();
        let decision = self.hooks.continue_authentication(client_id.as_str(), auth);
        let connected = conn.session.state() == ServerState::Connected;
        match decision {
            AuthDecision::Continue(properties) => self.challenge(now, id, properties),
            AuthDecision::Reject(code) if connected => {
                if let Some(conn) = self.connections.get_mut(&id) {
                    let _ = conn.session.disconnect(now, Disconnect::new(code));
                }
            }
            AuthDecision::Reject(code) => self.refuse(now, id, code),
            AuthDecision::Accept if connected => {
                // Re-authentication succeeded.
                let method = auth.properties.authentication_method.clone();
                if let Some(conn) = self.connections.get_mut(&id) {
                    let reply = Auth {
                        reason_code: ReasonCode::Success,
                        properties: AuthProperties {
                            authentication_method: method,
                            ..AuthProperties::default()
                        },
                    };
                    let _ = conn.session.auth(now, reply);
                }
            }
            AuthDecision::Accept => {
                let pending = self
                    .connections
                    .get_mut(&id)
                    .and_then(|c| c.pending_connect.take());
                if let Some(connect) = pending {
                    self.admit(now, id, &connect);
                }
            }
        }
    }

    fn challenge(&mut self, now: Instant, id: ConnectionId, properties: AuthProperties) {
        if let Some(conn) = self.connections.get_mut(&id) {
            let auth = Auth {
                reason_code: ReasonCode::ContinueAuthentication,
                properties,
            };
            if conn.session.auth(now, auth).is_err() {
                let _ = conn.session.reject(
                    now,
                    ReasonCode::BadAuthenticationMethod,
                    ConnAckProperties::default(),
                );
            }
        }
    }

    fn refuse(&mut self, now: Instant, id: ConnectionId, code: ReasonCode) {
        if let Some(conn) = self.connections.get_mut(&id) {
            let code = if code.is_error() && code.is_valid_for(mqtt_proto::PacketType::ConnAck) {
                code
            } else {
                ReasonCode::NotAuthorized
            };
            let _ = conn.session.reject(now, code, ConnAckProperties::default());
        }
    }

    /// Accepts a CONNECT: finds or creates the client's session record, takes over an
    /// existing connection of the same client ([MQTT-3.1.4-3]), resumes or discards the stored
    /// session ([MQTT-3.1.2-4], [MQTT-3.1.2-5]) and answers with CONNACK.
    fn admit(&mut self, now: Instant, id: ConnectionId, connect: &Connect) {
        let mut properties = ConnAckProperties::default();
        let client_id = if connect.client_id.is_empty() {
            // [MQTT-3.1.3-6] (3.1.1) / [MQTT-3.2.2-16] (5.0): a unique identifier of our own.
            let assigned = self.assign_client_id();
            if connect.protocol.is_v5() {
                properties.assigned_client_identifier = Some(assigned.clone());
            }
            assigned
        } else {
            // An owned copy: the decoded one points into the transport's read buffer and
            // would keep all of it alive as long as the session lives.
            owned_string(&connect.client_id)
        };
        // Takeover: the old connection goes with 0x8E ([MQTT-3.1.4-3]); its session detaches
        // into the record (or ends, if it was to end with its connection).
        let previous = self
            .by_client_id
            .get(&client_id)
            .and_then(|key| self.sessions.get(key))
            .and_then(|r| r.connection);
        if let Some(old) = previous.filter(|old| *old != id) {
            if let Some(conn) = self.connections.get_mut(&old) {
                let _ = conn
                    .session
                    .disconnect(now, Disconnect::new(ReasonCode::SessionTakenOver));
            }
            // At once, not queued: the old connection's session state must be back in the
            // record before the new connection takes it.
            self.drain(now, old);
        }
        let key = match self.by_client_id.get(&client_id) {
            Some(&key) => key,
            None => {
                let key = self.next_session;
                self.next_session += 1;
                self.by_client_id.insert(client_id.clone(), key);
                self.sessions.insert(
                    key,
                    SessionRecord {
                        client_id: client_id.clone(),
                        connection: None,
                        stored: None,
                        subscriptions: SmallMap::default(),
                        expires_at: None,
                        pending_will: None,
                    },
                );
                key
            }
        };
        let clean_start = connect.clean_start;
        let Some(record) = self.sessions.get_mut(&key) else {
            return;
        };
        // A reconnect within the will delay cancels the will ([MQTT-3.1.3-9] in 5.0).
        if let Some(pending) = record.pending_will.take() {
            self.record_timers
                .remove(&(pending.1, key, RecordTimer::Will));
        }
        if let Some(at) = record.expires_at.take() {
            self.record_timers.remove(&(at, key, RecordTimer::Expiry));
        }
        let stored = record.stored.take().map(|state| *state);
        let session_present = stored.is_some() && !clean_start;
        if clean_start {
            for (filter, _) in record.subscriptions.take_all() {
                self.index.remove(key, &filter);
            }
        }
        let Some(conn) = self.connections.get_mut(&id) else {
            return;
        };
        if conn.session.accept(now, properties, stored).is_err() {
            return;
        }
        conn.key = Some(key);
        let version = conn.session.version();
        if let Some(record) = self.sessions.get_mut(&key) {
            record.connection = Some(id);
        }
        self.events.push_back(BrokerEvent::Connected {
            connection: id,
            client_id,
            version,
            session_present,
        });
    }

    fn assign_client_id(&mut self) -> MqttString {
        loop {
            let candidate = alloc::format!("auto-{:016x}", self.next_assigned_id);
            self.next_assigned_id += 1;
            if let Ok(id) = MqttString::new(&candidate) {
                if !self.by_client_id.contains_key(&id) {
                    return id;
                }
            }
        }
    }

    // ----- messages -----

    fn on_message(
        &mut self,
        now: Instant,
        id: ConnectionId,
        publish: mqtt_proto::Publish,
        ack: Option<InboundId>,
    ) {
        self.stats.messages_in += 1;
        let Some(conn) = self.connections.get(&id) else {
            return;
        };
        let key = conn.key;
        let client_id = conn.session.client_id().clone();
        let v5 = conn.session.version().is_v5();
        let message = Message::from_publish(publish);
        let code = if !self
            .hooks
            .authorize_publish(client_id.as_str(), &message.topic)
        {
            self.stats.dropped_unauthorized += 1;
            ReasonCode::NotAuthorized
        } else {
            if message.retain {
                self.retain(now, &message);
            }
            let delivered = self.route(now, key, message);
            if delivered == 0 && v5 {
                ReasonCode::NoMatchingSubscribers
            } else {
                ReasonCode::Success
            }
        };
        if let (Some(ack), Some(conn)) = (ack, self.connections.get_mut(&id)) {
            let code = if v5 { code } else { ReasonCode::Success };
            let _ = conn.session.ack(now, ack, code);
        }
    }

    fn retain(&mut self, now: Instant, message: &Message) {
        if self.retained.store(now, message).is_err() {
            self.stats.dropped_retained_full += 1;
        }
    }

    /// Sends `message` to every matching subscription; returns how many sessions got it.
    fn route(&mut self, now: Instant, publisher: Option<SessionKey>, message: Message) -> usize {
        let matches = self.index.matches(message.topic.as_str(), publisher);
        let n = matches.direct.len() + matches.shared.len();
        for (key, delivery) in matches.direct {
            self.deliver(
                now,
                key,
                outgoing(&message, &delivery, false),
                Token::default(),
            );
        }
        for (key, delivery, filter) in matches.shared {
            let token = Token {
                shared: Some(filter),
            };
            self.deliver(now, key, outgoing(&message, &delivery, false), token);
        }
        n
    }

    /// Hands a message to one session: live, queued while offline, or dropped with a count.
    fn deliver(&mut self, now: Instant, key: SessionKey, message: Message, token: Token) {
        let Some(record) = self.sessions.get_mut(&key) else {
            return;
        };
        let result = match (record.connection, record.stored.as_mut()) {
            (Some(conn_id), _) => {
                let Some(conn) = self.connections.get_mut(&conn_id) else {
                    return;
                };
                let result = conn.session.publish(now, message, token);
                self.settle(now, conn_id);
                result
            }
            (None, Some(stored))
                if message.qos > QoS::AtMostOnce || self.config.queue_qos0_offline =>
            {
                stored.enqueue(now, message, token)
            }
            _ => {
                self.stats.dropped_qos0_offline += 1;
                return;
            }
        };
        match result {
            Ok(()) => self.stats.messages_out += 1,
            Err(Rejected {
                error,
                command,
                token,
            }) => self.on_rejected(now, key, &error, command, token),
        }
    }

    /// A session could not take a message: a shared one goes to another member, anything else
    /// is dropped and counted.
    fn on_rejected(
        &mut self,
        now: Instant,
        key: SessionKey,
        error: &CommandError,
        message: Message,
        token: Token,
    ) {
        if token.shared.is_some() {
            self.reroute_shared(now, key, message, token);
            return;
        }
        match error {
            CommandError::PacketTooLarge { .. } => self.stats.dropped_too_large += 1,
            _ => self.stats.dropped_queue_full += 1,
        }
    }

    fn on_abandoned(
        &mut self,
        now: Instant,
        key: Option<SessionKey>,
        token: Token,
        cause: &AbandonCause,
        message: Option<Message>,
    ) {
        match cause {
            AbandonCause::Expired => {
                self.stats.dropped_expired += 1;
                return;
            }
            AbandonCause::Refused(error) => {
                if let (Some(key), Some(message)) = (key, message) {
                    self.on_rejected(now, key, error, message, token);
                }
                return;
            }
            _ => {}
        }
        match (key, message) {
            (Some(key), Some(message)) if token.shared.is_some() => {
                self.reroute_shared(now, key, message, token);
            }
            _ => self.stats.dropped_session_ended += 1,
        }
    }

    /// A shared-subscription message its member could not take goes to another member, so a
    /// member leaving loses no QoS 1/2 message.
    fn reroute_shared(&mut self, now: Instant, from: SessionKey, message: Message, token: Token) {
        let Some(filter) = token.shared.clone() else {
            return;
        };
        if let Some((key, _)) = self.index.shared_member(&filter, from) {
            // A member that refuses it too passes it on in turn; each pass moves round robin
            // and excludes the refusing member, but a group whose every member refuses must
            // not bounce it forever: `hops` bounds the passes by the group size.
            if self.reroute_hops >= self.index.shared_group_len(&filter) {
                self.reroute_hops = 0;
                self.stats.dropped_queue_full += 1;
                return;
            }
            self.reroute_hops += 1;
            self.deliver(now, key, message, token);
            self.reroute_hops = 0;
        } else {
            self.stats.dropped_session_ended += 1;
        }
    }

    // ----- subscriptions -----

    fn on_subscribe(&mut self, now: Instant, id: ConnectionId, subscribe: Subscribe) {
        let Some(conn) = self.connections.get(&id) else {
            return;
        };
        let Some(key) = conn.key else {
            return;
        };
        let client_id = conn.session.client_id().clone();
        let v5 = conn.session.version().is_v5();
        let maximum_qos = self.config.server.maximum_qos;
        let subscription_id = subscribe.properties.subscription_identifier;
        let mut codes = Vec::with_capacity(subscribe.subscriptions.len());
        let mut retained_to_send = Vec::new();
        for s in &subscribe.subscriptions {
            if !self
                .hooks
                .authorize_subscribe(client_id.as_str(), &s.filter)
            {
                codes.push(if v5 {
                    ReasonCode::NotAuthorized
                } else {
                    ReasonCode::UnspecifiedError
                });
                continue;
            }
            let Some(record) = self.sessions.get_mut(&key) else {
                return;
            };
            if !record.subscriptions.contains_key(&s.filter)
                && record.subscriptions.len() >= self.config.max_subscriptions_per_session
            {
                codes.push(if v5 {
                    ReasonCode::QuotaExceeded
                } else {
                    ReasonCode::UnspecifiedError
                });
                continue;
            }
            let mut options = s.options;
            // QoS downgraded to what the server supports ([MQTT-3.2.2-10] in 5.0).
            options.qos = options.qos.min(maximum_qos);
            let sub = Sub {
                options,
                id: subscription_id,
            };
            // An owned copy, not a view into the read buffer (see `admit`).
            record.subscriptions.insert(owned_filter(&s.filter), sub);
            let existed = self.index.insert(key, &s.filter, sub);
            codes.push(ReasonCode::granted(options.qos));
            let send_retained = match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendAtSubscribeIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
            // Retained messages are not sent for shared subscriptions ([MQTT-4.8.2] in 5.0).
            if send_retained && !s.filter.is_shared() {
                for message in self.retained.matching(now, &s.filter) {
                    let delivery = Delivery {
                        qos: options.qos,
                        retain_as_published: true,
                        subscription_ids: subscription_id.into_iter().collect(),
                    };
                    retained_to_send.push(outgoing(&message, &delivery, true));
                }
            }
        }
        if let Some(conn) = self.connections.get_mut(&id) {
            let _ = conn
                .session
                .suback(now, subscribe.packet_id, codes, AckProperties::default());
        }
        // After the SUBACK, the retained messages, with RETAIN set ([MQTT-3.3.1-8] in 3.1.1,
        // [MQTT-3.3.1-9] in 5.0).
        for message in retained_to_send {
            self.deliver(now, key, message, Token::default());
        }
    }

    fn on_unsubscribe(&mut self, now: Instant, id: ConnectionId, unsubscribe: Unsubscribe) {
        let Some(key) = self.connections.get(&id).and_then(|c| c.key) else {
            return;
        };
        let mut codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            let existed = self
                .sessions
                .get_mut(&key)
                .is_some_and(|r| r.subscriptions.remove(filter).is_some());
            self.index.remove(key, filter);
            codes.push(if existed {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        if let Some(conn) = self.connections.get_mut(&id) {
            let _ =
                conn.session
                    .unsuback(now, unsubscribe.packet_id, codes, AckProperties::default());
        }
    }

    // ----- closing, wills, expiry -----

    fn on_closed(
        &mut self,
        now: Instant,
        id: ConnectionId,
        reason: CloseReason,
        will: Option<Will>,
    ) {
        let Some(conn) = self.connections.get_mut(&id) else {
            return;
        };
        // The connection stays until its last bytes (a CONNACK refusal, a DISCONNECT) are
        // transmitted; `refresh` removes it then.
        conn.closed = true;
        if let Some(deadline) = conn.deadline.take() {
            self.connection_timers.remove(&(deadline, id));
        }
        let client_id = conn.session.client_id().clone();
        let expiry = conn.session.session_expiry();
        let state = conn.session.detach();
        let key = conn.key;
        self.events.push_back(BrokerEvent::Close {
            connection: id,
            client_id,
            reason,
        });
        let Some(key) = key else {
            return;
        };
        let Some(record) = self.sessions.get_mut(&key) else {
            return;
        };
        if record.connection == Some(id) {
            record.connection = None;
        } else {
            // Taken over: the new connection already owns the session.
            return;
        }
        record.stored = state.map(Box::new);
        let client_id = record.client_id.clone();
        if let Some(will) = will {
            let delay = will.properties.will_delay_interval.unwrap_or(0);
            if delay == 0 {
                self.publish_will(now, key, &client_id, will);
            } else {
                let due = now + Duration::from_secs(u64::from(delay));
                if let Some(record) = self.sessions.get_mut(&key) {
                    record.pending_will = Some(Box::new((will, due)));
                }
                self.record_timers.insert((due, key, RecordTimer::Will));
            }
        }
        match expiry {
            SessionExpiry::AtClose => self.end_session(now, key),
            SessionExpiry::After(d) => {
                let at = now + d;
                if let Some(record) = self.sessions.get_mut(&key) {
                    record.expires_at = Some(at);
                }
                self.record_timers.insert((at, key, RecordTimer::Expiry));
            }
            SessionExpiry::Never => {}
        }
    }

    /// Publishes a will as its client would have: authorized like a PUBLISH of that client
    /// (a will must not reach a topic its client may not publish to), retained when it says so.
    fn publish_will(&mut self, now: Instant, key: SessionKey, client_id: &MqttString, will: Will) {
        if !self
            .hooks
            .authorize_publish(client_id.as_str(), &will.topic)
        {
            self.stats.dropped_unauthorized += 1;
            return;
        }
        let message = Message {
            topic: will.topic,
            qos: will.qos,
            retain: will.retain,
            payload: will.payload,
            properties: PublishProperties {
                payload_format: will.properties.payload_format,
                message_expiry_interval: will.properties.message_expiry_interval,
                content_type: will.properties.content_type,
                response_topic: will.properties.response_topic,
                correlation_data: will.properties.correlation_data,
                user_properties: will.properties.user_properties,
                ..PublishProperties::default()
            },
        };
        self.stats.wills_published += 1;
        if message.retain {
            self.retain(now, &message);
        }
        self.route(now, Some(key), message);
    }

    fn fire_will(&mut self, now: Instant, key: SessionKey, due: Instant) {
        let Some(record) = self.sessions.get_mut(&key) else {
            return;
        };
        match record.pending_will.take() {
            Some(pending) if pending.1 == due => {
                let client_id = record.client_id.clone();
                self.publish_will(now, key, &client_id, pending.0);
            }
            other => record.pending_will = other,
        }
    }

    fn expire(&mut self, now: Instant, key: SessionKey, at: Instant) {
        let due = self
            .sessions
            .get(&key)
            .is_some_and(|r| r.connection.is_none() && r.expires_at == Some(at));
        if due {
            self.end_session(now, key);
        }
    }

    /// The session ends: a pending will goes out now ([MQTT-3.1.2-8] in 5.0: at the earlier
    /// of will delay and session end), subscriptions go, shared messages it held move to
    /// other members.
    fn end_session(&mut self, now: Instant, key: SessionKey) {
        let Some(mut record) = self.sessions.remove(&key) else {
            return;
        };
        self.by_client_id.remove(&record.client_id);
        if let Some(pending) = record.pending_will.take() {
            let (will, due) = *pending;
            self.record_timers.remove(&(due, key, RecordTimer::Will));
            self.publish_will(now, key, &record.client_id, will);
        }
        if let Some(at) = record.expires_at.take() {
            self.record_timers.remove(&(at, key, RecordTimer::Expiry));
        }
        for filter in record.subscriptions.keys() {
            self.index.remove(key, filter);
        }
        if let Some(state) = record.stored.take() {
            let mut state = state;
            for (token, message) in state.take_in_flight() {
                // An interrupted shared QoS 2 delivery is not given to another subscriber
                // ([MQTT-4.8.2-5] in 5.0); an interrupted QoS 1 one should be (section 4.8.2).
                if token.shared.is_some() && message.qos == QoS::AtLeastOnce {
                    self.reroute_shared(now, key, message, token);
                } else if message.qos > QoS::AtMostOnce {
                    self.stats.dropped_session_ended += 1;
                }
            }
            for (token, message) in state.into_abandoned() {
                if token.shared.is_some() {
                    self.reroute_shared(now, key, message, token);
                } else if message.qos > QoS::AtMostOnce {
                    self.stats.dropped_session_ended += 1;
                }
            }
        }
    }
}

/// An owned, compact copy of a decoded string.
fn owned_string(s: &MqttString) -> MqttString {
    MqttString::new(s.as_str()).unwrap_or_else(|_| s.clone())
}

/// An owned, compact copy of a decoded topic filter.
fn owned_filter(f: &TopicFilter) -> TopicFilter {
    TopicFilter::new(f.as_str()).unwrap_or_else(|_| f.clone())
}

/// The PUBLISH a subscriber gets: QoS downgraded to its subscription's ([MQTT-3.8.4-8] in
/// 5.0), RETAIN per Retain As Published ([MQTT-3.3.1-12], [MQTT-3.3.1-13]) or set for
/// retained messages sent at subscribe, its subscription identifiers, and every other property
/// passed through unchanged (user properties in order, [MQTT-3.3.2-17]).
fn outgoing(message: &Message, delivery: &Delivery, from_retained_store: bool) -> Message {
    let mut out = message.clone();
    out.qos = message.qos.min(delivery.qos);
    out.retain = if from_retained_store {
        true
    } else {
        delivery.retain_as_published && message.retain
    };
    out.properties.topic_alias = None;
    out.properties.subscription_identifiers = delivery.subscription_ids.clone();
    out
}
