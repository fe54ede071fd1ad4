//! [`ClientSession`]: the client side of an MQTT session as a pure state machine.

mod config;
mod event;
mod snapshot;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use core::time::Duration;

use bytes::BytesMut;
use mqtt_proto::{
    AckProperties, Auth, ConnAck, Connect, Decoder, Disconnect, MqttString, Packet, PacketId,
    ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, SubAck, Subscribe, UnsubAck,
    Unsubscribe, PROTOCOL_MAX_PACKET_SIZE,
};

pub use config::{AckMode, ClientConfig};
pub use event::{AbandonCause, ClientEvent};
pub use snapshot::{ClientSnapshot, OutboundFlowSnapshot, OutboundStage};

use crate::error::{CloseReason, CommandError, Initiator, ProtocolViolation, Rejected};
use crate::message::{Message, SubscribeRequest, UnsubscribeRequest};
use crate::shared::inbound::{AckToSend, Arrival, Inbound, InboundId};
use crate::shared::inflight::{AckOutcome, InFlight};
use crate::shared::outbox::Outbox;
use crate::shared::packet_ids::PacketIdAllocator;
use crate::shared::topic_alias::{InboundAliases, OutboundAliases};
use crate::time::Instant;

/// Where the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// No transport: before the first `connect`, or after a close.
    Disconnected,
    /// CONNECT sent, waiting for CONNACK.
    Connecting,
    /// CONNACK accepted the connection.
    Connected,
}

/// The server's limits, from CONNACK (defaults for MQTT 3.1.x, where there are none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Receive Maximum: the server's window for our QoS 1 and 2 publishes.
    pub receive_maximum: u16,
    /// Maximum QoS.
    pub maximum_qos: QoS,
    /// Retain Available.
    pub retain_available: bool,
    /// Maximum Packet Size.
    pub maximum_packet_size: u32,
    /// Topic Alias Maximum.
    pub topic_alias_maximum: u16,
    /// Wildcard Subscription Available.
    pub wildcard_subscriptions: bool,
    /// Subscription Identifiers Available.
    pub subscription_identifiers: bool,
    /// Shared Subscription Available.
    pub shared_subscriptions: bool,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            receive_maximum: u16::MAX,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            maximum_packet_size: PROTOCOL_MAX_PACKET_SIZE,
            topic_alias_maximum: 0,
            wildcard_subscriptions: true,
            subscription_identifiers: true,
            shared_subscriptions: true,
        }
    }
}

impl ServerLimits {
    fn from_connack(connack: &ConnAck) -> Self {
        let p = &connack.properties;
        Self {
            receive_maximum: p.receive_maximum.map_or(u16::MAX, |v| v.get()),
            maximum_qos: p.maximum_qos.unwrap_or(QoS::ExactlyOnce),
            retain_available: p.retain_available.unwrap_or(true),
            maximum_packet_size: p
                .maximum_packet_size
                .map_or(PROTOCOL_MAX_PACKET_SIZE, |v| v.get()),
            topic_alias_maximum: p.topic_alias_maximum.unwrap_or(0),
            wildcard_subscriptions: p.wildcard_subscription_available.unwrap_or(true),
            subscription_identifiers: p.subscription_identifiers_available.unwrap_or(true),
            shared_subscriptions: p.shared_subscription_available.unwrap_or(true),
        }
    }
}

/// Keep-alive bookkeeping ([MQTT-3.1.2-20], section 3.1.2.10).
///
/// A PINGREQ goes out when nothing has been sent *or* nothing has been received for one
/// interval, and the connection is declared dead when nothing at all has been received for one
/// and a half intervals. Counting received traffic separately is what detects a dead server
/// while the application keeps publishing QoS 0 (sent traffic alone would never trigger a
/// ping).
#[derive(Clone, Copy, Debug, Default)]
struct KeepAlive {
    interval: Option<Duration>,
    last_sent: Instant,
    last_received: Instant,
    ping_outstanding: bool,
}

impl KeepAlive {
    fn start(&mut self, now: Instant, seconds: u16) {
        self.interval = (seconds > 0).then(|| Duration::from_secs(u64::from(seconds)));
        self.last_sent = now;
        self.last_received = now;
        self.ping_outstanding = false;
    }

    fn ping_at(&self) -> Option<Instant> {
        let interval = self.interval?;
        (!self.ping_outstanding).then(|| self.last_sent.min(self.last_received) + interval)
    }

    fn dead_at(&self) -> Option<Instant> {
        Some(self.last_received + self.interval? * 3 / 2)
    }
}

#[derive(Debug)]
enum RequestKind {
    Subscribe(usize),
    Unsubscribe(usize),
}

#[derive(Debug)]
struct PendingRequest<T> {
    kind: RequestKind,
    token: T,
}

#[derive(Debug)]
enum QueuedRequest {
    Subscribe(SubscribeRequest),
    Unsubscribe(UnsubscribeRequest),
}

/// The client side of an MQTT session (3.1, 3.1.1 or 5.0), with no I/O and no clock.
///
/// One `ClientSession` is one *session*: it outlives connections. Call
/// [`connect`](Self::connect) on a fresh transport, feed it what the transport reads, hand the
/// transport what it produces; when the transport dies, [`handle_closed`](Self::handle_closed)
/// and later `connect` again on a new transport: unacknowledged QoS 1 and 2 publishes are
/// re-sent if the server kept the session.
///
/// `T` is the caller's token for correlating commands with their outcome. Each token given to
/// [`publish`](Self::publish), [`subscribe`](Self::subscribe) or
/// [`unsubscribe`](Self::unsubscribe) comes back exactly once, in a [`ClientEvent`] (or
/// immediately, inside a [`Rejected`], if the command was refused).
///
/// # The drain rule
///
/// After every input (`handle_read`, `handle_timeout`, `handle_closed`) and every command:
/// 1. drain [`poll_transmit`](Self::poll_transmit) into the transport,
/// 2. drain [`poll_event`](Self::poll_event),
/// 3. read [`poll_timeout`](Self::poll_timeout) and call `handle_timeout` when it passes.
///
/// When a `Closed` event appears, write out what `poll_transmit` still holds (it may end with
/// the DISCONNECT that explains the close) and then close the transport.
///
/// ```
/// use bytes::BytesMut;
/// use mqtt_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicName};
/// use mqtt_session::{ClientConfig, ClientEvent, ClientSession, Instant, Message};
///
/// let mut client: ClientSession<u32> = ClientSession::new(ClientConfig::default());
/// let now = Instant::from_millis(0);
/// client.connect(now, Connect::new(ProtocolVersion::V3_1_1, MqttString::new("c1").unwrap())).unwrap();
/// let mut wire = BytesMut::new();
/// client.poll_transmit(now, &mut wire); // the CONNECT, for the transport
/// assert_eq!(wire[0], 0x10);
///
/// // The server's CONNACK arrives:
/// let mut read = BytesMut::from(&[0x20, 0x02, 0x00, 0x00][..]);
/// client.handle_read(now, &mut read);
/// assert!(matches!(client.poll_event(), Some(ClientEvent::Connected(_))));
///
/// // QoS 1 publish with token 7; the PUBACK completes it.
/// let message = Message::new(TopicName::new("t").unwrap(), QoS::AtLeastOnce, "hello");
/// client.publish(now, message, 7).unwrap();
/// wire.clear();
/// client.poll_transmit(now, &mut wire);
/// let mut read = BytesMut::from(&[0x40, 0x02, 0x00, 0x01][..]);
/// client.handle_read(now, &mut read);
/// assert!(matches!(client.poll_event(), Some(ClientEvent::Published { token: 7, .. })));
/// ```
#[derive(Debug)]
pub struct ClientSession<T> {
    config: ClientConfig,
    state: ConnectionState,
    connack_deadline: Instant,
    decoder: Decoder,
    outbox: Outbox,
    events: VecDeque<ClientEvent<T>>,
    ids: PacketIdAllocator,
    inflight: InFlight<T>,
    requests: BTreeMap<PacketId, PendingRequest<T>>,
    publish_queue: VecDeque<(Message, T)>,
    request_queue: VecDeque<(QueuedRequest, T)>,
    inbound: Inbound,
    inbound_aliases: InboundAliases,
    outbound_aliases: OutboundAliases,
    limits: ServerLimits,
    keep_alive: KeepAlive,
    /// What this connection's CONNECT promised: our inbound limits and auth method.
    receive_maximum: u16,
    keep_alive_requested: u16,
    clean_start: bool,
    auth_method: Option<MqttString>,
}

impl<T> ClientSession<T> {
    /// A session with no connection yet.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            decoder: Decoder::new(ProtocolVersion::V3_1_1)
                .with_max_packet_size(config.max_packet_size),
            receive_maximum: config.receive_maximum,
            config,
            state: ConnectionState::Disconnected,
            connack_deadline: Instant::ZERO,
            outbox: Outbox::default(),
            events: VecDeque::new(),
            ids: PacketIdAllocator::default(),
            inflight: InFlight::default(),
            requests: BTreeMap::new(),
            publish_queue: VecDeque::new(),
            request_queue: VecDeque::new(),
            inbound: Inbound::default(),
            inbound_aliases: InboundAliases::default(),
            outbound_aliases: OutboundAliases::default(),
            limits: ServerLimits::default(),
            keep_alive: KeepAlive::default(),
            keep_alive_requested: 0,
            clean_start: true,
            auth_method: None,
        }
    }

    // ----- state -----

    /// Where the connection stands.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The protocol version of the current (or last) connection.
    pub fn version(&self) -> ProtocolVersion {
        self.outbox.version()
    }

    /// The server's limits from the last CONNACK.
    pub fn server_limits(&self) -> &ServerLimits {
        &self.limits
    }

    /// Outbound QoS 1 and 2 publishes waiting for their final acknowledgement.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Publishes and requests waiting for the window or for a connection.
    pub fn queued_len(&self) -> usize {
        self.publish_queue.len() + self.request_queue.len()
    }

    fn window(&self) -> usize {
        usize::from(self.config.max_inflight.min(self.limits.receive_maximum)).max(1)
    }

    fn ids_in_use(&self) -> usize {
        self.inflight.len() + self.requests.len()
    }

    fn allocate_id(&mut self) -> Option<PacketId> {
        let (inflight, requests) = (&self.inflight, &self.requests);
        self.ids.allocate(inflight.len() + requests.len(), |id| {
            inflight.contains(id) || requests.contains_key(&id)
        })
    }

    // ----- outputs -----

    /// Appends bytes for the transport to `buf`; returns how many. Never blocks and never
    /// fails; call it until it returns 0 after every input and command.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut BytesMut) -> usize {
        let n = self.outbox.drain_into(buf);
        if n > 0 {
            self.keep_alive.last_sent = now;
        }
        n
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ClientEvent<T>> {
        self.events.pop_front()
    }

    /// The earliest time at which [`handle_timeout`](Self::handle_timeout) has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            ConnectionState::Disconnected => None,
            ConnectionState::Connecting => Some(self.connack_deadline),
            ConnectionState::Connected => {
                match (self.keep_alive.ping_at(), self.keep_alive.dead_at()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    // ----- inputs -----

    /// Consumes every whole packet at the front of `buf` (a partial packet stays for the next
    /// read). Input that arrives while there is no connection is left untouched.
    pub fn handle_read(&mut self, now: Instant, buf: &mut BytesMut) {
        while self.state != ConnectionState::Disconnected {
            match self.decoder.decode(buf) {
                Ok(Some(packet)) => {
                    self.keep_alive.last_received = now;
                    self.handle_packet(now, packet);
                }
                Ok(None) => return,
                Err(error) => {
                    let code = error.reason_code();
                    self.fail(code, CloseReason::Malformed(error));
                    return;
                }
            }
        }
    }

    /// Handles expired timers. Harmless when called early or more than once.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            ConnectionState::Disconnected => {}
            ConnectionState::Connecting => {
                if now >= self.connack_deadline {
                    self.close(Initiator::Session, CloseReason::ConnAckTimeout);
                }
            }
            ConnectionState::Connected => {
                if self.keep_alive.dead_at().is_some_and(|t| now >= t) {
                    self.close(Initiator::Session, CloseReason::KeepAliveTimeout);
                } else if self.keep_alive.ping_at().is_some_and(|t| now >= t) {
                    self.push(&Packet::PingReq);
                    self.keep_alive.ping_outstanding = true;
                }
            }
        }
    }

    /// The transport is gone. Reports `Closed` unless the session had already closed.
    pub fn handle_closed(&mut self, _now: Instant) {
        if self.state != ConnectionState::Disconnected {
            self.close(Initiator::Transport, CloseReason::TransportClosed);
        }
    }

    // ----- commands -----

    /// Starts a connection on a fresh transport by queueing `connect`.
    ///
    /// The CONNECT is sent as given, except that MQTT 5 limits left unset are filled from the
    /// [`ClientConfig`] (Receive Maximum, Maximum Packet Size, Topic Alias Maximum), and limits
    /// that are set become the session's limits for this connection. Anything still in the
    /// transmit buffer from an earlier transport is dropped.
    pub fn connect(&mut self, now: Instant, mut connect: Connect) -> Result<(), CommandError> {
        if self.state != ConnectionState::Disconnected {
            return Err(CommandError::AlreadyConnected);
        }
        let version = connect.protocol;
        let mut max_packet_size = self.config.max_packet_size;
        let mut alias_max = 0;
        self.receive_maximum = self.config.receive_maximum.max(1);
        if version.is_v5() {
            let p = &mut connect.properties;
            self.receive_maximum = p
                .receive_maximum
                .get_or_insert(
                    core::num::NonZeroU16::new(self.receive_maximum)
                        .unwrap_or(core::num::NonZeroU16::MAX),
                )
                .get();
            if let Some(max) = core::num::NonZeroU32::new(max_packet_size) {
                max_packet_size = p.maximum_packet_size.get_or_insert(max).get();
            }
            if self.config.topic_alias_maximum > 0 && p.topic_alias_maximum.is_none() {
                p.topic_alias_maximum = Some(self.config.topic_alias_maximum);
            }
            alias_max = p.topic_alias_maximum.unwrap_or(0);
        }
        self.keep_alive_requested = connect.keep_alive;
        let packet = Packet::Connect(Box::new(connect));
        packet.encoded_len(version)?;
        self.outbox.clear();
        self.outbox.set_version(version);
        self.decoder = Decoder::new(version).with_max_packet_size(max_packet_size);
        self.inbound_aliases.reset(alias_max);
        self.outbound_aliases.reset(false, 0);
        if let Packet::Connect(connect) = &packet {
            self.clean_start = connect.clean_start;
            self.auth_method = connect.properties.authentication_method.clone();
        }
        // No pings before CONNACK: the CONNACK timer rules until then.
        self.keep_alive = KeepAlive::default();
        self.connack_deadline = now + self.config.connack_timeout;
        self.push(&packet);
        self.state = ConnectionState::Connecting;
        Ok(())
    }

    /// Publishes `message`; `token` comes back in `Published` (or `Abandoned`).
    ///
    /// Sent at once when connected and the in-flight window has room; otherwise queued in
    /// order. Refused (message and token handed back) when the queue or the transmit buffer is
    /// full, or when the message breaks a limit the server announced.
    pub fn publish(
        &mut self,
        _now: Instant,
        message: Message,
        token: T,
    ) -> Result<(), Rejected<Message, T>> {
        let reject = |error, command, token| {
            Err(Rejected {
                error,
                command,
                token,
            })
        };
        if let Err(error) = self.check_publish(&message) {
            return reject(error, message, token);
        }
        if self.publish_queue.len() >= self.config.max_queued
            || self.outbox.len() >= self.config.max_transmit_buffer
        {
            return reject(CommandError::QueueFull, message, token);
        }
        if self.state == ConnectionState::Connected
            && self.publish_queue.is_empty()
            && self.can_send(message.qos)
        {
            return match self.send_publish(message, token) {
                Ok(()) => Ok(()),
                Err((error, command, token)) => reject(error, command, token),
            };
        }
        self.publish_queue.push_back((message, token));
        Ok(())
    }

    /// Subscribes; `token` comes back in `Subscribed` (or `Abandoned`). Sent at once when
    /// connected (SUBSCRIBE never waits for the publish window, [MQTT-3.3.4-8]); queued while
    /// disconnected.
    pub fn subscribe(
        &mut self,
        _now: Instant,
        request: SubscribeRequest,
        token: T,
    ) -> Result<(), Rejected<SubscribeRequest, T>> {
        if let Err(error) = self.check_subscribe(&request) {
            return Err(Rejected {
                error,
                command: request,
                token,
            });
        }
        self.request(request, token, QueuedRequest::Subscribe)
    }

    /// Unsubscribes; `token` comes back in `Unsubscribed` (or `Abandoned`).
    pub fn unsubscribe(
        &mut self,
        _now: Instant,
        request: UnsubscribeRequest,
        token: T,
    ) -> Result<(), Rejected<UnsubscribeRequest, T>> {
        if request.filters.is_empty() {
            return Err(Rejected {
                error: CommandError::Encode(mqtt_proto::EncodeError::NoTopicFilters),
                command: request,
                token,
            });
        }
        self.request(request, token, QueuedRequest::Unsubscribe)
    }

    /// Acknowledges an inbound message in manual-ack mode, with `reason_code` (Success, or in
    /// MQTT 5 an error code valid for PUBACK/PUBREC). Acks may come in any order; the session
    /// sends them in arrival order.
    pub fn ack(
        &mut self,
        _now: Instant,
        id: InboundId,
        reason_code: ReasonCode,
    ) -> Result<(), CommandError> {
        let valid = reason_code == ReasonCode::Success
            || (self.version().is_v5()
                && reason_code.is_valid_for(mqtt_proto::PacketType::PubAck)
                && reason_code.is_valid_for(mqtt_proto::PacketType::PubRec));
        if !valid {
            return Err(CommandError::Invalid(
                "reason code not valid for PUBACK/PUBREC in this version",
            ));
        }
        self.inbound
            .ack(id, reason_code)
            .map_err(|()| CommandError::UnknownAck)?;
        if self.state == ConnectionState::Connected {
            self.release_acks();
        }
        Ok(())
    }

    /// Sends an AUTH packet (MQTT 5 enhanced authentication): to continue an exchange the
    /// server started, or with Re-authenticate once connected.
    pub fn auth(&mut self, _now: Instant, auth: Auth) -> Result<(), CommandError> {
        if !self.version().is_v5() {
            return Err(CommandError::RequiresV5);
        }
        if self.state == ConnectionState::Disconnected {
            return Err(CommandError::NotConnected);
        }
        if self.auth_method.is_none() {
            return Err(CommandError::Invalid(
                "AUTH needs an Authentication Method in CONNECT",
            ));
        }
        let packet = Packet::Auth(auth);
        packet.encoded_len(self.version())?;
        self.push(&packet);
        Ok(())
    }

    /// Ends the connection with a DISCONNECT (its reason code and properties apply to MQTT 5).
    /// The session keeps its state for a later `connect`.
    pub fn disconnect(
        &mut self,
        _now: Instant,
        disconnect: Disconnect,
    ) -> Result<(), CommandError> {
        if self.state == ConnectionState::Disconnected {
            return Err(CommandError::NotConnected);
        }
        let packet = Packet::Disconnect(disconnect);
        packet.encoded_len(self.version())?;
        self.push(&packet);
        let Packet::Disconnect(d) = packet else {
            return Ok(());
        };
        self.close(
            Initiator::Application,
            CloseReason::Disconnect(d.reason_code),
        );
        Ok(())
    }

    // ----- internals: sending -----

    /// Encodes a packet the session built itself (so it is valid by construction).
    fn push(&mut self, packet: &Packet) {
        let result = self.outbox.push(packet);
        debug_assert!(
            result.is_ok(),
            "session built an unencodable packet: {result:?}"
        );
    }

    fn can_send(&self, qos: QoS) -> bool {
        qos == QoS::AtMostOnce
            || (self.inflight.len() < self.window() && self.ids_in_use() < usize::from(u16::MAX))
    }

    /// Checks a message against what the server announced and what the wire can carry.
    fn check_publish(&self, message: &Message) -> Result<(), CommandError> {
        if message.topic.is_empty() && message.properties.topic_alias.is_none() {
            return Err(CommandError::Encode(
                mqtt_proto::EncodeError::EmptyTopicWithoutAlias,
            ));
        }
        if self.state != ConnectionState::Connected {
            return Ok(());
        }
        if message.qos > self.limits.maximum_qos {
            return Err(CommandError::QoSNotSupported);
        }
        if message.retain && !self.limits.retain_available {
            return Err(CommandError::RetainNotSupported);
        }
        if let Some(alias) = message.properties.topic_alias {
            if alias.get() > self.limits.topic_alias_maximum {
                return Err(CommandError::Invalid(
                    "topic alias above the server's maximum",
                ));
            }
        }
        let size = publish_size(message, self.version())?;
        if size > self.limits.maximum_packet_size as usize {
            return Err(CommandError::PacketTooLarge {
                size,
                max: self.limits.maximum_packet_size,
            });
        }
        Ok(())
    }

    fn check_subscribe(&self, request: &SubscribeRequest) -> Result<(), CommandError> {
        if request.subscriptions.is_empty() {
            return Err(CommandError::Encode(
                mqtt_proto::EncodeError::NoTopicFilters,
            ));
        }
        if self.state != ConnectionState::Connected {
            return Ok(());
        }
        let l = &self.limits;
        for s in &request.subscriptions {
            if !l.wildcard_subscriptions && s.filter.has_wildcards() {
                return Err(CommandError::WildcardSubscriptionsNotSupported);
            }
            if !l.shared_subscriptions && s.filter.is_shared() {
                return Err(CommandError::SharedSubscriptionsNotSupported);
            }
        }
        if !l.subscription_identifiers && request.properties.subscription_identifier.is_some() {
            return Err(CommandError::SubscriptionIdentifiersNotSupported);
        }
        Ok(())
    }

    /// Sends a message now. The caller checked the window.
    fn send_publish(
        &mut self,
        message: Message,
        token: T,
    ) -> Result<(), (CommandError, Message, T)> {
        let qos = message.qos;
        let id = if qos == QoS::AtMostOnce {
            PacketId::MIN
        } else {
            match self.allocate_id() {
                Some(id) => id,
                None => return Err((CommandError::QueueFull, message, token)),
            }
        };
        let publish = message.into_publish(id);
        if let Err(e) = self.encode_publish(&publish) {
            return Err((
                CommandError::Encode(e),
                Message::from_publish(publish),
                token,
            ));
        }
        if qos == QoS::AtMostOnce {
            self.events.push_back(ClientEvent::Published {
                token,
                reason_code: ReasonCode::Success,
                properties: AckProperties::default(),
            });
        } else {
            self.inflight.insert(publish, token);
        }
        Ok(())
    }

    /// Encodes a PUBLISH, through an automatic topic alias when enabled.
    fn encode_publish(&mut self, publish: &Publish) -> Result<(), mqtt_proto::EncodeError> {
        let mut aliased = publish.clone();
        if self.outbound_aliases.apply(&mut aliased) {
            self.outbox.push_publish(&aliased)
        } else {
            self.outbox.push_publish(publish)
        }
    }

    /// Sends a request now when connected, or queues it.
    fn request<R: RequestCommand>(
        &mut self,
        request: R,
        token: T,
        queued: fn(R) -> QueuedRequest,
    ) -> Result<(), Rejected<R, T>> {
        if self.state == ConnectionState::Connected && self.request_queue.is_empty() {
            return self
                .send_request(request, token)
                .map_err(|(error, command, token)| Rejected {
                    error,
                    command,
                    token,
                });
        }
        if self.request_queue.len() >= self.config.max_queued {
            return Err(Rejected {
                error: CommandError::QueueFull,
                command: request,
                token,
            });
        }
        self.request_queue.push_back((queued(request), token));
        Ok(())
    }

    fn send_request<R: RequestCommand>(
        &mut self,
        request: R,
        token: T,
    ) -> Result<(), (CommandError, R, T)> {
        let Some(packet_id) = self.allocate_id() else {
            return Err((CommandError::QueueFull, request, token));
        };
        let (packet, kind) = request.to_packet(packet_id);
        let size_error = match packet.encoded_len(self.version()) {
            Err(e) => Some(CommandError::Encode(e)),
            Ok(size) if size > self.limits.maximum_packet_size as usize => {
                Some(CommandError::PacketTooLarge {
                    size,
                    max: self.limits.maximum_packet_size,
                })
            }
            Ok(_) => None,
        };
        if let Some(error) = size_error {
            return Err((error, request, token));
        }
        self.push(&packet);
        self.requests
            .insert(packet_id, PendingRequest { kind, token });
        Ok(())
    }

    /// Sends what waits in the queues, as far as the window allows.
    fn pump(&mut self) {
        while self.state == ConnectionState::Connected {
            let Some((request, token)) = self.request_queue.pop_front() else {
                break;
            };
            let result = match request {
                QueuedRequest::Subscribe(r) => match self.check_subscribe(&r) {
                    Ok(()) => self
                        .send_request(r, token)
                        .map_err(|(e, r, t)| (e, QueuedRequest::Subscribe(r), t)),
                    Err(e) => Err((e, QueuedRequest::Subscribe(r), token)),
                },
                QueuedRequest::Unsubscribe(r) => self
                    .send_request(r, token)
                    .map_err(|(e, r, t)| (e, QueuedRequest::Unsubscribe(r), t)),
            };
            if let Err((error, request, token)) = result {
                if error == CommandError::QueueFull {
                    self.request_queue.push_front((request, token));
                    break;
                }
                self.events.push_back(ClientEvent::Abandoned {
                    token,
                    cause: AbandonCause::Refused(error),
                    message: None,
                });
            }
        }
        while self.state == ConnectionState::Connected {
            let Some((message, _)) = self.publish_queue.front() else {
                break;
            };
            if !self.can_send(message.qos) {
                break;
            }
            let Some((message, token)) = self.publish_queue.pop_front() else {
                break;
            };
            let result = match self.check_publish(&message) {
                Ok(()) => self.send_publish(message, token),
                Err(e) => Err((e, message, token)),
            };
            if let Err((error, message, token)) = result {
                self.events.push_back(ClientEvent::Abandoned {
                    token,
                    cause: AbandonCause::Refused(error),
                    message: Some(message),
                });
            }
        }
    }

    fn send_ack(outbox: &mut Outbox, ack: AckToSend) {
        let packet = match ack {
            AckToSend::PubAck(id, code) => Packet::PubAck(PubResponse {
                reason_code: code,
                ..PubResponse::new(id)
            }),
            AckToSend::PubRec(id, code) => Packet::PubRec(PubResponse {
                reason_code: code,
                ..PubResponse::new(id)
            }),
        };
        let result = outbox.push(&packet);
        debug_assert!(result.is_ok());
    }

    fn release_acks(&mut self) {
        let outbox = &mut self.outbox;
        self.inbound.release(&mut |ack| Self::send_ack(outbox, ack));
    }

    // ----- internals: receiving -----

    fn handle_packet(&mut self, now: Instant, packet: Packet) {
        let result = match (self.state, packet) {
            (ConnectionState::Connecting, Packet::ConnAck(connack)) => {
                self.on_connack(now, *connack);
                Ok(())
            }
            (_, Packet::Auth(auth)) => self.on_auth(auth),
            (ConnectionState::Connected, packet) => self.on_connected_packet(packet),
            (_, packet) => Err(ProtocolViolation::UnexpectedPacket(packet.packet_type())),
        };
        if let Err(violation) = result {
            self.fail(
                violation.reason_code(),
                CloseReason::ProtocolViolation(violation),
            );
        }
    }

    fn on_connected_packet(&mut self, packet: Packet) -> Result<(), ProtocolViolation> {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish)?,
            Packet::PubAck(r) => {
                let outcome = self.inflight.on_puback(r.packet_id, r.reason_code)?;
                self.complete(outcome, r.packet_id, r.properties);
            }
            Packet::PubRec(r) => {
                let outcome = self.inflight.on_pubrec(r.packet_id, r.reason_code)?;
                self.complete(outcome, r.packet_id, r.properties);
            }
            Packet::PubRel(r) => {
                let known = self.inbound.on_pubrel(r.packet_id)?;
                // [MQTT-4.3.3-11]: answer with PUBCOMP; in MQTT 5 an unknown id gets 0x92.
                let code = if known {
                    ReasonCode::Success
                } else {
                    ReasonCode::PacketIdentifierNotFound
                };
                self.push(&Packet::PubComp(PubResponse {
                    reason_code: code,
                    ..PubResponse::new(r.packet_id)
                }));
            }
            Packet::PubComp(r) => {
                let outcome = self.inflight.on_pubcomp(r.packet_id, r.reason_code)?;
                self.complete(outcome, r.packet_id, r.properties);
            }
            Packet::SubAck(suback) => self.on_suback(suback)?,
            Packet::UnsubAck(unsuback) => self.on_unsuback(unsuback)?,
            Packet::PingResp => self.keep_alive.ping_outstanding = false,
            Packet::Disconnect(d) if self.version().is_v5() => {
                self.close(Initiator::Peer, CloseReason::Disconnect(d.reason_code));
            }
            other => return Err(ProtocolViolation::UnexpectedPacket(other.packet_type())),
        }
        self.pump();
        Ok(())
    }

    fn complete(&mut self, outcome: AckOutcome<T>, id: PacketId, properties: AckProperties) {
        match outcome {
            AckOutcome::Completed(token, reason_code) => {
                self.events.push_back(ClientEvent::Published {
                    token,
                    reason_code,
                    properties,
                });
            }
            // [MQTT-4.3.3-4]: PUBREC accepted, release with PUBREL.
            AckOutcome::SendPubRel => self.push(&Packet::PubRel(PubResponse::new(id))),
        }
    }

    fn on_connack(&mut self, now: Instant, connack: ConnAck) {
        if connack.reason_code.is_error() {
            self.close(
                Initiator::Peer,
                CloseReason::ConnectRefused(connack.reason_code),
            );
            return;
        }
        // [MQTT-3.2.2-2] (3.1.1) / [MQTT-3.2.2-2] (5.0): a clean start never resumes a session.
        if self.clean_start && connack.session_present {
            let v = ProtocolViolation::UnexpectedPacket(mqtt_proto::PacketType::ConnAck);
            self.fail(v.reason_code(), CloseReason::ProtocolViolation(v));
            return;
        }
        self.limits = if self.version().is_v5() {
            ServerLimits::from_connack(&connack)
        } else {
            ServerLimits::default()
        };
        let keep_alive_secs = match connack.properties.server_keep_alive {
            // [MQTT-3.1.2-21]: the server's keep alive replaces ours.
            Some(secs) => secs,
            None => self.keep_alive_requested,
        };
        self.keep_alive.start(now, keep_alive_secs);
        self.outbound_aliases.reset(
            self.config.auto_topic_alias,
            self.limits.topic_alias_maximum,
        );
        self.state = ConnectionState::Connected;
        if connack.session_present {
            self.resend();
        } else {
            self.discard_session();
        }
        self.events
            .push_back(ClientEvent::Connected(Box::new(connack)));
        self.release_acks();
        self.pump();
    }

    /// Re-sends unacknowledged PUBLISHes (DUP set, same identifiers) and PUBRELs in their
    /// original order ([MQTT-4.4.0-1], [MQTT-4.6.0-1]).
    fn resend(&mut self) {
        for id in self.inflight.resend_order() {
            let Some(flow) = self.inflight.get(id) else {
                continue;
            };
            let packet = match flow.stage {
                crate::shared::inflight::Stage::AwaitingPubComp => {
                    Packet::PubRel(PubResponse::new(id))
                }
                _ => {
                    let mut publish = flow.publish.clone();
                    publish.dup = true;
                    Packet::Publish(publish)
                }
            };
            self.push(&packet);
        }
    }

    /// The server has no session: abandon what can no longer complete and start afresh.
    fn discard_session(&mut self) {
        for flow in self.inflight.take_all() {
            self.events.push_back(ClientEvent::Abandoned {
                token: flow.token,
                cause: AbandonCause::SessionLost,
                message: Some(Message::from_publish(flow.publish)),
            });
        }
        self.inbound.reset();
        self.ids.reset();
    }

    fn on_publish(&mut self, mut publish: Publish) -> Result<(), ProtocolViolation> {
        if self.version().is_v5() {
            self.inbound_aliases.resolve(&mut publish)?;
        }
        let Some(id) = publish.qos_pid.packet_id() else {
            self.events
                .push_back(ClientEvent::Message { publish, ack: None });
            return Ok(());
        };
        let manual = self.config.ack_mode == AckMode::Manual;
        let outbox = &mut self.outbox;
        let arrival = self.inbound.on_publish(
            id,
            publish.qos_pid.qos(),
            self.receive_maximum,
            manual,
            &mut |ack| Self::send_ack(outbox, ack),
        )?;
        match arrival {
            Arrival::Deliver(ack) => self.events.push_back(ClientEvent::Message { publish, ack }),
            Arrival::Duplicate {
                resend_pubrec: true,
            } => {
                self.push(&Packet::PubRec(PubResponse::new(id)));
            }
            Arrival::Duplicate {
                resend_pubrec: false,
            } => {}
        }
        Ok(())
    }

    fn on_suback(&mut self, suback: SubAck) -> Result<(), ProtocolViolation> {
        let id = suback.packet_id;
        match self.requests.get(&id) {
            Some(PendingRequest {
                kind: RequestKind::Subscribe(n),
                ..
            }) if *n == suback.reason_codes.len() => {}
            Some(PendingRequest {
                kind: RequestKind::Subscribe(_),
                ..
            }) => return Err(ProtocolViolation::AckCountMismatch),
            _ => {
                return Err(ProtocolViolation::UnexpectedAck(
                    mqtt_proto::PacketType::SubAck,
                    id,
                ))
            }
        }
        if let Some(request) = self.requests.remove(&id) {
            self.events.push_back(ClientEvent::Subscribed {
                token: request.token,
                suback,
            });
        }
        Ok(())
    }

    fn on_unsuback(&mut self, unsuback: UnsubAck) -> Result<(), ProtocolViolation> {
        let id = unsuback.packet_id;
        let v5 = self.version().is_v5();
        match self.requests.get(&id) {
            Some(PendingRequest {
                kind: RequestKind::Unsubscribe(n),
                ..
            }) if !v5 || *n == unsuback.reason_codes.len() => {}
            Some(PendingRequest {
                kind: RequestKind::Unsubscribe(_),
                ..
            }) => return Err(ProtocolViolation::AckCountMismatch),
            _ => {
                return Err(ProtocolViolation::UnexpectedAck(
                    mqtt_proto::PacketType::UnsubAck,
                    id,
                ))
            }
        }
        if let Some(request) = self.requests.remove(&id) {
            self.events.push_back(ClientEvent::Unsubscribed {
                token: request.token,
                unsuback,
            });
        }
        Ok(())
    }

    fn on_auth(&mut self, auth: Auth) -> Result<(), ProtocolViolation> {
        let method_matches = match (&self.auth_method, &auth.properties.authentication_method) {
            (Some(ours), Some(theirs)) => ours == theirs,
            _ => false,
        };
        if !method_matches {
            return Err(ProtocolViolation::BadAuthentication);
        }
        self.events.push_back(ClientEvent::Auth(auth));
        Ok(())
    }

    // ----- internals: closing -----

    /// The peer broke the protocol: tell it why (MQTT 5) and close.
    fn fail(&mut self, code: ReasonCode, reason: CloseReason) {
        if self.version().is_v5() {
            let code = if code.is_valid_for(mqtt_proto::PacketType::Disconnect) {
                code
            } else {
                ReasonCode::UnspecifiedError
            };
            self.push(&Packet::Disconnect(Disconnect::new(code)));
        }
        self.close(Initiator::Session, reason);
    }

    /// Ends the connection: per-connection state goes, session state stays.
    fn close(&mut self, initiator: Initiator, reason: CloseReason) {
        self.state = ConnectionState::Disconnected;
        self.keep_alive.interval = None;
        let requests = core::mem::take(&mut self.requests);
        for (_, request) in requests {
            self.events.push_back(ClientEvent::Abandoned {
                token: request.token,
                cause: AbandonCause::ConnectionLost,
                message: None,
            });
        }
        self.events
            .push_back(ClientEvent::Closed { initiator, reason });
    }
}

/// Encoded size of the PUBLISH that would carry `message` (with the largest packet id).
fn publish_size(message: &Message, version: ProtocolVersion) -> Result<usize, CommandError> {
    let publish = Publish {
        dup: false,
        qos_pid: mqtt_proto::QosPid::new(message.qos, PacketId::MAX),
        retain: message.retain,
        topic: message.topic.clone(),
        properties: message.properties.clone(),
        payload: message.payload.clone(),
    };
    Ok(Packet::Publish(publish).encoded_len(version)?)
}

/// A SUBSCRIBE or UNSUBSCRIBE request, turned into its packet once it has an identifier.
trait RequestCommand {
    fn to_packet(&self, packet_id: PacketId) -> (Packet, RequestKind);
}

impl RequestCommand for SubscribeRequest {
    fn to_packet(&self, packet_id: PacketId) -> (Packet, RequestKind) {
        let packet = Packet::Subscribe(Subscribe {
            packet_id,
            subscriptions: self.subscriptions.clone(),
            properties: self.properties.clone(),
        });
        (packet, RequestKind::Subscribe(self.subscriptions.len()))
    }
}

impl RequestCommand for UnsubscribeRequest {
    fn to_packet(&self, packet_id: PacketId) -> (Packet, RequestKind) {
        let packet = Packet::Unsubscribe(Unsubscribe {
            packet_id,
            filters: self.filters.clone(),
            properties: self.properties.clone(),
        });
        (packet, RequestKind::Unsubscribe(self.filters.len()))
    }
}
