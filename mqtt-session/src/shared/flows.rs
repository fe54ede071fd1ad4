//! The publish flows of one session in both directions, written once for both roles.
//!
//! [`Flows`] is the durable part (what a session remembers across connections): packet
//! identifiers, outbound QoS 1/2 flows, the queue of publishes waiting for the window, and
//! inbound acknowledgement state. [`Link`] is the per-connection part: the transmit buffer,
//! the decoder, topic aliases and the peer's limits. The client and server sessions own one of
//! each and call into them; the flow logic (window, quotas, acks, de-duplication, re-send)
//! lives only here.

use alloc::collections::VecDeque;

use mqtt_streaming_proto::{
    AckProperties, Decoder, Packet, PacketId, ProtocolVersion, PubResponse, Publish, QoS,
    ReasonCode, PROTOCOL_MAX_PACKET_SIZE,
};

use super::inbound::{AckToSend, Arrival, Inbound, InboundId};
use super::inflight::{AckOutcome, InFlight, Stage};
use super::outbox::Outbox;
use super::packet_ids::PacketIdAllocator;
use super::topic_alias::{InboundAliases, OutboundAliases};
use crate::error::{CommandError, ProtocolViolation, Rejected};
use crate::message::Message;
use crate::time::Instant;

/// Why an operation ended without an answer from the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AbandonCause {
    /// The session ended (the peer has no session for us, or a clean start discarded it):
    /// in-flight publishes can no longer complete.
    SessionLost,
    /// The connection ended before the peer answered a request that is not re-sent on
    /// reconnect (SUBSCRIBE, UNSUBSCRIBE): make it again.
    ConnectionLost,
    /// A queued operation turned out to be impossible once the peer's limits were known.
    Refused(CommandError),
    /// The message's Message Expiry Interval passed while it waited in the queue
    /// ([MQTT-3.3.2-5]).
    Expired,
}

/// What the publish flows report; each role turns these into its own event type.
#[derive(Debug)]
pub(crate) enum FlowEvent<T> {
    Message {
        publish: Publish,
        ack: Option<InboundId>,
    },
    Published {
        token: T,
        reason_code: ReasonCode,
        properties: AckProperties,
    },
    Abandoned {
        token: T,
        cause: AbandonCause,
        message: Option<Message>,
    },
}

/// What the peer accepts from us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PeerLimits {
    pub(crate) receive_maximum: u16,
    pub(crate) maximum_qos: QoS,
    pub(crate) retain_available: bool,
    pub(crate) maximum_packet_size: u32,
    pub(crate) topic_alias_maximum: u16,
}

impl Default for PeerLimits {
    fn default() -> Self {
        Self {
            receive_maximum: u16::MAX,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            maximum_packet_size: PROTOCOL_MAX_PACKET_SIZE,
            topic_alias_maximum: 0,
        }
    }
}

/// One network connection's protocol state.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) outbox: Outbox,
    pub(crate) decoder: Decoder,
    pub(crate) inbound_aliases: InboundAliases,
    pub(crate) outbound_aliases: OutboundAliases,
    pub(crate) peer: PeerLimits,
    /// Our Receive Maximum for this connection.
    pub(crate) receive_maximum: u16,
    /// Our own cap on outbound QoS 1/2 in flight.
    pub(crate) max_inflight: u16,
    pub(crate) manual_acks: bool,
    /// Whether publishes may be sent (the connection is established).
    pub(crate) open: bool,
    /// The time of the input or command being handled (set at every entry point).
    pub(crate) now: Instant,
}

impl Link {
    pub(crate) fn new(max_packet_size: u32) -> Self {
        Self {
            outbox: Outbox::default(),
            decoder: Decoder::new(ProtocolVersion::V3_1_1).with_max_packet_size(max_packet_size),
            inbound_aliases: InboundAliases::default(),
            outbound_aliases: OutboundAliases::default(),
            peer: PeerLimits::default(),
            receive_maximum: u16::MAX,
            max_inflight: u16::MAX,
            manual_acks: false,
            open: false,
            now: Instant::ZERO,
        }
    }

    pub(crate) fn version(&self) -> ProtocolVersion {
        self.outbox.version()
    }

    /// Switches both directions to `version`.
    pub(crate) fn set_version(&mut self, version: ProtocolVersion) {
        self.outbox.set_version(version);
        self.decoder.set_version(version);
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
        let size = packet.encoded_len(self.version())?;
        if size > max as usize {
            return Err(CommandError::PacketTooLarge { size, max });
        }
        Ok(())
    }

    /// Encodes a packet the session built itself (valid by construction).
    pub(crate) fn push(&mut self, packet: &Packet) {
        let result = self.outbox.push(packet);
        debug_assert!(
            result.is_ok(),
            "session built an unencodable packet: {result:?}"
        );
    }

    fn window(&self) -> usize {
        usize::from(self.max_inflight.min(self.peer.receive_maximum)).max(1)
    }

    fn send_ack(outbox: &mut Outbox, ack: AckToSend) {
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
        let result = outbox.push(&packet);
        debug_assert!(result.is_ok());
    }

    /// Encodes a PUBLISH, through an automatic topic alias when enabled.
    fn encode_publish(
        &mut self,
        publish: &Publish,
    ) -> Result<(), mqtt_streaming_proto::EncodeError> {
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
                    return self.outbox.push_publish(&aliased);
                }
            }
        }
        self.outbox.push_publish(publish)
    }
}

/// The durable publish state of a session.
#[derive(Debug)]
pub(crate) struct Flows<T> {
    pub(crate) ids: PacketIdAllocator,
    pub(crate) inflight: InFlight<T>,
    pub(crate) queue: VecDeque<Queued<T>>,
    pub(crate) inbound: Inbound,
    /// In-flight PUBLISHes still to be re-sent on this connection, in order: those beyond the
    /// peer's Receive Maximum when the session resumed ([MQTT-4.9.0-2]).
    pub(crate) resend_pending: VecDeque<PacketId>,
}

impl<T> Default for Flows<T> {
    fn default() -> Self {
        Self {
            ids: PacketIdAllocator::default(),
            inflight: InFlight::default(),
            queue: VecDeque::new(),
            inbound: Inbound::default(),
            resend_pending: VecDeque::new(),
        }
    }
}

/// A publish waiting for the window or for a connection, with the time it was queued (for
/// its Message Expiry Interval).
#[derive(Debug)]
pub(crate) struct Queued<T> {
    pub(crate) message: Message,
    pub(crate) token: T,
    pub(crate) since: Instant,
}

impl<T> Queued<T> {
    /// Applies the time spent waiting to the Message Expiry Interval: `None` when it expired,
    /// else the message with the remaining interval ([MQTT-3.3.2-6]).
    fn age(mut self, now: Instant) -> Result<Self, Self> {
        let Some(interval) = self.message.properties.message_expiry_interval else {
            return Ok(self);
        };
        let waited = u32::try_from((now - self.since).as_secs()).unwrap_or(u32::MAX);
        if waited >= interval {
            return Err(self);
        }
        self.message.properties.message_expiry_interval = Some(interval - waited);
        Ok(self)
    }
}

/// Identifiers in use outside the publish flows (the client's pending SUBSCRIBEs).
pub(crate) trait OtherIds {
    fn count(&self) -> usize;
    fn contains(&self, id: PacketId) -> bool;
}

impl OtherIds for () {
    fn count(&self) -> usize {
        0
    }
    fn contains(&self, _: PacketId) -> bool {
        false
    }
}

impl<T> Flows<T> {
    /// A free packet identifier, or `None` when all 65,535 are taken.
    pub(crate) fn allocate_id(&mut self, other: &impl OtherIds) -> Option<PacketId> {
        let inflight = &self.inflight;
        self.ids.allocate(inflight.len() + other.count(), |id| {
            inflight.contains(id) || other.contains(id)
        })
    }

    fn can_send(&self, link: &Link, qos: QoS, other: &impl OtherIds) -> bool {
        // Nothing new before the re-sends ([MQTT-4.6.0-1]).
        if !self.resend_pending.is_empty() {
            return false;
        }
        qos == QoS::AtMostOnce
            || (self.inflight.len() < link.window()
                && self.inflight.len() + other.count() < usize::from(u16::MAX))
    }

    /// Checks `message` against the peer's limits (only meaningful once they are known).
    pub(crate) fn check_publish(link: &Link, message: &Message) -> Result<(), CommandError> {
        if message.topic.is_empty() && message.properties.topic_alias.is_none() {
            return Err(CommandError::Encode(
                mqtt_streaming_proto::EncodeError::EmptyTopicWithoutAlias,
            ));
        }
        if !link.open {
            return Ok(());
        }
        let peer = &link.peer;
        if message.qos > peer.maximum_qos {
            return Err(CommandError::QoSNotSupported);
        }
        if message.retain && !peer.retain_available {
            return Err(CommandError::RetainNotSupported);
        }
        if let Some(alias) = message.properties.topic_alias {
            if alias.get() > peer.topic_alias_maximum {
                return Err(CommandError::Invalid(
                    "topic alias above the peer's maximum",
                ));
            }
        }
        let size = publish_size(message, link.version())?;
        if size > peer.maximum_packet_size as usize {
            return Err(CommandError::PacketTooLarge {
                size,
                max: peer.maximum_packet_size,
            });
        }
        Ok(())
    }

    /// The publish command: send now if the link is open and the window has room, else queue
    /// (bounded by `max_queued`; the transmit buffer is bounded by `max_transmit`).
    pub(crate) fn publish<E: From<FlowEvent<T>>>(
        &mut self,
        link: &mut Link,
        message: Message,
        token: T,
        limits: (usize, usize),
        other: &impl OtherIds,
        events: &mut VecDeque<E>,
    ) -> Result<(), Rejected<Message, T>> {
        let (max_queued, max_transmit) = limits;
        let reject = |error, command, token| {
            Err(Rejected {
                error,
                command,
                token,
            })
        };
        if let Err(error) = Self::check_publish(link, &message) {
            return reject(error, message, token);
        }
        if self.queue.len() >= max_queued || link.outbox.len() >= max_transmit {
            return reject(CommandError::QueueFull, message, token);
        }
        if link.open && self.queue.is_empty() && self.can_send(link, message.qos, other) {
            return match self.send_publish(link, message, token, other, events) {
                Ok(()) => Ok(()),
                Err((error, command, token)) => reject(error, command, token),
            };
        }
        self.queue.push_back(Queued {
            message,
            token,
            since: link.now,
        });
        Ok(())
    }

    /// Sends a message now; the caller checked the window.
    #[allow(clippy::type_complexity)]
    fn send_publish<E: From<FlowEvent<T>>>(
        &mut self,
        link: &mut Link,
        message: Message,
        token: T,
        other: &impl OtherIds,
        events: &mut VecDeque<E>,
    ) -> Result<(), (CommandError, Message, T)> {
        let qos = message.qos;
        let id = if qos == QoS::AtMostOnce {
            PacketId::MIN
        } else {
            match self.allocate_id(other) {
                Some(id) => id,
                None => return Err((CommandError::QueueFull, message, token)),
            }
        };
        let publish = message.into_publish(id);
        if let Err(e) = link.encode_publish(&publish) {
            return Err((
                CommandError::Encode(e),
                Message::from_publish(publish),
                token,
            ));
        }
        if qos == QoS::AtMostOnce {
            events.push_back(
                FlowEvent::Published {
                    token,
                    reason_code: ReasonCode::Success,
                    properties: AckProperties::default(),
                }
                .into(),
            );
        } else {
            self.inflight.insert(publish, token);
        }
        Ok(())
    }

    /// Sends queued publishes while the window allows.
    pub(crate) fn pump<E: From<FlowEvent<T>>>(
        &mut self,
        link: &mut Link,
        other: &impl OtherIds,
        events: &mut VecDeque<E>,
    ) {
        // Re-sends held back by the window go first, as acks make room.
        while link.open
            && self
                .inflight
                .len()
                .saturating_sub(self.resend_pending.len())
                < link.window()
        {
            let Some(id) = self.resend_pending.pop_front() else {
                break;
            };
            // A flow the peer acknowledged meanwhile is not re-sent ([MQTT-4.3.3-6]).
            let flow = self.inflight.get(id);
            if let Some(flow) = flow.filter(|f| f.stage != Stage::AwaitingPubComp) {
                let mut publish = flow.publish.clone();
                publish.dup = true;
                link.push(&Packet::Publish(publish));
            }
        }
        while link.open {
            let Some(front) = self.queue.front() else {
                break;
            };
            if !self.can_send(link, front.message.qos, other) {
                break;
            }
            let Some(queued) = self.queue.pop_front() else {
                break;
            };
            let Queued { message, token, .. } = match queued.age(link.now) {
                Ok(queued) => queued,
                Err(expired) => {
                    events.push_back(
                        FlowEvent::Abandoned {
                            token: expired.token,
                            cause: AbandonCause::Expired,
                            message: Some(expired.message),
                        }
                        .into(),
                    );
                    continue;
                }
            };
            let result = match Self::check_publish(link, &message) {
                Ok(()) => self.send_publish(link, message, token, other, events),
                Err(e) => Err((e, message, token)),
            };
            if let Err((error, message, token)) = result {
                events.push_back(
                    FlowEvent::Abandoned {
                        token,
                        cause: AbandonCause::Refused(error),
                        message: Some(message),
                    }
                    .into(),
                );
            }
        }
    }

    /// Handles PUBACK, PUBREC, PUBREL and PUBCOMP. Returns `Ok(false)` for other packets.
    pub(crate) fn on_response<E: From<FlowEvent<T>>>(
        &mut self,
        link: &mut Link,
        packet: &Packet,
        events: &mut VecDeque<E>,
    ) -> Result<bool, ProtocolViolation> {
        let (outcome, r) = match packet {
            Packet::PubAck(r) => (self.inflight.on_puback(r.packet_id, r.reason_code)?, r),
            Packet::PubRec(r) => (self.inflight.on_pubrec(r.packet_id, r.reason_code)?, r),
            Packet::PubComp(r) => (self.inflight.on_pubcomp(r.packet_id, r.reason_code)?, r),
            Packet::PubRel(r) => {
                let known = self.inbound.on_pubrel(r.packet_id)?;
                // [MQTT-4.3.3-11]: answer with PUBCOMP; in MQTT 5 an unknown id gets 0x92.
                let code = if known {
                    ReasonCode::Success
                } else {
                    ReasonCode::PacketIdentifierNotFound
                };
                link.push(&Packet::PubComp(PubResponse {
                    reason_code: code,
                    ..PubResponse::new(r.packet_id)
                }));
                return Ok(true);
            }
            _ => return Ok(false),
        };
        match outcome {
            AckOutcome::Completed(token, reason_code) => events.push_back(
                FlowEvent::Published {
                    token,
                    reason_code,
                    properties: r.properties.clone(),
                }
                .into(),
            ),
            // [MQTT-4.3.3-4]: PUBREC accepted, release with PUBREL.
            AckOutcome::SendPubRel => link.push(&Packet::PubRel(PubResponse::new(r.packet_id))),
            // A PUBREC for no flow: release the peer's identifier all the same, with 0x92 in
            // MQTT 5 (5.0 section 3.6.2.1; see the `inflight` module docs).
            AckOutcome::ReleaseUnknown => {
                let reason_code = if link.version().is_v5() {
                    ReasonCode::PacketIdentifierNotFound
                } else {
                    ReasonCode::Success
                };
                link.push(&Packet::PubRel(PubResponse {
                    reason_code,
                    ..PubResponse::new(r.packet_id)
                }));
            }
            AckOutcome::Ignored => {}
        }
        Ok(true)
    }

    /// Handles an inbound PUBLISH: resolves its topic alias, applies the ack mode and QoS 2
    /// de-duplication, and delivers it unless it is a re-send.
    pub(crate) fn on_publish<E: From<FlowEvent<T>>>(
        &mut self,
        link: &mut Link,
        mut publish: Publish,
        events: &mut VecDeque<E>,
    ) -> Result<(), ProtocolViolation> {
        if link.version().is_v5() {
            link.inbound_aliases.resolve(&mut publish)?;
        }
        let Some(id) = publish.qos_pid.packet_id() else {
            events.push_back(FlowEvent::Message { publish, ack: None }.into());
            return Ok(());
        };
        let outbox = &mut link.outbox;
        let arrival = self.inbound.on_publish(
            id,
            publish.qos_pid.qos(),
            link.receive_maximum,
            link.manual_acks,
            &mut |ack| Link::send_ack(outbox, ack),
        )?;
        match arrival {
            Arrival::Deliver(ack) => events.push_back(FlowEvent::Message { publish, ack }.into()),
            Arrival::Duplicate {
                resend_pubrec: true,
            } => {
                link.push(&Packet::PubRec(PubResponse::new(id)));
            }
            Arrival::Duplicate {
                resend_pubrec: false,
            } => {}
        }
        Ok(())
    }

    /// A manual acknowledgement.
    pub(crate) fn ack(
        &mut self,
        link: &mut Link,
        id: InboundId,
        reason_code: ReasonCode,
    ) -> Result<(), CommandError> {
        let valid = reason_code == ReasonCode::Success
            || (link.version().is_v5()
                && reason_code.is_valid_for(mqtt_streaming_proto::PacketType::PubAck)
                && reason_code.is_valid_for(mqtt_streaming_proto::PacketType::PubRec));
        if !valid {
            return Err(CommandError::Invalid(
                "reason code not valid for PUBACK/PUBREC in this version",
            ));
        }
        self.inbound
            .ack(id, reason_code)
            .map_err(|()| CommandError::UnknownAck)?;
        if link.open {
            self.release_acks(link);
        }
        Ok(())
    }

    /// Sends manual acks that are now in order.
    pub(crate) fn release_acks(&mut self, link: &mut Link) {
        let outbox = &mut link.outbox;
        self.inbound.release(&mut |ack| Link::send_ack(outbox, ack));
    }

    /// Re-sends unacknowledged PUBLISHes (DUP set, same identifiers) and PUBRELs in their
    /// original order ([MQTT-4.4.0-1], [MQTT-4.6.0-1]). Every flow counts against the peer's
    /// Receive Maximum ([MQTT-4.9.0-2]): PUBLISHes beyond it wait in order for `pump`.
    pub(crate) fn resend(&mut self, link: &mut Link) {
        self.resend_pending.clear();
        let order = self.inflight.resend_order();
        let releasing = order
            .iter()
            .filter(|id| {
                self.inflight
                    .get(**id)
                    .is_some_and(|f| f.stage == Stage::AwaitingPubComp)
            })
            .count();
        let mut quota = link.window().saturating_sub(releasing);
        for id in order {
            let Some(flow) = self.inflight.get(id) else {
                continue;
            };
            let packet = match flow.stage {
                Stage::AwaitingPubComp => Packet::PubRel(PubResponse::new(id)),
                _ if quota == 0 || !self.resend_pending.is_empty() => {
                    self.resend_pending.push_back(id);
                    continue;
                }
                _ => {
                    quota -= 1;
                    let mut publish = flow.publish.clone();
                    publish.dup = true;
                    Packet::Publish(publish)
                }
            };
            link.push(&packet);
        }
    }

    /// The session is gone: abandon what can no longer complete and start afresh. Queued
    /// publishes (never sent) stay queued for the new session.
    pub(crate) fn discard<E: From<FlowEvent<T>>>(&mut self, events: &mut VecDeque<E>) {
        for flow in self.inflight.take_all() {
            events.push_back(
                FlowEvent::Abandoned {
                    token: flow.token,
                    cause: AbandonCause::SessionLost,
                    message: Some(Message::from_publish(flow.publish)),
                }
                .into(),
            );
        }
        self.inbound.reset();
        self.ids.reset();
        self.resend_pending.clear();
    }

    /// Abandons queued publishes too (the session will never be resumed).
    pub(crate) fn discard_all<E: From<FlowEvent<T>>>(&mut self, events: &mut VecDeque<E>) {
        self.discard(events);
        for Queued { message, token, .. } in self.queue.drain(..) {
            events.push_back(
                FlowEvent::Abandoned {
                    token,
                    cause: AbandonCause::SessionLost,
                    message: Some(message),
                }
                .into(),
            );
        }
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
