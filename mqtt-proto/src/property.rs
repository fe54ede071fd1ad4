//! MQTT 5 properties (section 2.2.2 of 5.0): the 27 identifiers, which packets may carry each,
//! which may repeat, and the machinery the per-packet property structs use to read and write
//! them.
//!
//! Every packet has its own typed property struct (for example
//! [`PublishProperties`](crate::PublishProperties)), so a property can only be set where the
//! standard allows it. The decoder enforces the same table on input: an identifier that is
//! unknown or not allowed in the packet is a Malformed Packet, a second copy of a property that
//! may appear once is a Protocol Error.

use alloc::vec::Vec;
use core::num::{NonZeroU16, NonZeroU32};

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::packet_type::PacketType;
use crate::qos::QoS;
use crate::string::MqttString;
use crate::topic::{check_name, TopicName};
use crate::wire::{self, Reader, SliceReader, FIELD_MAX, VARINT_MAX};

/// Where a property block sits: in a packet, or in the will properties of a CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Context {
    Packet(PacketType),
    Will,
}

impl Context {
    const fn bit(self) -> u16 {
        match self {
            Self::Packet(t) => t.bit(),
            Self::Will => 1,
        }
    }

    fn packet_type(self) -> Option<PacketType> {
        match self {
            Self::Packet(t) => Some(t),
            Self::Will => None,
        }
    }
}

macro_rules! property_ids {
    ($( $(#[$doc:meta])* $name:ident = $value:literal, repeat: $repeat:literal, [$($ctx:ident),*]; )*) => {
        /// The identifier of an MQTT 5 property (table 2-4 of 5.0).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum PropertyId {
            $( $(#[$doc])* $name = $value, )*
        }

        impl PropertyId {
            /// Every property identifier, in numeric order.
            pub const ALL: [PropertyId; 27] = [$( Self::$name, )*];

            /// The identifier for a byte, if the standard defines it.
            pub const fn from_u8(value: u8) -> Option<Self> {
                match value {
                    $( $value => Some(Self::$name), )*
                    _ => None,
                }
            }

            /// Whether the property may appear more than once in one packet (only User
            /// Property, and Subscription Identifier in PUBLISH).
            pub const fn may_repeat(self) -> bool {
                match self {
                    $( Self::$name => $repeat, )*
                }
            }

            const fn allowed_bits(self) -> u16 {
                match self {
                    $( Self::$name => 0 $( | property_ids!(@bit $ctx) )*, )*
                }
            }
        }
    };
    (@bit Will) => { Context::Will.bit() };
    (@bit $t:ident) => { PacketType::$t.bit() };
}

property_ids! {
    /// 0x01 Payload Format Indicator (byte).
    PayloadFormatIndicator = 0x01, repeat: false, [Publish, Will];
    /// 0x02 Message Expiry Interval (four-byte integer, seconds).
    MessageExpiryInterval = 0x02, repeat: false, [Publish, Will];
    /// 0x03 Content Type (string).
    ContentType = 0x03, repeat: false, [Publish, Will];
    /// 0x08 Response Topic (string, a topic name).
    ResponseTopic = 0x08, repeat: false, [Publish, Will];
    /// 0x09 Correlation Data (binary).
    CorrelationData = 0x09, repeat: false, [Publish, Will];
    /// 0x0B Subscription Identifier (variable byte integer, 1 to 268,435,455).
    SubscriptionIdentifier = 0x0B, repeat: true, [Publish, Subscribe];
    /// 0x11 Session Expiry Interval (four-byte integer, seconds).
    SessionExpiryInterval = 0x11, repeat: false, [Connect, ConnAck, Disconnect];
    /// 0x12 Assigned Client Identifier (string).
    AssignedClientIdentifier = 0x12, repeat: false, [ConnAck];
    /// 0x13 Server Keep Alive (two-byte integer, seconds).
    ServerKeepAlive = 0x13, repeat: false, [ConnAck];
    /// 0x15 Authentication Method (string).
    AuthenticationMethod = 0x15, repeat: false, [Connect, ConnAck, Auth];
    /// 0x16 Authentication Data (binary).
    AuthenticationData = 0x16, repeat: false, [Connect, ConnAck, Auth];
    /// 0x17 Request Problem Information (byte, 0 or 1).
    RequestProblemInformation = 0x17, repeat: false, [Connect];
    /// 0x18 Will Delay Interval (four-byte integer, seconds).
    WillDelayInterval = 0x18, repeat: false, [Will];
    /// 0x19 Request Response Information (byte, 0 or 1).
    RequestResponseInformation = 0x19, repeat: false, [Connect];
    /// 0x1A Response Information (string).
    ResponseInformation = 0x1A, repeat: false, [ConnAck];
    /// 0x1C Server Reference (string).
    ServerReference = 0x1C, repeat: false, [ConnAck, Disconnect];
    /// 0x1F Reason String (string).
    ReasonString = 0x1F, repeat: false, [ConnAck, PubAck, PubRec, PubRel, PubComp, SubAck, UnsubAck, Disconnect, Auth];
    /// 0x21 Receive Maximum (two-byte integer, not 0).
    ReceiveMaximum = 0x21, repeat: false, [Connect, ConnAck];
    /// 0x22 Topic Alias Maximum (two-byte integer).
    TopicAliasMaximum = 0x22, repeat: false, [Connect, ConnAck];
    /// 0x23 Topic Alias (two-byte integer, not 0).
    TopicAlias = 0x23, repeat: false, [Publish];
    /// 0x24 Maximum QoS (byte, 0 or 1).
    MaximumQoS = 0x24, repeat: false, [ConnAck];
    /// 0x25 Retain Available (byte, 0 or 1).
    RetainAvailable = 0x25, repeat: false, [ConnAck];
    /// 0x26 User Property (string pair); may repeat, order is kept.
    UserProperty = 0x26, repeat: true, [Connect, ConnAck, Publish, Will, PubAck, PubRec, PubRel, PubComp, Subscribe, SubAck, Unsubscribe, UnsubAck, Disconnect, Auth];
    /// 0x27 Maximum Packet Size (four-byte integer, not 0).
    MaximumPacketSize = 0x27, repeat: false, [Connect, ConnAck];
    /// 0x28 Wildcard Subscription Available (byte, 0 or 1).
    WildcardSubscriptionAvailable = 0x28, repeat: false, [ConnAck];
    /// 0x29 Subscription Identifier Available (byte, 0 or 1).
    SubscriptionIdentifierAvailable = 0x29, repeat: false, [ConnAck];
    /// 0x2A Shared Subscription Available (byte, 0 or 1).
    SharedSubscriptionAvailable = 0x2A, repeat: false, [ConnAck];
}

impl PropertyId {
    /// Whether a packet of type `packet` may carry the property.
    pub const fn is_allowed_in(self, packet: PacketType) -> bool {
        self.allowed_bits() & packet.bit() != 0
    }

    /// Whether the will properties of a CONNECT may carry the property.
    pub const fn is_allowed_in_will(self) -> bool {
        self.allowed_bits() & Context::Will.bit() != 0
    }

    const fn is_allowed(self, context: Context) -> bool {
        self.allowed_bits() & context.bit() != 0
    }
}

/// A Subscription Identifier: 1 to 268,435,455 (section 3.8.2.1.2 of 5.0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(NonZeroU32);

impl SubscriptionId {
    /// `None` for 0 and for values above 268,435,455.
    pub const fn new(id: u32) -> Option<Self> {
        if id > VARINT_MAX {
            return None;
        }
        match NonZeroU32::new(id) {
            Some(id) => Some(Self(id)),
            None => None,
        }
    }

    /// The identifier as a number.
    pub const fn get(self) -> u32 {
        self.0.get()
    }
}

/// The Payload Format Indicator of a PUBLISH or will.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum PayloadFormat {
    /// 0: unspecified bytes.
    Unspecified = 0,
    /// 1: UTF-8 encoded character data.
    Utf8 = 1,
}

/// A User Property: a name/value pair of strings. Order and duplicates are kept.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct UserProperty {
    /// The name.
    pub name: MqttString,
    /// The value.
    pub value: MqttString,
}

impl UserProperty {
    /// Validates and copies both strings.
    pub fn new(name: &str, value: &str) -> Result<Self, crate::StringError> {
        Ok(Self {
            name: MqttString::new(name)?,
            value: MqttString::new(value)?,
        })
    }
}

/// One decoded property value, typed by its identifier. Generic over how strings (`S`), topic
/// names (`T`), binary data (`B`) and user properties (`U`) are held: [`Property`] owns them
/// (slices of a shared buffer), [`PropertyRef`] borrows them from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PropertyValue<S, T, B, U> {
    PayloadFormatIndicator(PayloadFormat),
    MessageExpiryInterval(u32),
    ContentType(S),
    ResponseTopic(T),
    CorrelationData(B),
    SubscriptionIdentifier(SubscriptionId),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(S),
    ServerKeepAlive(u16),
    AuthenticationMethod(S),
    AuthenticationData(B),
    RequestProblemInformation(bool),
    WillDelayInterval(u32),
    RequestResponseInformation(bool),
    ResponseInformation(S),
    ServerReference(S),
    ReasonString(S),
    ReceiveMaximum(NonZeroU16),
    TopicAliasMaximum(u16),
    TopicAlias(NonZeroU16),
    MaximumQoS(QoS),
    RetainAvailable(bool),
    UserProperty(U),
    MaximumPacketSize(NonZeroU32),
    WildcardSubscriptionAvailable(bool),
    SubscriptionIdentifierAvailable(bool),
    SharedSubscriptionAvailable(bool),
}

/// A decoded property that owns its strings and binary data.
pub(crate) type Property = PropertyValue<MqttString, TopicName, Bytes, UserProperty>;

/// A decoded, validated property borrowed from the input.
pub(crate) type PropertyRef<'a> = PropertyValue<&'a str, &'a str, &'a [u8], (&'a str, &'a str)>;

fn read_bool(r: &mut SliceReader<'_>, id: PropertyId) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidPropertyValue(id)),
    }
}

impl<'a> PropertyRef<'a> {
    /// Reads and validates the value of property `id`: the one place where property values
    /// are checked, for both decoders.
    fn read(id: PropertyId, r: &mut SliceReader<'a>) -> Result<Self, DecodeError> {
        use PropertyId as Id;
        let invalid = DecodeError::InvalidPropertyValue(id);
        Ok(match id {
            Id::PayloadFormatIndicator => Self::PayloadFormatIndicator(match r.u8()? {
                0 => PayloadFormat::Unspecified,
                1 => PayloadFormat::Utf8,
                _ => return Err(invalid),
            }),
            Id::MessageExpiryInterval => Self::MessageExpiryInterval(r.u32()?),
            Id::ContentType => Self::ContentType(r.string()?),
            Id::ResponseTopic => Self::ResponseTopic(check_name(r.binary()?)?),
            Id::CorrelationData => Self::CorrelationData(r.binary()?),
            Id::SubscriptionIdentifier => {
                Self::SubscriptionIdentifier(SubscriptionId::new(r.varint()?).ok_or(invalid)?)
            }
            Id::SessionExpiryInterval => Self::SessionExpiryInterval(r.u32()?),
            Id::AssignedClientIdentifier => Self::AssignedClientIdentifier(r.string()?),
            Id::ServerKeepAlive => Self::ServerKeepAlive(r.u16()?),
            Id::AuthenticationMethod => Self::AuthenticationMethod(r.string()?),
            Id::AuthenticationData => Self::AuthenticationData(r.binary()?),
            Id::RequestProblemInformation => Self::RequestProblemInformation(read_bool(r, id)?),
            Id::WillDelayInterval => Self::WillDelayInterval(r.u32()?),
            Id::RequestResponseInformation => Self::RequestResponseInformation(read_bool(r, id)?),
            Id::ResponseInformation => Self::ResponseInformation(r.string()?),
            Id::ServerReference => Self::ServerReference(r.string()?),
            Id::ReasonString => Self::ReasonString(r.string()?),
            Id::ReceiveMaximum => Self::ReceiveMaximum(NonZeroU16::new(r.u16()?).ok_or(invalid)?),
            Id::TopicAliasMaximum => Self::TopicAliasMaximum(r.u16()?),
            Id::TopicAlias => Self::TopicAlias(NonZeroU16::new(r.u16()?).ok_or(invalid)?),
            Id::MaximumQoS => Self::MaximumQoS(match r.u8()? {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                _ => return Err(invalid),
            }),
            Id::RetainAvailable => Self::RetainAvailable(read_bool(r, id)?),
            Id::UserProperty => Self::UserProperty((r.string()?, r.string()?)),
            Id::MaximumPacketSize => {
                Self::MaximumPacketSize(NonZeroU32::new(r.u32()?).ok_or(invalid)?)
            }
            Id::WildcardSubscriptionAvailable => {
                Self::WildcardSubscriptionAvailable(read_bool(r, id)?)
            }
            Id::SubscriptionIdentifierAvailable => {
                Self::SubscriptionIdentifierAvailable(read_bool(r, id)?)
            }
            Id::SharedSubscriptionAvailable => Self::SharedSubscriptionAvailable(read_bool(r, id)?),
        })
    }

    /// The owned property, its strings and binary data made from the borrowed ones by `share`
    /// (a slice of the shared buffer they lie in, or a copy). They were validated by
    /// [`PropertyRef::read`] already.
    pub(crate) fn into_owned(self, share: impl Fn(&[u8]) -> Bytes) -> Property {
        let string = |s: &str| MqttString::from_validated(share(s.as_bytes()));
        match self {
            Self::PayloadFormatIndicator(v) => Property::PayloadFormatIndicator(v),
            Self::MessageExpiryInterval(v) => Property::MessageExpiryInterval(v),
            Self::ContentType(v) => Property::ContentType(string(v)),
            Self::ResponseTopic(v) => {
                Property::ResponseTopic(TopicName::from_validated(share(v.as_bytes())))
            }
            Self::CorrelationData(v) => Property::CorrelationData(share(v)),
            Self::SubscriptionIdentifier(v) => Property::SubscriptionIdentifier(v),
            Self::SessionExpiryInterval(v) => Property::SessionExpiryInterval(v),
            Self::AssignedClientIdentifier(v) => Property::AssignedClientIdentifier(string(v)),
            Self::ServerKeepAlive(v) => Property::ServerKeepAlive(v),
            Self::AuthenticationMethod(v) => Property::AuthenticationMethod(string(v)),
            Self::AuthenticationData(v) => Property::AuthenticationData(share(v)),
            Self::RequestProblemInformation(v) => Property::RequestProblemInformation(v),
            Self::WillDelayInterval(v) => Property::WillDelayInterval(v),
            Self::RequestResponseInformation(v) => Property::RequestResponseInformation(v),
            Self::ResponseInformation(v) => Property::ResponseInformation(string(v)),
            Self::ServerReference(v) => Property::ServerReference(string(v)),
            Self::ReasonString(v) => Property::ReasonString(string(v)),
            Self::ReceiveMaximum(v) => Property::ReceiveMaximum(v),
            Self::TopicAliasMaximum(v) => Property::TopicAliasMaximum(v),
            Self::TopicAlias(v) => Property::TopicAlias(v),
            Self::MaximumQoS(v) => Property::MaximumQoS(v),
            Self::RetainAvailable(v) => Property::RetainAvailable(v),
            Self::UserProperty((name, value)) => Property::UserProperty(UserProperty {
                name: string(name),
                value: string(value),
            }),
            Self::MaximumPacketSize(v) => Property::MaximumPacketSize(v),
            Self::WildcardSubscriptionAvailable(v) => Property::WildcardSubscriptionAvailable(v),
            Self::SubscriptionIdentifierAvailable(v) => {
                Property::SubscriptionIdentifierAvailable(v)
            }
            Self::SharedSubscriptionAvailable(v) => Property::SharedSubscriptionAvailable(v),
        }
    }
}

/// Reads a property block (length, then properties) from a packet in a shared buffer and
/// hands each property to `apply`, its strings and binary data slices of that buffer. The
/// block is checked by [`read_property_block`].
pub(crate) fn read_properties(
    r: &mut Reader,
    context: Context,
    mut apply: impl FnMut(Property) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let len = r.varint()? as usize;
    if len == 0 {
        return Ok(());
    }
    let block = r.take(len)?;
    read_property_block(&block, context, |p| {
        apply(p.into_owned(|s| block.slice_ref(s)))
    })
}

/// Reads a property block (length, then properties) from a borrowed packet, hands each
/// property to `apply` and returns the block (without its length). The block is checked by
/// [`read_property_block`].
#[inline]
pub(crate) fn read_properties_slice<'a>(
    r: &mut SliceReader<'a>,
    context: Context,
    apply: impl FnMut(PropertyRef<'a>) -> Result<(), DecodeError>,
) -> Result<&'a [u8], DecodeError> {
    let len = r.varint()? as usize;
    if len == 0 {
        return Ok(&[]);
    }
    let block = r.take(len)?;
    read_property_block(block, context, apply)?;
    Ok(block)
}

/// Walks the properties of a block (without its length prefix) and hands each to `apply`,
/// after checking that it is known, allowed in `context`, not a forbidden repeat, and that its
/// value is valid. Both decoders check properties here.
pub(crate) fn read_property_block<'a>(
    block: &'a [u8],
    context: Context,
    mut apply: impl FnMut(PropertyRef<'a>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut block = SliceReader::new(block);
    let mut seen: u64 = 0;
    while !block.is_empty() {
        let raw = block.varint()?;
        let id = u8::try_from(raw)
            .ok()
            .and_then(PropertyId::from_u8)
            .ok_or(DecodeError::UnknownProperty(raw.min(255) as u8))?;
        if !id.is_allowed(context) {
            return Err(DecodeError::PropertyNotAllowed {
                packet_type: context.packet_type(),
                property: id,
            });
        }
        let bit = 1u64 << (id as u8);
        if seen & bit != 0 && !(id.may_repeat() && repeat_allowed(id, context)) {
            return Err(DecodeError::DuplicateProperty(id));
        }
        seen |= bit;
        apply(PropertyRef::read(id, &mut block)?)?;
    }
    Ok(())
}

/// Subscription Identifier repeats only in PUBLISH (one per matching subscription); SUBSCRIBE
/// carries at most one.
fn repeat_allowed(id: PropertyId, context: Context) -> bool {
    id != PropertyId::SubscriptionIdentifier || context == Context::Packet(PacketType::Publish)
}

/// Writes properties, or only counts their bytes. Each property struct describes itself once
/// through this type, and the same description serves for `encoded_len` and `encode`.
pub(crate) struct PropertyWriter<'a> {
    buf: Option<&'a mut BytesMut>,
    len: usize,
    error: Option<EncodeError>,
}

impl<'a> PropertyWriter<'a> {
    pub(crate) fn counter() -> Self {
        Self {
            buf: None,
            len: 0,
            error: None,
        }
    }

    pub(crate) fn writer(buf: &'a mut BytesMut) -> Self {
        Self {
            buf: Some(buf),
            len: 0,
            error: None,
        }
    }

    fn id(&mut self, id: PropertyId) {
        self.len += 1;
        if let Some(buf) = self.buf.as_deref_mut() {
            buf.put_u8(id as u8);
        }
    }

    pub(crate) fn byte(&mut self, id: PropertyId, value: u8) {
        self.id(id);
        self.len += 1;
        if let Some(buf) = self.buf.as_deref_mut() {
            buf.put_u8(value);
        }
    }

    pub(crate) fn opt_bool(&mut self, id: PropertyId, value: Option<bool>) {
        if let Some(v) = value {
            self.byte(id, u8::from(v));
        }
    }

    pub(crate) fn opt_u16(&mut self, id: PropertyId, value: Option<u16>) {
        if let Some(v) = value {
            self.id(id);
            self.len += 2;
            if let Some(buf) = self.buf.as_deref_mut() {
                buf.put_u16(v);
            }
        }
    }

    pub(crate) fn opt_u32(&mut self, id: PropertyId, value: Option<u32>) {
        if let Some(v) = value {
            self.id(id);
            self.len += 4;
            if let Some(buf) = self.buf.as_deref_mut() {
                buf.put_u32(v);
            }
        }
    }

    pub(crate) fn varint(&mut self, id: PropertyId, value: u32) {
        self.id(id);
        self.len += wire::varint_len(value);
        if let Some(buf) = self.buf.as_deref_mut() {
            wire::put_varint(buf, value);
        }
    }

    pub(crate) fn binary(&mut self, id: PropertyId, value: &[u8]) {
        if value.len() > FIELD_MAX {
            self.error = Some(EncodeError::FieldTooLong { len: value.len() });
            return;
        }
        self.id(id);
        self.len += 2 + value.len();
        if let Some(buf) = self.buf.as_deref_mut() {
            wire::put_field(buf, value);
        }
    }

    pub(crate) fn opt_binary(&mut self, id: PropertyId, value: Option<&Bytes>) {
        if let Some(v) = value {
            self.binary(id, v);
        }
    }

    pub(crate) fn opt_string(&mut self, id: PropertyId, value: Option<&MqttString>) {
        if let Some(v) = value {
            self.binary(id, v.as_bytes());
        }
    }

    pub(crate) fn user_properties(&mut self, props: &[UserProperty]) {
        for p in props {
            self.id(PropertyId::UserProperty);
            self.len += 4 + p.name.len() + p.value.len();
            if let Some(buf) = self.buf.as_deref_mut() {
                wire::put_field(buf, p.name.as_bytes());
                wire::put_field(buf, p.value.as_bytes());
            }
        }
    }

    /// Records that a property holds a value that cannot be sent.
    pub(crate) fn invalid(&mut self, id: PropertyId) {
        self.error = Some(EncodeError::InvalidPropertyValue(id));
    }

    /// The counted length, or the first error met while counting.
    pub(crate) fn finish(self) -> Result<usize, EncodeError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.len),
        }
    }
}

/// What every property struct implements: describe itself to a writer, absorb a decoded
/// property. The block-level framing (length prefix, validity checks) is shared.
pub(crate) trait PropertySet: Default {
    /// The context whose table governs this set.
    const CONTEXT: Context;

    /// Writes (or counts) every property that is set.
    fn write(&self, w: &mut PropertyWriter<'_>);

    /// Stores one decoded property; the caller has already checked that it is allowed here.
    fn apply(&mut self, property: Property) -> Result<(), DecodeError>;

    /// Byte length of the properties, without the length prefix.
    fn body_len(&self) -> Result<usize, EncodeError> {
        let mut w = PropertyWriter::counter();
        self.write(&mut w);
        let len = w.finish()?;
        if len > VARINT_MAX as usize {
            return Err(EncodeError::PacketTooLarge {
                remaining_length: len,
            });
        }
        Ok(len)
    }

    /// Writes the length prefix and the properties. `body_len` is the value from
    /// [`PropertySet::body_len`].
    fn encode(&self, body_len: usize, buf: &mut BytesMut) {
        wire::put_varint(buf, body_len as u32);
        self.write(&mut PropertyWriter::writer(buf));
    }

    /// Reads a property block into a fresh set.
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut set = Self::default();
        read_properties(r, Self::CONTEXT, |p| set.apply(p))?;
        Ok(set)
    }
}

/// The error for a property that reached a set that does not hold it. The tables make this
/// unreachable; it exists so that `apply` never panics.
pub(crate) fn not_allowed<S, T, B, U>(
    context: Context,
    property: &PropertyValue<S, T, B, U>,
) -> DecodeError {
    DecodeError::PropertyNotAllowed {
        packet_type: context.packet_type(),
        property: property.id(),
    }
}

impl<S, T, B, U> PropertyValue<S, T, B, U> {
    /// The identifier of this value.
    pub(crate) fn id(&self) -> PropertyId {
        use PropertyId as Id;
        match self {
            Self::PayloadFormatIndicator(_) => Id::PayloadFormatIndicator,
            Self::MessageExpiryInterval(_) => Id::MessageExpiryInterval,
            Self::ContentType(_) => Id::ContentType,
            Self::ResponseTopic(_) => Id::ResponseTopic,
            Self::CorrelationData(_) => Id::CorrelationData,
            Self::SubscriptionIdentifier(_) => Id::SubscriptionIdentifier,
            Self::SessionExpiryInterval(_) => Id::SessionExpiryInterval,
            Self::AssignedClientIdentifier(_) => Id::AssignedClientIdentifier,
            Self::ServerKeepAlive(_) => Id::ServerKeepAlive,
            Self::AuthenticationMethod(_) => Id::AuthenticationMethod,
            Self::AuthenticationData(_) => Id::AuthenticationData,
            Self::RequestProblemInformation(_) => Id::RequestProblemInformation,
            Self::WillDelayInterval(_) => Id::WillDelayInterval,
            Self::RequestResponseInformation(_) => Id::RequestResponseInformation,
            Self::ResponseInformation(_) => Id::ResponseInformation,
            Self::ServerReference(_) => Id::ServerReference,
            Self::ReasonString(_) => Id::ReasonString,
            Self::ReceiveMaximum(_) => Id::ReceiveMaximum,
            Self::TopicAliasMaximum(_) => Id::TopicAliasMaximum,
            Self::TopicAlias(_) => Id::TopicAlias,
            Self::MaximumQoS(_) => Id::MaximumQoS,
            Self::RetainAvailable(_) => Id::RetainAvailable,
            Self::UserProperty(_) => Id::UserProperty,
            Self::MaximumPacketSize(_) => Id::MaximumPacketSize,
            Self::WildcardSubscriptionAvailable(_) => Id::WildcardSubscriptionAvailable,
            Self::SubscriptionIdentifierAvailable(_) => Id::SubscriptionIdentifierAvailable,
            Self::SharedSubscriptionAvailable(_) => Id::SharedSubscriptionAvailable,
        }
    }
}

/// The properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK: a Reason String and
/// User Properties.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct AckProperties {
    /// Human-readable diagnostics; not to be parsed by the receiver.
    pub reason_string: Option<MqttString>,
    /// User properties, in order.
    pub user_properties: Vec<UserProperty>,
}

impl AckProperties {
    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }

    pub(crate) fn write(&self, w: &mut PropertyWriter<'_>) {
        w.opt_string(PropertyId::ReasonString, self.reason_string.as_ref());
        w.user_properties(&self.user_properties);
    }

    pub(crate) fn apply(&mut self, context: Context, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::ReasonString(s) => self.reason_string = Some(s),
            Property::UserProperty(u) => self.user_properties.push(u),
            other => return Err(not_allowed(context, &other)),
        }
        Ok(())
    }

    pub(crate) fn body_len(&self) -> Result<usize, EncodeError> {
        let mut w = PropertyWriter::counter();
        self.write(&mut w);
        w.finish()
    }

    pub(crate) fn decode(r: &mut Reader, context: Context) -> Result<Self, DecodeError> {
        let mut set = Self::default();
        read_properties(r, context, |p| set.apply(context, p))?;
        Ok(set)
    }
}
