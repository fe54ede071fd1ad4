//! One script harness for byte-level conversations with either session.
//!
//! The test plays the peer: it builds packets with `mqtt_streaming_proto` types, encodes them
//! for the connection's protocol version and feeds the bytes to the session through a read
//! buffer. Everything the session transmits is decoded back into packets with
//! `mqtt_streaming_proto::Decoder` (the whole transmit buffer must decode, with nothing left
//! over), and every event is collected. Time is a manual clock of [`Instant`] values that only
//! the test moves. [`Harness`] is written once over [`Endpoint`]; [`client`] and [`server`]
//! add each role's commands, packet builders and event inspection (`Script` plays a server
//! to a `ClientSession`, `Server` plays a client to a `ServerSession`).

#![allow(dead_code, unused_imports)]

pub(crate) mod client;
pub(crate) mod server;

use std::collections::VecDeque;
use std::fmt::Debug;

use bytes::BytesMut;
use mqtt_streaming_proto::{
    Connect, Decoder, MqttString, Packet, PacketId, ProtocolVersion, PubResponse, Publish, QoS,
    TopicFilter, TopicName, PROTOCOL_MAX_PACKET_SIZE,
};
use mqtt_streaming_session::{Endpoint, Instant, Message};

pub(crate) const V31: ProtocolVersion = ProtocolVersion::V3_1;
pub(crate) const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
pub(crate) const V5: ProtocolVersion = ProtocolVersion::V5;

/// A session driven by a test that plays its peer.
pub(crate) struct Harness<S: Endpoint> {
    pub(crate) session: S,
    pub(crate) now: Instant,
    /// Version used to encode what the peer sends and decode what the session sends.
    pub(crate) version: ProtocolVersion,
    /// The driver's read buffer: bytes the session has not consumed yet.
    pub(crate) inbox: BytesMut,
    /// Whether bytes the session leaves unread stay for the next read (the server scripts
    /// replay them; the client scripts drop them, as a new read would start afresh).
    keep_unread: bool,
    sent: VecDeque<Packet>,
    events: VecDeque<S::Event>,
    /// Every `(time, packet)` the session ever transmitted, for timing assertions.
    pub(crate) log: Vec<(Instant, Packet)>,
}

impl<S: Endpoint> Harness<S>
where
    S::Event: Debug,
{
    pub(crate) fn with_session(
        session: S,
        version: ProtocolVersion,
        now: Instant,
        keep_unread: bool,
    ) -> Self {
        Self {
            session,
            now,
            version,
            inbox: BytesMut::new(),
            keep_unread,
            sent: VecDeque::new(),
            events: VecDeque::new(),
            log: Vec::new(),
        }
    }

    /// Drains the session the way the drain rule says: transmit, then events.
    /// Runs one command on the session at the harness's clock, then drains what it sent.
    pub(crate) fn command<R>(&mut self, command: impl FnOnce(&mut S, Instant) -> R) -> R {
        let r = command(&mut self.session, self.now);
        self.drain();
        r
    }

    pub(crate) fn drain(&mut self) {
        let mut wire = BytesMut::new();
        loop {
            let before = wire.len();
            let n = self.session.poll_transmit(self.now, &mut wire);
            assert_eq!(wire.len(), before + n, "poll_transmit's count is wrong");
            if n == 0 {
                break;
            }
        }
        let decoder = Decoder::new(self.version).with_max_packet_size(PROTOCOL_MAX_PACKET_SIZE);
        while !wire.is_empty() {
            match decoder.decode(&mut wire) {
                Ok(Some(packet)) => {
                    self.log.push((self.now, packet.clone()));
                    self.sent.push_back(packet);
                }
                Ok(None) => panic!("the session transmitted a partial packet: {wire:?}"),
                Err(e) => panic!("the session transmitted bytes that do not decode: {e}"),
            }
        }
        while let Some(event) = self.session.poll_event() {
            self.events.push_back(event);
        }
    }

    /// Packets transmitted since the last call.
    pub(crate) fn sent(&mut self) -> Vec<Packet> {
        self.sent.drain(..).collect()
    }

    /// Events reported since the last call.
    pub(crate) fn events(&mut self) -> Vec<S::Event> {
        self.events.drain(..).collect()
    }

    /// Asserts that nothing was transmitted and nothing reported since the last look.
    pub(crate) fn assert_quiet(&mut self) {
        let sent = self.sent();
        let events = self.events();
        assert!(sent.is_empty(), "unexpected transmission: {sent:?}");
        assert!(events.is_empty(), "unexpected events: {events:?}");
    }

    // ----- inputs -----

    /// Encodes `packet` as the peer would and feeds it.
    pub(crate) fn feed(&mut self, packet: Packet) {
        let bytes = encode(&packet, self.version);
        self.feed_bytes(&bytes);
    }

    /// Appends `bytes` to the read buffer and lets the session read.
    pub(crate) fn feed_bytes(&mut self, bytes: &[u8]) {
        self.inbox.extend_from_slice(bytes);
        self.read();
        if !self.keep_unread {
            self.inbox.clear();
        }
    }

    /// Lets the session read what is in the read buffer (after it stopped early).
    pub(crate) fn read(&mut self) {
        self.session.handle_read(self.now, &mut self.inbox);
        self.drain();
    }

    /// Moves the clock to `now + ms`, firing every deadline on the way at its own time, as a
    /// driver sleeping on `poll_timeout` would.
    pub(crate) fn advance(&mut self, ms: u64) {
        let target = Instant::from_millis(self.now.as_millis() + ms);
        let mut guard = 0;
        while let Some(deadline) = self.session.poll_timeout() {
            if deadline > target {
                break;
            }
            guard += 1;
            assert!(guard < 100_000, "the deadline does not move: {deadline:?}");
            self.now = self.now.max(deadline);
            self.session.handle_timeout(self.now);
            self.drain();
        }
        self.now = target;
    }

    pub(crate) fn transport_closed(&mut self) {
        self.session.handle_closed(self.now);
        self.drain();
    }
}

/// Encodes a packet for `version`.
pub(crate) fn encode(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut bytes = BytesMut::new();
    packet
        .encode(version, &mut bytes)
        .expect("the scripted peer packet encodes");
    bytes
}

// ----- packet builders both roles use -----

/// A CONNECT with Clean Start, no keep alive and nothing else.
pub(crate) fn connect(version: ProtocolVersion, client_id: &str) -> Connect {
    let mut c = Connect::new(version, MqttString::new(client_id).unwrap());
    c.keep_alive = 0;
    c
}

pub(crate) fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero packet id")
}

pub(crate) fn topic(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

pub(crate) fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

pub(crate) fn mstr(s: &str) -> MqttString {
    MqttString::new(s).unwrap()
}

pub(crate) fn msg(t: &str, qos: QoS, payload: &'static str) -> Message {
    Message::new(topic(t), qos, payload)
}

pub(crate) fn puback(id: u16) -> Packet {
    Packet::PubAck(PubResponse::new(pid(id)))
}

pub(crate) fn pubrec(id: u16) -> Packet {
    Packet::PubRec(PubResponse::new(pid(id)))
}

pub(crate) fn pubrel(id: u16) -> Packet {
    Packet::PubRel(PubResponse::new(pid(id)))
}

pub(crate) fn pubcomp(id: u16) -> Packet {
    Packet::PubComp(PubResponse::new(pid(id)))
}

// ----- inspection -----

/// The PUBLISHes among `packets`.
pub(crate) fn publishes(packets: &[Packet]) -> Vec<&Publish> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// The packet identifier of a PUBLISH (panics for QoS 0).
pub(crate) fn id_of(p: &Publish) -> u16 {
    p.qos_pid.packet_id().expect("QoS > 0").get()
}

pub(crate) fn qos_all() -> [QoS; 3] {
    [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
}
