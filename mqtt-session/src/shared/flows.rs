//! The durable publish state of a session, written once for both roles.
//!
//! [`Flows`] is what a session remembers across connections: packet identifiers, the
//! in-flight table, the queue of publishes waiting for the window, and inbound acknowledgement
//! state. The logic that drives it (window, quotas, acks, de-duplication, re-send) lives in
//! [`Core`](super::session_core::Core), which owns one.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

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
///
/// What is empty unless something is under way (the in-flight table, the queue, inbound
/// acknowledgement state, the re-sends) is in [`Tables`], boxed and absent while empty: the
/// broker's thousands of idle connections (and detached sessions with nothing waiting) hold 8
/// bytes for it instead of 160. The box is allocated when something first needs it and given
/// back by [`shrink_idle`](Self::shrink_idle), which owners call where a session goes quiet
/// (never per packet: a busy session keeps it from turn to turn) and when it is detached.
#[derive(Debug)]
pub(crate) struct Flows<T> {
    pub(crate) ids: PacketIdAllocator,
    /// Queued publishes are held back (a reconnecting client re-subscribes first): nothing
    /// new is sent, everything waits in the queue.
    pub(crate) held: bool,
    /// Manual-ack ids carry it; it moves on when the session is discarded, so that ids handed
    /// out before are stale ([`InboundId`]). Kept out of the box, which it must outlast.
    pub(crate) generation: u32,
    tables: Option<Box<Tables<T>>>,
}

/// The part of [`Flows`] that is empty while nothing is under way.
#[derive(Debug)]
pub(crate) struct Tables<T> {
    /// Everything sent that waits for an answer: publishes and (client) requests.
    pub(crate) inflight: InFlight<T>,
    pub(crate) queue: VecDeque<Queued<T>>,
    /// Bytes ([`queued_size`]) of the publishes in `queue`.
    pub(crate) queued_bytes: usize,
    pub(crate) inbound: Inbound,
    /// In-flight PUBLISHes still to be re-sent on this connection, in order: those beyond the
    /// peer's Receive Maximum when the session resumed ([MQTT-4.9.0-2]).
    pub(crate) resend_pending: ResendQueue,
}

impl<T> Default for Tables<T> {
    fn default() -> Self {
        Self {
            inflight: InFlight::default(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            inbound: Inbound::default(),
            resend_pending: ResendQueue::default(),
        }
    }
}

impl<T> Tables<T> {
    /// Whether nothing is under way (the box may go).
    fn is_empty(&self) -> bool {
        self.inflight.len() == 0
            && self.queue.is_empty()
            && self.inbound.is_empty()
            && self.resend_pending.is_empty()
    }
}

/// A new tables box: off the hot path (a busy session keeps its box).
#[cold]
#[inline(never)]
fn new_tables<T>() -> Box<Tables<T>> {
    Box::default()
}

impl<T> Default for Flows<T> {
    fn default() -> Self {
        Self {
            ids: PacketIdAllocator::default(),
            held: false,
            generation: 0,
            tables: None,
        }
    }
}

impl<T> Flows<T> {
    /// The tables, `None` while nothing is under way.
    pub(crate) fn tables(&self) -> Option<&Tables<T>> {
        self.tables.as_deref()
    }

    /// The tables, allocated if absent: for anything that adds to them.
    #[inline]
    pub(crate) fn tables_mut(&mut self) -> &mut Tables<T> {
        self.tables.get_or_insert_with(new_tables)
    }

    /// The tables if present: for anything that only takes from them.
    pub(crate) fn tables_if_any(&mut self) -> Option<&mut Tables<T>> {
        self.tables.as_deref_mut()
    }

    /// Gives the tables' box back when nothing is under way.
    pub(crate) fn shrink_idle(&mut self) {
        if self.tables.as_ref().is_some_and(|t| t.is_empty()) {
            self.tables = None;
        }
    }

    /// Whether the tables' box is allocated (for the memory tests).
    #[cfg(test)]
    pub(crate) fn has_tables(&self) -> bool {
        self.tables.is_some()
    }

    /// Outbound publishes in flight.
    pub(crate) fn inflight_publishes(&self) -> usize {
        self.tables().map_or(0, |t| t.inflight.publishes())
    }

    /// In-flight entries: publishes and requests (identifiers in use).
    pub(crate) fn inflight_len(&self) -> usize {
        self.tables().map_or(0, |t| t.inflight.len())
    }

    /// Publishes waiting in the queue.
    pub(crate) fn queue_len(&self) -> usize {
        self.tables().map_or(0, |t| t.queue.len())
    }

    /// Bytes ([`queued_size`]) of the queued publishes.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.tables().map_or(0, |t| t.queued_bytes)
    }

    /// Whether in-flight PUBLISHes wait to be re-sent.
    pub(crate) fn resend_pending(&self) -> bool {
        self.tables().is_some_and(|t| !t.resend_pending.is_empty())
    }

    /// Inbound messages not finished ([`Inbound::unfinished`]).
    pub(crate) fn inbound_unfinished(&self) -> usize {
        self.tables().map_or(0, |t| t.inbound.unfinished())
    }

    /// In-flight publishes sent on this connection: those in flight less those still to be
    /// re-sent. What counts against the peer's Receive Maximum, and what the peer owes
    /// acknowledgements for.
    pub(crate) fn sent_publishes(&self) -> usize {
        self.tables().map_or(0, |t| {
            t.inflight
                .publishes()
                .saturating_sub(t.resend_pending.len())
        })
    }

    /// Records the application's verdict on a manual ack ([`Inbound::ack`]).
    pub(crate) fn ack(&mut self, id: InboundId, code: ReasonCode) -> Result<(), ()> {
        let generation = self.generation;
        self.tables_if_any()
            .ok_or(())?
            .inbound
            .ack(id, code, generation)
    }

    /// A free packet identifier, or `None` when all 65,535 are in flight.
    pub(crate) fn allocate_id(&mut self) -> Option<PacketId> {
        match self.tables.as_deref() {
            Some(Tables { inflight, .. }) => self
                .ids
                .allocate(inflight.len(), |id| inflight.contains(id)),
            None => self.ids.allocate(0, |_| false),
        }
    }

    /// Forgets inbound state, identifiers and re-sends (the session was discarded or lost):
    /// manual-ack ids handed out before become stale.
    pub(crate) fn reset(&mut self) {
        if let Some(tables) = self.tables_if_any() {
            tables.inbound.reset();
            tables.resend_pending.clear();
        }
        self.ids.reset();
        self.generation = self.generation.wrapping_add(1);
    }
}

/// Packet identifiers waiting to be re-sent, in order: boxed, and absent while empty (8 bytes in
/// every session's [`Tables`] instead of a `VecDeque`'s 32; it is used only after a resumption).
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
        let tables = self.tables_mut();
        tables.queued_bytes += queued_size(&queued.message);
        tables.queue.push_back(queued);
    }

    /// Takes the publish at the front of the queue.
    pub(crate) fn pop_queued(&mut self) -> Option<Queued<T>> {
        let tables = self.tables_if_any()?;
        let queued = tables.queue.pop_front()?;
        tables.queued_bytes -= queued_size(&queued.message);
        Some(queued)
    }

    /// Takes the queued publish at `index`.
    pub(crate) fn remove_queued(&mut self, index: usize) -> Option<Queued<T>> {
        let tables = self.tables_if_any()?;
        let queued = tables.queue.remove(index)?;
        tables.queued_bytes -= queued_size(&queued.message);
        Some(queued)
    }

    /// Takes every queued publish, in order.
    pub(crate) fn drain_queued(&mut self) -> impl Iterator<Item = Queued<T>> + '_ {
        self.tables_if_any().into_iter().flat_map(|tables| {
            tables.queued_bytes = 0;
            tables.queue.drain(..)
        })
    }

    /// Removes every publish flow (the session ended), in send order, as `(token, publish)`.
    pub(crate) fn take_publishes(&mut self) -> Vec<(T, Publish)> {
        self.tables_if_any()
            .map_or_else(Vec::new, |t| t.inflight.take_publishes())
    }

    /// The session is gone: abandon what can no longer complete and start afresh. Queued
    /// publishes (never sent) stay queued for the new session.
    pub(crate) fn discard(&mut self, events: &mut impl FnMut(FlowEvent<T>)) {
        for (token, publish) in self.take_publishes() {
            events(FlowEvent::Abandoned {
                token,
                cause: AbandonCause::SessionLost,
                message: Some(Message::from_publish(publish)),
            });
        }
        self.reset();
    }

    /// Abandons queued publishes too (the session will never be resumed).
    pub(crate) fn discard_all(&mut self, events: &mut impl FnMut(FlowEvent<T>)) {
        self.discard(events);
        for Queued { message, token, .. } in self.drain_queued() {
            events(FlowEvent::Abandoned {
                token,
                cause: AbandonCause::SessionLost,
                message: Some(message),
            });
        }
    }
}
