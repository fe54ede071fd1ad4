//! Every MQTT Control Packet, one module per packet type, and [`Packet`], the sum of them.
//!
//! Each packet module holds the packet's struct, its property struct (MQTT 5), its body decoder
//! and its body encoder. The fixed header (first byte and Remaining Length) is handled here, for
//! all of them.

use bytes::{BufMut, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::packet_type::PacketType;
use crate::version::ProtocolVersion;
use crate::wire::{self, Reader, VARINT_MAX};

pub(crate) mod auth;
pub(crate) mod connack;
pub(crate) mod connect;
pub(crate) mod disconnect;
pub(crate) mod pub_response;
pub(crate) mod publish;
pub(crate) mod suback;
pub(crate) mod subscribe;
pub(crate) mod unsuback;
pub(crate) mod unsubscribe;

pub use auth::{Auth, AuthProperties};
pub use connack::{ConnAck, ConnAckProperties};
pub use connect::{Connect, ConnectProperties, Will, WillProperties};
pub use disconnect::{Disconnect, DisconnectProperties};
pub use pub_response::PubResponse;
pub use publish::{Publish, PublishProperties, PublishRef};
pub use suback::SubAck;
pub use subscribe::{
    RetainHandling, Subscribe, SubscribeProperties, Subscription, SubscriptionOptions,
};
pub use unsuback::UnsubAck;
pub use unsubscribe::{Unsubscribe, UnsubscribeProperties};

/// Any MQTT Control Packet.
///
/// CONNECT and CONNACK are boxed: they are large and rare, and keeping them out of line keeps
/// this enum (and every PUBLISH moved through it) small.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Packet {
    /// CONNECT (client to server).
    Connect(alloc::boxed::Box<Connect>),
    /// CONNACK (server to client).
    ConnAck(alloc::boxed::Box<ConnAck>),
    /// PUBLISH (both directions).
    Publish(Publish),
    /// PUBACK (both directions).
    PubAck(PubResponse),
    /// PUBREC (both directions).
    PubRec(PubResponse),
    /// PUBREL (both directions).
    PubRel(PubResponse),
    /// PUBCOMP (both directions).
    PubComp(PubResponse),
    /// SUBSCRIBE (client to server).
    Subscribe(Subscribe),
    /// SUBACK (server to client).
    SubAck(SubAck),
    /// UNSUBSCRIBE (client to server).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (server to client).
    UnsubAck(UnsubAck),
    /// PINGREQ (client to server).
    PingReq,
    /// PINGRESP (server to client).
    PingResp,
    /// DISCONNECT (client to server; both directions in MQTT 5).
    Disconnect(Disconnect),
    /// AUTH (both directions, MQTT 5 only).
    Auth(Auth),
}

/// A packet decoded by [`Decoder::decode_slice`](crate::Decoder::decode_slice): a PUBLISH
/// borrowed from the input, or any other packet, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PacketRef<'a> {
    /// A PUBLISH whose topic, payload and properties are slices of the input.
    Publish(PublishRef<'a>),
    /// Any other packet (never [`Packet::Publish`]), built from a copy of its bytes.
    Other(Packet),
}

impl PacketRef<'_> {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Publish(_) => PacketType::Publish,
            Self::Other(p) => p.packet_type(),
        }
    }

    /// The owned packet, equal to what [`Decoder::decode`](crate::Decoder::decode) returns for
    /// the same bytes. A PUBLISH is copied ([`PublishRef::to_owned`]).
    pub fn to_owned(&self) -> Packet {
        match self {
            Self::Publish(p) => Packet::Publish(p.to_owned()),
            Self::Other(p) => p.clone(),
        }
    }

    /// [`PacketRef::to_owned`], consuming the borrowed packet (no copy for the other types).
    pub fn into_packet(self) -> Packet {
        match self {
            Self::Publish(p) => Packet::Publish(p.to_owned()),
            Self::Other(p) => p,
        }
    }
}

/// Byte counts worked out while validating a packet for encoding, reused while writing it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sizes {
    /// The Remaining Length.
    pub(crate) remaining: usize,
    /// Length of the packet's property block (without its prefix).
    pub(crate) properties: usize,
    /// Length of a second property block (the will properties of CONNECT).
    pub(crate) will_properties: usize,
}

impl Sizes {
    #[inline(always)]
    pub(crate) fn total(&self) -> usize {
        1 + wire::varint_len(self.remaining as u32) + self.remaining
    }
}

/// Writes the fixed header: the type and flags byte, then the Remaining Length.
#[inline(always)]
pub(crate) fn put_fixed_header(
    buf: &mut BytesMut,
    packet_type: PacketType,
    flags: u8,
    remaining: usize,
) {
    buf.put_u8(packet_type.as_u8() << 4 | flags);
    wire::put_varint(buf, remaining as u32);
}

/// Rejects remaining lengths the Variable Byte Integer cannot express.
#[inline(always)]
pub(crate) fn check_remaining(remaining: usize) -> Result<usize, EncodeError> {
    if remaining > VARINT_MAX as usize {
        Err(EncodeError::PacketTooLarge {
            remaining_length: remaining,
        })
    } else {
        Ok(remaining)
    }
}

/// Checks the fixed-header flags of every type but PUBLISH.
pub(crate) fn check_flags(packet_type: PacketType, flags: u8) -> Result<(), DecodeError> {
    match packet_type.required_flags() {
        Some(required) if required != flags => {
            Err(DecodeError::InvalidFlags { packet_type, flags })
        }
        _ => Ok(()),
    }
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::ConnAck(_) => PacketType::ConnAck,
            Self::Publish(_) => PacketType::Publish,
            Self::PubAck(_) => PacketType::PubAck,
            Self::PubRec(_) => PacketType::PubRec,
            Self::PubRel(_) => PacketType::PubRel,
            Self::PubComp(_) => PacketType::PubComp,
            Self::Subscribe(_) => PacketType::Subscribe,
            Self::SubAck(_) => PacketType::SubAck,
            Self::Unsubscribe(_) => PacketType::Unsubscribe,
            Self::UnsubAck(_) => PacketType::UnsubAck,
            Self::PingReq => PacketType::PingReq,
            Self::PingResp => PacketType::PingResp,
            Self::Disconnect(_) => PacketType::Disconnect,
            Self::Auth(_) => PacketType::Auth,
        }
    }

    /// Decodes the body of a packet whose fixed header has been read.
    pub(crate) fn decode_body(
        packet_type: PacketType,
        flags: u8,
        body: Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        if packet_type != PacketType::Publish {
            check_flags(packet_type, flags)?;
        }
        Ok(match packet_type {
            PacketType::Connect => Self::Connect(alloc::boxed::Box::new(Connect::decode(body)?)),
            PacketType::ConnAck => {
                Self::ConnAck(alloc::boxed::Box::new(ConnAck::decode(body, version)?))
            }
            PacketType::Publish => Self::Publish(Publish::decode(flags, body, version)?),
            PacketType::PubAck => Self::PubAck(PubResponse::decode(packet_type, body, version)?),
            PacketType::PubRec => Self::PubRec(PubResponse::decode(packet_type, body, version)?),
            PacketType::PubRel => Self::PubRel(PubResponse::decode(packet_type, body, version)?),
            PacketType::PubComp => Self::PubComp(PubResponse::decode(packet_type, body, version)?),
            PacketType::Subscribe => Self::Subscribe(Subscribe::decode(body, version)?),
            PacketType::SubAck => Self::SubAck(SubAck::decode(body, version)?),
            PacketType::Unsubscribe => Self::Unsubscribe(Unsubscribe::decode(body, version)?),
            PacketType::UnsubAck => Self::UnsubAck(UnsubAck::decode(body, version)?),
            PacketType::PingReq => {
                body.finish()?;
                Self::PingReq
            }
            PacketType::PingResp => {
                body.finish()?;
                Self::PingResp
            }
            PacketType::Disconnect => Self::Disconnect(Disconnect::decode(body, version)?),
            PacketType::Auth => Self::Auth(Auth::decode(body)?),
        })
    }

    /// Validates the packet for `version` and works out its sizes.
    fn sizes(&self, version: ProtocolVersion) -> Result<Sizes, EncodeError> {
        match self {
            Self::Connect(p) => p.sizes(),
            Self::ConnAck(p) => p.sizes(version),
            Self::Publish(p) => p.sizes(version),
            Self::PubAck(p) => p.sizes(PacketType::PubAck, version),
            Self::PubRec(p) => p.sizes(PacketType::PubRec, version),
            Self::PubRel(p) => p.sizes(PacketType::PubRel, version),
            Self::PubComp(p) => p.sizes(PacketType::PubComp, version),
            Self::Subscribe(p) => p.sizes(version),
            Self::SubAck(p) => p.sizes(version),
            Self::Unsubscribe(p) => p.sizes(version),
            Self::UnsubAck(p) => p.sizes(version),
            Self::PingReq | Self::PingResp => Ok(Sizes::default()),
            Self::Disconnect(p) => p.sizes(version),
            Self::Auth(p) => p.sizes(version),
        }
    }

    /// The exact number of bytes [`Packet::encode`] appends for `version`.
    ///
    /// For CONNECT the packet's own protocol version is used.
    #[inline]
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        match self {
            // PUBLISH, the hot path, without the general dispatch.
            Self::Publish(p) => Ok(p.sizes(version)?.total()),
            other => Ok(other.sizes(version)?.total()),
        }
    }

    /// Appends the packet, encoded for `version`, to `buf`. On error nothing is appended.
    ///
    /// For CONNECT the packet's own protocol version is used. Properties and reason codes are
    /// MQTT 5 only: encoding for 3.1.x leaves properties out, and sends reason codes as the
    /// nearest 3.1.1 return code where the packet has one (CONNACK, SUBACK).
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use mqtt_streaming_proto::{Packet, ProtocolVersion};
    /// let mut buf = BytesMut::new();
    /// Packet::PingReq.encode(ProtocolVersion::V5, &mut buf).unwrap();
    /// assert_eq!(&buf[..], [0xC0, 0x00]);
    /// ```
    #[inline]
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            // PUBLISH, the hot path: one dispatch, its sizes and its writer inlined here.
            Self::Publish(p) => p.encode_packet(version, buf),
            other => other.encode_other(version, buf),
        }
    }

    /// [`Packet::encode`] for every type but PUBLISH: validate and size, reserve, write.
    #[inline(never)]
    fn encode_other(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let sizes = self.sizes(version)?;
        buf.reserve(sizes.total());
        match self {
            Self::Connect(p) => p.write(&sizes, buf),
            Self::ConnAck(p) => p.write(version, &sizes, buf),
            Self::Publish(p) => {
                p.write_header(version, &sizes, buf);
                buf.put_slice(&p.payload);
            }
            Self::PubAck(p) => p.write(PacketType::PubAck, version, &sizes, buf),
            Self::PubRec(p) => p.write(PacketType::PubRec, version, &sizes, buf),
            Self::PubRel(p) => p.write(PacketType::PubRel, version, &sizes, buf),
            Self::PubComp(p) => p.write(PacketType::PubComp, version, &sizes, buf),
            Self::Subscribe(p) => p.write(version, &sizes, buf),
            Self::SubAck(p) => p.write(version, &sizes, buf),
            Self::Unsubscribe(p) => p.write(version, &sizes, buf),
            Self::UnsubAck(p) => p.write(version, &sizes, buf),
            Self::PingReq => put_fixed_header(buf, PacketType::PingReq, 0, 0),
            Self::PingResp => put_fixed_header(buf, PacketType::PingResp, 0, 0),
            Self::Disconnect(p) => p.write(version, &sizes, buf),
            Self::Auth(p) => p.write(&sizes, buf),
        }
        Ok(())
    }
}

macro_rules! impl_from {
    ($($variant:ident($ty:ty)),*) => {$(
        impl From<$ty> for Packet {
            fn from(p: $ty) -> Self {
                Self::$variant(p.into())
            }
        }
    )*};
}

impl_from!(
    Connect(Connect),
    ConnAck(ConnAck),
    Publish(Publish),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    Disconnect(Disconnect),
    Auth(Auth)
);
