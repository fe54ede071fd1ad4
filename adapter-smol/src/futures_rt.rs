//! The building blocks every futures-io runtime shares (smol here, async-std in its adapter),
//! on `futures-io` and `async-io` alone (no `smol`): [`FuturesIo`] (a futures-io stream as
//! the engine's transport), [`AsyncIoTimer`] (the `async-io` reactor's timer and its clock),
//! [`TcpAcceptor`] (a futures-io TCP listener as a broker or server listener, whose
//! connections a broker can park on Unix), and
//! [`futures_runtime!`](crate::futures_runtime), which implements the engine's runtime traits
//! for a futures-io runtime in one line.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mqtt_streaming_tokio::engine::{self, Accepted, BoxTransport, Listener, Runtime, Timer};

/// What the futures-io entry points take: `async_net::TcpStream`, a TLS stream
/// (`futures-rustls`, `async-native-tls`), a Unix socket, an in-memory pipe... anything
/// [`futures_io::AsyncRead`] + [`futures_io::AsyncWrite`] + `Unpin + Send + 'static`.
pub trait Transport:
    futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + 'static
{
}

impl<T: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + 'static> Transport for T {}

/// Bytes read at most per read: futures-io reads into initialised memory, so this much of the
/// read buffer's spare capacity is zeroed before each read (no allocation).
const MAX_READ: usize = 64 * 1024;

/// A futures-io stream as the engine's transport ([`engine::Transport`]), directly (no
/// compat layer). The entry points wrap what they are given.
#[derive(Debug)]
pub struct FuturesIo<T>(pub T);

/// Reads from `io` into the spare capacity of `buf` (reserving some when there is none), as
/// the engine's `Transport::poll_read` does.
pub(crate) fn poll_read_buf<T: futures_io::AsyncRead + Unpin + ?Sized>(
    io: &mut T,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    let len = buf.len();
    if buf.capacity() == len {
        buf.reserve(8 * 1024);
    }
    let room = (buf.capacity() - len).min(MAX_READ);
    buf.resize(len + room, 0);
    let result = Pin::new(io).poll_read(cx, &mut buf[len..]);
    let n = match &result {
        Poll::Ready(Ok(n)) => (*n).min(room),
        _ => 0,
    };
    buf.truncate(len + n);
    result
}

impl<T: Transport> engine::Transport for FuturesIo<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        poll_read_buf(&mut self.0, cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        // futures-io cannot tell; smol's TCP sockets gather (`writev`). Other streams (TLS,
        // async-std's sockets) get contiguous writes.
        #[cfg(feature = "smol-runtime")]
        {
            let io: &dyn std::any::Any = &self.0;
            io.is::<smol::net::TcpStream>()
        }
        #[cfg(not(feature = "smol-runtime"))]
        false
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// The timer of the `async-io` reactor (which smol and async-std both run on): an
/// `async_io::Timer`, reset in place, on [`AsyncIoTimer::now`]'s clock.
#[derive(Debug)]
pub struct AsyncIoTimer {
    timer: async_io::Timer,
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

impl AsyncIoTimer {
    /// A timer that never expires until reset.
    pub fn new() -> Self {
        Self {
            timer: async_io::Timer::never(),
        }
    }

    /// The clock the timer's deadlines are measured on (the `Runtime::now` of the futures-io
    /// runtimes): time since a process-wide epoch (the first call), on
    /// [`std::time::Instant`].
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
            None => self.timer = async_io::Timer::never(),
        }
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.timer).poll(cx).map(|_| ())
    }
}

/// A pending accept of a [`FuturesTcp`] listener.
pub type AcceptFuture<S> = Pin<Box<dyn Future<Output = io::Result<(S, SocketAddr)>> + Send>>;

/// The TCP sockets of a runtime whose sockets are futures-io streams (smol, async-std): what
/// [`TcpAcceptor`] needs to accept from them. [`futures_runtime!`](crate::futures_runtime)
/// implements it.
pub trait FuturesTcp: Runtime {
    /// The runtime's TCP listener.
    type TcpListener: Send + Sync + 'static;
    /// The runtime's TCP stream; a clone is the same socket (a broker's reader and writer each
    /// take one, with no lock between them).
    type TcpStream: Transport + Clone;

    /// The address `listener` is bound to.
    fn local_addr(listener: &Self::TcpListener) -> io::Result<SocketAddr>;

    /// Accepts the next connection. Dropping the future must lose no connection (async-io's
    /// listeners accept only once readable).
    fn accept(listener: Arc<Self::TcpListener>) -> AcceptFuture<Self::TcpStream>;

    /// Sets TCP_NODELAY.
    fn set_nodelay(stream: &Self::TcpStream) -> io::Result<()>;

    /// The socket `listener` listens on, as a standard listener of its own (a duplicate of its
    /// descriptor), for a [`TcpAcceptor`] whose connections can be parked by a broker
    /// (`BrokerOptions::park_idle_after`). The default: `Unsupported`, and the acceptor
    /// accepts from `listener` itself ([`accept`](Self::accept)), its connections never
    /// parking. [`futures_runtime!`](crate::futures_runtime) duplicates the listener's
    /// descriptor (`AsFd`).
    #[cfg(unix)]
    fn std_listener(listener: &Self::TcpListener) -> io::Result<std::net::TcpListener> {
        let _ = listener;
        Err(io::ErrorKind::Unsupported.into())
    }

    /// The socket under `stream`, as a standard stream of its own (a duplicate of its
    /// descriptor), for [`tcp_transport`] to register with the `async-io` reactor as a whole.
    /// The default: `Unsupported`, and the stream stays the runtime's (through
    /// [`FuturesIo`]). [`futures_runtime!`](crate::futures_runtime) duplicates the stream's
    /// descriptor (`AsFd`).
    #[cfg(unix)]
    fn std_stream(stream: &Self::TcpStream) -> io::Result<std::net::TcpStream> {
        let _ = stream;
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// A TCP stream the runtime `R` connected, as the engine's transport: what a client's
/// `connect_tcp`, `reconnect_tcp` and `mqtt://` endpoints ([`dial`](crate::dial)) run on.
///
/// On Unix, when the runtime gives the stream's socket ([`FuturesTcp::std_stream`], as every
/// [`futures_runtime!`](crate::futures_runtime) runtime does), the socket goes to the
/// `async-io` reactor as a whole, like a connection a [`TcpAcceptor`] accepted: it reports
/// its read readiness (an idle client holds no read buffer), gathers its writes (`writev`),
/// and on Linux takes the read low-water mark with which the client reads acknowledgements
/// in batches (`ClientOptions::batch_acks`). Otherwise the stream itself, through
/// [`FuturesIo`]: every byte is read as it comes.
pub fn tcp_transport<R: FuturesTcp>(stream: R::TcpStream) -> BoxTransport {
    #[cfg(unix)]
    if let Ok(socket) = R::std_stream(&stream).and_then(async_io::Async::new) {
        // The runtime's stream goes (its registration with the reactor); the socket stays
        // open under the duplicate.
        drop(stream);
        return Box::new(crate::parking::ParkableTcp::new(socket));
    }
    Box::new(FuturesIo(stream))
}

/// A futures-io TCP listener as a [`Listener`]: TCP_NODELAY on every connection.
///
/// On Unix, when the runtime gives the listener's socket as a standard one
/// ([`FuturesTcp::std_listener`], as every [`futures_runtime!`](crate::futures_runtime)
/// runtime does), it accepts on the `async-io` reactor itself and hands each stream over whole
/// (one task reads and writes it), able to leave the reactor while a broker parks it
/// (`BrokerOptions::park_idle_after`) and reporting its read readiness (an idle connection
/// holds no read buffer). Otherwise it accepts with the runtime's listener, one accept future
/// at a time, kept between polls (a dropped `accept` loses no connection), and hands the
/// stream over as two clones (reader and writer, no lock between them).
pub struct TcpAcceptor<R: FuturesTcp> {
    inner: Acceptor<R>,
}

enum Acceptor<R: FuturesTcp> {
    Runtime {
        listener: Arc<R::TcpListener>,
        pending: Option<AcceptFuture<R::TcpStream>>,
    },
    #[cfg(unix)]
    Parkable {
        listener: async_io::Async<std::net::TcpListener>,
        /// The last accept took a connection (or failed otherwise than `WouldBlock`): the
        /// next one tries at once rather than waiting for the reactor.
        try_now: bool,
    },
}

impl<R: FuturesTcp> TcpAcceptor<R> {
    /// Accepts from `listener`.
    pub fn new(listener: R::TcpListener) -> Self {
        #[cfg(unix)]
        if let Ok(listener) = R::std_listener(&listener).and_then(async_io::Async::new) {
            // The runtime's listener goes (its registration with it); the socket stays open.
            return Self {
                inner: Acceptor::Parkable {
                    listener,
                    try_now: true,
                },
            };
        }
        Self {
            inner: Acceptor::Runtime {
                listener: Arc::new(listener),
                pending: None,
            },
        }
    }
}

impl<R: FuturesTcp> Listener for TcpAcceptor<R> {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            Acceptor::Runtime { listener, .. } => R::local_addr(listener),
            #[cfg(unix)]
            Acceptor::Parkable { listener, .. } => listener.get_ref().local_addr(),
        }
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted>> {
        match &mut self.inner {
            Acceptor::Runtime { listener, pending } => {
                let accept = pending.get_or_insert_with(|| R::accept(listener.clone()));
                let Poll::Ready(accepted) = accept.as_mut().poll(cx) else {
                    return Poll::Pending;
                };
                *pending = None;
                Poll::Ready(accepted.map(|(stream, peer)| {
                    // Nagle would hold small acks back; every packet leaves at once.
                    let _ = R::set_nodelay(&stream);
                    Accepted::from_halves(FuturesIo(stream.clone()), FuturesIo(stream), peer)
                }))
            }
            #[cfg(unix)]
            Acceptor::Parkable { listener, try_now } => loop {
                if !std::mem::take(try_now) {
                    if let Err(error) = std::task::ready!(listener.poll_readable(cx)) {
                        *try_now = true;
                        return Poll::Ready(Err(error));
                    }
                }
                match listener.get_ref().accept() {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => *try_now = true,
                    accepted => {
                        *try_now = true;
                        return Poll::Ready(accepted.and_then(|(stream, peer)| {
                            // Nagle would hold small acks back; every packet leaves at once.
                            let _ = stream.set_nodelay(true);
                            let stream = async_io::Async::new(stream)?;
                            Ok(Accepted::new(
                                crate::parking::ParkableTcp::new(stream),
                                peer,
                            ))
                        }));
                    }
                }
            },
        }
    }
}

/// Implements the engine's runtime traits for a futures-io runtime, written once for smol and
/// async-std: [`Runtime`] (the given `spawn`, the `async-io` timer and clock, and on Unix
/// [`AsyncIoIdleLot`](crate::AsyncIoIdleLot) as its `idle_lot`, for a broker's parked
/// connections),
/// [`Adapt`](engine::Adapt) (any futures-io stream, through [`FuturesIo`]),
/// [`NetRuntime`](engine::NetRuntime), [`Bind`](engine::Bind) and
/// [`TcpConnect`](engine::TcpConnect) (its TCP listener, stream and address trait, whose
/// `bind`, `connect`, `accept`, `local_addr` and `set_nodelay` it calls; on Unix the listener
/// and the stream must be `AsFd`: a [`TcpAcceptor`] takes the listener's socket and accepts on
/// the reactor itself, so that a broker's connections can park, and a client's connections
/// go to the reactor whole through [`tcp_transport`], so that they read acknowledgements in
/// batches), [`FuturesTcp`],
/// [`FuturesDial`](crate::FuturesDial) and the engine's `Dial` (TLS, WebSocket and Unix
/// sockets by this crate's features, through [`dial`](crate::dial) and
/// [`listen`](crate::listen)).
///
/// A runtime of your own on smol's sockets (mqtt-streaming-async-std's `AsyncStdRuntime` is the same
/// with async-std's), named like the adapters' with `named_for_runtime!`:
///
/// ```
/// #[derive(Clone, Copy, Debug, Default)]
/// pub struct MyRuntime;
///
/// mqtt_streaming_smol::futures_runtime! {
///     runtime: MyRuntime,
///     spawn: |future| smol::spawn(future).detach(),
///     listener: smol::net::TcpListener,
///     stream: smol::net::TcpStream,
///     addrs: smol::net::AsyncToSocketAddrs,
/// }
/// mqtt_streaming_smol::named_for_runtime!(MyRuntime);
///
/// # fn main() -> std::io::Result<()> {
/// smol::block_on(async {
///     let server = Server::bind("127.0.0.1:0", mqtt_streaming_smol::ServerOptions::default()).await?;
///     assert!(server.local_addr()?.port() != 0);
///     server.shutdown().await;
///     Ok(())
/// })
/// # }
/// ```
#[macro_export]
macro_rules! futures_runtime {
    (
        runtime: $rt:ty,
        spawn: |$future:ident| $spawn:expr,
        listener: $listener:ty,
        stream: $stream:ty,
        addrs: $addrs:path $(,)?
    ) => {
        impl $crate::engine::Runtime for $rt {
            type Timer = $crate::AsyncIoTimer;

            fn now() -> ::std::time::Duration {
                $crate::AsyncIoTimer::now()
            }

            fn timer(&self) -> $crate::AsyncIoTimer {
                $crate::AsyncIoTimer::new()
            }

            fn spawn<F>(&self, $future: F)
            where
                F: ::std::future::Future<Output = ()> + ::std::marker::Send + 'static,
            {
                $spawn
            }

            #[cfg(unix)]
            fn idle_lot(
                &self,
            ) -> ::std::option::Option<::std::boxed::Box<dyn $crate::engine::IdleLot>> {
                $crate::AsyncIoIdleLot::boxed()
            }
        }

        impl<Io: $crate::Transport> $crate::engine::Adapt<Io> for $rt {
            type Transport = $crate::FuturesIo<Io>;

            fn adapt(transport: Io) -> $crate::FuturesIo<Io> {
                $crate::FuturesIo(transport)
            }
        }

        impl $crate::engine::NetRuntime for $rt {
            type TcpListener = $listener;

            fn listener(listener: $listener) -> ::std::boxed::Box<dyn $crate::engine::Listener> {
                ::std::boxed::Box::new($crate::TcpAcceptor::<Self>::new(listener))
            }
        }

        impl<A: $addrs> $crate::engine::Bind<A> for $rt {
            fn bind(addr: A) -> impl ::std::future::Future<Output = ::std::io::Result<$listener>> {
                <$listener>::bind(addr)
            }
        }

        impl<A: $addrs + ::std::marker::Send> $crate::engine::TcpConnect<A> for $rt
        where
            A::Iter: ::std::marker::Send,
        {
            type Stream = $crate::engine::BoxTransport;

            async fn connect(addr: A) -> ::std::io::Result<$crate::engine::BoxTransport> {
                let stream = <$stream>::connect(addr).await?;
                stream.set_nodelay(true)?;
                Ok($crate::tcp_transport::<Self>(stream))
            }
        }

        impl $crate::FuturesDial for $rt {
            fn connect_tcp(host: ::std::string::String, port: u16) -> $crate::IoFuture<$stream> {
                ::std::boxed::Box::pin(async move {
                    let stream = <$stream>::connect((host.as_str(), port)).await?;
                    stream.set_nodelay(true)?;
                    Ok(stream)
                })
            }

            fn bind_tcp(host: ::std::string::String, port: u16) -> $crate::IoFuture<$listener> {
                ::std::boxed::Box::pin(async move { <$listener>::bind((host.as_str(), port)).await })
            }
        }

        impl $crate::engine::Dial for $rt {
            fn dial(
                endpoint: &$crate::Endpoint,
                options: &$crate::TransportOptions,
            ) -> impl ::std::future::Future<
                Output = ::std::io::Result<$crate::engine::BoxTransport>,
            > + ::std::marker::Send {
                $crate::dial::<Self>(endpoint, options)
            }

            fn listen(
                endpoint: &$crate::Endpoint,
                options: &$crate::ListenOptions,
            ) -> impl ::std::future::Future<
                Output = ::std::io::Result<::std::boxed::Box<dyn $crate::engine::Listener>>,
            > + ::std::marker::Send {
                $crate::listen::<Self>(endpoint, options)
            }
        }

        impl $crate::FuturesTcp for $rt {
            type TcpListener = $listener;
            type TcpStream = $stream;

            fn local_addr(listener: &$listener) -> ::std::io::Result<::std::net::SocketAddr> {
                listener.local_addr()
            }

            fn accept(listener: ::std::sync::Arc<$listener>) -> $crate::AcceptFuture<$stream> {
                ::std::boxed::Box::pin(async move { listener.accept().await })
            }

            fn set_nodelay(stream: &$stream) -> ::std::io::Result<()> {
                stream.set_nodelay(true)
            }

            #[cfg(unix)]
            fn std_listener(
                listener: &$listener,
            ) -> ::std::io::Result<::std::net::TcpListener> {
                let fd = ::std::os::fd::AsFd::as_fd(listener).try_clone_to_owned()?;
                ::std::result::Result::Ok(::std::net::TcpListener::from(fd))
            }

            #[cfg(unix)]
            fn std_stream(stream: &$stream) -> ::std::io::Result<::std::net::TcpStream> {
                let fd = ::std::os::fd::AsFd::as_fd(stream).try_clone_to_owned()?;
                ::std::result::Result::Ok(::std::net::TcpStream::from(fd))
            }
        }
    };
}
