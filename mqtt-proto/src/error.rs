//! Errors of the codec. A [`DecodeError`] means the peer sent bytes that are not a valid packet;
//! each names the rule it enforces and the MQTT 5 reason code a session sends before closing.
//! An [`EncodeError`] means the caller asked for a packet that cannot be written; nothing is
//! appended to the buffer then.

use core::fmt;

use crate::packet_type::PacketType;
use crate::property::PropertyId;
use crate::reason_code::ReasonCode;
use crate::string::StringError;
use crate::topic::TopicError;

/// The input is not a valid MQTT packet. After a decode error the stream is out of step and the
/// connection must be closed (after a DISCONNECT carrying [`DecodeError::reason_code`] in MQTT 5).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Packet type 0, or 15 before MQTT 5 ([MQTT-2.1.2] table 2.1: reserved, forbidden).
    ReservedPacketType(u8),
    /// Fixed-header flags other than the ones the packet type requires ([MQTT-2.2.2-1],
    /// [MQTT-2.2.2-2] in 3.1.1; [MQTT-2.1.3-1] in 5.0).
    InvalidFlags {
        /// The packet type.
        packet_type: PacketType,
        /// The flags received.
        flags: u8,
    },
    /// A Variable Byte Integer longer than four bytes ([MQTT-1.5.5-1]).
    MalformedVariableByteInteger,
    /// The packet is larger than the Maximum Packet Size ([MQTT-3.1.2-24], [MQTT-3.2.2-15]);
    /// detected from the fixed header, before the body is buffered.
    PacketTooLarge {
        /// Size of the whole packet as announced by its fixed header.
        size: usize,
        /// The limit in force.
        max: u32,
    },
    /// A field runs past the end of the packet's Remaining Length.
    UnexpectedEnd,
    /// Bytes left over after the last field of the packet.
    TrailingBytes,
    /// A QoS of 3 in a PUBLISH, a will or a subscription ([MQTT-3.3.1-4], [MQTT-3.1.2-14]).
    InvalidQoS(u8),
    /// DUP set on a QoS 0 PUBLISH ([MQTT-3.3.1-2]).
    DupWithQoS0,
    /// A packet identifier of zero ([MQTT-2.3.1-1] in 3.1.1, [MQTT-2.2.1-3] in 5.0).
    ZeroPacketId,
    /// A string that is not valid MQTT UTF-8 ([MQTT-1.5.3-1], [MQTT-1.5.3-2]; 1.5.4 in 5.0).
    InvalidString(StringError),
    /// A topic name with a wildcard, an empty topic name, or a malformed filter ([MQTT-3.3.2-2],
    /// [MQTT-4.7.3-1], [MQTT-4.7.1-2], [MQTT-4.7.1-3], [MQTT-4.8.2-1], [MQTT-4.8.2-2]).
    InvalidTopic(TopicError),
    /// An MQTT 5 PUBLISH with an empty topic name and no Topic Alias ([MQTT-3.3.2-1] in 5.0).
    EmptyTopicWithoutAlias,
    /// A CONNECT whose protocol name does not match its level ([MQTT-3.1.2-1]).
    InvalidProtocolName,
    /// A CONNECT with a protocol level this codec does not speak ([MQTT-3.1.2-2]). A server
    /// answers with CONNACK 0x01 (3.1.x) or 0x84 (5.0) and closes.
    UnsupportedProtocolVersion(u8),
    /// The reserved bit of the CONNECT flags is set ([MQTT-3.1.0-2]... [MQTT-3.1.2-3]).
    ConnectReservedFlag,
    /// Will QoS or Will Retain set without the Will Flag ([MQTT-3.1.2-11], [MQTT-3.1.2-13],
    /// [MQTT-3.1.2-15] in 3.1.1).
    WillFlagsWithoutWill,
    /// A password without a user name in MQTT 3.1.x ([MQTT-3.1.2-22] in 3.1.1).
    PasswordWithoutUsername,
    /// Reserved bits of the CONNACK acknowledge flags are set ([MQTT-3.2.2-1] in 5.0).
    ConnAckReservedFlags,
    /// A SUBSCRIBE or UNSUBSCRIBE without any topic filter ([MQTT-3.8.3-3], [MQTT-3.10.3-2]).
    NoTopicFilters,
    /// Reserved bits of the subscription options are set ([MQTT-3.8.3-4] in 3.1.1,
    /// [MQTT-3.8.3-5] in 5.0).
    InvalidSubscriptionOptions(u8),
    /// Retain Handling of 3 in the subscription options (section 3.8.3.1 of 5.0: a Protocol
    /// Error).
    InvalidRetainHandling,
    /// Maximum QoS 3 in the subscription options of an MQTT 5 SUBSCRIBE (section 3.8.3.1 of
    /// 5.0: a Protocol Error; in 3.1.1 the same byte is malformed, [`DecodeError::InvalidQoS`]).
    InvalidSubscriptionQoS,
    /// No Local set on a shared subscription ([MQTT-3.8.3-4] in 5.0).
    NoLocalOnSharedSubscription,
    /// A reason or return code that the packet may not carry.
    InvalidReasonCode {
        /// The packet type.
        packet_type: PacketType,
        /// The code received.
        code: u8,
    },
    /// A property identifier the standard does not define (section 2.2.2.2 of 5.0).
    UnknownProperty(u8),
    /// A property that this packet may not carry (section 2.2.2.2 of 5.0).
    PropertyNotAllowed {
        /// The packet type, or `None` for the will properties of CONNECT.
        packet_type: Option<PacketType>,
        /// The property.
        property: PropertyId,
    },
    /// A property that may appear once appears twice (section 2.2.2.2 of 5.0, e.g.
    /// [MQTT-3.1.2-..] "It is a Protocol Error to include ... more than once").
    DuplicateProperty(PropertyId),
    /// A property value outside its range: a Receive Maximum or Maximum Packet Size of 0, a
    /// Topic Alias of 0 ([MQTT-3.3.2-8]), a Subscription Identifier of 0, a boolean byte other
    /// than 0 or 1, a Maximum QoS of 2 or more.
    InvalidPropertyValue(PropertyId),
}

impl DecodeError {
    /// The MQTT 5 reason code a session sends in the DISCONNECT (or, for a broken CONNECT, the
    /// CONNACK) that reports this error.
    pub const fn reason_code(&self) -> ReasonCode {
        match self {
            Self::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            // [MQTT-3.1.2-1] in 5.0: a wrong Protocol Name may be answered with CONNACK 0x84.
            Self::UnsupportedProtocolVersion(_) | Self::InvalidProtocolName => {
                ReasonCode::UnsupportedProtocolVersion
            }
            Self::DuplicateProperty(_)
            | Self::InvalidPropertyValue(_)
            | Self::EmptyTopicWithoutAlias
            | Self::InvalidRetainHandling
            | Self::InvalidSubscriptionQoS
            // 5.0 sections 3.8.3, 3.10.3: an empty (UN)SUBSCRIBE payload is a Protocol Error.
            | Self::NoTopicFilters
            | Self::NoLocalOnSharedSubscription => ReasonCode::ProtocolError,
            Self::InvalidTopic(TopicError::InvalidSharedSubscription) => ReasonCode::ProtocolError,
            _ => ReasonCode::MalformedPacket,
        }
    }

    /// The normative statement (or section) of the standards this error enforces.
    pub const fn rule(&self) -> &'static str {
        match self {
            Self::ReservedPacketType(_) => "MQTT-2.1.2 (reserved packet types)",
            Self::InvalidFlags { .. } => "MQTT-2.1.3-1 / MQTT-2.2.2-2",
            Self::MalformedVariableByteInteger => {
                "MQTT-1.5.5 (5.0) / MQTT-2.2.3 (3.1.1): at most four bytes"
            }
            Self::PacketTooLarge { .. } => "MQTT-3.1.2-24 / MQTT-3.2.2-15",
            Self::UnexpectedEnd | Self::TrailingBytes => "MQTT-2.1.4 (remaining length)",
            Self::InvalidQoS(_) => "MQTT-3.3.1-4",
            Self::DupWithQoS0 => "MQTT-3.3.1-2",
            Self::ZeroPacketId => "MQTT-2.2.1-3 / MQTT-2.3.1-1",
            Self::InvalidString(StringError::NullCharacter) => "MQTT-1.5.4-2 / MQTT-1.5.3-2",
            Self::InvalidString(_) => "MQTT-1.5.4-1 / MQTT-1.5.3-1",
            Self::InvalidTopic(TopicError::WildcardInName) => "MQTT-3.3.2-2",
            Self::InvalidTopic(TopicError::Empty) => "MQTT-4.7.3-1",
            Self::InvalidTopic(TopicError::MisplacedMultiLevelWildcard) => {
                "MQTT-4.7.1-1 (5.0) / MQTT-4.7.1-2 (3.1.1)"
            }
            Self::InvalidTopic(TopicError::MisplacedSingleLevelWildcard) => {
                "MQTT-4.7.1-2 (5.0) / MQTT-4.7.1-3 (3.1.1)"
            }
            Self::InvalidTopic(TopicError::InvalidSharedSubscription) => {
                "MQTT-4.8.2-1 / MQTT-4.8.2-2"
            }
            Self::InvalidTopic(TopicError::String(_)) => "MQTT-1.5.4-1",
            Self::EmptyTopicWithoutAlias => "MQTT-3.3.2-1 / section 3.3.2.3.4 of 5.0 (topic alias)",
            Self::InvalidProtocolName => "MQTT-3.1.2-1",
            Self::UnsupportedProtocolVersion(_) => "MQTT-3.1.2-2",
            Self::ConnectReservedFlag => "MQTT-3.1.2-3",
            Self::WillFlagsWithoutWill => "MQTT-3.1.2-11 / MQTT-3.1.2-13 / MQTT-3.1.2-15",
            Self::PasswordWithoutUsername => "MQTT-3.1.2-22",
            Self::ConnAckReservedFlags => "MQTT-3.2.2-1",
            Self::NoTopicFilters => "MQTT-3.8.3-2 (5.0) / MQTT-3.8.3-3 (3.1.1) / MQTT-3.10.3-2",
            Self::InvalidSubscriptionOptions(_) => "MQTT-3.8.3-5 (5.0) / MQTT-3.8.3-4 (3.1.1)",
            Self::InvalidRetainHandling => "MQTT-3.8.3.1 (retain handling 3)",
            Self::InvalidSubscriptionQoS => "MQTT-3.8.3.1 (maximum QoS 3)",
            Self::NoLocalOnSharedSubscription => "MQTT-3.8.3-4",
            Self::InvalidReasonCode { .. } => "MQTT-2.4 (reason codes per packet)",
            Self::UnknownProperty(_) | Self::PropertyNotAllowed { .. } => {
                "MQTT-2.2.2.2 (properties per packet)"
            }
            Self::DuplicateProperty(_) => "MQTT-2.2.2.2 (at most once)",
            Self::InvalidPropertyValue(_) => "MQTT-3.1.2 / MQTT-3.2.2 (property ranges)",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedPacketType(t) => write!(f, "reserved packet type {t}"),
            Self::InvalidFlags { packet_type, flags } => {
                write!(
                    f,
                    "invalid fixed header flags {flags:#06b} for {packet_type}"
                )
            }
            Self::MalformedVariableByteInteger => {
                f.write_str("variable byte integer longer than 4 bytes")
            }
            Self::PacketTooLarge { size, max } => {
                write!(f, "packet of {size} bytes exceeds the maximum of {max}")
            }
            Self::UnexpectedEnd => f.write_str("field runs past the end of the packet"),
            Self::TrailingBytes => f.write_str("unexpected bytes after the last field"),
            Self::InvalidQoS(q) => write!(f, "invalid QoS {q}"),
            Self::DupWithQoS0 => f.write_str("DUP flag set on a QoS 0 PUBLISH"),
            Self::ZeroPacketId => f.write_str("packet identifier 0"),
            Self::InvalidString(e) => fmt::Display::fmt(e, f),
            Self::InvalidTopic(e) => fmt::Display::fmt(e, f),
            Self::EmptyTopicWithoutAlias => f.write_str("empty topic name without a topic alias"),
            Self::InvalidProtocolName => f.write_str("protocol name does not match the level"),
            Self::UnsupportedProtocolVersion(l) => write!(f, "unsupported protocol level {l}"),
            Self::ConnectReservedFlag => f.write_str("reserved CONNECT flag set"),
            Self::WillFlagsWithoutWill => f.write_str("will QoS or retain set without a will"),
            Self::PasswordWithoutUsername => f.write_str("password without user name"),
            Self::ConnAckReservedFlags => f.write_str("reserved CONNACK flags set"),
            Self::NoTopicFilters => f.write_str("no topic filter"),
            Self::InvalidSubscriptionOptions(o) => {
                write!(f, "invalid subscription options {o:#010b}")
            }
            Self::InvalidRetainHandling => f.write_str("retain handling 3"),
            Self::InvalidSubscriptionQoS => f.write_str("subscription maximum QoS 3"),
            Self::NoLocalOnSharedSubscription => f.write_str("no local on a shared subscription"),
            Self::InvalidReasonCode { packet_type, code } => {
                write!(f, "reason code {code:#04x} is not valid in {packet_type}")
            }
            Self::UnknownProperty(id) => write!(f, "unknown property identifier {id:#04x}"),
            Self::PropertyNotAllowed {
                packet_type: Some(t),
                property,
            } => write!(f, "property {property:?} is not allowed in {t}"),
            Self::PropertyNotAllowed {
                packet_type: None,
                property,
            } => write!(f, "property {property:?} is not allowed in will properties"),
            Self::DuplicateProperty(p) => write!(f, "property {p:?} appears more than once"),
            Self::InvalidPropertyValue(p) => write!(f, "invalid value for property {p:?}"),
        }
    }
}

impl core::error::Error for DecodeError {}

impl From<StringError> for DecodeError {
    fn from(e: StringError) -> Self {
        Self::InvalidString(e)
    }
}

impl From<TopicError> for DecodeError {
    fn from(e: TopicError) -> Self {
        match e {
            TopicError::String(s) => Self::InvalidString(s),
            other => Self::InvalidTopic(other),
        }
    }
}

/// A packet that cannot be encoded. Nothing was written to the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// A string or binary field longer than 65,535 bytes.
    FieldTooLong {
        /// The field's length.
        len: usize,
    },
    /// The packet's Remaining Length would exceed 268,435,455 bytes.
    PacketTooLarge {
        /// The remaining length the packet would need.
        remaining_length: usize,
    },
    /// A reason code the packet type may not carry (section 2.4 of 5.0), or one that has no
    /// MQTT 3.1.1 return code in a SUBACK.
    InvalidReasonCode {
        /// The packet type.
        packet_type: PacketType,
        /// The code.
        code: ReasonCode,
    },
    /// A SUBSCRIBE or UNSUBSCRIBE without a topic filter ([MQTT-3.8.3-3], [MQTT-3.10.3-2]).
    NoTopicFilters,
    /// A PUBLISH with an empty topic name and no Topic Alias, or with an alias before MQTT 5.
    EmptyTopicWithoutAlias,
    /// A password without a user name, which MQTT 3.1.x forbids ([MQTT-3.1.2-22]).
    PasswordWithoutUsername,
    /// A packet that the protocol version does not have (AUTH before MQTT 5).
    NotInVersion(PacketType),
    /// A property value outside its range (a Subscription Identifier above 268,435,455).
    InvalidPropertyValue(PropertyId),
    /// No Local on a shared subscription ([MQTT-3.8.3-4] in 5.0).
    NoLocalOnSharedSubscription,
    /// DUP set on a QoS 0 PUBLISH ([MQTT-3.3.1-2]).
    DupWithQoS0,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FieldTooLong { len } => write!(f, "field of {len} bytes exceeds 65535"),
            Self::PacketTooLarge { remaining_length } => {
                write!(f, "remaining length {remaining_length} exceeds 268435455")
            }
            Self::InvalidReasonCode { packet_type, code } => {
                write!(f, "reason code {code} cannot be sent in {packet_type}")
            }
            Self::NoTopicFilters => f.write_str("no topic filter"),
            Self::EmptyTopicWithoutAlias => f.write_str("empty topic name without a topic alias"),
            Self::PasswordWithoutUsername => {
                f.write_str("MQTT 3.1.x cannot send a password without a user name")
            }
            Self::NotInVersion(t) => write!(f, "{t} does not exist in this protocol version"),
            Self::InvalidPropertyValue(p) => write!(f, "invalid value for property {p:?}"),
            Self::NoLocalOnSharedSubscription => f.write_str("no local on a shared subscription"),
            Self::DupWithQoS0 => f.write_str("DUP flag set on a QoS 0 PUBLISH"),
        }
    }
}

impl core::error::Error for EncodeError {}
