//! Layer 11 (feature `tokio-runtime`): the transports on tokio. [`Dial`] for
//! [`TokioRuntime`]: TCP; TLS with tokio-rustls (feature `tls`); WebSocket through a small
//! tokio-to-futures-io adapter (feature `websocket`); Unix sockets (feature `unix`); their
//! listeners (each accepted connection's handshakes run when the connection is first read,
//! bounded in time); and `connect_url`, `connect_endpoint`, `listen_url`, `listen_endpoint` named for
//! tokio. Imports from the layers below.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
#[cfg(feature = "websocket")]
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

#[allow(unused_imports)]
use crate::dial::unsupported;
use crate::dial::{Dial, ListenOptions, TransportOptions};
use crate::endpoint::{Endpoint, Scheme};
use crate::net::{Accepted, Listener};
use crate::rewrite::{ConnectRewrite, RewriteConnect};
use crate::tokio_rt::{Client, TokioIo, TokioRuntime, Transport};
#[cfg(all(feature = "tls", any(target_os = "linux", target_os = "android")))]
use crate::tokio_tls_reads::{RecordReads, TlsClientTcp};
use crate::transport::{BoxTransport, CloseTolerant};
#[cfg(feature = "websocket")]
use crate::ws::{WsOptions, WsTransport};

/// Any tokio stream (TCP, TLS over TCP, Unix), type-erased.
type Stream = Box<dyn Transport>;

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

async fn within<T>(
    limit: Duration,
    what: &str,
    future: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| Err(timed_out(what)))
}

async fn tcp(endpoint: &Endpoint) -> io::Result<TcpStream> {
    let stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Runs a client's TLS handshake over `stream` for `endpoint`, with the options' TLS
/// configuration (or the default one).
#[cfg(feature = "tls")]
async fn tls_connect<S>(
    endpoint: &Endpoint,
    options: &TransportOptions,
    stream: S,
) -> io::Result<tokio_rustls::client::TlsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let tls = options.tls_client_or_default()?;
    let name = tls.server_name_for(&endpoint.host)?;
    let connector = tokio_rustls::TlsConnector::from(tls.config().clone());
    connector.connect(name, stream).await
}

async fn dial_endpoint(
    endpoint: &Endpoint,
    options: &TransportOptions,
) -> io::Result<BoxTransport> {
    let _ = options;
    match endpoint.scheme {
        Scheme::Mqtt => Ok(Box::new(TokioIo(tcp(endpoint).await?))),
        Scheme::Mqtts => {
            // On Linux the session reads acknowledgements in batches, as plain TCP does.
            #[cfg(all(feature = "tls", any(target_os = "linux", target_os = "android")))]
            {
                let socket = RecordReads::new(tcp(endpoint).await?);
                let stream = tls_connect(endpoint, options, socket).await?;
                Ok(Box::new(CloseTolerant(TlsClientTcp(TokioIo(stream)))))
            }
            #[cfg(all(feature = "tls", not(any(target_os = "linux", target_os = "android"))))]
            {
                let stream = tls_connect(endpoint, options, tcp(endpoint).await?).await?;
                Ok(Box::new(CloseTolerant(TokioIo(stream))))
            }
            #[cfg(not(feature = "tls"))]
            Err(unsupported(endpoint, "tls"))
        }
        Scheme::Ws => {
            #[cfg(feature = "websocket")]
            {
                let stream = Compat(tcp(endpoint).await?);
                let ws = WsTransport::connect(
                    stream,
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
                let stream = tls_connect(endpoint, options, tcp(endpoint).await?).await?;
                let ws = WsTransport::connect(
                    Compat(stream),
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
                let stream = tokio::net::UnixStream::connect(&endpoint.path).await?;
                Ok(Box::new(TokioIo(stream)))
            }
            #[cfg(not(all(unix, feature = "unix")))]
            Err(unsupported(endpoint, "unix"))
        }
    }
}

/// What a listener runs on each accepted stream before MQTT.
#[derive(Clone, Default)]
struct Layers {
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
    #[cfg(feature = "websocket")]
    ws: Option<WsOptions>,
    rewrite: Option<(ConnectRewrite, usize)>,
}

impl Layers {
    fn is_empty(&self) -> bool {
        let empty = self.rewrite.is_none();
        #[cfg(feature = "tls")]
        let empty = empty && self.tls.is_none();
        #[cfg(feature = "websocket")]
        let empty = empty && self.ws.is_none();
        empty
    }

    async fn run(self, stream: Stream) -> io::Result<BoxTransport> {
        #[allow(unused_mut)]
        let mut identity: Option<String> = None;
        #[cfg(feature = "tls")]
        let stream: Stream = match self.tls {
            Some(acceptor) => {
                let tls = acceptor.accept(stream).await?;
                if self.rewrite.is_some() {
                    identity = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|leaf| crate::tls::certificate_common_name(leaf));
                }
                Box::new(tls)
            }
            None => stream,
        };
        #[cfg(feature = "websocket")]
        let transport: BoxTransport = match self.ws {
            Some(ws) => Box::new(WsTransport::accept(Compat(stream), &ws).await?),
            None => Box::new(CloseTolerant(TokioIo(stream))),
        };
        #[cfg(not(feature = "websocket"))]
        let transport: BoxTransport = Box::new(CloseTolerant(TokioIo(stream)));
        Ok(match self.rewrite {
            Some((rewrite, limit)) => {
                Box::new(RewriteConnect::new(transport, identity, rewrite, limit))
            }
            None => transport,
        })
    }
}

enum Raw {
    Tcp(TcpListener),
    #[cfg(all(unix, feature = "unix"))]
    Unix(tokio::net::UnixListener),
}

impl Raw {
    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Stream, Option<SocketAddr>)>> {
        match self {
            Raw::Tcp(listener) => {
                let (stream, peer) = ready!(TcpListener::poll_accept(listener, cx))?;
                let _ = stream.set_nodelay(true);
                Poll::Ready(Ok((Box::new(stream), Some(peer))))
            }
            #[cfg(all(unix, feature = "unix"))]
            Raw::Unix(listener) => {
                let (stream, _) = ready!(listener.poll_accept(cx))?;
                Poll::Ready(Ok((Box::new(stream), None)))
            }
        }
    }
}

/// A tokio listener whose connections go through TLS and/or WebSocket handshakes first (or
/// a Unix socket's listener).
struct LayeredListener {
    raw: Raw,
    layers: Layers,
    handshake_timeout: Duration,
}

impl Listener for LayeredListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.raw {
            Raw::Tcp(listener) => listener.local_addr(),
            #[cfg(all(unix, feature = "unix"))]
            Raw::Unix(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a Unix socket has no IP address",
            )),
        }
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted>> {
        let (stream, peer) = ready!(self.raw.poll_accept(cx))?;
        if self.layers.is_empty() {
            return Poll::Ready(Ok(Accepted::with_peer(TokioIo(stream), peer)));
        }
        let layers = self.layers.clone();
        let limit = self.handshake_timeout;
        Poll::Ready(Ok(Accepted::handshaking(
            async move { within(limit, "the TLS/WebSocket handshake", layers.run(stream)).await },
            peer,
        )))
    }
}

async fn bind(endpoint: &Endpoint, options: &ListenOptions) -> io::Result<Box<dyn Listener>> {
    let mut layers = Layers {
        #[cfg(feature = "tls")]
        tls: None,
        #[cfg(feature = "websocket")]
        ws: None,
        rewrite: options
            .connect_rewrite()
            .map(|(rewrite, limit)| (rewrite.clone(), limit)),
    };
    let raw = match endpoint.scheme {
        Scheme::Mqtt if layers.rewrite.is_none() => {
            // Plain TCP: the runtime's own listener (reader and writer halves, no lock).
            let listener = TcpListener::bind((endpoint.host.as_str(), endpoint.port)).await?;
            return Ok(Box::new(listener));
        }
        Scheme::Mqtt => Raw::Tcp(TcpListener::bind((endpoint.host.as_str(), endpoint.port)).await?),
        Scheme::Unix => {
            #[cfg(all(unix, feature = "unix"))]
            {
                Raw::Unix(tokio::net::UnixListener::bind(&endpoint.path)?)
            }
            #[cfg(not(all(unix, feature = "unix")))]
            return Err(unsupported(endpoint, "unix"));
        }
        Scheme::Mqtts | Scheme::Ws | Scheme::Wss => {
            if endpoint.scheme.is_tls() {
                #[cfg(feature = "tls")]
                {
                    let tls = options.tls_server(endpoint)?;
                    layers.tls = Some(tokio_rustls::TlsAcceptor::from(tls.config().clone()));
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
            Raw::Tcp(TcpListener::bind((endpoint.host.as_str(), endpoint.port)).await?)
        }
    };
    let _ = &mut layers;
    Ok(Box::new(LayeredListener {
        raw,
        layers,
        handshake_timeout: options.handshake_time(),
    }))
}

impl Dial for TokioRuntime {
    fn dial(
        endpoint: &Endpoint,
        options: &TransportOptions,
    ) -> impl Future<Output = io::Result<BoxTransport>> + Send {
        within(
            options.timeout(),
            "connecting",
            dial_endpoint(endpoint, options),
        )
    }

    fn listen(
        endpoint: &Endpoint,
        options: &ListenOptions,
    ) -> impl Future<Output = io::Result<Box<dyn Listener>>> + Send {
        bind(endpoint, options)
    }
}

/// A tokio stream seen through futures-io's traits (for async-tungstenite's runtime-free
/// core).
#[cfg(feature = "websocket")]
struct Compat<T>(T);

#[cfg(feature = "websocket")]
impl<T: tokio::io::AsyncRead + Unpin> futures_io::AsyncRead for Compat<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = tokio::io::ReadBuf::new(buf);
        ready!(Pin::new(&mut self.0).poll_read(cx, &mut buf))?;
        Poll::Ready(Ok(buf.filled().len()))
    }
}

#[cfg(feature = "websocket")]
impl<T: tokio::io::AsyncWrite + Unpin> futures_io::AsyncWrite for Compat<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

crate::transports_for_runtime!(TokioRuntime);
