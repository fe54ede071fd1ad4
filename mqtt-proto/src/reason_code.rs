//! [`ReasonCode`]: every MQTT 5 reason code (section 2.4 of 5.0), which packets may carry it,
//! and how it maps to the return codes of MQTT 3.1.1's CONNACK and SUBACK.

use core::fmt;

use crate::packet_type::PacketType;
use crate::qos::QoS;

macro_rules! reason_codes {
    ($( $(#[$doc:meta])* $name:ident = $value:literal, $text:literal, [$($packet:ident),*]; )*) => {
        /// An MQTT 5 reason code. Value 0x00 means Success, Normal disconnection or Granted
        /// QoS 0 depending on the packet; see [`ReasonCode::NORMAL_DISCONNECTION`] and
        /// [`ReasonCode::GRANTED_QOS_0`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
        #[non_exhaustive]
        pub enum ReasonCode {
            $( $(#[$doc])* $name = $value, )*
        }

        impl ReasonCode {
            /// The code for a byte, if it is one the standard defines.
            pub const fn from_u8(value: u8) -> Option<Self> {
                match value {
                    $( $value => Some(Self::$name), )*
                    _ => None,
                }
            }

            /// The standard's name for the code (for 0x00, its CONNACK name "Success").
            pub const fn description(self) -> &'static str {
                match self {
                    $( Self::$name => $text, )*
                }
            }

            /// Whether a packet of type `packet` may carry this code (the table in section
            /// 2.4 of 5.0). A code outside a packet's list makes the packet malformed.
            pub const fn is_valid_for(self, packet: PacketType) -> bool {
                let allowed: u16 = match self {
                    $( Self::$name => 0 $( | PacketType::$packet.bit() )*, )*
                };
                allowed & packet.bit() != 0
            }
        }
    };
}

reason_codes! {
    /// 0x00: Success; Normal disconnection in DISCONNECT; Granted QoS 0 in SUBACK.
    Success = 0x00, "Success", [ConnAck, PubAck, PubRec, PubRel, PubComp, UnsubAck, Auth, Disconnect, SubAck];
    /// 0x01: Granted QoS 1 (SUBACK).
    GrantedQoS1 = 0x01, "Granted QoS 1", [SubAck];
    /// 0x02: Granted QoS 2 (SUBACK).
    GrantedQoS2 = 0x02, "Granted QoS 2", [SubAck];
    /// 0x04: Disconnect with Will Message: the server publishes the will anyway.
    DisconnectWithWillMessage = 0x04, "Disconnect with Will Message", [Disconnect];
    /// 0x10: No matching subscribers.
    NoMatchingSubscribers = 0x10, "No matching subscribers", [PubAck, PubRec];
    /// 0x11: No subscription existed.
    NoSubscriptionExisted = 0x11, "No subscription existed", [UnsubAck];
    /// 0x18: Continue authentication.
    ContinueAuthentication = 0x18, "Continue authentication", [Auth];
    /// 0x19: Re-authenticate.
    ReAuthenticate = 0x19, "Re-authenticate", [Auth];
    /// 0x80: Unspecified error.
    UnspecifiedError = 0x80, "Unspecified error", [ConnAck, PubAck, PubRec, SubAck, UnsubAck, Disconnect];
    /// 0x81: Malformed Packet.
    MalformedPacket = 0x81, "Malformed Packet", [ConnAck, Disconnect];
    /// 0x82: Protocol Error.
    ProtocolError = 0x82, "Protocol Error", [ConnAck, Disconnect];
    /// 0x83: Implementation specific error.
    ImplementationSpecificError = 0x83, "Implementation specific error", [ConnAck, PubAck, PubRec, SubAck, UnsubAck, Disconnect];
    /// 0x84: Unsupported Protocol Version.
    UnsupportedProtocolVersion = 0x84, "Unsupported Protocol Version", [ConnAck];
    /// 0x85: Client Identifier not valid.
    ClientIdentifierNotValid = 0x85, "Client Identifier not valid", [ConnAck];
    /// 0x86: Bad User Name or Password.
    BadUserNameOrPassword = 0x86, "Bad User Name or Password", [ConnAck];
    /// 0x87: Not authorized.
    NotAuthorized = 0x87, "Not authorized", [ConnAck, PubAck, PubRec, SubAck, UnsubAck, Disconnect];
    /// 0x88: Server unavailable.
    ServerUnavailable = 0x88, "Server unavailable", [ConnAck];
    /// 0x89: Server busy.
    ServerBusy = 0x89, "Server busy", [ConnAck, Disconnect];
    /// 0x8A: Banned.
    Banned = 0x8A, "Banned", [ConnAck];
    /// 0x8B: Server shutting down.
    ServerShuttingDown = 0x8B, "Server shutting down", [Disconnect];
    /// 0x8C: Bad authentication method.
    BadAuthenticationMethod = 0x8C, "Bad authentication method", [ConnAck, Disconnect];
    /// 0x8D: Keep Alive timeout.
    KeepAliveTimeout = 0x8D, "Keep Alive timeout", [Disconnect];
    /// 0x8E: Session taken over.
    SessionTakenOver = 0x8E, "Session taken over", [Disconnect];
    /// 0x8F: Topic Filter invalid.
    TopicFilterInvalid = 0x8F, "Topic Filter invalid", [SubAck, UnsubAck, Disconnect];
    /// 0x90: Topic Name invalid.
    TopicNameInvalid = 0x90, "Topic Name invalid", [ConnAck, PubAck, PubRec, Disconnect];
    /// 0x91: Packet Identifier in use.
    PacketIdentifierInUse = 0x91, "Packet Identifier in use", [PubAck, PubRec, SubAck, UnsubAck];
    /// 0x92: Packet Identifier not found.
    PacketIdentifierNotFound = 0x92, "Packet Identifier not found", [PubRel, PubComp];
    /// 0x93: Receive Maximum exceeded.
    ReceiveMaximumExceeded = 0x93, "Receive Maximum exceeded", [Disconnect];
    /// 0x94: Topic Alias invalid.
    TopicAliasInvalid = 0x94, "Topic Alias invalid", [Disconnect];
    /// 0x95: Packet too large.
    PacketTooLarge = 0x95, "Packet too large", [ConnAck, Disconnect];
    /// 0x96: Message rate too high.
    MessageRateTooHigh = 0x96, "Message rate too high", [Disconnect];
    /// 0x97: Quota exceeded.
    QuotaExceeded = 0x97, "Quota exceeded", [ConnAck, PubAck, PubRec, SubAck, Disconnect];
    /// 0x98: Administrative action.
    AdministrativeAction = 0x98, "Administrative action", [Disconnect];
    /// 0x99: Payload format invalid.
    PayloadFormatInvalid = 0x99, "Payload format invalid", [ConnAck, PubAck, PubRec, Disconnect];
    /// 0x9A: Retain not supported.
    RetainNotSupported = 0x9A, "Retain not supported", [ConnAck, Disconnect];
    /// 0x9B: QoS not supported.
    QoSNotSupported = 0x9B, "QoS not supported", [ConnAck, Disconnect];
    /// 0x9C: Use another server.
    UseAnotherServer = 0x9C, "Use another server", [ConnAck, Disconnect];
    /// 0x9D: Server moved.
    ServerMoved = 0x9D, "Server moved", [ConnAck, Disconnect];
    /// 0x9E: Shared Subscriptions not supported.
    SharedSubscriptionsNotSupported = 0x9E, "Shared Subscriptions not supported", [SubAck, Disconnect];
    /// 0x9F: Connection rate exceeded.
    ConnectionRateExceeded = 0x9F, "Connection rate exceeded", [ConnAck, Disconnect];
    /// 0xA0: Maximum connect time.
    MaximumConnectTime = 0xA0, "Maximum connect time", [Disconnect];
    /// 0xA1: Subscription Identifiers not supported.
    SubscriptionIdentifiersNotSupported = 0xA1, "Subscription Identifiers not supported", [SubAck, Disconnect];
    /// 0xA2: Wildcard Subscriptions not supported.
    WildcardSubscriptionsNotSupported = 0xA2, "Wildcard Subscriptions not supported", [SubAck, Disconnect];
}

impl ReasonCode {
    /// 0x00 in a DISCONNECT.
    pub const NORMAL_DISCONNECTION: ReasonCode = ReasonCode::Success;
    /// 0x00 in a SUBACK.
    pub const GRANTED_QOS_0: ReasonCode = ReasonCode::Success;

    /// The wire value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Whether the code reports a failure (0x80 and above, section 2.4).
    pub const fn is_error(self) -> bool {
        self as u8 >= 0x80
    }

    /// The SUBACK code that grants `qos`.
    pub const fn granted(qos: QoS) -> Self {
        match qos {
            QoS::AtMostOnce => Self::Success,
            QoS::AtLeastOnce => Self::GrantedQoS1,
            QoS::ExactlyOnce => Self::GrantedQoS2,
        }
    }

    /// The QoS a SUBACK code grants, `None` for a failure.
    pub const fn granted_qos(self) -> Option<QoS> {
        match self {
            Self::Success => Some(QoS::AtMostOnce),
            Self::GrantedQoS1 => Some(QoS::AtLeastOnce),
            Self::GrantedQoS2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    /// The MQTT 3.1/3.1.1 CONNACK return code for this code (section 3.2.2.3 of 3.1.1):
    /// 0 accepted, 1 unacceptable protocol version, 2 identifier rejected, 3 server
    /// unavailable, 4 bad user name or password, 5 not authorized. Codes with no exact
    /// counterpart map to the nearest: authentication failures to 5, the rest to 3.
    pub const fn to_v3_connack(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::UnsupportedProtocolVersion => 1,
            Self::ClientIdentifierNotValid => 2,
            Self::BadUserNameOrPassword => 4,
            Self::NotAuthorized | Self::Banned | Self::BadAuthenticationMethod => 5,
            _ => 3,
        }
    }

    /// The reason code for an MQTT 3.1/3.1.1 CONNACK return code; `None` for 6 and above,
    /// which are reserved.
    pub const fn from_v3_connack(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Success,
            1 => Self::UnsupportedProtocolVersion,
            2 => Self::ClientIdentifierNotValid,
            3 => Self::ServerUnavailable,
            4 => Self::BadUserNameOrPassword,
            5 => Self::NotAuthorized,
            _ => return None,
        })
    }

    /// The MQTT 3.1.1 SUBACK return code: the granted QoS, or 0x80 for every failure.
    pub const fn to_v3_suback(self) -> u8 {
        match self.granted_qos() {
            Some(qos) => qos.as_u8(),
            None => 0x80,
        }
    }

    /// The reason code for an MQTT 3.1.1 SUBACK return code (0, 1, 2 or 0x80, [MQTT-3.9.3-2]).
    pub const fn from_v3_suback(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Success,
            1 => Self::GrantedQoS1,
            2 => Self::GrantedQoS2,
            0x80 => Self::UnspecifiedError,
            _ => return None,
        })
    }
}

impl Default for ReasonCode {
    /// Success (0x00), which is also Normal disconnection and Granted QoS 0.
    fn default() -> Self {
        ReasonCode::Success
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02X})", self.description(), self.as_u8())
    }
}
