//! Layer 4: what a runtime brings besides spawn and time: its streams as the engine's
//! [`Transport`] ([`Adapt`]), its TCP listener ([`NetRuntime`], [`Bind`], any [`Listener`])
//! and its TCP connect ([`TcpConnect`]). Imports only `runtime` and `transport`.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;

use crate::runtime::Runtime;
use crate::transport::{BoxTransport, Joined, Transport};

/// The runtime's streams (of type `Io`) as the engine's [`Transport`]: what `connect`,
/// `serve_connection`, `Server::serve`, `Reconnect::reconnect` and
/// `BrokerHandle::serve_transport` take (tokio's `AsyncRead + AsyncWrite` through
/// `mqtt_streaming_tokio::TokioIo`, futures-io streams through `mqtt_streaming_smol::FuturesIo`).
pub trait Adapt<Io>: Runtime {
    /// The transport the engine reads and writes.
    type Transport: Transport;

    /// Wraps `transport`.
    fn adapt(transport: Io) -> Self::Transport;
}

/// A connection a [`Listener`] accepted: a whole transport, or its two halves, and the peer's
/// address.
pub struct Accepted {
    read: BoxTransport,
    /// `None`: `read` is the whole transport.
    write: Option<BoxTransport>,
    peer: Option<SocketAddr>,
}

impl fmt::Debug for Accepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accepted")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Accepted {
    /// A whole transport.
    pub fn new(transport: impl Transport, peer: SocketAddr) -> Self {
        Self::of(Box::new(transport), Some(peer))
    }

    /// A transport already split into independent halves (two clones of a socket...). Reads
    /// go to `read`; writes, flushes and the close to `write`.
    pub fn from_halves(read: impl Transport, write: impl Transport, peer: SocketAddr) -> Self {
        Self {
            read: Box::new(read),
            write: Some(Box::new(write)),
            peer: Some(peer),
        }
    }

    /// A whole transport with or without a peer address (a Unix socket's connection has none).
    pub fn with_peer(transport: impl Transport, peer: Option<SocketAddr>) -> Self {
        Self::of(Box::new(transport), peer)
    }

    /// A connection whose transport is still being set up (a TLS or WebSocket handshake):
    /// `handshake` runs when the connection is first read or written, so a slow or silent
    /// client holds up no other accept; its error is the connection's first read error. The
    /// listener bounds the time it takes (the listeners of this crate and of the futures-io
    /// adapters give it 10 s).
    pub fn handshaking(
        handshake: impl Future<Output = io::Result<BoxTransport>> + Send + 'static,
        peer: Option<SocketAddr>,
    ) -> Self {
        Self::of(Box::new(Upgrade::Handshake(Box::pin(handshake))), peer)
    }

    pub(crate) fn of(transport: BoxTransport, peer: Option<SocketAddr>) -> Self {
        Self {
            read: transport,
            write: None,
            peer,
        }
    }

    /// The peer's address, for TCP connections.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// One transport (for one task that reads and writes).
    pub(crate) fn into_transport(self) -> (BoxTransport, Option<SocketAddr>) {
        match self.write {
            None => (self.read, self.peer),
            Some(write) => (
                Box::new(Joined {
                    read: self.read,
                    write,
                }),
                self.peer,
            ),
        }
    }
}

/// A listener that servers and brokers accept connections from: a TCP listener of any
/// runtime, or your own (Unix sockets, TLS acceptors...).
///
/// `poll_accept` must be cancel safe in the sense that matters here: a server or broker
/// stops polling it (and drops it) at shutdown, and a connection it has not returned yet may
/// be lost then. Accepted TCP streams should have TCP_NODELAY set.
pub trait Listener: Send + 'static {
    /// The address the listener is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// The next connection; registers the context's waker while there is none. An error
    /// (out of file descriptors...) makes a broker wait 50 ms before accepting again.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted>>;
}

type Handshake = Pin<Box<dyn Future<Output = io::Result<BoxTransport>> + Send>>;

/// A transport behind a handshake ([`Accepted::handshaking`]): every poll first drives the
/// handshake, then goes to the transport it gave.
enum Upgrade {
    Handshake(Handshake),
    Ready(BoxTransport),
    Failed,
}

impl Upgrade {
    fn ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut BoxTransport>> {
        if let Upgrade::Handshake(handshake) = self {
            match ready!(handshake.as_mut().poll(cx)) {
                Ok(transport) => *self = Upgrade::Ready(transport),
                Err(error) => {
                    *self = Upgrade::Failed;
                    return Poll::Ready(Err(error));
                }
            }
        }
        match self {
            Upgrade::Ready(transport) => Poll::Ready(Ok(transport)),
            _ => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection's handshake failed",
            ))),
        }
    }
}

impl Transport for Upgrade {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        ready!(self.ready(cx))?.poll_read(cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.ready(cx))?.poll_write(cx, buf)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.ready(cx))?.poll_flush(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            // Nothing to close gracefully: dropping the handshake drops the stream.
            Upgrade::Handshake(_) | Upgrade::Failed => {
                *self = Upgrade::Failed;
                Poll::Ready(Ok(()))
            }
            Upgrade::Ready(transport) => transport.poll_close(cx),
        }
    }
}

/// Several listeners as one (a broker on TCP, TLS, WebSocket and a Unix socket at once):
/// accepts from each in turn, so a busy one starves none of the others. Its
/// [`local_addr`](Listener::local_addr) is the first listener's that has one.
pub struct Listeners {
    listeners: Vec<Box<dyn Listener>>,
    next: usize,
}

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listeners")
            .field("len", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

impl Listeners {
    /// These listeners, as one.
    pub fn new(listeners: impl IntoIterator<Item = Box<dyn Listener>>) -> Self {
        Self {
            listeners: listeners.into_iter().collect(),
            next: 0,
        }
    }

    /// Adds a listener.
    pub fn push(&mut self, listener: Box<dyn Listener>) {
        self.listeners.push(listener);
    }

    /// The local addresses of the listeners, in order (`None` for those without one, like Unix
    /// sockets).
    pub fn local_addrs(&self) -> Vec<Option<SocketAddr>> {
        self.listeners.iter().map(|l| l.local_addr().ok()).collect()
    }
}

impl Listener for Listeners {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listeners
            .iter()
            .find_map(|l| l.local_addr().ok())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::Unsupported, "no listener with an address")
            })
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted>> {
        let len = self.listeners.len();
        for i in 0..len {
            let index = (self.next + i) % len;
            if let Poll::Ready(accepted) = self.listeners[index].poll_accept(cx) {
                self.next = (index + 1) % len;
                return Poll::Ready(accepted);
            }
        }
        Poll::Pending
    }
}

/// A runtime with TCP listeners: what `Server::from_listener` and
/// `BrokerServer::from_listener` take.
pub trait NetRuntime: Runtime + Default {
    /// The runtime's TCP listener (`tokio::net::TcpListener`, `smol::net::TcpListener`,
    /// `async_std::net::TcpListener`).
    type TcpListener: Send + 'static;

    /// The listener as a [`Listener`] (TCP_NODELAY set on every connection).
    fn listener(listener: Self::TcpListener) -> Box<dyn Listener>;
}

/// Binding the runtime's TCP listener to an address of type `A` (each runtime's own
/// `ToSocketAddrs`): what `Server::bind` and `BrokerServer::bind` take.
pub trait Bind<A>: NetRuntime {
    /// Binds a listener to `addr`.
    fn bind(addr: A) -> impl Future<Output = io::Result<Self::TcpListener>>;
}

/// Connecting the runtime's TCP stream to an address of type `A` (each runtime's own
/// `ToSocketAddrs`), TCP_NODELAY set: what `connect_tcp` and `Reconnect::reconnect_tcp` take.
pub trait TcpConnect<A>: Runtime {
    /// The connected stream, as the engine's transport.
    type Stream: Transport;

    /// Connects to `addr` and sets TCP_NODELAY (small packets leave at once instead of
    /// waiting for Nagle's algorithm).
    fn connect(addr: A) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}
