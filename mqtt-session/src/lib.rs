//! Sans-IO MQTT sessions as pure state machines: [`ClientSession`], [`ServerSession`] (one
//! per connection, for writing your own server) and [`broker::Broker`] (many server sessions
//! and the routing between them: an embeddable broker core).
//!
//! A session takes bytes and timestamps and returns bytes, events and its next deadline. It
//! does no I/O, reads no clock, spawns nothing and takes no lock, so the same session runs
//! under any async runtime, in a blocking loop, in a simulation with a manual clock, or in a
//! fuzzer. `no_std` with `alloc`.
//!
//! # The contract
//!
//! Every session type ([`ClientSession`], [`ServerSession`], [`broker::Broker`]) has three
//! kinds of method besides its constructors and read-only accessors:
//!
//! - **Inputs**, named `handle_*`, each taking the current time: `handle_read(now, &mut buf)`
//!   consumes every whole packet at the front of the caller's buffer (a partial packet stays
//!   for the next read); `handle_timeout(now)` fires the deadlines that have passed (harmless
//!   when called early or twice); `handle_closed(now)` reports that the transport is gone.
//!   Read the transport only while `wants_read()` is `true` (back-pressure).
//! - **Commands**, named by their verb, each taking the current time and returning a
//!   `Result`: `connect`, `publish`, `subscribe`, `unsubscribe`, `ack`, `auth`, `disconnect`
//!   on the client; `accept`, `reject`, `publish`, `suback`, `unsuback`, `ack`, `auth`,
//!   `disconnect`, `detach` on the server. A refused command changes nothing and hands back
//!   what it was given (see [Errors](#errors)).
//! - **Outputs**, named `poll_*`, which only drain what the inputs and commands produced:
//!   `poll_transmit(now, &mut out)` appends bytes for the transport and returns how many,
//!   `poll_event()` yields one event at a time, `poll_timeout()` says when `handle_timeout`
//!   has work next.
//!
//! **Drain order.** After every input and every command: call `poll_transmit` until it returns
//! 0 and write what it appended to the transport; then take `poll_event` until `None`; then
//! read `poll_timeout` and sleep no longer than it says. A `Closed` event means the session is
//! done with the transport: the bytes drained before it (a DISCONNECT that explains the
//! close, say) are the last ones to write; then close the transport. A command issued while
//! handling events is an input like any other: drain again.
//!
//! **Time** is an argument: [`Instant`] is a number of milliseconds from any origin the
//! driver picks, read from a monotonic clock. It only moves forward: never pass a `now`
//! earlier than one already passed to the same session. The sessions never read a clock, so
//! tests and simulations run at any speed.
//!
//! [`Endpoint`] is the part of this contract both roles share, for drivers written once.
//!
//! # A blocking client
//!
//! The whole run loop over a `std::net::TcpStream`, with no async runtime (the async adapter
//! crates do the same with sockets and timers of their runtime):
//!
//! ```no_run
//! use std::io::{ErrorKind, Read, Write};
//! use std::net::TcpStream;
//! use std::time::Duration;
//!
//! use bytes::BytesMut;
//! use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicFilter, TopicName};
//! use mqtt_streaming_session::{
//!     ClientConfig, ClientEvent, ClientSession, Instant, Message, SubscribeRequest,
//! };
//!
//! fn main() -> std::io::Result<()> {
//!     let mut stream = TcpStream::connect("127.0.0.1:1883")?;
//!     // The driver's clock: milliseconds since start, from the monotonic std clock.
//!     let start = std::time::Instant::now();
//!     let now = || Instant::from_millis(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
//!
//!     let mut client: ClientSession<&'static str> = ClientSession::new(ClientConfig::default());
//!     let mut connect = Connect::new(ProtocolVersion::V5, MqttString::new("blocking").unwrap());
//!     connect.keep_alive = 30;
//!     client.connect(now(), connect).expect("a new session takes a CONNECT");
//!     // Commands may come before the CONNACK: they wait in the session's bounded queue.
//!     let filter = TopicFilter::new("demo/#").unwrap();
//!     client
//!         .subscribe(now(), SubscribeRequest::new(filter, QoS::AtLeastOnce), "subscribe")
//!         .expect("the queue has room");
//!
//!     let mut read_buf = BytesMut::with_capacity(8 * 1024);
//!     let mut write_buf = BytesMut::new();
//!     let mut chunk = [0u8; 8 * 1024];
//!     loop {
//!         // Drain: bytes for the transport first, then events, then the next deadline.
//!         while client.poll_transmit(now(), &mut write_buf) > 0 {}
//!         stream.write_all(&write_buf)?;
//!         write_buf.clear();
//!         while let Some(event) = client.poll_event() {
//!             match event {
//!                 ClientEvent::Connected(_) => {
//!                     let topic = TopicName::new("demo/hello").unwrap();
//!                     let message = Message::new(topic, QoS::AtLeastOnce, "hello");
//!                     if let Err(refused) = client.publish(now(), message, "hello") {
//!                         eprintln!("not published: {}", refused.error);
//!                     }
//!                 }
//!                 ClientEvent::Message { publish, .. } => {
//!                     println!("{}: {:?}", publish.topic.as_str(), publish.payload);
//!                 }
//!                 ClientEvent::Published { token, reason_code, .. } => {
//!                     println!("{token} acknowledged: {reason_code}");
//!                 }
//!                 ClientEvent::Subscribed { token, suback } => {
//!                     println!("{token}: {:?}", suback.reason_codes);
//!                 }
//!                 ClientEvent::Closed { reason, .. } => {
//!                     // Everything the session had to say was written above.
//!                     println!("closed: {reason}");
//!                     return Ok(());
//!                 }
//!                 _ => {}
//!             }
//!         }
//!         // The events' commands produced output: drain it before waiting.
//!         if client.poll_transmit(now(), &mut write_buf) > 0 {
//!             continue;
//!         }
//!         // Wait for input, but no longer than the next deadline.
//!         let wait = match client.poll_timeout() {
//!             Some(deadline) => deadline.as_millis().saturating_sub(now().as_millis()),
//!             None => 60_000,
//!         };
//!         stream.set_read_timeout(Some(Duration::from_millis(wait.max(1))))?;
//!         if !client.wants_read() {
//!             // Only while disconnected here: the transmit buffer was just drained.
//!             client.handle_timeout(now());
//!             continue;
//!         }
//!         match stream.read(&mut chunk) {
//!             Ok(0) => client.handle_closed(now()),
//!             Ok(n) => {
//!                 read_buf.extend_from_slice(&chunk[..n]);
//!                 client.handle_read(now(), &mut read_buf);
//!             }
//!             Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
//!                 client.handle_timeout(now());
//!             }
//!             Err(e) if e.kind() == ErrorKind::Interrupted => {}
//!             Err(e) => {
//!                 client.handle_closed(now());
//!                 return Err(e);
//!             }
//!         }
//!     }
//! }
//! ```
//!
//! # One turn, step by step
//!
//! The same loop with the transport replaced by two buffers, so every step can be checked:
//!
//! ```
//! use bytes::BytesMut;
//! use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicFilter, TopicName};
//! use mqtt_streaming_session::{ClientConfig, ClientEvent, ClientSession, Instant, Message, SubscribeRequest};
//!
//! // A transport stand-in: bytes the "server" would send us, and what we sent it.
//! let mut from_server = BytesMut::new();
//! let mut to_server = BytesMut::new();
//! let mut now = Instant::from_millis(0);
//!
//! let mut client: ClientSession<&'static str> = ClientSession::new(ClientConfig::default());
//! let mut connect = Connect::new(ProtocolVersion::V5, MqttString::new("demo").unwrap());
//! connect.keep_alive = 30;
//! client.connect(now, connect).unwrap();
//! client.subscribe(now, SubscribeRequest::new(TopicFilter::new("news/#").unwrap(), QoS::AtLeastOnce), "sub").unwrap();
//!
//! // One turn of the loop: the server accepts (CONNACK), then acknowledges the SUBSCRIBE
//! // (SUBACK for packet id 1 granting QoS 1).
//! from_server.extend_from_slice(&[0x20, 0x03, 0x00, 0x00, 0x00]);
//! from_server.extend_from_slice(&[0x90, 0x04, 0x00, 0x01, 0x00, 0x01]);
//! client.handle_read(now, &mut from_server);
//! while client.poll_transmit(now, &mut to_server) > 0 {}
//! let mut events = Vec::new();
//! while let Some(event) = client.poll_event() {
//!     events.push(event);
//! }
//! assert!(matches!(events[0], ClientEvent::Connected(_)));
//! assert!(matches!(events[1], ClientEvent::Subscribed { token: "sub", .. }));
//!
//! // Nothing happens for 30 s: the keep-alive deadline asks for a PINGREQ.
//! now = client.poll_timeout().unwrap();
//! client.handle_timeout(now);
//! to_server.clear();
//! client.poll_transmit(now, &mut to_server);
//! assert_eq!(&to_server[..], [0xC0, 0x00]);
//! ```

//! # The server side
//!
//! [`ServerSession`] follows the same contract for one accepted connection: its CONNECT
//! arrives as [`ServerEvent::Connect`] and the application answers with `accept` or `reject`
//! within [`ServerConfig::decide_timeout`] (past it the session refuses the client itself,
//! 0x89 Server busy); a client with an empty client identifier gets one assigned unless the
//! application chooses it. SUBSCRIBE and UNSUBSCRIBE arrive as events answered with `suback`
//! / `unsuback`. After the close, `detach` hands out the durable [`SessionState`] for the
//! client's next connection.
//! [`broker::Broker`] owns many of them, keyed by connection, and does the routing, retained
//! messages, wills, persistent sessions and shared subscriptions: drive it the same way, per
//! connection ([`broker::Broker::handle_read`], [`broker::Broker::poll_transmit`]), and read a
//! connection only while [`broker::Broker::wants_read`] says so: under overload the broker
//! holds publishers back (withheld acknowledgements, unread connections) rather than drop a
//! message it acknowledged (see [`broker::BrokerConfig`]).
//!
//! # Errors
//!
//! A command the session cannot carry out returns [`Rejected`], handing the command and its
//! token back ([`ConnectRejected`] and [`AcceptRejected`] hand back the `Connect`, and the
//! CONNACK properties and the stored session). Nothing is lost to a refusal, and a refused
//! command changes nothing. `disconnect` is never refused on an open connection: it always
//! closes. Back-pressure has variants of its own, so a caller can tell "wait and retry" from a
//! mistake ([`CommandError::is_backpressure`]): [`CommandError::QueueFull`] (the bounded queue
//! behind the in-flight window), [`CommandError::TransmitBufferFull`] (drain `poll_transmit`
//! to the transport first) and [`CommandError::PacketIdsExhausted`] (all 65,535 identifiers
//! in flight). A peer that breaks the protocol is answered (MQTT 5: a DISCONNECT with the
//! reason code) and reported once, as a `Closed` event with an [`Initiator`] and a
//! [`CloseReason`].
//!
//! # Test support
//!
//! The `sim` feature adds [`sim`]: a seeded network that delays, fragments and cuts, a manual
//! clock, a client/server [`sim::Pair`], a [`sim::BrokerNet`] of many clients around a broker,
//! and the fuzz drivers the cargo-fuzz targets and the corpus replay tests share.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

/// Builder-style setters for a `#[non_exhaustive]` configuration struct, so that other crates
/// can change any field of `Default::default()`: `with_<field>(value)`, one per field.
macro_rules! setters {
    ($ty:ident { $($field:ident / $with:ident : $t:ty),* $(,)? }) => {
        impl $ty {
            $(
                #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
                #[must_use]
                pub fn $with(mut self, value: $t) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

pub mod broker;
mod client;
mod endpoint;
mod error;
mod limits;
mod message;
mod server;
mod shared;
#[cfg(feature = "sim")]
pub mod sim;
mod time;
mod transmit;

pub use client::{
    ClientConfig, ClientEvent, ClientSession, ClientSnapshot, ConnectionState, OutboundFlowSnapshot,
};
pub use endpoint::Endpoint;
pub use error::{
    AcceptRejected, CloseReason, CommandError, ConnectRejected, Initiator, ProtocolViolation,
    Rejected,
};
pub use limits::PeerLimits;
pub use message::{Message, SubscribeRequest, UnsubscribeRequest};
pub use server::{
    ServerConfig, ServerEvent, ServerSession, ServerState, SessionExpiry, SessionState,
};
pub use shared::flows::{AbandonCause, QueueOverflow};
pub use shared::inbound::{AckMode, InboundId};
pub use shared::inflight::OutboundStage;
pub use time::Instant;
pub use transmit::{TransmitBuf, SEGMENT_FROM};

/// This crate's README, compiled and run as a doc test so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct Readme;
