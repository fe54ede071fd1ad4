//! The transports on the futures-io runtimes (smol here, async-std in its adapter), on
//! `futures-io` and `async-io` alone: TCP through the runtime's own sockets ([`FuturesDial`];
//! a client's as [`tcp_transport`] gives it),
//! TLS with futures-rustls (feature `tls`), WebSocket with async-tungstenite's runtime-free
//! core (feature `websocket`), Unix sockets on `async-io` (feature `unix`, which both runtimes
//! run on), and their listeners. [`futures_runtime!`](crate::futures_runtime) implements the
//! engine's `Dial` with [`dial`] and [`listen`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use mqtt_streaming_tokio::engine::{unsupported, Accepted, BoxTransport, CloseTolerant, Listener};
use mqtt_streaming_tokio::{Endpoint, ListenOptions, Scheme, TransportOptions};

use crate::futures_rt::{tcp_transport, AcceptFuture, FuturesIo, FuturesTcp, Transport};

/// A boxed future of the runtime's sockets.
pub type IoFuture<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

/// TCP by host name and port on a futures-io runtime: what [`dial`] and [`listen`] need
/// beyond [`FuturesTcp`]. [`futures_runtime!`](crate::futures_runtime) implements it.
pub trait FuturesDial: FuturesTcp + Default {
    /// Connects to `host:port` (resolving the name) with TCP_NODELAY set.
    fn connect_tcp(host: String, port: u16) -> IoFuture<Self::TcpStream>;

    /// Binds a TCP listener to `host:port`.
    fn bind_tcp(host: String, port: u16) -> IoFuture<Self::TcpListener>;
}

/// Any futures-io stream (TCP, TLS over TCP, Unix), type-erased.
type Stream = Box<dyn Transport>;

async fn within<T>(
    limit: Duration,
    what: &str,
    future: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let mut future = std::pin::pin!(future);
    let mut timer = async_io::Timer::after(limit);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(output);
        }
        ready!(Pin::new(&mut timer).poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} timed out"),
        )))
    })
    .await
}

#[cfg(feature = "tls")]
async fn tls_connect(
    endpoint: &Endpoint,
    options: &TransportOptions,
    stream: Stream,
) -> io::Result<Stream> {
    let tls = options.tls_client_or_default()?;
    let name = tls.server_name_for(&endpoint.host)?;
    let connector = futures_rustls::TlsConnector::from(tls.config().clone());
    Ok(Box::new(connector.connect(name, stream).await?))
}

async fn dial_endpoint<R: FuturesDial>(
    endpoint: &Endpoint,
    options: &TransportOptions,
) -> io::Result<BoxTransport> {
    let _ = options;
    let tcp = || R::connect_tcp(endpoint.host.clone(), endpoint.port);
    match endpoint.scheme {
        Scheme::Mqtt => Ok(tcp_transport::<R>(tcp().await?)),
        Scheme::Mqtts => {
            #[cfg(feature = "tls")]
            {
                let stream = tls_connect(endpoint, options, Box::new(tcp().await?)).await?;
                Ok(Box::new(CloseTolerant(FuturesIo(stream))))
            }
            #[cfg(not(feature = "tls"))]
            Err(unsupported(endpoint, "tls"))
        }
        Scheme::Ws => {
            #[cfg(feature = "websocket")]
            {
                let ws = mqtt_streaming_tokio::WsTransport::connect(
                    tcp().await?,
                    &endpoint.authority(),
                    &endpoint.path,
                    false,
                    options.ws_options(),
                )
                .await?;
                Ok(Box::new(ws))
            }
            #[cfg(not(feature = "websocket"))]
            Err(unsupported(endpoint, "websocket"))
        }
        Scheme::Wss => {
            #[cfg(all(feature = "tls", feature = "websocket"))]
            {
                let stream = tls_connect(endpoint, options, Box::new(tcp().await?)).await?;
                let ws = mqtt_streaming_tokio::WsTransport::connect(
                    stream,
                    &endpoint.authority(),
                    &endpoint.path,
                    true,
                    options.ws_options(),
                )
                .await?;
                Ok(Box::new(ws))
            }
            #[cfg(not(all(feature = "tls", feature = "websocket")))]
            Err(unsupported(endpoint, "tls` and `websocket"))
        }
        Scheme::Unix => {
            #[cfg(all(unix, feature = "unix"))]
            {
                let stream =
                    async_io::Async::<std::os::unix::net::UnixStream>::connect(&endpoint.path)
                        .await?;
                Ok(Box::new(FuturesIo(stream)))
            }
            #[cfg(not(all(unix, feature = "unix")))]
            Err(unsupported(endpoint, "unix"))
        }
        _ => Err(unsupported(endpoint, "?")),
    }
}

/// Connects to `endpoint` on the runtime `R` and runs its handshakes, within the options'
/// connect timeout (the engine's `Dial::dial` for the futures-io runtimes).
pub async fn dial<R: FuturesDial>(
    endpoint: &Endpoint,
    options: &TransportOptions,
) -> io::Result<BoxTransport> {
    within(
        options.timeout(),
        "connecting",
        dial_endpoint::<R>(endpoint, options),
    )
    .await
}

/// What a listener runs on each accepted stream before MQTT.
#[derive(Clone, Default)]
struct Layers {
    #[cfg(feature = "tls")]
    tls: Option<futures_rustls::TlsAcceptor>,
    #[cfg(feature = "websocket")]
    ws: Option<mqtt_streaming_tokio::WsOptions>,
}

impl Layers {
    fn is_empty(&self) -> bool {
        let empty = true;
        #[cfg(feature = "tls")]
        let empty = empty && self.tls.is_none();
        #[cfg(feature = "websocket")]
        let empty = empty && self.ws.is_none();
        empty
    }

    async fn run(self, stream: Stream) -> io::Result<BoxTransport> {
        #[cfg(feature = "tls")]
        let stream: Stream = match self.tls {
            Some(acceptor) => Box::new(acceptor.accept(stream).await?),
            None => stream,
        };
        #[cfg(feature = "websocket")]
        if let Some(ws) = self.ws {
            return Ok(Box::new(
                mqtt_streaming_tokio::WsTransport::accept(stream, &ws).await?,
            ));
        }
        Ok(Box::new(CloseTolerant(FuturesIo(stream))))
    }
}

#[cfg(all(unix, feature = "unix"))]
type UnixListener = async_io::Async<std::os::unix::net::UnixListener>;

enum Raw<R: FuturesTcp> {
    Tcp(Arc<R::TcpListener>),
    #[cfg(all(unix, feature = "unix"))]
    Unix(Arc<UnixListener>),
}

/// A futures-io listener whose connections go through TLS and/or WebSocket handshakes first
/// (or a Unix socket's listener): one accept at a time, kept between polls.
struct LayeredListener<R: FuturesTcp> {
    raw: Raw<R>,
    pending: Option<AcceptFuture<Stream>>,
    layers: Layers,
    handshake_timeout: Duration,
}

impl<R: FuturesTcp> Listener for LayeredListener<R> {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.raw {
            Raw::Tcp(listener) => R::local_addr(listener),
            #[cfg(all(unix, feature = "unix"))]
            Raw::Unix(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a Unix socket has no IP address",
            )),
        }
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted>> {
        let raw = &self.raw;
        let pending = self.pending.get_or_insert_with(|| match raw {
            Raw::Tcp(listener) => {
                let accept = R::accept(listener.clone());
                Box::pin(async move {
                    let (stream, peer) = accept.await?;
                    let _ = R::set_nodelay(&stream);
                    Ok((Box::new(stream) as Stream, peer))
                })
            }
            #[cfg(all(unix, feature = "unix"))]
            Raw::Unix(listener) => {
                let listener = listener.clone();
                Box::pin(async move {
                    let (stream, _) = listener.accept().await?;
                    // No IP address: the peer is reported as 0.0.0.0:0 only inside this
                    // future and dropped below.
                    Ok((
                        Box::new(stream) as Stream,
                        SocketAddr::from(([0, 0, 0, 0], 0)),
                    ))
                })
            }
        });
        let accepted = ready!(pending.as_mut().poll(cx));
        self.pending = None;
        let (stream, peer) = accepted?;
        let peer = match self.raw {
            Raw::Tcp(_) => Some(peer),
            #[cfg(all(unix, feature = "unix"))]
            Raw::Unix(_) => None,
        };
        if self.layers.is_empty() {
            return Poll::Ready(Ok(Accepted::with_peer(
                CloseTolerant(FuturesIo(stream)),
                peer,
            )));
        }
        let layers = self.layers.clone();
        let limit = self.handshake_timeout;
        Poll::Ready(Ok(Accepted::handshaking(
            async move { within(limit, "the TLS/WebSocket handshake", layers.run(stream)).await },
            peer,
        )))
    }
}

/// Binds a listener for `endpoint` on the runtime `R` (the engine's `Dial::listen` for the
/// futures-io runtimes): plain TCP is the runtime's own listener; TLS and WebSocket
/// connections run their handshakes when first read, within the options' handshake timeout.
pub async fn listen<R: FuturesDial>(
    endpoint: &Endpoint,
    options: &ListenOptions,
) -> io::Result<Box<dyn Listener>> {
    let _ = options;
    #[allow(unused_mut)]
    let mut layers = Layers::default();
    let raw = match endpoint.scheme {
        Scheme::Mqtt => {
            let listener = R::bind_tcp(endpoint.host.clone(), endpoint.port).await?;
            return Ok(Box::new(crate::futures_rt::TcpAcceptor::<R>::new(listener)));
        }
        Scheme::Unix => {
            #[cfg(all(unix, feature = "unix"))]
            {
                Raw::Unix(Arc::new(UnixListener::bind(&endpoint.path)?))
            }
            #[cfg(not(all(unix, feature = "unix")))]
            return Err(unsupported(endpoint, "unix"));
        }
        _ => {
            if endpoint.scheme.is_tls() {
                #[cfg(feature = "tls")]
                {
                    let tls = options.tls_server(endpoint)?;
                    layers.tls = Some(futures_rustls::TlsAcceptor::from(tls.config().clone()));
                }
                #[cfg(not(feature = "tls"))]
                return Err(unsupported(endpoint, "tls"));
            }
            if endpoint.scheme.is_websocket() {
                #[cfg(feature = "websocket")]
                {
                    layers.ws = Some(options.ws_options().clone());
                }
                #[cfg(not(feature = "websocket"))]
                return Err(unsupported(endpoint, "websocket"));
            }
            Raw::Tcp(Arc::new(
                R::bind_tcp(endpoint.host.clone(), endpoint.port).await?,
            ))
        }
    };
    Ok(Box::new(LayeredListener::<R> {
        raw,
        pending: None,
        layers,
        handshake_timeout: options.handshake_time(),
    }))
}
