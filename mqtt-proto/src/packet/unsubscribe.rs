//! UNSUBSCRIBE: the client removes subscriptions (section 3.10).

use alloc::vec::Vec;

use bytes::{BufMut, BytesMut};

use super::{check_remaining, put_fixed_header, Sizes};
use crate::error::{DecodeError, EncodeError};
use crate::packet_id::PacketId;
use crate::packet_type::PacketType;
use crate::property::{not_allowed, Context, Property, PropertySet, PropertyWriter, UserProperty};
use crate::topic::TopicFilter;
use crate::version::ProtocolVersion;
use crate::wire::{self, Reader};

/// An UNSUBSCRIBE packet.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Unsubscribe {
    /// Packet identifier, echoed by the UNSUBACK.
    pub packet_id: PacketId,
    /// The filters to remove, exactly as subscribed; never empty on the wire ([MQTT-3.10.3-2]).
    pub filters: Vec<TopicFilter>,
    /// MQTT 5 properties.
    pub properties: UnsubscribeProperties,
}

/// The properties of an UNSUBSCRIBE (section 3.10.2.1 of 5.0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct UnsubscribeProperties {
    /// User Properties, in order.
    pub user_properties: Vec<UserProperty>,
}

impl PropertySet for UnsubscribeProperties {
    const CONTEXT: Context = Context::Packet(PacketType::Unsubscribe);

    fn write(&self, w: &mut PropertyWriter<'_>) {
        w.user_properties(&self.user_properties);
    }

    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::UserProperty(v) => self.user_properties.push(v),
            other => return Err(not_allowed(Self::CONTEXT, &other)),
        }
        Ok(())
    }
}

impl Unsubscribe {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            UnsubscribeProperties::decode(&mut r)?
        } else {
            UnsubscribeProperties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(TopicFilter::try_from_bytes(r.binary()?)?);
        }
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters);
        }
        Ok(Self {
            packet_id,
            filters,
            properties,
        })
    }

    pub(crate) fn sizes(&self, version: ProtocolVersion) -> Result<Sizes, EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::NoTopicFilters);
        }
        let mut sizes = Sizes::default();
        let mut remaining = 2 + self.filters.iter().map(|f| 2 + f.len()).sum::<usize>();
        if version.is_v5() {
            sizes.properties = self.properties.body_len()?;
            remaining += wire::varint_len(sizes.properties as u32) + sizes.properties;
        }
        sizes.remaining = check_remaining(remaining)?;
        Ok(sizes)
    }

    pub(crate) fn write(&self, version: ProtocolVersion, sizes: &Sizes, buf: &mut BytesMut) {
        put_fixed_header(buf, PacketType::Unsubscribe, 0b0010, sizes.remaining);
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.encode(sizes.properties, buf);
        }
        for f in &self.filters {
            wire::put_field(buf, f.as_bytes());
        }
    }
}
