//! async-std skin over the MQTT drivers: the same client and server flow as `adapter-tokio`
//! and `adapter-smol`, with the same names and signatures, on async-std's tasks and sockets.
//!
//! **async-std is deprecated upstream in favour of smol.** This crate keeps working for
//! people who still run it; new code should depend on `adapter-smol` instead (the API is the
//! same, so switching is a change of crate name).
//!
//! Nothing here drives a connection: the one drive loop lives in `adapter-tokio`'s
//! runtime-generic engine, the futures-io entry points and the `async-io` timer and clock
//! (which async-std itself runs on) in `adapter-smol`. This crate adds [`AsyncStdRuntime`]
//! (`async_std::task::spawn`) and binds TCP with `async_std::net`.
//!
//! ```
//! use adapter_async_std::{connect_tcp, ClientOptions, ConnectionEvent, Server, ServerOptions};
//! use mqtt_proto::{ConnAckProperties, Connect, MqttString, ProtocolVersion, QoS, ReasonCode, TopicName};
//! use mqtt_session::Message;
//!
//! # fn main() -> Result<(), adapter_async_std::Error> {
//! async_std::task::block_on(async {
//!     let server = Server::bind("127.0.0.1:0", ServerOptions::default()).await?;
//!     let addr = server.local_addr()?;
//!     let serving = async_std::task::spawn(async move {
//!         let mut conn = server.accept().await?;
//!         while let Some(event) = conn.events().recv().await {
//!             if let ConnectionEvent::Connect(_) = event {
//!                 conn.accept(ConnAckProperties::default(), None).await?;
//!             }
//!         }
//!         Ok::<_, adapter_async_std::Error>(())
//!     });
//!     let connect = Connect::new(ProtocolVersion::V3_1_1, MqttString::new("doc").unwrap());
//!     let (client, _events) = connect_tcp(addr, ClientOptions::new(connect)).await?;
//!     let topic = TopicName::new("hello").unwrap();
//!     let outcome = client.publish(Message::new(topic, QoS::AtLeastOnce, "hi")).await?;
//!     assert_eq!(outcome.reason_code, ReasonCode::Success); // the server's PUBACK
//!     client.disconnect().await?;
//!     serving.await
//! })
//! # }
//! ```
//!
//! # Broker
//!
//! [`BrokerServer`] is adapter-tokio's broker server on async-std, with the same methods
//! (`BrokerServer::bind("127.0.0.1:1883", BrokerOptions::default()).await?.spawn()` gives a
//! [`BrokerHandle`]; `handle.shutdown().await` stops it gracefully). Its accept loop is
//! adapter-smol's over async-std's listener.
//!
//! # Cancel safety
//!
//! As in `adapter-tokio` (the handles are the same types): a command is handed over on the
//! first poll unless its channel is full; dropping a future afterwards only discards the
//! outcome, never the operation. `recv` on the event streams never loses an event.
//! [`Server::accept`] is cancel safe (async-std's listener accepts only when readable);
//! dropping [`connect`]/[`connect_tcp`] closes the connection again.

#![forbid(unsafe_code)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use adapter_smol::runtime::{
    self, compat, AcceptFuture, Adapt, AsyncIoTimer, Bind, Compat, FuturesTcp, Listener,
    NetRuntime, Runtime, ServerGroup, TcpAcceptor,
};
use async_std::net::{TcpListener, TcpStream, ToSocketAddrs};

/// Session resumption, `adapter_smol::Reconnect` itself: `reconnect` and `reconnect_with` take
/// any futures-io transport (`async_std::net::TcpStream` included); `reconnect_tcp` connects
/// with `async-net` on the `async-io` reactor async-std runs on, and takes the same address
/// forms (`"host:port"`, `SocketAddr`, `(host, port)`).
pub use adapter_smol::Reconnect;
pub use adapter_smol::{
    BrokerNotice, BrokerNotices, BrokerOptions, Client, ClientEvents, ClientOptions,
    ConnectionEvent, ConnectionEvents, ConnectionHandle, DetachedSession, Error, Event,
    PublishOutcome, PublishReceipt, ServerConnection, ServerOptions, Transport, TryPublishError,
};

/// An MQTT broker on async-std: the `mqtt-session` broker core served over a TCP listener
/// (optional) and any transports handed to [`BrokerHandle::serve_transport`], as
/// `adapter_tokio::BrokerServer` (methods: `adapter_smol::runtime::BrokerServerOn`). Its tasks
/// are spawned with `async_std::task::spawn`.
pub type BrokerServer<H = mqtt_session::broker::AllowAll> =
    runtime::BrokerServerOn<AsyncStdRuntime, H>;

/// A cheap, cloneable handle to a running [`BrokerServer`] (methods:
/// `adapter_smol::runtime::BrokerHandleOn`).
pub type BrokerHandle = runtime::BrokerHandleOn<AsyncStdRuntime>;

/// The async-std runtime: drivers are spawned with `async_std::task::spawn`; the timer and
/// clock are `async-io`'s (async-std's own reactor), shared with `adapter_smol::SmolRuntime`.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStdRuntime;

impl Runtime for AsyncStdRuntime {
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
        // Dropping the handle detaches the task.
        drop(async_std::task::spawn(future));
    }
}

impl<Io: Transport> Adapt<Io> for AsyncStdRuntime {
    type Transport = Compat<Io>;

    fn adapt(transport: Io) -> Compat<Io> {
        compat(transport)
    }
}

impl NetRuntime for AsyncStdRuntime {
    type TcpListener = TcpListener;

    fn listener(listener: TcpListener) -> Box<dyn Listener> {
        Box::new(TcpAcceptor::<Self>::new(listener))
    }
}

impl<A: ToSocketAddrs> Bind<A> for AsyncStdRuntime {
    fn bind(addr: A) -> impl Future<Output = io::Result<TcpListener>> {
        TcpListener::bind(addr)
    }
}

impl FuturesTcp for AsyncStdRuntime {
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

/// Connects over `transport`: sends the CONNECT and waits for the CONNACK, the driver running
/// on async-std. As `adapter_tokio::connect`.
pub async fn connect<Io: Transport>(
    transport: Io,
    options: ClientOptions,
) -> Result<(Client, ClientEvents), Error> {
    runtime::connect_on(AsyncStdRuntime, transport, options).await
}

/// Connects over TCP to `addr` with TCP_NODELAY set, then as [`connect`].
pub async fn connect_tcp(
    addr: impl ToSocketAddrs,
    options: ClientOptions,
) -> Result<(Client, ClientEvents), Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    connect(stream, options).await
}

/// Serves one MQTT connection over any transport, the driver running on async-std.
pub fn serve_connection<Io: Transport>(
    transport: Io,
    options: impl Into<ServerOptions>,
) -> ServerConnection {
    runtime::serve_connection_on(AsyncStdRuntime, transport, options)
}

/// A TCP listener that serves MQTT connections on async-std, as `adapter_tokio::Server`.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    group: ServerGroup<AsyncStdRuntime>,
}

impl Server {
    /// Listens on `addr` (port 0 for an ephemeral port).
    pub async fn bind(
        addr: impl ToSocketAddrs,
        options: impl Into<ServerOptions>,
    ) -> io::Result<Self> {
        Ok(Self::from_listener(TcpListener::bind(addr).await?, options))
    }

    /// Serves connections from a listener bound elsewhere.
    pub fn from_listener(listener: TcpListener, options: impl Into<ServerOptions>) -> Self {
        let group = ServerGroup::new(AsyncStdRuntime, options);
        Self { listener, group }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Waits for the next TCP connection, sets TCP_NODELAY on it and starts its driver.
    /// Cancel safe.
    pub async fn accept(&self) -> io::Result<ServerConnection> {
        let (stream, peer) = self.listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok(self.group.serve(stream, Some(peer)))
    }

    /// Serves a connection that arrived some other way (TLS...) as part of this server.
    pub fn serve<Io: Transport>(&self, transport: Io) -> ServerConnection {
        self.group.serve(transport, None)
    }

    /// Shuts down gracefully: stops listening, closes every connection (MQTT 5 clients get
    /// DISCONNECT 0x8B Server shutting down) and waits until their transports are closed.
    pub async fn shutdown(self) {
        drop(self.listener);
        self.group.shutdown().await;
    }
}
