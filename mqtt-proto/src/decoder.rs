//! [`Decoder`]: splits whole packets off the front of a byte stream.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::packet::{Packet, PacketRef, Publish, PublishRef};
use crate::packet_type::PacketType;
use crate::version::ProtocolVersion;
use crate::wire::{self, Reader, VARINT_MAX};

/// The largest packet the protocol can express: a one-byte type, a four-byte Remaining Length
/// and 268,435,455 bytes of body.
pub const PROTOCOL_MAX_PACKET_SIZE: u32 = 1 + 4 + VARINT_MAX;

/// The fixed header of a packet (section 2.1): what a reader needs to know before the body has
/// arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedHeader {
    /// The packet type.
    pub packet_type: PacketType,
    /// The four flag bits.
    pub flags: u8,
    /// The Remaining Length: bytes after the fixed header.
    pub remaining_length: u32,
    /// Bytes of the fixed header itself (2 to 5).
    pub header_length: u8,
}

impl FixedHeader {
    /// Size of the whole packet.
    pub const fn packet_size(&self) -> usize {
        self.header_length as usize + self.remaining_length as usize
    }
}

/// A streaming packet decoder for one connection.
///
/// [`Decoder::decode`] takes whole packets off the front of the caller's buffer and leaves any
/// partial packet in place, so the caller can append the next read and call again. Topic
/// names, payloads, strings and binary properties of a decoded packet are slices of the
/// caller's buffer, not copies: the buffer's storage is shared until the packet is dropped.
///
/// The Maximum Packet Size is checked against the fixed header, as soon as its first bytes
/// have arrived, so an oversized packet is refused before its body is buffered.
///
/// ```
/// use bytes::BytesMut;
/// use mqtt_streaming_proto::{Decoder, Packet, ProtocolVersion};
///
/// let decoder = Decoder::new(ProtocolVersion::V3_1_1).with_max_packet_size(1024);
/// // A PUBLISH to "a/b" split across two reads, followed by a PINGREQ.
/// let mut buf = BytesMut::from(&[0x30, 0x07, 0x00, 0x03, b'a', b'/'][..]);
/// assert_eq!(decoder.decode(&mut buf).unwrap(), None); // need more, nothing consumed
/// assert_eq!(buf.len(), 6);
/// buf.extend_from_slice(&[b'b', b'h', b'i', 0xC0, 0x00]);
/// let Some(Packet::Publish(publish)) = decoder.decode(&mut buf).unwrap() else { panic!() };
/// assert_eq!(publish.topic.as_str(), "a/b");
/// assert_eq!(&publish.payload[..], b"hi");
/// assert_eq!(decoder.decode(&mut buf).unwrap(), Some(Packet::PingReq));
/// assert!(buf.is_empty());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoder {
    version: ProtocolVersion,
    max_packet_size: u32,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(ProtocolVersion::default())
    }
}

impl Decoder {
    /// A decoder for `version` with no limit beyond the protocol's own.
    ///
    /// A server decodes the first packet (CONNECT, which carries its own version) with any
    /// version, then switches with [`Decoder::set_version`].
    pub const fn new(version: ProtocolVersion) -> Self {
        Self {
            version,
            max_packet_size: PROTOCOL_MAX_PACKET_SIZE,
        }
    }

    /// The same decoder with a Maximum Packet Size (the whole packet, fixed header included).
    pub const fn with_max_packet_size(mut self, max: u32) -> Self {
        self.max_packet_size = max;
        self
    }

    /// Changes the protocol version, once CONNECT or CONNACK has fixed it.
    pub fn set_version(&mut self, version: ProtocolVersion) {
        self.version = version;
    }

    /// Changes the Maximum Packet Size.
    pub fn set_max_packet_size(&mut self, max: u32) {
        self.max_packet_size = max;
    }

    /// The protocol version packets are decoded with.
    pub const fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The Maximum Packet Size in force.
    pub const fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    /// Reads the fixed header at the front of `bytes`, checking the packet type, its flags and
    /// the size limit. `Ok(None)`: not enough bytes for the header yet.
    #[inline]
    pub fn peek_header(&self, bytes: &[u8]) -> Result<Option<FixedHeader>, DecodeError> {
        let Some(&first) = bytes.first() else {
            return Ok(None);
        };
        let type_bits = first >> 4;
        let flags = first & 0x0f;
        let packet_type = match PacketType::from_u8(type_bits) {
            Some(PacketType::Auth) if !self.version.is_v5() => None,
            other => other,
        }
        .ok_or(DecodeError::ReservedPacketType(type_bits))?;
        if packet_type == PacketType::Publish {
            // QoS 3 can be refused before the body arrives ([MQTT-3.3.1-4]).
            if flags & 0b0110 == 0b0110 {
                return Err(DecodeError::InvalidQoS(3));
            }
        } else {
            crate::packet::check_flags(packet_type, flags)?;
        }
        let Some((remaining_length, len)) = wire::decode_varint(&bytes[1..])? else {
            return Ok(None);
        };
        let header = FixedHeader {
            packet_type,
            flags,
            remaining_length,
            header_length: 1 + len as u8,
        };
        if header.packet_size() > self.max_packet_size as usize {
            return Err(DecodeError::PacketTooLarge {
                size: header.packet_size(),
                max: self.max_packet_size,
            });
        }
        Ok(Some(header))
    }

    /// Takes the next whole packet off the front of `buf`.
    ///
    /// `Ok(None)`: `buf` holds only part of a packet; nothing was consumed. `Err`: the stream
    /// is not valid MQTT and the connection must be closed; how much was consumed is then
    /// unspecified.
    #[inline]
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(header) = self.peek_header(buf)? else {
            return Ok(None);
        };
        let size = header.packet_size();
        if buf.len() < size {
            return Ok(None);
        }
        let mut body = buf.split_to(size).freeze();
        body.advance(header.header_length as usize);
        if header.packet_type == PacketType::Publish {
            // The hot path, decoded straight into the caller's slot: the same as
            // `Packet::decode_body`, without the dispatch and the copies of the large packet
            // between its layers.
            return Publish::decode_into(header.flags, body, self.version, |p| {
                Some(Packet::Publish(p))
            });
        }
        Packet::decode_body(
            header.packet_type,
            header.flags,
            Reader::new(body),
            self.version,
        )
        .map(Some)
    }

    /// Decodes the packet at the front of `input` without taking ownership of anything: a
    /// PUBLISH comes back borrowed from `input` ([`PublishRef`]: no allocation, no reference
    /// count, no copy), every other packet as an owned [`Packet`] built from a copy of its
    /// bytes (they are rare on a hot path). The second value is the size of the packet: the
    /// caller advances its input by it.
    ///
    /// `Ok(None)`: `input` holds only part of a packet. The checks are exactly those of
    /// [`Decoder::decode`], errors included: for the same bytes both return the same error,
    /// or packets that are equal once the borrowed one is made owned
    /// ([`PacketRef::to_owned`]).
    ///
    /// Use [`Decoder::decode`] when packets must outlive the read buffer (queued, retained,
    /// sent on to another task); use this when each packet is handled before the buffer is
    /// reused, as in a broker's or a client's receive loop.
    ///
    /// ```
    /// use mqtt_streaming_proto::{Decoder, PacketRef, ProtocolVersion};
    ///
    /// let decoder = Decoder::new(ProtocolVersion::V3_1_1);
    /// // A PUBLISH to "a/b" with payload "hi", then a PINGREQ, then half a packet.
    /// let input = [0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i', 0xC0, 0x00, 0x30];
    /// let mut rest = &input[..];
    /// let mut topics = Vec::new();
    /// while let Some((packet, used)) = decoder.decode_slice(rest)? {
    ///     match packet {
    ///         PacketRef::Publish(publish) => topics.push(publish.topic),
    ///         PacketRef::Other(other) => assert_eq!(other, mqtt_streaming_proto::Packet::PingReq),
    ///     }
    ///     rest = &rest[used..];
    /// }
    /// assert_eq!(topics, ["a/b"]);
    /// assert_eq!(rest, [0x30]); // the partial packet, for the next read to complete
    /// # Ok::<(), mqtt_streaming_proto::DecodeError>(())
    /// ```
    #[inline]
    pub fn decode_slice<'a>(
        &self,
        input: &'a [u8],
    ) -> Result<Option<(PacketRef<'a>, usize)>, DecodeError> {
        let Some(header) = self.peek_header(input)? else {
            return Ok(None);
        };
        let size = header.packet_size();
        let Some(packet) = input.get(..size) else {
            return Ok(None);
        };
        let body = &packet[header.header_length as usize..];
        let packet = if header.packet_type == PacketType::Publish {
            PacketRef::Publish(PublishRef::parse(header.flags, body, self.version, |_| {
                Ok(())
            })?)
        } else {
            PacketRef::Other(self.decode_other(header, body)?)
        };
        Ok(Some((packet, size)))
    }

    /// A packet other than PUBLISH for [`Decoder::decode_slice`]: the owned decoder's code,
    /// over a copy of the body.
    #[inline(never)]
    fn decode_other(&self, header: FixedHeader, body: &[u8]) -> Result<Packet, DecodeError> {
        let body = Reader::new(Bytes::copy_from_slice(body));
        Packet::decode_body(header.packet_type, header.flags, body, self.version)
    }
}
