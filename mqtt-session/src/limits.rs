//! [`PeerLimits`]: what the other side of a connection accepts from this one.

use mqtt_streaming_proto::{ConnAck, Connect, QoS, PROTOCOL_MAX_PACKET_SIZE};

/// The peer's limits for one connection: the one place a session keeps them.
///
/// A client learns them from the server's CONNACK (MQTT 5; MQTT 3.1.x has none, so the
/// defaults apply) and reads them with
/// [`ClientSession::server_limits`](crate::ClientSession::server_limits). A server learns the
/// client's from its CONNECT ([`PeerLimits::from_connect`]): there only Receive Maximum, Maximum
/// Packet Size and Topic Alias Maximum exist, and the other fields keep their defaults. Either
/// session checks every command against them before it sends anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerLimits {
    /// Receive Maximum: the peer's window for our QoS 1 and 2 publishes.
    pub receive_maximum: u16,
    /// Maximum QoS (a server's).
    pub maximum_qos: QoS,
    /// Retain Available (a server's).
    pub retain_available: bool,
    /// Maximum Packet Size: the largest packet the peer takes from us.
    pub maximum_packet_size: u32,
    /// Topic Alias Maximum: the aliases we may use towards the peer.
    pub topic_alias_maximum: u16,
    /// Wildcard Subscription Available (a server's).
    pub wildcard_subscriptions: bool,
    /// Subscription Identifiers Available (a server's).
    pub subscription_identifiers: bool,
    /// Shared Subscription Available (a server's).
    pub shared_subscriptions: bool,
}

impl Default for PeerLimits {
    /// No limit beyond the protocol's own, and no topic aliases: what an MQTT 3.1.x peer, or an
    /// MQTT 5 peer that announces nothing, accepts.
    fn default() -> Self {
        Self {
            receive_maximum: u16::MAX,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            maximum_packet_size: PROTOCOL_MAX_PACKET_SIZE,
            topic_alias_maximum: 0,
            wildcard_subscriptions: true,
            subscription_identifiers: true,
            shared_subscriptions: true,
        }
    }
}

impl PeerLimits {
    /// A server's limits, from its (MQTT 5) CONNACK.
    pub fn from_connack(connack: &ConnAck) -> Self {
        let p = &connack.properties;
        Self {
            receive_maximum: p.receive_maximum.map_or(u16::MAX, |v| v.get()),
            maximum_qos: p.maximum_qos.unwrap_or(QoS::ExactlyOnce),
            retain_available: p.retain_available.unwrap_or(true),
            maximum_packet_size: p
                .maximum_packet_size
                .map_or(PROTOCOL_MAX_PACKET_SIZE, |v| v.get()),
            topic_alias_maximum: p.topic_alias_maximum.unwrap_or(0),
            wildcard_subscriptions: p.wildcard_subscription_available.unwrap_or(true),
            subscription_identifiers: p.subscription_identifiers_available.unwrap_or(true),
            shared_subscriptions: p.shared_subscription_available.unwrap_or(true),
        }
    }

    /// A client's limits, from its (MQTT 5) CONNECT.
    pub fn from_connect(connect: &Connect) -> Self {
        let p = &connect.properties;
        Self {
            receive_maximum: p.receive_maximum.map_or(u16::MAX, |v| v.get()),
            maximum_packet_size: p
                .maximum_packet_size
                .map_or(PROTOCOL_MAX_PACKET_SIZE, |v| v.get()),
            topic_alias_maximum: p.topic_alias_maximum.unwrap_or(0),
            ..Self::default()
        }
    }
}
