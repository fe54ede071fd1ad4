//! Parking a broker's idle TCP connections on the `async-io` reactor (Unix), which smol and
//! async-std both run on (`BrokerOptions::park_idle_after`).
//!
//! - [`ParkableTcp`]: the transport of a connection a [`TcpAcceptor`](crate::TcpAcceptor)
//!   accepted, which can leave the reactor while it is idle
//!   ([`Transport::park`](engine::Transport::park)) and come back
//!   ([`Transport::unpark`](engine::Transport::unpark)); also a client's TCP connection
//!   ([`tcp_transport`](crate::tcp_transport)), for its read readiness and its read
//!   low-water mark (a client is never parked).
//! - [`AsyncIoIdleLot`]: the [`IdleLot`] of the futures-io runtimes
//!   ([`futures_runtime!`](crate::futures_runtime)): an epoll (or kqueue) set of its own,
//!   through mio, whose one descriptor is registered with the reactor. The broker task polls
//!   it like any other source.
//!
//! What this saves, per idle connection: the reactor's registration of the socket (its
//! reference-counted `Source`, with a waker slot per direction, and its entry in the reactor's
//! table) and, in the broker, the connection's task and outbox. The kernel keeps the parked
//! socket's interest in the lot's set.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_io::Async;
use bytes::BytesMut;
use futures_io::AsyncWrite;
use mio::unix::SourceFd;
use mqtt_streaming_tokio::engine::{self, IdleLot};

use crate::futures_rt::poll_read_buf;

/// A TCP connection on the `async-io` reactor as a whole (one task reads and writes it),
/// accepted by a futures-io broker listener or connected by a client
/// ([`tcp_transport`](crate::tcp_transport)): registered with the reactor while the connection
/// is active, the bare socket while it is parked. It reports its read readiness, gathers its
/// writes and, on Linux, takes the read low-water mark
/// ([`engine::set_receive_low_water`]).
///
/// 16 bytes, so that a parked connection's boxed transport takes 16 bytes too.
#[derive(Debug)]
pub(crate) enum ParkableTcp {
    /// Registered with the reactor.
    Active(Async<TcpStream>),
    /// Out of the reactor (`park`), watched by an [`IdleLot`]; `None` once going back to the
    /// reactor failed (the connection is lost: reads and writes fail).
    Parked(Option<TcpStream>),
}

impl ParkableTcp {
    /// `stream`, registered with the reactor.
    pub(crate) fn new(stream: Async<TcpStream>) -> Self {
        Self::Active(stream)
    }

    fn stream(&mut self) -> io::Result<&mut Async<TcpStream>> {
        match self {
            Self::Active(stream) => Ok(stream),
            Self::Parked(_) => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl engine::Transport for ParkableTcp {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        poll_read_buf(self.stream()?, cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()?).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        // A TCP socket gathers (`writev`).
        true
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_flush(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_close(cx)
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream()?.poll_readable(cx)
    }

    fn set_read_low_water(&mut self, bytes: usize) -> bool {
        // Readiness comes from the reactor (`poll_readable`), which the mark holds back until
        // enough is buffered.
        match self.stream() {
            Ok(stream) => engine::set_receive_low_water(stream.get_ref().as_fd(), bytes).is_ok(),
            Err(_) => false,
        }
    }

    fn park(&mut self) -> Option<RawFd> {
        let Self::Active(stream) = std::mem::replace(self, Self::Parked(None)) else {
            return None;
        };
        // Deregisters from the reactor; the socket stays non-blocking.
        let socket = stream.into_inner().ok()?;
        let fd = socket.as_raw_fd();
        *self = Self::Parked(Some(socket));
        Some(fd)
    }

    fn unpark(&mut self) -> io::Result<RawFd> {
        let Self::Parked(Some(socket)) = std::mem::replace(self, Self::Parked(None)) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let fd = socket.as_raw_fd();
        // Still non-blocking since it was accepted.
        *self = Self::Active(Async::new_nonblocking(socket)?);
        Ok(fd)
    }
}

/// The events taken from the lot's set per poll (more wait for the next).
const EVENTS_PER_POLL: usize = 256;

/// The [`IdleLot`] of the runtimes on the `async-io` reactor (smol, async-std; what
/// [`futures_runtime!`](crate::futures_runtime) returns from `Runtime::idle_lot` on Unix): a
/// mio `Poll` (epoll, kqueue) of its own for the parked sockets, its descriptor registered
/// once with the reactor. Each parked socket is watched for input edge-triggered, under its
/// token, until `unwatch`.
pub struct AsyncIoIdleLot {
    /// A duplicate of the set's descriptor, registered with the reactor: readable while the
    /// set has events.
    ready: Async<OwnedFd>,
    poll: mio::Poll,
    events: mio::Events,
    /// The last poll may have left events in the set (it filled `events`, or was
    /// interrupted): the next one takes them without waiting for the reactor.
    more: bool,
}

impl std::fmt::Debug for AsyncIoIdleLot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncIoIdleLot").finish_non_exhaustive()
    }
}

impl AsyncIoIdleLot {
    /// A new lot, its set registered with the `async-io` reactor.
    pub fn new() -> io::Result<Self> {
        let poll = mio::Poll::new()?;
        let fd = poll.registry().as_fd().try_clone_to_owned()?;
        Ok(Self {
            ready: Async::new(fd)?,
            poll,
            events: mio::Events::with_capacity(EVENTS_PER_POLL),
            more: false,
        })
    }

    /// [`new`](Self::new), boxed as the engine's `Runtime::idle_lot` returns it; `None` when
    /// the set cannot be made (the broker then parks no connection).
    pub fn boxed() -> Option<Box<dyn IdleLot>> {
        Some(Box::new(Self::new().ok()?))
    }
}

impl IdleLot for AsyncIoIdleLot {
    fn watch(&mut self, token: u64, fd: RawFd) -> io::Result<()> {
        let token = usize::try_from(token).map_err(|_| io::ErrorKind::InvalidInput)?;
        self.poll.registry().register(
            &mut SourceFd(&fd),
            mio::Token(token),
            mio::Interest::READABLE,
        )
    }

    fn unwatch(&mut self, fd: RawFd) {
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
    }

    fn poll_woken(&mut self, cx: &mut Context<'_>, woken: &mut Vec<u64>) -> Poll<()> {
        loop {
            if !std::mem::take(&mut self.more) {
                // The reactor reports the set readable once per registration of interest:
                // after a report, the next call registers again (and the set, still readable
                // if events remain, is reported at once).
                match self.ready.poll_readable(cx) {
                    Poll::Ready(Ok(())) => {}
                    // The set's descriptor failed in the reactor: nothing more will come (the
                    // parked connections wake when the broker has output for them, or time
                    // out).
                    Poll::Ready(Err(_)) | Poll::Pending => return Poll::Pending,
                }
            }
            match self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
                Ok(()) if !self.events.is_empty() => {
                    woken.extend(self.events.iter().map(|e| e.token().0 as u64));
                    self.more = self.events.iter().count() == EVENTS_PER_POLL;
                    return Poll::Ready(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.more = true,
                // Nothing (or an error polling the set): wait for the reactor's next report.
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An accepted connection as an active transport, and its peer (a blocking socket).
    fn connected() -> (ParkableTcp, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, _) = listener.accept().unwrap();
        (ParkableTcp::new(Async::new(socket).unwrap()), peer)
    }

    #[test]
    fn a_parked_connection_keeps_16_bytes() {
        assert_eq!(std::mem::size_of::<ParkableTcp>(), 16);
    }

    /// An active connection gathers its buffers in one write, in order.
    #[test]
    fn an_active_connection_writes_vectored() {
        use std::io::Read;

        let (mut transport, mut peer) = connected();
        assert!(engine::Transport::is_write_vectored(&transport));
        let bufs = [
            io::IoSlice::new(b"ab"),
            io::IoSlice::new(b""),
            io::IoSlice::new(b"cd"),
        ];
        let n = async_io::block_on(std::future::poll_fn(|cx| {
            engine::Transport::poll_write_vectored(&mut transport, cx, &bufs)
        }))
        .unwrap();
        assert_eq!(n, 4);
        let mut got = [0; 4];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abcd");
    }

    /// Whether the transport reports read readiness within `wait`.
    fn read_ready_within(transport: &mut ParkableTcp, wait: Duration) -> bool {
        let mut timer = async_io::Timer::after(wait);
        async_io::block_on(std::future::poll_fn(|cx| {
            if let Poll::Ready(ready) = engine::Transport::poll_read_ready(transport, cx) {
                ready.unwrap();
                return Poll::Ready(true);
            }
            std::future::Future::poll(Pin::new(&mut timer), cx).map(|_| false)
        }))
    }

    /// Below the read low-water mark the reactor reports no readiness; lowering the mark
    /// reports the bytes already buffered at once (what reading acknowledgements in batches
    /// relies on).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn readiness_waits_for_the_read_low_water_mark() {
        use std::io::Write;

        let (mut transport, mut peer) = connected();
        assert!(engine::Transport::set_read_low_water(&mut transport, 64));
        peer.write_all(&[0; 26]).unwrap();
        assert!(
            !read_ready_within(&mut transport, Duration::from_millis(200)),
            "26 bytes stay below 64"
        );
        peer.write_all(&[0; 38]).unwrap();
        assert!(
            read_ready_within(&mut transport, Duration::from_secs(5)),
            "64 bytes reach the mark"
        );
        let mut buf = BytesMut::with_capacity(256);
        let n = async_io::block_on(std::future::poll_fn(|cx| {
            engine::Transport::poll_read(&mut transport, cx, &mut buf)
        }))
        .unwrap();
        assert_eq!(n, 64);

        peer.write_all(&[0; 26]).unwrap();
        assert!(!read_ready_within(
            &mut transport,
            Duration::from_millis(200)
        ));
        assert!(engine::Transport::set_read_low_water(&mut transport, 1));
        assert!(
            read_ready_within(&mut transport, Duration::from_secs(5)),
            "lowering the mark reports what is buffered"
        );
    }

    /// The lot's woken tokens within `wait` (empty if none came).
    fn woken_within(lot: &mut AsyncIoIdleLot, wait: Duration) -> Vec<u64> {
        let mut woken = Vec::new();
        let mut timer = async_io::Timer::after(wait);
        async_io::block_on(std::future::poll_fn(|cx| {
            if lot.poll_woken(cx, &mut woken).is_ready() {
                return Poll::Ready(());
            }
            std::future::Future::poll(Pin::new(&mut timer), cx).map(|_| ())
        }));
        woken
    }

    /// The lot reports a watched socket's input under its token, and nothing once the socket
    /// is unwatched; a parked transport comes back to the reactor and reads that input.
    #[test]
    fn the_lot_reports_input_of_watched_sockets_only() {
        use std::io::Write;

        let (mut transport, mut peer) = connected();
        let fd = engine::Transport::park(&mut transport).expect("parks");
        let mut lot = AsyncIoIdleLot::new().unwrap();
        lot.watch(7, fd).unwrap();
        assert_eq!(woken_within(&mut lot, Duration::from_millis(50)), [0u64; 0]);

        peer.write_all(b"x").unwrap();
        assert_eq!(woken_within(&mut lot, Duration::from_secs(10)), [7]);
        lot.unwatch(fd);
        peer.write_all(b"y").unwrap();
        assert_eq!(
            woken_within(&mut lot, Duration::from_millis(200)),
            [0u64; 0]
        );

        assert_eq!(engine::Transport::unpark(&mut transport).unwrap(), fd);
        let mut buf = BytesMut::with_capacity(16);
        async_io::block_on(async {
            while buf.len() < 2 {
                std::future::poll_fn(|cx| {
                    engine::Transport::poll_read(&mut transport, cx, &mut buf)
                })
                .await
                .unwrap();
            }
        });
        assert_eq!(&buf[..], b"xy");
    }
}
