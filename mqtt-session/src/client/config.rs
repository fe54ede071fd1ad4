//! [`ClientConfig`]: the client session's own limits and behaviour.

use core::time::Duration;

/// How inbound QoS 1 and QoS 2 messages are acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AckMode {
    /// The session acknowledges each message as it delivers it.
    #[default]
    Automatic,
    /// The application acknowledges each message with `ack`, in any order; the session sends
    /// the PUBACKs and PUBRECs in the order the spec requires.
    Manual,
}

/// What [`ClientSession::publish`](crate::ClientSession::publish) does with a message that
/// must wait (beyond the in-flight window, or while there is no connection) when the queue is
/// full ([`ClientConfig::max_queued`] messages or [`ClientConfig::max_queued_bytes`] bytes).
///
/// Whatever the policy, a message already handed to the transport (in flight) is never
/// dropped, and a message that does fit is never reordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
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

/// Limits and behaviour of a [`ClientSession`](crate::ClientSession). Every queue and table it
/// keeps is bounded by one of these numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Automatic or manual acknowledgement of inbound messages.
    pub ack_mode: AckMode,
    /// Our Receive Maximum: inbound QoS 1 and 2 messages unfinished at once. Announced to MQTT
    /// 5 servers in CONNECT; a server that exceeds it is disconnected with 0x93. Also bounds
    /// MQTT 3.1.1 servers, which cannot be told (they are disconnected instead).
    pub receive_maximum: u16,
    /// Largest inbound packet accepted, in bytes; announced to MQTT 5 servers. Larger packets
    /// are refused from their fixed header, before their body is buffered.
    pub max_packet_size: u32,
    /// Topic aliases the server may use towards us (MQTT 5); 0 disables them.
    pub topic_alias_maximum: u16,
    /// Assign topic aliases to outbound PUBLISHes automatically, within the server's Topic
    /// Alias Maximum (MQTT 5).
    pub auto_topic_alias: bool,
    /// Our own cap on outbound QoS 1 and 2 publishes in flight; the window used is the smaller
    /// of this and the server's Receive Maximum.
    pub max_inflight: u16,
    /// Publishes waiting beyond the window or for a connection (and, separately, subscription
    /// requests waiting for a connection). When the publish queue is full, `publish` follows
    /// [`queue_overflow`](Self::queue_overflow) (by default it returns the message with
    /// [`CommandError::QueueFull`](crate::CommandError::QueueFull)).
    ///
    /// Kept small by default (64): every queued message adds its wait to the latency of the
    /// ones behind it, so a large queue in front of a busy window is bufferbloat. Raise it
    /// (and [`max_queued_bytes`](Self::max_queued_bytes)) to let an application publish
    /// further ahead while the connection is down.
    pub max_queued: usize,
    /// Bytes of queued publishes (topic and payload of each) beyond which the queue counts as
    /// full, as [`max_queued`](Self::max_queued) does for their number. One message is always
    /// admitted into an empty queue, however large. Default 64 KiB.
    pub max_queued_bytes: usize,
    /// What `publish` does when the queue is full. Default [`QueueOverflow::RefuseNew`].
    pub queue_overflow: QueueOverflow,
    /// When a connection's CONNACK says the server has no session for us (Session Present 0:
    /// it lost it, or this CONNECT started clean), put the unacknowledged QoS 1 and QoS 2
    /// publishes of the earlier connections back at the front of the queue, in their order,
    /// to be sent again as new messages (new packet identifiers, DUP clear), instead of
    /// abandoning them with
    /// [`AbandonCause::SessionLost`](crate::AbandonCause::SessionLost). Default `false`.
    ///
    /// QoS 1 stays at least once. A QoS 2 message whose PUBREC had arrived was taken by the
    /// server: it completes as `Published` with Success and is not sent again. A QoS 2
    /// message without its PUBREC is sent again and may reach subscribers twice if the old
    /// session had already taken it (exactly once cannot survive the server losing its
    /// state).
    pub requeue_on_session_loss: bool,
    /// Encoded bytes waiting for `poll_transmit` beyond which `publish` refuses with
    /// `QueueFull` instead of encoding more (back-pressure from a slow transport).
    pub max_transmit_buffer: usize,
    /// How long to wait for CONNACK after CONNECT.
    pub connack_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            ack_mode: AckMode::Automatic,
            receive_maximum: 1024,
            max_packet_size: 1024 * 1024,
            topic_alias_maximum: 16,
            auto_topic_alias: false,
            max_inflight: 1024,
            max_queued: 64,
            max_queued_bytes: 64 * 1024,
            queue_overflow: QueueOverflow::RefuseNew,
            requeue_on_session_loss: false,
            max_transmit_buffer: 4 * 1024 * 1024,
            connack_timeout: Duration::from_secs(30),
        }
    }
}
