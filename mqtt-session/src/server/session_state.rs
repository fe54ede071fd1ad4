//! [`SessionState`]: the durable part of a server-side session, detached from its connection.

use alloc::vec::Vec;
use core::time::Duration;

use crate::error::{CommandError, Rejected};
use crate::message::Message;
use crate::shared::flows::{Flows, Queued};
use crate::time::Instant;

/// How long a server keeps a session after its connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionExpiry {
    /// The session ends with the connection (3.1.1 clean session; 5.0 interval 0).
    AtClose,
    /// The session ends this long after the connection (5.0 Session Expiry Interval).
    After(Duration),
    /// The session never expires (3.1.1 persistent session; 5.0 interval 0xFFFFFFFF).
    Never,
}

impl SessionExpiry {
    /// From an MQTT 5 Session Expiry Interval in seconds.
    pub fn from_interval(seconds: u32) -> Self {
        match seconds {
            0 => Self::AtClose,
            u32::MAX => Self::Never,
            s => Self::After(Duration::from_secs(u64::from(s))),
        }
    }
}

/// What a server remembers of a client's session between connections: outbound QoS 1 and 2
/// flows with their messages, the queue of messages not sent yet, inbound QoS 2 identifiers
/// awaiting PUBREL, and the packet identifier allocator ([MQTT-4.1.0-1]).
///
/// Taken from a closed [`ServerSession`](crate::ServerSession) with `detach`, kept by the
/// owner (while it expires), filled with [`SessionState::enqueue`] while the client is away,
/// and given to the next connection's `accept`.
#[derive(Debug)]
pub struct SessionState<T> {
    pub(crate) flows: Flows<T>,
    pub(crate) max_queued: usize,
}

impl<T> SessionState<T> {
    /// A fresh session with room for `max_queued` messages while the client is away.
    pub fn new(max_queued: usize) -> Self {
        Self {
            flows: Flows::default(),
            max_queued,
        }
    }

    /// Outbound QoS 1 and 2 publishes that the client has not finished acknowledging.
    pub fn inflight_len(&self) -> usize {
        self.flows.inflight_publishes()
    }

    /// Messages waiting to be sent.
    pub fn queued_len(&self) -> usize {
        self.flows.queue_len()
    }

    /// Queues a message for the client while it is away; it is sent, in order, after the
    /// re-sends when the session resumes. When the queue is full the message is refused and
    /// handed back (the owner's overflow policy decides what to do with it).
    ///
    /// `now` starts the clock on the message's Message Expiry Interval: if it passes before
    /// the message can be sent, the message is dropped and its token comes back as
    /// `Abandoned` with [`AbandonCause::Expired`](crate::AbandonCause::Expired).
    pub fn enqueue(
        &mut self,
        now: Instant,
        message: Message,
        token: T,
    ) -> Result<(), Rejected<Message, T>> {
        if self.flows.queue_len() >= self.max_queued {
            return Err(Rejected {
                error: CommandError::QueueFull,
                command: message,
                token,
            });
        }
        self.flows.push_queued(Queued {
            message,
            token,
            since: now,
        });
        Ok(())
    }

    /// Records the owner's Success acknowledgement of an inbound message (manual-ack mode)
    /// while the client is away; it is sent, in order, when the session resumes. Unknown or
    /// stale ids are ignored.
    pub(crate) fn ack(&mut self, id: crate::shared::inbound::InboundId) {
        let _ = self
            .flows
            .ack(id, mqtt_streaming_proto::ReasonCode::Success);
    }

    /// Takes out the messages whose delivery had started (sent, not yet fully acknowledged),
    /// in send order, leaving the queued ones. An owner that ends the session uses this to
    /// treat interrupted deliveries differently from ones never started (for shared
    /// subscriptions, [MQTT-4.8.2-5] in 5.0 forbids giving an interrupted QoS 2 delivery to
    /// another subscriber).
    pub fn take_in_flight(&mut self) -> Vec<(T, Message)> {
        self.flows
            .take_publishes()
            .into_iter()
            .map(|(token, publish)| (token, Message::from_publish(publish)))
            .collect()
    }

    /// Ends the session (it expired, or was discarded): every message it still held comes
    /// back with its token, in-flight ones first.
    pub fn into_abandoned(mut self) -> Vec<(T, Message)> {
        let mut out = self.take_in_flight();
        out.extend(self.flows.drain_queued().map(|q| (q.token, q.message)));
        out
    }
}
