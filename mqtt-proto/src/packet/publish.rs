//! PUBLISH: an application message (section 3.3).

use alloc::vec::Vec;
use core::num::NonZeroU16;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{check_remaining, put_fixed_header, Sizes};
use crate::error::{DecodeError, EncodeError};
use crate::packet_type::PacketType;
use crate::property::{
    not_allowed, read_properties_slice, read_property_block, Context, PayloadFormat, Property,
    PropertyId, PropertyRef, PropertySet, PropertyValue, PropertyWriter, SubscriptionId,
    UserProperty,
};
use crate::qos::{QoS, QosPid};
use crate::string::MqttString;
use crate::topic::{check_publish_topic, TopicName};
use crate::version::ProtocolVersion;
use crate::wire::{self, Reader, SliceReader};

/// A PUBLISH packet.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use mqtt_streaming_proto::{Packet, PacketId, ProtocolVersion, Publish, QosPid, TopicName};
/// let publish = Publish::new(
///     TopicName::new("a/b").unwrap(),
///     QosPid::AtLeastOnce(PacketId::new(10).unwrap()),
///     Bytes::from_static(b"hi"),
/// );
/// let mut buf = BytesMut::new();
/// Packet::Publish(publish).encode(ProtocolVersion::V3_1_1, &mut buf).unwrap();
/// assert_eq!(&buf[..], [0x32, 9, 0, 3, b'a', b'/', b'b', 0, 10, b'h', b'i']);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Publish {
    /// DUP: this may be a re-delivery of an earlier attempt ([MQTT-3.3.1-1]). Never set at
    /// QoS 0 ([MQTT-3.3.1-2]).
    pub dup: bool,
    /// The QoS and, for QoS 1 and 2, the packet identifier.
    pub qos_pid: QosPid,
    /// RETAIN: the server keeps the message for future subscribers.
    pub retain: bool,
    /// The topic. Empty only in an MQTT 5 PUBLISH that carries a Topic Alias.
    pub topic: TopicName,
    /// MQTT 5 properties (ignored when encoding for 3.1.x).
    pub properties: PublishProperties,
    /// The application message, shared with the input buffer on decode.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arbitrary_support::bytes))]
    pub payload: Bytes,
}

/// The properties of a PUBLISH (section 3.3.2.3 of 5.0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PublishProperties {
    /// Payload Format Indicator.
    pub payload_format: Option<PayloadFormat>,
    /// Message Expiry Interval in seconds.
    pub message_expiry_interval: Option<u32>,
    /// Topic Alias (never 0, [MQTT-3.3.2-8]).
    pub topic_alias: Option<NonZeroU16>,
    /// Response Topic: a topic name for a request/response exchange.
    pub response_topic: Option<TopicName>,
    /// Correlation Data for a request/response exchange.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arbitrary_support::opt_bytes))]
    pub correlation_data: Option<Bytes>,
    /// User Properties, in order.
    pub user_properties: Vec<UserProperty>,
    /// Subscription Identifiers of the subscriptions that matched (server to client).
    #[cfg_attr(feature = "arbitrary", arbitrary(with = crate::arbitrary_support::subscription_ids))]
    pub subscription_identifiers: Vec<SubscriptionId>,
    /// Content Type.
    pub content_type: Option<MqttString>,
}

impl PublishProperties {
    /// Whether no property is set: such a set encodes as the single length byte 0. Every field
    /// is named so that a new one cannot be forgotten here.
    #[inline]
    fn is_empty(&self) -> bool {
        let Self {
            payload_format,
            message_expiry_interval,
            topic_alias,
            response_topic,
            correlation_data,
            user_properties,
            subscription_identifiers,
            content_type,
        } = self;
        payload_format.is_none()
            && message_expiry_interval.is_none()
            && topic_alias.is_none()
            && response_topic.is_none()
            && correlation_data.is_none()
            && user_properties.is_empty()
            && subscription_identifiers.is_empty()
            && content_type.is_none()
    }

    /// [`PropertySet::body_len`], out of line: the hot path of the encoder only meets empty
    /// sets.
    #[inline(never)]
    fn encoded_body_len(&self) -> Result<usize, EncodeError> {
        self.body_len()
    }
}

impl PropertySet for PublishProperties {
    const CONTEXT: Context = Context::Packet(PacketType::Publish);

    fn write(&self, w: &mut PropertyWriter<'_>) {
        if let Some(f) = self.payload_format {
            w.byte(PropertyId::PayloadFormatIndicator, f as u8);
        }
        w.opt_u32(
            PropertyId::MessageExpiryInterval,
            self.message_expiry_interval,
        );
        w.opt_u16(
            PropertyId::TopicAlias,
            self.topic_alias.map(NonZeroU16::get),
        );
        if let Some(t) = &self.response_topic {
            w.binary(PropertyId::ResponseTopic, t.as_bytes());
        }
        w.opt_binary(PropertyId::CorrelationData, self.correlation_data.as_ref());
        w.user_properties(&self.user_properties);
        for id in &self.subscription_identifiers {
            w.varint(PropertyId::SubscriptionIdentifier, id.get());
        }
        w.opt_string(PropertyId::ContentType, self.content_type.as_ref());
    }

    fn apply(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::PayloadFormatIndicator(v) => self.payload_format = Some(v),
            Property::MessageExpiryInterval(v) => self.message_expiry_interval = Some(v),
            Property::TopicAlias(v) => self.topic_alias = Some(v),
            Property::ResponseTopic(v) => self.response_topic = Some(v),
            Property::CorrelationData(v) => self.correlation_data = Some(v),
            Property::UserProperty(v) => self.user_properties.push(v),
            Property::SubscriptionIdentifier(v) => self.subscription_identifiers.push(v),
            Property::ContentType(v) => self.content_type = Some(v),
            other => return Err(not_allowed(Self::CONTEXT, &other)),
        }
        Ok(())
    }
}

impl Publish {
    /// A PUBLISH with no DUP, no RETAIN and no properties.
    pub fn new(topic: TopicName, qos_pid: QosPid, payload: impl Into<Bytes>) -> Self {
        Self {
            dup: false,
            qos_pid,
            retain: false,
            topic,
            properties: PublishProperties::default(),
            payload: payload.into(),
        }
    }

    #[inline]
    pub(crate) fn decode(
        flags: u8,
        mut r: Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        Self::decode_into(flags, r.rest(), version, |p| p)
    }

    /// Decodes the body (`body`: everything after the fixed header) and hands the packet to
    /// `wrap`, so that the caller's wrapper (for example `Some(Packet::Publish(_))`) is built
    /// around the fields in place: returning the 232-byte struct and wrapping it afterwards
    /// cost a copy of it per packet.
    ///
    /// The checks are [`PublishRef::parse`]'s, the ones the borrowed decoder runs; the topic,
    /// the payload and the properties' strings and binary data are then slices of `body`.
    #[inline(always)]
    pub(crate) fn decode_into<T>(
        flags: u8,
        mut body: Bytes,
        version: ProtocolVersion,
        wrap: impl FnOnce(Self) -> T,
    ) -> Result<T, DecodeError> {
        let mut properties: Option<PublishProperties> = None;
        let parsed = PublishRef::parse(flags, &body, version, |p| {
            properties
                .get_or_insert_with(PublishProperties::default)
                .apply(p.into_owned(|s| body.slice_ref(s)))
        })?;
        let (dup, qos_pid, retain) = (parsed.dup, parsed.qos_pid, parsed.retain);
        // The topic follows its two-byte length at the start of the body; the payload is the
        // end of the body.
        let topic_end = 2 + parsed.topic.len();
        let payload_start = body.len() - parsed.payload.len();
        let topic = TopicName::from_validated(body.slice(2..topic_end));
        body.advance(payload_start);
        Ok(wrap(match properties {
            Some(properties) => Self {
                dup,
                qos_pid,
                retain,
                topic,
                properties,
                payload: body,
            },
            // The common case builds the empty property set in place.
            None => Self {
                dup,
                qos_pid,
                retain,
                topic,
                properties: PublishProperties::default(),
                payload: body,
            },
        }))
    }

    #[inline(always)]
    fn flags(&self) -> u8 {
        u8::from(self.dup) << 3 | self.qos_pid.qos().as_u8() << 1 | u8::from(self.retain)
    }

    /// Validates the packet for `version` and works out its sizes.
    #[inline(always)]
    pub(crate) fn sizes(&self, version: ProtocolVersion) -> Result<Sizes, EncodeError> {
        if self.topic.is_empty() && !(version.is_v5() && self.properties.topic_alias.is_some()) {
            return Err(EncodeError::EmptyTopicWithoutAlias);
        }
        if self.dup && self.qos_pid.packet_id().is_none() {
            return Err(EncodeError::DupWithQoS0);
        }
        sizes_of(
            version,
            &self.topic,
            self.qos_pid.qos(),
            &self.properties,
            self.payload.len(),
        )
    }

    /// The exact encoded size of a PUBLISH made of these parts, without building one: lets a
    /// caller check a message against a Maximum Packet Size before it owns a `Publish`.
    ///
    /// ```
    /// use mqtt_streaming_proto::{Packet, PacketId, ProtocolVersion, Publish, PublishProperties, QoS, QosPid, TopicName};
    /// let topic = TopicName::new("a/b").unwrap();
    /// let properties = PublishProperties::default();
    /// let size = Publish::encoded_len_of(ProtocolVersion::V5, &topic, QoS::AtLeastOnce, &properties, 5).unwrap();
    /// let publish = Publish::new(topic, QosPid::AtLeastOnce(PacketId::MIN), &b"hello"[..]);
    /// assert_eq!(size, Packet::Publish(publish).encoded_len(ProtocolVersion::V5).unwrap());
    /// ```
    pub fn encoded_len_of(
        version: ProtocolVersion,
        topic: &TopicName,
        qos: QoS,
        properties: &PublishProperties,
        payload_len: usize,
    ) -> Result<usize, EncodeError> {
        Ok(sizes_of(version, topic, qos, properties, payload_len)?.total())
    }

    /// Writes everything but the payload.
    #[inline(always)]
    pub(crate) fn write_header(&self, version: ProtocolVersion, sizes: &Sizes, buf: &mut BytesMut) {
        put_fixed_header(buf, PacketType::Publish, self.flags(), sizes.remaining);
        wire::put_field(buf, self.topic.as_bytes());
        if let Some(id) = self.qos_pid.packet_id() {
            buf.put_u16(id.get());
        }
        if version.is_v5() {
            if sizes.properties == 0 {
                // An empty set: its length, 0, and nothing else.
                buf.put_u8(0);
            } else {
                self.properties.encode(sizes.properties, buf);
            }
        }
    }

    /// The whole packet: what [`Packet::encode`](crate::Packet::encode) does for a PUBLISH,
    /// without its dispatch.
    #[inline(always)]
    pub(crate) fn encode_packet(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let sizes = self.sizes(version)?;
        buf.reserve(sizes.total());
        self.write_header(version, &sizes, buf);
        buf.put_slice(&self.payload);
        Ok(())
    }

    /// Appends the fixed header, variable header and properties, but not the payload, and
    /// returns the total size of the packet. Send [`Publish::payload`] right after these bytes:
    /// a large payload then goes to the transport without being copied.
    ///
    /// ```
    /// use bytes::{Bytes, BytesMut};
    /// use mqtt_streaming_proto::{ProtocolVersion, Publish, QosPid, TopicName};
    /// let publish = Publish::new(TopicName::new("t").unwrap(), QosPid::AtMostOnce, Bytes::from(vec![7u8; 100_000]));
    /// let mut header = BytesMut::new();
    /// let total = publish.encode_header(ProtocolVersion::V5, &mut header).unwrap();
    /// assert_eq!(header.len() + publish.payload.len(), total);
    /// ```
    pub fn encode_header(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        let sizes = self.sizes(version)?;
        buf.reserve(sizes.total() - self.payload.len());
        self.write_header(version, &sizes, buf);
        Ok(sizes.total())
    }
}

/// A PUBLISH borrowed from the input: what [`Decoder::decode_slice`](crate::Decoder::decode_slice)
/// returns for the hottest loops. Its topic and payload are slices of the caller's buffer, so
/// making one costs no allocation and no reference count, and it cannot outlive that buffer.
///
/// It has passed exactly the checks a decoded [`Publish`] passes, its properties included:
/// they are kept as the raw, validated block ([`PublishRef::raw_properties`]) and decoded on
/// demand ([`PublishRef::properties`]). [`PublishRef::to_owned`] copies it into a [`Publish`]
/// equal to what [`Decoder::decode`](crate::Decoder::decode) returns for the same bytes.
///
/// ```
/// use mqtt_streaming_proto::{Decoder, PacketRef, ProtocolVersion, QoS};
///
/// let input = [0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, b'h', b'i'];
/// let decoder = Decoder::new(ProtocolVersion::V3_1_1);
/// let Some((PacketRef::Publish(publish), used)) = decoder.decode_slice(&input)? else {
///     panic!("a whole PUBLISH")
/// };
/// assert_eq!(used, input.len());
/// assert_eq!(publish.topic, "a/b");
/// assert_eq!(publish.qos_pid.qos(), QoS::AtLeastOnce);
/// assert_eq!(publish.payload, b"hi");
/// let owned = publish.to_owned(); // a `Publish`, independent of `input`
/// assert_eq!(owned.topic.as_str(), "a/b");
/// # Ok::<(), mqtt_streaming_proto::DecodeError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishRef<'a> {
    /// DUP: this may be a re-delivery of an earlier attempt. Never set at QoS 0.
    pub dup: bool,
    /// The QoS and, for QoS 1 and 2, the packet identifier.
    pub qos_pid: QosPid,
    /// RETAIN: the server keeps the message for future subscribers.
    pub retain: bool,
    /// The topic. Empty only in an MQTT 5 PUBLISH that carries a Topic Alias.
    pub topic: &'a str,
    /// The application message.
    pub payload: &'a [u8],
    /// The MQTT 5 property block, without its length prefix; validated.
    properties: &'a [u8],
    /// The Topic Alias property, found while validating the block.
    topic_alias: Option<NonZeroU16>,
}

impl<'a> PublishRef<'a> {
    /// Checks and splits the body of a PUBLISH (everything after the fixed header): every
    /// check of both decoders, in one order, so that both return the same error for the same
    /// bytes. Each property is validated and then handed to `on_property`.
    #[inline(always)]
    pub(crate) fn parse(
        flags: u8,
        body: &'a [u8],
        version: ProtocolVersion,
        mut on_property: impl FnMut(PropertyRef<'a>) -> Result<(), DecodeError>,
    ) -> Result<Self, DecodeError> {
        let dup = flags & 0b1000 != 0;
        let retain = flags & 0b0001 != 0;
        let qos = (flags >> 1) & 0b11;
        if qos == 3 {
            return Err(DecodeError::InvalidQoS(qos));
        }
        if dup && qos == 0 {
            return Err(DecodeError::DupWithQoS0);
        }
        let mut r = SliceReader::new(body);
        let topic = check_publish_topic(r.binary()?)?;
        let qos_pid = match qos {
            0 => QosPid::AtMostOnce,
            1 => QosPid::AtLeastOnce(r.packet_id()?),
            _ => QosPid::ExactlyOnce(r.packet_id()?),
        };
        let mut properties: &'a [u8] = &[];
        let mut topic_alias = None;
        if version.is_v5() && !r.skip_empty_properties() {
            properties = read_properties_slice(&mut r, PublishProperties::CONTEXT, |p| {
                if let PropertyValue::TopicAlias(alias) = p {
                    topic_alias = Some(alias);
                }
                on_property(p)
            })?;
        }
        // Without a Topic Alias (always so before MQTT 5), the topic must not be empty.
        if topic.is_empty() && topic_alias.is_none() {
            return Err(if version.is_v5() {
                DecodeError::EmptyTopicWithoutAlias
            } else {
                DecodeError::InvalidTopic(crate::TopicError::Empty)
            });
        }
        Ok(Self {
            dup,
            qos_pid,
            retain,
            topic,
            payload: r.rest(),
            properties,
            topic_alias,
        })
    }

    /// The MQTT 5 property block as received, without its length prefix (empty when there are
    /// no properties, and always before MQTT 5). It has been validated.
    pub const fn raw_properties(&self) -> &'a [u8] {
        self.properties
    }

    /// The Topic Alias property, if present: read without decoding the other properties.
    pub const fn topic_alias(&self) -> Option<NonZeroU16> {
        self.topic_alias
    }

    /// Decodes the properties into an owned set (copying their strings and binary data).
    pub fn properties(&self) -> PublishProperties {
        let mut set = PublishProperties::default();
        if !self.properties.is_empty() {
            // The block passed these very checks when it was decoded: this cannot fail.
            let decoded = read_property_block(self.properties, PublishProperties::CONTEXT, |p| {
                set.apply(p.into_owned(Bytes::copy_from_slice))
            });
            debug_assert!(
                decoded.is_ok(),
                "a validated property block failed: {decoded:?}"
            );
        }
        set
    }

    /// An owned [`Publish`] with copies of the topic, the payload and the properties: equal
    /// to what [`Decoder::decode`](crate::Decoder::decode) returns for the same bytes.
    pub fn to_owned(&self) -> Publish {
        Publish {
            dup: self.dup,
            qos_pid: self.qos_pid,
            retain: self.retain,
            topic: TopicName::from_validated(Bytes::copy_from_slice(self.topic.as_bytes())),
            properties: self.properties(),
            payload: Bytes::copy_from_slice(self.payload),
        }
    }

    /// [`PublishRef::to_owned`], consuming the borrowed packet.
    pub fn into_publish(self) -> Publish {
        self.to_owned()
    }
}

impl From<PublishRef<'_>> for Publish {
    fn from(p: PublishRef<'_>) -> Self {
        p.to_owned()
    }
}

/// The sizes of a PUBLISH made of these parts: the one place that knows its layout.
#[inline(always)]
fn sizes_of(
    version: ProtocolVersion,
    topic: &TopicName,
    qos: QoS,
    properties: &PublishProperties,
    payload_len: usize,
) -> Result<Sizes, EncodeError> {
    let v5 = version.is_v5();
    let has_id = qos != QoS::AtMostOnce;
    if topic.is_empty() && !(v5 && properties.topic_alias.is_some()) {
        return Err(EncodeError::EmptyTopicWithoutAlias);
    }
    // A `TopicName` is at most 65,535 bytes by construction: no field check needed.
    let mut remaining = 2 + topic.len() + payload_len + 2 * usize::from(has_id);
    let mut properties_len = 0;
    if v5 {
        // The common case skips the property writer's counting pass.
        if !properties.is_empty() {
            properties_len = properties.encoded_body_len()?;
        }
        remaining += wire::varint_len(properties_len as u32) + properties_len;
    }
    Ok(Sizes {
        remaining: check_remaining(remaining)?,
        properties: properties_len,
        will_properties: 0,
    })
}
