//! Everything this side sent that waits for an answer, under one packet identifier space:
//! outbound QoS 1 and QoS 2 publishes between their first transmission and their final
//! acknowledgement, and (for the client) SUBSCRIBE and UNSUBSCRIBE requests waiting for
//! SUBACK / UNSUBACK. Identifiers come from one allocator and are never reused while any entry
//! holds them.
//!
//! The publish entries are the session's memory of what the peer still owes: they survive
//! connection loss, and on reconnect with a present session they are re-sent in their original
//! order ([MQTT-4.4.0-1], [MQTT-4.6.0-1]). Requests end with the connection.
//!
//! # Layout
//!
//! Entries live in a slab (a `Vec` of slots with a free list) and never move once inserted; an
//! ordered map from packet identifier to slot index (a few bytes an entry) finds them. An
//! acknowledgement removes a small key from the map and frees a slot in place, where a map
//! holding the entries themselves shifted hundreds of bytes per entry on every removal.
//! Re-send order is an insertion counter per entry, sorted on the rare occasions it is needed
//! (reconnect, snapshot, session end).
//!
//! # Acknowledgements for identifiers with no flow
//!
//! Acknowledgements for identifiers with no flow are tolerated, as far as the standards
//! allow. Neither version makes them a protocol error: 3.1.1 has no rule on them, and 5.0
//! names the mismatch (0x92 Packet Identifier not found, in PUBREL and PUBCOMP) as "not an
//! error during recovery, but at other times [it] indicates a mismatch between the Session
//! State on the Client and Server" (5.0 section 3.6.2.1). They arise when a session was
//! lost on one side or an acknowledgement is repeated, and closing the connection for them
//! (as this crate used to) turns a harmless duplicate into a disconnect loop; mosquitto
//! ignores them too. So: a PUBACK or PUBCOMP for no flow completes nothing and is
//! ignored; a PUBREC for no flow is answered with PUBREL (0x92 in 5.0), because the peer
//! keeps the identifier until it gets one and would otherwise take our next QoS 2 PUBLISH
//! with that identifier for a duplicate ([MQTT-4.3.3-10] in 5.0, [MQTT-4.3.3-2] in 3.1.1),
//! unless the PUBREC carries an error code (the peer kept nothing). An acknowledgement of
//! the wrong kind for a flow that exists (PUBREC for QoS 1, PUBACK for QoS 2, PUBCOMP
//! before PUBREC) is still a protocol violation.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use mqtt_streaming_proto::{PacketId, PacketType, Publish, QoS, ReasonCode};

use crate::error::ProtocolViolation;

/// Where an outbound QoS 1 or QoS 2 flow stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutboundStage {
    /// QoS 1 PUBLISH sent, PUBACK owed.
    AwaitingPubAck,
    /// QoS 2 PUBLISH sent, PUBREC owed.
    AwaitingPubRec,
    /// QoS 2 PUBREL sent, PUBCOMP owed. The PUBLISH is never re-sent now ([MQTT-4.3.3-6]).
    AwaitingPubComp,
}

/// What an entry waits for.
// The PUBLISH is stored inline on purpose: boxing it would cost an allocation per publish,
// and entries never move once in their slot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Pending {
    /// An outbound PUBLISH (as first sent, DUP clear, kept for re-sending) at this stage.
    Publish(Publish, OutboundStage),
    /// A SUBSCRIBE with this many filters, waiting for its SUBACK.
    Subscribe(usize),
    /// An UNSUBSCRIBE with this many filters, waiting for its UNSUBACK.
    Unsubscribe(usize),
}

/// One entry: what it waits for and the caller's token.
#[derive(Debug)]
pub(crate) struct Entry<T> {
    pub(crate) id: PacketId,
    pub(crate) pending: Pending,
    /// The caller's token, returned when the entry ends.
    pub(crate) token: T,
    /// Position in re-send order: when the packet was sent, or for a PUBREL when its PUBREC
    /// arrived ([MQTT-4.6.0-4]).
    order: u64,
}

impl<T> Entry<T> {
    /// The stage of a publish entry (`None` for a request).
    pub(crate) fn stage(&self) -> Option<OutboundStage> {
        match self.pending {
            Pending::Publish(_, stage) => Some(stage),
            _ => None,
        }
    }

    /// The PUBLISH of a publish entry.
    pub(crate) fn publish(&self) -> Option<&Publish> {
        match &self.pending {
            Pending::Publish(publish, _) => Some(publish),
            _ => None,
        }
    }
}

/// What an acknowledgement did to a flow.
#[derive(Debug)]
pub(crate) enum AckOutcome<T> {
    /// The flow is over: return the token with this code.
    Completed(T, ReasonCode),
    /// PUBREC accepted: send PUBREL for the identifier.
    SendPubRel,
    /// A PUBREC for an identifier with no flow: send PUBREL all the same (with 0x92 Packet
    /// Identifier not found in MQTT 5), so the peer can release the identifier it holds.
    ReleaseUnknown,
    /// An acknowledgement for an identifier with no flow, which needs no answer: ignored.
    Ignored,
}

/// Slots an empty table keeps allocated.
const KEEP_SLOTS: usize = 32;

// Free slots are as large as used ones on purpose (see `Pending`).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Slot<T> {
    Used(Entry<T>),
    /// A free slot and the next free one.
    Free(Option<u32>),
}

/// Everything in flight, by packet identifier.
#[derive(Debug)]
pub(crate) struct InFlight<T> {
    slots: Vec<Slot<T>>,
    /// Head of the free list threaded through `slots`.
    free: Option<u32>,
    index: BTreeMap<PacketId, u32>,
    /// Publish entries (what the peer's Receive Maximum counts).
    publishes: usize,
    next_order: u64,
}

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: None,
            index: BTreeMap::new(),
            publishes: 0,
            next_order: 0,
        }
    }
}

impl<T> InFlight<T> {
    /// Outbound publishes in flight.
    pub(crate) fn publishes(&self) -> usize {
        self.publishes
    }

    /// Every entry: publishes and requests (identifiers in use).
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn contains(&self, id: PacketId) -> bool {
        self.index.contains_key(&id)
    }

    fn next_order(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order
    }

    fn slot(&self, id: PacketId) -> Option<usize> {
        self.index.get(&id).map(|&i| i as usize)
    }

    pub(crate) fn get(&self, id: PacketId) -> Option<&Entry<T>> {
        match self.slots.get(self.slot(id)?)? {
            Slot::Used(entry) => Some(entry),
            Slot::Free(_) => None,
        }
    }

    fn get_mut(&mut self, id: PacketId) -> Option<&mut Entry<T>> {
        let slot = self.slot(id)?;
        match self.slots.get_mut(slot)? {
            Slot::Used(entry) => Some(entry),
            Slot::Free(_) => None,
        }
    }

    /// Adds an entry under `id`, which the caller allocated (and is therefore not in use).
    fn insert_entry(&mut self, id: PacketId, pending: Pending, token: T) {
        debug_assert!(!self.contains(id), "packet id {id} allocated twice");
        if matches!(pending, Pending::Publish(..)) {
            self.publishes += 1;
        }
        let order = self.next_order();
        let entry = Slot::Used(Entry {
            id,
            pending,
            token,
            order,
        });
        let slot = match self.free {
            Some(free) => {
                let slot = free as usize;
                self.free = match self.slots[slot] {
                    Slot::Free(next) => next,
                    Slot::Used(_) => unreachable!("the free list holds free slots"),
                };
                self.slots[slot] = entry;
                free
            }
            None => {
                // At most 65,535 entries: the index fits a u32.
                let slot = self.slots.len() as u32;
                self.slots.push(entry);
                slot
            }
        };
        self.index.insert(id, slot);
    }

    /// Removes the entry for `id`.
    fn remove(&mut self, id: PacketId) -> Option<Entry<T>> {
        let slot = self.index.remove(&id)?;
        let old = core::mem::replace(&mut self.slots[slot as usize], Slot::Free(self.free));
        self.free = Some(slot);
        let Slot::Used(entry) = old else {
            unreachable!("the index points at used slots")
        };
        if matches!(entry.pending, Pending::Publish(..)) {
            self.publishes -= 1;
        }
        if self.index.is_empty() {
            // Nothing in flight: a clean slate. A small slab keeps its capacity (a steady
            // trickle of publishes allocates nothing); a large one, left by a burst, is given
            // back, so that many idle sessions (a broker's) do not each hold their largest
            // window's worth of slots.
            if self.slots.capacity() > KEEP_SLOTS {
                self.slots = Vec::new();
            } else {
                self.slots.clear();
            }
            self.free = None;
        }
        Some(entry)
    }

    /// Gives back the memory of an empty table (the slab an emptied table keeps for reuse,
    /// the index's root), for sessions that go idle.
    pub(crate) fn shrink_idle(&mut self) {
        if self.index.is_empty() {
            self.slots = Vec::new();
            self.free = None;
            self.index = BTreeMap::new();
        }
    }

    /// Records a PUBLISH that was just sent. It must carry a packet identifier (QoS 1 or 2).
    pub(crate) fn insert(&mut self, publish: Publish, token: T) {
        let stage = if publish.qos_pid.qos() == QoS::ExactlyOnce {
            OutboundStage::AwaitingPubRec
        } else {
            OutboundStage::AwaitingPubAck
        };
        self.restore(publish, token, stage);
    }

    /// Records a SUBSCRIBE or UNSUBSCRIBE that was just sent.
    pub(crate) fn insert_request(&mut self, id: PacketId, pending: Pending, token: T) {
        self.insert_entry(id, pending, token);
    }

    /// Restores a flow from a snapshot, keeping its stage.
    pub(crate) fn restore(&mut self, publish: Publish, token: T, stage: OutboundStage) {
        if let Some(id) = publish.qos_pid.packet_id() {
            self.insert_entry(id, Pending::Publish(publish, stage), token);
        }
    }

    /// Ends the flow for `id`, which the caller found at an acknowledgeable stage.
    fn complete(&mut self, id: PacketId, code: ReasonCode, packet: PacketType) -> AckOutcome<T> {
        match self.remove(id) {
            Some(entry) => AckOutcome::Completed(entry.token, code),
            None => {
                debug_assert!(false, "{packet} completed no flow");
                AckOutcome::Ignored
            }
        }
    }

    /// A PUBACK arrived. Only a QoS 1 flow accepts it; one for a QoS 2 flow is a protocol
    /// violation, one for an identifier with no publish flow (nothing in flight, or a SUBSCRIBE
    /// or UNSUBSCRIBE) is ignored (see the module docs).
    pub(crate) fn on_puback(
        &mut self,
        id: PacketId,
        code: ReasonCode,
    ) -> Result<AckOutcome<T>, ProtocolViolation> {
        match self.get(id).and_then(Entry::stage) {
            None => Ok(AckOutcome::Ignored),
            Some(OutboundStage::AwaitingPubAck) => Ok(self.complete(id, code, PacketType::PubAck)),
            Some(_) => Err(ProtocolViolation::UnexpectedAck(PacketType::PubAck, id)),
        }
    }

    /// A PUBREC arrived. Only a QoS 2 flow accepts it (a repeat after PUBREL is answered with
    /// PUBREL again). An error code ends the flow ([MQTT-4.4.0-2]); otherwise PUBREL follows
    /// ([MQTT-4.3.3-4]). One for a QoS 1 flow is a protocol violation; one for an identifier
    /// with nothing in flight is answered with PUBREL (see the module docs).
    pub(crate) fn on_pubrec(
        &mut self,
        id: PacketId,
        code: ReasonCode,
    ) -> Result<AckOutcome<T>, ProtocolViolation> {
        match self.get(id).and_then(Entry::stage) {
            // An error code says the peer dropped the message and holds nothing for it.
            None if code.is_error() => Ok(AckOutcome::Ignored),
            None => Ok(AckOutcome::ReleaseUnknown),
            Some(OutboundStage::AwaitingPubComp) => Ok(AckOutcome::SendPubRel),
            Some(OutboundStage::AwaitingPubRec) if code.is_error() => {
                Ok(self.complete(id, code, PacketType::PubRec))
            }
            Some(OutboundStage::AwaitingPubRec) => {
                let order = self.next_order();
                if let Some(entry) = self.get_mut(id) {
                    if let Pending::Publish(_, stage) = &mut entry.pending {
                        *stage = OutboundStage::AwaitingPubComp;
                    }
                    entry.order = order;
                }
                Ok(AckOutcome::SendPubRel)
            }
            Some(OutboundStage::AwaitingPubAck) => {
                Err(ProtocolViolation::UnexpectedAck(PacketType::PubRec, id))
            }
        }
    }

    /// A PUBCOMP arrived; it ends a QoS 2 flow that sent PUBREL.
    ///
    /// The flow's outcome is the PUBREC's (it had a Success code, or there would be no
    /// PUBREL). A PUBCOMP with 0x92 Packet Identifier not found answers a PUBREL the receiver
    /// had already completed before a reconnect (its PUBCOMP was lost with the connection), so
    /// it too completes the flow successfully. One before PUBREC is a protocol violation; one
    /// for an identifier with nothing in flight is ignored (see the module docs).
    pub(crate) fn on_pubcomp(
        &mut self,
        id: PacketId,
        code: ReasonCode,
    ) -> Result<AckOutcome<T>, ProtocolViolation> {
        match self.get(id).and_then(Entry::stage) {
            None => Ok(AckOutcome::Ignored),
            Some(OutboundStage::AwaitingPubComp) => {
                let code = if code == ReasonCode::PacketIdentifierNotFound {
                    ReasonCode::Success
                } else {
                    code
                };
                Ok(self.complete(id, code, PacketType::PubComp))
            }
            Some(_) => Err(ProtocolViolation::UnexpectedAck(PacketType::PubComp, id)),
        }
    }

    /// A SUBACK (`subscribe`) or UNSUBACK arrived with `codes` reason codes (`None`: the
    /// packet carries none, MQTT 3.1.1 UNSUBACK). Ends the request and returns its token.
    pub(crate) fn on_request_ack(
        &mut self,
        id: PacketId,
        subscribe: bool,
        codes: Option<usize>,
    ) -> Result<T, ProtocolViolation> {
        let packet = if subscribe {
            PacketType::SubAck
        } else {
            PacketType::UnsubAck
        };
        let expected = match self.get(id).map(|e| &e.pending) {
            Some(Pending::Subscribe(n)) if subscribe => *n,
            Some(Pending::Unsubscribe(n)) if !subscribe => *n,
            _ => return Err(ProtocolViolation::UnexpectedAck(packet, id)),
        };
        // [MQTT-3.9.3-1], [MQTT-3.11.3-1] (5.0): one code per filter, in order.
        if codes.is_some_and(|n| n != expected) {
            return Err(ProtocolViolation::AckCountMismatch);
        }
        self.remove(id)
            .map(|entry| entry.token)
            .ok_or(ProtocolViolation::UnexpectedAck(packet, id))
    }

    /// Identifiers of the publish flows in re-send order.
    pub(crate) fn resend_order(&self) -> Vec<PacketId> {
        let mut ids: Vec<(u64, PacketId)> = self
            .slots
            .iter()
            .filter_map(|slot| match slot {
                Slot::Used(e) if e.stage().is_some() => Some((e.order, e.id)),
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// Every publish flow in send order, for a snapshot.
    pub(crate) fn iter_in_order(&self) -> impl Iterator<Item = &Entry<T>> {
        self.resend_order()
            .into_iter()
            .filter_map(move |id| self.get(id))
    }

    /// Removes every SUBSCRIBE and UNSUBSCRIBE request (the connection ended), in send order,
    /// returning their tokens.
    pub(crate) fn take_requests(&mut self) -> Vec<T> {
        if self.publishes == self.len() {
            return Vec::new();
        }
        let mut ids: Vec<(u64, PacketId)> = self
            .slots
            .iter()
            .filter_map(|slot| match slot {
                Slot::Used(e) if e.stage().is_none() => Some((e.order, e.id)),
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|(_, id)| self.remove(id))
            .map(|entry| entry.token)
            .collect()
    }

    /// Removes every publish flow (the session ended), in send order, with its stage.
    pub(crate) fn take_publishes_with_stage(&mut self) -> Vec<(T, Publish, OutboundStage)> {
        self.resend_order()
            .into_iter()
            .filter_map(|id| self.remove(id))
            .filter_map(|entry| match entry.pending {
                Pending::Publish(publish, stage) => Some((entry.token, publish, stage)),
                _ => None,
            })
            .collect()
    }

    /// Removes every publish flow (the session ended), in send order, as `(token, publish)`.
    pub(crate) fn take_publishes(&mut self) -> Vec<(T, Publish)> {
        self.resend_order()
            .into_iter()
            .filter_map(|id| self.remove(id))
            .filter_map(|entry| match entry.pending {
                Pending::Publish(publish, _) => Some((entry.token, publish)),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_streaming_proto::{QosPid, TopicName};

    fn publish(id: u16, qos: QoS) -> Publish {
        let id = PacketId::new(id).unwrap();
        Publish::new(
            TopicName::new("t").unwrap(),
            QosPid::new(qos, id),
            &b"x"[..],
        )
    }

    fn pid(id: u16) -> PacketId {
        PacketId::new(id).unwrap()
    }

    #[test]
    fn slots_are_reused_and_order_survives_out_of_order_acks() {
        // [MQTT-4.6.0-1]: re-sends go in the original order, whatever order acks freed slots.
        let mut table: InFlight<u16> = InFlight::default();
        for id in 1..=4 {
            table.insert(publish(id, QoS::AtLeastOnce), id);
        }
        table.insert_request(pid(5), Pending::Subscribe(1), 5);
        assert!(matches!(
            table.on_puback(pid(2), ReasonCode::Success),
            Ok(AckOutcome::Completed(2, _))
        ));
        table.insert(publish(6, QoS::ExactlyOnce), 6);
        assert_eq!(table.slots.len(), 5, "the freed slot was reused");
        assert_eq!((table.len(), table.publishes()), (5, 4));
        assert_eq!(table.resend_order(), [pid(1), pid(3), pid(4), pid(6)]);
        // PUBREC moves a QoS 2 flow to the back ([MQTT-4.6.0-4]): its PUBREL goes after.
        table.insert(publish(7, QoS::AtLeastOnce), 7);
        assert!(matches!(
            table.on_pubrec(pid(6), ReasonCode::Success),
            Ok(AckOutcome::SendPubRel)
        ));
        assert_eq!(
            table.resend_order(),
            [pid(1), pid(3), pid(4), pid(7), pid(6)]
        );
        assert_eq!(table.take_requests(), [5]);
        assert!(matches!(
            table.on_request_ack(pid(5), true, Some(1)),
            Err(ProtocolViolation::UnexpectedAck(PacketType::SubAck, _))
        ));
        let tokens: Vec<u16> = table.take_publishes().into_iter().map(|(t, _)| t).collect();
        assert_eq!(tokens, [1, 3, 4, 7, 6]);
        assert_eq!((table.len(), table.slots.len()), (0, 0));
    }

    #[test]
    fn an_emptied_table_gives_a_large_slab_back() {
        // Bounded memory when idle: a burst's slots do not outlive it.
        let mut table: InFlight<u16> = InFlight::default();
        for id in 1..=100 {
            table.insert(publish(id, QoS::AtLeastOnce), id);
        }
        for id in 1..=100 {
            let _ = table.on_puback(pid(id), ReasonCode::Success);
        }
        assert_eq!(table.slots.capacity(), 0);
        table.insert(publish(1, QoS::AtLeastOnce), 1);
        let _ = table.on_puback(pid(1), ReasonCode::Success);
        assert!(table.slots.capacity() > 0, "a small slab is kept for reuse");
    }

    #[test]
    fn shrink_idle_gives_an_empty_table_back_and_keeps_a_used_one() {
        // Bounded memory when idle: an idle session holds no slab at all.
        let mut table: InFlight<u16> = InFlight::default();
        table.insert(publish(1, QoS::AtLeastOnce), 1);
        table.shrink_idle();
        assert_eq!(table.len(), 1, "a table in use is untouched");
        let _ = table.on_puback(pid(1), ReasonCode::Success);
        assert!(table.slots.capacity() > 0);
        table.shrink_idle();
        assert_eq!(table.slots.capacity(), 0);
        table.insert(publish(2, QoS::ExactlyOnce), 2);
        assert_eq!(table.resend_order(), [pid(2)]);
    }

    #[test]
    fn a_request_id_is_not_a_publish_flow() {
        // Publish acknowledgements treat a request's identifier as one with no publish flow
        // (ignored, or PUBREL 0x92 for a PUBREC), and the request is unaffected.
        let mut table: InFlight<u16> = InFlight::default();
        table.insert_request(pid(1), Pending::Unsubscribe(2), 1);
        assert!(matches!(
            table.on_puback(pid(1), ReasonCode::Success),
            Ok(AckOutcome::Ignored)
        ));
        assert!(matches!(
            table.on_pubrec(pid(1), ReasonCode::Success),
            Ok(AckOutcome::ReleaseUnknown)
        ));
        assert!(matches!(
            table.on_pubcomp(pid(1), ReasonCode::Success),
            Ok(AckOutcome::Ignored)
        ));
        assert_eq!(table.len(), 1);
        assert!(table.on_request_ack(pid(1), true, Some(2)).is_err());
        assert_eq!(
            table.on_request_ack(pid(1), false, Some(1)),
            Err(ProtocolViolation::AckCountMismatch)
        );
        assert_eq!(table.on_request_ack(pid(1), false, None), Ok(1));
        assert_eq!(table.len(), 0);
    }
}
