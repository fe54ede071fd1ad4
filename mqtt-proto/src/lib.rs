//! A strict, zero-copy codec for MQTT 3.1, 3.1.1 and 5.0.
//!
//! `mqtt-streaming-proto` turns bytes into [`Packet`]s and packets into bytes, and does nothing else: no
//! I/O, no clock, no allocation it can avoid. It is `no_std` (with `alloc`) and depends only on
//! [`bytes`]. The session state machines of `mqtt-streaming-session` are built on it.
//!
//! # Decoding a stream
//!
//! A [`Decoder`] takes whole packets off the front of a [`BytesMut`](bytes::BytesMut) that the
//! caller fills from its transport. A partial packet is left in place (`Ok(None)`), so the loop
//! is: read, decode until `None`, read again. Decoded topics, payloads and binary properties
//! are slices of that buffer, not copies.
//!
//! ```
//! use bytes::BytesMut;
//! use mqtt_streaming_proto::{Decoder, Packet, ProtocolVersion, QosPid};
//!
//! let decoder = Decoder::new(ProtocolVersion::V5).with_max_packet_size(64 * 1024);
//! let mut buf = BytesMut::new();
//! // Bytes as they might arrive from a socket, cut at arbitrary points:
//! let reads: [&[u8]; 2] = [&[0x32, 0x0A, 0x00, 0x03, b'a', b'/'], &[b'b', 0x00, 0x07, 0x00, b'o', b'k']];
//! let mut packets = Vec::new();
//! for read in reads {
//!     buf.extend_from_slice(read);
//!     while let Some(packet) = decoder.decode(&mut buf)? {
//!         packets.push(packet);
//!     }
//! }
//! let [Packet::Publish(publish)] = &packets[..] else { panic!("one PUBLISH") };
//! assert_eq!(publish.topic.as_str(), "a/b");
//! assert!(matches!(publish.qos_pid, QosPid::AtLeastOnce(id) if id.get() == 7));
//! assert_eq!(&publish.payload[..], b"ok");
//! # Ok::<(), mqtt_streaming_proto::DecodeError>(())
//! ```
//!
//! # Decoding without owning: the borrowed fast path
//!
//! [`Decoder::decode`] gives packets that own their bytes: topics and payloads are `Bytes`
//! sharing the read buffer's storage, so a packet can be queued, retained or sent to another
//! task after the buffer has been reused. That sharing costs a few atomic reference-count
//! operations per packet. [`Decoder::decode_slice`] reads from a `&[u8]` instead and returns
//! a [`PacketRef`]: a PUBLISH as a [`PublishRef`] whose topic (`&str`), payload (`&[u8]`) and
//! MQTT 5 properties (a validated raw block, decoded on demand) borrow the input, with no
//! allocation and no reference count; every other packet type comes back owned
//! ([`PacketRef::Other`]). It runs exactly the checks of [`Decoder::decode`] and returns the
//! same errors for the same bytes.
//!
//! Use [`Decoder::decode`] when packets must outlive the read buffer; use
//! [`Decoder::decode_slice`] in the hottest loops, where each packet is handled (matched,
//! routed, copied where needed) before the buffer is reused. [`PublishRef::to_owned`] turns a
//! borrowed PUBLISH into the owned [`Publish`] that [`Decoder::decode`] would have returned.
//!
//! A decoded value shares the whole read buffer: a small message kept long (retained, queued
//! for an offline client, a will) keeps every byte of the read it came with. The
//! `to_owned_compact` methods ([`Publish::to_owned_compact`], [`TopicName::to_owned_compact`],
//! [`PublishProperties::to_owned_compact`], [`Will::to_owned_compact`],
//! [`Connect::to_owned_compact`], ...) copy each field once into an allocation of its own, for
//! values that outlive the read.
//!
//! ```
//! use mqtt_streaming_proto::{Decoder, PacketRef, ProtocolVersion};
//!
//! let decoder = Decoder::new(ProtocolVersion::V5);
//! // Two PUBLISH packets (QoS 0, no properties) and the start of a third, as read.
//! let read: &[u8] = &[
//!     0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', 0x00, b'1', //
//!     0x30, 0x07, 0x00, 0x03, b'a', b'/', b'c', 0x00, b'2', //
//!     0x30, 0x07, 0x00,
//! ];
//! let mut rest = read;
//! let mut kept = Vec::new();
//! while let Some((packet, used)) = decoder.decode_slice(rest)? {
//!     if let PacketRef::Publish(publish) = packet {
//!         if publish.topic == "a/c" {
//!             kept.push(publish.to_owned()); // owned: survives the buffer
//!         }
//!     }
//!     rest = &rest[used..];
//! }
//! assert_eq!(rest.len(), 3); // the partial packet stays for the next read
//! assert_eq!(kept.len(), 1);
//! assert_eq!(&kept[0].payload[..], b"2");
//! # Ok::<(), mqtt_streaming_proto::DecodeError>(())
//! ```
//!
//! # Encoding
//!
//! [`Packet::encode`] appends to a caller's buffer after computing the exact size
//! ([`Packet::encoded_len`]), so it reserves once and never writes a partial packet. Invalid
//! values are unrepresentable where a type can do it ([`PacketId`] is never zero, [`QosPid`]
//! has no identifier at QoS 0, [`TopicName`] has no wildcards); the rest is an
//! [`EncodeError`]. For large messages, [`Publish::encode_header`] writes everything but the
//! payload so the payload's `Bytes` can go to the transport without a copy.
//!
//! ```
//! use bytes::BytesMut;
//! use mqtt_streaming_proto::{Packet, ProtocolVersion, Publish, QosPid, TopicName};
//!
//! let publish = Publish::new(TopicName::new("grüße/welt").unwrap(), QosPid::AtMostOnce, "hi");
//! let mut buf = BytesMut::new();
//! Packet::Publish(publish).encode(ProtocolVersion::V3_1_1, &mut buf).unwrap();
//! // String lengths count bytes: "grüße/welt" is 12 bytes, not 10 characters.
//! assert_eq!(&buf[..4], [0x30, 16, 0x00, 12]);
//! ```
//!
//! # Errors
//!
//! Every [`DecodeError`] names the rule of the standard it enforces ([`DecodeError::rule`]) and
//! the MQTT 5 reason code a session sends before closing the connection
//! ([`DecodeError::reason_code`]): 0x81 Malformed Packet, 0x82 Protocol Error, 0x84
//! Unsupported Protocol Version or 0x95 Packet too large.
//!
//! # Versions
//!
//! Packets are one set of types for every version. Fields that exist only in MQTT 5 (reason
//! codes of acknowledgements, properties) are left out when encoding for 3.1.x, and take their
//! defaults when decoding it.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
// `arbitrary` (fuzzing only) needs std, and its derive names `std` paths.
#[cfg(feature = "arbitrary")]
extern crate std;

#[cfg(feature = "arbitrary")]
mod arbitrary_support;
mod compact;
mod decoder;
mod error;
#[cfg(feature = "arbitrary")]
pub mod fuzz_checks;
mod packet;
mod packet_id;
mod packet_type;
mod property;
mod qos;
mod reason_code;
mod string;
mod topic;
mod version;
mod wire;

pub use decoder::{Decoder, FixedHeader, PROTOCOL_MAX_PACKET_SIZE};
pub use error::{DecodeError, EncodeError};
pub use packet::{
    Auth, AuthProperties, ConnAck, ConnAckProperties, Connect, ConnectProperties, Disconnect,
    DisconnectProperties, Packet, PacketRef, PubResponse, Publish, PublishProperties, PublishRef,
    RetainHandling, SubAck, Subscribe, SubscribeProperties, Subscription, SubscriptionOptions,
    UnsubAck, Unsubscribe, UnsubscribeProperties, Will, WillProperties,
};
pub use packet_id::PacketId;
pub use packet_type::PacketType;
pub use property::{AckProperties, PayloadFormat, PropertyId, SubscriptionId, UserProperty};
pub use qos::{QoS, QosPid};
pub use reason_code::ReasonCode;
pub use string::{MqttString, StringError};
pub use topic::{topic_matches, TopicError, TopicFilter, TopicName};
pub use version::ProtocolVersion;
pub use wire::VARINT_MAX;

/// This crate's README, compiled and run as a doc test so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct Readme;
