//! The transmit buffer: packets are encoded into it as soon as they are decided, and handed to
//! the caller's buffer by `poll_transmit`.

use bytes::BytesMut;
use mqtt_streaming_proto::{EncodeError, Packet, ProtocolVersion, Publish};

/// Capacity the transmit buffer may keep while empty. A session that once sent a large packet
/// does not keep a buffer of that size while idle (a broker's thousands of sessions would each
/// hold the largest packet they ever sent).
const KEEP_CAPACITY: usize = 8 * 1024;

/// Encoded bytes waiting for the transport.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    buf: BytesMut,
    version: ProtocolVersion,
}

impl Outbox {
    pub(crate) fn set_version(&mut self, version: ProtocolVersion) {
        self.version = version;
    }

    pub(crate) fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Encodes `packet`. Packets reaching here were validated by the caller, so an error means
    /// a bug in the session; it is reported, not hidden.
    pub(crate) fn push(&mut self, packet: &Packet) -> Result<(), EncodeError> {
        packet.encode(self.version, &mut self.buf)
    }

    /// Encodes a PUBLISH without wrapping it in a [`Packet`] (no move, no clone).
    pub(crate) fn push_publish(&mut self, publish: &Publish) -> Result<(), EncodeError> {
        publish.encode_header(self.version, &mut self.buf)?;
        self.buf.extend_from_slice(&publish.payload);
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
        let n = self.buf.len();
        if n == 0 {
            return 0;
        }
        out.extend_from_slice(&self.buf);
        self.buf.clear();
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = BytesMut::new();
        }
        n
    }

    /// Drops bytes meant for a transport that is gone.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }
}
