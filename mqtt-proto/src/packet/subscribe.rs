//! SUBSCRIBE: the client asks for messages matching topic filters (section 3.8).

use alloc::vec::Vec;

use bytes::{BufMut, BytesMut};

use super::{check_remaining, put_fixed_header, Sizes};
use crate::error::{DecodeError, EncodeError};
use crate::packet_id::PacketId;
use crate::packet_type::PacketType;
use crate::property::{
    not_allowed, Context, Property, PropertyId, PropertySet, PropertyWriter, SubscriptionId,
    UserProperty,
};
use crate::qos::QoS;
use crate::topic::TopicFilter;
use crate::version::ProtocolVersion;
use crate::wire::{self, Reader};

/// A SUBSCRIBE packet: one or more filters, each with its options.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Subscribe {
    /// Packet identifier, echoed by the SUBACK.
    pub packet_id: PacketId,
    /// The subscriptions; never empty on the wire ([MQTT-3.8.3-3]).
    pub subscriptions: Vec<Subscription>,
    /// MQTT 5 properties.
    pub properties: SubscribeProperties,
}

/// One topic filter of a SUBSCRIBE with its options.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Subscription {
    /// The filter.
    pub filter: TopicFilter,
    /// Its options.
    pub options: SubscriptionOptions,
}

/// The Subscription Options byte (section 3.8.3.1). Only the QoS exists before MQTT 5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SubscriptionOptions {
    /// Maximum QoS the server may use to send matching messages.
    pub qos: QoS,
    /// No Local: do not receive your own publications (MQTT 5).
    pub no_local: bool,
    /// Retain As Published: keep the RETAIN flag of forwarded messages (MQTT 5).
    pub retain_as_published: bool,
    /// When retained messages are sent (MQTT 5).
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with `qos` and every MQTT 5 option at its default.
    pub fn new(qos: QoS) -> Self {
        Self {
            qos,
            ..Self::default()
        }
    }

    fn to_byte(self) -> u8 {
        self.qos.as_u8()
            | u8::from(self.no_local) << 2
            | u8::from(self.retain_as_published) << 3
            | (self.retain_handling as u8) << 4
    }

    fn from_byte(byte: u8, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let reserved = if version.is_v5() {
            0b1100_0000
        } else {
            0b1111_1100
        };
        if byte & reserved != 0 {
            return Err(DecodeError::InvalidSubscriptionOptions(byte));
        }
        let qos = QoS::from_u8(byte & 0b11).ok_or(if version.is_v5() {
            DecodeError::InvalidSubscriptionQoS
        } else {
            DecodeError::InvalidQoS(byte & 0b11)
        })?;
        let retain_handling = match (byte >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtSubscribeIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::InvalidRetainHandling),
        };
        Ok(Self {
            qos,
            no_local: byte & 0b0100 != 0,
            retain_as_published: byte & 0b1000 != 0,
            retain_handling,
        })
    }
}

/// Retain Handling: whether retained messages are sent when the subscription is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not exist already.
    SendAtSubscribeIfNew = 1,
    /// 2: do not send retained messages at subscribe.
    DoNotSend = 2,
}

/// The properties of a SUBSCRIBE (section 3.8.2.1 of 5.0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SubscribeProperties {
    /// Subscription Identifier, returned with every message this subscription matches.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arbitrary_support::opt_subscription_id))]
    pub subscription_identifier: Option<SubscriptionId>,
    /// User Properties, in order.
    pub user_properties: Vec<UserProperty>,
}

impl PropertySet for SubscribeProperties {
    const CONTEXT: Context = Context::Packet(PacketType::Subscribe);

    fn write(&self, w: &mut PropertyWriter<'_>) {
        if let Some(id) = self.subscription_identifier {
            w.varint(PropertyId::SubscriptionIdentifier, id.get());
        }
        w.user_properties(&self.user_properties);
    }

    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::SubscriptionIdentifier(v) => self.subscription_identifier = Some(v),
            Property::UserProperty(v) => self.user_properties.push(v),
            other => return Err(not_allowed(Self::CONTEXT, &other)),
        }
        Ok(())
    }
}

impl Subscribe {
    /// A SUBSCRIBE with one filter and no properties.
    pub fn new(packet_id: PacketId, filter: TopicFilter, options: SubscriptionOptions) -> Self {
        Self {
            packet_id,
            subscriptions: alloc::vec![Subscription { filter, options }],
            properties: SubscribeProperties::default(),
        }
    }

    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            SubscribeProperties::decode(&mut r)?
        } else {
            SubscribeProperties::default()
        };
        let mut subscriptions = Vec::new();
        while !r.is_empty() {
            let filter = TopicFilter::try_from_bytes(r.binary()?)?;
            let options = SubscriptionOptions::from_byte(r.u8()?, version)?;
            if options.no_local && filter.is_shared() && version.is_v5() {
                return Err(DecodeError::NoLocalOnSharedSubscription);
            }
            subscriptions.push(Subscription { filter, options });
        }
        if subscriptions.is_empty() {
            return Err(DecodeError::NoTopicFilters);
        }
        Ok(Self {
            packet_id,
            subscriptions,
            properties,
        })
    }

    pub(crate) fn sizes(&self, version: ProtocolVersion) -> Result<Sizes, EncodeError> {
        if self.subscriptions.is_empty() {
            return Err(EncodeError::NoTopicFilters);
        }
        let mut sizes = Sizes::default();
        let mut remaining = 2;
        if version.is_v5() {
            sizes.properties = self.properties.body_len()?;
            remaining += wire::varint_len(sizes.properties as u32) + sizes.properties;
        }
        for s in &self.subscriptions {
            if version.is_v5() && s.options.no_local && s.filter.is_shared() {
                return Err(EncodeError::NoLocalOnSharedSubscription);
            }
            remaining += 2 + s.filter.len() + 1;
        }
        sizes.remaining = check_remaining(remaining)?;
        Ok(sizes)
    }

    pub(crate) fn write(&self, version: ProtocolVersion, sizes: &Sizes, buf: &mut BytesMut) {
        put_fixed_header(buf, PacketType::Subscribe, 0b0010, sizes.remaining);
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.encode(sizes.properties, buf);
        }
        for s in &self.subscriptions {
            wire::put_field(buf, s.filter.as_bytes());
            let byte = if version.is_v5() {
                s.options.to_byte()
            } else {
                s.options.qos.as_u8()
            };
            buf.put_u8(byte);
        }
    }
}
