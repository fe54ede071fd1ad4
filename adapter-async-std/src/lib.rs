//! async-std skin over the MQTT drivers: the same client and server flow as `mqtt-streaming-tokio`
//! and `mqtt-streaming-smol`, with the same names and signatures, on async-std's tasks and sockets.
//!
//! **async-std is deprecated upstream in favour of smol.** This crate keeps working for
//! people who still run it; new code should depend on `mqtt-streaming-smol` instead (the API is the
//! same, so switching is a change of crate name).
//!
//! Nothing here drives a connection: the one drive loop lives in `mqtt-streaming-tokio`'s
//! runtime-generic engine ([`engine`]), the futures-io transport and the `async-io` timer and
//! clock (which async-std itself runs on) in `mqtt-streaming-smol`'s runtime-free part (without its
//! `smol-runtime` feature: no `smol` here, no tokio I/O). This crate adds [`AsyncStdRuntime`]
//! (`async_std::task::spawn`, TCP with `async_std::net`) and names the engine for it.
//!
//! One dependency line is enough: [`mqtt_streaming_proto`] and [`mqtt_streaming_session`] are re-exported.
//!
//! ```
//! use mqtt_streaming_async_std::{connect_tcp, ClientOptions, ConnectionEvent, Server, ServerOptions};
//! use mqtt_streaming_proto::{ConnAckProperties, Connect, MqttString, ProtocolVersion, QoS, ReasonCode, TopicName};
//! use mqtt_streaming_session::Message;
//!
//! # fn main() -> Result<(), mqtt_streaming_async_std::Error> {
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
//!         Ok::<_, mqtt_streaming_async_std::Error>(())
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
//! [`BrokerServer`] is the engine's broker server on async-std, with the same methods
//! (`BrokerServer::bind("127.0.0.1:1883", BrokerOptions::default()).await?.spawn()` gives a
//! [`BrokerHandle`]; `handle.shutdown().await` stops it gracefully). Its accept loop is
//! mqtt-streaming-smol's over async-std's listener.
//!
//! Idle connections are parked as on smol and tokio (Unix, plain TCP): after
//! [`BrokerOptions::park_idle_after`] without traffic (one second by default) a connection's
//! task ends and its socket leaves async-io's reactor for one watcher shared by every parked
//! connection (mqtt-streaming-smol's `AsyncIoIdleLot`) until the client sends something or the
//! broker has something for it; [`BrokerHandle::parked_connections`] counts them. TLS,
//! WebSocket and Unix sockets keep their task.
//!
//! A client's TCP connection ([`connect_tcp`], `reconnect_tcp`, `mqtt://` endpoints) is, on
//! Unix, its socket on async-io's reactor as a whole (mqtt-streaming-smol's `tcp_transport`):
//! it holds no read buffer while idle, and on Linux reads acknowledgements in batches as on
//! smol and tokio ([`ClientOptions::batch_acks`]). TLS and WebSocket clients read every byte
//! as it comes.
//!
//! # Transports: TLS, WebSocket, Unix sockets
//!
//! Features `tls` (futures-rustls), `websocket`, `unix`, `native-roots`, `webpki-roots`, as in
//! `mqtt-streaming-smol`, whose transports this crate names for async-std: [`connect_url`],
//! [`connect_url_with`], [`connect_endpoint`], the reconnecting [`connect_url_reconnecting`],
//! [`connect_url_reconnecting_with`], [`connect_endpoint_reconnecting`], [`listen_url`],
//! [`listen_endpoint`] (no smol and no tokio I/O pulled in).
//!
//! ```no_run
//! # #[cfg(feature = "websocket")]
//! # mod demo {
//! use mqtt_streaming_async_std::{connect_url, ClientOptions};
//! use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion};
//!
//! pub fn run() -> Result<(), mqtt_streaming_async_std::Error> {
//!     async_std::task::block_on(async {
//!         let connect = Connect::new(ProtocolVersion::V3_1_1, MqttString::new("ws").unwrap());
//!         let (client, _events) = connect_url("ws://127.0.0.1:8080/mqtt", ClientOptions::new(connect)).await?;
//!         client.disconnect().await
//!     })
//! }
//! # }
//! # fn main() {}
//! ```
//!
//! # Cancel safety
//!
//! As in `mqtt-streaming-tokio` (the handles are the same types): a command is handed over on the
//! first poll unless its channel is full; dropping a future afterwards only discards the
//! outcome, never the operation. `recv` on the event streams never loses an event.
//! [`Server::accept`] is cancel safe (async-std's listener accepts only when readable);
//! dropping [`connect`]/[`connect_tcp`] closes the connection again.

#![forbid(unsafe_code)]

/// The protocol crate, re-exported: one dependency line brings the whole stack.
pub use mqtt_streaming_proto;
/// The sans-IO sessions and broker core, re-exported.
pub use mqtt_streaming_session;

/// The runtime-generic engine (`mqtt_streaming_tokio::engine`): what a runtime implements, and the
/// client, server and broker over any runtime.
pub use mqtt_streaming_smol::engine;
/// rustls, re-exported (feature `tls`).
#[cfg(feature = "tls")]
pub use mqtt_streaming_smol::rustls;
/// Session resumption, the engine's one `Reconnect`: on an [`mqtt_streaming_async_std::Client`](Client)
/// `reconnect` and `reconnect_with` take any futures-io transport
/// (`async_std::net::TcpStream` included) and `reconnect_tcp` async-std's address types
/// (`"host:port"`, `SocketAddr`, `(host, port)`).
pub use mqtt_streaming_smol::Reconnect;
pub use mqtt_streaming_smol::{
    BrokerNotice, BrokerNotices, BrokerOptions, ClientEvents, ClientOptions, ConnectionEvent,
    ConnectionEvents, ConnectionHandle, DetachedSession, Error, Event, Events, PublishOutcome,
    PublishReceipt, ReconnectPolicy, ServerConnection, ServerOptions, Transport, TryPublishError,
};
pub use mqtt_streaming_smol::{Endpoint, EndpointError, ListenOptions, Scheme, TransportOptions};
#[cfg(feature = "tls")]
pub use mqtt_streaming_smol::{
    MosquittoTlsFlags, TlsClient, TlsClientOptions, TlsError, TlsServer, TlsServerOptions,
    TlsVersion,
};
#[cfg(feature = "websocket")]
pub use mqtt_streaming_smol::{WsOptions, WsTransport, WS_SUBPROTOCOL};

/// The async-std runtime: drivers are spawned with `async_std::task::spawn`; the timer and
/// clock are `async-io`'s (async-std's own reactor), shared with `mqtt_streaming_smol::SmolRuntime`
/// ([`AsyncIoTimer`](mqtt_streaming_smol::AsyncIoTimer)); TCP is `async_std::net`'s.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStdRuntime;

mqtt_streaming_smol::futures_runtime! {
    runtime: AsyncStdRuntime,
    // Dropping the handle detaches the task.
    spawn: |future| drop(async_std::task::spawn(future)),
    listener: async_std::net::TcpListener,
    stream: async_std::net::TcpStream,
    addrs: async_std::net::ToSocketAddrs,
}

mqtt_streaming_tokio::named_for_runtime!(AsyncStdRuntime);

mod transports {
    use super::Client;
    mqtt_streaming_tokio::transports_for_runtime!(super::AsyncStdRuntime);
}
pub use transports::{
    connect_endpoint, connect_endpoint_reconnecting, connect_url, connect_url_reconnecting,
    connect_url_reconnecting_with, connect_url_with, listen_endpoint, listen_url,
};
