//! Inbound QoS 1 and QoS 2 publishes: acknowledgements sent in the order the spec requires,
//! exactly-once delivery for QoS 2, and the bound on how many may be unfinished at once.
//!
//! Acknowledgements can be automatic or manual. In manual mode the application acks messages
//! in any order; the acks are held back and released in arrival order, so PUBACKs and PUBRECs
//! leave in the order their PUBLISHes arrived ([MQTT-4.6.0-2], [MQTT-4.6.0-3]).

use alloc::boxed::Box;
use alloc::collections::{BTreeSet, VecDeque};

use mqtt_streaming_proto::{PacketId, QoS, ReasonCode};

use crate::error::ProtocolViolation;

/// How inbound QoS 1 and QoS 2 messages are acknowledged (both roles).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AckMode {
    /// The session acknowledges each message as it delivers it.
    #[default]
    Automatic,
    /// The application acknowledges each message with `ack`, in any order; the session sends
    /// the PUBACKs and PUBRECs in the order the spec requires.
    Manual,
}

/// Identifies an inbound message awaiting a manual acknowledgement.
///
/// It stays valid across reconnections of the same session; it becomes stale when the session
/// is discarded (the server reported no session), and acking a stale id is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InboundId {
    pub(crate) packet_id: PacketId,
    pub(crate) generation: u32,
}

impl InboundId {
    /// The packet identifier of the PUBLISH.
    pub fn packet_id(&self) -> PacketId {
        self.packet_id
    }
}

#[derive(Clone, Copy, Debug)]
struct PendingAck {
    packet_id: PacketId,
    qos: QoS,
    /// The application's verdict, once it has acked.
    verdict: Option<ReasonCode>,
}

/// What to do with an inbound PUBLISH.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// New message: deliver it. With `Some`, the application must ack it with that id.
    Deliver(Option<InboundId>),
    /// A re-send of a message already delivered: do not deliver it again; with `true`, answer
    /// with PUBREC again ([MQTT-4.3.3-10]).
    Duplicate { resend_pubrec: bool },
}

/// An acknowledgement to transmit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AckToSend {
    PubAck(PacketId, ReasonCode),
    PubRec(PacketId, ReasonCode),
}

/// Inbound flow state of one session: empty while no inbound QoS 1 or 2 message is unfinished
/// (it lives in the box of [`Tables`](super::flows::Tables), which an idle session gives back).
/// The generation that makes manual-ack ids stale lives outside, in
/// [`Flows`](super::flows::Flows): it must outlast the box.
#[derive(Debug, Default)]
pub(crate) struct Inbound {
    /// Acks not sent yet, in arrival order.
    pending: VecDeque<PendingAck>,
    /// QoS 2 messages answered with PUBREC and waiting for PUBREL: boxed, and absent while
    /// none waits (8 bytes in the flow tables instead of 24; only QoS 2 publishers use it).
    #[allow(clippy::box_collection)] // the box is what makes the field small
    awaiting_pubrel: Option<Box<BTreeSet<PacketId>>>,
}

impl Inbound {
    /// Messages not finished: acks not yet sent plus QoS 2 awaiting PUBREL.
    pub(crate) fn unfinished(&self) -> usize {
        self.pending.len() + self.awaiting_pubrel.as_ref().map_or(0, |s| s.len())
    }

    /// Whether nothing is unfinished (the state holds no memory).
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.awaiting_pubrel.is_none()
    }

    /// Accepts a QoS 1 or 2 PUBLISH. `limit` is our Receive Maximum; `manual` selects manual
    /// acks, whose ids carry the session's `generation`. With automatic acks the ack to send is
    /// returned through `acks`.
    pub(crate) fn on_publish(
        &mut self,
        id: PacketId,
        qos: QoS,
        limit: u16,
        manual: bool,
        generation: u32,
        acks: &mut impl FnMut(AckToSend),
    ) -> Result<Arrival, ProtocolViolation> {
        if qos == QoS::ExactlyOnce
            && self
                .awaiting_pubrel
                .as_ref()
                .is_some_and(|s| s.contains(&id))
        {
            return Ok(Arrival::Duplicate {
                resend_pubrec: true,
            });
        }
        if self.pending.iter().any(|p| p.packet_id == id) {
            // The peer re-sent a message the application has not acked yet (after a
            // reconnect): it was delivered once already.
            return Ok(Arrival::Duplicate {
                resend_pubrec: false,
            });
        }
        if self.unfinished() >= usize::from(limit) {
            return Err(ProtocolViolation::ReceiveMaximumExceeded);
        }
        if manual {
            self.pending.push_back(PendingAck {
                packet_id: id,
                qos,
                verdict: None,
            });
            return Ok(Arrival::Deliver(Some(InboundId {
                packet_id: id,
                generation,
            })));
        }
        acks(self.settle(id, qos, ReasonCode::Success));
        Ok(Arrival::Deliver(None))
    }

    /// Records the ack for a message and returns the packet to send.
    fn settle(&mut self, id: PacketId, qos: QoS, code: ReasonCode) -> AckToSend {
        if qos == QoS::ExactlyOnce {
            // After an error code the identifier is free again ([MQTT-4.3.3-9]).
            if !code.is_error() {
                self.restore_awaiting_pubrel(id);
            }
            AckToSend::PubRec(id, code)
        } else {
            AckToSend::PubAck(id, code)
        }
    }

    /// Records the application's verdict for `id`, given the session's current `generation`.
    /// `Err(())`: nothing waits for this id. The ack leaves with [`Inbound::release`], once
    /// every earlier message is acked too.
    pub(crate) fn ack(
        &mut self,
        id: InboundId,
        code: ReasonCode,
        generation: u32,
    ) -> Result<(), ()> {
        if id.generation != generation {
            return Err(());
        }
        let entry = self
            .pending
            .iter_mut()
            .find(|p| p.packet_id == id.packet_id && p.verdict.is_none())
            .ok_or(())?;
        entry.verdict = Some(code);
        Ok(())
    }

    /// Sends every ack that is now at the front of the arrival order.
    pub(crate) fn release(&mut self, acks: &mut impl FnMut(AckToSend)) {
        while let Some(front) = self.pending.front().copied() {
            let Some(code) = front.verdict else { break };
            self.pending.pop_front();
            acks(self.settle(front.packet_id, front.qos, code));
        }
    }

    /// A PUBREL arrived. `Ok(true)`: the identifier was awaiting it; `Ok(false)`: unknown
    /// (answer PUBCOMP with Packet Identifier not found in MQTT 5). A PUBREL for a message
    /// whose PUBREC was never sent is a protocol violation.
    pub(crate) fn on_pubrel(&mut self, id: PacketId) -> Result<bool, ProtocolViolation> {
        if let Some(set) = &mut self.awaiting_pubrel {
            if set.remove(&id) {
                if set.is_empty() {
                    self.awaiting_pubrel = None;
                }
                return Ok(true);
            }
        }
        if self.pending.iter().any(|p| p.packet_id == id) {
            return Err(ProtocolViolation::UnexpectedAck(
                mqtt_streaming_proto::PacketType::PubRel,
                id,
            ));
        }
        Ok(false)
    }

    /// Identifiers awaiting PUBREL (for a snapshot).
    pub(crate) fn awaiting_pubrel(&self) -> impl Iterator<Item = PacketId> + '_ {
        self.awaiting_pubrel.iter().flat_map(|s| s.iter().copied())
    }

    /// QoS 2 identifiers the application accepted whose PUBREC waits for an earlier
    /// acknowledgement, or for the peer to reconnect (for a snapshot: the PUBREC is as good
    /// as sent).
    pub(crate) fn accepted_qos2(&self) -> impl Iterator<Item = PacketId> + '_ {
        self.pending
            .iter()
            .filter(|p| p.qos == QoS::ExactlyOnce && p.verdict.is_some_and(|c| !c.is_error()))
            .map(|p| p.packet_id)
    }

    pub(crate) fn restore_awaiting_pubrel(&mut self, id: PacketId) {
        self.awaiting_pubrel
            .get_or_insert_with(Box::default)
            .insert(id);
    }

    /// Forgets everything: the session was discarded (the owner moves the generation on, so
    /// that outstanding manual-ack ids become stale).
    pub(crate) fn reset(&mut self) {
        self.pending.clear();
        self.awaiting_pubrel = None;
    }
}
