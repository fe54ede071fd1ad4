//! Tokio drivers for the `mqtt-streaming-session` state machines: an MQTT client, and the server flow for
//! writing your own MQTT server, over any byte transport.
//!
//! The crate holds no protocol logic. Each connection is one task running one drive loop over
//! a sans-IO session (`ClientSession` or `ServerSession`): bytes read into a reused buffer go
//! to `handle_read`, the session's earliest deadline to `handle_timeout`, commands from the
//! handles to the session's methods; after each, the session is drained (everything it wants
//! to send in one buffer and one write, then its events). Time is tokio's clock, converted to
//! the sessions' millisecond [`Instant`](mqtt_streaming_session::Instant), so tests can pause it.
//!
//! # Client
//!
//! [`connect`] (any tokio [`Transport`]) or [`connect_tcp`] sends the CONNECT, waits for the
//! CONNACK and gives a [`Client`] (a cheap cloneable handle) and its [`ClientEvents`] (incoming
//! messages and the connection's life; also a `Stream`). `client.publish(message).await`
//! resolves when the server acknowledged the message, with its reason code.
//!
//! # Server flow
//!
//! [`Server::bind`] / [`Server::accept`] (TCP) or [`serve_connection`] (any transport) give one
//! [`ServerConnection`] per client: you receive its CONNECT, SUBSCRIBE, PUBLISH... as
//! [`ConnectionEvent`]s and answer with `accept`, `suback`, `publish`... The example below is
//! a complete server (accept everyone, grant every subscription, echo every message) and a
//! client talking to it in-process over `tokio::io::duplex`:
//!
//! ```
//! use mqtt_streaming_tokio::{connect, serve_connection, ClientOptions, ConnectionEvent, Event, ServerOptions};
//! use mqtt_streaming_proto::{AckProperties, ConnAckProperties, Connect, MqttString, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};
//! use mqtt_streaming_session::{Message, SubscribeRequest};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), mqtt_streaming_tokio::Error> {
//! let (client_io, server_io) = tokio::io::duplex(64 * 1024);
//!
//! // The server: one task per connection.
//! let mut conn = serve_connection(server_io, ServerOptions::default());
//! tokio::spawn(async move {
//!     while let Some(event) = conn.events().recv().await {
//!         match event {
//!             ConnectionEvent::Connect(_) => conn.accept(ConnAckProperties::default(), None).await?,
//!             ConnectionEvent::Subscribe(subscribe) => {
//!                 let codes = subscribe.subscriptions.iter().map(|s| ReasonCode::granted(s.options.qos)).collect();
//!                 conn.suback(subscribe.packet_id, codes, AckProperties::default()).await?;
//!             }
//!             ConnectionEvent::Message { publish, .. } => {
//!                 let echo = Message::new(publish.topic, publish.qos_pid.qos(), publish.payload);
//!                 conn.begin_publish(echo).await?; // don't wait for the client's ack here
//!             }
//!             _ => {}
//!         }
//!     }
//!     Ok::<_, mqtt_streaming_tokio::Error>(())
//! });
//!
//! // The client.
//! let mut connect_packet = Connect::new(ProtocolVersion::V5, MqttString::new("doc").unwrap());
//! connect_packet.keep_alive = 30;
//! let (client, mut events) = connect(client_io, ClientOptions::new(connect_packet)).await?;
//! let filter = TopicFilter::new("hello/#").unwrap();
//! let suback = client.subscribe(SubscribeRequest::new(filter, QoS::AtLeastOnce)).await?;
//! assert_eq!(suback.reason_codes, [ReasonCode::granted(QoS::AtLeastOnce)]);
//!
//! let topic = TopicName::new("hello/world").unwrap();
//! let outcome = client.publish(Message::new(topic, QoS::AtLeastOnce, "hi")).await?;
//! assert_eq!(outcome.reason_code, ReasonCode::Success); // the server's PUBACK
//!
//! while let Some(event) = events.recv().await {
//!     if let Event::Message { publish, .. } = event {
//!         assert_eq!(&publish.payload[..], b"hi");
//!         break;
//!     }
//! }
//! client.disconnect().await?; // DISCONNECT, flush, close
//! # Ok(())
//! # }
//! ```
//!
//! # Sessions that outlive connections
//!
//! With [`ClientOptions::resumable`], a lost connection ends with [`Event::Closed`]
//! `{ resumable: true, .. }` and the driver keeps the session while a [`Client`] exists:
//! publish futures waiting for an acknowledgement keep waiting, new publishes are queued
//! (bounded), and [`Reconnect::reconnect`] (or `reconnect_tcp`, `reconnect_with`) resumes the
//! session on a new transport; the session re-sends what was in flight. [`Reconnect`] shows
//! a reconnect loop. `disconnect`, or dropping every handle, ends the driver.
//!
//! # A client that reconnects by itself
//!
//! [`connect_tcp_reconnecting`], [`connect_url_reconnecting`] (any URL: each reconnect dials it
//! again, TLS and WebSocket handshakes included; [`connect_url_reconnecting_with`] and
//! [`connect_endpoint_reconnecting`] take [`TransportOptions`]) or [`connect_reconnecting`]
//! (with a connector that opens any transport) make the driver keep the link up itself, as a
//! [`ReconnectPolicy`] says (exponential backoff with jitter; Clean Start only on the first
//! connection). No task of the application's is needed for it: a task awaiting a `publish`
//! while the link is down waits, and the publish resolves once, when a connection gets its
//! acknowledgement. After a reconnect to a server that lost the session, the client subscribes
//! again to what it held and releases the messages queued meanwhile only once the SUBACKs are
//! in. [`engine::connect_reconnecting_on`] says exactly what is and is not guaranteed.
//!
//! ```no_run
//! use mqtt_streaming_tokio::{connect_tcp_reconnecting, ClientOptions, Event, ReconnectPolicy};
//! use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicFilter, TopicName};
//! use mqtt_streaming_session::{Message, SubscribeRequest};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), mqtt_streaming_tokio::Error> {
//! let mut connect = Connect::new(ProtocolVersion::V5, MqttString::new("sensor-1").unwrap());
//! connect.properties.session_expiry_interval = Some(3600); // the server keeps the session
//! let options = ClientOptions::new(connect);
//! let (client, mut events) =
//!     connect_tcp_reconnecting("127.0.0.1:1883", options, ReconnectPolicy::default()).await?;
//! let filter = TopicFilter::new("cmd/#").unwrap();
//! client.subscribe(SubscribeRequest::new(filter, QoS::AtLeastOnce)).await?;
//! tokio::spawn(async move {
//!     while let Some(event) = events.recv().await {
//!         match event {
//!             Event::Reconnecting { attempt, delay } => eprintln!("attempt {attempt} in {delay:?}"),
//!             Event::Connected(connack) => eprintln!("session present: {}", connack.session_present),
//!             Event::Message { publish, .. } => println!("{publish:?}"),
//!             _ => {}
//!         }
//!     }
//! });
//! let topic = TopicName::new("data/t").unwrap();
//! // Resolves once, across any number of reconnects.
//! client.publish(Message::new(topic, QoS::AtLeastOnce, "21.5")).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Broker
//!
//! [`BrokerServer`] serves the broker core of `mqtt-streaming-session`
//! ([`mqtt_streaming_session::broker::Broker`]: sessions, routing, retained messages, wills, shared
//! subscriptions, takeover) over a TCP listener and any [`Transport`]
//! ([`BrokerHandle::serve_transport`]): a real broker in a few lines.
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! use mqtt_streaming_tokio::{BrokerOptions, BrokerServer};
//!
//! let broker = BrokerServer::bind("127.0.0.1:1883", BrokerOptions::default()).await?;
//! let handle = broker.spawn();
//! tokio::signal::ctrl_c().await?;
//! handle.shutdown().await; // MQTT 5 clients are told 0x8B Server shutting down
//! # Ok(())
//! # }
//! ```
//!
//! One task owns the core; each connection has one task that reads and writes; everything one
//! drain of the core produced for a connection leaves in one write. [`BrokerServer::with_hooks`]
//! plugs in authentication and authorization, [`BrokerHandle::stats`] reads the counters and
//! [`BrokerServer::notices`] reports connections for logs. The `mqtt-broker` program (feature
//! `cli`) is a command-line broker built on it.
//!
//! The broker is runtime-generic like the drivers: `BrokerServer` is
//! [`engine::BrokerServerOn`]`<TokioRuntime>`, and `mqtt-streaming-smol` and `mqtt-streaming-async-std`
//! export the same `BrokerServer` and `BrokerHandle` on their runtimes (a runtime brings its
//! TCP listener through [`engine::NetRuntime`], [`engine::Bind`] and [`engine::Adapt`]; any
//! other [`engine::Listener`] plugs in with [`engine::BrokerServerOn::with_listener`]).
//!
//! # Transports: TLS, WebSocket, Unix sockets, URLs
//!
//! One way to say where to connect: an [`Endpoint`], parsed from a URL or built from typed
//! parts. [`connect_url`] and [`connect_url_with`] (with [`TransportOptions`]: TLS
//! configuration, WebSocket limits, timeout) connect a client; [`listen_url`] binds a listener
//! for a broker ([`BrokerServer::with_listener`](engine::BrokerServerOn::with_listener)) or a
//! server flow ([`Server::with_listener`](engine::ServerOn::with_listener)), several at once
//! with [`engine::Listeners`].
//!
//! | URL | transport | feature |
//! |---|---|---|
//! | `mqtt://host:1883` | TCP | (always) |
//! | `mqtts://host:8883` | TLS (rustls, `ring` provider; tokio-rustls here, futures-rustls on smol and async-std) | `tls` |
//! | `ws://host:80/path` | MQTT over WebSocket (async-tungstenite; subprotocol `mqtt`, binary frames) | `websocket` |
//! | `wss://host:443/path` | WebSocket over TLS | `tls`, `websocket` |
//! | `unix:///path` | Unix domain socket | `unix` |
//!
//! Each transport is a feature: a plain-TCP user compiles none of it, and an endpoint whose
//! feature is off is an error of kind `Unsupported`. TLS clients verify the server's
//! certificate against the roots of [`TlsClientOptions`] (CA files or PEM, the platform's
//! store with feature `native-roots`, Mozilla's with `webpki-roots`) and the host name (or
//! [`TlsClientOptions::server_name`], also the SNI sent); client certificates (mutual TLS) and
//! ALPN are options. [`TlsServerOptions`] configures listeners, with
//! [`require_client_cert`](TlsServerOptions::require_client_cert) for mutual TLS. A
//! listener's TLS and WebSocket handshakes run on the connection's own task when it is first
//! read, within [`ListenOptions::handshake_timeout`], so a slow client holds up no accept.
//! Over WebSocket, each write leaves as one binary message and every binary message read is
//! appended to the one read buffer, so packets split across frames and several packets in
//! one frame decode alike; a text frame closes the connection.
//!
//! ```no_run
//! # #[cfg(all(feature = "tls", feature = "websocket", feature = "unix"))]
//! # mod demo {
//! use mqtt_streaming_tokio::engine::Listeners;
//! use mqtt_streaming_tokio::{
//!     connect_url_with, listen_url, BrokerServer, ClientOptions, ListenOptions, TlsClientOptions,
//!     TlsServerOptions, TransportOptions,
//! };
//! use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion};
//! use mqtt_streaming_session::broker::BrokerConfig;
//!
//! pub async fn run(ca: &[u8], chain: &[u8], key: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//!     // A broker on TCP, TLS, WebSocket, WebSocket over TLS and a Unix socket at once.
//!     let listen = ListenOptions::new().tls(TlsServerOptions::new(chain, key)?.build()?);
//!     let mut listeners = Vec::new();
//!     for url in ["mqtt://127.0.0.1:1883", "mqtts://127.0.0.1:8883", "ws://127.0.0.1:8080/mqtt",
//!                 "wss://127.0.0.1:8443/mqtt", "unix:///run/mqtt/mqtt.sock"] {
//!         listeners.push(listen_url(url, &listen).await?);
//!     }
//!     let broker = BrokerServer::new(BrokerConfig::default())
//!         .with_listener(Box::new(Listeners::new(listeners)))
//!         .spawn();
//!
//!     // A client over WebSocket + TLS, trusting one CA, offering ALPN `mqtt`.
//!     let tls = TlsClientOptions::new().add_ca_pem(ca)?.alpn(["mqtt"]).build()?;
//!     let transport = TransportOptions::new().tls(tls);
//!     let connect = Connect::new(ProtocolVersion::V5, MqttString::new("wss-client")?);
//!     let (client, _events) =
//!         connect_url_with("wss://localhost:8443/mqtt", &transport, ClientOptions::new(connect)).await?;
//!     client.disconnect().await?;
//!     broker.shutdown().await;
//!     Ok(())
//! }
//! # }
//! # fn main() {}
//! ```
//!
//! A client that reconnects by itself over any of them: [`connect_url_reconnecting`],
//! [`connect_url_reconnecting_with`], [`connect_endpoint_reconnecting`] (each reconnect dials
//! the endpoint again through the runtime's [`engine::Dial`]; the same names on smol and
//! async-std).
//!
//! ```no_run
//! # #[cfg(feature = "tls")]
//! # mod demo {
//! use mqtt_streaming_tokio::{
//!     connect_url_reconnecting_with, ClientOptions, ReconnectPolicy, TlsClientOptions,
//!     TransportOptions,
//! };
//! use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion};
//!
//! pub async fn run() -> Result<(), Box<dyn std::error::Error>> {
//!     let tls = TlsClientOptions::new().add_ca_file("ca.pem")?.build()?;
//!     let mut connect = Connect::new(ProtocolVersion::V5, MqttString::new("sensor-1")?);
//!     connect.properties.session_expiry_interval = Some(3600); // resumable sessions
//!     let (client, _events) = connect_url_reconnecting_with(
//!         "mqtts://broker.example:8883",
//!         &TransportOptions::new().tls(tls),
//!         ClientOptions::new(connect),
//!         ReconnectPolicy::default(),
//!     )
//!     .await?;
//!     client.disconnect().await?;
//!     Ok(())
//! }
//! # }
//! # fn main() {}
//! ```
//!
//! A listener can hand the broker's authentication what TLS established:
//! [`ListenOptions::rewrite_connect`] edits each connection's CONNECT given the client
//! certificate's Common Name (`certificate_common_name`, feature `tls`); the `mqtt-broker` program does
//! mosquitto's `use_identity_as_username` with it (tokio's listeners).
//!
//! Command-line programs that take mosquitto's TLS flags (`--cafile`, `--capath`, `--cert`,
//! `--key`, `--insecure`, `--tls-version`, `--alpn`) map them with
//! `TlsClientOptions::from_mosquitto_flags` (feature `tls`); `-L URL` is [`Endpoint::parse`]
//! (which keeps the URL's user name, password and path) and [`connect_endpoint`] (or
//! [`connect_endpoint_reconnecting`]): what `mqtt-pub` and `mqtt-sub` do.
//!
//! # Cancel safety
//!
//! An operation is *handed over* when its command enters the driver's channel (on the first
//! poll, unless the channel is full). Dropping a future before that drops the operation;
//! dropping it afterwards only discards its outcome: the driver carries the operation out and
//! the session stays consistent.
//!
//! | Method | Dropped while waiting for room | Dropped after handing over |
//! |---|---|---|
//! | `publish`, `begin_publish` (client and server) | message not sent | message still published and acknowledged |
//! | awaiting a [`PublishReceipt`] | - | no effect on the publish |
//! | `try_publish` | (not async) | - |
//! | `subscribe`, `unsubscribe` | request not sent | request still made |
//! | `ack`, `auth`, `accept`, `reject`, `suback`, `unsuback` | not applied | still applied |
//! | `disconnect`, `disconnect_with` | not applied | connection still closed |
//! | [`ClientEvents::recv`], [`ConnectionEvents::recv`] | cancel safe: no event is lost | |
//! | [`Server::accept`] | cancel safe: no connection is lost | |
//! | [`connect`], [`connect_tcp`] | the connection is closed again | |
//! | [`Reconnect::reconnect`], `reconnect_with` | transport dropped, session still waiting | the reconnect goes on (see [`Reconnect`]) |
//! | `reconnect_tcp` while connecting TCP | nothing happens | |
//! | [`Server::shutdown`] | the connections keep closing in the background | |
//!
//! # Back-pressure and memory
//!
//! Every queue is bounded. `publish` waits for room: first in the session's queue (its size is
//! [`ClientConfig::max_queued`](mqtt_streaming_session::ClientConfig::max_queued) messages and
//! [`max_queued_bytes`](mqtt_streaming_session::ClientConfig::max_queued_bytes) bytes, 64 and
//! 64 KiB by default: a long queue in front of a busy window only adds latency; the driver
//! holds the one command that did not fit; with
//! [`QueueOverflow::DropOldest`](mqtt_streaming_session::QueueOverflow) or `DropQoS0First` the
//! session drops queued messages instead, failing their futures with `Error::Abandoned`), then in
//! the command channel
//! ([`ClientOptions::command_capacity`]). [`Client::try_publish`] hands the message back
//! instead. While the application does not read its events, the driver stops reading from
//! the transport, so the peer is slowed down instead of memory growing; while more than 64 KiB
//! wait to be written, the driver takes no new commands.
//!
//! Acks and answers to the peer (`ack`, `suback`, `accept`...) travel on a second channel, so
//! they are never stuck behind publishes waiting for room; `disconnect` travels with the
//! publishes, so everything handed over before it is sent first.
//!
//! # Sockets and allocation
//!
//! TCP_NODELAY is set on every TCP connection made here ([`connect_tcp`], [`Server::accept`]).
//! Everything one drain of the session produces leaves in one write, while reading goes on
//! (two drivers facing each other never deadlock on full buffers). The read buffer and the
//! write buffer are reused for the life of the connection, and the timer is one allocation
//! per connection. Per message, the steady state allocates only what the operation needs to
//! report back: one oneshot channel per `publish`/`begin_publish`/`try_publish` (for its
//! outcome) and per `ack`, `subscribe` or other answered command. Incoming messages are
//! delivered as decoded, their topics and payloads slices of the read buffer (while the
//! application holds one, the buffer's next growth takes fresh memory instead of reusing it).
//!
//! # Runtimes and features
//!
//! The engine (drive loop, handles, server, broker) is runtime-agnostic, in [`engine`]: it is
//! generic over a small [`engine::Runtime`] trait (a clock, a resettable timer, `spawn`) and
//! reads and writes through its own [`engine::Transport`] trait (read into a `BytesMut`,
//! write, flush, close), not tokio's I/O traits; the handles talk to the driver over
//! `tokio::sync` channels, which need no tokio runtime. The default feature `tokio-runtime`
//! adds the tokio glue: [`TokioRuntime`] (tokio's spawn, timer and clock), [`TokioIo`] (tokio's
//! `AsyncRead + AsyncWrite` as the engine's transport), TCP, and the engine named for tokio:
//! [`Client`], [`Server`], [`BrokerServer`], [`connect`], [`connect_tcp`],
//! [`serve_connection`]. With `default-features = false` only the engine remains, with
//! tokio's `sync` feature alone (no tokio I/O, no runtime): that is what `mqtt-streaming-smol` and
//! `mqtt-streaming-async-std` build on. The feature `persistence` adds the broker's crash-safe
//! store ([`BrokerOptions`]`::persistence`, the `persistence` module). Features are additive.
//!
//! The crate's files are layered, each importing only from those before it (no cycles):
//!
//! 1. `error`: [`Error`], [`TryPublishError`];
//! 2. `runtime`: [`engine::Runtime`], [`engine::Timer`] and the one clock (the runtime's time
//!    as the sessions' milliseconds, for connections and broker alike);
//! 3. `transport`: the engine's [`engine::Transport`]; `socket_options` (Unix):
//!    [`engine::set_receive_low_water`], the TCP sockets' read low-water mark on every runtime;
//! 4. `net`: a runtime's streams and TCP ([`engine::Adapt`], [`engine::Listener`],
//!    [`engine::NetRuntime`], [`engine::Bind`], [`engine::TcpConnect`], [`engine::Listeners`]);
//!    `endpoint` ([`Endpoint`]); `tls` (rustls configuration); `ws` (WebSocket as a transport);
//!    `rewrite` ([`ConnectRewrite`]: a CONNECT edited with the transport's identity);
//! 5. `shared`: the state a driver shares with its handles (how the connection ended);
//! 6. `publish`: operation completion ([`PublishOutcome`], [`PublishReceipt`]); `reconnect`:
//!    the [`ReconnectPolicy`] and the connector a reconnecting client opens transports with;
//! 7. `driver`: the one drive loop over a sans-IO session;
//! 8. `persistence` (feature `persistence`): the broker's store, written by a thread of its
//!    own; then `client`, `server`, `broker`: [`engine::ClientOn`], [`engine::ServerOn`] and
//!    the server flow, [`engine::BrokerServerOn`];
//!    `dial`: [`engine::Dial`], [`TransportOptions`], [`ListenOptions`],
//!    `transports_for_runtime!`;
//! 9. `named`: `named_for_runtime!`, the engine's entry points and types named for one
//!    runtime (`Client`, `Server`, `connect`...), written once for the three adapters;
//! 10. `tokio_rt` (feature `tokio-runtime`): the tokio glue;
//! 11. `tokio_transports` (feature `tokio-runtime`): TLS, WebSocket and Unix sockets on tokio;
//! 12. `auth`, `settings`, `sys_topics` (feature `broker-config`): a broker program's
//!     password and ACL files ([`auth`]), mosquitto.conf as [`BrokerSettings`], the `$SYS`
//!     topics ([`SysTopics`]);
//!
//! and this file, which only names what is public.
//!
//! # Graceful shutdown
//!
//! [`Client::disconnect`] sends DISCONNECT after what was handed over before it, writes
//! everything out, closes the transport and then resolves; dropping every `Client` handle does
//! the same in the background. [`Server::shutdown`] closes every connection of a listener (MQTT
//! 5 clients are told 0x8B Server shutting down) and waits for them. Each closing connection
//! gets [`ClientOptions::linger`] / [`ServerOptions::linger`] to write its last bytes. The
//! `Closed` event is always the last one, sent after the transport is closed.

// One exception, in `socket_options`: the receive low-water mark, which no safe crate
// exposes (one `setsockopt` call on a borrowed socket).
#![deny(unsafe_code)]

// The layers, bottom to top: each file imports only from those before it (checked by
// `.ci/layers.py`, which reads this order).

// 1. Why an operation failed.
mod error;

// 2. Runtime traits (spawn, timer) and the one clock.
mod runtime;

// 3. The engine's own transport trait; a socket's receive low-water mark (Unix).
mod transport;

#[cfg(unix)]
mod socket_options;

// 4. A runtime's streams and TCP; where to connect; TLS configuration; WebSocket framing.
mod net;

mod endpoint;

#[cfg(feature = "engine-tls")]
mod tls;

#[cfg(feature = "engine-websocket")]
mod ws;

mod rewrite;

// 5. Per-connection state shared by a driver and its handles.
mod shared;

// 6. Operation completion.
mod publish;

// 6b. Reconnecting by itself: the policy and the connector.
mod reconnect;

// 7. The drive loop.
mod driver;

// 8. Client, server flow, broker.
mod client;

mod server;

// The broker's store (below the broker, which drives it).
#[cfg(feature = "persistence")]
pub mod persistence;

mod broker;

// 8b. Connecting to and listening on any endpoint (TCP, TLS, WebSocket, Unix).
mod dial;

// 9. The engine named for one runtime (a macro for every adapter).
mod named;

// 10. The tokio glue: parking idle broker connections, the runtime, and a client's TLS
// session that reads acknowledgements in batches.
#[cfg(all(feature = "tokio-runtime", unix))]
mod tokio_parking;

#[cfg(feature = "tokio-runtime")]
mod tokio_rt;

#[cfg(all(feature = "tls", any(target_os = "linux", target_os = "android")))]
mod tokio_tls_reads;

// 11. The transports on tokio.
#[cfg(feature = "tokio-runtime")]
mod tokio_transports;

// 12. A broker program's configuration: password and ACL files, mosquitto.conf as typed
// settings, the `$SYS` topics.
#[cfg(feature = "broker-config")]
pub mod auth;

#[cfg(feature = "broker-config")]
mod settings;

#[cfg(feature = "broker-config")]
mod sys_topics;

/// The protocol crate, re-exported: one dependency line brings the whole stack.
pub use mqtt_streaming_proto;
/// The sans-IO sessions and broker core, re-exported.
pub use mqtt_streaming_session;

pub use broker::{BrokerNotice, BrokerNotices, BrokerOptions};
pub use client::{ClientEvents, ClientOptions, Event, Reconnect};
pub use dial::{ListenOptions, TransportOptions};
pub use endpoint::{Endpoint, EndpointError, Scheme};
pub use error::{Error, TryPublishError};
pub use publish::{PublishOutcome, PublishReceipt};
pub use reconnect::ReconnectPolicy;
pub use rewrite::ConnectRewrite;
/// rustls, re-exported (features `tls`, `engine-tls`): the version whose `ClientConfig` and
/// `ServerConfig` [`TlsClient::from_config`] and [`TlsServer::from_config`] take.
#[cfg(feature = "engine-tls")]
pub use rustls;
pub use server::{
    ConnectionEvent, ConnectionEvents, ConnectionHandle, DetachedSession, ServerConnection,
    ServerOptions,
};
#[cfg(feature = "broker-config")]
pub use settings::{
    BrokerSettings, ConfigError, ListenerProtocol, ListenerSettings, LogSettings,
    PersistenceSettings, TlsSettings,
};
pub use shared::Events;
#[cfg(feature = "broker-config")]
pub use sys_topics::{publish_sys_topics, SysTopics};
#[cfg(feature = "engine-tls")]
pub use tls::{
    certificate_common_name, MosquittoTlsFlags, TlsClient, TlsClientOptions, TlsError, TlsServer,
    TlsServerOptions, TlsVersion,
};
#[cfg(feature = "tokio-runtime")]
pub use tokio_rt::{
    connect, connect_reconnecting, connect_tcp, connect_tcp_reconnecting, serve_connection,
    BrokerHandle, BrokerServer, Client, Server, TokioIo, TokioRuntime, TokioTimer, Transport,
};
#[cfg(feature = "tokio-runtime")]
pub use tokio_transports::{
    connect_endpoint, connect_endpoint_reconnecting, connect_url, connect_url_reconnecting,
    connect_url_reconnecting_with, connect_url_with, listen_endpoint, listen_url,
};
#[cfg(feature = "engine-websocket")]
pub use ws::{WsOptions, WsTransport, WS_SUBPROTOCOL};

pub mod engine {
    //! The runtime-generic engine: what a runtime implements ([`Runtime`], [`Timer`],
    //! [`Transport`], [`Adapt`], and for TCP [`NetRuntime`], [`Bind`], [`TcpConnect`]), and
    //! the client, server and broker over any runtime ([`ClientOn`], [`ServerOn`],
    //! [`BrokerServerOn`], [`connect_on`]...). Each adapter names them for its runtime
    //! (`mqtt_streaming_tokio::Client` is `ClientOn<TokioRuntime>`) with
    //! [`named_for_runtime!`](crate::named_for_runtime). On Unix, a runtime's TCP transport
    //! sets its read low-water mark ([`Transport::set_read_low_water`]) with
    //! `set_receive_low_water`.

    pub use crate::broker::{BrokerHandleOn, BrokerServerOn};
    pub use crate::client::{
        connect_on, connect_reconnecting_on, connect_tcp_on, connect_tcp_reconnecting_on,
        connect_transport_on, ClientOn,
    };
    pub use crate::dial::{
        connect_endpoint_on, connect_endpoint_reconnecting_on, scheme_supported, unsupported, Dial,
    };
    pub use crate::net::{Accepted, Adapt, Bind, Listener, Listeners, NetRuntime, TcpConnect};
    #[cfg(unix)]
    pub use crate::runtime::IdleLot;
    pub use crate::runtime::{Runtime, Timer};
    pub use crate::server::{serve_connection_on, ServerOn};
    #[cfg(unix)]
    pub use crate::socket_options::set_receive_low_water;
    pub use crate::transport::{BoxTransport, CloseTolerant, Transport};
}

/// The workspace README's examples, compiled and run as doc tests so they cannot rot.
#[cfg(all(doctest, feature = "tokio-runtime"))]
#[doc = include_str!("../../README.md")]
struct WorkspaceReadme;
