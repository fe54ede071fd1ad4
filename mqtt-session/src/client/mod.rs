//! [`ClientSession`]: the client side of an MQTT session as a pure state machine.

mod config;
mod event;
mod keep_alive;
mod snapshot;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};

use bytes::BytesMut;
use mqtt_streaming_proto::{
    Auth, ConnAck, Connect, Disconnect, MqttString, Packet, PacketId, ProtocolVersion, QoS,
    ReasonCode, SubAck, Subscribe, UnsubAck, Unsubscribe, PROTOCOL_MAX_PACKET_SIZE,
};

pub use config::{AckMode, ClientConfig};
pub use event::{AbandonCause, ClientEvent};
pub use snapshot::{ClientSnapshot, OutboundFlowSnapshot, OutboundStage};

use self::keep_alive::KeepAlive;
use crate::error::{
    CloseReason, CommandError, ConnectRejected, Initiator, ProtocolViolation, Rejected,
};
use crate::message::{Message, SubscribeRequest, UnsubscribeRequest};
use crate::shared::flows::{Flows, Link, OtherIds, PeerLimits};
use crate::shared::inbound::InboundId;
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
    /// What the shared publish flows need to know.
    fn peer(&self) -> PeerLimits {
        PeerLimits {
            receive_maximum: self.receive_maximum,
            maximum_qos: self.maximum_qos,
            retain_available: self.retain_available,
            maximum_packet_size: self.maximum_packet_size,
            topic_alias_maximum: self.topic_alias_maximum,
        }
    }

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

/// SUBSCRIBE and UNSUBSCRIBE requests awaiting their acknowledgement: they share the packet
/// identifier space with the publish flows.
#[derive(Debug)]
struct Requests<T>(BTreeMap<PacketId, PendingRequest<T>>);

impl<T> OtherIds for Requests<T> {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn contains(&self, id: PacketId) -> bool {
        self.0.contains_key(&id)
    }
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
/// use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicName};
/// use mqtt_streaming_session::{ClientConfig, ClientEvent, ClientSession, Instant, Message};
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
    events: VecDeque<ClientEvent<T>>,
    flows: Flows<T>,
    link: Link,
    requests: Requests<T>,
    request_queue: VecDeque<(QueuedRequest, T)>,
    limits: ServerLimits,
    keep_alive: KeepAlive,
    /// What this connection's CONNECT asked for.
    keep_alive_requested: u16,
    clean_start: bool,
    auth_method: Option<MqttString>,
    /// The client identifier of this connection's CONNECT.
    connect_client_id: MqttString,
    /// The client identifier the session state belongs to, once a CONNACK accepted one
    /// (`None` for a new or restored session, whose state is taken to be the next one's).
    session_owner: Option<MqttString>,
}

impl<T> ClientSession<T> {
    /// A session with no connection yet.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            link: Link::new(config.max_packet_size),
            config,
            state: ConnectionState::Disconnected,
            connack_deadline: Instant::ZERO,
            events: VecDeque::new(),
            flows: Flows::default(),
            requests: Requests(BTreeMap::new()),
            request_queue: VecDeque::new(),
            limits: ServerLimits::default(),
            keep_alive: KeepAlive::default(),
            keep_alive_requested: 0,
            clean_start: true,
            auth_method: None,
            connect_client_id: MqttString::default(),
            session_owner: None,
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
        self.link.version()
    }

    /// The server's limits from the last CONNACK.
    pub fn server_limits(&self) -> &ServerLimits {
        &self.limits
    }

    /// Outbound QoS 1 and 2 publishes waiting for their final acknowledgement.
    pub fn inflight_len(&self) -> usize {
        self.flows.inflight.len()
    }

    /// Publishes and requests waiting for the window or for a connection.
    pub fn queued_len(&self) -> usize {
        self.flows.queue.len() + self.request_queue.len()
    }

    // ----- outputs -----

    /// Appends bytes for the transport to `buf`; returns how many. Never blocks and never
    /// fails; call it until it returns 0 after every input and command.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut BytesMut) -> usize {
        let n = self.link.outbox.drain_into(buf);
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
            ConnectionState::Connected => self.keep_alive.next_deadline(),
        }
    }

    // ----- inputs -----

    /// Whether [`handle_read`](Self::handle_read) would consume input now: not while there is
    /// no connection, nor while `max_transmit_buffer` bytes wait for `poll_transmit` (the peer
    /// is not reading what we owe it; answers to its packets would otherwise pile up without
    /// bound). A driver reads no more from the transport until it turns `true` again, then
    /// calls `handle_read` with what it kept.
    pub fn wants_read(&self) -> bool {
        self.state != ConnectionState::Disconnected
            && self.link.outbox.len() < self.config.max_transmit_buffer
    }

    /// Consumes every whole packet at the front of `buf` (a partial packet stays for the next
    /// read). Input that arrives while there is no connection is left untouched, and so is
    /// input beyond what fits while `max_transmit_buffer` bytes wait for `poll_transmit`
    /// (back-pressure: call again after draining).
    pub fn handle_read(&mut self, now: Instant, buf: &mut BytesMut) {
        self.link.now = now;
        while self.wants_read() {
            match self.link.decoder.decode(buf) {
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
        self.link.now = now;
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
                    self.link.push(&Packet::PingReq);
                    self.keep_alive.ping_outstanding = true;
                }
            }
        }
    }

    /// The transport is gone. Reports `Closed` unless the session had already closed.
    pub fn handle_closed(&mut self, now: Instant) {
        self.link.now = now;
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
    ///
    /// The session state belongs to the client identifier it was built under (the CONNECT's,
    /// or the one the server assigned): connected under another one, it is discarded as if
    /// the server had answered Session Present 0, its operations ending `Abandoned`
    /// ([MQTT-3.1.3-2]).
    ///
    /// # Errors
    ///
    /// While a connection is open or opening ([`CommandError::AlreadyConnected`]), or when the
    /// CONNECT cannot be encoded. The session is then unchanged and the `Connect` comes back,
    /// as it was given, in the [`ConnectRejected`].
    pub fn connect(&mut self, now: Instant, mut connect: Connect) -> Result<(), ConnectRejected> {
        self.link.now = now;
        if self.state != ConnectionState::Disconnected {
            return Err(ConnectRejected {
                error: CommandError::AlreadyConnected,
                connect,
            });
        }
        let version = connect.protocol;
        // What the filling below changes, to hand the CONNECT back unchanged on refusal.
        let given = (
            connect.properties.receive_maximum,
            connect.properties.maximum_packet_size,
            connect.properties.topic_alias_maximum,
        );
        let mut receive_maximum = self.config.receive_maximum.max(1);
        let mut max_packet_size = self.config.max_packet_size;
        let mut alias_max = 0;
        if version.is_v5() {
            let p = &mut connect.properties;
            if let Some(rm) = core::num::NonZeroU16::new(receive_maximum) {
                receive_maximum = p.receive_maximum.get_or_insert(rm).get();
            }
            if let Some(max) = core::num::NonZeroU32::new(max_packet_size) {
                max_packet_size = p.maximum_packet_size.get_or_insert(max).get();
            }
            if self.config.topic_alias_maximum > 0 && p.topic_alias_maximum.is_none() {
                p.topic_alias_maximum = Some(self.config.topic_alias_maximum);
            }
            alias_max = p.topic_alias_maximum.unwrap_or(0);
        }
        // Validate first, change the session last.
        let packet = Packet::Connect(Box::new(connect));
        match packet.encoded_len(version) {
            Ok(_) => {}
            Err(error) => {
                let Packet::Connect(mut connect) = packet else {
                    unreachable!("built as a CONNECT above")
                };
                let p = &mut connect.properties;
                (
                    p.receive_maximum,
                    p.maximum_packet_size,
                    p.topic_alias_maximum,
                ) = given;
                return Err(ConnectRejected {
                    error: error.into(),
                    connect: *connect,
                });
            }
        }
        if let Packet::Connect(connect) = &packet {
            self.keep_alive_requested = connect.keep_alive;
            self.clean_start = connect.clean_start;
            self.auth_method = connect.properties.authentication_method.clone();
            self.connect_client_id = connect.client_id.to_owned_compact();
        }

        let link = &mut self.link;
        link.outbox.clear();
        link.set_version(version);
        link.decoder.set_max_packet_size(max_packet_size);
        link.receive_maximum = receive_maximum;
        link.max_inflight = self.config.max_inflight;
        link.manual_acks = self.config.ack_mode == AckMode::Manual;
        link.inbound_aliases.reset(alias_max);
        link.outbound_aliases.reset(false, 0);
        link.open = false;
        link.push(&packet);
        // No pings before CONNACK: the CONNACK timer rules until then.
        self.keep_alive = KeepAlive::default();
        self.connack_deadline = now + self.config.connack_timeout;
        self.state = ConnectionState::Connecting;
        Ok(())
    }

    /// Publishes `message`; `token` comes back in `Published` (or `Abandoned`).
    ///
    /// Sent at once when connected and the in-flight window has room; otherwise queued in
    /// order. Refused (message and token handed back) when the queue or the transmit buffer is
    /// full, or when the message breaks a limit the server announced.
    ///
    /// A QoS 1 or 2 message (and any queued one) is kept, as given, until acknowledged: its
    /// `Bytes` are shared, not copied. A message that is a slice of a larger buffer (one
    /// received from [`poll_event`](Self::poll_event) and forwarded, say) keeps that whole
    /// buffer alive meanwhile; forward [`Message::to_owned_compact`] instead.
    pub fn publish(
        &mut self,
        now: Instant,
        message: Message,
        token: T,
    ) -> Result<(), Rejected<Message, T>> {
        self.link.now = now;
        let limits = (self.config.max_queued, self.config.max_transmit_buffer);
        self.flows.publish(
            &mut self.link,
            message,
            token,
            limits,
            &self.requests,
            &mut self.events,
        )
    }

    /// Subscribes; `token` comes back in `Subscribed` (or `Abandoned`). Sent at once when
    /// connected (SUBSCRIBE never waits for the publish window, [MQTT-3.3.4-8]); queued while
    /// disconnected.
    pub fn subscribe(
        &mut self,
        now: Instant,
        request: SubscribeRequest,
        token: T,
    ) -> Result<(), Rejected<SubscribeRequest, T>> {
        self.link.now = now;
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
        now: Instant,
        request: UnsubscribeRequest,
        token: T,
    ) -> Result<(), Rejected<UnsubscribeRequest, T>> {
        self.link.now = now;
        if request.filters.is_empty() {
            return Err(Rejected {
                error: CommandError::Encode(mqtt_streaming_proto::EncodeError::NoTopicFilters),
                command: request,
                token,
            });
        }
        self.request(request, token, QueuedRequest::Unsubscribe)
    }

    /// Acknowledges an inbound message in manual-ack mode, with `reason_code` (Success, or in
    /// MQTT 5 an error code valid for PUBACK/PUBREC). Acks may come in any order; the session
    /// sends them in arrival order ([MQTT-4.6.0-2], [MQTT-4.6.0-3]). Acks given while
    /// disconnected leave after the next CONNACK.
    pub fn ack(
        &mut self,
        now: Instant,
        id: InboundId,
        reason_code: ReasonCode,
    ) -> Result<(), CommandError> {
        self.link.now = now;
        self.flows.ack(&mut self.link, id, reason_code)
    }

    /// Sends an AUTH packet (MQTT 5 enhanced authentication): to continue an exchange the
    /// server started, or with Re-authenticate once connected. A Reason String and User
    /// Properties that would make it exceed the server's Maximum Packet Size are left out
    /// ([MQTT-3.15.2-2], [MQTT-3.15.2-3] in 5.0); an AUTH too large even without them is
    /// refused with [`CommandError::PacketTooLarge`].
    pub fn auth(&mut self, now: Instant, auth: Auth) -> Result<(), CommandError> {
        self.link.now = now;
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
        let mut packet = Packet::Auth(auth);
        // [MQTT-3.15.2-2], [MQTT-3.15.2-3] (5.0): no Reason String or User Properties beyond
        // the server's Maximum Packet Size.
        self.link.fit_to_peer(&mut packet)?;
        self.link.push(&packet);
        Ok(())
    }

    /// Ends the connection with a DISCONNECT (its reason code and properties apply to MQTT 5).
    /// The session keeps its state for a later `connect`. A Reason String and User Properties
    /// that would make the DISCONNECT exceed the server's Maximum Packet Size are left out
    /// ([MQTT-3.14.2-3], [MQTT-3.14.2-4] in 5.0).
    pub fn disconnect(&mut self, now: Instant, disconnect: Disconnect) -> Result<(), CommandError> {
        self.link.now = now;
        if self.state == ConnectionState::Disconnected {
            return Err(CommandError::NotConnected);
        }
        let code = disconnect.reason_code;
        let mut packet = Packet::Disconnect(disconnect);
        // [MQTT-3.14.2-3], [MQTT-3.14.2-4] (5.0): no Reason String or User Properties beyond
        // the server's Maximum Packet Size; the bare code always fits.
        if let Err(error) = self.link.fit_to_peer(&mut packet) {
            if !matches!(error, CommandError::PacketTooLarge { .. }) {
                return Err(error);
            }
            packet = Packet::Disconnect(Disconnect::new(code));
        }
        self.link.push(&packet);
        self.close(Initiator::Application, CloseReason::Disconnect(code));
        Ok(())
    }

    // ----- internals: requests -----

    fn check_subscribe(&self, request: &SubscribeRequest) -> Result<(), CommandError> {
        if request.subscriptions.is_empty() {
            return Err(CommandError::Encode(
                mqtt_streaming_proto::EncodeError::NoTopicFilters,
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
        let Some(packet_id) = self.flows.allocate_id(&self.requests) else {
            return Err((CommandError::QueueFull, request, token));
        };
        let (packet, kind) = request.to_packet(packet_id);
        let max = self.link.peer.maximum_packet_size;
        let size_error = match packet.encoded_len(self.version()) {
            Err(e) => Some(CommandError::Encode(e)),
            Ok(size) if size > max as usize => Some(CommandError::PacketTooLarge { size, max }),
            Ok(_) => None,
        };
        if let Some(error) = size_error {
            return Err((error, request, token));
        }
        self.link.push(&packet);
        self.requests
            .0
            .insert(packet_id, PendingRequest { kind, token });
        Ok(())
    }

    /// Sends what waits in the queues: requests first, then publishes as far as the window
    /// allows.
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
        self.flows
            .pump(&mut self.link, &self.requests, &mut self.events);
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
            // [MQTT-3.2.0-1]: the server's first packet is CONNACK.
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
        if self
            .flows
            .on_response(&mut self.link, &packet, &mut self.events)?
        {
            self.pump();
            return Ok(());
        }
        match packet {
            Packet::Publish(publish) => {
                self.flows
                    .on_publish(&mut self.link, publish, &mut self.events)?
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

    fn on_connack(&mut self, now: Instant, connack: ConnAck) {
        if connack.reason_code.is_error() {
            self.close(
                Initiator::Peer,
                CloseReason::ConnectRefused(connack.reason_code),
            );
            return;
        }
        // [MQTT-3.2.2-2]: a clean start never resumes a session.
        if self.clean_start && connack.session_present {
            let v = ProtocolViolation::UnexpectedPacket(mqtt_streaming_proto::PacketType::ConnAck);
            self.fail(v.reason_code(), CloseReason::ProtocolViolation(v));
            return;
        }
        // [MQTT-4.12.0-5], [MQTT-4.12.0-6] (5.0): the CONNACK carries the CONNECT's
        // Authentication Method, or none when the CONNECT had none.
        if self.version().is_v5() && connack.properties.authentication_method != self.auth_method {
            let v = ProtocolViolation::BadAuthentication;
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
            Some(secs) if self.version().is_v5() => secs,
            _ => self.keep_alive_requested,
        };
        self.keep_alive.start(now, keep_alive_secs);
        let link = &mut self.link;
        link.peer = self.limits.peer();
        link.outbound_aliases.reset(
            self.config.auto_topic_alias,
            self.limits.topic_alias_maximum,
        );
        link.open = true;
        self.state = ConnectionState::Connected;
        // [MQTT-3.1.3-2]: the session state belongs to one client identifier (the CONNECT's,
        // or the one the server assigned). Connected under another, the server's session is
        // not ours: what we hold for the old identifier is not re-sent into it.
        let client_id = connack
            .properties
            .assigned_client_identifier
            .as_ref()
            .filter(|_| self.version().is_v5())
            .map_or_else(
                || self.connect_client_id.clone(),
                MqttString::to_owned_compact,
            );
        let ours = self
            .session_owner
            .as_ref()
            .is_none_or(|owner| *owner == client_id);
        self.session_owner = Some(client_id);
        if connack.session_present && ours {
            self.flows.resend(&mut self.link);
        } else {
            self.flows.discard(&mut self.events);
        }
        self.events
            .push_back(ClientEvent::Connected(Box::new(connack)));
        self.flows.release_acks(&mut self.link);
        self.pump();
    }

    fn on_suback(&mut self, suback: SubAck) -> Result<(), ProtocolViolation> {
        let id = suback.packet_id;
        match self.requests.0.get(&id).map(|r| &r.kind) {
            // [MQTT-3.9.3-1]: one code per filter, in order.
            Some(RequestKind::Subscribe(n)) if *n == suback.reason_codes.len() => {}
            Some(RequestKind::Subscribe(_)) => return Err(ProtocolViolation::AckCountMismatch),
            _ => {
                return Err(ProtocolViolation::UnexpectedAck(
                    mqtt_streaming_proto::PacketType::SubAck,
                    id,
                ))
            }
        }
        if let Some(request) = self.requests.0.remove(&id) {
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
        match self.requests.0.get(&id).map(|r| &r.kind) {
            // [MQTT-3.11.3-1] (5.0): one code per filter, in order.
            Some(RequestKind::Unsubscribe(n)) if !v5 || *n == unsuback.reason_codes.len() => {}
            Some(RequestKind::Unsubscribe(_)) => return Err(ProtocolViolation::AckCountMismatch),
            _ => {
                return Err(ProtocolViolation::UnexpectedAck(
                    mqtt_streaming_proto::PacketType::UnsubAck,
                    id,
                ))
            }
        }
        if let Some(request) = self.requests.0.remove(&id) {
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
        // [MQTT-4.12.0-2] (5.0): the server continues an exchange with 0x18; 0x00 ends a
        // re-authentication (the connect exchange ends with CONNACK); it never sends 0x19.
        let code_fits = match auth.reason_code {
            ReasonCode::ContinueAuthentication => true,
            ReasonCode::Success => self.state == ConnectionState::Connected,
            _ => false,
        };
        if !code_fits {
            return Err(ProtocolViolation::UnexpectedPacket(
                mqtt_streaming_proto::PacketType::Auth,
            ));
        }
        self.events.push_back(ClientEvent::Auth(auth));
        Ok(())
    }

    // ----- internals: closing -----

    /// The peer broke the protocol: tell it why (MQTT 5) and close.
    fn fail(&mut self, code: ReasonCode, reason: CloseReason) {
        if self.version().is_v5() {
            let code = if code.is_valid_for(mqtt_streaming_proto::PacketType::Disconnect) {
                code
            } else {
                ReasonCode::UnspecifiedError
            };
            self.link.push(&Packet::Disconnect(Disconnect::new(code)));
        }
        self.close(Initiator::Session, reason);
    }

    /// Ends the connection: per-connection state goes, session state stays.
    fn close(&mut self, initiator: Initiator, reason: CloseReason) {
        self.state = ConnectionState::Disconnected;
        self.link.open = false;
        self.keep_alive.stop();
        let requests = core::mem::take(&mut self.requests.0);
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
