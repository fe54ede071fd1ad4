//! [`BrokerConfig`]: the broker's limits.

use core::time::Duration;

use crate::client::AckMode;
use crate::server::ServerConfig;

/// Limits of a [`Broker`](crate::broker::Broker). Each one is enforced with the reason code
/// the standard names, never by growing memory.
///
/// # Overload
///
/// A QoS 1 or 2 PUBLISH is acknowledged (PUBACK, PUBREC) only once every connected subscriber
/// session it goes to has taken it. A subscriber whose queue (`server.max_queued`) or transmit
/// buffer (`server.max_transmit_buffer`) is full does not lose it: the broker delivers it to
/// everyone else, keeps it (its own bytes) with the list of subscribers still owed, and
/// withholds the publisher's acknowledgement. The publisher's later QoS 1/2 messages wait
/// behind it, in order; its QoS 0 messages are routed at once (order is kept per QoS,
/// [MQTT-4.6.0-6]) and dropped where a subscriber is full (counted in
/// `dropped_queue_full`). A publisher so held back can have at most our Receive Maximum
/// messages unacknowledged, which bounds what the broker keeps for it; an MQTT 3.1.x client
/// (which does not know that limit) is not read while it is at it, nor is any held-back
/// publisher while the kept messages exceed `max_parked_bytes`. As subscribers acknowledge
/// or drain, the publishers waiting for them go on in the order they started waiting, one
/// message each per turn: the share is fair.
///
/// A subscriber that does not read at all would hold its publishers forever; one that makes
/// no progress (acknowledges nothing and takes no held-back message) for
/// `stalled_subscriber_timeout` while publishers wait for it is disconnected (MQTT 5: DISCONNECT
/// 0x97 Quota exceeded) and counted in `stalled_subscribers_disconnected`. Its persistent
/// session keeps what it holds, and the messages it was owed go to its offline queue. A
/// message for an offline session whose queue is full is dropped and counted
/// (`dropped_queue_full`): the one case where an acknowledged QoS 1/2 message does not reach
/// a subscriber, because waiting for a client that is away would let it stop every publisher
/// to its topics for as long as its session lasts. Messages the broker publishes itself (wills,
/// [`Broker::publish`](crate::broker::Broker::publish)) have no publisher to hold back and are
/// dropped (counted) where a subscriber is full, as are shared-subscription messages no member
/// can take.
///
/// # Partial packets
///
/// A packet that has started to arrive reserves the size its fixed header announces from
/// `max_partial_bytes_total`; a connection whose packet does not fit is not read (see
/// [`Broker::wants_read`](crate::broker::Broker::wants_read)) until others complete, in
/// order. A started packet must complete within `partial_packet_timeout` (a client sending
/// one byte a second is closed; MQTT 5: DISCONNECT 0x97 Quota exceeded), and a client not
/// yet admitted may send no packet larger than `max_connect_packet_size`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Per-connection limits (Maximum Packet Size, Maximum QoS, Receive Maximum, Topic Alias
    /// Maximum, queue length per session, keep alive and CONNECT timeouts). Its `ack_mode` is
    /// ignored: the broker acknowledges each PUBLISH itself once it has routed it, so it can
    /// answer 0x10 No matching subscribers or 0x87 Not authorized.
    pub server: ServerConfig,
    /// Connections open at once; beyond it `open` refuses.
    pub max_connections: usize,
    /// Subscriptions per session; beyond it the SUBACK says 0x97 Quota exceeded.
    pub max_subscriptions_per_session: usize,
    /// Retained messages held; a new topic beyond it is not retained (the message is still
    /// routed).
    pub max_retained_messages: usize,
    /// Whether QoS 0 messages are queued for offline persistent sessions too (they are
    /// dropped otherwise, as most brokers do).
    pub queue_qos0_offline: bool,
    /// How long a subscriber that publishers wait for may go without progress before it is
    /// disconnected (see [Overload](#overload)).
    pub stalled_subscriber_timeout: Duration,
    /// Bytes of held-back messages (topic and payload) beyond which held-back publishers are
    /// not read.
    pub max_parked_bytes: usize,
    /// Bytes all connections' partial packets may reserve together (see
    /// [Partial packets](#partial-packets)). A packet larger than this still gets its turn,
    /// alone.
    pub max_partial_bytes_total: usize,
    /// How long a packet may take to arrive once its first byte has.
    pub partial_packet_timeout: Duration,
    /// Largest packet from a client before its CONNECT is accepted; a larger one closes the
    /// connection before it is buffered.
    pub max_connect_packet_size: u32,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig {
                ack_mode: AckMode::Manual,
                ..ServerConfig::default()
            },
            max_connections: 10_000,
            max_subscriptions_per_session: 1_000,
            max_retained_messages: 100_000,
            queue_qos0_offline: false,
            stalled_subscriber_timeout: Duration::from_secs(30),
            max_parked_bytes: 64 * 1024 * 1024,
            max_partial_bytes_total: 64 * 1024 * 1024,
            partial_packet_timeout: Duration::from_secs(60),
            max_connect_packet_size: 64 * 1024,
        }
    }
}
