//! The transmit buffer: packets are encoded into it as soon as they are decided, and handed to
//! the caller's buffer by `poll_transmit`.

use bytes::BytesMut;
use mqtt_streaming_proto::{EncodeError, Packet, ProtocolVersion, Publish};

use crate::transmit::{TransmitBuf, SEGMENT_FROM};

/// Capacity the transmit buffer may keep while empty. A session that once sent a large packet
/// does not keep a buffer of that size while idle (a broker's thousands of sessions would each
/// hold the largest packet they ever sent).
const KEEP_CAPACITY: usize = 8 * 1024;

/// Encoded bytes waiting for the transport. The protocol version they are encoded in is the
/// owner's (the `Link`'s): a version byte here would pad the outbox. It lives in
/// the core's traffic box, which a quiet session gives back (`Core::shrink_idle`).
///
/// A client's outbox keeps large payloads as segments of their own ([`TransmitBuf`]): only
/// the header is encoded, and the payload's `Bytes` follows it, referenced.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    buf: TransmitBuf,
}

impl Outbox {
    /// Encodes `packet` in `version`. Packets reaching here were validated by the caller, so
    /// an error means a bug in the session; it is reported, not hidden.
    pub(crate) fn push(
        &mut self,
        version: ProtocolVersion,
        packet: &Packet,
    ) -> Result<(), EncodeError> {
        packet.encode(version, self.buf.tail_mut())
    }

    /// Encodes a PUBLISH without wrapping it in a [`Packet`] (no move, no clone). With
    /// `segment`, a payload of at least [`SEGMENT_FROM`] bytes is not copied: it follows the
    /// header as a segment of its own (a clone of its `Bytes`, or the payload itself when
    /// `take`, which leaves `publish` without it).
    pub(crate) fn push_publish(
        &mut self,
        version: ProtocolVersion,
        publish: &mut Publish,
        segment: bool,
        take: bool,
    ) -> Result<(), EncodeError> {
        publish.encode_header(version, self.buf.tail_mut())?;
        if segment && publish.payload.len() >= SEGMENT_FROM {
            let payload = if take {
                core::mem::take(&mut publish.payload)
            } else {
                publish.payload.clone()
            };
            self.buf.push_bytes(payload);
        } else {
            self.buf.extend_from_slice(&publish.payload);
        }
        Ok(())
    }

    /// Appends packets encoded elsewhere (a PUBLISH encoded once for many receivers).
    pub(crate) fn push_encoded(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes waiting.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Copies everything waiting to the end of `out`; returns how many bytes moved.
    ///
    /// The buffers are never swapped: a caller's buffer may share its allocation with packets
    /// it decoded from it (a `BytesMut` emptied by `split` still owns its whole allocation), and
    /// an idle session holding it would pin that memory for as long as it lives.
    pub(crate) fn drain_into(&mut self, out: &mut BytesMut) -> usize {
        if self.buf.is_empty() {
            return 0;
        }
        let n = self.buf.copy_into(out);
        self.buf.shrink_tail_above(KEEP_CAPACITY);
        n
    }

    /// As [`drain_into`](Self::drain_into), but when `out` is empty the buffers are
    /// exchanged instead of copied: `out` gets the encoded bytes, and the transmit buffer
    /// continues in `out`'s allocation. For a caller whose buffer owns its allocation alone (a
    /// driver's dedicated write buffer, never a read buffer); the session keeps that buffer's
    /// capacity until [`shrink_idle`](Self::shrink_idle). A buffer holding segments is
    /// copied.
    pub(crate) fn swap_into(&mut self, out: &mut BytesMut) -> usize {
        if !out.is_empty() || !self.buf.is_contiguous() {
            return self.drain_into(out);
        }
        let n = self.buf.len();
        if n > 0 {
            core::mem::swap(self.buf.tail_mut(), out);
        }
        n
    }

    /// Moves everything waiting to the end of `out` ([`TransmitBuf::append`]: exchanged
    /// when `out` is empty, large segments moved, small ones copied).
    pub(crate) fn append_into(&mut self, out: &mut TransmitBuf) -> usize {
        let exchanged = out.is_empty();
        let n = out.append(&mut self.buf);
        if !exchanged {
            // Copied out (not exchanged): the buffer keeps no more room than a drain would.
            self.buf.shrink_tail_above(KEEP_CAPACITY);
        }
        n
    }

    /// The buffer's capacity (what it holds while empty, for the memory tests).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Gives back the buffer's memory when nothing waits in it.
    pub(crate) fn shrink_idle(&mut self) {
        self.buf.shrink_idle();
    }

    /// Drops bytes meant for a transport that is gone.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_streaming_proto::{PacketId, PubResponse};

    fn puback(id: u16) -> Packet {
        Packet::PubAck(PubResponse::new(PacketId::new(id).unwrap()))
    }

    #[test]
    fn swap_into_exchanges_buffers_when_the_callers_is_empty() {
        let mut outbox = Outbox::default();
        let mut out = BytesMut::with_capacity(256);
        let mine = out.as_ptr();
        outbox.push(ProtocolVersion::V3_1_1, &puback(1)).unwrap();
        let theirs = outbox.buf.tail_mut().as_ptr();
        assert_eq!(outbox.swap_into(&mut out), 4);
        assert_eq!(&out[..], [0x40, 0x02, 0x00, 0x01]);
        assert_eq!(
            out.as_ptr(),
            theirs,
            "no copy: the caller has the session's buffer"
        );
        // The session encodes into the caller's old buffer.
        outbox.push(ProtocolVersion::V3_1_1, &puback(2)).unwrap();
        assert_eq!(outbox.buf.tail_mut().as_ptr(), mine);
        // A caller's buffer with bytes in it is appended to, as drain_into does.
        assert_eq!(outbox.swap_into(&mut out), 4);
        assert_eq!(&out[..], [0x40, 0x02, 0x00, 0x01, 0x40, 0x02, 0x00, 0x02]);
        assert_eq!(outbox.len(), 0);
        assert_eq!(outbox.swap_into(&mut out), 0);
    }
}
