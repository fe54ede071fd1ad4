//! [`Core`]: the part of a session that both roles share, written once.
//!
//! A core owns the per-connection [`Link`] (decoder, topic aliases, the peer's limits and
//! ours), the durable [`Flows`] (packet identifiers, the one in-flight table for PUBLISH,
//! SUBSCRIBE and UNSUBSCRIBE, the publish queue, inbound acknowledgement state), the transmit
//! buffer and the event queue, and the keep-alive bookkeeping. The client and server sessions own one core
//! each and keep only their own state and packet dispatch: they implement [`Role`], and the
//! read loop ([`read`]) and the close on a protocol violation ([`fail`]) are written here once.

use alloc::boxed::Box;
use alloc::collections::VecDeque;

use bytes::BytesMut;
use mqtt_streaming_proto::{
    AckProperties, Auth, DecodeError, Decoder, Disconnect, EncodeError, MqttString, Packet,
    PacketId, PacketType, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode,
};

use super::flows::{queued_size, AbandonCause, FlowEvent, Flows, QueueOverflow, Queued, Tables};
use super::inbound::{AckToSend, Arrival, Inbound, InboundId};
use super::inflight::{AckOutcome, InFlight, OutboundStage, Pending};
use super::keep_alive::KeepAlive;
use super::outbox::Outbox;
use super::topic_alias::{InboundAliases, OutboundAliases};
use crate::error::{CloseReason, CommandError, Initiator, ProtocolViolation, Rejected};
use crate::limits::PeerLimits;
use crate::message::Message;
use crate::time::Instant;
use crate::transmit::TransmitBuf;

/// One network connection's protocol state.
#[derive(Debug)]
pub(crate) struct Link {
    /// The protocol version both directions use (the transmit buffer encodes in it).
    version: ProtocolVersion,
    pub(crate) decoder: Decoder,
    pub(crate) inbound_aliases: InboundAliases,
    pub(crate) outbound_aliases: OutboundAliases,
    /// What the peer accepts from us: the session's only copy of the peer's limits.
    pub(crate) peer: PeerLimits,
    /// Our Receive Maximum for this connection.
    pub(crate) receive_maximum: u16,
    /// Our own cap on outbound QoS 1/2 in flight.
    pub(crate) max_inflight: u16,
    pub(crate) manual_acks: bool,
    /// Whether a QoS 0 PUBLISH written to the transmit buffer is reported as `Published`
    /// (an owner that throws the report away, such as the broker core, turns it off: no event
    /// is queued per delivery).
    pub(crate) qos0_published: bool,
    /// Whether publishes may be sent (the connection is established).
    pub(crate) open: bool,
    /// The time of the input or command being handled (set at every entry point).
    pub(crate) now: Instant,
}

impl Link {
    fn new(max_packet_size: u32) -> Self {
        Self {
            version: ProtocolVersion::default(),
            decoder: Decoder::new(ProtocolVersion::V3_1_1).with_max_packet_size(max_packet_size),
            inbound_aliases: InboundAliases::default(),
            outbound_aliases: OutboundAliases::default(),
            peer: PeerLimits::default(),
            receive_maximum: u16::MAX,
            max_inflight: u16::MAX,
            manual_acks: false,
            qos0_published: true,
            open: false,
            now: Instant::ZERO,
        }
    }

    pub(crate) fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Switches both directions to `version`.
    pub(crate) fn set_version(&mut self, version: ProtocolVersion) {
        self.version = version;
        self.decoder.set_version(version);
    }

    /// The in-flight window: our cap and the peer's Receive Maximum, whichever is smaller.
    fn window(&self) -> usize {
        usize::from(self.max_inflight.min(self.peer.receive_maximum)).max(1)
    }

    fn send_ack(outbox: &mut Outbox, version: ProtocolVersion, ack: AckToSend) {
        let (id, code, rec) = match ack {
            AckToSend::PubAck(id, code) => (id, code, false),
            AckToSend::PubRec(id, code) => (id, code, true),
        };
        let response = PubResponse {
            reason_code: code,
            ..PubResponse::new(id)
        };
        let packet = if rec {
            Packet::PubRec(response)
        } else {
            Packet::PubAck(response)
        };
        let result = outbox.push(version, &packet);
        debug_assert!(result.is_ok());
    }

    /// Encodes a PUBLISH into `outbox`, through an automatic topic alias when enabled. With
    /// `segment`, a large payload is referenced rather than copied, and taken out of
    /// `publish` when `take` (a QoS 0 publish, dropped once encoded).
    fn encode_publish(
        &mut self,
        outbox: &mut Outbox,
        publish: &mut Publish,
        segment: bool,
        take: bool,
    ) -> Result<(), EncodeError> {
        if self.outbound_aliases.is_active() && publish.properties.topic_alias.is_none() {
            // The Topic Alias property adds bytes: alias only if the PUBLISH with topic and
            // alias still fits the peer's Maximum Packet Size ([MQTT-3.2.2-15]).
            let mut probe = publish.clone();
            probe.properties.topic_alias = Some(core::num::NonZeroU16::MAX);
            let probe = Packet::Publish(probe);
            let fits = probe.encoded_len(self.version())? <= self.peer.maximum_packet_size as usize;
            if let (true, Packet::Publish(mut aliased)) = (fits, probe) {
                aliased.properties.topic_alias = None;
                if self.outbound_aliases.apply(&mut aliased) {
                    // A copy: its payload is the session's to take.
                    return outbox.push_publish(self.version, &mut aliased, segment, true);
                }
            }
        }
        outbox.push_publish(self.version, publish, segment, take)
    }

    /// Checks that `packet` can be encoded and fits the peer's Maximum Packet Size, leaving
    /// out its Reason String and User Properties when only they make it too large (5.0:
    /// CONNACK [MQTT-3.2.2-19], [MQTT-3.2.2-20]; SUBACK [MQTT-3.9.2-1]; UNSUBACK
    /// [MQTT-3.11.2-1]; DISCONNECT [MQTT-3.14.2-3], [MQTT-3.14.2-4]; AUTH [MQTT-3.15.2-2],
    /// [MQTT-3.15.2-3]). Both roles send these packets through here.
    pub(crate) fn fit_to_peer(&self, packet: &mut Packet) -> Result<(), CommandError> {
        let max = self.peer.maximum_packet_size;
        let size = packet.encoded_len(self.version())?;
        if size <= max as usize {
            return Ok(());
        }
        match packet {
            Packet::ConnAck(ack) => {
                ack.properties.reason_string = None;
                ack.properties.user_properties.clear();
            }
            Packet::SubAck(ack) => ack.properties = AckProperties::default(),
            Packet::UnsubAck(ack) => ack.properties = AckProperties::default(),
            Packet::Disconnect(d) => {
                d.properties.reason_string = None;
                d.properties.user_properties.clear();
            }
            Packet::Auth(a) => {
                a.properties.reason_string = None;
                a.properties.user_properties.clear();
            }
            _ => {}
        }
        self.check_size(packet)
    }

    /// Checks that `packet` can be encoded and fits the peer's Maximum Packet Size.
    pub(crate) fn check_size(&self, packet: &Packet) -> Result<(), CommandError> {
        let max = self.peer.maximum_packet_size;
        let size = packet.encoded_len(self.version())?;
        if size > max as usize {
            return Err(CommandError::PacketTooLarge { size, max });
        }
        Ok(())
    }

    /// Checks `message` against the peer's limits (only meaningful once they are known).
    pub(crate) fn check_publish(&self, message: &Message) -> Result<(), CommandError> {
        if message.topic.is_empty() && message.properties.topic_alias.is_none() {
            return Err(CommandError::Encode(EncodeError::EmptyTopicWithoutAlias));
        }
        if !self.open {
            return Ok(());
        }
        let peer = &self.peer;
        if message.qos > peer.maximum_qos {
            return Err(CommandError::QoSNotSupported);
        }
        if message.retain && !peer.retain_available {
            return Err(CommandError::RetainNotSupported);
        }
        if let Some(alias) = message.properties.topic_alias {
            if alias.get() > peer.topic_alias_maximum {
                return Err(CommandError::TopicAliasAboveMaximum {
                    alias: alias.get(),
                    max: peer.topic_alias_maximum,
                });
            }
        }
        let size = publish_size(message, self.version())?;
        if size > peer.maximum_packet_size as usize {
            return Err(CommandError::PacketTooLarge {
                size,
                max: peer.maximum_packet_size,
            });
        }
        Ok(())
    }
}

/// Encoded size of the PUBLISH that would carry `message`, without building it.
pub(crate) fn publish_size(
    message: &Message,
    version: ProtocolVersion,
) -> Result<usize, CommandError> {
    Ok(Publish::encoded_len_of(
        version,
        &message.topic,
        message.qos,
        &message.properties,
        message.payload.len(),
    )?)
}

/// How many encoded bytes may wait for `poll_transmit` before a session stops reading input,
/// for a transmit buffer whose publishes stop at `max_transmit`: a quarter more. The room above
/// `max_transmit` is for answers to input (acknowledgements, PINGRESP, SUBACK): a peer whose
/// deliveries fill the buffer is still read, so that the acknowledgements that free it are
/// seen. Stopping at `max_transmit` itself let two peers wait for each other: each stopped
/// reading until it could write, and each could write only once the other read. A peer that
/// reads nothing at all still stops being read once its answers fill the room.
pub(crate) fn read_limit(max_transmit: usize) -> usize {
    max_transmit.saturating_add(max_transmit / 4)
}

/// The bounds a publish command is admitted within.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Admission {
    /// Publishes that may wait for the window or a connection.
    pub(crate) max_queued: usize,
    /// Their bytes ([`queued_size`]); one message always fits an empty queue.
    pub(crate) max_queued_bytes: usize,
    /// What a full queue does with a message that has to wait.
    pub(crate) overflow: QueueOverflow,
    /// Encoded bytes that may wait for `poll_transmit`.
    pub(crate) max_transmit: usize,
}

impl Admission {
    /// Whether a queue of `len` messages and `bytes` bytes is full for one more of `size`.
    fn full(&self, len: usize, bytes: usize, size: usize) -> bool {
        len >= self.max_queued || (len > 0 && bytes + size > self.max_queued_bytes)
    }
}

/// What a connection has to hand out: encoded bytes for the transport and events for the
/// owner. Boxed in [`Core`] and absent while both are empty: 8 bytes in every session instead
/// of 64 (see [`Core::release_transmit_buffer`]).
#[derive(Debug)]
struct Traffic<E> {
    outbox: Outbox,
    events: VecDeque<E>,
    /// A PUBLISH came in or went out since the end of the last turn.
    busy: bool,
    /// One did in the last turn ([`Core::shrink_idle`]): the session is busy, and keeps its
    /// boxes ([`Core::release_transmit_buffer`]).
    recent: bool,
}

/// The traffic box, allocated if absent (a function of the field, so that the other fields of
/// the core stay borrowable).
#[inline]
fn traffic<E>(traffic: &mut Option<Box<Traffic<E>>>) -> &mut Traffic<E> {
    traffic.get_or_insert_with(new_traffic)
}

/// A new traffic box: off the hot path (a busy session keeps its box).
#[cold]
#[inline(never)]
fn new_traffic<E>() -> Box<Traffic<E>> {
    Box::new(Traffic {
        outbox: Outbox::default(),
        events: VecDeque::new(),
        busy: false,
        recent: false,
    })
}

/// The shared part of a session: link, durable flows, transmit buffer and events, keep alive.
///
/// What is empty while a connection is idle (the transmit buffer, the events, and the flows'
/// in-flight table, queue and inbound acknowledgement state) is in two boxes that are absent
/// then: [`Traffic`] here, and the tables of [`Flows`] (which a detached session takes along).
/// Each is allocated on first use and given back at a quiet transmit after a turn without a
/// PUBLISH ([`release_transmit_buffer`](Self::release_transmit_buffer), the broker core's), or
/// when the owner asks ([`shrink_all_idle`](Self::shrink_all_idle), the client's), so never per
/// packet: 128 bytes of core instead of 344 in each of a broker's idle connections.
#[derive(Debug)]
pub(crate) struct Core<T, E> {
    pub(crate) link: Link,
    pub(crate) flows: Flows<T>,
    traffic: Option<Box<Traffic<E>>>,
    pub(crate) keep_alive: KeepAlive,
    /// The Authentication Method of this connection's CONNECT (MQTT 5 enhanced
    /// authentication); every AUTH either way carries it ([MQTT-4.12.0-5]). Boxed: most
    /// connections have none, and the field is 8 bytes instead of 32 in every session.
    pub(crate) auth_method: Option<Box<MqttString>>,
}

/// What a core's owner reports ([`ClientEvent`](crate::ClientEvent) or
/// [`ServerEvent`](crate::ServerEvent)), and what its transmit buffer does with large payloads.
pub(crate) trait SessionEvent<T>: From<FlowEvent<T>> {
    /// Whether large PUBLISH payloads go to the transmit buffer as segments of their own
    /// instead of being copied after their header: a client's, whose driver writes segments
    /// with vectored I/O (`ClientSession::poll_transmit_buf`). A constant of the type, so
    /// that no session carries a flag for it.
    const SEGMENT_PAYLOADS: bool;
}

impl<T> SessionEvent<T> for crate::client::ClientEvent<T> {
    const SEGMENT_PAYLOADS: bool = true;
}

impl<T> SessionEvent<T> for crate::server::ServerEvent<T> {
    const SEGMENT_PAYLOADS: bool = false;
}

impl<T, E: SessionEvent<T>> Core<T, E> {
    /// A core for a session that accepts inbound packets up to `max_packet_size` bytes.
    pub(crate) fn new(max_packet_size: u32) -> Self {
        Self {
            link: Link::new(max_packet_size),
            flows: Flows::default(),
            traffic: None,
            keep_alive: KeepAlive::default(),
            auth_method: None,
        }
    }

    pub(crate) fn version(&self) -> ProtocolVersion {
        self.link.version()
    }

    fn event(&mut self, event: FlowEvent<T>) {
        self.push_event(event.into());
    }

    /// A PUBLISH came in or went out: the session is busy (see
    /// [`release_transmit_buffer`](Self::release_transmit_buffer)).
    fn mark_busy(&mut self) {
        traffic(&mut self.traffic).busy = true;
    }

    /// Queues an event for the owner.
    pub(crate) fn push_event(&mut self, event: E) {
        traffic(&mut self.traffic).events.push_back(event);
    }

    /// Encodes a packet the session built itself (valid by construction).
    pub(crate) fn push(&mut self, packet: &Packet) {
        let result = traffic(&mut self.traffic)
            .outbox
            .push(self.link.version, packet);
        debug_assert!(
            result.is_ok(),
            "session built an unencodable packet: {result:?}"
        );
    }

    /// Abandons what can no longer complete, queued publishes too when `all` (see
    /// [`Flows::discard`], [`Flows::discard_all`]).
    pub(crate) fn discard_flows(&mut self, all: bool) {
        let Self {
            flows, traffic: t, ..
        } = self;
        let mut sink = |event: FlowEvent<T>| traffic(t).events.push_back(event.into());
        if all {
            flows.discard_all(&mut sink);
        } else {
            flows.discard(&mut sink);
        }
    }

    /// Abandons everything `flows` (a session not resumed) still held, reporting it here.
    pub(crate) fn abandon_session(&mut self, mut flows: Flows<T>) {
        flows.discard_all(&mut |event| self.push_event(event.into()));
    }

    // ----- outputs -----

    /// The next event, if any.
    pub(crate) fn poll_event(&mut self) -> Option<E> {
        self.traffic.as_mut()?.events.pop_front()
    }

    /// Bytes waiting for `poll_transmit`.
    pub(crate) fn transmit_len(&self) -> usize {
        self.traffic.as_ref().map_or(0, |t| t.outbox.len())
    }

    /// The transmit buffer's capacity (what it holds while empty, for the memory tests).
    #[cfg(test)]
    pub(crate) fn transmit_capacity(&self) -> usize {
        self.traffic.as_ref().map_or(0, |t| t.outbox.capacity())
    }

    /// Whether the traffic box is allocated (for the memory tests).
    #[cfg(test)]
    pub(crate) fn has_traffic(&self) -> bool {
        self.traffic.is_some()
    }

    /// Drops bytes meant for a transport that is gone.
    pub(crate) fn clear_transmit(&mut self) {
        if let Some(t) = &mut self.traffic {
            t.outbox.clear();
        }
    }

    /// Hands the transmit buffer to the caller; the keep alive counts it as sent.
    pub(crate) fn poll_transmit(&mut self, now: Instant, buf: &mut BytesMut) -> usize {
        let n = self
            .traffic
            .as_mut()
            .map_or(0, |t| t.outbox.drain_into(buf));
        if n > 0 {
            self.keep_alive.last_sent = now;
        }
        n
    }

    /// [`poll_transmit`](Self::poll_transmit) into a segment list: large payloads are
    /// moved, not copied ([`Outbox::append_into`]).
    pub(crate) fn poll_transmit_buf(&mut self, now: Instant, buf: &mut TransmitBuf) -> usize {
        let n = self
            .traffic
            .as_mut()
            .map_or(0, |t| t.outbox.append_into(buf));
        if n > 0 {
            self.keep_alive.last_sent = now;
        }
        n
    }

    /// [`poll_transmit`](Self::poll_transmit) exchanging buffers when `buf` is empty
    /// ([`Outbox::swap_into`]).
    pub(crate) fn poll_transmit_swap(&mut self, now: Instant, buf: &mut BytesMut) -> usize {
        let n = self.traffic.as_mut().map_or(0, |t| t.outbox.swap_into(buf));
        if n > 0 {
            self.keep_alive.last_sent = now;
        }
        n
    }

    // ----- memory of idle sessions -----

    /// The session went quiet (its owner handed out its last few bytes): the transmit buffer's
    /// memory goes if nothing waits in it. Then, unless a PUBLISH came in or went out in the
    /// last turn or since (the session is busy: a subscriber getting messages, a publisher
    /// sending them), each box whose contents are all empty goes too. A busy session keeps its
    /// boxes from turn to turn, and gives them back at its first quiet turn without a publish
    /// (its next PINGRESP at the latest); a session that only connected and subscribed holds
    /// none.
    pub(crate) fn release_transmit_buffer(&mut self) {
        if let Some(t) = &mut self.traffic {
            t.outbox.shrink_idle();
            if t.busy || t.recent || !t.events.is_empty() || t.outbox.len() > 0 {
                return;
            }
            self.traffic = None;
        }
        self.flows.shrink_idle();
    }

    /// The end of a turn (the owner handled the session's events): gives back the room of the
    /// event queue when it is empty, and notes whether a PUBLISH came in or went out in the
    /// turn. The boxes stay: see [`release_transmit_buffer`](Self::release_transmit_buffer).
    pub(crate) fn shrink_idle(&mut self) {
        if let Some(t) = &mut self.traffic {
            t.recent = core::mem::take(&mut t.busy);
            if t.events.is_empty() {
                t.events = VecDeque::new();
            }
        }
    }

    /// Gives back everything that is empty, boxes and spare room, busy or not (a client about
    /// to wait with nothing under way).
    pub(crate) fn shrink_all_idle(&mut self) {
        if let Some(t) = &mut self.traffic {
            t.outbox.shrink_idle();
            if t.events.is_empty() {
                if t.outbox.len() == 0 {
                    self.traffic = None;
                } else {
                    t.events = VecDeque::new();
                }
            }
        }
        self.flows.shrink_idle();
        if let Some(tables) = self.flows.tables_if_any() {
            if tables.queue.is_empty() {
                tables.queue = VecDeque::new();
            }
            tables.inflight.shrink_idle();
        }
    }

    // ----- packet identifiers -----

    /// A free packet identifier, or `None` when all 65,535 are in flight.
    pub(crate) fn allocate_id(&mut self) -> Option<PacketId> {
        self.flows.allocate_id()
    }

    /// Sends a SUBSCRIBE or UNSUBSCRIBE built by `build` with a fresh identifier, and records
    /// it in the in-flight table.
    pub(crate) fn send_request<R>(
        &mut self,
        request: R,
        token: T,
        build: impl FnOnce(&R, PacketId) -> (Packet, Pending),
    ) -> Result<(), (CommandError, R, T)> {
        let Some(packet_id) = self.allocate_id() else {
            return Err((CommandError::PacketIdsExhausted, request, token));
        };
        let (packet, pending) = build(&request, packet_id);
        if let Err(error) = self.link.check_size(&packet) {
            return Err((error, request, token));
        }
        self.push(&packet);
        self.flows
            .tables_mut()
            .inflight
            .insert_request(packet_id, pending, token);
        Ok(())
    }

    // ----- outbound publishes -----

    fn can_send(&self, qos: QoS) -> bool {
        // Nothing new before the re-sends ([MQTT-4.6.0-1]), nor while the queue is held.
        if self.flows.held || self.flows.resend_pending() {
            return false;
        }
        let flows = &self.flows;
        qos == QoS::AtMostOnce
            || (flows.inflight_publishes() < self.link.window()
                && flows.inflight_len() < usize::from(u16::MAX))
    }

    /// The publish command: send now if the link is open and the window has room, else queue
    /// (bounded by `admission`).
    pub(crate) fn publish(
        &mut self,
        message: Message,
        token: T,
        admission: Admission,
    ) -> Result<(), Rejected<Message, T>> {
        let reject = |error, command, token| {
            Err(Rejected {
                error,
                command,
                token,
            })
        };
        if let Err(error) = self.link.check_publish(&message) {
            return reject(error, message, token);
        }
        let size = queued_size(&message);
        let flows = &self.flows;
        let full = admission.full(flows.queue_len(), flows.queued_bytes(), size);
        if full && !self.can_make_room(size, &admission) {
            return reject(CommandError::QueueFull, message, token);
        }
        if self.transmit_len() >= admission.max_transmit {
            return reject(CommandError::TransmitBufferFull, message, token);
        }
        if self.link.open && self.flows.queue_len() == 0 && self.can_send(message.qos) {
            return match self.send_publish(message, token) {
                Ok(()) => Ok(()),
                Err((error, command, token)) => reject(error, command, token),
            };
        }
        if full {
            self.make_room(size, &admission);
        }
        self.flows.push_queued(Queued {
            message,
            token,
            since: self.link.now,
        });
        Ok(())
    }

    /// Whether a QoS 0 message given to [`publish`](Self::publish) now would be sent at once
    /// rather than queued (the link is open, nothing is queued or waits to be re-sent).
    pub(crate) fn sends_qos0_now(&self) -> bool {
        self.link.open && self.flows.queue_len() == 0 && self.can_send(QoS::AtMostOnce)
    }

    /// [`publish`](Self::publish) for a QoS 0 message whose PUBLISH the caller encoded (DUP 0,
    /// RETAIN `retain`, no Topic Alias: the bytes `publish` would write on this connection,
    /// shared by many receivers); `size` is its [`queued_size`]. The same checks in the same
    /// order (Retain Available, the peer's Maximum Packet Size, the queue's and the transmit
    /// buffer's bounds), then the bytes are appended. The caller checked
    /// [`sends_qos0_now`](Self::sends_qos0_now) and that no automatic topic alias applies.
    pub(crate) fn send_encoded_qos0(
        &mut self,
        encoded: &[u8],
        retain: bool,
        size: usize,
        token: T,
        admission: Admission,
    ) -> Result<(), (CommandError, T)> {
        debug_assert!(self.sends_qos0_now());
        let peer = &self.link.peer;
        if retain && !peer.retain_available {
            return Err((CommandError::RetainNotSupported, token));
        }
        if encoded.len() > peer.maximum_packet_size as usize {
            let max = peer.maximum_packet_size;
            return Err((
                CommandError::PacketTooLarge {
                    size: encoded.len(),
                    max,
                },
                token,
            ));
        }
        let full = admission.full(self.flows.queue_len(), self.flows.queued_bytes(), size);
        if full && !self.can_make_room(size, &admission) {
            return Err((CommandError::QueueFull, token));
        }
        if self.transmit_len() >= admission.max_transmit {
            return Err((CommandError::TransmitBufferFull, token));
        }
        let traffic = traffic(&mut self.traffic);
        traffic.busy = true;
        traffic.outbox.push_encoded(encoded);
        if self.link.qos0_published {
            self.event(FlowEvent::Published {
                token,
                reason_code: ReasonCode::Success,
                properties: AckProperties::default(),
            });
        }
        Ok(())
    }

    /// Whether the overflow policy can make room in a full queue for a message of `size`
    /// bytes (without changing anything).
    fn can_make_room(&self, size: usize, admission: &Admission) -> bool {
        let Some(Tables {
            queue,
            queued_bytes,
            ..
        }) = self.flows.tables()
        else {
            // An empty queue takes any one message.
            return admission.overflow != QueueOverflow::RefuseNew;
        };
        match admission.overflow {
            QueueOverflow::RefuseNew => false,
            // Dropping everything leaves an empty queue, which takes any one message.
            QueueOverflow::DropOldest => true,
            QueueOverflow::DropQoS0First => {
                let (count, bytes) = queue
                    .iter()
                    .filter(|q| q.message.qos == QoS::AtMostOnce)
                    .fold((0, 0), |(n, b), q| (n + 1, b + queued_size(&q.message)));
                let len = queue.len() - count;
                !admission.full(len, queued_bytes - bytes, size)
            }
        }
    }

    /// Applies the overflow policy until a message of `size` bytes fits (the caller checked
    /// [`can_make_room`](Self::can_make_room)); each dropped message is abandoned with
    /// [`AbandonCause::Overflow`].
    fn make_room(&mut self, size: usize, admission: &Admission) {
        loop {
            let flows = &self.flows;
            if !admission.full(flows.queue_len(), flows.queued_bytes(), size) {
                return;
            }
            let index = match admission.overflow {
                QueueOverflow::RefuseNew => return,
                QueueOverflow::DropOldest => Some(0),
                QueueOverflow::DropQoS0First => flows.tables().and_then(|t| {
                    t.queue
                        .iter()
                        .position(|q| q.message.qos == QoS::AtMostOnce)
                }),
            };
            let Some(dropped) = index.and_then(|i| self.flows.remove_queued(i)) else {
                return;
            };
            self.event(FlowEvent::Abandoned {
                token: dropped.token,
                cause: AbandonCause::Overflow,
                message: Some(dropped.message),
            });
        }
    }

    /// The peer lost the session: unacknowledged publishes go back to the front of the queue,
    /// in order, to be sent again as new messages (new identifiers, DUP clear); QoS 2 flows
    /// the peer already took (PUBREC received) complete as `Published`.
    pub(crate) fn requeue_inflight(&mut self) {
        let now = self.link.now;
        let mut again = VecDeque::new();
        let taken = self
            .flows
            .tables_if_any()
            .map(|t| t.inflight.take_publishes_with_stage());
        for (token, publish, stage) in taken.into_iter().flatten() {
            if stage == OutboundStage::AwaitingPubComp {
                self.event(FlowEvent::Published {
                    token,
                    reason_code: ReasonCode::Success,
                    properties: AckProperties::default(),
                });
                continue;
            }
            again.push_back(Queued {
                message: Message::from_publish(publish),
                token,
                since: now,
            });
        }
        if !again.is_empty() {
            let tables = self.flows.tables_mut();
            while let Some(queued) = again.pop_back() {
                tables.queued_bytes += queued_size(&queued.message);
                tables.queue.push_front(queued);
            }
        }
        self.flows.reset();
    }

    /// Sends a message now; the caller checked the window.
    #[allow(clippy::type_complexity)]
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
                None => return Err((CommandError::PacketIdsExhausted, message, token)),
            }
        };
        let mut publish = message.into_publish(id);
        let traffic = traffic(&mut self.traffic);
        traffic.busy = true;
        // QoS 0 keeps nothing once encoded: a segmented payload is moved, not cloned.
        let take = qos == QoS::AtMostOnce;
        if let Err(e) =
            self.link
                .encode_publish(&mut traffic.outbox, &mut publish, E::SEGMENT_PAYLOADS, take)
        {
            return Err((
                CommandError::Encode(e),
                Message::from_publish(publish),
                token,
            ));
        }
        if qos == QoS::AtMostOnce {
            if self.link.qos0_published {
                self.event(FlowEvent::Published {
                    token,
                    reason_code: ReasonCode::Success,
                    properties: AckProperties::default(),
                });
            }
        } else {
            self.flows.tables_mut().inflight.insert(publish, token);
        }
        Ok(())
    }

    /// Sends held-back re-sends and queued publishes while the window allows.
    pub(crate) fn pump_publishes(&mut self) {
        // Re-sends held back by the window go first, as acks make room.
        while self.link.open && self.flows.sent_publishes() < self.link.window() {
            let Some(tables) = self.flows.tables_if_any() else {
                break;
            };
            let Some(id) = tables.resend_pending.pop_front() else {
                break;
            };
            // A flow the peer acknowledged meanwhile is not re-sent ([MQTT-4.3.3-6]).
            let entry = tables.inflight.get(id);
            if let Some(publish) = entry
                .filter(|e| e.stage() != Some(OutboundStage::AwaitingPubComp))
                .and_then(|e| e.publish())
            {
                let mut publish = publish.clone();
                publish.dup = true;
                self.push(&Packet::Publish(publish));
            }
        }
        while self.link.open {
            let Some(front) = self.flows.tables().and_then(|t| t.queue.front()) else {
                break;
            };
            if !self.can_send(front.message.qos) {
                break;
            }
            let Some(queued) = self.flows.pop_queued() else {
                break;
            };
            let Queued { message, token, .. } = match queued.age(self.link.now) {
                Ok(queued) => queued,
                Err(expired) => {
                    self.event(FlowEvent::Abandoned {
                        token: expired.token,
                        cause: AbandonCause::Expired,
                        message: Some(expired.message),
                    });
                    continue;
                }
            };
            let result = match self.link.check_publish(&message) {
                Ok(()) => self.send_publish(message, token),
                Err(e) => Err((e, message, token)),
            };
            if let Err((error, message, token)) = result {
                self.event(FlowEvent::Abandoned {
                    token,
                    cause: AbandonCause::Refused(error),
                    message: Some(message),
                });
            }
        }
    }

    /// Re-sends unacknowledged PUBLISHes (DUP set, same identifiers) and PUBRELs in their
    /// original order ([MQTT-4.4.0-1], [MQTT-4.6.0-1]). Every flow counts against the peer's
    /// Receive Maximum ([MQTT-4.9.0-2]): PUBLISHes beyond it wait in order for
    /// [`pump_publishes`](Self::pump_publishes).
    pub(crate) fn resend(&mut self) {
        let Some(flows) = self.flows.tables_if_any() else {
            return;
        };
        flows.resend_pending.clear();
        let order = flows.inflight.resend_order();
        let releasing = order
            .iter()
            .filter(|id| {
                flows.inflight.get(**id).and_then(|e| e.stage())
                    == Some(OutboundStage::AwaitingPubComp)
            })
            .count();
        let mut quota = self.link.window().saturating_sub(releasing);
        for id in order {
            let Some(entry) = flows.inflight.get(id) else {
                continue;
            };
            let packet = match (entry.stage(), entry.publish()) {
                (Some(OutboundStage::AwaitingPubComp), _) => Packet::PubRel(PubResponse::new(id)),
                (_, Some(_)) if quota == 0 || !flows.resend_pending.is_empty() => {
                    flows.resend_pending.push_back(id);
                    continue;
                }
                (_, Some(publish)) => {
                    quota -= 1;
                    let mut publish = publish.clone();
                    publish.dup = true;
                    Packet::Publish(publish)
                }
                (_, None) => continue,
            };
            let result = traffic(&mut self.traffic)
                .outbox
                .push(self.link.version, &packet);
            debug_assert!(result.is_ok());
        }
    }

    // ----- inbound -----

    /// Handles PUBACK, PUBREC, PUBREL and PUBCOMP. Returns `Ok(false)` for other packets.
    pub(crate) fn on_response(&mut self, packet: &Packet) -> Result<bool, ProtocolViolation> {
        // Without tables nothing is in flight: an empty table (no allocation) answers.
        let mut empty = None;
        let inflight = match self.flows.tables_if_any() {
            Some(tables) => &mut tables.inflight,
            None => empty.insert(InFlight::default()),
        };
        let (outcome, r) = match packet {
            Packet::PubAck(r) => (inflight.on_puback(r.packet_id, r.reason_code)?, r),
            Packet::PubRec(r) => (inflight.on_pubrec(r.packet_id, r.reason_code)?, r),
            Packet::PubComp(r) => (inflight.on_pubcomp(r.packet_id, r.reason_code)?, r),
            Packet::PubRel(r) => {
                let known = match self.flows.tables_if_any() {
                    Some(tables) => tables.inbound.on_pubrel(r.packet_id)?,
                    None => false,
                };
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
                return Ok(true);
            }
            _ => return Ok(false),
        };
        match outcome {
            AckOutcome::Completed(token, reason_code) => self.event(FlowEvent::Published {
                token,
                reason_code,
                properties: r.properties.clone(),
            }),
            // [MQTT-4.3.3-4]: PUBREC accepted, release with PUBREL.
            AckOutcome::SendPubRel => self.push(&Packet::PubRel(PubResponse::new(r.packet_id))),
            // A PUBREC for no flow: release the peer's identifier all the same, with 0x92 in
            // MQTT 5 (5.0 section 3.6.2.1; see the `inflight` module docs).
            AckOutcome::ReleaseUnknown => {
                let reason_code = if self.version().is_v5() {
                    ReasonCode::PacketIdentifierNotFound
                } else {
                    ReasonCode::Success
                };
                self.push(&Packet::PubRel(PubResponse {
                    reason_code,
                    ..PubResponse::new(r.packet_id)
                }));
            }
            AckOutcome::Ignored => {}
        }
        Ok(true)
    }

    /// A SUBACK (`subscribe`) or UNSUBACK arrived with `codes` reason codes
    /// ([`InFlight::on_request_ack`]).
    pub(crate) fn on_request_ack(
        &mut self,
        id: PacketId,
        subscribe: bool,
        codes: Option<usize>,
    ) -> Result<T, ProtocolViolation> {
        match self.flows.tables_if_any() {
            Some(tables) => tables.inflight.on_request_ack(id, subscribe, codes),
            // Nothing in flight: an empty table (no allocation) refuses it.
            None => InFlight::default().on_request_ack(id, subscribe, codes),
        }
    }

    /// Handles an inbound PUBLISH: resolves its topic alias, applies the ack mode and QoS 2
    /// de-duplication, and delivers it unless it is a re-send.
    pub(crate) fn on_publish(&mut self, mut publish: Publish) -> Result<(), ProtocolViolation> {
        self.mark_busy();
        let link = &mut self.link;
        if link.version().is_v5() {
            link.inbound_aliases.resolve(&mut publish)?;
        }
        let Some(id) = publish.qos_pid.packet_id() else {
            self.event(FlowEvent::Message { publish, ack: None });
            return Ok(());
        };
        let version = link.version;
        let outbox = &mut traffic(&mut self.traffic).outbox;
        let generation = self.flows.generation;
        // Without tables, a fresh (unallocated) state takes the PUBLISH, and goes into the
        // tables only if it keeps something (an automatic QoS 1 ack keeps nothing).
        let mut fresh = None;
        let inbound = match self.flows.tables_if_any() {
            Some(tables) => &mut tables.inbound,
            None => fresh.insert(Inbound::default()),
        };
        let arrival = inbound.on_publish(
            id,
            publish.qos_pid.qos(),
            link.receive_maximum,
            link.manual_acks,
            generation,
            &mut |ack| Link::send_ack(outbox, version, ack),
        )?;
        if let Some(fresh) = fresh.filter(|inbound| !inbound.is_empty()) {
            self.flows.tables_mut().inbound = fresh;
        }
        match arrival {
            Arrival::Deliver(ack) => self.event(FlowEvent::Message { publish, ack }),
            Arrival::Duplicate {
                resend_pubrec: true,
            } => self.push(&Packet::PubRec(PubResponse::new(id))),
            Arrival::Duplicate {
                resend_pubrec: false,
            } => {}
        }
        Ok(())
    }

    /// A manual acknowledgement.
    pub(crate) fn ack(
        &mut self,
        id: InboundId,
        reason_code: ReasonCode,
    ) -> Result<(), CommandError> {
        let valid = reason_code == ReasonCode::Success
            || (self.version().is_v5()
                && reason_code.is_valid_for(PacketType::PubAck)
                && reason_code.is_valid_for(PacketType::PubRec));
        if !valid {
            return Err(CommandError::ReasonCodeNotAllowed {
                code: reason_code,
                packet: PacketType::PubAck,
            });
        }
        self.flows
            .ack(id, reason_code)
            .map_err(|()| CommandError::UnknownAck)?;
        if self.link.open {
            self.release_acks();
        }
        Ok(())
    }

    /// Sends manual acks that are now in order.
    pub(crate) fn release_acks(&mut self) {
        let Some(tables) = self.flows.tables_if_any() else {
            return;
        };
        let version = self.link.version;
        let outbox = &mut traffic(&mut self.traffic).outbox;
        tables
            .inbound
            .release(&mut |ack| Link::send_ack(outbox, version, ack));
    }

    // ----- enhanced authentication -----

    /// Checks an inbound AUTH: it carries its Authentication Method (5.0 section 3.15.2.2.2),
    /// this connection's ([MQTT-4.12.0-5]; none is allowed when the CONNECT had none,
    /// [MQTT-4.12.0-6]), and a reason code the peer may send now (`code_fits`). Then reports it.
    pub(crate) fn on_auth(
        &mut self,
        auth: Auth,
        code_fits: bool,
        event: impl FnOnce(Auth) -> E,
    ) -> Result<(), ProtocolViolation> {
        let Some(theirs) = &auth.properties.authentication_method else {
            return Err(ProtocolViolation::UnexpectedPacket(PacketType::Auth));
        };
        if self.auth_method.as_deref() != Some(theirs) {
            return Err(ProtocolViolation::BadAuthentication);
        }
        if !code_fits {
            return Err(ProtocolViolation::UnexpectedPacket(PacketType::Auth));
        }
        self.push_event(event(auth));
        Ok(())
    }

    /// Prepares an AUTH command: MQTT 5 only, only on a connection that uses enhanced
    /// authentication ([MQTT-4.12.0-6], [MQTT-4.12.0-7]); the method is filled in when left out
    /// and must be this connection's ([MQTT-4.12.0-5]).
    pub(crate) fn prepare_auth(&self, mut auth: Auth) -> Result<Auth, CommandError> {
        if !self.version().is_v5() {
            return Err(CommandError::RequiresV5);
        }
        let Some(method) = self.auth_method.as_deref() else {
            return Err(CommandError::NoAuthenticationMethod);
        };
        match &auth.properties.authentication_method {
            Some(theirs) if theirs != method => {
                return Err(CommandError::AuthenticationMethodMismatch)
            }
            Some(_) => {}
            None => auth.properties.authentication_method = Some(method.clone()),
        }
        Ok(auth)
    }

    // ----- closing -----

    /// Queues the DISCONNECT (MQTT 5 only) that explains a close for `code`: the code itself
    /// when DISCONNECT may carry it, else 0x80 Unspecified error.
    pub(crate) fn push_disconnect(&mut self, code: ReasonCode) {
        if self.version().is_v5() {
            let code = if code.is_valid_for(PacketType::Disconnect) {
                code
            } else {
                ReasonCode::UnspecifiedError
            };
            self.push(&Packet::Disconnect(Disconnect::new(code)));
        }
    }

    /// Ends the connection's part: the link closes, the keep alive stops, and requests that
    /// are not re-sent on reconnect (SUBSCRIBE, UNSUBSCRIBE) are abandoned. Session state
    /// stays.
    pub(crate) fn close_link(&mut self) {
        self.link.open = false;
        self.keep_alive.stop();
        let requests = self
            .flows
            .tables_if_any()
            .map(|t| t.inflight.take_requests());
        for token in requests.into_iter().flatten() {
            self.event(FlowEvent::Abandoned {
                token,
                cause: AbandonCause::ConnectionLost,
                message: None,
            });
        }
    }
}

/// A session role (client or server) as the shared read loop sees it: its core, whether it
/// takes input now, and its packet dispatch.
pub(crate) trait Role {
    /// The caller's token type.
    type Token;
    /// The role's event type.
    type Event: SessionEvent<Self::Token>;

    fn core(&mut self) -> &mut Core<Self::Token, Self::Event>;
    /// Whether another packet may be consumed now.
    fn wants_read(&self) -> bool;
    /// Handles one decoded packet; a violation closes the connection (see [`fail`]).
    fn dispatch(&mut self, now: Instant, packet: Packet) -> Result<(), ProtocolViolation>;
    /// Bytes that are not a valid packet.
    fn on_decode_error(&mut self, error: DecodeError);
    /// Whether a DISCONNECT may explain a close now (MQTT 5 is checked by the core).
    fn may_disconnect(&self) -> bool;
    /// Ends the connection and reports `Closed`.
    fn close(&mut self, initiator: Initiator, reason: CloseReason);
}

/// The read loop: consumes whole packets from the front of `buf` while the role wants input.
pub(crate) fn read<R: Role>(role: &mut R, now: Instant, buf: &mut BytesMut) {
    role.core().link.now = now;
    while role.wants_read() {
        match role.core().link.decoder.decode(buf) {
            Ok(Some(packet)) => {
                role.core().keep_alive.last_received = now;
                handle(role, now, packet);
            }
            Ok(None) => return,
            Err(error) => {
                role.on_decode_error(error);
                return;
            }
        }
    }
}

/// Dispatches one packet; a protocol violation closes the connection.
pub(crate) fn handle<R: Role>(role: &mut R, now: Instant, packet: Packet) {
    if let Err(violation) = role.dispatch(now, packet) {
        fail(
            role,
            violation.reason_code(),
            CloseReason::ProtocolViolation(violation),
        );
    }
}

/// The peer broke the protocol: tell it why (MQTT 5, where the role may) and close.
pub(crate) fn fail<R: Role>(role: &mut R, code: ReasonCode, reason: CloseReason) {
    if role.may_disconnect() {
        role.core().push_disconnect(code);
    }
    role.close(Initiator::Session, reason);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientEvent;
    use crate::server::ServerEvent;
    use crate::ClientSession;

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn the_idle_empty_state_is_boxed() {
        // Issue 12: what is empty while a connection is idle costs a core two pointers
        // (Traffic, Flows' tables) instead of 216 bytes of empty containers (the core was 344
        // bytes, a client session 512).
        assert_eq!(size_of::<Core<u64, ServerEvent<u64>>>(), 128);
        assert_eq!(size_of::<Core<u64, ClientEvent<u64>>>(), 128);
        assert_eq!(size_of::<Flows<u64>>(), 16);
        assert!(size_of::<ClientSession<u64>>() <= 296);
    }

    #[test]
    fn an_automatic_ack_allocates_no_tables() {
        // Issue 12: a QoS 1 PUBLISH acknowledged at once keeps nothing, so it does not make
        // the session allocate the box of its flow tables.
        let mut core: Core<u64, ClientEvent<u64>> = Core::new(u32::MAX);
        let publish = Publish::new(
            mqtt_streaming_proto::TopicName::new("t").unwrap(),
            mqtt_streaming_proto::QosPid::AtLeastOnce(PacketId::MIN),
            &b"x"[..],
        );
        core.on_publish(publish).unwrap();
        assert!(!core.flows.has_tables());
        assert_eq!(core.transmit_len(), 4, "the PUBACK");
        assert!(matches!(
            core.poll_event(),
            Some(ClientEvent::Message { ack: None, .. })
        ));
        core.shrink_all_idle();
        assert!(core.has_traffic(), "the PUBACK waits");
        let mut out = BytesMut::new();
        assert_eq!(core.poll_transmit(Instant::ZERO, &mut out), 4);
        core.shrink_all_idle();
        assert!(!core.has_traffic());
    }
}
