//! smol drivers for the `mqtt-streaming-session` state machines: the same MQTT client and server flow as
//! `mqtt-streaming-tokio`, with the same names and signatures, over any
//! [`futures_io::AsyncRead`] + [`futures_io::AsyncWrite`] transport.
//!
//! There is one drive loop in the workspace, in `mqtt-streaming-tokio`'s runtime-generic engine
//! ([`engine`], built here with `default-features = false`: tokio's runtime-free channels
//! only, no tokio I/O and no tokio runtime). This crate supplies [`SmolRuntime`] (smol's
//! spawn, `async-io`'s timer and the standard clock), [`FuturesIo`] (futures-io streams as the
//! engine's own transport, directly: no compat layer) and TCP with `async-net`. The handles
//! ([`ClientEvents`], [`ServerConnection`], [`Error`]...) are the very types `mqtt-streaming-tokio`
//! exports, and the runtime-named ones ([`Client`], [`Server`], [`BrokerServer`]) are the same
//! generic engine types on [`SmolRuntime`], so code written against one adapter compiles
//! against the other by changing the crate name.
//!
//! One dependency line is enough: [`mqtt_streaming_proto`] and [`mqtt_streaming_session`] are re-exported.
//!
//! # Features
//!
//! `smol-runtime` (default) is [`SmolRuntime`] and what is named for it (`smol` itself).
//! Without it, the crate is the futures-io building blocks every futures-io runtime shares
//! ([`FuturesIo`], [`AsyncIoTimer`], [`TcpAcceptor`], `AsyncIoIdleLot` on Unix,
//! [`futures_runtime!`]) on `futures-io` and `async-io` alone (and, on Unix, `mio` for the
//! parked connections' watcher): what `mqtt-streaming-async-std` builds on.
//!
//! Transports beyond TCP, each a feature (see [Transports](#transports-tls-websocket-unix-sockets)):
//! `tls` (futures-rustls, rustls with the `ring` provider), `websocket` (async-tungstenite's
//! runtime-free core), `unix` (Unix sockets on `async-io`), `native-roots` / `webpki-roots`
//! (the platform's or Mozilla's root certificates for TLS clients).
//!
//! ```
//! use mqtt_streaming_smol::{connect_tcp, ClientOptions, ConnectionEvent, Event, Server, ServerOptions};
//! use mqtt_streaming_proto::{AckProperties, ConnAckProperties, Connect, MqttString, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};
//! use mqtt_streaming_session::{Message, SubscribeRequest};
//!
//! # fn main() -> Result<(), mqtt_streaming_smol::Error> {
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
//!         Ok::<_, mqtt_streaming_smol::Error>(())
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
//! [`BrokerServer`] is the engine's broker server on smol (the `mqtt-streaming-session` broker core:
//! sessions, routing, retained messages, wills, takeover; one task owns it, each connection
//! has one task that reads and writes), with the same methods: `bind`, `from_listener`, `new`,
//! `with_hooks`, `notices`, `spawn`, `serve`; and on its [`BrokerHandle`]:
//! `serve_transport` (any futures-io transport), `publish`, `stats`, `shutdown`,
//! `parked_connections`.
//!
//! Idle connections are parked as on tokio (Unix, plain TCP accepted by a
//! [`TcpAcceptor`]): after [`BrokerOptions::park_idle_after`] without traffic (one second by
//! default) a connection's task ends and its socket leaves async-io's reactor for one watcher
//! shared by every parked connection ([`AsyncIoIdleLot`], an epoll or kqueue set registered
//! once with the reactor); input, output for it (a delivery, a PINGRESP, a DISCONNECT) or a
//! keep-alive timeout gives it a task again. TLS, WebSocket and Unix sockets, and transports
//! handed to `serve_transport`, keep their task.
//!
//! ```
//! use mqtt_streaming_smol::{connect_tcp, BrokerServer, ClientOptions, Event};
//! use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicFilter, TopicName};
//! use mqtt_streaming_session::broker::BrokerConfig;
//! use mqtt_streaming_session::{Message, SubscribeRequest};
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
//! # Session resumption
//!
//! [`Reconnect`] is the engine's one trait: on an [`mqtt_streaming_smol::Client`](Client) it takes
//! futures-io streams (`reconnect`, `reconnect_with`) and smol's address types
//! (`reconnect_tcp`). Same CONNECT (Clean Start 0 unless `reconnect_with` says otherwise),
//! same outcomes, errors and cancel safety as on tokio.
//!
//! ```no_run
//! use std::time::Duration;
//! use mqtt_streaming_smol::{connect_tcp, ClientOptions, Event, Reconnect};
//! use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion};
//!
//! # fn main() -> Result<(), mqtt_streaming_smol::Error> {
//! smol::block_on(async {
//!     let addr = "127.0.0.1:1883";
//!     let mut connect = Connect::new(ProtocolVersion::V3_1_1, MqttString::new("s1").unwrap());
//!     connect.clean_start = false;
//!     let (client, mut events) = connect_tcp(addr, ClientOptions::new(connect).resumable()).await?;
//!     while let Some(event) = events.recv().await {
//!         if let Event::Closed { resumable: true, .. } = event {
//!             loop {
//!                 smol::Timer::after(Duration::from_secs(1)).await;
//!                 match client.reconnect_tcp(addr).await {
//!                     Ok(_connack) => break,
//!                     Err(error) if error.is_connection_error() && !client.is_ended() => {}
//!                     Err(error) => return Err(error),
//!                 }
//!             }
//!         }
//!     }
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # Transports: TLS, WebSocket, Unix sockets
//!
//! The same as `mqtt-streaming-tokio`'s, on futures-io streams: [`connect_url`],
//! [`connect_url_with`] (with [`TransportOptions`]) and [`connect_endpoint`] for clients, and
//! their reconnecting forms [`connect_url_reconnecting`], [`connect_url_reconnecting_with`],
//! [`connect_endpoint_reconnecting`] (each reconnect dials the endpoint again);
//! [`listen_url`] and [`listen_endpoint`] for a broker's or a server flow's listeners
//! (several at once with [`engine::Listeners`]). `mqtt://`, `mqtts://` (feature `tls`),
//! `ws://` (feature `websocket`), `wss://` (both), `unix://` (feature `unix`). TLS is
//! futures-rustls; its configuration is the engine's (`TlsClientOptions`, `TlsServerOptions`,
//! re-exported here with feature `tls`). Nothing here pulls in tokio's I/O.
//!
//! ```no_run
//! # #[cfg(all(feature = "smol-runtime", feature = "tls", feature = "websocket"))]
//! # mod demo {
//! use mqtt_streaming_smol::engine::Listeners;
//! use mqtt_streaming_smol::{
//!     connect_url_with, listen_url, BrokerServer, ClientOptions, ListenOptions, TlsClientOptions,
//!     TlsServerOptions, TransportOptions,
//! };
//! use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion};
//! use mqtt_streaming_session::broker::BrokerConfig;
//!
//! pub fn run(ca: &[u8], chain: &[u8], key: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//!     smol::block_on(async {
//!         let listen = ListenOptions::new().tls(TlsServerOptions::new(chain, key)?.build()?);
//!         let listeners = Listeners::new([
//!             listen_url("mqtts://127.0.0.1:8883", &listen).await?,
//!             listen_url("wss://127.0.0.1:8443/mqtt", &listen).await?,
//!         ]);
//!         let broker = BrokerServer::new(BrokerConfig::default())
//!             .with_listener(Box::new(listeners))
//!             .spawn();
//!         let tls = TlsClientOptions::new().add_ca_pem(ca)?.build()?;
//!         let connect = Connect::new(ProtocolVersion::V5, MqttString::new("smol-tls")?);
//!         let (client, _events) = connect_url_with(
//!             "mqtts://localhost:8883",
//!             &TransportOptions::new().tls(tls),
//!             ClientOptions::new(connect),
//!         )
//!         .await?;
//!         client.disconnect().await?;
//!         broker.shutdown().await;
//!         Ok(())
//!     })
//! }
//! # }
//! # fn main() {}
//! ```
//!
//! # Cancel safety
//!
//! The handles and their futures are `mqtt-streaming-tokio`'s, so its cancel-safety table holds here
//! word for word: an operation is handed over when its command enters the driver's channel
//! (on the first poll unless the channel is full); dropping the future before that drops the
//! operation, dropping it afterwards only discards its outcome (a dropped `publish` is still
//! published and acknowledged). [`ClientEvents::recv`] and [`ConnectionEvents::recv`] never
//! lose an event. Specific to this crate: [`Server::accept`] is cancel safe (`async-net`
//! accepts only when the listener is readable, so a dropped future loses no connection);
//! dropping [`connect`]/[`connect_tcp`] closes the connection again; dropping
//! [`Server::shutdown`] after its first poll leaves the connections closing in the background.
//! The broker's handle is mqtt-streaming-tokio's too: `BrokerHandle::shutdown` goes on once handed
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
//! pub(crate) use mqtt_streaming_tokio as mqtt_rt;
//! #[cfg(all(feature = "async-std", not(feature = "tokio")))]
//! pub(crate) use mqtt_streaming_async_std as mqtt_rt;
//! // (this doc test builds with no feature: smol is the default)
//! #[cfg(not(any(feature = "tokio", feature = "async-std")))]
//! pub(crate) use mqtt_streaming_smol as mqtt_rt;
//!
//! use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion};
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

mod futures_rt;
#[cfg(unix)]
mod parking;
#[cfg(feature = "smol-runtime")]
mod smol_rt;
mod transports;

/// The protocol crate, re-exported: one dependency line brings the whole stack.
pub use mqtt_streaming_proto;
/// The sans-IO sessions and broker core, re-exported.
pub use mqtt_streaming_session;

pub use futures_rt::{
    tcp_transport, AcceptFuture, AsyncIoTimer, FuturesIo, FuturesTcp, TcpAcceptor, Transport,
};
/// The runtime-generic engine (`mqtt_streaming_tokio::engine`): what a runtime implements, and the
/// client, server and broker over any runtime.
pub use mqtt_streaming_tokio::engine;
/// The engine's entry points and types named for one runtime (`mqtt_streaming_tokio::named_for_runtime`).
pub use mqtt_streaming_tokio::named_for_runtime;
/// rustls, re-exported (feature `tls`).
#[cfg(feature = "tls")]
pub use mqtt_streaming_tokio::rustls;
/// The transport entry points named for one runtime (`mqtt_streaming_tokio::transports_for_runtime`).
pub use mqtt_streaming_tokio::transports_for_runtime;
pub use mqtt_streaming_tokio::{
    BrokerNotice, BrokerNotices, BrokerOptions, ClientEvents, ClientOptions, ConnectionEvent,
    ConnectionEvents, ConnectionHandle, DetachedSession, Error, Event, Events, PublishOutcome,
    PublishReceipt, Reconnect, ReconnectPolicy, ServerConnection, ServerOptions, TryPublishError,
};
pub use mqtt_streaming_tokio::{Endpoint, EndpointError, ListenOptions, Scheme, TransportOptions};
#[cfg(feature = "tls")]
pub use mqtt_streaming_tokio::{
    MosquittoTlsFlags, TlsClient, TlsClientOptions, TlsError, TlsServer, TlsServerOptions,
    TlsVersion,
};
#[cfg(feature = "websocket")]
pub use mqtt_streaming_tokio::{WsOptions, WsTransport, WS_SUBPROTOCOL};
#[cfg(unix)]
pub use parking::AsyncIoIdleLot;
#[cfg(feature = "smol-runtime")]
pub use smol_rt::{
    connect, connect_endpoint, connect_endpoint_reconnecting, connect_reconnecting, connect_tcp,
    connect_tcp_reconnecting, connect_url, connect_url_reconnecting, connect_url_reconnecting_with,
    connect_url_with, listen_endpoint, listen_url, serve_connection, BrokerHandle, BrokerServer,
    Client, Server, SmolRuntime,
};
pub use transports::{dial, listen, FuturesDial, IoFuture};
