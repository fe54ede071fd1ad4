//! CONNECT: the client's request to open a session (section 3.1), with its will message.

use alloc::vec::Vec;
use core::num::{NonZeroU16, NonZeroU32};

use bytes::{BufMut, Bytes, BytesMut};

use super::{check_remaining, put_fixed_header, Sizes};
use crate::error::{DecodeError, EncodeError};
use crate::packet_type::PacketType;
use crate::property::{
    not_allowed, Context, PayloadFormat, Property, PropertyId, PropertySet, PropertyWriter,
    UserProperty,
};
use crate::qos::QoS;
use crate::string::MqttString;
use crate::topic::TopicName;
use crate::version::ProtocolVersion;
use crate::wire::{self, field_len, Reader};

const USERNAME: u8 = 0b1000_0000;
const PASSWORD: u8 = 0b0100_0000;
const WILL_RETAIN: u8 = 0b0010_0000;
const WILL_QOS_SHIFT: u8 = 3;
const WILL_FLAG: u8 = 0b0000_0100;
const CLEAN_START: u8 = 0b0000_0010;
const RESERVED: u8 = 0b0000_0001;

/// A CONNECT packet. Its protocol version travels inside it, so it decodes before the version
/// of the connection is known.
///
/// ```
/// use bytes::BytesMut;
/// use mqtt_streaming_proto::{Connect, Decoder, MqttString, Packet, ProtocolVersion};
/// let connect = Connect::new(ProtocolVersion::V5, MqttString::new("sensor-1").unwrap());
/// let mut buf = BytesMut::new();
/// Packet::from(connect.clone()).encode(ProtocolVersion::V5, &mut buf).unwrap();
/// let decoded = Decoder::new(ProtocolVersion::V5).decode(&mut buf).unwrap().unwrap();
/// assert_eq!(decoded, Packet::from(connect));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Connect {
    /// The protocol version, from the Protocol Name and Protocol Level.
    pub protocol: ProtocolVersion,
    /// Clean Start (5.0) / Clean Session (3.1.1): discard any existing session.
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 turns the mechanism off.
    pub keep_alive: u16,
    /// Client Identifier; may be empty, asking the server to assign one.
    pub client_id: MqttString,
    /// The will message, published by the server if the connection ends abnormally.
    pub will: Option<Will>,
    /// User Name.
    pub username: Option<MqttString>,
    /// Password (binary data). MQTT 3.1.x requires a user name with it.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arbitrary_support::opt_bytes))]
    pub password: Option<Bytes>,
    /// MQTT 5 properties.
    pub properties: ConnectProperties,
}

/// The will message of a CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Will {
    /// Topic the will is published to.
    pub topic: TopicName,
    /// The will payload (binary data, at most 65,535 bytes).
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arbitrary_support::bytes))]
    pub payload: Bytes,
    /// QoS of the will message.
    pub qos: QoS,
    /// Whether the will is retained.
    pub retain: bool,
    /// MQTT 5 will properties.
    pub properties: WillProperties,
}

/// The properties of a CONNECT (section 3.1.2.11 of 5.0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ConnectProperties {
    /// Session Expiry Interval in seconds (absent: 0, the session ends with the connection).
    pub session_expiry_interval: Option<u32>,
    /// Receive Maximum: how many QoS 1 and 2 PUBLISHes the client processes at once.
    pub receive_maximum: Option<NonZeroU16>,
    /// Maximum Packet Size the client accepts.
    pub maximum_packet_size: Option<NonZeroU32>,
    /// Topic Alias Maximum the client accepts from the server.
    pub topic_alias_maximum: Option<u16>,
    /// Request Response Information.
    pub request_response_information: Option<bool>,
    /// Request Problem Information.
    pub request_problem_information: Option<bool>,
    /// User Properties, in order.
    pub user_properties: Vec<UserProperty>,
    /// Authentication Method for enhanced authentication.
    pub authentication_method: Option<MqttString>,
    /// Authentication Data (only with an Authentication Method).
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arbitrary_support::opt_bytes))]
    pub authentication_data: Option<Bytes>,
}

/// The will properties of a CONNECT (section 3.1.3.2 of 5.0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct WillProperties {
    /// Will Delay Interval in seconds.
    pub will_delay_interval: Option<u32>,
    /// Payload Format Indicator.
    pub payload_format: Option<PayloadFormat>,
    /// Message Expiry Interval in seconds.
    pub message_expiry_interval: Option<u32>,
    /// Content Type.
    pub content_type: Option<MqttString>,
    /// Response Topic.
    pub response_topic: Option<TopicName>,
    /// Correlation Data.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arbitrary_support::opt_bytes))]
    pub correlation_data: Option<Bytes>,
    /// User Properties, in order.
    pub user_properties: Vec<UserProperty>,
}

impl PropertySet for ConnectProperties {
    const CONTEXT: Context = Context::Packet(PacketType::Connect);

    fn write(&self, w: &mut PropertyWriter<'_>) {
        w.opt_u32(
            PropertyId::SessionExpiryInterval,
            self.session_expiry_interval,
        );
        w.opt_u16(
            PropertyId::ReceiveMaximum,
            self.receive_maximum.map(NonZeroU16::get),
        );
        w.opt_u32(
            PropertyId::MaximumPacketSize,
            self.maximum_packet_size.map(NonZeroU32::get),
        );
        w.opt_u16(PropertyId::TopicAliasMaximum, self.topic_alias_maximum);
        w.opt_bool(
            PropertyId::RequestResponseInformation,
            self.request_response_information,
        );
        w.opt_bool(
            PropertyId::RequestProblemInformation,
            self.request_problem_information,
        );
        w.user_properties(&self.user_properties);
        w.opt_string(
            PropertyId::AuthenticationMethod,
            self.authentication_method.as_ref(),
        );
        w.opt_binary(
            PropertyId::AuthenticationData,
            self.authentication_data.as_ref(),
        );
    }

    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::SessionExpiryInterval(v) => self.session_expiry_interval = Some(v),
            Property::ReceiveMaximum(v) => self.receive_maximum = Some(v),
            Property::MaximumPacketSize(v) => self.maximum_packet_size = Some(v),
            Property::TopicAliasMaximum(v) => self.topic_alias_maximum = Some(v),
            Property::RequestResponseInformation(v) => self.request_response_information = Some(v),
            Property::RequestProblemInformation(v) => self.request_problem_information = Some(v),
            Property::UserProperty(v) => self.user_properties.push(v),
            Property::AuthenticationMethod(v) => self.authentication_method = Some(v),
            Property::AuthenticationData(v) => self.authentication_data = Some(v),
            other => return Err(not_allowed(Self::CONTEXT, &other)),
        }
        Ok(())
    }
}

impl PropertySet for WillProperties {
    const CONTEXT: Context = Context::Will;

    fn write(&self, w: &mut PropertyWriter<'_>) {
        w.opt_u32(PropertyId::WillDelayInterval, self.will_delay_interval);
        if let Some(f) = self.payload_format {
            w.byte(PropertyId::PayloadFormatIndicator, f as u8);
        }
        w.opt_u32(
            PropertyId::MessageExpiryInterval,
            self.message_expiry_interval,
        );
        w.opt_string(PropertyId::ContentType, self.content_type.as_ref());
        if let Some(t) = &self.response_topic {
            w.binary(PropertyId::ResponseTopic, t.as_bytes());
        }
        w.opt_binary(PropertyId::CorrelationData, self.correlation_data.as_ref());
        w.user_properties(&self.user_properties);
    }

    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::WillDelayInterval(v) => self.will_delay_interval = Some(v),
            Property::PayloadFormatIndicator(v) => self.payload_format = Some(v),
            Property::MessageExpiryInterval(v) => self.message_expiry_interval = Some(v),
            Property::ContentType(v) => self.content_type = Some(v),
            Property::ResponseTopic(v) => self.response_topic = Some(v),
            Property::CorrelationData(v) => self.correlation_data = Some(v),
            Property::UserProperty(v) => self.user_properties.push(v),
            other => return Err(not_allowed(Self::CONTEXT, &other)),
        }
        Ok(())
    }
}

impl Connect {
    /// A CONNECT with Clean Start set, a 60 second keep alive and nothing else.
    pub fn new(protocol: ProtocolVersion, client_id: MqttString) -> Self {
        Self {
            protocol,
            clean_start: true,
            keep_alive: 60,
            client_id,
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        }
    }

    pub(crate) fn decode(mut r: Reader) -> Result<Self, DecodeError> {
        let name = r.binary()?;
        let level = r.u8()?;
        let protocol = ProtocolVersion::from_level(level)
            .ok_or(DecodeError::UnsupportedProtocolVersion(level))?;
        if name != protocol.protocol_name().as_bytes() {
            return Err(DecodeError::InvalidProtocolName);
        }
        let flags = r.u8()?;
        if flags & RESERVED != 0 {
            return Err(DecodeError::ConnectReservedFlag);
        }
        let will_qos = (flags >> WILL_QOS_SHIFT) & 0b11;
        let has_will = flags & WILL_FLAG != 0;
        if !has_will && (will_qos != 0 || flags & WILL_RETAIN != 0) {
            return Err(DecodeError::WillFlagsWithoutWill);
        }
        let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::InvalidQoS(will_qos))?;
        if !protocol.is_v5() && flags & PASSWORD != 0 && flags & USERNAME == 0 {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = r.u16()?;
        let properties = if protocol.is_v5() {
            let p = ConnectProperties::decode(&mut r)?;
            if p.authentication_data.is_some() && p.authentication_method.is_none() {
                return Err(DecodeError::InvalidPropertyValue(
                    PropertyId::AuthenticationData,
                ));
            }
            p
        } else {
            ConnectProperties::default()
        };
        let client_id = r.string()?;
        let will = if has_will {
            let properties = if protocol.is_v5() {
                WillProperties::decode(&mut r)?
            } else {
                WillProperties::default()
            };
            Some(Will {
                topic: TopicName::try_from_bytes(r.binary()?)?,
                payload: r.binary()?,
                qos: will_qos,
                retain: flags & WILL_RETAIN != 0,
                properties,
            })
        } else {
            None
        };
        let username = if flags & USERNAME != 0 {
            Some(r.string()?)
        } else {
            None
        };
        let password = if flags & PASSWORD != 0 {
            Some(r.binary()?)
        } else {
            None
        };
        r.finish()?;
        Ok(Self {
            protocol,
            clean_start: flags & CLEAN_START != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.username.is_some() {
            flags |= USERNAME;
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        if let Some(will) = &self.will {
            flags |= WILL_FLAG | will.qos.as_u8() << WILL_QOS_SHIFT;
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.clean_start {
            flags |= CLEAN_START;
        }
        flags
    }

    pub(crate) fn sizes(&self) -> Result<Sizes, EncodeError> {
        let v5 = self.protocol.is_v5();
        if !v5 && self.password.is_some() && self.username.is_none() {
            return Err(EncodeError::PasswordWithoutUsername);
        }
        let mut sizes = Sizes::default();
        let mut remaining = 2 + self.protocol.protocol_name().len() + 1 + 1 + 2;
        if v5 {
            // The decoder refuses Authentication Data without a method; never write it.
            if self.properties.authentication_data.is_some()
                && self.properties.authentication_method.is_none()
            {
                return Err(EncodeError::InvalidPropertyValue(
                    PropertyId::AuthenticationData,
                ));
            }
            sizes.properties = self.properties.body_len()?;
            remaining += wire::varint_len(sizes.properties as u32) + sizes.properties;
        }
        remaining += 2 + self.client_id.len();
        if let Some(will) = &self.will {
            if v5 {
                sizes.will_properties = will.properties.body_len()?;
                remaining += wire::varint_len(sizes.will_properties as u32) + sizes.will_properties;
            }
            remaining += 2 + will.topic.len() + field_len(will.payload.len())?;
        }
        if let Some(username) = &self.username {
            remaining += 2 + username.len();
        }
        if let Some(password) = &self.password {
            remaining += field_len(password.len())?;
        }
        sizes.remaining = check_remaining(remaining)?;
        Ok(sizes)
    }

    pub(crate) fn write(&self, sizes: &Sizes, buf: &mut BytesMut) {
        let v5 = self.protocol.is_v5();
        put_fixed_header(buf, PacketType::Connect, 0, sizes.remaining);
        wire::put_field(buf, self.protocol.protocol_name().as_bytes());
        buf.put_u8(self.protocol.level());
        buf.put_u8(self.flags());
        buf.put_u16(self.keep_alive);
        if v5 {
            self.properties.encode(sizes.properties, buf);
        }
        wire::put_field(buf, self.client_id.as_bytes());
        if let Some(will) = &self.will {
            if v5 {
                will.properties.encode(sizes.will_properties, buf);
            }
            wire::put_field(buf, will.topic.as_bytes());
            wire::put_field(buf, &will.payload);
        }
        if let Some(username) = &self.username {
            wire::put_field(buf, username.as_bytes());
        }
        if let Some(password) = &self.password {
            wire::put_field(buf, password);
        }
    }
}
