//! Layer 10 (feature `tls`, Linux): a client's TLS session over TCP that reads acknowledgements
//! in batches, as plain TCP does (`ClientOptions::batch_acks`; `driver.rs`, "Reading
//! acknowledgements in batches").
//!
//! The driver asks for a low-water mark in bytes of MQTT packets, all certain to come. Under
//! TLS those bytes arrive inside records, and a record is never shorter than the plaintext it
//! carries (a header, and an authentication tag; rustls compresses nothing), so the same
//! number of bytes on the socket is certain to come as well, with one exception: the tail of a
//! record that a read cut in two. Its plaintext is not readable before the whole record is in,
//! and the tail may be all that is still to come. [`RecordReads`] follows the record framing of
//! what it reads (the 5-byte headers are not encrypted) and, while a record is cut, lowers the
//! socket's mark to the tail, so that nothing waits on a guess: the mark goes back up once the
//! record is complete.
//!
//! Imports `transport`, `socket_options` and `tokio_rt`.

use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::socket_options::set_receive_low_water;
use crate::tokio_rt::TokioIo;
use crate::transport::Transport;

/// Bytes of a TLS record header: content type, version, length.
const HEADER: usize = 5;

/// Where the bytes read so far stand in the stream of TLS records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RecordFraming {
    /// Bytes of the current record's header read so far (0 to 4; 0 between records).
    header: [u8; HEADER],
    header_read: usize,
    /// Bytes of the current record's body still to come.
    body_left: usize,
}

impl RecordFraming {
    /// Follows `bytes`, the next bytes of the stream.
    fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER - self.header_read).min(bytes.len());
            self.header[self.header_read..self.header_read + n].copy_from_slice(&bytes[..n]);
            self.header_read += n;
            bytes = &bytes[n..];
            if self.header_read == HEADER {
                self.header_read = 0;
                self.body_left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
            }
        }
    }

    /// The bytes of the current record still to come, at least (0 between records; a header
    /// cut in two counts what is left of the header).
    fn tail(&self) -> usize {
        if self.header_read > 0 {
            HEADER - self.header_read
        } else {
            self.body_left
        }
    }

    /// The socket's mark for a requested one: the request between records, else at most the
    /// cut record's tail.
    fn mark(&self, requested: usize) -> usize {
        match self.tail() {
            0 => requested.max(1),
            tail => requested.min(tail).max(1),
        }
    }
}

/// The TCP socket under a client's TLS session: reads and writes pass through, and the
/// socket's receive low-water mark follows the mark requested and the record framing.
#[derive(Debug)]
pub(crate) struct RecordReads {
    stream: TcpStream,
    framing: RecordFraming,
    /// The mark the driver asked for (1: every byte).
    requested: usize,
    /// The mark set on the socket.
    applied: usize,
}

impl RecordReads {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            framing: RecordFraming::default(),
            requested: 1,
            applied: 1,
        }
    }

    /// Asks for readiness once `bytes` of records are buffered (see the module). Whether the
    /// socket took the mark.
    fn request(&mut self, bytes: usize) -> bool {
        self.requested = bytes.max(1);
        self.apply().is_ok()
    }

    /// Sets the socket's mark when it changed.
    fn apply(&mut self) -> io::Result<()> {
        let mark = self.framing.mark(self.requested);
        if mark != self.applied {
            set_receive_low_water(self.stream.as_fd(), mark)?;
            self.applied = mark;
        }
        Ok(())
    }
}

impl AsyncRead for RecordReads {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.framing.advance(&buf.filled()[before..]);
            if this.requested > 1 {
                // A mark the socket refuses now only costs the batching: reads go on.
                let _ = this.apply();
            }
        }
        result
    }
}

impl AsyncWrite for RecordReads {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A client's TLS session over [`RecordReads`], as the engine's transport: everything is
/// [`TokioIo`]'s, and the read low-water mark is supported.
#[derive(Debug)]
pub(crate) struct TlsClientTcp(pub(crate) TokioIo<tokio_rustls::client::TlsStream<RecordReads>>);

impl Transport for TlsClientTcp {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        self.0.poll_read(cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.0.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_flush(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_close(cx)
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_read_ready(cx)
    }

    fn set_read_low_water(&mut self, bytes: usize) -> bool {
        (self.0).0.get_mut().0.request(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A record of `body` bytes (application data, TLS 1.2 on the wire as TLS 1.3 says).
    fn record(body: usize) -> Vec<u8> {
        let mut bytes = vec![23, 3, 3];
        bytes.extend_from_slice(&u16::try_from(body).unwrap().to_be_bytes());
        bytes.resize(HEADER + body, 0xAB);
        bytes
    }

    #[test]
    fn whole_records_leave_the_framing_between_records() {
        let mut framing = RecordFraming::default();
        let mut stream = record(26);
        stream.extend(record(0));
        stream.extend(record(300));
        framing.advance(&stream);
        assert_eq!(framing.tail(), 0);
        assert_eq!(framing.mark(64), 64);
    }

    #[test]
    fn a_record_cut_in_its_body_or_header_lowers_the_mark_to_its_tail() {
        let stream = [record(26), record(26)].concat();
        // Cut in the second record's body: 10 of its 26 body bytes read.
        let mut framing = RecordFraming::default();
        framing.advance(&stream[..31 + HEADER + 10]);
        assert_eq!(framing.tail(), 16);
        assert_eq!(framing.mark(64), 16);
        assert_eq!(framing.mark(8), 8, "never above the request");
        framing.advance(&stream[31 + HEADER + 10..]);
        assert_eq!(framing.mark(64), 64);
        // Cut in the second record's header, one byte at a time after it.
        let mut framing = RecordFraming::default();
        framing.advance(&stream[..33]);
        assert_eq!(framing.tail(), 3);
        for byte in &stream[33..] {
            assert!(framing.tail() > 0);
            framing.advance(std::slice::from_ref(byte));
        }
        assert_eq!(framing.tail(), 0);
    }

    #[test]
    fn the_mark_is_at_least_one() {
        let framing = RecordFraming::default();
        assert_eq!(framing.mark(0), 1);
        let mut cut = RecordFraming::default();
        cut.advance(&record(4)[..HEADER]);
        assert_eq!(cut.mark(1), 1);
    }

    /// A connected pair of TCP sockets on 127.0.0.1.
    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn the_tail_of_a_cut_record_wakes_the_reader_below_the_mark() {
        let (client, mut server) = tcp_pair().await;
        let mut reads = RecordReads::new(client);
        assert!(reads.request(64));
        let records = [record(21), record(21), record(21)].concat();
        // Two whole records and 20 bytes of the third: 72 bytes, above the mark.
        server.write_all(&records[..72]).await.unwrap();
        let mut buf = [0; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), reads.read(&mut buf))
            .await
            .expect("72 bytes reach the mark")
            .unwrap();
        assert_eq!(n, 72);
        assert_eq!(reads.applied, 6, "the cut record's tail");
        // The 6-byte tail is below the requested 64 and still wakes the reader.
        server.write_all(&records[72..]).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), reads.read(&mut buf))
            .await
            .expect("the tail is read without more input")
            .unwrap();
        assert_eq!(n, 6);
        assert_eq!(reads.applied, 64, "between records again");
    }

    #[tokio::test]
    async fn below_the_mark_between_records_the_reader_is_not_woken() {
        let (client, mut server) = tcp_pair().await;
        let mut reads = RecordReads::new(client);
        assert!(reads.request(64));
        server.write_all(&record(21)).await.unwrap();
        let mut buf = [0; 256];
        let early = tokio::time::timeout(Duration::from_millis(200), reads.read(&mut buf)).await;
        assert!(early.is_err(), "26 bytes of a whole record stay below 64");
        assert!(reads.request(1));
        let n = tokio::time::timeout(Duration::from_secs(5), reads.read(&mut buf))
            .await
            .expect("lowering the mark wakes the reader")
            .unwrap();
        assert_eq!(n, 26);
    }
}
