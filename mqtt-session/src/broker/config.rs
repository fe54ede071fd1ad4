//! [`BrokerConfig`]: the broker's limits.

use core::time::Duration;
use mqtt_streaming_proto::TopicFilter;

use crate::server::ServerConfig;
use crate::AckMode;

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
/// a subscriber whose session lives on, because waiting for a client that is away would let it
/// stop every publisher to its topics for as long as its session lasts. A subscriber's session
/// that ends (expiry, Clean Start) takes with it what it held and the held-back copies still
/// owed to it, counted in `dropped_session_ended`; the publisher is then acknowledged, and its
/// later messages are routed to the subscriptions that exist when their turn comes. Messages
/// the broker publishes itself (wills, [`Broker::publish`](crate::broker::Broker::publish))
/// have no publisher to hold back and are dropped (counted) where a subscriber is full. A shared-subscription message goes to another
/// member when its member is full, and is held back only when every member is connected and
/// full.
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
    /// answer 0x10 No matching subscribers or 0x87 Not authorized. So is
    /// `report_qos0_published` (always off: the broker has nothing to do when a QoS 0
    /// delivery is written).
    pub server: ServerConfig,
    /// Connections open at once; beyond it `open` refuses (see `max_refusing_connections`).
    pub max_connections: usize,
    /// User Properties one PUBLISH (or will) may carry. The payload of a routed message is
    /// shared by every subscriber, but each subscriber's copy keeps its own list of properties
    /// (about 64 bytes a property, against 5 on the wire for an empty one), so this bounds
    /// what one message can cost per subscriber. Beyond it a PUBLISH is not routed nor
    /// retained and MQTT 5 acknowledges it with 0x97 Quota exceeded (a QoS 0 one is dropped);
    /// a CONNECT whose will has more gets CONNACK 0x97. Counted in
    /// `BrokerStats::dropped_too_many_user_properties`. (MQTT 3.1.x carries no properties.)
    pub max_user_properties: usize,
    /// Connections beyond `max_connections` that `open` still takes, only to answer their
    /// CONNECT with a refusal and close: CONNACK 0x97 Quota exceeded (MQTT 3.1.x: return code
    /// 3, Server unavailable), so that a client learns why rather than seeing a bare close.
    /// They are held no longer than the CONNECT timeout. Beyond them `open` refuses at once.
    pub max_refusing_connections: usize,
    /// Subscriptions per session; beyond it the SUBACK says 0x97 Quota exceeded.
    pub max_subscriptions_per_session: usize,
    /// Levels of a topic name or topic filter (of a shared subscription: of the filter after
    /// `$share/{name}/`), a wildcard counting as one. MQTT sets no limit of its own (section
    /// 4.7.3); this one is the broker's. Default 128 (mosquitto closes connections beyond
    /// 200).
    ///
    /// - A SUBSCRIBE filter beyond it gets 0x8F Topic Filter invalid in MQTT 5 ("correctly
    ///   formed but not allowed", one of the Subscribe Reason Codes, [MQTT-3.9.3-2]) and 0x80
    ///   Failure in 3.1.1 ([MQTT-3.9.3-2] of 3.1.1); an UNSUBSCRIBE filter beyond it, which no
    ///   subscription can have, gets 0x8F in MQTT 5 ([MQTT-3.11.3-2]).
    /// - A PUBLISH whose topic name is beyond it ends the connection: MQTT 5 with DISCONNECT
    ///   0x90 Topic Name invalid (a DISCONNECT Reason Code, section 3.14.2.1 of 5.0), MQTT
    ///   3.1.x by closing, which is all 3.1.1 offers ([MQTT-3.3.5-2] of 3.1.1 for a PUBLISH it
    ///   will not take). The message is neither routed nor retained.
    /// - A CONNECT whose will topic is beyond it is refused: CONNACK 0x90 Topic Name invalid in
    ///   MQTT 5, return code 3 (the nearest) in 3.1.x.
    ///
    /// [`Broker::publish`](crate::broker::Broker::publish) (the application's own messages) is
    /// routed whatever its depth, but retained only within the limit (a retained message's
    /// pending deliveries hold its position level by level; counted in
    /// `BrokerStats::dropped_retained_too_deep`). Whatever the limit, no walk over topics
    /// recurses: it bounds work and memory, not the stack.
    pub max_topic_levels: usize,
    /// Budget of one session's subscriptions, as the sum of their
    /// [`subscription_weight`](Self::subscription_weight)s; a new subscription beyond it gets
    /// 0x97 Quota exceeded (0x80 Failure in 3.1.1). Replacing a subscription costs nothing
    /// new; unsubscribing gives its weight back.
    pub max_subscription_bytes_per_session: usize,
    /// Budget of all sessions' subscriptions together, refused the same way.
    ///
    /// The weights bound the heap the subscriptions hold. The subscription index (a trie of
    /// topic levels, its subscriber sets, shared groups) and the sessions' own lists of their
    /// filters hold at most
    ///
    /// `sum of (512 + 2 x length + 160 x levels) over all subscriptions <= max_subscription_bytes_total`
    ///
    /// bytes of heap, however the clients shape their filters (deep, wide, empty levels,
    /// shared or not), and the subscriptions of one session at most
    /// `max_subscription_bytes_per_session`; the allocator's rounding is within the
    /// per-level and per-subscription constants. With the defaults: 2 MiB per session,
    /// 512 MiB for the broker (before: unbounded in practice, ~90 bytes per level sent as
    /// one byte, up to ~5.5 GB from one client). Measured (`tests/broker_hostile_memory.rs`):
    /// a budget filled with filters of 128 empty levels holds under 40% of its weight in heap.
    pub max_subscription_bytes_total: usize,
    /// Retained messages held; a new topic beyond it is not retained (the message is still
    /// routed).
    pub max_retained_messages: usize,
    /// Bytes the retained messages may take (topics, payloads, properties and the index by
    /// topic level, which costs about 100 bytes a level); a message that would take the store
    /// beyond it is not retained (it is still routed), and a retained message it would have
    /// replaced is deleted, so that subscribers never get an outdated value.
    pub max_retained_bytes: usize,
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
    /// Server Keep Alive, in seconds (mosquitto's `max_keepalive`): an MQTT 5 client whose
    /// Keep Alive is 0 or longer is told this one in CONNACK and held to it
    /// ([MQTT-3.2.2-21]); an MQTT 3.1.x client asking for longer is refused (return code 2
    /// Identifier rejected), as 3.1.x cannot be told. `None` (the default) or `Some(0)`: the
    /// client's own Keep Alive stands.
    pub server_keep_alive: Option<u16>,
    /// Whether shared subscriptions (`$share/...`) are available. When not, MQTT 5 clients
    /// are told so in CONNACK and a shared filter gets SUBACK 0x9E Shared Subscriptions not
    /// supported (3.1.1: 0x80 Failure).
    pub shared_subscriptions_available: bool,
    /// Whether filters with `+` or `#` are available. When not, MQTT 5 clients are told so in
    /// CONNACK and such a filter gets SUBACK 0xA2 Wildcard Subscriptions not supported (3.1.1:
    /// 0x80 Failure).
    pub wildcard_subscriptions_available: bool,
    /// Whether MQTT 5 Subscription Identifiers are available. When not, clients are told so
    /// in CONNACK and a SUBSCRIBE carrying one gets 0xA1 Subscription Identifiers not
    /// supported for each of its filters.
    pub subscription_identifiers_available: bool,
    /// Whether the broker records the changes of its durable state (retained messages and
    /// persistent sessions) for a store, to be rebuilt from it after a restart: see
    /// [`Broker::poll_change`](crate::broker::Broker::poll_change) and
    /// [`Broker::restore`](crate::broker::Broker::restore). Off by default; off, it costs
    /// nothing.
    pub persistence: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig {
                ack_mode: AckMode::Manual,
                report_qos0_published: false,
                ..ServerConfig::default()
            },
            max_connections: 10_000,
            max_user_properties: 64,
            max_refusing_connections: 16,
            max_subscriptions_per_session: 1_000,
            max_topic_levels: 128,
            max_subscription_bytes_per_session: 2 * 1024 * 1024,
            max_subscription_bytes_total: 512 * 1024 * 1024,
            max_retained_messages: 100_000,
            max_retained_bytes: 256 * 1024 * 1024,
            queue_qos0_offline: false,
            stalled_subscriber_timeout: Duration::from_secs(30),
            max_parked_bytes: 64 * 1024 * 1024,
            max_partial_bytes_total: 64 * 1024 * 1024,
            partial_packet_timeout: Duration::from_secs(60),
            max_connect_packet_size: 64 * 1024,
            server_keep_alive: None,
            shared_subscriptions_available: true,
            wildcard_subscriptions_available: true,
            subscription_identifiers_available: true,
            persistence: false,
        }
    }
}

impl BrokerConfig {
    /// What one subscription to `filter` counts against
    /// [`max_subscription_bytes_per_session`](Self::max_subscription_bytes_per_session) and
    /// [`max_subscription_bytes_total`](Self::max_subscription_bytes_total): an upper bound of
    /// the heap it can add,
    ///
    /// `512 + 2 x filter length + 160 x levels` bytes
    ///
    /// (the filter is kept twice: the session's copy and the trie's level names; a trie level
    /// costs at most 160 bytes beyond its name, its parent's map entry included; 512 covers
    /// the subscriber entries and the session's entry). `sensors/+/temp` weighs 1,020 bytes,
    /// so the default per-session budget holds the default 1,000 subscriptions of filters of
    /// up to 5 levels and 300 bytes.
    pub fn subscription_weight(filter: &TopicFilter) -> usize {
        super::subscriptions::subscription_weight(filter)
    }
}
