//! [`ClientSnapshot`]: the durable part of a client session as plain data, so a process can
//! persist it and resume the session after a restart.

use alloc::vec::Vec;

use mqtt_streaming_proto::{PacketId, Publish};

use super::{ClientConfig, ClientSession};
use crate::shared::inflight::OutboundStage;
use crate::shared::packet_ids::PacketIdAllocator;

/// One outbound QoS 1 or QoS 2 flow in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundFlowSnapshot {
    /// The PUBLISH as first sent, with its packet identifier and payload.
    pub publish: Publish,
    /// How far the flow got.
    pub stage: OutboundStage,
}

/// The durable state of a [`ClientSession`]: what the session must remember across a process
/// restart to keep its QoS 1 and 2 promises ([MQTT-4.1.0-1] lists the client's session state).
///
/// Tokens are not part of it (they are the caller's values); [`ClientSession::restore`] asks
/// for new ones. Messages still queued (never sent) are not part of it either: publish them
/// again after restoring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSnapshot {
    /// The identifier the allocator tries next.
    pub next_packet_id: PacketId,
    /// Outbound flows not finished, in re-send order.
    pub outbound: Vec<OutboundFlowSnapshot>,
    /// Inbound QoS 2 identifiers answered with PUBREC and still waiting for PUBREL: a re-sent
    /// PUBLISH with one of these must not be delivered again.
    pub inbound_awaiting_pubrel: Vec<PacketId>,
}

impl<T> ClientSession<T> {
    /// Copies the durable state out of the session.
    pub fn snapshot(&self) -> ClientSnapshot {
        ClientSnapshot {
            next_packet_id: self.core.flows.ids.peek(),
            outbound: self
                .core
                .flows
                .tables()
                .into_iter()
                .flat_map(|t| t.inflight.iter_in_order())
                .filter_map(|entry| {
                    Some(OutboundFlowSnapshot {
                        publish: entry.publish()?.clone(),
                        stage: entry.stage()?,
                    })
                })
                .collect(),
            inbound_awaiting_pubrel: self
                .core
                .flows
                .tables()
                .into_iter()
                .flat_map(|t| t.inbound.awaiting_pubrel())
                .collect(),
        }
    }

    /// A disconnected session resumed from `snapshot`. `token` is called once per restored
    /// outbound flow, in order, to make the token its completion will carry. Connect with
    /// Clean Start off to resume the server's side of the session too.
    pub fn restore(
        config: ClientConfig,
        snapshot: ClientSnapshot,
        mut token: impl FnMut(&Publish) -> T,
    ) -> Self {
        let mut session = Self::new(config);
        let flows = &mut session.core.flows;
        flows.ids = PacketIdAllocator::starting_at(snapshot.next_packet_id);
        if snapshot.outbound.is_empty() && snapshot.inbound_awaiting_pubrel.is_empty() {
            return session;
        }
        let flows = flows.tables_mut();
        for flow in snapshot.outbound {
            let t = token(&flow.publish);
            // A snapshot edited by hand may repeat an identifier: the first one wins.
            if flow
                .publish
                .qos_pid
                .packet_id()
                .is_some_and(|id| !flows.inflight.contains(id))
            {
                flows.inflight.restore(flow.publish, t, flow.stage);
            }
        }
        for id in snapshot.inbound_awaiting_pubrel {
            flows.inbound.restore_awaiting_pubrel(id);
        }
        session
    }
}
