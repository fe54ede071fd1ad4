//! [`BrokerConfig`]: the broker's limits.

use crate::client::AckMode;
use crate::server::ServerConfig;

/// Limits of a [`Broker`](crate::broker::Broker). Each one is enforced with the reason code
/// the standard names, never by growing memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Per-connection limits (Maximum Packet Size, Maximum QoS, Receive Maximum, Topic Alias
    /// Maximum, queue length per session, keep alive and CONNECT timeouts). Its `ack_mode` is
    /// ignored: the broker acknowledges each PUBLISH itself once it has routed it, so it can
    /// answer 0x10 No matching subscribers or 0x87 Not authorized.
    pub server: ServerConfig,
    /// Connections open at once; beyond it `open` refuses (see `max_refusing_connections`).
    pub max_connections: usize,
    /// Connections beyond `max_connections` that `open` still takes, only to answer their
    /// CONNECT with a refusal and close: CONNACK 0x97 Quota exceeded (MQTT 3.1.x: return code
    /// 3, Server unavailable), so that a client learns why rather than seeing a bare close.
    /// They are held no longer than the CONNECT timeout. Beyond them `open` refuses at once.
    pub max_refusing_connections: usize,
    /// Subscriptions per session; beyond it the SUBACK says 0x97 Quota exceeded.
    pub max_subscriptions_per_session: usize,
    /// Retained messages held; a new topic beyond it is not retained (the message is still
    /// routed).
    pub max_retained_messages: usize,
    /// Whether QoS 0 messages are queued for offline persistent sessions too (they are
    /// dropped otherwise, as most brokers do).
    pub queue_qos0_offline: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig {
                ack_mode: AckMode::Manual,
                ..ServerConfig::default()
            },
            max_connections: 10_000,
            max_refusing_connections: 16,
            max_subscriptions_per_session: 1_000,
            max_retained_messages: 100_000,
            queue_qos0_offline: false,
        }
    }
}
