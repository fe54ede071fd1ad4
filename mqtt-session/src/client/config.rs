//! [`ClientConfig`]: the client session's own limits and behaviour.

use core::time::Duration;

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
    /// Publishes and subscription requests waiting beyond the window or for a connection.
    /// When it is full, `publish` returns the message with [`CommandError::QueueFull`](crate::CommandError::QueueFull).
    pub max_queued: usize,
    /// Encoded bytes waiting for `poll_transmit` beyond which `publish` refuses with
    /// [`CommandError::TransmitBufferFull`](crate::CommandError::TransmitBufferFull) instead of
    /// encoding more (back-pressure from a slow transport).
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
            max_queued: 4096,
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
    max_transmit_buffer / with_max_transmit_buffer: usize,
    connack_timeout / with_connack_timeout: Duration,
});
