//! [`SmolRuntime`], the timer and clock of `async-io` that it shares with async-std, the
//! entry points that run the engine on any [`Runtime`] over a `futures-io` transport, and the
//! accept loop of the broker over a futures-io TCP listener ([`TcpAcceptor`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use smol::net::{AsyncToSocketAddrs, TcpListener, TcpStream};
use tokio_util::compat::FuturesAsyncReadCompatExt;

/// A futures-io stream seen through tokio's I/O traits (`tokio_util::compat`).
pub use tokio_util::compat::Compat;

pub use adapter_tokio::runtime::{
    Accepted, Adapt, Bind, BrokerHandleOn, BrokerServerOn, Listener, NetRuntime, Runtime, Timer,
};

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

/// `transport` as the engine's transport (tokio's I/O traits).
pub fn compat<Io: Transport>(transport: Io) -> Compat<Io> {
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

impl<Io: Transport> Adapt<Io> for SmolRuntime {
    type Transport = Compat<Io>;

    fn adapt(transport: Io) -> Compat<Io> {
        compat(transport)
    }
}

impl NetRuntime for SmolRuntime {
    type TcpListener = TcpListener;

    fn listener(listener: TcpListener) -> Box<dyn Listener> {
        Box::new(TcpAcceptor::<Self>::new(listener))
    }
}

impl<A: AsyncToSocketAddrs> Bind<A> for SmolRuntime {
    fn bind(addr: A) -> impl Future<Output = io::Result<TcpListener>> {
        TcpListener::bind(addr)
    }
}

impl FuturesTcp for SmolRuntime {
    type TcpListener = TcpListener;
    type TcpStream = TcpStream;

    fn local_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    fn accept(listener: Arc<TcpListener>) -> AcceptFuture<TcpStream> {
        Box::pin(async move { listener.accept().await })
    }

    fn set_nodelay(stream: &TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)
    }
}

/// A pending accept of a [`FuturesTcp`] listener.
pub type AcceptFuture<S> = Pin<Box<dyn Future<Output = io::Result<(S, SocketAddr)>> + Send>>;

/// The TCP sockets of a runtime whose sockets are futures-io streams (smol, async-std): what
/// [`TcpAcceptor`] needs to run the broker's accept loop over them.
pub trait FuturesTcp: Runtime {
    /// The runtime's TCP listener.
    type TcpListener: Send + Sync + 'static;
    /// The runtime's TCP stream; a clone is the same socket (the reader and the writer each
    /// take one, with no lock between them).
    type TcpStream: Transport + Clone;

    /// The address `listener` is bound to.
    fn local_addr(listener: &Self::TcpListener) -> io::Result<SocketAddr>;

    /// Accepts the next connection. Dropping the future must lose no connection (async-io's
    /// listeners accept only once readable).
    fn accept(listener: Arc<Self::TcpListener>) -> AcceptFuture<Self::TcpStream>;

    /// Sets TCP_NODELAY.
    fn set_nodelay(stream: &Self::TcpStream) -> io::Result<()>;
}

/// A futures-io TCP listener as the broker's [`Listener`]: one accept future at a time, kept
/// between polls; TCP_NODELAY on every connection; the stream split into two clones.
pub struct TcpAcceptor<R: FuturesTcp> {
    listener: Arc<R::TcpListener>,
    pending: Option<AcceptFuture<R::TcpStream>>,
}

impl<R: FuturesTcp> TcpAcceptor<R> {
    /// Accepts from `listener`.
    pub fn new(listener: R::TcpListener) -> Self {
        Self {
            listener: Arc::new(listener),
            pending: None,
        }
    }
}

impl<R: FuturesTcp> Listener for TcpAcceptor<R> {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        R::local_addr(&self.listener)
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted>> {
        let listener = &self.listener;
        let pending = self
            .pending
            .get_or_insert_with(|| R::accept(listener.clone()));
        let Poll::Ready(accepted) = pending.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        self.pending = None;
        Poll::Ready(accepted.map(|(stream, peer)| {
            // Nagle would hold small acks back; every packet leaves at once.
            let _ = R::set_nodelay(&stream);
            Accepted::from_halves(compat(stream.clone()), compat(stream), peer)
        }))
    }
}
