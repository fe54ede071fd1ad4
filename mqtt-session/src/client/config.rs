//! [`ClientConfig`]: the client session's own limits and behaviour.

use core::time::Duration;

use crate::shared::flows::QueueOverflow;
use crate::shared::inbound::AckMode;

/// Limits and behaviour of a [`ClientSession`](crate::ClientSession). Every queue and table it
/// keeps is bounded by one of these numbers.
///
/// Start from [`Default`] and change what you need with the `with_*` setters (the struct may
/// gain fields, so other crates cannot build it field by field):
///
/// ```
/// use mqtt_streaming_session::{AckMode, ClientConfig};
/// let config = ClientConfig::default().with_ack_mode(AckMode::Manual).with_max_inflight(16);
/// assert_eq!(config.max_inflight, 16);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// [`CommandError::TransmitBufferFull`](crate::CommandError::TransmitBufferFull) instead of
    /// encoding more (back-pressure from a slow transport). Input is read until answers to it
    /// take the bytes waiting a quarter beyond.
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

setters!(ClientConfig {
    ack_mode / with_ack_mode: AckMode,
    receive_maximum / with_receive_maximum: u16,
    max_packet_size / with_max_packet_size: u32,
    topic_alias_maximum / with_topic_alias_maximum: u16,
    auto_topic_alias / with_auto_topic_alias: bool,
    max_inflight / with_max_inflight: u16,
    max_queued / with_max_queued: usize,
    max_queued_bytes / with_max_queued_bytes: usize,
    queue_overflow / with_queue_overflow: QueueOverflow,
    requeue_on_session_loss / with_requeue_on_session_loss: bool,
    max_transmit_buffer / with_max_transmit_buffer: usize,
    connack_timeout / with_connack_timeout: Duration,
});
