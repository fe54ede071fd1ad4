//! The primitive data representations of MQTT (section 1.5 of both standards): big-endian
//! integers, the Variable Byte Integer, length-prefixed UTF-8 strings and binary data.
//!
//! [`Reader`] walks the body of one whole packet that has already been split off the stream, so
//! running out of bytes here means the packet lied about its length: a malformed packet, not a
//! request for more input.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::packet_id::PacketId;
use crate::string::{check_utf8, MqttString};

/// The largest value a Variable Byte Integer can carry: four bytes of seven bits.
pub const VARINT_MAX: u32 = 268_435_455;

/// The largest string or binary field: its length is a two-byte integer.
pub(crate) const FIELD_MAX: usize = u16::MAX as usize;

/// Cursor over the body of one complete packet, borrowed from the input.
///
/// This is where the primitive fields are read and checked, for both decoders: the borrowed
/// one ([`Decoder::decode_slice`](crate::Decoder::decode_slice)) walks the input with it
/// directly, and [`Reader`] runs it over its shared buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SliceReader<'a> {
    bytes: &'a [u8],
}

impl<'a> SliceReader<'a> {
    #[inline(always)]
    pub(crate) const fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    #[inline(always)]
    pub(crate) const fn remaining(&self) -> usize {
        self.bytes.len()
    }

    #[inline(always)]
    pub(crate) const fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Consumes a property block of length zero (the single byte 0) if one comes next. The
    /// common case of a packet without properties then skips the general property reader.
    #[inline(always)]
    pub(crate) fn skip_empty_properties(&mut self) -> bool {
        match self.bytes.split_first() {
            Some((0, rest)) => {
                self.bytes = rest;
                true
            }
            _ => false,
        }
    }

    #[inline(always)]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&value, rest) = self.bytes.split_first().ok_or(DecodeError::UnexpectedEnd)?;
        self.bytes = rest;
        Ok(value)
    }

    #[inline(always)]
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let (value, rest) = self
            .bytes
            .split_first_chunk::<2>()
            .ok_or(DecodeError::UnexpectedEnd)?;
        self.bytes = rest;
        Ok(u16::from_be_bytes(*value))
    }

    #[inline(always)]
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let (value, rest) = self
            .bytes
            .split_first_chunk::<4>()
            .ok_or(DecodeError::UnexpectedEnd)?;
        self.bytes = rest;
        Ok(u32::from_be_bytes(*value))
    }

    /// A packet identifier, which is never zero ([MQTT-2.3.1-1], [MQTT-2.2.1-3]).
    #[inline(always)]
    pub(crate) fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        PacketId::new(self.u16()?).ok_or(DecodeError::ZeroPacketId)
    }

    /// A Variable Byte Integer inside a packet body; at most four bytes ([MQTT-1.5.5-1]).
    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        match decode_varint(self.bytes)? {
            Some((value, len)) => {
                self.bytes = &self.bytes[len..];
                Ok(value)
            }
            None => Err(DecodeError::UnexpectedEnd),
        }
    }

    /// Exactly `n` bytes.
    #[inline(always)]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::UnexpectedEnd);
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    /// Two-byte length, then that many bytes of binary data (section 1.5.6 in 5.0).
    #[inline(always)]
    pub(crate) fn binary(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u16()? as usize;
        self.take(len)
    }

    /// Two-byte length, then that many bytes of well-formed UTF-8 without U+0000.
    #[inline]
    pub(crate) fn string(&mut self) -> Result<&'a str, DecodeError> {
        Ok(check_utf8(self.binary()?)?)
    }

    /// Everything left in the packet: used for payloads.
    #[inline(always)]
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.bytes)
    }
}

/// Cursor over the body of one complete packet, in a shared buffer: the fields it hands out
/// (strings, binary data, payloads) are slices of that buffer, not copies. The fixed-size
/// fields are read and checked by [`SliceReader`].
#[derive(Debug)]
pub(crate) struct Reader {
    bytes: Bytes,
}

impl Reader {
    pub(crate) fn new(bytes: Bytes) -> Self {
        Self { bytes }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Reads with a [`SliceReader`] over the rest of the buffer and consumes what it read.
    #[inline(always)]
    fn read<T>(
        &mut self,
        f: impl FnOnce(&mut SliceReader<'_>) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let mut slice = SliceReader::new(&self.bytes);
        let value = f(&mut slice)?;
        let used = self.bytes.len() - slice.remaining();
        self.bytes.advance(used);
        Ok(value)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.read(|r| r.u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.read(|r| r.u16())
    }

    /// A packet identifier, which is never zero ([MQTT-2.3.1-1], [MQTT-2.2.1-3]).
    pub(crate) fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        self.read(|r| r.packet_id())
    }

    /// A Variable Byte Integer inside a packet body; at most four bytes ([MQTT-1.5.5-1]).
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        self.read(|r| r.varint())
    }

    /// Exactly `n` bytes, shared with the input rather than copied.
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::UnexpectedEnd);
        }
        Ok(self.bytes.split_to(n))
    }

    /// Two-byte length, then that many bytes of binary data (section 1.5.6 in 5.0).
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()? as usize;
        self.take(len)
    }

    /// Two-byte length, then that many bytes of well-formed UTF-8 without U+0000.
    pub(crate) fn string(&mut self) -> Result<MqttString, DecodeError> {
        MqttString::from_bytes(self.binary()?)
    }

    /// Everything left in the packet: used for payloads.
    pub(crate) fn rest(&mut self) -> Bytes {
        core::mem::take(&mut self.bytes)
    }

    /// Succeeds only when the whole body has been consumed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

/// Decodes a Variable Byte Integer from the front of `bytes`.
///
/// `Ok(None)`: the bytes end before the integer does. An integer whose fourth byte still has the
/// continuation bit set is malformed ([MQTT-1.5.5-1] in 5.0; section 2.2.3 in 3.1.1).
#[inline]
pub(crate) fn decode_varint(bytes: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(4) {
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 4 {
        Err(DecodeError::MalformedVariableByteInteger)
    } else {
        Ok(None)
    }
}

/// How many bytes `value` takes as a Variable Byte Integer.
#[inline]
pub(crate) const fn varint_len(value: u32) -> usize {
    if value < 128 {
        1
    } else if value < 16_384 {
        2
    } else if value < 2_097_152 {
        3
    } else {
        4
    }
}

/// Writes `value` (at most [`VARINT_MAX`]) as a Variable Byte Integer.
#[inline]
pub(crate) fn put_varint(buf: &mut BytesMut, mut value: u32) {
    debug_assert!(value <= VARINT_MAX);
    if value < 128 {
        // One byte: every small packet.
        buf.put_u8(value as u8);
        return;
    }
    loop {
        let mut byte = (value & 0x7f) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

/// Size of a length-prefixed field of `len` bytes, or an error when it cannot be encoded.
#[inline]
pub(crate) fn field_len(len: usize) -> Result<usize, EncodeError> {
    if len > FIELD_MAX {
        Err(EncodeError::FieldTooLong { len })
    } else {
        Ok(2 + len)
    }
}

/// Writes a two-byte length and the bytes. The length was checked by [`field_len`].
#[inline]
pub(crate) fn put_field(buf: &mut BytesMut, bytes: &[u8]) {
    debug_assert!(bytes.len() <= FIELD_MAX);
    buf.put_u16(bytes.len() as u16);
    buf.put_slice(bytes);
}
