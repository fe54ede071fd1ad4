//! [`ServerConfig`]: the server session's limits and behaviour.

use core::time::Duration;

use mqtt_streaming_proto::QoS;

use crate::shared::inbound::AckMode;

/// Limits and behaviour of a [`ServerSession`](crate::ServerSession). Every queue and table it
/// keeps is bounded by one of these numbers. The MQTT 5 limits are announced to the client in
/// CONNACK (unless the application sets them itself when it accepts) and enforced on input.
///
/// Start from [`Default`] and change what you need with the `with_*` setters (the struct may
/// gain fields, so other crates cannot build it field by field):
///
/// ```
/// use mqtt_streaming_session::ServerConfig;
/// let config = ServerConfig::default().with_receive_maximum(32).with_accept_v3_1(false);
/// assert!(!config.accept_v3_1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Automatic or manual acknowledgement of inbound messages.
    pub ack_mode: AckMode,
    /// Our Receive Maximum: inbound QoS 1 and 2 messages unfinished at once; exceeding it is a
    /// protocol error (0x93).
    pub receive_maximum: u16,
    /// Largest inbound packet, in bytes; refused from its fixed header.
    pub max_packet_size: u32,
    /// Topic aliases the client may use towards us (MQTT 5).
    pub topic_alias_maximum: u16,
    /// Highest QoS the server accepts in PUBLISH; a higher one is a protocol error (0x9B).
    pub maximum_qos: QoS,
    /// Whether RETAIN may be set; a retained PUBLISH otherwise is a protocol error (0x9A).
    pub retain_available: bool,
    /// Assign topic aliases to PUBLISHes sent to the client, within its Topic Alias Maximum.
    pub auto_topic_alias: bool,
    /// Our own cap on outbound QoS 1 and 2 in flight (the window is the smaller of this and the
    /// client's Receive Maximum).
    pub max_inflight: u16,
    /// Outbound publishes waiting for the window or for the client to come back.
    pub max_queued: usize,
    /// Encoded bytes waiting for `poll_transmit` beyond which `publish` refuses. Input is read
    /// until answers to it take them a quarter beyond (so that a client whose deliveries fill
    /// the buffer can still acknowledge them); then reading stops until the client reads.
    pub max_transmit_buffer: usize,
    /// SUBSCRIBE and UNSUBSCRIBE requests the application has not answered yet; beyond this the
    /// session stops reading input until it answers some (back-pressure).
    pub max_pending_requests: usize,
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// How long a CONNECT may wait for its answer (the application's `accept` or `reject`,
    /// including an MQTT 5 enhanced-authentication exchange) once it has arrived. When it
    /// passes, the session refuses the connection itself with CONNACK 0x89 Server busy (MQTT
    /// 5; return code 3 Server unavailable in 3.1.x) and closes, so no connection waits
    /// undecided forever.
    pub decide_timeout: Duration,
    /// Which protocol levels are accepted; others get CONNACK 0x01 (3.1.x) or 0x84 (5.0).
    pub accept_v3_1: bool,
    /// Accept MQTT 3.1.1.
    pub accept_v3_1_1: bool,
    /// Accept MQTT 5.0.
    pub accept_v5: bool,
    /// Report every QoS 0 message [`publish`](crate::ServerSession::publish) wrote to the
    /// transmit buffer as [`Published`](crate::ServerEvent::Published) (`true`, the default).
    /// `false`: a QoS 0 message's token is dropped once its PUBLISH is written, and no event
    /// is queued for it (an owner that has nothing to do on that report, such as the broker
    /// core, saves an event per delivery). QoS 1 and 2 are reported either way, and a QoS 0
    /// message that cannot be sent still comes back as `Abandoned`.
    pub report_qos0_published: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            ack_mode: AckMode::Automatic,
            receive_maximum: 1024,
            max_packet_size: 1024 * 1024,
            topic_alias_maximum: 16,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            auto_topic_alias: false,
            max_inflight: 1024,
            max_queued: 4096,
            max_transmit_buffer: 4 * 1024 * 1024,
            max_pending_requests: 64,
            connect_timeout: Duration::from_secs(10),
            decide_timeout: Duration::from_secs(30),
            accept_v3_1: true,
            accept_v3_1_1: true,
            accept_v5: true,
            report_qos0_published: true,
        }
    }
}

setters!(ServerConfig {
    ack_mode / with_ack_mode: AckMode,
    receive_maximum / with_receive_maximum: u16,
    max_packet_size / with_max_packet_size: u32,
    topic_alias_maximum / with_topic_alias_maximum: u16,
    maximum_qos / with_maximum_qos: QoS,
    retain_available / with_retain_available: bool,
    auto_topic_alias / with_auto_topic_alias: bool,
    max_inflight / with_max_inflight: u16,
    max_queued / with_max_queued: usize,
    max_transmit_buffer / with_max_transmit_buffer: usize,
    max_pending_requests / with_max_pending_requests: usize,
    connect_timeout / with_connect_timeout: Duration,
    decide_timeout / with_decide_timeout: Duration,
    accept_v3_1 / with_accept_v3_1: bool,
    accept_v3_1_1 / with_accept_v3_1_1: bool,
    accept_v5 / with_accept_v5: bool,
    report_qos0_published / with_report_qos0_published: bool,
});
