//! [`ServerSession`]: the server side of one MQTT connection as a pure state machine, for
//! people who write their own MQTT server (and for the broker core built on it).

mod config;
mod copy;
mod event;
mod session_state;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::num::{NonZeroU16, NonZeroU32};

use bytes::BytesMut;
use mqtt_streaming_proto::{
    AckProperties, Auth, ConnAck, ConnAckProperties, Connect, DecodeError, Disconnect, MqttString,
    Packet, PacketId, PacketType, ProtocolVersion, QoS, ReasonCode, SubAck, UnsubAck, Will,
    PROTOCOL_MAX_PACKET_SIZE,
};

pub use config::ServerConfig;
pub(crate) use copy::{EncodedCopies, MessageCopy};
pub use event::ServerEvent;
pub use session_state::{SessionExpiry, SessionState};

use crate::error::{
    AcceptRejected, CloseReason, CommandError, Initiator, ProtocolViolation, Rejected,
};
use crate::limits::PeerLimits;
use crate::message::Message;
use crate::shared::flows::QueueOverflow;
use crate::shared::inbound::{AckMode, InboundId};
use crate::shared::session_core::{self, Admission, Core, Role};
use crate::time::Instant;

/// What [`ServerSession::client_id`] returns while the session holds none.
static NO_CLIENT_ID: MqttString = MqttString::EMPTY;

/// Packets a client may send between CONNECT and the application's answer; more are left in
/// the caller's buffer until the answer.
const MAX_HELD_PACKETS: usize = 16;

/// Where the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerState {
    /// Waiting for the client's CONNECT.
    AwaitingConnect,
    /// CONNECT received; waiting for the application to `accept` or `reject`.
    Deciding,
    /// CONNACK sent with Success.
    Connected,
    /// The connection is over.
    Closed,
}

/// The server side of one MQTT connection (3.1, 3.1.1 or 5.0), with no I/O and no clock.
///
/// Create one per accepted transport. The first packet must be CONNECT; the session reports
/// it as [`ServerEvent::Connect`] and the application answers with
/// [`accept`](Self::accept) (optionally resuming a [`SessionState`] detached from an earlier
/// connection of the same client) or [`reject`](Self::reject). After the connection closes,
/// [`detach`](Self::detach) takes the durable session state out, to be handed to the next
/// connection of the same client.
///
/// The same drain rule as the client applies: after every input and command, drain
/// [`poll_transmit`](Self::poll_transmit), then [`poll_event`](Self::poll_event), then read
/// [`poll_timeout`](Self::poll_timeout). When `Closed` appears, write out what is left to
/// transmit and close the transport.
///
/// ```
/// use bytes::BytesMut;
/// use mqtt_streaming_proto::{ConnAckProperties, Connect, MqttString, Packet, ProtocolVersion};
/// use mqtt_streaming_session::{Instant, ServerConfig, ServerEvent, ServerSession};
///
/// let now = Instant::from_millis(0);
/// let mut server: ServerSession<()> = ServerSession::new(ServerConfig::default(), now);
/// let mut read = BytesMut::new();
/// Packet::from(Connect::new(ProtocolVersion::V3_1_1, MqttString::new("c1").unwrap()))
///     .encode(ProtocolVersion::V3_1_1, &mut read)
///     .unwrap();
/// server.handle_read(now, &mut read);
/// let Some(ServerEvent::Connect(connect)) = server.poll_event() else { panic!() };
/// assert_eq!(connect.client_id.as_str(), "c1");
/// server.accept(now, ConnAckProperties::default(), None).unwrap();
/// let mut wire = BytesMut::new();
/// server.poll_transmit(now, &mut wire);
/// assert_eq!(&wire[..], [0x20, 0x02, 0x00, 0x00]); // CONNACK, no session present
/// ```
#[derive(Debug)]
pub struct ServerSession<T> {
    /// Link (with the client's limits in `core.link.peer`), flows, events, keep alive.
    core: Core<T, ServerEvent<T>>,
    /// What an established connection still needs of its [`ServerConfig`].
    limits: Limits,
    /// The configuration and state of the way to CONNACK, `Some` until the connection is
    /// accepted or closed (boxed: an established connection, the broker's thousands of idle
    /// clients, needs none of it).
    handshake: Option<Box<Handshake>>,
    state: ServerState,
    /// Whether the connection was accepted (only then is there a session to detach).
    accepted: bool,
    /// Taken by `detach`.
    detached: bool,
    /// SUBSCRIBE / UNSUBSCRIBE waiting for the application's answer: type and filter count
    /// (boxed, and absent while none waits: an idle connection holds no map).
    #[allow(clippy::box_collection)] // the box is what makes the field small
    pending_requests: Option<Box<BTreeMap<PacketId, (PacketType, usize)>>>,
    /// The client identifier and the armed will, boxed together and absent when there is
    /// neither: an owner that keeps the identifier itself (the broker core) takes it
    /// ([`release_client_id`](Self::release_client_id)), and most clients have no will, so
    /// that an idle connection holds 8 bytes for both.
    identity: Option<Box<Identity>>,
    clean_start: bool,
    /// The session's expiry as a Session Expiry Interval in seconds (0: at close,
    /// `u32::MAX`: never; see [`SessionExpiry::from_interval`]): 4 bytes instead of the
    /// enum's 16.
    session_expiry: u32,
    /// The CONNECT's Session Expiry Interval was 0 (or absent): a DISCONNECT may not raise it.
    connect_expiry_zero: bool,
    /// The client asked for reason strings and user properties on acks ([MQTT-3.1.2-29]).
    problem_information: bool,
    /// Our Maximum QoS and Retain Available as announced (the client's limits are the core's).
    maximum_qos: QoS,
    retain_available: bool,
}

/// The parts of [`ServerConfig`] an established connection still uses, as `u32`s (12 bytes
/// instead of 24 in every session): `u32::MAX` stands for any value from there up to
/// `usize::MAX` (no limit: no queue or buffer reaches 4 Gi entries or bytes before memory
/// runs out).
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_queued: u32,
    max_transmit_buffer: u32,
    max_pending_requests: u32,
}

impl Limits {
    fn new(config: &ServerConfig) -> Self {
        Self {
            max_queued: compact(config.max_queued),
            max_transmit_buffer: compact(config.max_transmit_buffer),
            max_pending_requests: compact(config.max_pending_requests),
        }
    }

    fn max_queued(self) -> usize {
        full(self.max_queued)
    }

    fn max_transmit_buffer(self) -> usize {
        full(self.max_transmit_buffer)
    }

    fn max_pending_requests(self) -> usize {
        full(self.max_pending_requests)
    }
}

/// A limit as [`Limits`] keeps it.
fn compact(limit: usize) -> u32 {
    u32::try_from(limit).unwrap_or(u32::MAX)
}

/// A limit kept by [`compact`].
fn full(limit: u32) -> usize {
    if limit == u32::MAX {
        usize::MAX
    } else {
        limit as usize
    }
}

/// The client identifier and the armed will of a [`ServerSession`], boxed together.
#[derive(Debug, Default)]
struct Identity {
    /// The client identifier (see [`ServerSession::client_id`]).
    client_id: Option<MqttString>,
    /// The will, armed once the connection is accepted (boxed: a `Will` is over 200 bytes and
    /// moves here from the handshake).
    will: Option<Box<Will>>,
}

/// What a connection needs until its CONNECT is answered.
#[derive(Debug)]
struct Handshake {
    config: ServerConfig,
    /// Waiting for CONNECT: when it is too late (`connect_timeout` after the transport was
    /// accepted). Deciding: when the CONNECT still undecided is refused (`decide_timeout`
    /// after it arrived).
    deadline: Instant,
    /// Packets that came after the CONNECT, handled once it is accepted.
    held: VecDeque<Packet>,
    /// A decode error after the CONNECT, held until the CONNECT is answered: an accepted client
    /// gets its CONNACK first and then the DISCONNECT that explains the close.
    held_error: Option<DecodeError>,
    /// The will from CONNECT; armed (moved to `will`) once the connection is accepted.
    offered_will: Option<Box<Will>>,
    /// The CONNECT's Keep Alive in seconds (0: off), unless the CONNACK replaces it.
    keep_alive_secs: u16,
    /// The client asked for Response Information ([MQTT-3.1.2-28]).
    response_information: bool,
}

impl<T> ServerSession<T> {
    /// A session for a transport accepted at `now`; CONNECT must arrive within the configured
    /// timeout.
    pub fn new(config: ServerConfig, now: Instant) -> Self {
        let mut core = Core::new(config.max_packet_size);
        core.link.qos0_published = config.report_qos0_published;
        Self {
            core,
            limits: Limits::new(&config),
            maximum_qos: config.maximum_qos,
            retain_available: config.retain_available,
            handshake: Some(Box::new(Handshake {
                deadline: now + config.connect_timeout,
                config,
                held: VecDeque::new(),
                held_error: None,
                offered_will: None,
                keep_alive_secs: 0,
                response_information: false,
            })),
            state: ServerState::AwaitingConnect,
            accepted: false,
            detached: false,
            pending_requests: None,
            identity: None,
            clean_start: true,
            session_expiry: 0,
            connect_expiry_zero: true,
            problem_information: true,
        }
    }

    // ----- state -----

    /// Where the connection stands.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// The protocol version the client chose.
    pub fn version(&self) -> ProtocolVersion {
        self.core.link.version()
    }

    /// The client's limits from its CONNECT (MQTT 5; the defaults for 3.1.x and before the
    /// CONNECT arrives).
    pub fn client_limits(&self) -> &PeerLimits {
        &self.core.link.peer
    }

    /// The client identifier from CONNECT (empty until it arrives).
    pub fn client_id(&self) -> &MqttString {
        self.identity
            .as_ref()
            .and_then(|i| i.client_id.as_ref())
            .unwrap_or(&NO_CLIENT_ID)
    }

    /// How long the server must keep this session after the connection ends: from CONNECT,
    /// updated by an MQTT 5 DISCONNECT. The owner expires detached sessions by it.
    pub fn session_expiry(&self) -> SessionExpiry {
        SessionExpiry::from_interval(self.session_expiry)
    }

    /// The publish flows, for the broker's persistence records.
    pub(crate) fn flows_for_persistence(&self) -> &crate::shared::flows::Flows<T> {
        &self.core.flows
    }

    /// Outbound QoS 1 and 2 publishes waiting for the client's acknowledgement.
    pub fn inflight_len(&self) -> usize {
        self.core.flows.inflight_publishes()
    }

    /// Outbound publishes waiting for the window.
    pub fn queued_len(&self) -> usize {
        self.core.flows.queue_len()
    }

    /// Inbound QoS 1 and 2 messages not finished: acknowledgements not sent yet plus QoS 2
    /// awaiting PUBREL (what our Receive Maximum bounds).
    pub fn inbound_unfinished(&self) -> usize {
        self.core.flows.inbound_unfinished()
    }

    /// How many more messages [`publish`](Self::publish) takes now before it refuses them
    /// with [`CommandError::QueueFull`] (or [`CommandError::TransmitBufferFull`]): the room
    /// left in the queue, or 0 while
    /// `max_transmit_buffer` bytes wait for [`poll_transmit`](Self::poll_transmit). (A message
    /// sent at once can fill the transmit buffer, so this is an upper bound.) An owner with a
    /// backlog of its own (the broker's retained messages after a SUBSCRIBE) feeds it by this
    /// instead of losing messages to a full queue.
    pub fn publish_room(&self) -> usize {
        if self.state == ServerState::Closed
            || self.core.transmit_len() >= self.limits.max_transmit_buffer()
        {
            return 0;
        }
        self.limits
            .max_queued()
            .saturating_sub(self.core.flows.queue_len())
    }

    // ----- outputs -----

    /// Appends bytes for the transport to `buf`; returns how many.
    #[must_use = "call poll_transmit until it returns 0"]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut BytesMut) -> usize {
        self.core.poll_transmit(now, buf)
    }

    /// Bytes waiting for [`poll_transmit`](Self::poll_transmit).
    pub fn transmit_len(&self) -> usize {
        self.core.transmit_len()
    }

    /// Drops the session's copy of the client identifier: for an owner that keeps the same
    /// string (the broker core's session record). [`client_id`](Self::client_id) is empty
    /// afterwards.
    pub(crate) fn release_client_id(&mut self) {
        self.set_client_id(None);
    }

    /// Sets (or with `None` drops) the client identifier.
    fn set_client_id(&mut self, client_id: Option<MqttString>) {
        if client_id.is_some() || self.identity.is_some() {
            self.update_identity(|identity| identity.client_id = client_id);
        }
    }

    /// Arms (or with `None` removes) the will.
    fn set_will(&mut self, will: Option<Box<Will>>) {
        if will.is_some() || self.identity.is_some() {
            self.update_identity(|identity| identity.will = will);
        }
    }

    /// Changes the identity box (made if absent), and drops it once it holds neither a client
    /// identifier nor a will.
    fn update_identity(&mut self, change: impl FnOnce(&mut Identity)) {
        let identity = self.identity.get_or_insert_with(Box::default);
        change(identity);
        if identity.client_id.is_none() && identity.will.is_none() {
            self.identity = None;
        }
    }

    /// Frees the transmit buffer's memory if nothing waits in it, and, unless a publish flow
    /// moved since the last such call, the boxes of the state that is empty while nothing is
    /// under way (the broker core, after handing out a connection's last few bytes: an idle
    /// connection keeps no buffer and no empty tables, a busy one keeps its boxes).
    pub(crate) fn release_transmit_buffer(&mut self) {
        self.core.release_transmit_buffer();
    }

    /// The transmit buffer's capacity.
    #[cfg(test)]
    pub(crate) fn transmit_capacity(&self) -> usize {
        self.core.transmit_capacity()
    }

    /// Whether the boxes of the core's idle-empty state (transmit buffer and events; flow
    /// tables) are allocated, for the memory tests.
    #[cfg(test)]
    pub(crate) fn holds_idle_boxes(&self) -> (bool, bool) {
        (self.core.has_traffic(), self.core.flows.has_tables())
    }

    /// The next event, if any.
    #[must_use = "events carry tokens and messages that are lost if dropped unread"]
    pub fn poll_event(&mut self) -> Option<ServerEvent<T>> {
        self.core.poll_event()
    }

    /// Gives back the memory of internal queues that are empty (events, requests awaiting an
    /// answer, packets held before CONNACK), which otherwise keep their capacity. For owners of
    /// many mostly idle sessions, such as the broker core, once per turn (after draining the
    /// events); a queue that fills again allocates again.
    pub fn shrink_idle(&mut self) {
        self.core.shrink_idle();
        if self.pending_requests.as_ref().is_some_and(|m| m.is_empty()) {
            self.pending_requests = None;
        }
        if let Some(handshake) = &mut self.handshake {
            if handshake.held.is_empty() {
                handshake.held = VecDeque::new();
            }
        }
    }

    /// The earliest time at which [`handle_timeout`](Self::handle_timeout) has work to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            ServerState::AwaitingConnect | ServerState::Deciding => {
                self.handshake.as_ref().map(|h| h.deadline)
            }
            // One and a half keep-alive periods after the last packet from the client
            // ([MQTT-3.1.2-24] in 3.1.1, [MQTT-3.1.2-22] in 5.0).
            ServerState::Connected => self.core.keep_alive.dead_at(),
            ServerState::Closed => None,
        }
    }

    // ----- inputs -----

    /// Whether [`handle_read`](Self::handle_read) would consume a whole packet now. `false`
    /// between CONNECT and the application's answer once enough packets (or a malformed one)
    /// are held, while too many SUBSCRIBE/UNSUBSCRIBE requests wait for answers, while a
    /// quarter more than `max_transmit_buffer` bytes wait for `poll_transmit` (publishes stop
    /// at `max_transmit_buffer`; the rest is room for answers, so that a client whose deliveries
    /// fill the buffer can still acknowledge them), and once closed: a driver reads no
    /// more from the transport until it turns `true` again (after a command or a drain), then
    /// calls `handle_read` with what it kept.
    pub fn wants_read(&self) -> bool {
        let may_read = match self.state {
            ServerState::Closed => false,
            ServerState::Deciding => self
                .handshake
                .as_ref()
                .is_some_and(|h| h.held.len() < MAX_HELD_PACKETS && h.held_error.is_none()),
            ServerState::Connected => {
                self.pending_requests.as_ref().map_or(0, |m| m.len())
                    < self.limits.max_pending_requests()
            }
            ServerState::AwaitingConnect => true,
        };
        // Not once answers fill the room above a full transmit buffer (the client is not
        // reading what we owe it): they would otherwise pile up without bound. Below that it
        // is read, deliveries or not, so that its acknowledgements free the buffer.
        may_read
            && self.core.transmit_len()
                < session_core::read_limit(self.limits.max_transmit_buffer())
    }

    /// Consumes whole packets from the front of `buf`. Between CONNECT and the application's
    /// answer, while too many SUBSCRIBE/UNSUBSCRIBE requests wait for answers, and while
    /// `max_transmit_buffer` bytes wait for `poll_transmit`, it stops early and leaves the rest
    /// in `buf` (call again after answering or draining).
    pub fn handle_read(&mut self, now: Instant, buf: &mut BytesMut) {
        session_core::read(self, now, buf);
    }

    /// Handles expired timers. Harmless when called early or more than once.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.link.now = now;
        let due = self.handshake.as_ref().is_some_and(|h| now >= h.deadline);
        match self.state {
            ServerState::AwaitingConnect if due => {
                self.close(Initiator::Session, CloseReason::ConnectTimeout);
            }
            ServerState::Deciding if due => {
                // Nobody answered the CONNECT in time: 0x89 Server busy ("try again later",
                // 5.0 section 3.2.2.2; 3.1.x gets return code 3, Server unavailable), then
                // close ([MQTT-3.2.2-7] in 5.0, [MQTT-3.2.2-5] in 3.1.1).
                self.refuse_with(
                    ReasonCode::ServerBusy,
                    ConnAckProperties::default(),
                    CloseReason::DecideTimeout,
                );
            }
            ServerState::Connected if self.core.keep_alive.dead_at().is_some_and(|t| now >= t) => {
                session_core::fail(
                    self,
                    ReasonCode::KeepAliveTimeout,
                    CloseReason::KeepAliveTimeout,
                );
            }
            _ => {}
        }
    }

    /// The transport is gone.
    pub fn handle_closed(&mut self, now: Instant) {
        self.core.link.now = now;
        if self.state != ServerState::Closed {
            self.close(Initiator::Transport, CloseReason::TransportClosed);
        }
    }

    // ----- commands -----

    /// Accepts the connection: sends CONNACK with Success.
    ///
    /// `properties` are the MQTT 5 CONNACK properties; limits left unset are filled from the
    /// [`ServerConfig`] and every limit announced is enforced.
    ///
    /// A client that sent an empty client identifier gets the `assigned_client_identifier` of
    /// `properties`, or, when it is left unset, one the session makes up: `auto` and 19
    /// hexadecimal digits, unique within the process (a serial number and the time). MQTT 5
    /// clients are told it in CONNACK ([MQTT-3.2.2-16]); in 3.1.1 it stays the server's name
    /// for the client ([MQTT-3.1.3-6]). Either way [`client_id`](Self::client_id) returns it
    /// from then on. An application that keeps sessions by client id should assign its own,
    /// unique among them.
    ///
    /// `session` is the durable state of this client's previous connection, if the server kept
    /// it. With Clean Start it is discarded (its pending publishes come back as `Abandoned`);
    /// otherwise it is resumed: Session Present is set and unacknowledged publishes are re-sent.
    ///
    /// # Errors
    ///
    /// Without a CONNECT awaiting an answer, or with CONNACK properties the session cannot
    /// stand behind. Nothing is sent then, and the properties and the session come back in
    /// the [`AcceptRejected`].
    pub fn accept(
        &mut self,
        now: Instant,
        mut properties: ConnAckProperties,
        session: Option<SessionState<T>>,
    ) -> Result<(), AcceptRejected<T>> {
        self.core.link.now = now;
        let v5 = self.version().is_v5();
        // Validate first, consume last: nothing below this check can fail. The handshake is
        // taken (the connection needs none of it once accepted) and put back on a refusal.
        let handshake = match self.handshake.take() {
            Some(handshake) if self.state == ServerState::Deciding => handshake,
            other => {
                self.handshake = other;
                return Err(AcceptRejected {
                    error: CommandError::NoConnectPending,
                    properties,
                    session,
                });
            }
        };
        if v5 {
            if let Err(error) = self.check_connack(&properties, handshake.offered_will.as_deref()) {
                self.handshake = Some(handshake);
                return Err(AcceptRejected {
                    error,
                    properties,
                    session,
                });
            }
        }
        if self.client_id().is_empty() {
            // [MQTT-3.1.3-6] (3.1.1) / [MQTT-3.2.2-16] (5.0): an identifier of our own.
            let assigned = properties
                .assigned_client_identifier
                .clone()
                .unwrap_or_else(|| generated_client_id(now));
            self.set_client_id(Some(assigned.clone()));
            if v5 {
                properties.assigned_client_identifier = Some(assigned);
            }
        }
        if v5 {
            // [MQTT-4.12.0-5] (5.0): a successful CONNACK carries the CONNECT's method.
            fill(
                &mut properties.authentication_method,
                self.core.auth_method.as_deref().cloned(),
            );
        }
        let session_present = match session {
            Some(previous) if self.clean_start => {
                self.core.abandon_session(previous.flows);
                false
            }
            Some(previous) => {
                self.core.flows = previous.flows;
                true
            }
            None => false,
        };
        let Handshake {
            config,
            held,
            held_error,
            offered_will,
            mut keep_alive_secs,
            response_information,
            ..
        } = *handshake;
        if v5 {
            fill(
                &mut properties.receive_maximum,
                NonZeroU16::new(config.receive_maximum),
            );
            fill(
                &mut properties.maximum_packet_size,
                NonZeroU32::new(config.max_packet_size),
            );
            if config.topic_alias_maximum > 0 {
                fill(
                    &mut properties.topic_alias_maximum,
                    Some(config.topic_alias_maximum),
                );
            }
            if config.maximum_qos < QoS::ExactlyOnce {
                fill(&mut properties.maximum_qos, Some(config.maximum_qos));
            }
            if !config.retain_available {
                fill(&mut properties.retain_available, Some(false));
            }
            if let Some(assigned) = &properties.assigned_client_identifier {
                self.set_client_id(Some(assigned.clone()));
            }
            if let Some(interval) = properties.session_expiry_interval {
                // The server's Session Expiry Interval replaces the client's (5.0 3.2.2.3.2).
                self.session_expiry = interval;
            }
            if !response_information {
                // [MQTT-3.1.2-28]: only when the client asked for it.
                properties.response_information = None;
            }
            self.core.link.receive_maximum =
                properties.receive_maximum.map_or(u16::MAX, |v| v.get());
            let max_packet = properties
                .maximum_packet_size
                .map_or(PROTOCOL_MAX_PACKET_SIZE, |v| v.get());
            self.core.link.decoder.set_max_packet_size(max_packet);
            self.core
                .link
                .inbound_aliases
                .reset(properties.topic_alias_maximum.unwrap_or(0));
            self.maximum_qos = properties.maximum_qos.unwrap_or(QoS::ExactlyOnce);
            self.retain_available = properties.retain_available.unwrap_or(true);
            if let Some(secs) = properties.server_keep_alive {
                // [MQTT-3.1.2-21]: the client must use the server's value.
                keep_alive_secs = secs;
            }
        } else {
            self.core.link.receive_maximum = config.receive_maximum.max(1);
            self.maximum_qos = QoS::ExactlyOnce;
            self.retain_available = true;
        }
        let mut connack = Packet::ConnAck(Box::new(ConnAck {
            session_present,
            reason_code: ReasonCode::Success,
            properties,
        }));
        // [MQTT-3.2.2-19], [MQTT-3.2.2-20] (5.0): no Reason String or User Properties beyond
        // the client's Maximum Packet Size. The CONNACK goes out even if it is still too large.
        let _ = self.fit_to_peer(&mut connack);
        self.core.push(&connack);
        self.core.link.open = true;
        self.accepted = true;
        self.state = ServerState::Connected;
        self.core.keep_alive.start(now, keep_alive_secs);
        self.set_will(offered_will);
        if session_present {
            self.core.resend();
        }
        self.core.release_acks();
        self.core.pump_publishes();
        for packet in held {
            if self.state != ServerState::Connected {
                break;
            }
            session_core::handle(self, now, packet);
        }
        if let Some(error) = held_error {
            // Bad bytes arrived after the CONNECT: now that the CONNACK is out, the MQTT 5
            // client gets the DISCONNECT with the decode error's reason code, then the close.
            if self.state == ServerState::Connected {
                self.decode_error(error);
            }
        }
        Ok(())
    }

    /// Refuses the connection: sends CONNACK with `reason_code` (an error code valid in
    /// CONNACK; MQTT 3.1.x gets the nearest return code) and closes ([MQTT-3.2.2-5]).
    pub fn reject(
        &mut self,
        now: Instant,
        reason_code: ReasonCode,
        properties: ConnAckProperties,
    ) -> Result<(), CommandError> {
        self.core.link.now = now;
        if self.state != ServerState::Deciding {
            return Err(CommandError::NoConnectPending);
        }
        if !reason_code.is_error() || !reason_code.is_valid_for(PacketType::ConnAck) {
            return Err(CommandError::ReasonCodeNotAllowed {
                code: reason_code,
                packet: PacketType::ConnAck,
            });
        }
        self.refuse(reason_code, properties);
        Ok(())
    }

    /// Continues an MQTT 5 enhanced authentication exchange with an AUTH packet.
    ///
    /// Only for a client that sent an Authentication Method ([MQTT-4.12.0-6]); the AUTH carries
    /// that method (filled in when left out, [MQTT-4.12.0-5]), a server code (0x00 or 0x18), and
    /// no Reason String or User Properties when the client asked for none ([MQTT-3.1.2-29]).
    pub fn auth(&mut self, now: Instant, auth: Auth) -> Result<(), CommandError> {
        self.core.link.now = now;
        if !self.version().is_v5() {
            return Err(CommandError::RequiresV5);
        }
        if !matches!(self.state, ServerState::Deciding | ServerState::Connected) {
            return Err(CommandError::NotConnected);
        }
        if auth.reason_code == ReasonCode::ReAuthenticate {
            // 0x19 starts a re-authentication, which only the client does.
            return Err(CommandError::ReasonCodeNotAllowed {
                code: auth.reason_code,
                packet: PacketType::Auth,
            });
        }
        let mut auth = self.core.prepare_auth(auth)?;
        if !self.problem_information {
            auth.properties.reason_string = None;
            auth.properties.user_properties.clear();
        }
        let mut packet = Packet::Auth(auth);
        self.fit_to_peer(&mut packet)?;
        self.core.push(&packet);
        Ok(())
    }

    /// Publishes `message` to the client; `token` comes back in `Published` or `Abandoned`.
    /// Queued (in order, bounded) while the window is full or before the connection is
    /// accepted. A message larger than the client's Maximum Packet Size is refused, never
    /// sent ([MQTT-3.1.2-24]).
    ///
    /// The message is kept as given (shared, not copied) until acknowledged; one decoded from
    /// another connection keeps that connection's read buffer alive meanwhile, so hand over
    /// [`Message::to_owned_compact`] (the broker core does, once per PUBLISH).
    pub fn publish(
        &mut self,
        now: Instant,
        message: Message,
        token: T,
    ) -> Result<(), Rejected<Message, T>> {
        self.core.link.now = now;
        if self.state == ServerState::Closed {
            return Err(Rejected {
                error: CommandError::NotConnected,
                command: message,
                token,
            });
        }
        self.core.publish(message, token, self.admission())
    }

    /// [`publish`](Self::publish) for one receiver's copy of a message routed to many: a QoS
    /// 0 copy sent at once is appended as the PUBLISH `encoded` holds for this connection's
    /// protocol version (encoded once for every receiver whose copy is byte-identical), with
    /// the same checks; only a copy that is kept (queued, in flight) is built into a
    /// [`Message`]. A refusal hands back the token and the error only (small, so that the
    /// result of every delivery is cheap to pass back; the caller builds the message again
    /// if it keeps it).
    pub(crate) fn publish_copy(
        &mut self,
        now: Instant,
        copy: &MessageCopy<'_>,
        token: T,
        encoded: &mut EncodedCopies,
    ) -> Result<(), (CommandError, T)> {
        self.core.link.now = now;
        let shared = encoded.is_on()
            && copy.is_shareable()
            && self.state != ServerState::Closed
            && self.core.sends_qos0_now()
            // An automatic alias makes this receiver's bytes its own.
            && !self.core.link.outbound_aliases.is_active();
        if !shared {
            return self
                .publish(now, copy.to_message(), token)
                .map_err(|refused| (refused.error, refused.token));
        }
        let admission = self.admission();
        match encoded.get(self.version(), copy) {
            Ok(bytes) => self.core.send_encoded_qos0(
                bytes,
                copy.retain,
                copy.queued_size(),
                token,
                admission,
            ),
            Err(error) => Err((CommandError::Encode(error), token)),
        }
    }

    /// The bounds of [`publish`](Self::publish).
    fn admission(&self) -> Admission {
        Admission {
            max_queued: self.limits.max_queued(),
            max_queued_bytes: usize::MAX,
            overflow: QueueOverflow::RefuseNew,
            max_transmit: self.limits.max_transmit_buffer(),
        }
    }

    /// Answers a SUBSCRIBE of this connection: one code per filter, in order
    /// ([MQTT-3.9.3-1]); in MQTT 3.1.1 failures become 0x80.
    pub fn suback(
        &mut self,
        now: Instant,
        packet_id: PacketId,
        reason_codes: Vec<ReasonCode>,
        properties: AckProperties,
    ) -> Result<(), CommandError> {
        self.core.link.now = now;
        self.answer(PacketType::Subscribe, packet_id, reason_codes.len())?;
        let properties = self.problem_properties(properties);
        let mut packet = Packet::SubAck(SubAck {
            packet_id,
            reason_codes,
            properties,
        });
        self.fit_to_peer(&mut packet)?;
        self.remove_pending_request(packet_id);
        self.core.push(&packet);
        Ok(())
    }

    /// Answers an UNSUBSCRIBE of this connection (codes are sent in MQTT 5 only).
    pub fn unsuback(
        &mut self,
        now: Instant,
        packet_id: PacketId,
        reason_codes: Vec<ReasonCode>,
        properties: AckProperties,
    ) -> Result<(), CommandError> {
        self.core.link.now = now;
        let count = if self.version().is_v5() {
            reason_codes.len()
        } else {
            self.pending_request(packet_id).map_or(0, |r| r.1)
        };
        self.answer(PacketType::Unsubscribe, packet_id, count)?;
        let properties = self.problem_properties(properties);
        let mut packet = Packet::UnsubAck(UnsubAck {
            packet_id,
            reason_codes,
            properties,
        });
        self.fit_to_peer(&mut packet)?;
        self.remove_pending_request(packet_id);
        self.core.push(&packet);
        Ok(())
    }

    /// Acknowledges an inbound message in manual-ack mode (see
    /// [`ClientSession::ack`](crate::ClientSession::ack)).
    pub fn ack(
        &mut self,
        now: Instant,
        id: InboundId,
        reason_code: ReasonCode,
    ) -> Result<(), CommandError> {
        self.core.link.now = now;
        self.core.ack(id, reason_code)
    }

    /// Closes the connection from the server side. MQTT 5 clients get a DISCONNECT with the
    /// reason (for example 0x8E Session taken over, 0x8B Server shutting down, 0x98
    /// Administrative action); MQTT 3.1.x clients just see the transport close.
    ///
    /// It always closes a connection that is not closed yet, whatever it is given; what a
    /// server DISCONNECT cannot carry is replaced rather than refused:
    /// - a reason code a server may not send in DISCONNECT (5.0 section 3.14.2.1): a
    ///   CONNACK-only refusal such as 0x86 or 0x8A becomes 0x87 Not authorized, 0x88 becomes
    ///   0x89 Server busy, other errors 0x80 Unspecified error, and 0x04 (the client's) 0x00;
    /// - a Session Expiry Interval is left out ([MQTT-3.14.2-2] in 5.0);
    /// - a Reason String and User Properties that make the packet exceed the client's Maximum
    ///   Packet Size are left out ([MQTT-3.14.2-3] in 5.0).
    ///
    /// Before a successful CONNACK nothing is sent ([MQTT-3.14.0-1] in 5.0). The `Closed` event
    /// carries the code sent.
    ///
    /// # Errors
    ///
    /// [`CommandError::NotConnected`] when the connection is already closed.
    pub fn disconnect(
        &mut self,
        now: Instant,
        mut disconnect: Disconnect,
    ) -> Result<(), CommandError> {
        self.core.link.now = now;
        if self.state == ServerState::Closed {
            return Err(CommandError::NotConnected);
        }
        let code = disconnect_reason_code(disconnect.reason_code);
        disconnect.reason_code = code;
        // [MQTT-3.14.2-2] (5.0): the server never sends a Session Expiry Interval here.
        disconnect.properties.session_expiry_interval = None;
        // [MQTT-3.14.0-1] (5.0): no DISCONNECT before a successful CONNACK.
        if self.version().is_v5() && self.state == ServerState::Connected {
            let mut packet = Packet::Disconnect(disconnect);
            if self.fit_to_peer(&mut packet).is_err() {
                // Properties that cannot be encoded or do not fit: the bare code always does.
                packet = Packet::Disconnect(Disconnect::new(code));
            }
            self.core.push(&packet);
        }
        self.close(Initiator::Application, CloseReason::Disconnect(code));
        Ok(())
    }

    /// Takes the durable session state out of a closed connection, to resume it on the
    /// client's next connection. `None` before the close, after an earlier `detach`, or when
    /// the connection was never accepted.
    pub fn detach(&mut self) -> Option<SessionState<T>> {
        if self.state != ServerState::Closed || self.detached || !self.accepted {
            return None;
        }
        self.detached = true;
        let mut flows = core::mem::take(&mut self.core.flows);
        // A stored session with nothing waiting holds no tables.
        flows.shrink_idle();
        Some(SessionState {
            flows,
            max_queued: self.limits.max_queued(),
        })
    }

    // ----- internals -----

    /// The SUBSCRIBE or UNSUBSCRIBE `packet_id` waiting for an answer: type and filter count.
    fn pending_request(&self, packet_id: PacketId) -> Option<(PacketType, usize)> {
        self.pending_requests.as_ref()?.get(&packet_id).copied()
    }

    fn remove_pending_request(&mut self, packet_id: PacketId) {
        if let Some(map) = &mut self.pending_requests {
            map.remove(&packet_id);
        }
    }

    fn answer(
        &self,
        kind: PacketType,
        packet_id: PacketId,
        count: usize,
    ) -> Result<(), CommandError> {
        if self.state != ServerState::Connected {
            return Err(CommandError::NotConnected);
        }
        match self.pending_request(packet_id) {
            Some((k, n)) if k == kind && n == count => Ok(()),
            // [MQTT-3.9.3-1], [MQTT-3.11.3-1] (5.0): one code per filter, in order.
            Some((k, n)) if k == kind => Err(CommandError::ReasonCodeCountMismatch {
                expected: n,
                given: count,
            }),
            _ => Err(CommandError::UnknownAck),
        }
    }

    /// Refuses MQTT 5 CONNACK properties the session cannot stand behind: an Authentication
    /// Method other than the CONNECT's ([MQTT-4.12.0-5], [MQTT-4.12.0-6]), or limits the
    /// accepted will already exceeds ([MQTT-3.2.2-12], [MQTT-3.2.2-13]).
    fn check_connack(
        &self,
        properties: &ConnAckProperties,
        offered_will: Option<&Will>,
    ) -> Result<(), CommandError> {
        if let Some(method) = &properties.authentication_method {
            if self.core.auth_method.as_deref() != Some(method) {
                return Err(CommandError::AuthenticationMethodMismatch);
            }
        }
        if let Some(will) = offered_will {
            if properties.maximum_qos.is_some_and(|max| will.qos > max) {
                return Err(CommandError::QoSNotSupported);
            }
            if will.retain && properties.retain_available == Some(false) {
                return Err(CommandError::RetainNotSupported);
            }
        }
        Ok(())
    }

    /// Checks that `packet` can be encoded and fits the client's Maximum Packet Size, leaving
    /// out its Reason String and User Properties when only they make it too large (the shared
    /// `Link::fit_to_peer`).
    fn fit_to_peer(&self, packet: &mut Packet) -> Result<(), CommandError> {
        self.core.link.fit_to_peer(packet)
    }

    /// Strips the properties a client that sent Request Problem Information 0 must not get
    /// ([MQTT-3.1.2-29]).
    fn problem_properties(&self, properties: AckProperties) -> AckProperties {
        if self.problem_information {
            properties
        } else {
            AckProperties::default()
        }
    }

    fn on_connect(&mut self, now: Instant, connect: Connect) {
        let version = connect.protocol;
        self.core.link.set_version(version);
        // `AwaitingConnect` has it.
        let Some(mut handshake) = self.handshake.take() else {
            return;
        };
        let config = &handshake.config;
        let accepted = match version {
            ProtocolVersion::V3_1 => config.accept_v3_1,
            ProtocolVersion::V3_1_1 => config.accept_v3_1_1,
            ProtocolVersion::V5 => config.accept_v5,
        };
        if !accepted {
            // [MQTT-3.1.2-2]: answer with "unacceptable protocol version" and close.
            self.refuse(
                ReasonCode::UnsupportedProtocolVersion,
                ConnAckProperties::default(),
            );
            return;
        }
        // [MQTT-3.1.3-8] (3.1.1): an empty client id needs a clean session.
        if !version.is_v5()
            && connect.client_id.is_empty()
            && (!connect.clean_start || version == ProtocolVersion::V3_1)
        {
            self.refuse(
                ReasonCode::ClientIdentifierNotValid,
                ConnAckProperties::default(),
            );
            return;
        }
        // [MQTT-3.2.2-12], [MQTT-3.2.2-13] (5.0): a will the server cannot publish is refused.
        if let Some(will) = connect.will.as_ref().filter(|_| version.is_v5()) {
            let code = if will.qos > config.maximum_qos {
                Some(ReasonCode::QoSNotSupported)
            } else if will.retain && !config.retain_available {
                Some(ReasonCode::RetainNotSupported)
            } else {
                None
            };
            if let Some(code) = code {
                self.refuse(code, ConnAckProperties::default());
                return;
            }
        }
        // Kept for the life of the connection (and the will until it is published): owned
        // copies, not views into the read buffer the CONNECT came in.
        self.set_client_id(Some(connect.client_id.to_owned_compact()));
        self.clean_start = connect.clean_start;
        handshake.keep_alive_secs = connect.keep_alive;
        handshake.offered_will = connect
            .will
            .as_ref()
            .map(|will| Box::new(will.to_owned_compact()));
        // 3.1.x: a clean session ends with the connection (interval 0), any other never
        // expires (u32::MAX, as `SessionExpiry::from_interval` reads it).
        self.session_expiry = if version.is_v5() {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            u32::MAX
        };
        self.connect_expiry_zero = self.session_expiry == 0;
        let p = &connect.properties;
        self.core.auth_method = p
            .authentication_method
            .as_ref()
            .map(|method| Box::new(method.to_owned_compact()));
        self.problem_information = p.request_problem_information.unwrap_or(true);
        handshake.response_information = p.request_response_information.unwrap_or(false);
        self.core.link.peer = PeerLimits::from_connect(&connect);
        let config = &handshake.config;
        self.core.link.max_inflight = config.max_inflight;
        self.core.link.manual_acks = config.ack_mode == AckMode::Manual;
        self.core.link.outbound_aliases.reset(
            config.auto_topic_alias && version.is_v5(),
            self.core.link.peer.topic_alias_maximum,
        );
        self.state = ServerState::Deciding;
        handshake.deadline = now + config.decide_timeout;
        self.handshake = Some(handshake);
        self.core
            .push_event(ServerEvent::Connect(Box::new(connect)));
    }

    fn decode_error(&mut self, error: DecodeError) {
        if self.state == ServerState::AwaitingConnect {
            if let DecodeError::UnsupportedProtocolVersion(level) = error {
                // [MQTT-3.1.2-2]: answer in the format the client can read, then close.
                let version = if level >= 5 {
                    ProtocolVersion::V5
                } else {
                    ProtocolVersion::V3_1_1
                };
                self.core.link.set_version(version);
                self.refuse_with(
                    ReasonCode::UnsupportedProtocolVersion,
                    ConnAckProperties::default(),
                    CloseReason::Malformed(error),
                );
                return;
            }
            self.close(Initiator::Session, CloseReason::Malformed(error));
            return;
        }
        let code = error.reason_code();
        session_core::fail(self, code, CloseReason::Malformed(error));
    }

    fn refuse(&mut self, reason_code: ReasonCode, properties: ConnAckProperties) {
        self.refuse_with(
            reason_code,
            properties,
            CloseReason::ConnectRefused(reason_code),
        );
    }

    fn refuse_with(
        &mut self,
        reason_code: ReasonCode,
        properties: ConnAckProperties,
        reason: CloseReason,
    ) {
        let mut connack = Packet::ConnAck(Box::new(ConnAck {
            session_present: false,
            reason_code,
            properties,
        }));
        // [MQTT-3.2.2-19], [MQTT-3.2.2-20] (5.0), as in `accept`.
        let _ = self.fit_to_peer(&mut connack);
        self.core.push(&connack);
        self.close(Initiator::Session, reason);
    }

    fn on_connected_packet(
        &mut self,
        _now: Instant,
        packet: Packet,
    ) -> Result<(), ProtocolViolation> {
        if self.core.on_response(&packet)? {
            self.core.pump_publishes();
            return Ok(());
        }
        match packet {
            Packet::Publish(publish) => {
                if publish.qos_pid.qos() > self.maximum_qos {
                    return Err(ProtocolViolation::QoSNotSupported);
                }
                if publish.retain && !self.retain_available {
                    return Err(ProtocolViolation::RetainNotSupported);
                }
                // [MQTT-3.3.4-6] (5.0): Subscription Identifiers are the server's to send.
                if !publish.properties.subscription_identifiers.is_empty() {
                    return Err(ProtocolViolation::UnexpectedPacket(PacketType::Publish));
                }
                self.core.on_publish(publish)?;
            }
            Packet::Subscribe(subscribe) => {
                let id = subscribe.packet_id;
                if self.pending_request(id).is_some() {
                    return Err(ProtocolViolation::UnexpectedPacket(PacketType::Subscribe));
                }
                self.pending_requests
                    .get_or_insert_with(Box::default)
                    .insert(id, (PacketType::Subscribe, subscribe.subscriptions.len()));
                self.core.push_event(ServerEvent::Subscribe(subscribe));
            }
            Packet::Unsubscribe(unsubscribe) => {
                let id = unsubscribe.packet_id;
                if self.pending_request(id).is_some() {
                    return Err(ProtocolViolation::UnexpectedPacket(PacketType::Unsubscribe));
                }
                self.pending_requests
                    .get_or_insert_with(Box::default)
                    .insert(id, (PacketType::Unsubscribe, unsubscribe.filters.len()));
                self.core.push_event(ServerEvent::Unsubscribe(unsubscribe));
            }
            // [MQTT-3.12.4-1]: answer every PINGREQ.
            Packet::PingReq => self.core.push(&Packet::PingResp),
            Packet::Disconnect(disconnect) => self.on_disconnect(disconnect)?,
            other => return Err(ProtocolViolation::UnexpectedPacket(other.packet_type())),
        }
        Ok(())
    }

    fn on_disconnect(&mut self, disconnect: Disconnect) -> Result<(), ProtocolViolation> {
        if let Some(interval) = disconnect.properties.session_expiry_interval {
            // 5.0 section 3.14.2.2.2: a non-zero Session Expiry Interval on DISCONNECT after
            // CONNECT set 0 is a Protocol Error.
            if interval != 0 && self.connect_expiry_zero {
                return Err(ProtocolViolation::SessionExpiryAfterZero);
            }
            self.session_expiry = interval;
        }
        // [MQTT-3.1.2-10] (3.1.1) / [MQTT-3.1.2-8], [MQTT-3.1.2-10] (5.0): only a normal
        // disconnection (0x00) removes the will; 0x04 and the error codes leave it to publish.
        if disconnect.reason_code == ReasonCode::Success {
            self.set_will(None);
        }
        self.close(
            Initiator::Peer,
            CloseReason::Disconnect(disconnect.reason_code),
        );
        Ok(())
    }
}

impl<T> Role for ServerSession<T> {
    type Token = T;
    type Event = ServerEvent<T>;

    fn core(&mut self) -> &mut Core<T, ServerEvent<T>> {
        &mut self.core
    }

    fn wants_read(&self) -> bool {
        ServerSession::wants_read(self)
    }

    fn dispatch(&mut self, now: Instant, packet: Packet) -> Result<(), ProtocolViolation> {
        match (self.state, packet) {
            (ServerState::AwaitingConnect, Packet::Connect(connect)) => {
                self.on_connect(now, *connect);
                Ok(())
            }
            (ServerState::AwaitingConnect, _) => {
                // [MQTT-3.1.0-1]: the first packet must be CONNECT; close without a word.
                self.close(
                    Initiator::Session,
                    CloseReason::ProtocolViolation(ProtocolViolation::SecondConnect),
                );
                Ok(())
            }
            (_, Packet::Connect(_)) => Err(ProtocolViolation::SecondConnect),
            (state, Packet::Auth(auth)) => {
                // 5.0 section 3.15.2: 0x00 is the server's code, and 0x19 starts a
                // re-authentication, only after CONNACK.
                let code_fits = match auth.reason_code {
                    ReasonCode::ReAuthenticate => state == ServerState::Connected,
                    code => code == ReasonCode::ContinueAuthentication,
                };
                self.core.on_auth(auth, code_fits, ServerEvent::Auth)
            }
            (ServerState::Deciding, packet) => {
                if let Some(handshake) = &mut self.handshake {
                    handshake.held.push_back(packet);
                }
                Ok(())
            }
            (ServerState::Connected, packet) => self.on_connected_packet(now, packet),
            (ServerState::Closed, _) => Ok(()),
        }
    }

    fn on_decode_error(&mut self, error: DecodeError) {
        if self.state == ServerState::Deciding {
            // The CONNECT is being decided: the answer goes out first, then the close this
            // error calls for (see `accept`).
            if let Some(handshake) = &mut self.handshake {
                handshake.held_error = Some(error);
            }
            return;
        }
        self.decode_error(error);
    }

    /// After a successful CONNACK only ([MQTT-3.14.0-1] in 5.0).
    fn may_disconnect(&self) -> bool {
        self.state == ServerState::Connected
    }

    fn close(&mut self, initiator: Initiator, reason: CloseReason) {
        let was_connected = self.state == ServerState::Connected;
        self.state = ServerState::Closed;
        self.core.close_link();
        // Nothing is held for a closed connection, nor is its will offered.
        self.handshake = None;
        self.pending_requests = None;
        let will = if was_connected {
            let will = self.identity.as_mut().and_then(|i| i.will.take());
            self.set_will(None);
            will.map(|will| *will)
        } else {
            None
        };
        if !self.accepted {
            // No session was established, so nothing can be detached: publishes queued before
            // the answer to CONNECT come back now.
            self.core.discard_flows(true);
        }
        self.core.push_event(ServerEvent::Closed {
            initiator,
            reason,
            will,
        });
    }
}

/// The reason code a server DISCONNECT sends for `code`: `code` itself when a server may send
/// it in DISCONNECT (5.0 section 3.14.2.1), else the nearest that it may: 0x87 Not authorized
/// for the CONNACK-only refusals of a client (0x85, 0x86, 0x8A), 0x89 Server busy for 0x88
/// Server unavailable, 0x80 Unspecified error for other errors, 0x00 Normal disconnection for
/// other codes (0x04 Disconnect with Will Message is the client's).
pub(crate) fn disconnect_reason_code(code: ReasonCode) -> ReasonCode {
    if code.is_valid_for(PacketType::Disconnect) && code != ReasonCode::DisconnectWithWillMessage {
        return code;
    }
    match code {
        ReasonCode::ClientIdentifierNotValid
        | ReasonCode::BadUserNameOrPassword
        | ReasonCode::Banned => ReasonCode::NotAuthorized,
        ReasonCode::ServerUnavailable => ReasonCode::ServerBusy,
        code if code.is_error() => ReasonCode::UnspecifiedError,
        _ => ReasonCode::Success,
    }
}

/// A client identifier for a client that sent none: `auto`, 11 hexadecimal digits of the time
/// and 8 of a serial number, 23 characters from 0-9a-z as [MQTT-3.1.3-5] (3.1.1) lets every
/// server accept. The serial number is the only state this crate keeps outside its values: a
/// process-wide counter, so that the identifiers of sessions that know nothing of each other
/// still differ.
fn generated_client_id(now: Instant) -> MqttString {
    #[cfg(target_has_atomic = "32")]
    let serial = {
        use core::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
    #[cfg(not(target_has_atomic = "32"))]
    let serial = 0u32;
    let time = now.as_millis() & 0xFFF_FFFF_FFFF;
    let id = alloc::format!("auto{time:011x}{serial:08x}");
    MqttString::new(&id).unwrap_or_default()
}

/// Sets `slot` to `value` unless the application already chose.
fn fill<V>(slot: &mut Option<V>, value: Option<V>) {
    if slot.is_none() {
        *slot = value;
    }
}
