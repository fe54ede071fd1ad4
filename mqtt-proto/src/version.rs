//! Protocol versions: the Protocol Level byte of CONNECT.

use core::fmt;

/// An MQTT protocol version this codec speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name "MQIsdp", level 3. Same packets as 3.1.1 apart from CONNECT and
    /// CONNACK details.
    V3_1 = 3,
    /// MQTT 3.1.1 (OASIS Standard, 2014): protocol name "MQTT", level 4.
    #[default]
    V3_1_1 = 4,
    /// MQTT 5.0 (OASIS Standard, 2019): protocol name "MQTT", level 5.
    V5 = 5,
}

impl ProtocolVersion {
    /// The version for a Protocol Level byte, if it is one this codec speaks.
    pub const fn from_level(level: u8) -> Option<Self> {
        match level {
            3 => Some(Self::V3_1),
            4 => Some(Self::V3_1_1),
            5 => Some(Self::V5),
            _ => None,
        }
    }

    /// The Protocol Level byte.
    pub const fn level(self) -> u8 {
        self as u8
    }

    /// The Protocol Name that goes with the level.
    pub const fn protocol_name(self) -> &'static str {
        match self {
            Self::V3_1 => "MQIsdp",
            Self::V3_1_1 | Self::V5 => "MQTT",
        }
    }

    /// Whether packets carry properties and reason codes (MQTT 5).
    pub const fn is_v5(self) -> bool {
        matches!(self, Self::V5)
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V3_1 => "MQTT 3.1",
            Self::V3_1_1 => "MQTT 3.1.1",
            Self::V5 => "MQTT 5.0",
        })
    }
}
