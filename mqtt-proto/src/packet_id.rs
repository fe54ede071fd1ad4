//! [`PacketId`]: the non-zero identifier that pairs a packet with its acknowledgement.

use core::fmt;
use core::num::NonZeroU16;

/// A packet identifier: 1 to 65,535. Zero is not a packet identifier ([MQTT-2.3.1-1] in 3.1.1,
/// [MQTT-2.2.1-3] in 5.0), so this type cannot hold it.
///
/// ```
/// use mqtt_streaming_proto::PacketId;
/// assert!(PacketId::new(0).is_none());
/// assert_eq!(PacketId::new(65535).unwrap().get(), 65535);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// The smallest identifier, 1.
    pub const MIN: PacketId = PacketId(NonZeroU16::MIN);
    /// The largest identifier, 65,535.
    pub const MAX: PacketId = PacketId(NonZeroU16::MAX);

    /// `None` for zero.
    pub const fn new(id: u16) -> Option<Self> {
        match NonZeroU16::new(id) {
            Some(id) => Some(Self(id)),
            None => None,
        }
    }

    /// The identifier as a number.
    pub const fn get(self) -> u16 {
        self.0.get()
    }

    /// The next identifier, wrapping from 65,535 to 1 so that all 65,535 values are used.
    pub const fn next(self) -> Self {
        match self.0.checked_add(1) {
            Some(id) => Self(id),
            None => Self::MIN,
        }
    }
}

impl fmt::Debug for PacketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PacketId({})", self.0)
    }
}

impl fmt::Display for PacketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<PacketId> for u16 {
    fn from(id: PacketId) -> u16 {
        id.get()
    }
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for PacketId {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self(u.arbitrary()?))
    }
}
