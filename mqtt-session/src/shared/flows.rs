//! The durable publish state of a session, written once for both roles.
//!
//! [`Flows`] is what a session remembers across connections: packet identifiers, the
//! in-flight table, the queue of publishes waiting for the window, and inbound acknowledgement
//! state. The logic that drives it (window, quotas, acks, de-duplication, re-send) lives in
//! [`Core`](super::session_core::Core), which owns one.

use alloc::boxed::Box;
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
    /// The message waited in a full queue and was dropped to make room for a newer one (the
    /// client's [`QueueOverflow`] policy).
    Overflow,
}

/// What [`ClientSession::publish`](crate::ClientSession::publish) does with a message that
/// must wait (beyond the in-flight window, or while there is no connection) when the queue is
/// full ([`ClientConfig::max_queued`](crate::ClientConfig::max_queued) messages or
/// [`ClientConfig::max_queued_bytes`](crate::ClientConfig::max_queued_bytes) bytes).
///
/// Whatever the policy, a message already handed to the transport (in flight) is never
/// dropped, and a message that does fit is never reordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueueOverflow {
    /// Refuse the new message with [`CommandError::QueueFull`](crate::CommandError::QueueFull),
    /// handing it back (an async driver then waits for room: back-pressure). Nothing queued is
    /// lost.
    #[default]
    RefuseNew,
    /// Drop the oldest queued messages until the new one fits; each dropped message is
    /// reported as [`Abandoned`](crate::ClientEvent::Abandoned) with
    /// [`AbandonCause::Overflow`](crate::AbandonCause::Overflow), message handed back.
    DropOldest,
    /// Drop queued QoS 0 messages, oldest first, until the new one fits (reported as with
    /// `DropOldest`); when no QoS 0 message is left to drop, refuse the new message as
    /// `RefuseNew` does. QoS 1 and 2 messages are never dropped.
    DropQoS0First,
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
    pub(crate) resend_pending: ResendQueue,
    /// Bytes ([`queued_size`]) of the publishes in `queue`.
    pub(crate) queued_bytes: usize,
    /// Queued publishes are held back (a reconnecting client re-subscribes first): nothing
    /// new is sent, everything waits in `queue`.
    pub(crate) held: bool,
}

impl<T> Default for Flows<T> {
    fn default() -> Self {
        Self {
            ids: PacketIdAllocator::default(),
            inflight: InFlight::default(),
            queue: VecDeque::new(),
            inbound: Inbound::default(),
            resend_pending: ResendQueue::default(),
            queued_bytes: 0,
            held: false,
        }
    }
}

impl<T> Flows<T> {
    /// In-flight publishes sent on this connection: those in flight less those still to be
    /// re-sent. What counts against the peer's Receive Maximum, and what the peer owes
    /// acknowledgements for.
    pub(crate) fn sent_publishes(&self) -> usize {
        self.inflight
            .publishes()
            .saturating_sub(self.resend_pending.len())
    }
}

/// Packet identifiers waiting to be re-sent, in order: boxed, and absent while empty (8 bytes in
/// every session instead of a `VecDeque`'s 32; it is used only after a resumption).
#[derive(Debug, Default)]
#[allow(clippy::box_collection)] // the box is what makes the field small
pub(crate) struct ResendQueue(Option<Box<VecDeque<PacketId>>>);

impl ResendQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.len())
    }

    pub(crate) fn push_back(&mut self, id: PacketId) {
        self.0.get_or_insert_with(Box::default).push_back(id);
    }

    pub(crate) fn pop_front(&mut self) -> Option<PacketId> {
        let queue = self.0.as_mut()?;
        let id = queue.pop_front();
        if queue.is_empty() {
            self.0 = None;
        }
        id
    }

    pub(crate) fn clear(&mut self) {
        self.0 = None;
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

/// What a queued publish counts against a queue's byte bound: its topic and payload.
pub(crate) fn queued_size(message: &Message) -> usize {
    message.topic.len() + message.payload.len()
}

impl<T> Flows<T> {
    /// Queues a publish at the back.
    pub(crate) fn push_queued(&mut self, queued: Queued<T>) {
        self.queued_bytes += queued_size(&queued.message);
        self.queue.push_back(queued);
    }

    /// Takes the publish at the front of the queue.
    pub(crate) fn pop_queued(&mut self) -> Option<Queued<T>> {
        let queued = self.queue.pop_front()?;
        self.queued_bytes -= queued_size(&queued.message);
        Some(queued)
    }

    /// Takes the queued publish at `index`.
    pub(crate) fn remove_queued(&mut self, index: usize) -> Option<Queued<T>> {
        let queued = self.queue.remove(index)?;
        self.queued_bytes -= queued_size(&queued.message);
        Some(queued)
    }

    /// Takes every queued publish, in order.
    pub(crate) fn drain_queued(&mut self) -> impl Iterator<Item = Queued<T>> + '_ {
        self.queued_bytes = 0;
        self.queue.drain(..)
    }

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
        for Queued { message, token, .. } in self.drain_queued() {
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
