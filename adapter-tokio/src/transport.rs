//! Layer 3: the engine's own byte transport, [`Transport`]: poll-based, reading into a
//! `BytesMut`, writing, flushing and closing. Not tokio's I/O traits nor futures-io's: each
//! adapter implements it for its runtime's streams (`mqtt_streaming_tokio::TokioIo` for tokio's
//! `AsyncRead + AsyncWrite`, `mqtt_streaming_smol::FuturesIo` for futures-io's), so the engine
//! compiles without either. Imports nothing from the crate.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use bytes::BytesMut;

/// A byte stream the engine drives: TCP, TLS, WebSocket, a Unix socket, an in-memory pipe...
///
/// Every method registers the context's waker when it returns `Pending`; reading and writing
/// are polled independently from one task (a driver writes while it waits for input), so an
/// implementation must keep separate wakers for the two directions, as sockets do.
pub trait Transport: Send + Unpin + 'static {
    /// Reads into the spare capacity of `buf` (the caller reserves it), appending what was read
    /// after `buf.len()`: `Ready(Ok(n))` with `n > 0` bytes appended, `Ready(Ok(0))` at the end
    /// of the stream.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>>;

    /// Writes a prefix of `buf`: `Ready(Ok(n))` for the `n` bytes taken (0 only when the
    /// stream can take no more, an error for the engine).
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;

    /// Writes a prefix of the concatenation of `bufs` (vectored I/O: `writev` on a socket),
    /// as [`poll_write`](Self::poll_write) does for one buffer. The default writes the first
    /// non-empty buffer with `poll_write`; transports that gather in one call override it.
    /// The driver uses it when its transmit buffer holds several segments (large payloads
    /// are not copied after their packet's header).
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let buf = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        self.poll_write(cx, buf)
    }

    /// Whether [`poll_write_vectored`](Self::poll_write_vectored) gathers several buffers in
    /// one call (the default: no). Only then does the driver keep large payloads as segments
    /// of their own; otherwise it copies them after their headers, so that a TLS record or a
    /// WebSocket frame still carries many packets.
    fn is_write_vectored(&self) -> bool {
        false
    }

    /// Flushes what was written.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Flushes, then closes the writing side (TCP: FIN); the engine reads no more after it.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Waits, without a buffer, until [`poll_read`](Self::poll_read) is likely to make
    /// progress (bytes, the end of the stream or an error), so that a reader can hold no
    /// buffer while its connection is idle. `Ready` may be spurious: the read that follows
    /// may still return `Pending`. The default is `Ready` at once (the read itself waits).
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = cx;
        Poll::Ready(Ok(()))
    }

    /// Asks the transport to report read readiness ([`poll_read_ready`](Self::poll_read_ready))
    /// only once at least `bytes` are buffered, or at the end of the stream or an error; 1 is
    /// the usual behaviour. Returns whether the transport supports it (the default: no, and
    /// nothing changes).
    ///
    /// The client driver raises it while the server owes many acknowledgements, so that one
    /// wake-up reads several of them, and lowers it back to 1 when they stop coming
    /// (`ClientOptions::batch_acks`). Lowering it must wake a reader whose bytes are already
    /// buffered. TCP sockets on Linux support it (`SO_RCVLOWAT`).
    fn set_read_low_water(&mut self, bytes: usize) -> bool {
        let _ = bytes;
        false
    }

    /// Parks an idle connection (a broker's, `BrokerOptions::park_idle_after`): takes the
    /// socket out of the runtime's reactor and returns its descriptor, for an
    /// [`IdleLot`](crate::runtime::IdleLot) to watch. Until [`unpark`](Self::unpark) the
    /// transport is not polled. `None` (the default): this transport cannot be parked (TLS and
    /// WebSocket keep state above the socket), and nothing changed.
    #[cfg(unix)]
    fn park(&mut self) -> Option<std::os::fd::RawFd> {
        None
    }

    /// Registers a [`park`](Self::park)ed socket with the runtime's reactor again and returns
    /// its descriptor (for [`IdleLot::unwatch`](crate::runtime::IdleLot::unwatch)). On an
    /// error the transport is broken: its reads and writes fail.
    #[cfg(unix)]
    fn unpark(&mut self) -> io::Result<std::os::fd::RawFd> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        (**self).poll_read(cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        (**self).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        (**self).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        (**self).is_write_vectored()
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_flush(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_close(cx)
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_read_ready(cx)
    }

    fn set_read_low_water(&mut self, bytes: usize) -> bool {
        (**self).set_read_low_water(bytes)
    }

    #[cfg(unix)]
    fn park(&mut self) -> Option<std::os::fd::RawFd> {
        (**self).park()
    }

    #[cfg(unix)]
    fn unpark(&mut self) -> io::Result<std::os::fd::RawFd> {
        (**self).unpark()
    }
}

/// A transport whose type is erased (a client's next transport, an accepted connection).
pub type BoxTransport = Box<dyn Transport>;

/// Two halves of one stream (two clones of a socket, a reader and a writer) as one
/// transport: reads go to `read`, the rest to `write`.
pub(crate) struct Joined {
    pub(crate) read: BoxTransport,
    pub(crate) write: BoxTransport,
}

impl Transport for Joined {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        self.read.poll_read(cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.write.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.write.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.write.is_write_vectored()
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write.poll_flush(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write.poll_close(cx)
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.read.poll_read_ready(cx)
    }
}

/// Writes all of `buf`.
pub(crate) async fn write_all(io: &mut dyn Transport, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = poll_fn(|cx| io.poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// Flushes and closes.
pub(crate) async fn close(io: &mut dyn Transport) -> io::Result<()> {
    poll_fn(|cx| io.poll_close(cx)).await
}

/// Whether a close failed only because the peer had already gone (it read what it wanted and
/// closed first: a broker closing after the client's DISCONNECT, a TLS or WebSocket peer that
/// hung up before our close_notify or close frame arrived).
pub(crate) fn peer_gone(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::UnexpectedEof
    )
}

/// A transport whose close succeeds when the peer has already gone: by the time a driver
/// closes, everything was written and flushed, and a TLS or WebSocket close that finds the
/// peer gone (its close_notify or close frame unwritable) has nothing left to deliver. Reads,
/// writes and flushes are the transport's own.
#[derive(Debug)]
pub struct CloseTolerant<T>(pub T);

impl<T: Transport> Transport for CloseTolerant<T> {
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

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_read_ready(cx)
    }

    fn set_read_low_water(&mut self, bytes: usize) -> bool {
        self.0.set_read_low_water(bytes)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.0.poll_close(cx) {
            Poll::Ready(Err(error)) if peer_gone(&error) => Poll::Ready(Ok(())),
            other => other,
        }
    }
}
