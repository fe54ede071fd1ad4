//! Layer 10, the top (feature `tokio-runtime`): everything that is tokio's. [`TokioRuntime`]
//! (tokio's spawn, timer and clock), [`TokioIo`] (tokio's `AsyncRead + AsyncWrite` as the
//! engine's transport), tokio's TCP listener and connect, and the engine named for tokio
//! (`Client`, `Server`, `BrokerServer`, `connect`... by `named_for_runtime!`). Imports from
//! the layers below; nothing imports it.
//!
//! The broker on tokio, start to end:
//!
//! ```
//! use mqtt_streaming_tokio::{connect_tcp, BrokerServer, ClientOptions};
//! use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicFilter, TopicName};
//! use mqtt_streaming_session::broker::BrokerConfig;
//! use mqtt_streaming_session::{Message, SubscribeRequest};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = BrokerServer::bind("127.0.0.1:0", BrokerConfig::default()).await?;
//! let addr = broker.local_addr()?;
//! let handle = broker.spawn();
//!
//! let connect = Connect::new(ProtocolVersion::V5, MqttString::new("doc")?);
//! let (client, mut events) = connect_tcp(addr, ClientOptions::new(connect)).await?;
//! client.subscribe(SubscribeRequest::new(TopicFilter::new("a/#")?, QoS::ExactlyOnce)).await?;
//! client.publish(Message::new(TopicName::new("a/b")?, QoS::ExactlyOnce, "hi")).await?;
//! # let _ = &mut events;
//! client.disconnect().await?;
//!
//! handle.shutdown().await; // every connection told and closed, the listener gone
//! # Ok(())
//! # }
//! ```

use std::any::Any;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::time::{Instant, Sleep};

use crate::net::{Accepted, Adapt, Bind, Listener, NetRuntime, TcpConnect};
use crate::runtime::{Runtime, Timer};

/// The tokio runtime: `tokio::spawn` on the current runtime, tokio's timer and tokio's
/// clock (so tests with a paused clock run the drivers faster than real time).
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioRuntime;

/// [`TokioRuntime`]'s timer: a boxed `tokio::time::Sleep`, reset in place.
#[derive(Debug)]
pub struct TokioTimer {
    sleep: Pin<Box<Sleep>>,
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

fn epoch() -> Instant {
    *EPOCH.get_or_init(|| {
        // Set back a little, so that a runtime with a paused clock created just before the
        // epoch was taken still reads times after it.
        let now = Instant::now();
        [3600, 60, 1]
            .into_iter()
            .find_map(|secs| now.checked_sub(Duration::from_secs(secs)))
            .unwrap_or(now)
    })
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

impl Runtime for TokioRuntime {
    type Timer = TokioTimer;

    fn now() -> Duration {
        Instant::now().saturating_duration_since(epoch())
    }

    fn timer(&self) -> TokioTimer {
        TokioTimer {
            sleep: Box::pin(tokio::time::sleep_until(far_future())),
        }
    }

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(future);
    }

    #[cfg(unix)]
    fn idle_lot(&self) -> Option<Box<dyn crate::runtime::IdleLot>> {
        let lot = crate::tokio_parking::TokioIdleLot::new().ok()?;
        Some(Box::new(lot))
    }
}

impl Timer for TokioTimer {
    fn reset(&mut self, deadline: Duration) {
        let at = epoch().checked_add(deadline).unwrap_or_else(far_future);
        self.sleep.as_mut().reset(at);
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.sleep.as_mut().poll(cx)
    }
}

/// What the tokio entry points take: TCP, TLS (`tokio-rustls`), a Unix socket,
/// `tokio::io::duplex`... anything tokio's `AsyncRead + AsyncWrite + Unpin + Send + 'static`.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for T {}

/// A tokio stream as the engine's transport ([`engine::Transport`](crate::engine::Transport)).
/// The entry points wrap what they are given; use it to hand a tokio stream to the generic
/// engine yourself.
#[derive(Debug)]
pub struct TokioIo<T>(pub T);

impl<T: Transport> crate::transport::Transport for TokioIo<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        // tokio reads into uninitialised memory: no zeroing of the spare capacity.
        pin!(self.0.read_buf(buf)).poll(cx)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // tokio's streams gather in one call where they can (`writev` on sockets) and write
        // the first buffer otherwise.
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Sockets tell their readiness without a buffer, so that an idle connection holds
        // none; other streams (TLS, pipes) say `Ready` and the read itself waits.
        let io: &dyn Any = &self.0;
        if let Some(stream) = io.downcast_ref::<TcpStream>() {
            return stream.poll_read_ready(cx);
        }
        #[cfg(unix)]
        if let Some(stream) = io.downcast_ref::<tokio::net::UnixStream>() {
            return stream.poll_read_ready(cx);
        }
        Poll::Ready(Ok(()))
    }

    fn set_read_low_water(&mut self, bytes: usize) -> bool {
        // TCP on Linux only: Unix sockets ignore the mark for readiness, and a TLS stream's
        // socket carries records, not the packets the driver counts.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use std::os::fd::AsFd;
            let io: &dyn Any = &self.0;
            if let Some(stream) = io.downcast_ref::<TcpStream>() {
                return crate::socket_options::set_receive_low_water(stream.as_fd(), bytes).is_ok();
            }
        }
        let _ = bytes;
        false
    }
}

impl<Io: Transport> Adapt<Io> for TokioRuntime {
    type Transport = TokioIo<Io>;

    fn adapt(transport: Io) -> TokioIo<Io> {
        TokioIo(transport)
    }
}

impl NetRuntime for TokioRuntime {
    type TcpListener = TcpListener;

    fn listener(listener: TcpListener) -> Box<dyn Listener> {
        Box::new(listener)
    }
}

impl<A: ToSocketAddrs> Bind<A> for TokioRuntime {
    fn bind(addr: A) -> impl Future<Output = io::Result<TcpListener>> {
        TcpListener::bind(addr)
    }
}

impl<A: ToSocketAddrs + Send> TcpConnect<A> for TokioRuntime {
    type Stream = TokioIo<TcpStream>;

    async fn connect(addr: A) -> io::Result<TokioIo<TcpStream>> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(TokioIo(stream))
    }
}

impl Listener for TcpListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        TcpListener::local_addr(self)
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted>> {
        TcpListener::poll_accept(self, cx).map_ok(|(stream, peer)| {
            // Nagle would hold small acks back; every packet leaves at once. The stream stays
            // whole (one task reads and writes it) and reports its readiness, so an idle
            // broker connection holds no read buffer; on Unix it can be parked.
            let _ = stream.set_nodelay(true);
            #[cfg(unix)]
            return Accepted::new(crate::tokio_parking::ParkableTcp::new(stream), peer);
            #[cfg(not(unix))]
            Accepted::new(TokioIo(stream), peer)
        })
    }
}

crate::named_for_runtime!(TokioRuntime);
