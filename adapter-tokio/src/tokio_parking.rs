//! Layer 10 (feature `tokio-runtime`, Unix): parking a broker's idle TCP connections on
//! tokio (`BrokerOptions::park_idle_after`).
//!
//! - [`ParkableTcp`]: the transport of a connection a tokio listener accepted, which can leave
//!   tokio's reactor while it is idle ([`Transport::park`]) and come back
//!   ([`Transport::unpark`]).
//! - [`TokioIdleLot`]: the [`IdleLot`] of [`TokioRuntime`](crate::TokioRuntime): an epoll (or
//!   kqueue) set of its own, through mio, whose one descriptor is registered with tokio's
//!   reactor. The broker task polls it like any other source.
//!
//! What this saves, per idle connection: tokio's registration of the socket (its
//! `ScheduledIo`, 256 bytes with its alignment) and, in the broker, the connection's task
//! and outbox. The kernel keeps the parked socket's interest in the lot's set.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use mio::unix::SourceFd;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

use crate::runtime::IdleLot;
use crate::transport::Transport;

/// A TCP connection accepted by a tokio listener of a broker: tokio's stream while the
/// connection is active, the bare socket while it is parked.
///
/// 16 bytes, so that a parked connection's boxed transport takes 16 bytes too: tokio's
/// stream (32 bytes) is boxed on its own and goes with the registration when the connection
/// parks.
#[derive(Debug)]
pub(crate) enum ParkableTcp {
    /// Registered with tokio's reactor.
    Active(Box<TcpStream>),
    /// Out of the reactor (`park`), watched by an [`IdleLot`].
    Parked(std::net::TcpStream),
    /// Going back to the reactor failed: the connection is lost.
    Broken,
}

impl ParkableTcp {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self::Active(Box::new(stream))
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        match self {
            Self::Active(stream) => Ok(stream),
            Self::Parked(_) | Self::Broken => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Transport for ParkableTcp {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        // tokio reads into uninitialised memory: no zeroing of the spare capacity.
        pin!(self.stream()?.read_buf(buf)).poll(cx)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()?).poll_write(cx, buf)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_flush(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_shutdown(cx)
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream()?.poll_read_ready(cx)
    }

    fn park(&mut self) -> Option<RawFd> {
        let Self::Active(stream) = std::mem::replace(self, Self::Broken) else {
            return None;
        };
        // Deregisters from tokio's reactor; the socket stays non-blocking.
        let socket = (*stream).into_std().ok()?;
        let fd = socket.as_raw_fd();
        *self = Self::Parked(socket);
        Some(fd)
    }

    fn unpark(&mut self) -> io::Result<RawFd> {
        let Self::Parked(socket) = std::mem::replace(self, Self::Broken) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let fd = socket.as_raw_fd();
        *self = Self::Active(Box::new(TcpStream::from_std(socket)?));
        Ok(fd)
    }
}

/// The events taken from the lot's set per poll (more wait for the next).
const EVENTS_PER_POLL: usize = 256;

/// [`TokioRuntime`](crate::TokioRuntime)'s [`IdleLot`]: a mio `Poll` (epoll, kqueue) of its
/// own for the parked sockets, its descriptor registered once with tokio's reactor. Each
/// parked socket is watched for input edge-triggered, under its token, until `unwatch`.
pub(crate) struct TokioIdleLot {
    poll: AsyncFd<mio::Poll>,
    events: mio::Events,
}

impl TokioIdleLot {
    /// A lot on the current tokio runtime.
    pub(crate) fn new() -> io::Result<Self> {
        // tokio 1.54 deprecates the safe constructors for the unsafe `register_with_interest`,
        // which the tokio versions this crate supports (1.40 on) do not have. Its condition
        // holds here: a mio `Poll` owns its descriptor, which stays open and the same until
        // the `Poll` is dropped with the `AsyncFd`.
        #[allow(deprecated)]
        let poll = AsyncFd::with_interest(mio::Poll::new()?, tokio::io::Interest::READABLE)?;
        Ok(Self {
            poll,
            events: mio::Events::with_capacity(EVENTS_PER_POLL),
        })
    }
}

impl IdleLot for TokioIdleLot {
    fn watch(&mut self, token: u64, fd: RawFd) -> io::Result<()> {
        let token = usize::try_from(token).map_err(|_| io::ErrorKind::InvalidInput)?;
        self.poll.get_ref().registry().register(
            &mut SourceFd(&fd),
            mio::Token(token),
            mio::Interest::READABLE,
        )
    }

    fn unwatch(&mut self, fd: RawFd) {
        let _ = self
            .poll
            .get_ref()
            .registry()
            .deregister(&mut SourceFd(&fd));
    }

    fn poll_woken(&mut self, cx: &mut Context<'_>, woken: &mut Vec<u64>) -> Poll<()> {
        loop {
            let mut ready = match self.poll.poll_read_ready_mut(cx) {
                Poll::Ready(Ok(ready)) => ready,
                // The set's descriptor failed in tokio's reactor: nothing more will come (the
                // parked connections wake when the broker has output for them, or time out).
                Poll::Ready(Err(_)) | Poll::Pending => return Poll::Pending,
            };
            match ready
                .get_inner_mut()
                .poll(&mut self.events, Some(Duration::ZERO))
            {
                Ok(()) if !self.events.is_empty() => {
                    woken.extend(self.events.iter().map(|e| e.token().0 as u64));
                    // Readiness stays set: the next call takes what did not fit.
                    return Poll::Ready(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Nothing (or an error polling the set): wait for tokio's next report.
                _ => ready.clear_ready(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_connection_keeps_16_bytes() {
        assert_eq!(std::mem::size_of::<ParkableTcp>(), 16);
    }
}
