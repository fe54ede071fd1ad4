//! Fuzz drivers for the session machines: each turns arbitrary bytes into a sequence of
//! inputs, commands and clock steps, and panics if an invariant breaks. The cargo-fuzz targets
//! in `fuzz/` call them, and `cargo test` replays the committed corpora through them. The
//! broker's driver lives in [`fuzz_broker`](super::fuzz_broker) and is re-exported here as
//! [`check_broker`].
//!
//! Invariants checked for every input:
//! - no panic, whatever the peer sends or the application asks;
//! - everything a session transmits decodes as valid packets of its protocol version (a
//!   session never emits a malformed packet, even while closing);
//! - every token comes back at most once, and `Closed` is reported at most once per
//!   connection;
//! - queues stay within their configured bounds.

use alloc::collections::BTreeMap;
use core::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    AckProperties, ConnAck, ConnAckProperties, Connect, Decoder, Disconnect, MqttString, Packet,
    PacketId, ProtocolVersion, PubResponse, Publish, QoS, QosPid, ReasonCode, SubAck, TopicFilter,
    TopicName,
};

pub use super::fuzz_broker::check_broker;
use super::input::Input;
use crate::client::{ClientConfig, ClientEvent, ClientSession};
use crate::message::{Message, SubscribeRequest};
use crate::server::{ServerConfig, ServerEvent, ServerSession};
use crate::time::Instant;

impl<'a> Input<'a> {
    fn version(&mut self) -> ProtocolVersion {
        match self.byte() % 3 {
            0 => ProtocolVersion::V3_1,
            1 => ProtocolVersion::V3_1_1,
            _ => ProtocolVersion::V5,
        }
    }

    fn packet_id(&mut self) -> PacketId {
        PacketId::new(self.u16() % 8 + 1).unwrap_or(PacketId::MIN)
    }

    fn topic(&mut self) -> TopicName {
        const TOPICS: [&str; 4] = ["a", "a/b", "$SYS/x", "b/c/d"];
        TopicName::from_static(TOPICS[usize::from(self.byte()) % TOPICS.len()])
            .unwrap_or_else(|_| TopicName::empty())
    }
}

/// Decodes everything a session transmitted; panics on a malformed packet.
fn assert_valid_output(version: ProtocolVersion, bytes: &mut BytesMut) {
    let decoder = Decoder::new(version);
    loop {
        match decoder.decode(bytes) {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => panic!("session emitted a malformed packet: {e}"),
        }
    }
    assert!(bytes.is_empty(), "session emitted a partial packet");
}

/// A valid packet a server might send a client, built from the input.
fn server_packet(input: &mut Input<'_>) -> Packet {
    match input.byte() % 9 {
        0 => Packet::from(ConnAck {
            session_present: input.byte() % 2 == 0,
            reason_code: if input.byte() % 4 == 0 {
                ReasonCode::NotAuthorized
            } else {
                ReasonCode::Success
            },
            properties: ConnAckProperties {
                receive_maximum: core::num::NonZeroU16::new(u16::from(input.byte() % 4)),
                topic_alias_maximum: Some(u16::from(input.byte() % 3)),
                ..ConnAckProperties::default()
            },
        }),
        1 => Packet::PubAck(PubResponse::new(input.packet_id())),
        2 => Packet::PubRec(PubResponse::new(input.packet_id())),
        3 => Packet::PubRel(PubResponse::new(input.packet_id())),
        4 => Packet::PubComp(PubResponse::new(input.packet_id())),
        5 => Packet::SubAck(SubAck {
            packet_id: input.packet_id(),
            reason_codes: alloc::vec![ReasonCode::GrantedQoS1],
            properties: AckProperties::default(),
        }),
        6 => Packet::PingResp,
        7 => Packet::Disconnect(Disconnect::new(ReasonCode::ServerShuttingDown)),
        _ => {
            let qos = input.qos();
            let mut publish = Publish::new(
                input.topic(),
                QosPid::new(qos, input.packet_id()),
                Bytes::new(),
            );
            publish.dup = qos != QoS::AtMostOnce && input.byte() % 2 == 0;
            Packet::Publish(publish)
        }
    }
}

/// Counts terminal events per token; panics on a second one.
#[derive(Default)]
struct Tokens(BTreeMap<u64, u32>);

impl Tokens {
    fn returned(&mut self, token: u64) {
        let n = self.0.entry(token).or_default();
        *n += 1;
        assert_eq!(*n, 1, "token {token} returned twice");
    }
}

/// Drives a [`ClientSession`] with arbitrary server bytes, valid server packets, commands,
/// clock steps and connection losses.
pub fn check_client_session(data: &[u8]) {
    let mut input = Input { data };
    let config = ClientConfig {
        max_inflight: 3,
        max_queued: 5,
        receive_maximum: 4,
        max_packet_size: 512,
        ..ClientConfig::default()
    };
    let mut client: ClientSession<u64> = ClientSession::new(config);
    let mut now = Instant::from_millis(0);
    let mut version = ProtocolVersion::V3_1_1;
    let mut tokens = Tokens::default();
    let mut next_token = 0u64;
    let mut rx = BytesMut::new();
    let mut tx = BytesMut::new();
    while !input.is_empty() {
        match input.byte() % 10 {
            0 => {
                version = input.version();
                let mut connect =
                    Connect::new(version, MqttString::from_static("fuzz").unwrap_or_default());
                connect.clean_start = input.byte() % 2 == 0;
                connect.keep_alive = u16::from(input.byte() % 4);
                rx.clear();
                let _ = client.connect(now, connect);
            }
            1 => rx.extend_from_slice(input.bytes(64)),
            2 | 3 => {
                let packet = server_packet(&mut input);
                let _ = packet.encode(version, &mut rx);
            }
            4 => {
                next_token += 1;
                let message = Message::new(input.topic(), input.qos(), Bytes::from_static(b"m"));
                if let Err(rejected) = client.publish(now, message, next_token) {
                    tokens.returned(rejected.token);
                }
            }
            5 => {
                next_token += 1;
                let filter =
                    TopicFilter::new("a/#").unwrap_or_else(|_| TopicFilter::from(input.topic()));
                if let Err(rejected) =
                    client.subscribe(now, SubscribeRequest::new(filter, input.qos()), next_token)
                {
                    tokens.returned(rejected.token);
                }
            }
            6 => now = now + Duration::from_millis(u64::from(input.u16())),
            7 => client.handle_closed(now),
            8 => {
                let _ = client.disconnect(now, Disconnect::new(ReasonCode::Success));
            }
            _ => client.handle_timeout(now),
        }
        client.handle_read(now, &mut rx);
        client.handle_timeout(now);
        while client.poll_transmit(now, &mut tx) > 0 {}
        assert_valid_output(client.version(), &mut tx);
        let mut closed = 0;
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::Published { token, .. }
                | ClientEvent::Subscribed { token, .. }
                | ClientEvent::Unsubscribed { token, .. }
                | ClientEvent::Abandoned { token, .. } => tokens.returned(token),
                ClientEvent::Closed { .. } => closed += 1,
                _ => {}
            }
        }
        assert!(closed <= 1, "Closed reported {closed} times at once");
        assert!(client.queued_len() <= 5 + 5, "queues over their bounds");
        assert!(client.inflight_len() <= usize::from(u16::MAX));
    }
}

/// Drives a [`ServerSession`] with arbitrary client bytes, valid client packets, answers,
/// publishes, clock steps and connection loss.
pub fn check_server_session(data: &[u8]) {
    let mut input = Input { data };
    let config = ServerConfig {
        max_inflight: 3,
        max_queued: 5,
        receive_maximum: 4,
        max_packet_size: 512,
        max_pending_requests: 4,
        ..ServerConfig::default()
    };
    let mut now = Instant::from_millis(0);
    let mut server: ServerSession<u64> = ServerSession::new(config, now);
    let mut version = ProtocolVersion::V3_1_1;
    let mut tokens = Tokens::default();
    let mut next_token = 0u64;
    let mut rx = BytesMut::new();
    let mut tx = BytesMut::new();
    let mut closed = 0;
    while !input.is_empty() {
        match input.byte() % 9 {
            0 => {
                version = input.version();
                let mut connect =
                    Connect::new(version, MqttString::from_static("fuzz").unwrap_or_default());
                connect.keep_alive = u16::from(input.byte() % 4);
                let _ = Packet::from(connect).encode(version, &mut rx);
            }
            1 => rx.extend_from_slice(input.bytes(64)),
            2 => {
                let qos = input.qos();
                let publish = Publish::new(
                    input.topic(),
                    QosPid::new(qos, input.packet_id()),
                    Bytes::new(),
                );
                let _ = Packet::Publish(publish).encode(version, &mut rx);
            }
            3 => {
                let packet = match input.byte() % 5 {
                    0 => Packet::PubAck(PubResponse::new(input.packet_id())),
                    1 => Packet::PubRec(PubResponse::new(input.packet_id())),
                    2 => Packet::PubRel(PubResponse::new(input.packet_id())),
                    3 => Packet::PubComp(PubResponse::new(input.packet_id())),
                    _ => Packet::PingReq,
                };
                let _ = packet.encode(version, &mut rx);
            }
            4 => {
                let _ = server.accept(now, ConnAckProperties::default(), None);
            }
            5 => {
                next_token += 1;
                let message = Message::new(input.topic(), input.qos(), Bytes::from_static(b"m"));
                if let Err(rejected) = server.publish(now, message, next_token) {
                    tokens.returned(rejected.token);
                }
            }
            6 => now = now + Duration::from_millis(u64::from(input.u16())),
            7 => server.handle_closed(now),
            _ => {
                let _ = server.disconnect(now, Disconnect::new(ReasonCode::AdministrativeAction));
            }
        }
        server.handle_read(now, &mut rx);
        server.handle_timeout(now);
        while server.poll_transmit(now, &mut tx) > 0 {}
        assert_valid_output(server.version(), &mut tx);
        while let Some(event) = server.poll_event() {
            match event {
                ServerEvent::Published { token, .. } | ServerEvent::Abandoned { token, .. } => {
                    tokens.returned(token)
                }
                ServerEvent::Closed { .. } => closed += 1,
                ServerEvent::Subscribe(s) => {
                    let codes = s
                        .subscriptions
                        .iter()
                        .map(|_| ReasonCode::GrantedQoS1)
                        .collect();
                    let _ = server.suback(now, s.packet_id, codes, AckProperties::default());
                }
                _ => {}
            }
        }
        assert!(closed <= 1, "Closed reported {closed} times");
        assert!(server.queued_len() <= 5);
    }
}
