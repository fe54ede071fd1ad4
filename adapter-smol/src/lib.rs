//! smol drivers for the `mqtt-session` state machines: the same MQTT client and server flow as
//! `adapter-tokio`, with the same names and signatures, over any
//! [`futures_io::AsyncRead`] + [`futures_io::AsyncWrite`] transport.
//!
//! There is one drive loop in the workspace, in `adapter-tokio`'s runtime-generic engine
//! (built here with `default-features = false`: tokio's channels and I/O traits only, no tokio
//! runtime). This crate supplies [`SmolRuntime`] (smol's spawn, `async-io`'s timer, the
//! standard clock), adapts futures-io streams with `tokio_util::compat`, and binds TCP with
//! `async-net`. Every type you hold ([`Client`], [`ClientEvents`], [`ServerConnection`],
//! [`Error`]...) is the very type `adapter-tokio` exports, so code written against one adapter
//! compiles against the other by changing the crate name.
//!
//! ```
//! use adapter_smol::{connect_tcp, ClientOptions, ConnectionEvent, Event, Server, ServerOptions};
//! use mqtt_proto::{AckProperties, ConnAckProperties, Connect, MqttString, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};
//! use mqtt_session::{Message, SubscribeRequest};
//!
//! # fn main() -> Result<(), adapter_smol::Error> {
//! smol::block_on(async {
//!     // The server: accept everyone, grant every subscription, echo every message.
//!     let server = Server::bind("127.0.0.1:0", ServerOptions::default()).await?;
//!     let addr = server.local_addr()?;
//!     let serving = smol::spawn(async move {
//!         let mut conn = server.accept().await?;
//!         while let Some(event) = conn.events().recv().await {
//!             match event {
//!                 ConnectionEvent::Connect(_) => conn.accept(ConnAckProperties::default(), None).await?,
//!                 ConnectionEvent::Subscribe(subscribe) => {
//!                     let codes = subscribe.subscriptions.iter().map(|s| ReasonCode::granted(s.options.qos)).collect();
//!                     conn.suback(subscribe.packet_id, codes, AckProperties::default()).await?;
//!                 }
//!                 ConnectionEvent::Message { publish, .. } => {
//!                     let echo = Message::new(publish.topic, publish.qos_pid.qos(), publish.payload);
//!                     conn.begin_publish(echo).await?;
//!                 }
//!                 _ => {}
//!             }
//!         }
//!         Ok::<_, adapter_smol::Error>(())
//!     });
//!
//!     // The client, over loopback TCP.
//!     let connect = Connect::new(ProtocolVersion::V5, MqttString::new("doc").unwrap());
//!     let (client, mut events) = connect_tcp(addr, ClientOptions::new(connect)).await?;
//!     let filter = TopicFilter::new("hello/#").unwrap();
//!     client.subscribe(SubscribeRequest::new(filter, QoS::ExactlyOnce)).await?;
//!     let topic = TopicName::new("hello/world").unwrap();
//!     let outcome = client.publish(Message::new(topic, QoS::ExactlyOnce, "hi")).await?;
//!     assert_eq!(outcome.reason_code, ReasonCode::Success); // the server's PUBCOMP
//!     while let Some(event) = events.recv().await {
//!         if let Event::Message { publish, .. } = event {
//!             assert_eq!(&publish.payload[..], b"hi");
//!             break;
//!         }
//!     }
//!     client.disconnect().await?;
//!     serving.await
//! })
//! # }
//! ```
//!
//! # Broker
//!
//! [`BrokerServer`] is adapter-tokio's broker server on smol (the `mqtt-session` broker core:
//! sessions, routing, retained messages, wills, takeover; one task owns it, each connection
//! has a reader and a writer task), with the same methods: `bind`, `from_listener`, `new`,
//! `with_hooks`, `notices`, `spawn`, `serve`; and on its [`BrokerHandle`]:
//! `serve_transport` (any futures-io transport), `publish`, `stats`, `shutdown`.
//!
//! ```
//! use adapter_smol::{connect_tcp, BrokerServer, ClientOptions, Event};
//! use mqtt_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicFilter, TopicName};
//! use mqtt_session::broker::BrokerConfig;
//! use mqtt_session::{Message, SubscribeRequest};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//!     let broker = BrokerServer::bind("127.0.0.1:0", BrokerConfig::default()).await?;
//!     let addr = broker.local_addr()?;
//!     let handle = broker.spawn();
//!
//!     let connect = Connect::new(ProtocolVersion::V5, MqttString::new("doc")?);
//!     let (client, mut events) = connect_tcp(addr, ClientOptions::new(connect)).await?;
//!     client.subscribe(SubscribeRequest::new(TopicFilter::new("a/#")?, QoS::ExactlyOnce)).await?;
//!     client.publish(Message::new(TopicName::new("a/b")?, QoS::ExactlyOnce, "hi")).await?;
//!     while let Some(event) = events.recv().await {
//!         if let Event::Message { publish, .. } = event {
//!             assert_eq!(&publish.payload[..], b"hi");
//!             break;
//!         }
//!     }
//!     client.disconnect().await?;
//!     handle.shutdown().await; // every connection told and closed, the listener gone
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # Cancel safety
//!
//! The handles and their futures are `adapter-tokio`'s, so its cancel-safety table holds here
//! word for word: an operation is handed over when its command enters the driver's channel
//! (on the first poll unless the channel is full); dropping the future before that drops the
//! operation, dropping it afterwards only discards its outcome (a dropped `publish` is still
//! published and acknowledged). [`ClientEvents::recv`] and [`ConnectionEvents::recv`] never
//! lose an event. Specific to this crate: [`Server::accept`] is cancel safe (`async-net`
//! accepts only when the listener is readable, so a dropped future loses no connection);
//! dropping [`connect`]/[`connect_tcp`] closes the connection again; dropping
//! [`Server::shutdown`] after its first poll leaves the connections closing in the background.
//! The broker's handle is adapter-tokio's too: `BrokerHandle::shutdown` goes on once handed
//! over; dropping `BrokerServer::serve` stops the broker at once.
//!
//! # Choosing the runtime in a library
//!
//! The three adapters export the same names with the same signatures (only the transport
//! trait and the address trait are each runtime's own), so a library can let its users pick
//! the runtime with a cargo feature and one re-export; the rest of its code names only
//! `mqtt_rt::...`. With its features `tokio`, `smol` and `async-std` (additive: the first
//! enabled wins):
//!
//! ```
//! #[cfg(feature = "tokio")]
//! pub(crate) use adapter_tokio as mqtt_rt;
//! #[cfg(all(feature = "async-std", not(feature = "tokio")))]
//! pub(crate) use adapter_async_std as mqtt_rt;
//! // (this doc test builds with no feature: smol is the default)
//! #[cfg(not(any(feature = "tokio", feature = "async-std")))]
//! pub(crate) use adapter_smol as mqtt_rt;
//!
//! use mqtt_proto::{Connect, MqttString, ProtocolVersion};
//!
//! /// Connects the library's client, whatever the runtime.
//! pub async fn connect(addr: std::net::SocketAddr) -> Result<mqtt_rt::Client, mqtt_rt::Error> {
//!     let connect = Connect::new(ProtocolVersion::V5, MqttString::new("lib").unwrap());
//!     let (client, _events) = mqtt_rt::connect_tcp(addr, mqtt_rt::ClientOptions::new(connect)).await?;
//!     Ok(client)
//! }
//! # fn main() {}
//! ```
//!
//! That the rest compiles unchanged against each adapter is tested:
//! `adapter-async-std/tests/pick_runtime.rs` builds one library source against all three and
//! runs it on each runtime.

#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;

use smol::net::{AsyncToSocketAddrs, TcpListener, TcpStream};

pub mod runtime;

pub use adapter_tokio::{
    BrokerNotice, BrokerNotices, BrokerOptions, Client, ClientEvents, ClientOptions,
    ConnectionEvent, ConnectionEvents, ConnectionHandle, DetachedSession, Error, Event,
    PublishOutcome, PublishReceipt, ServerConnection, ServerOptions, TryPublishError,
};
pub use runtime::{SmolRuntime, Transport};

/// An MQTT broker on smol: the `mqtt-session` broker core served over a TCP listener
/// (optional) and any transports handed to [`BrokerHandle::serve_transport`], as
/// `adapter_tokio::BrokerServer` (methods: [`runtime::BrokerServerOn`]). One task owns the
/// core, each connection has a reader and a writer task, all spawned with `smol::spawn`.
pub type BrokerServer<H = mqtt_session::broker::AllowAll> = runtime::BrokerServerOn<SmolRuntime, H>;

/// A cheap, cloneable handle to a running [`BrokerServer`] (methods:
/// [`runtime::BrokerHandleOn`]).
pub type BrokerHandle = runtime::BrokerHandleOn<SmolRuntime>;

use runtime::ServerGroup;

/// Connects over `transport`: sends the CONNECT and waits for the CONNACK, the driver running
/// on smol. As `adapter_tokio::connect` (same errors, same cancel safety).
pub async fn connect<Io: Transport>(
    transport: Io,
    options: ClientOptions,
) -> Result<(Client, ClientEvents), Error> {
    runtime::connect_on(SmolRuntime, transport, options).await
}

/// Connects over TCP to `addr` with TCP_NODELAY set, then as [`connect`].
pub async fn connect_tcp(
    addr: impl AsyncToSocketAddrs,
    options: ClientOptions,
) -> Result<(Client, ClientEvents), Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    connect(stream, options).await
}

/// Serves one MQTT connection over any transport, the driver running on smol. As
/// `adapter_tokio::serve_connection`.
pub fn serve_connection<Io: Transport>(
    transport: Io,
    options: impl Into<ServerOptions>,
) -> ServerConnection {
    runtime::serve_connection_on(SmolRuntime, transport, options)
}

/// A TCP listener that serves MQTT connections on smol, as `adapter_tokio::Server`.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    group: ServerGroup<SmolRuntime>,
}

impl Server {
    /// Listens on `addr` (port 0 for an ephemeral port).
    pub async fn bind(
        addr: impl AsyncToSocketAddrs,
        options: impl Into<ServerOptions>,
    ) -> io::Result<Self> {
        Ok(Self::from_listener(TcpListener::bind(addr).await?, options))
    }

    /// Serves connections from a listener bound elsewhere.
    pub fn from_listener(listener: TcpListener, options: impl Into<ServerOptions>) -> Self {
        let group = ServerGroup::new(SmolRuntime, options);
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

/// Session resumption over futures-io transports: `adapter_tokio::Reconnect` under the same
/// names, for a [`Client`] made with [`ClientOptions::resumable`]. Same CONNECT (Clean Start 0
/// unless [`reconnect_with`](Self::reconnect_with) says otherwise), same outcomes, same errors
/// and the same cancel safety (see `adapter_tokio::Reconnect`); the transport goes through
/// `tokio_util::compat` into the one driver, as for [`connect`].
///
/// ```no_run
/// use std::time::Duration;
/// use adapter_smol::{connect_tcp, ClientOptions, Event, Reconnect};
/// use mqtt_proto::{Connect, MqttString, ProtocolVersion};
///
/// # fn main() -> Result<(), adapter_smol::Error> {
/// smol::block_on(async {
///     let addr = "127.0.0.1:1883";
///     let mut connect = Connect::new(ProtocolVersion::V3_1_1, MqttString::new("s1").unwrap());
///     connect.clean_start = false;
///     let (client, mut events) = connect_tcp(addr, ClientOptions::new(connect).resumable()).await?;
///     while let Some(event) = events.recv().await {
///         if let Event::Closed { resumable: true, .. } = event {
///             loop {
///                 smol::Timer::after(Duration::from_secs(1)).await;
///                 match client.reconnect_tcp(addr).await {
///                     Ok(_connack) => break,
///                     Err(error) if error.is_connection_error() && !client.is_ended() => {}
///                     Err(error) => return Err(error),
///                 }
///             }
///         }
///     }
///     Ok(())
/// })
/// # }
/// ```
pub trait Reconnect {
    /// Resumes the session over `transport` with the last CONNECT, Clean Start 0; resolves
    /// with the CONNACK.
    fn reconnect<Io: Transport>(
        &self,
        transport: Io,
    ) -> impl std::future::Future<Output = Result<Box<mqtt_proto::ConnAck>, Error>> + Send;

    /// [`reconnect`](Self::reconnect) with a CONNECT of your own, sent as given.
    fn reconnect_with<Io: Transport>(
        &self,
        transport: Io,
        connect: mqtt_proto::Connect,
    ) -> impl std::future::Future<Output = Result<Box<mqtt_proto::ConnAck>, Error>> + Send;

    /// Connects over TCP to `addr` with TCP_NODELAY set, then as
    /// [`reconnect`](Self::reconnect).
    fn reconnect_tcp<A: AsyncToSocketAddrs + Send>(
        &self,
        addr: A,
    ) -> impl std::future::Future<Output = Result<Box<mqtt_proto::ConnAck>, Error>> + Send
    where
        A::Iter: Send;
}

impl Reconnect for Client {
    fn reconnect<Io: Transport>(
        &self,
        transport: Io,
    ) -> impl std::future::Future<Output = Result<Box<mqtt_proto::ConnAck>, Error>> + Send {
        use tokio_util::compat::FuturesAsyncReadCompatExt;
        adapter_tokio::Reconnect::reconnect(self, transport.compat())
    }

    fn reconnect_with<Io: Transport>(
        &self,
        transport: Io,
        connect: mqtt_proto::Connect,
    ) -> impl std::future::Future<Output = Result<Box<mqtt_proto::ConnAck>, Error>> + Send {
        use tokio_util::compat::FuturesAsyncReadCompatExt;
        adapter_tokio::Reconnect::reconnect_with(self, transport.compat(), connect)
    }

    async fn reconnect_tcp<A: AsyncToSocketAddrs + Send>(
        &self,
        addr: A,
    ) -> Result<Box<mqtt_proto::ConnAck>, Error>
    where
        A::Iter: Send,
    {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Reconnect::reconnect(self, stream).await
    }
}
