//! [`SmolRuntime`], the timer and clock of `async-io` that it shares with async-std, and the
//! entry points that run the engine on any [`Runtime`] over a `futures-io` transport.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

pub use adapter_tokio::runtime::{Runtime, Timer};

use crate::{Client, ClientEvents, ClientOptions, Error, ServerConnection, ServerOptions};

/// A byte transport the drivers run over: `async_net::TcpStream`, a TLS stream
/// (`futures-rustls`, `async-native-tls`), a Unix socket, an in-memory pipe... anything
/// [`futures_io::AsyncRead`] + [`futures_io::AsyncWrite`] + `Unpin + Send + 'static`.
///
/// The engine reads through `tokio_util::compat`, which zeroes the spare part of the read
/// buffer before each read (tokio's read API allows uninitialised memory, futures-io's does
/// not): a few KiB of memset per read, no allocation.
pub trait Transport:
    futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + 'static
{
}

impl<T: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + 'static> Transport for T {}

/// The smol runtime: connections' drivers are spawned with `smol::spawn` (smol's global
/// executor; set `SMOL_THREADS` for more than one thread), deadlines use `async-io`'s timer and
/// the clock is [`std::time::Instant`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SmolRuntime;

/// The timer of the `async-io` reactor (used by smol and by async-std): an
/// `async_io::Timer`, reset in place.
#[derive(Debug)]
pub struct AsyncIoTimer {
    timer: smol::Timer,
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

impl AsyncIoTimer {
    /// A timer that never expires until reset.
    pub fn new() -> Self {
        Self {
            timer: smol::Timer::never(),
        }
    }

    /// The clock the timer's deadlines are measured on: time since a process-wide epoch
    /// (the first call), on [`std::time::Instant`].
    pub fn now() -> Duration {
        epoch().elapsed()
    }
}

impl Default for AsyncIoTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl Timer for AsyncIoTimer {
    fn reset(&mut self, deadline: Duration) {
        match epoch().checked_add(deadline) {
            Some(at) => self.timer.set_at(at),
            None => self.timer = smol::Timer::never(),
        }
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.timer).poll(cx).map(|_| ())
    }
}

impl Runtime for SmolRuntime {
    type Timer = AsyncIoTimer;

    fn now() -> Duration {
        AsyncIoTimer::now()
    }

    fn timer(&self) -> AsyncIoTimer {
        AsyncIoTimer::new()
    }

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        smol::spawn(future).detach();
    }
}

fn compat<Io: Transport>(transport: Io) -> Compat<Io> {
    transport.compat()
}

/// [`connect`](crate::connect) on any runtime, over a futures-io transport.
pub async fn connect_on<R: Runtime, Io: Transport>(
    runtime: R,
    transport: Io,
    options: ClientOptions,
) -> Result<(Client, ClientEvents), Error> {
    adapter_tokio::runtime::connect_on(runtime, compat(transport), options).await
}

/// [`serve_connection`](crate::serve_connection) on any runtime, over a futures-io transport.
pub fn serve_connection_on<R: Runtime, Io: Transport>(
    runtime: R,
    transport: Io,
    options: impl Into<ServerOptions>,
) -> ServerConnection {
    adapter_tokio::runtime::serve_connection_on(runtime, compat(transport), options)
}

/// The connections of one server on a runtime, over futures-io transports, for graceful
/// shutdown (see `adapter_tokio::runtime::ServerGroup`).
#[derive(Debug)]
pub struct ServerGroup<R>(adapter_tokio::runtime::ServerGroup<R>);

impl<R: Runtime> ServerGroup<R> {
    /// An empty group whose connections run on `runtime` with `options`.
    pub fn new(runtime: R, options: impl Into<ServerOptions>) -> Self {
        Self(adapter_tokio::runtime::ServerGroup::new(runtime, options))
    }

    /// Serves one connection as part of the group.
    pub fn serve<Io: Transport>(
        &self,
        transport: Io,
        peer_addr: Option<SocketAddr>,
    ) -> ServerConnection {
        self.0.serve(compat(transport), peer_addr)
    }

    /// Closes every connection of the group and waits until their transports are closed.
    pub async fn shutdown(self) {
        self.0.shutdown().await;
    }
}
