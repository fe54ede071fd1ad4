//! Errors, split by who must act.
//!
//! - The application made a mistake (publish at a QoS the server does not allow, a full queue,
//!   a command in the wrong state): the command returns [`Rejected`], which hands the command
//!   and its token back with a [`CommandError`].
//! - The peer broke the protocol, the transport failed or a timer expired: the session closes
//!   the connection (sending an MQTT 5 DISCONNECT with the right reason code where it can) and
//!   reports it once, as a `Closed` event carrying an [`Initiator`] and a [`CloseReason`].

use core::fmt;

use mqtt_streaming_proto::{
    ConnAckProperties, Connect, DecodeError, EncodeError, PacketId, PacketType, ReasonCode,
};

use crate::server::SessionState;

/// Why the session refused a command. Nothing was sent or queued.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// `connect` while a connection is open or being opened.
    AlreadyConnected,
    /// A command that needs a connection (or a session) in a state it is not in.
    NotConnected,
    /// `accept`, `reject` (server): no CONNECT is waiting for an answer.
    NoConnectPending,
    /// The bounded queue of commands waiting for the window or a connection is full
    /// (`max_queued`): retry after some operations complete.
    QueueFull,
    /// `max_transmit_buffer` encoded bytes wait for `poll_transmit`: drain it (write to the
    /// transport), then retry. The transport is slower than the commands.
    TransmitBufferFull,
    /// All 65,535 packet identifiers are in flight: retry after acknowledgements arrive.
    PacketIdsExhausted,
    /// The server's Maximum QoS is lower than the QoS asked for ([MQTT-3.2.2-11]).
    QoSNotSupported,
    /// The server does not support retained messages ([MQTT-3.2.2-14]).
    RetainNotSupported,
    /// The packet would exceed the peer's Maximum Packet Size ([MQTT-3.2.2-15],
    /// [MQTT-3.1.2-24]).
    PacketTooLarge {
        /// Encoded size of the packet.
        size: usize,
        /// The peer's limit.
        max: u32,
    },
    /// The server does not support wildcard subscriptions.
    WildcardSubscriptionsNotSupported,
    /// The server does not support subscription identifiers.
    SubscriptionIdentifiersNotSupported,
    /// The server does not support shared subscriptions.
    SharedSubscriptionsNotSupported,
    /// The feature exists only in MQTT 5 (AUTH, properties that change behaviour).
    RequiresV5,
    /// A manual acknowledgement for a message that is not waiting for one (already acked,
    /// automatic mode, or from a session that has since been discarded).
    UnknownAck,
    /// A Topic Alias above the peer's Topic Alias Maximum ([MQTT-3.3.2-9]).
    TopicAliasAboveMaximum {
        /// The alias asked for.
        alias: u16,
        /// The peer's Topic Alias Maximum.
        max: u16,
    },
    /// A reason code this side may not send in this packet, or not in this protocol version
    /// (a manual ack with an error code in MQTT 3.1.1, a `reject` with a success code, an
    /// AUTH 0x19 from a server).
    ReasonCodeNotAllowed {
        /// The code given.
        code: ReasonCode,
        /// The packet it was meant for.
        packet: PacketType,
    },
    /// A SUBACK or UNSUBACK answer with another number of reason codes than the request had
    /// topic filters ([MQTT-3.9.3-1], [MQTT-3.11.3-1]).
    ReasonCodeCountMismatch {
        /// Filters in the request.
        expected: usize,
        /// Codes given.
        given: usize,
    },
    /// AUTH on a connection whose CONNECT had no Authentication Method ([MQTT-4.12.0-6],
    /// [MQTT-4.12.0-7]).
    NoAuthenticationMethod,
    /// An Authentication Method other than the one in this connection's CONNECT
    /// ([MQTT-4.12.0-5]).
    AuthenticationMethodMismatch,
    /// The packet cannot be encoded.
    Encode(EncodeError),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyConnected => f.write_str("already connected"),
            Self::NotConnected => f.write_str("not connected"),
            Self::NoConnectPending => f.write_str("no CONNECT is waiting for an answer"),
            Self::QueueFull => f.write_str("queue full"),
            Self::TransmitBufferFull => f.write_str("transmit buffer full"),
            Self::PacketIdsExhausted => f.write_str("all 65,535 packet identifiers are in use"),
            Self::QoSNotSupported => f.write_str("QoS above the server's maximum"),
            Self::RetainNotSupported => f.write_str("the server does not support retain"),
            Self::PacketTooLarge { size, max } => {
                write!(
                    f,
                    "packet of {size} bytes exceeds the peer's maximum of {max}"
                )
            }
            Self::WildcardSubscriptionsNotSupported => {
                f.write_str("the server does not support wildcard subscriptions")
            }
            Self::SubscriptionIdentifiersNotSupported => {
                f.write_str("the server does not support subscription identifiers")
            }
            Self::SharedSubscriptionsNotSupported => {
                f.write_str("the server does not support shared subscriptions")
            }
            Self::RequiresV5 => f.write_str("requires MQTT 5"),
            Self::UnknownAck => f.write_str("no message is waiting for this acknowledgement"),
            Self::TopicAliasAboveMaximum { alias, max } => {
                write!(f, "topic alias {alias} above the peer's maximum of {max}")
            }
            Self::ReasonCodeNotAllowed { code, packet } => {
                write!(f, "reason code {code} not allowed in {packet} here")
            }
            Self::ReasonCodeCountMismatch { expected, given } => write!(
                f,
                "{given} reason codes for {expected} topic filters (one per filter, in order)"
            ),
            Self::NoAuthenticationMethod => {
                f.write_str("the connection does not use enhanced authentication")
            }
            Self::AuthenticationMethodMismatch => {
                f.write_str("the Authentication Method must be the CONNECT's")
            }
            Self::Encode(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl CommandError {
    /// Whether the same command may succeed later without change, once the session made
    /// progress: [`QueueFull`](Self::QueueFull), [`TransmitBufferFull`](Self::TransmitBufferFull)
    /// and [`PacketIdsExhausted`](Self::PacketIdsExhausted) (back-pressure, not a mistake).
    pub fn is_backpressure(&self) -> bool {
        matches!(
            self,
            Self::QueueFull | Self::TransmitBufferFull | Self::PacketIdsExhausted
        )
    }
}

impl core::error::Error for CommandError {}

impl From<EncodeError> for CommandError {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

/// A refused command, handing back what the caller gave: the command itself and its token.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a refused command hands its command and token back"]
pub struct Rejected<C, T> {
    /// Why.
    pub error: CommandError,
    /// The command, unchanged.
    pub command: C,
    /// The caller's token, unchanged.
    pub token: T,
}

impl<C, T> fmt::Display for Rejected<C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<C: fmt::Debug, T: fmt::Debug> core::error::Error for Rejected<C, T> {}

/// A refused [`ClientSession::connect`](crate::ClientSession::connect): the `Connect` comes back
/// exactly as it was given, and the session is unchanged (validate first, consume last).
#[derive(Debug, PartialEq, Eq)]
pub struct ConnectRejected {
    /// Why.
    pub error: CommandError,
    /// The CONNECT, unchanged.
    pub connect: Connect,
}

impl fmt::Display for ConnectRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl core::error::Error for ConnectRejected {}

impl From<ConnectRejected> for CommandError {
    fn from(rejected: ConnectRejected) -> Self {
        rejected.error
    }
}

/// A refused [`ServerSession::accept`](crate::ServerSession::accept): nothing was sent, the
/// connection still waits for an answer (unless it had closed), and what `accept` was given
/// comes back: the CONNACK properties and, above all, the stored session, which must not be
/// lost because of a mistake in the answer.
#[derive(Debug)]
pub struct AcceptRejected<T> {
    /// Why.
    pub error: CommandError,
    /// The CONNACK properties, unchanged.
    pub properties: ConnAckProperties,
    /// The session state that was to be resumed, unchanged.
    pub session: Option<SessionState<T>>,
}

impl<T> fmt::Display for AcceptRejected<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<T: fmt::Debug> core::error::Error for AcceptRejected<T> {}

impl<T> From<AcceptRejected<T>> for CommandError {
    fn from(rejected: AcceptRejected<T>) -> Self {
        rejected.error
    }
}

/// Who ended a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Initiator {
    /// The application asked for it (`disconnect`).
    Application,
    /// This session closed it: the peer broke the protocol, or a timer expired.
    Session,
    /// The peer closed it: a DISCONNECT, or a CONNACK that refused the connection.
    Peer,
    /// The transport reported that the connection is gone (`handle_closed`).
    Transport,
}

/// Why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// A DISCONNECT was exchanged; the code is the one sent or received (0x00 is a normal
    /// disconnection).
    Disconnect(ReasonCode),
    /// The server refused the connection in its CONNACK with this code.
    ConnectRefused(ReasonCode),
    /// The peer sent bytes that are not a valid packet; the session answered with
    /// [`DecodeError::reason_code`].
    Malformed(DecodeError),
    /// The peer sent a valid packet that breaks the protocol.
    ProtocolViolation(ProtocolViolation),
    /// No CONNACK arrived in time (client).
    ConnAckTimeout,
    /// No CONNECT arrived in time (server).
    ConnectTimeout,
    /// The CONNECT got no answer from the application within `decide_timeout` (server); the
    /// session refused it with CONNACK 0x89 Server busy.
    DecideTimeout,
    /// The peer did not answer within the keep-alive rules ([MQTT-3.1.2-22] and section 4 of
    /// the keep-alive rules: one and a half keep-alive periods).
    KeepAliveTimeout,
    /// The transport closed without a DISCONNECT.
    TransportClosed,
}

impl CloseReason {
    /// Whether the connection ended the normal way (a DISCONNECT with code 0x00 or 0x04).
    pub fn is_normal(&self) -> bool {
        matches!(
            self,
            Self::Disconnect(ReasonCode::Success | ReasonCode::DisconnectWithWillMessage)
        )
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disconnect(code) => write!(f, "disconnected: {code}"),
            Self::ConnectRefused(code) => write!(f, "connection refused: {code}"),
            Self::Malformed(e) => write!(f, "malformed packet: {e}"),
            Self::ProtocolViolation(v) => write!(f, "protocol violation: {v}"),
            Self::ConnAckTimeout => f.write_str("no CONNACK in time"),
            Self::ConnectTimeout => f.write_str("no CONNECT in time"),
            Self::DecideTimeout => f.write_str("the CONNECT was not answered in time"),
            Self::KeepAliveTimeout => f.write_str("keep alive timeout"),
            Self::TransportClosed => f.write_str("transport closed"),
        }
    }
}

/// A valid packet that the peer was not allowed to send at that point.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// A packet of a type this side never receives, or not in this state (a second CONNACK,
    /// anything before CONNACK, a SUBSCRIBE sent to a client).
    UnexpectedPacket(PacketType),
    /// An acknowledgement of the wrong kind (PUBREC for a QoS 1 publish, PUBACK for a QoS 2
    /// publish, PUBCOMP before PUBREC), a PUBREL for a message whose PUBREC was not sent, or a
    /// SUBACK/UNSUBACK for no request. (A PUBACK, PUBREC or PUBCOMP for an identifier with
    /// nothing outstanding is tolerated, as both standards allow: ignored, or for PUBREC
    /// answered with PUBREL, 0x92 Packet Identifier not found in MQTT 5.)
    UnexpectedAck(PacketType, PacketId),
    /// More QoS 1 and 2 PUBLISHes in flight than our Receive Maximum ([MQTT-3.3.4-9]), or
    /// more QoS 2 messages awaiting PUBREL than this side keeps (3.1.1).
    ReceiveMaximumExceeded,
    /// A Topic Alias of 0 or above our Topic Alias Maximum ([MQTT-3.3.2-10]).
    TopicAliasInvalid,
    /// A Topic Alias with an empty topic that was never mapped on this connection.
    UnknownTopicAlias,
    /// A SUBACK or UNSUBACK whose number of codes differs from the filters asked for
    /// ([MQTT-3.9.3-1], [MQTT-3.11.3-1]).
    AckCountMismatch,
    /// A PUBLISH at a QoS above the Maximum QoS this side announced ([MQTT-3.2.2-11]).
    QoSNotSupported,
    /// A retained PUBLISH although this side announced Retain Available 0 ([MQTT-3.2.2-14]).
    RetainNotSupported,
    /// A CONNECT after the first one ([MQTT-3.1.0-2]), or a packet before CONNECT.
    SecondConnect,
    /// A DISCONNECT that sets a Session Expiry Interval after CONNECT set 0
    /// ([MQTT-3.14.2-2]).
    SessionExpiryAfterZero,
    /// The peer exceeded our Maximum Packet Size.
    PacketTooLarge,
    /// An AUTH, or an Authentication Method, that does not fit the exchange in progress.
    BadAuthentication,
}

impl ProtocolViolation {
    /// The MQTT 5 reason code the session sends in its DISCONNECT.
    pub const fn reason_code(&self) -> ReasonCode {
        match self {
            Self::ReceiveMaximumExceeded => ReasonCode::ReceiveMaximumExceeded,
            Self::TopicAliasInvalid => ReasonCode::TopicAliasInvalid,
            Self::QoSNotSupported => ReasonCode::QoSNotSupported,
            Self::RetainNotSupported => ReasonCode::RetainNotSupported,
            Self::PacketTooLarge => ReasonCode::PacketTooLarge,
            Self::BadAuthentication => ReasonCode::BadAuthenticationMethod,
            _ => ReasonCode::ProtocolError,
        }
    }
}

impl fmt::Display for ProtocolViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnexpectedPacket(t) => write!(f, "unexpected {t}"),
            Self::UnexpectedAck(t, id) => write!(f, "unexpected {t} for packet id {id}"),
            Self::ReceiveMaximumExceeded => f.write_str("receive maximum exceeded"),
            Self::TopicAliasInvalid => f.write_str("topic alias out of range"),
            Self::UnknownTopicAlias => f.write_str("unknown topic alias"),
            Self::AckCountMismatch => f.write_str("acknowledgement code count mismatch"),
            Self::QoSNotSupported => f.write_str("QoS above the announced maximum"),
            Self::RetainNotSupported => f.write_str("retain is not available"),
            Self::SecondConnect => f.write_str("second CONNECT"),
            Self::SessionExpiryAfterZero => {
                f.write_str("session expiry set on DISCONNECT after CONNECT set 0")
            }
            Self::PacketTooLarge => f.write_str("packet too large"),
            Self::BadAuthentication => f.write_str("bad authentication exchange"),
        }
    }
}
