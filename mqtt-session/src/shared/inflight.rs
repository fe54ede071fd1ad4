//! Outbound QoS 1 and QoS 2 publishes between their first transmission and their final
//! acknowledgement. The table is the session's memory of what the peer still owes: it survives
//! connection loss, and on reconnect with a present session its entries are re-sent in their
//! original order ([MQTT-4.4.0-1], [MQTT-4.6.0-1]).
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
pub enum Stage {
    /// QoS 1 PUBLISH sent, PUBACK owed.
    AwaitingPubAck,
    /// QoS 2 PUBLISH sent, PUBREC owed.
    AwaitingPubRec,
    /// QoS 2 PUBREL sent, PUBCOMP owed. The PUBLISH is never re-sent now ([MQTT-4.3.3-6]).
    AwaitingPubComp,
}

/// One outbound flow.
#[derive(Debug)]
pub(crate) struct Flow<T> {
    /// The PUBLISH as first sent (DUP clear), kept for re-sending.
    pub(crate) publish: Publish,
    /// The caller's token, returned when the flow ends.
    pub(crate) token: T,
    pub(crate) stage: Stage,
    /// Position in re-send order: when the PUBLISH was sent, or for a PUBREL when its PUBREC
    /// arrived ([MQTT-4.6.0-4]).
    order: u64,
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

/// All outbound flows of a session, by packet identifier.
#[derive(Debug)]
pub(crate) struct InFlight<T> {
    flows: BTreeMap<PacketId, Flow<T>>,
    next_order: u64,
}

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        Self {
            flows: BTreeMap::new(),
            next_order: 0,
        }
    }
}

impl<T> InFlight<T> {
    pub(crate) fn len(&self) -> usize {
        self.flows.len()
    }

    pub(crate) fn contains(&self, id: PacketId) -> bool {
        self.flows.contains_key(&id)
    }

    fn next_order(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order
    }

    /// Records a PUBLISH that was just sent. It must carry a packet identifier (QoS 1 or 2).
    pub(crate) fn insert(&mut self, publish: Publish, token: T) {
        let Some(id) = publish.qos_pid.packet_id() else {
            return;
        };
        let stage = if publish.qos_pid.qos() == QoS::ExactlyOnce {
            Stage::AwaitingPubRec
        } else {
            Stage::AwaitingPubAck
        };
        let order = self.next_order();
        self.flows.insert(
            id,
            Flow {
                publish,
                token,
                stage,
                order,
            },
        );
    }

    /// Restores a flow from a snapshot, keeping its stage.
    pub(crate) fn restore(&mut self, publish: Publish, token: T, stage: Stage) {
        if let Some(id) = publish.qos_pid.packet_id() {
            let order = self.next_order();
            self.flows.insert(
                id,
                Flow {
                    publish,
                    token,
                    stage,
                    order,
                },
            );
        }
    }

    fn expect(
        &mut self,
        id: PacketId,
        stage: Stage,
        packet: PacketType,
    ) -> Result<&mut Flow<T>, ProtocolViolation> {
        match self.flows.get_mut(&id) {
            Some(flow) if flow.stage == stage => Ok(flow),
            _ => Err(ProtocolViolation::UnexpectedAck(packet, id)),
        }
    }

    /// A PUBACK arrived. Only a QoS 1 flow accepts it; one for a QoS 2 flow is a protocol
    /// violation, one for an identifier with no flow is ignored (see the module docs).
    pub(crate) fn on_puback(
        &mut self,
        id: PacketId,
        code: ReasonCode,
    ) -> Result<AckOutcome<T>, ProtocolViolation> {
        if !self.flows.contains_key(&id) {
            return Ok(AckOutcome::Ignored);
        }
        self.expect(id, Stage::AwaitingPubAck, PacketType::PubAck)?;
        let flow = self
            .flows
            .remove(&id)
            .ok_or(ProtocolViolation::UnexpectedAck(PacketType::PubAck, id))?;
        Ok(AckOutcome::Completed(flow.token, code))
    }

    /// A PUBREC arrived. Only a QoS 2 flow accepts it (a repeat after PUBREL is answered with
    /// PUBREL again). An error code ends the flow ([MQTT-4.4.0-2]); otherwise PUBREL follows
    /// ([MQTT-4.3.3-4]). One for a QoS 1 flow is a protocol violation; one for an identifier
    /// with no flow is answered with PUBREL (see the module docs).
    pub(crate) fn on_pubrec(
        &mut self,
        id: PacketId,
        code: ReasonCode,
    ) -> Result<AckOutcome<T>, ProtocolViolation> {
        let order = self.next_order();
        let flow = match self.flows.get_mut(&id) {
            Some(flow) if flow.stage != Stage::AwaitingPubAck => flow,
            Some(_) => return Err(ProtocolViolation::UnexpectedAck(PacketType::PubRec, id)),
            // An error code says the peer dropped the message and holds nothing for it.
            None if code.is_error() => return Ok(AckOutcome::Ignored),
            None => return Ok(AckOutcome::ReleaseUnknown),
        };
        if flow.stage == Stage::AwaitingPubComp {
            return Ok(AckOutcome::SendPubRel);
        }
        if code.is_error() {
            let flow = self
                .flows
                .remove(&id)
                .ok_or(ProtocolViolation::UnexpectedAck(PacketType::PubRec, id))?;
            return Ok(AckOutcome::Completed(flow.token, code));
        }
        flow.stage = Stage::AwaitingPubComp;
        flow.order = order;
        Ok(AckOutcome::SendPubRel)
    }

    /// A PUBCOMP arrived; it ends a QoS 2 flow that sent PUBREL.
    ///
    /// The flow's outcome is the PUBREC's (it had a Success code, or there would be no
    /// PUBREL). A PUBCOMP with 0x92 Packet Identifier not found answers a PUBREL the receiver
    /// had already completed before a reconnect (its PUBCOMP was lost with the connection), so
    /// it too completes the flow successfully. One before PUBREC is a protocol violation; one
    /// for an identifier with no flow is ignored (see the module docs).
    pub(crate) fn on_pubcomp(
        &mut self,
        id: PacketId,
        code: ReasonCode,
    ) -> Result<AckOutcome<T>, ProtocolViolation> {
        if !self.flows.contains_key(&id) {
            return Ok(AckOutcome::Ignored);
        }
        self.expect(id, Stage::AwaitingPubComp, PacketType::PubComp)?;
        let flow = self
            .flows
            .remove(&id)
            .ok_or(ProtocolViolation::UnexpectedAck(PacketType::PubComp, id))?;
        let code = if code == ReasonCode::PacketIdentifierNotFound {
            ReasonCode::Success
        } else {
            code
        };
        Ok(AckOutcome::Completed(flow.token, code))
    }

    /// Identifiers in re-send order.
    pub(crate) fn resend_order(&self) -> Vec<PacketId> {
        let mut ids: Vec<(u64, PacketId)> =
            self.flows.iter().map(|(id, f)| (f.order, *id)).collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    pub(crate) fn get(&self, id: PacketId) -> Option<&Flow<T>> {
        self.flows.get(&id)
    }

    /// Every flow in send order, for a snapshot.
    pub(crate) fn iter_in_order(&self) -> impl Iterator<Item = &Flow<T>> {
        self.resend_order()
            .into_iter()
            .filter_map(move |id| self.flows.get(&id))
    }

    /// Removes every flow (the session ended), in send order.
    pub(crate) fn take_all(&mut self) -> Vec<Flow<T>> {
        let order = self.resend_order();
        let mut flows = core::mem::take(&mut self.flows);
        order
            .into_iter()
            .filter_map(|id| flows.remove(&id))
            .collect()
    }
}
