//! CONNACK: the server's answer to CONNECT (section 3.2), with the limits the client must obey.

use alloc::vec::Vec;
use core::num::{NonZeroU16, NonZeroU32};

use bytes::{BufMut, Bytes, BytesMut};

use super::{check_remaining, put_fixed_header, Sizes};
use crate::error::{DecodeError, EncodeError};
use crate::packet_type::PacketType;
use crate::property::{
    not_allowed, Context, Property, PropertyId, PropertySet, PropertyWriter, UserProperty,
};
use crate::qos::QoS;
use crate::reason_code::ReasonCode;
use crate::string::MqttString;
use crate::version::ProtocolVersion;
use crate::wire::{self, Reader};

/// A CONNACK packet.
///
/// In MQTT 3.1.x the reason code travels as a return code (0 to 5, see
/// [`ReasonCode::to_v3_connack`]) and there are no properties.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ConnAck {
    /// Session Present: the server resumed a stored session.
    pub session_present: bool,
    /// The outcome; Success accepts the connection.
    pub reason_code: ReasonCode,
    /// MQTT 5 properties.
    pub properties: ConnAckProperties,
}

/// The properties of a CONNACK (section 3.2.2.3 of 5.0): the server's limits and grants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ConnAckProperties {
    /// Session Expiry Interval the server uses instead of the client's.
    pub session_expiry_interval: Option<u32>,
    /// Receive Maximum: QoS 1 and 2 PUBLISHes the server processes at once (absent: 65,535).
    pub receive_maximum: Option<NonZeroU16>,
    /// Maximum QoS the server supports: 0 or 1 (absent: 2).
    pub maximum_qos: Option<QoS>,
    /// Retain Available (absent: true).
    pub retain_available: Option<bool>,
    /// Maximum Packet Size the server accepts.
    pub maximum_packet_size: Option<NonZeroU32>,
    /// Assigned Client Identifier, when the client sent an empty one.
    pub assigned_client_identifier: Option<MqttString>,
    /// Topic Alias Maximum the server accepts (absent: 0).
    pub topic_alias_maximum: Option<u16>,
    /// Reason String.
    pub reason_string: Option<MqttString>,
    /// User Properties, in order.
    pub user_properties: Vec<UserProperty>,
    /// Wildcard Subscription Available (absent: true).
    pub wildcard_subscription_available: Option<bool>,
    /// Subscription Identifiers Available (absent: true).
    pub subscription_identifiers_available: Option<bool>,
    /// Shared Subscription Available (absent: true).
    pub shared_subscription_available: Option<bool>,
    /// Server Keep Alive: the keep alive the client must use instead of its own.
    pub server_keep_alive: Option<u16>,
    /// Response Information.
    pub response_information: Option<MqttString>,
    /// Server Reference: another server to use.
    pub server_reference: Option<MqttString>,
    /// Authentication Method.
    pub authentication_method: Option<MqttString>,
    /// Authentication Data.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arbitrary_support::opt_bytes))]
    pub authentication_data: Option<Bytes>,
}

impl PropertySet for ConnAckProperties {
    const CONTEXT: Context = Context::Packet(PacketType::ConnAck);

    fn write(&self, w: &mut PropertyWriter<'_>) {
        use PropertyId as Id;
        w.opt_u32(Id::SessionExpiryInterval, self.session_expiry_interval);
        w.opt_u16(
            Id::ReceiveMaximum,
            self.receive_maximum.map(NonZeroU16::get),
        );
        match self.maximum_qos {
            Some(QoS::ExactlyOnce) => w.invalid(Id::MaximumQoS),
            Some(qos) => w.byte(Id::MaximumQoS, qos.as_u8()),
            None => {}
        }
        w.opt_bool(Id::RetainAvailable, self.retain_available);
        w.opt_u32(
            Id::MaximumPacketSize,
            self.maximum_packet_size.map(NonZeroU32::get),
        );
        w.opt_string(
            Id::AssignedClientIdentifier,
            self.assigned_client_identifier.as_ref(),
        );
        w.opt_u16(Id::TopicAliasMaximum, self.topic_alias_maximum);
        w.opt_string(Id::ReasonString, self.reason_string.as_ref());
        w.user_properties(&self.user_properties);
        w.opt_bool(
            Id::WildcardSubscriptionAvailable,
            self.wildcard_subscription_available,
        );
        w.opt_bool(
            Id::SubscriptionIdentifierAvailable,
            self.subscription_identifiers_available,
        );
        w.opt_bool(
            Id::SharedSubscriptionAvailable,
            self.shared_subscription_available,
        );
        w.opt_u16(Id::ServerKeepAlive, self.server_keep_alive);
        w.opt_string(Id::ResponseInformation, self.response_information.as_ref());
        w.opt_string(Id::ServerReference, self.server_reference.as_ref());
        w.opt_string(
            Id::AuthenticationMethod,
            self.authentication_method.as_ref(),
        );
        w.opt_binary(Id::AuthenticationData, self.authentication_data.as_ref());
    }

    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::SessionExpiryInterval(v) => self.session_expiry_interval = Some(v),
            Property::ReceiveMaximum(v) => self.receive_maximum = Some(v),
            Property::MaximumQoS(v) => self.maximum_qos = Some(v),
            Property::RetainAvailable(v) => self.retain_available = Some(v),
            Property::MaximumPacketSize(v) => self.maximum_packet_size = Some(v),
            Property::AssignedClientIdentifier(v) => self.assigned_client_identifier = Some(v),
            Property::TopicAliasMaximum(v) => self.topic_alias_maximum = Some(v),
            Property::ReasonString(v) => self.reason_string = Some(v),
            Property::UserProperty(v) => self.user_properties.push(v),
            Property::WildcardSubscriptionAvailable(v) => {
                self.wildcard_subscription_available = Some(v)
            }
            Property::SubscriptionIdentifierAvailable(v) => {
                self.subscription_identifiers_available = Some(v)
            }
            Property::SharedSubscriptionAvailable(v) => {
                self.shared_subscription_available = Some(v)
            }
            Property::ServerKeepAlive(v) => self.server_keep_alive = Some(v),
            Property::ResponseInformation(v) => self.response_information = Some(v),
            Property::ServerReference(v) => self.server_reference = Some(v),
            Property::AuthenticationMethod(v) => self.authentication_method = Some(v),
            Property::AuthenticationData(v) => self.authentication_data = Some(v),
            other => return Err(not_allowed(Self::CONTEXT, &other)),
        }
        Ok(())
    }
}

impl ConnAck {
    /// A CONNACK with `reason_code`, no session and no properties.
    pub fn new(reason_code: ReasonCode) -> Self {
        Self {
            session_present: false,
            reason_code,
            properties: ConnAckProperties::default(),
        }
    }

    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let flags = r.u8()?;
        if flags & 0b1111_1110 != 0 {
            return Err(DecodeError::ConnAckReservedFlags);
        }
        let code = r.u8()?;
        let invalid = DecodeError::InvalidReasonCode {
            packet_type: PacketType::ConnAck,
            code,
        };
        let reason_code = if version.is_v5() {
            ReasonCode::from_u8(code)
                .filter(|c| c.is_valid_for(PacketType::ConnAck))
                .ok_or(invalid)?
        } else {
            ReasonCode::from_v3_connack(code).ok_or(invalid)?
        };
        let properties = if version.is_v5() {
            ConnAckProperties::decode(&mut r)?
        } else {
            ConnAckProperties::default()
        };
        r.finish()?;
        Ok(Self {
            session_present: flags & 1 != 0,
            reason_code,
            properties,
        })
    }

    pub(crate) fn sizes(&self, version: ProtocolVersion) -> Result<Sizes, EncodeError> {
        let mut sizes = Sizes {
            remaining: 2,
            ..Sizes::default()
        };
        if version.is_v5() {
            if !self.reason_code.is_valid_for(PacketType::ConnAck) {
                return Err(EncodeError::InvalidReasonCode {
                    packet_type: PacketType::ConnAck,
                    code: self.reason_code,
                });
            }
            sizes.properties = self.properties.body_len()?;
            sizes.remaining =
                check_remaining(2 + wire::varint_len(sizes.properties as u32) + sizes.properties)?;
        }
        Ok(sizes)
    }

    pub(crate) fn write(&self, version: ProtocolVersion, sizes: &Sizes, buf: &mut BytesMut) {
        put_fixed_header(buf, PacketType::ConnAck, 0, sizes.remaining);
        buf.put_u8(u8::from(self.session_present));
        if version.is_v5() {
            buf.put_u8(self.reason_code.as_u8());
            self.properties.encode(sizes.properties, buf);
        } else {
            buf.put_u8(self.reason_code.to_v3_connack());
        }
    }
}
