//! [`TransmitBuf`]: encoded bytes for the transport as a list of segments, so that large
//! payloads reach the transport without being copied into the encoded packet.

use alloc::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// Payloads from this size on are handed over as their own segment (the application's
/// [`Bytes`], referenced) rather than copied after their packet's header; smaller ones are
/// copied, so that runs of small packets stay one contiguous segment (one write, few
/// segments for a vectored one).
pub const SEGMENT_FROM: usize = 1024;

/// Encoded bytes on their way to the transport, in order: runs of packets encoded together
/// (copied into one buffer), and the payloads of large PUBLISH packets (at least
/// [`SEGMENT_FROM`] bytes) as the [`Bytes`] the application gave, not copied.
///
/// What [`ClientSession::poll_transmit_buf`](crate::ClientSession::poll_transmit_buf) fills.
/// A transport writes it with vectored I/O ([`chunks`](Self::chunks) as the slices) or
/// one [`chunk`](Buf::chunk) at a time, then [`advance`](Buf::advance)s past what was
/// written; it implements [`Buf`]. Writing the chunks one after the other gives exactly the
/// bytes the single-buffer [`ClientSession::poll_transmit`](crate::ClientSession::poll_transmit)
/// would have.
#[derive(Debug, Default)]
pub struct TransmitBuf {
    /// Every copied byte, in order (packets are encoded here); consumed from the front.
    copied: BytesMut,
    /// The closed runs of `copied` and the payloads between them, in order. Bytes of
    /// `copied` beyond the closed runs (`closed`) are an open run after all of them.
    entries: VecDeque<Entry>,
    /// Bytes of `copied` in the closed runs.
    closed: usize,
    /// Bytes in the payload entries.
    payloads: usize,
}

/// One segment of a [`TransmitBuf`].
#[derive(Debug)]
enum Entry {
    /// The next this many bytes of `copied`.
    Copied(usize),
    /// A payload, referenced (never empty).
    Payload(Bytes),
}

impl TransmitBuf {
    /// An empty buffer (allocates nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.copied.len() + self.payloads
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The segments in order (the last one may be empty): the slices of a vectored write.
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        let mut at = 0;
        let closed = self.entries.iter().map(move |entry| match entry {
            Entry::Copied(n) => {
                let run = &self.copied[at..at + n];
                at += n;
                run
            }
            Entry::Payload(payload) => &payload[..],
        });
        closed.chain(core::iter::once(&self.copied[self.closed..]))
    }

    /// How many segments hold bytes.
    pub fn segment_count(&self) -> usize {
        self.entries.len() + usize::from(self.copied.len() > self.closed)
    }

    /// Whether everything waiting is in the copy buffer ([`tail_mut`](Self::tail_mut)),
    /// contiguous.
    pub(crate) fn is_contiguous(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops everything waiting (a transport that is gone).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.copied.clear();
        self.closed = 0;
        self.payloads = 0;
    }

    /// The capacity of the copy buffer (payloads are the application's).
    pub fn capacity(&self) -> usize {
        self.copied.capacity()
    }

    /// Appends `bytes` (copied).
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.copied.extend_from_slice(bytes);
    }

    /// The copy buffer's end: bytes appended to it follow everything else (a transport that
    /// does not gather writes has the session encode here, contiguously).
    pub fn tail_mut(&mut self) -> &mut BytesMut {
        &mut self.copied
    }

    /// Appends `bytes` as its own segment when it is large (not copied), else copies it.
    pub fn push_bytes(&mut self, bytes: Bytes) {
        if bytes.len() < SEGMENT_FROM {
            self.copied.extend_from_slice(&bytes);
            return;
        }
        let open = self.copied.len() - self.closed;
        if open > 0 {
            self.entries.push_back(Entry::Copied(open));
            self.closed += open;
        }
        self.payloads += bytes.len();
        self.entries.push_back(Entry::Payload(bytes));
    }

    /// Moves everything `other` holds to the end of `self`, leaving `other` empty. When `self`
    /// is empty, the two are exchanged (`other` keeps `self`'s empty allocations to encode
    /// into); otherwise payloads move without a copy and the copied runs (headers, small
    /// packets) are copied.
    pub fn append(&mut self, other: &mut TransmitBuf) -> usize {
        let n = other.len();
        if n == 0 {
            return 0;
        }
        if self.is_empty() {
            core::mem::swap(self, other);
            return n;
        }
        let mut at = 0;
        for entry in other.entries.drain(..) {
            match entry {
                Entry::Copied(len) => {
                    self.copied.extend_from_slice(&other.copied[at..at + len]);
                    at += len;
                }
                Entry::Payload(payload) => self.push_bytes(payload),
            }
        }
        self.copied.extend_from_slice(&other.copied[at..]);
        other.clear();
        n
    }

    /// Copies everything waiting to the end of `out` and empties `self`; returns how many
    /// bytes moved.
    pub fn copy_into(&mut self, out: &mut BytesMut) -> usize {
        let n = self.len();
        out.reserve(n);
        for chunk in self.chunks() {
            out.extend_from_slice(chunk);
        }
        self.clear();
        n
    }

    /// Gives back the memory of an empty buffer.
    pub fn shrink_idle(&mut self) {
        if self.is_empty() {
            *self = Self::default();
        }
    }

    /// Gives back the copy buffer's memory when nothing waits and it holds more than `keep`
    /// bytes of capacity.
    pub(crate) fn shrink_tail_above(&mut self, keep: usize) {
        if self.is_empty() && self.copied.capacity() > keep {
            self.copied = BytesMut::new();
        }
    }
}

impl Buf for TransmitBuf {
    fn remaining(&self) -> usize {
        self.len()
    }

    fn chunk(&self) -> &[u8] {
        match self.entries.front() {
            Some(Entry::Copied(n)) => &self.copied[..*n],
            Some(Entry::Payload(payload)) => payload,
            None => &self.copied,
        }
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.len(), "advance past the end of a TransmitBuf");
        while cnt > 0 {
            match self.entries.front_mut() {
                None => {
                    self.copied.advance(cnt);
                    return;
                }
                Some(Entry::Copied(n)) => {
                    let step = cnt.min(*n);
                    self.copied.advance(step);
                    self.closed -= step;
                    *n -= step;
                    cnt -= step;
                    if *n == 0 {
                        self.entries.pop_front();
                    }
                }
                Some(Entry::Payload(payload)) => {
                    let step = cnt.min(payload.len());
                    payload.advance(step);
                    self.payloads -= step;
                    cnt -= step;
                    if payload.is_empty() {
                        self.entries.pop_front();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn gather(buf: &TransmitBuf) -> Vec<u8> {
        buf.chunks().flatten().copied().collect()
    }

    #[test]
    fn large_bytes_become_segments_and_small_ones_are_copied() {
        let mut buf = TransmitBuf::new();
        buf.extend_from_slice(b"head");
        let big = Bytes::from(alloc::vec![7u8; SEGMENT_FROM]);
        let big_ptr = big.as_ptr();
        buf.push_bytes(big);
        buf.push_bytes(Bytes::from_static(b"small"));
        assert_eq!(buf.segment_count(), 3);
        let chunks: Vec<&[u8]> = buf.chunks().collect();
        assert_eq!(chunks[0], b"head");
        assert_eq!(
            chunks[1].as_ptr(),
            big_ptr,
            "the payload is referenced, not copied"
        );
        assert_eq!(chunks[2], b"small");
        assert_eq!(buf.len(), 4 + SEGMENT_FROM + 5);
    }

    #[test]
    fn advancing_across_segments_resumes_mid_segment() {
        let mut buf = TransmitBuf::new();
        buf.extend_from_slice(b"ab");
        buf.push_bytes(Bytes::from(alloc::vec![1u8; SEGMENT_FROM]));
        buf.extend_from_slice(b"cd");
        let mut expected = gather(&buf);
        // Short writes of every size, as a transport taking a few bytes at a time would.
        let mut step = 1;
        while !buf.is_empty() {
            let n = step.min(buf.len());
            // What a write of `n` bytes takes: the first n bytes of the chunks in order.
            let taken: Vec<u8> = buf.chunks().flatten().copied().take(n).collect();
            assert_eq!(taken[..], expected[..n]);
            buf.advance(n);
            expected.drain(..n);
            assert_eq!(gather(&buf), expected);
            assert_eq!(buf.remaining(), expected.len());
            step = step * 3 + 1;
        }
        assert_eq!(buf.segment_count(), 0);
    }

    #[test]
    fn append_swaps_into_an_empty_buffer_and_keeps_order_otherwise() {
        let mut session = TransmitBuf::new();
        session.extend_from_slice(b"one");
        session.push_bytes(Bytes::from(alloc::vec![2u8; SEGMENT_FROM]));
        let mut out = TransmitBuf::new();
        let first = gather(&session);
        assert_eq!(out.append(&mut session), first.len());
        assert!(session.is_empty());
        assert_eq!(gather(&out), first);
        // Appended behind bytes still waiting: order kept, small tails copied, large moved.
        session.extend_from_slice(b"two");
        let big = Bytes::from(alloc::vec![3u8; SEGMENT_FROM]);
        let big_ptr = big.as_ptr();
        session.push_bytes(big);
        session.extend_from_slice(b"three");
        let second = gather(&session);
        out.append(&mut session);
        assert!(session.is_empty());
        let mut all = first.clone();
        all.extend_from_slice(&second);
        assert_eq!(gather(&out), all);
        assert!(out.chunks().any(|c| c.as_ptr() == big_ptr));
        // copy_into gives the same bytes in one buffer.
        let mut flat = BytesMut::new();
        assert_eq!(out.copy_into(&mut flat), all.len());
        assert_eq!(&flat[..], &all[..]);
        assert!(out.is_empty());
    }
}
