//! Sans-IO MQTT sessions as pure state machines: [`ClientSession`], [`ServerSession`] (one
//! per connection, for writing your own server) and [`broker::Broker`] (many server sessions
//! and the routing between them: an embeddable broker core).
//!
//! A session takes bytes and timestamps and returns bytes, events and its next deadline. It
//! does no I/O, reads no clock, spawns nothing and takes no lock, so the same session runs
//! under any async runtime, in a blocking loop, in a simulation with a manual clock, or in a
//! fuzzer. `no_std` with `alloc`.
//!
//! # The run loop
//!
//! Every driver has the same shape:
//!
//! 1. Feed inputs: bytes read from the transport to `handle_read(now, &mut buf)`, an elapsed
//!    deadline to `handle_timeout(now)`, a lost transport to `handle_closed(now)`, and the
//!    application's commands (`publish`, `subscribe`, ...).
//! 2. Drain outputs, in this order: `poll_transmit(now, &mut out)` until it returns 0 (write
//!    `out` to the transport), then `poll_event()` until `None`, then `poll_timeout()` for when
//!    to call `handle_timeout` next.
//!
//! Time is an argument: [`Instant`] is a number of milliseconds the driver supplies.
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
//! closes. A peer that breaks the protocol is answered (MQTT 5: a DISCONNECT with the
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

pub mod broker;
mod client;
mod endpoint;
mod error;
mod message;
mod server;
mod shared;
#[cfg(feature = "sim")]
pub mod sim;
mod time;

pub use client::{
    AbandonCause, AckMode, ClientConfig, ClientEvent, ClientSession, ClientSnapshot,
    ConnectionState, OutboundFlowSnapshot, OutboundStage, QueueOverflow, ServerLimits,
};
pub use endpoint::Endpoint;
pub use error::{
    AcceptRejected, CloseReason, CommandError, ConnectRejected, Initiator, ProtocolViolation,
    Rejected,
};
pub use message::{Message, SubscribeRequest, UnsubscribeRequest};
pub use server::{
    ServerConfig, ServerEvent, ServerSession, ServerState, SessionExpiry, SessionState,
};
pub use shared::inbound::InboundId;
pub use time::Instant;

/// This crate's README, compiled and run as a doc test so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct Readme;
