//! Counters a broker keeps about itself.

/// What the broker has done since it started. Plain numbers: read them with
/// [`Broker::stats`](crate::broker::Broker::stats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStats {
    /// Connections open now.
    pub connections: usize,
    /// Connections accepted since the start.
    pub connections_total: u64,
    /// Connections refused because `max_connections` was reached: answered with CONNACK 0x97
    /// Quota exceeded (3.1.x: 3 Server unavailable) while `max_refusing_connections` allowed,
    /// else refused by [`Broker::open`](crate::broker::Broker::open) at once.
    pub connections_refused: u64,
    /// Sessions held (connected or not).
    pub sessions: usize,
    /// Subscriptions held.
    pub subscriptions: usize,
    /// The weight of the subscriptions held, against `max_subscription_bytes_total` (see
    /// [`BrokerConfig::subscription_weight`](crate::broker::BrokerConfig::subscription_weight)).
    pub subscription_bytes: usize,
    /// Retained messages held.
    pub retained: usize,
    /// PUBLISH packets received from clients.
    pub messages_in: u64,
    /// Messages handed to subscribers' sessions (sent or queued).
    pub messages_out: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Messages dropped because a session's queue was full: QoS 0 to a connected subscriber
    /// that is full, anything to an offline session whose queue is full, messages the broker
    /// publishes itself (wills, `Broker::publish`) to a full subscriber, and shared-subscription
    /// messages no member can take while some member is offline with a full queue. A client's
    /// QoS 1/2 message to connected subscribers is never dropped for this: it is held back (see
    /// `BrokerConfig`'s overload policy).
    pub dropped_queue_full: u64,
    /// Messages dropped because they exceeded a client's Maximum Packet Size.
    pub dropped_too_large: u64,
    /// Publishes refused by `authorize_publish`.
    pub dropped_unauthorized: u64,
    /// Copies of messages not delivered because
    /// [`authorize_delivery`](crate::broker::BrokerHooks::authorize_delivery) refused their
    /// subscriber (a shared subscription none of whose members may read a message counts
    /// once).
    pub deliveries_unauthorized: u64,
    /// Publishes from clients to topics starting with `$SYS`, which only the broker itself
    /// ([`Broker::publish`](crate::broker::Broker::publish)) may publish to: acknowledged and
    /// dropped.
    pub dropped_sys_topic: u64,
    /// Messages whose Message Expiry Interval passed before delivery.
    pub dropped_expired: u64,
    /// PUBLISHes and wills refused for carrying more than `max_user_properties` User
    /// Properties.
    pub dropped_too_many_user_properties: u64,
    /// Retained messages not stored because the store was full.
    pub dropped_retained_full: u64,
    /// Retained messages not stored because their topic has more than `max_topic_levels`
    /// levels (only [`Broker::publish`](super::Broker::publish) can reach here: a client's
    /// PUBLISH that deep closes its connection). A stored message's deliveries in turns keep
    /// its position level by level, so the limit bounds what each pending delivery holds.
    pub dropped_retained_too_deep: u64,
    /// QoS 0 messages for a session whose client is away (kept only with
    /// `queue_qos0_offline`).
    pub dropped_qos0_offline: u64,
    /// Messages a session still held (queued or in flight) when it ended (expiry, clean
    /// start), copies of held-back messages still owed to it then (see `BrokerConfig`'s
    /// overload policy), and shared-subscription messages no other member could take.
    pub dropped_session_ended: u64,
    /// Will messages published.
    pub wills_published: u64,
    /// QoS 1/2 messages held back (their acknowledgement withheld) because a subscriber could
    /// not take them yet, since the start.
    pub messages_parked: u64,
    /// Messages held back now.
    pub parked: usize,
    /// Bytes (topic and payload) of the messages held back now.
    pub parked_bytes: usize,
    /// Publishers with messages held back now.
    pub publishers_waiting: usize,
    /// Held-back messages dropped unacknowledged because their publisher's session ended
    /// (the publisher never got an acknowledgement for them).
    pub parked_dropped: u64,
    /// Subscribers disconnected for making no progress while publishers waited for them.
    pub stalled_subscribers_disconnected: u64,
    /// Bytes reserved by partial packets now.
    pub partial_bytes: usize,
    /// Connections closed because a packet did not complete within `partial_packet_timeout`
    /// or was too large before CONNECT was accepted.
    pub partial_packets_refused: u64,
    /// Commands the broker gave one of its sessions that the session refused. Always 0 unless
    /// the broker has a bug (debug builds panic instead); each such connection was closed.
    pub session_errors: u64,
}
