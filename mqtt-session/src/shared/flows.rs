//! The durable publish state of a session, written once for both roles.
//!
//! [`Flows`] is what a session remembers across connections: packet identifiers, the
//! in-flight table, the queue of publishes waiting for the window, and inbound acknowledgement
//! state. The logic that drives it (window, quotas, acks, de-duplication, re-send) lives in
//! [`Core`](super::session_core::Core), which owns one.

use alloc::collections::VecDeque;

use mqtt_streaming_proto::{AckProperties, PacketId, Publish, ReasonCode};

use super::inbound::{Inbound, InboundId};
use super::inflight::InFlight;
use super::packet_ids::PacketIdAllocator;
use crate::error::CommandError;
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

/// The durable publish state of a session.
#[derive(Debug)]
pub(crate) struct Flows<T> {
    pub(crate) ids: PacketIdAllocator,
    /// Everything sent that waits for an answer: publishes and (client) requests.
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
    /// Applies the time spent waiting to the Message Expiry Interval: `Err` when it expired,
    /// else the message with the remaining interval ([MQTT-3.3.2-6]).
    pub(crate) fn age(mut self, now: Instant) -> Result<Self, Self> {
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

impl<T> Flows<T> {
    /// The session is gone: abandon what can no longer complete and start afresh. Queued
    /// publishes (never sent) stay queued for the new session.
    pub(crate) fn discard<E: From<FlowEvent<T>>>(&mut self, events: &mut VecDeque<E>) {
        for (token, publish) in self.inflight.take_publishes() {
            events.push_back(
                FlowEvent::Abandoned {
                    token,
                    cause: AbandonCause::SessionLost,
                    message: Some(Message::from_publish(publish)),
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
