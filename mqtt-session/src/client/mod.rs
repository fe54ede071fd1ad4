//! [`ClientSession`]: the client side of an MQTT session as a pure state machine.

mod config;
mod event;
mod snapshot;

use alloc::boxed::Box;
use alloc::collections::VecDeque;

use bytes::BytesMut;
use mqtt_streaming_proto::{
    Auth, ConnAck, Connect, DecodeError, Disconnect, MqttString, Packet, PacketId, PacketType,
    ProtocolVersion, ReasonCode, Subscribe, Unsubscribe,
};

pub use config::ClientConfig;
pub use event::ClientEvent;
pub use snapshot::{ClientSnapshot, OutboundFlowSnapshot};

use crate::error::{
    CloseReason, CommandError, ConnectRejected, Initiator, ProtocolViolation, Rejected,
};
use crate::limits::PeerLimits;
use crate::message::{Message, SubscribeRequest, UnsubscribeRequest};
use crate::shared::flows::AbandonCause;
use crate::shared::inbound::{AckMode, InboundId};
use crate::shared::inflight::Pending;
use crate::shared::keep_alive::KeepAlive;
use crate::shared::session_core::{self, Admission, Core, Role};
use crate::time::Instant;
use crate::transmit::TransmitBuf;

/// Where the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// No transport: before the first `connect`, or after a close.
    Disconnected,
    /// CONNECT sent, waiting for CONNACK.
    Connecting,
    /// CONNACK accepted the connection.
    Connected,
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
    /// Link, flows (with the in-flight table SUBSCRIBE and UNSUBSCRIBE share with the
    /// publishes), events, keep alive, and the server's limits (`core.link.peer`).
    core: Core<T, ClientEvent<T>>,
    config: ClientConfig,
    state: ConnectionState,
    connack_deadline: Instant,
    /// Requests made while disconnected, sent after the next CONNACK.
    request_queue: VecDeque<(QueuedRequest, T)>,
    /// What this connection's CONNECT asked for.
    keep_alive_requested: u16,
    clean_start: bool,
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
            core: Core::new(config.max_packet_size),
            config,
            state: ConnectionState::Disconnected,
            connack_deadline: Instant::ZERO,
            request_queue: VecDeque::new(),
            keep_alive_requested: 0,
            clean_start: true,
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
        self.core.version()
    }

    /// The server's limits from the last CONNACK (the defaults before one, and for MQTT
    /// 3.1.x, which has none).
    pub fn server_limits(&self) -> &PeerLimits {
        &self.core.link.peer
    }

    /// Outbound QoS 1 and 2 publishes waiting for their final acknowledgement.
    pub fn inflight_len(&self) -> usize {
        self.core.flows.inflight_publishes()
    }

    /// Acknowledgements the server owes for packets this connection has handed out: one
    /// PUBACK, PUBREC or PUBCOMP for each outbound QoS 1 or 2 publish in flight, not counting
    /// the publishes a resumed session has yet to re-send ([MQTT-4.4.0-1]). Each is at least 4
    /// bytes on the wire, so once what [`poll_transmit`](Self::poll_transmit) returned is
    /// written, at least four times this many bytes are still to come. 0 while not
    /// connected.
    ///
    /// An I/O driver may use it to wait for several acknowledgements per read (the tokio
    /// adapter sets the socket's receive low-water mark from it); input that is not owed (a
    /// PINGRESP, an incoming PUBLISH) only arrives sooner than it.
    pub fn acknowledgements_owed(&self) -> usize {
        if self.state != ConnectionState::Connected {
            return 0;
        }
        self.core.flows.sent_publishes()
    }

    /// Publishes and requests waiting for the window or for a connection.
    pub fn queued_len(&self) -> usize {
        self.core.flows.queue_len() + self.request_queue.len()
    }

    /// Bytes (topic and payload) of the publishes waiting for the window or for a connection,
    /// the figure [`ClientConfig::max_queued_bytes`] bounds.
    pub fn queued_bytes(&self) -> usize {
        self.core.flows.queued_bytes()
    }

    /// Whether queued publishes are held back ([`hold_queue`](Self::hold_queue)).
    pub fn is_queue_held(&self) -> bool {
        self.core.flows.held
    }

    // ----- outputs -----

    /// Appends bytes for the transport to `buf`; returns how many. Never blocks and never
    /// fails; call it until it returns 0 after every input and command.
    #[must_use = "call poll_transmit until it returns 0"]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut BytesMut) -> usize {
        self.core.poll_transmit(now, buf)
    }

    /// [`poll_transmit`](Self::poll_transmit) without a copy: when `buf` is empty, it and the
    /// transmit buffer are exchanged (the encoded bytes, payloads included, are not copied);
    /// otherwise the bytes are appended as `poll_transmit` does.
    ///
    /// Give it only a buffer that owns its allocation alone, such as a driver's write buffer
    /// that is written out and handed back empty: the session keeps it to encode the next
    /// packets into (its capacity until [`shrink_idle`](Self::shrink_idle)), so a buffer that
    /// shares its allocation with packets decoded from it would stay pinned.
    #[must_use = "call poll_transmit_swap until it returns 0"]
    pub fn poll_transmit_swap(&mut self, now: Instant, buf: &mut BytesMut) -> usize {
        self.core.poll_transmit_swap(now, buf)
    }

    /// [`poll_transmit`](Self::poll_transmit) into a [`TransmitBuf`], for a transport that
    /// writes segments (vectored I/O): the payload of a PUBLISH of at least
    /// [`SEGMENT_FROM`](crate::SEGMENT_FROM) bytes is handed over as its own segment (the
    /// message's `Bytes`, not copied), and the packets around it stay copied together. When
    /// `buf` is empty it and the transmit buffer are exchanged, so give it only a buffer that
    /// owns its allocation alone (as for [`poll_transmit_swap`](Self::poll_transmit_swap)).
    /// The bytes are those `poll_transmit` gives, in the same order.
    #[must_use = "call poll_transmit_buf until it returns 0"]
    pub fn poll_transmit_buf(&mut self, now: Instant, buf: &mut TransmitBuf) -> usize {
        self.core.poll_transmit_buf(now, buf)
    }

    /// The next event, if any.
    #[must_use = "events carry tokens and messages that are lost if dropped unread"]
    pub fn poll_event(&mut self) -> Option<ClientEvent<T>> {
        self.core.poll_event()
    }

    /// Gives back the memory of internal queues and tables that are empty (events, queued
    /// publishes and requests, the in-flight table, the transmit buffer), which otherwise keep
    /// their capacity for reuse. For a driver about to wait while nothing is under way, so
    /// that an idle client holds none of it; a queue that fills again allocates again.
    pub fn shrink_idle(&mut self) {
        if self.request_queue.is_empty() {
            self.request_queue = VecDeque::new();
        }
        self.core.shrink_all_idle();
    }

    /// The earliest time at which [`handle_timeout`](Self::handle_timeout) has work to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            ConnectionState::Disconnected => None,
            ConnectionState::Connecting => Some(self.connack_deadline),
            ConnectionState::Connected => self.core.keep_alive.next_deadline(),
        }
    }

    // ----- inputs -----

    /// Whether [`handle_read`](Self::handle_read) would consume input now: not while there is
    /// no connection, nor while a quarter more than `max_transmit_buffer` bytes wait for
    /// `poll_transmit` (the peer is not reading what we owe it; answers to its packets would
    /// otherwise pile up without bound). Publishes stop at `max_transmit_buffer`: the room
    /// above it is for answers, so that a server whose deliveries arrive while our publishes
    /// wait is still read. A driver reads no more from the transport until it turns `true`
    /// again, then calls `handle_read` with what it kept.
    pub fn wants_read(&self) -> bool {
        self.state != ConnectionState::Disconnected
            && self.core.transmit_len() < session_core::read_limit(self.config.max_transmit_buffer)
    }

    /// Consumes every whole packet at the front of `buf` (a partial packet stays for the next
    /// read). Input that arrives while there is no connection is left untouched, and so is
    /// input beyond what fits while `max_transmit_buffer` bytes wait for `poll_transmit`
    /// (back-pressure: call again after draining).
    pub fn handle_read(&mut self, now: Instant, buf: &mut BytesMut) {
        session_core::read(self, now, buf);
    }

    /// Handles expired timers. Harmless when called early or more than once.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.link.now = now;
        match self.state {
            ConnectionState::Disconnected => {}
            ConnectionState::Connecting => {
                if now >= self.connack_deadline {
                    self.close(Initiator::Session, CloseReason::ConnAckTimeout);
                }
            }
            ConnectionState::Connected => {
                let keep_alive = &mut self.core.keep_alive;
                if keep_alive.dead_at().is_some_and(|t| now >= t) {
                    self.close(Initiator::Session, CloseReason::KeepAliveTimeout);
                } else if keep_alive.ping_at().is_some_and(|t| now >= t) {
                    keep_alive.ping_outstanding = true;
                    self.core.push(&Packet::PingReq);
                }
            }
        }
    }

    /// The transport is gone. Reports `Closed` unless the session had already closed.
    pub fn handle_closed(&mut self, now: Instant) {
        self.core.link.now = now;
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
        self.core.link.now = now;
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
            self.core.auth_method = connect
                .properties
                .authentication_method
                .clone()
                .map(Box::new);
            self.connect_client_id = connect.client_id.to_owned_compact();
        }

        self.core.clear_transmit();
        let link = &mut self.core.link;
        link.set_version(version);
        link.decoder.set_max_packet_size(max_packet_size);
        link.receive_maximum = receive_maximum;
        link.max_inflight = self.config.max_inflight;
        link.manual_acks = self.config.ack_mode == AckMode::Manual;
        link.inbound_aliases.reset(alias_max);
        link.outbound_aliases.reset(false, 0);
        link.open = false;
        self.core.push(&packet);
        // No pings before CONNACK: the CONNACK timer rules until then.
        self.core.keep_alive = KeepAlive::default();
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
        self.core.link.now = now;
        let admission = Admission {
            max_queued: self.config.max_queued,
            max_queued_bytes: self.config.max_queued_bytes,
            overflow: self.config.queue_overflow,
            max_transmit: self.config.max_transmit_buffer,
        };
        self.core.publish(message, token, admission)
    }

    /// Holds queued publishes back: from now on `publish` queues every message (within the
    /// queue's bounds) and nothing new is sent, until [`release_queue`](Self::release_queue).
    /// In-flight publishes are still re-sent on a resumed session, and acknowledgements,
    /// SUBSCRIBEs and UNSUBSCRIBEs still go out.
    ///
    /// For a reconnecting client: hold before `connect`, and when the CONNACK says the server
    /// lost the session, subscribe again and release once the SUBACKs are in, so that nothing
    /// published while disconnected reaches a session without its subscriptions.
    pub fn hold_queue(&mut self) {
        self.core.flows.held = true;
    }

    /// Ends [`hold_queue`](Self::hold_queue): queued publishes go out as the window allows,
    /// in order.
    pub fn release_queue(&mut self, now: Instant) {
        self.core.link.now = now;
        self.core.flows.held = false;
        self.pump();
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
        self.core.link.now = now;
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
        self.core.link.now = now;
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
        self.core.link.now = now;
        self.core.ack(id, reason_code)
    }

    /// Sends an AUTH packet (MQTT 5 enhanced authentication): to continue an exchange the
    /// server started, or with Re-authenticate once connected. A Reason String and User
    /// Properties that would make it exceed the server's Maximum Packet Size are left out
    /// ([MQTT-3.15.2-2], [MQTT-3.15.2-3] in 5.0); an AUTH too large even without them is
    /// refused with [`CommandError::PacketTooLarge`].
    pub fn auth(&mut self, now: Instant, auth: Auth) -> Result<(), CommandError> {
        self.core.link.now = now;
        if !self.version().is_v5() {
            return Err(CommandError::RequiresV5);
        }
        if self.state == ConnectionState::Disconnected {
            return Err(CommandError::NotConnected);
        }
        let mut packet = Packet::Auth(self.core.prepare_auth(auth)?);
        // [MQTT-3.15.2-2], [MQTT-3.15.2-3] (5.0): no Reason String or User Properties beyond
        // the server's Maximum Packet Size.
        self.core.link.fit_to_peer(&mut packet)?;
        self.core.push(&packet);
        Ok(())
    }

    /// Ends the connection with a DISCONNECT (its reason code and properties apply to MQTT 5).
    /// The session keeps its state for a later `connect`. A Reason String and User Properties
    /// that would make the DISCONNECT exceed the server's Maximum Packet Size are left out
    /// ([MQTT-3.14.2-3], [MQTT-3.14.2-4] in 5.0).
    pub fn disconnect(&mut self, now: Instant, disconnect: Disconnect) -> Result<(), CommandError> {
        self.core.link.now = now;
        if self.state == ConnectionState::Disconnected {
            return Err(CommandError::NotConnected);
        }
        let code = disconnect.reason_code;
        let mut packet = Packet::Disconnect(disconnect);
        // [MQTT-3.14.2-3], [MQTT-3.14.2-4] (5.0): no Reason String or User Properties beyond
        // the server's Maximum Packet Size; the bare code always fits.
        if let Err(error) = self.core.link.fit_to_peer(&mut packet) {
            if !matches!(error, CommandError::PacketTooLarge { .. }) {
                return Err(error);
            }
            packet = Packet::Disconnect(Disconnect::new(code));
        }
        self.core.push(&packet);
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
        let l = &self.core.link.peer;
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
                .core
                .send_request(request, token, R::to_packet)
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
                        .core
                        .send_request(r, token, SubscribeRequest::to_packet)
                        .map_err(|(e, r, t)| (e, QueuedRequest::Subscribe(r), t)),
                    Err(e) => Err((e, QueuedRequest::Subscribe(r), token)),
                },
                QueuedRequest::Unsubscribe(r) => self
                    .core
                    .send_request(r, token, UnsubscribeRequest::to_packet)
                    .map_err(|(e, r, t)| (e, QueuedRequest::Unsubscribe(r), t)),
            };
            if let Err((error, request, token)) = result {
                if error == CommandError::PacketIdsExhausted {
                    // Retried when an acknowledgement frees an identifier.
                    self.request_queue.push_front((request, token));
                    break;
                }
                self.core.push_event(ClientEvent::Abandoned {
                    token,
                    cause: AbandonCause::Refused(error),
                    message: None,
                });
            }
        }
        self.core.pump_publishes();
    }

    // ----- internals: receiving -----

    fn on_connected_packet(&mut self, packet: Packet) -> Result<(), ProtocolViolation> {
        if self.core.on_response(&packet)? {
            self.pump();
            return Ok(());
        }
        match packet {
            Packet::Publish(publish) => self.core.on_publish(publish)?,
            Packet::SubAck(suback) => {
                let count = Some(suback.reason_codes.len());
                let token = self.core.on_request_ack(suback.packet_id, true, count)?;
                self.core
                    .push_event(ClientEvent::Subscribed { token, suback });
            }
            Packet::UnsubAck(unsuback) => {
                // MQTT 3.1.1 UNSUBACK has no codes to count.
                let count = self
                    .version()
                    .is_v5()
                    .then_some(unsuback.reason_codes.len());
                let token = self.core.on_request_ack(unsuback.packet_id, false, count)?;
                self.core
                    .push_event(ClientEvent::Unsubscribed { token, unsuback });
            }
            Packet::PingResp => self.core.keep_alive.ping_outstanding = false,
            Packet::Disconnect(d) if self.version().is_v5() => {
                self.close(Initiator::Peer, CloseReason::Disconnect(d.reason_code));
            }
            other => return Err(ProtocolViolation::UnexpectedPacket(other.packet_type())),
        }
        self.pump();
        Ok(())
    }

    fn on_connack(&mut self, now: Instant, connack: ConnAck) -> Result<(), ProtocolViolation> {
        if connack.reason_code.is_error() {
            self.close(
                Initiator::Peer,
                CloseReason::ConnectRefused(connack.reason_code),
            );
            return Ok(());
        }
        // [MQTT-3.2.2-2]: a clean start never resumes a session.
        if self.clean_start && connack.session_present {
            return Err(ProtocolViolation::UnexpectedPacket(PacketType::ConnAck));
        }
        let v5 = self.version().is_v5();
        // [MQTT-4.12.0-5], [MQTT-4.12.0-6] (5.0): the CONNACK carries the CONNECT's
        // Authentication Method, or none when the CONNECT had none.
        if v5
            && connack.properties.authentication_method.as_ref() != self.core.auth_method.as_deref()
        {
            return Err(ProtocolViolation::BadAuthentication);
        }
        let limits = if v5 {
            PeerLimits::from_connack(&connack)
        } else {
            PeerLimits::default()
        };
        let keep_alive_secs = match connack.properties.server_keep_alive {
            // [MQTT-3.1.2-21]: the server's keep alive replaces ours.
            Some(secs) if v5 => secs,
            _ => self.keep_alive_requested,
        };
        let core = &mut self.core;
        core.keep_alive.start(now, keep_alive_secs);
        core.link.peer = limits;
        core.link
            .outbound_aliases
            .reset(self.config.auto_topic_alias, limits.topic_alias_maximum);
        core.link.open = true;
        self.state = ConnectionState::Connected;
        // [MQTT-3.1.3-2]: the session state belongs to one client identifier (the CONNECT's,
        // or the one the server assigned). Connected under another, the server's session is
        // not ours: what we hold for the old identifier is not re-sent into it.
        let client_id = connack
            .properties
            .assigned_client_identifier
            .as_ref()
            .filter(|_| v5)
            .map_or_else(
                || self.connect_client_id.clone(),
                MqttString::to_owned_compact,
            );
        let ours = self
            .session_owner
            .as_ref()
            .is_none_or(|owner| *owner == client_id);
        self.session_owner = Some(client_id);
        let core = &mut self.core;
        if connack.session_present && ours {
            core.resend();
        } else if self.config.requeue_on_session_loss {
            core.requeue_inflight();
        } else {
            core.discard_flows(false);
        }
        core.push_event(ClientEvent::Connected(Box::new(connack)));
        core.release_acks();
        self.pump();
        Ok(())
    }
}

impl<T> Role for ClientSession<T> {
    type Token = T;
    type Event = ClientEvent<T>;

    fn core(&mut self) -> &mut Core<T, ClientEvent<T>> {
        &mut self.core
    }

    fn wants_read(&self) -> bool {
        ClientSession::wants_read(self)
    }

    fn dispatch(&mut self, now: Instant, packet: Packet) -> Result<(), ProtocolViolation> {
        match (self.state, packet) {
            (ConnectionState::Connecting, Packet::ConnAck(connack)) => {
                self.on_connack(now, *connack)
            }
            (state, Packet::Auth(auth)) => {
                // [MQTT-4.12.0-2] (5.0): the server continues an exchange with 0x18; 0x00
                // ends a re-authentication (the connect exchange ends with CONNACK); it never
                // sends 0x19.
                let code_fits = match auth.reason_code {
                    ReasonCode::ContinueAuthentication => true,
                    ReasonCode::Success => state == ConnectionState::Connected,
                    _ => false,
                };
                self.core.on_auth(auth, code_fits, ClientEvent::Auth)
            }
            (ConnectionState::Connected, packet) => self.on_connected_packet(packet),
            // [MQTT-3.2.0-1]: the server's first packet is CONNACK.
            (_, packet) => Err(ProtocolViolation::UnexpectedPacket(packet.packet_type())),
        }
    }

    fn on_decode_error(&mut self, error: DecodeError) {
        let code = error.reason_code();
        session_core::fail(self, code, CloseReason::Malformed(error));
    }

    fn may_disconnect(&self) -> bool {
        true
    }

    /// Ends the connection: per-connection state goes, session state stays.
    fn close(&mut self, initiator: Initiator, reason: CloseReason) {
        self.state = ConnectionState::Disconnected;
        self.core.close_link();
        self.core
            .push_event(ClientEvent::Closed { initiator, reason });
    }
}

/// A SUBSCRIBE or UNSUBSCRIBE request, turned into its packet once it has an identifier.
trait RequestCommand {
    fn to_packet(&self, packet_id: PacketId) -> (Packet, Pending);
}

impl RequestCommand for SubscribeRequest {
    fn to_packet(&self, packet_id: PacketId) -> (Packet, Pending) {
        let packet = Packet::Subscribe(Subscribe {
            packet_id,
            subscriptions: self.subscriptions.clone(),
            properties: self.properties.clone(),
        });
        (packet, Pending::Subscribe(self.subscriptions.len()))
    }
}

impl RequestCommand for UnsubscribeRequest {
    fn to_packet(&self, packet_id: PacketId) -> (Packet, Pending) {
        let packet = Packet::Unsubscribe(Unsubscribe {
            packet_id,
            filters: self.filters.clone(),
            properties: self.properties.clone(),
        });
        (packet, Pending::Unsubscribe(self.filters.len()))
    }
}
