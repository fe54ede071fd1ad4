//! A script harness for byte-level client session conversations.
//!
//! The test plays the server: it builds packets with `mqtt_streaming_proto` types, encodes them for the
//! connection's protocol version and feeds the bytes to the session. Everything the session
//! transmits is decoded back into packets with `mqtt_streaming_proto::Decoder` (the whole transmit buffer
//! must decode, with nothing left over), and every event is collected. Time is a manual clock
//! of [`Instant`] values that only the test moves.

#![allow(dead_code)]

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    ConnAck, Connect, Decoder, Disconnect, MqttString, Packet, PacketId, ProtocolVersion,
    PubResponse, Publish, QoS, QosPid, ReasonCode, SubAck, TopicFilter, TopicName, UnsubAck,
    PROTOCOL_MAX_PACKET_SIZE,
};
use mqtt_streaming_session::{
    ClientConfig, ClientEvent, ClientSession, ClientSnapshot, CloseReason, CommandError, Initiator,
    Instant, Message, Rejected, SubscribeRequest, UnsubscribeRequest,
};

pub(crate) const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
pub(crate) const V5: ProtocolVersion = ProtocolVersion::V5;

/// A client session driven by a test that plays the server.
pub(crate) struct Script<T = u32> {
    pub(crate) client: ClientSession<T>,
    pub(crate) now: Instant,
    /// Version used to encode what the "server" sends and decode what the client sends.
    pub(crate) version: ProtocolVersion,
    sent: VecDeque<Packet>,
    events: VecDeque<ClientEvent<T>>,
    /// Every `(time, packet)` the client ever transmitted, for timing assertions.
    pub(crate) log: Vec<(Instant, Packet)>,
}

impl<T: std::fmt::Debug> Script<T> {
    pub(crate) fn new(version: ProtocolVersion, config: ClientConfig) -> Self {
        Self::from_session(version, ClientSession::new(config))
    }

    pub(crate) fn from_session(version: ProtocolVersion, client: ClientSession<T>) -> Self {
        Self {
            client,
            now: Instant::ZERO,
            version,
            sent: VecDeque::new(),
            events: VecDeque::new(),
            log: Vec::new(),
        }
    }

    pub(crate) fn restored(
        version: ProtocolVersion,
        config: ClientConfig,
        snapshot: ClientSnapshot,
        token: impl FnMut(&Publish) -> T,
    ) -> Self {
        Self::from_session(version, ClientSession::restore(config, snapshot, token))
    }

    /// Drains the session the way the drain rule says: transmit, then events.
    pub(crate) fn drain(&mut self) {
        let mut wire = BytesMut::new();
        loop {
            let before = wire.len();
            let n = self.client.poll_transmit(self.now, &mut wire);
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
                Ok(None) => panic!("the client transmitted a partial packet: {wire:?}"),
                Err(e) => panic!("the client transmitted bytes that do not decode: {e}"),
            }
        }
        while let Some(event) = self.client.poll_event() {
            self.events.push_back(event);
        }
    }

    /// Packets transmitted since the last call.
    pub(crate) fn sent(&mut self) -> Vec<Packet> {
        self.sent.drain(..).collect()
    }

    /// Events reported since the last call.
    pub(crate) fn events(&mut self) -> Vec<ClientEvent<T>> {
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

    pub(crate) fn connect(&mut self, connect: Connect) {
        self.version = connect.protocol;
        self.client.connect(self.now, connect).expect("connect");
        self.drain();
    }

    /// Encodes `packet` as the server would and feeds it.
    pub(crate) fn feed(&mut self, packet: Packet) {
        let mut bytes = BytesMut::new();
        packet
            .encode(self.version, &mut bytes)
            .expect("the scripted server packet encodes");
        self.feed_bytes(&bytes);
    }

    pub(crate) fn feed_bytes(&mut self, bytes: &[u8]) {
        let mut buf = BytesMut::from(bytes);
        self.client.handle_read(self.now, &mut buf);
        self.drain();
    }

    /// Moves the clock to `now + ms`, firing every deadline on the way at its own time, as a
    /// driver sleeping on `poll_timeout` would.
    pub(crate) fn advance(&mut self, ms: u64) {
        let target = Instant::from_millis(self.now.as_millis() + ms);
        let mut guard = 0;
        while let Some(deadline) = self.client.poll_timeout() {
            if deadline > target {
                break;
            }
            guard += 1;
            assert!(guard < 100_000, "the deadline does not move: {deadline:?}");
            self.now = self.now.max(deadline);
            self.client.handle_timeout(self.now);
            self.drain();
        }
        self.now = target;
    }

    pub(crate) fn transport_closed(&mut self) {
        self.client.handle_closed(self.now);
        self.drain();
    }

    // ----- commands -----

    pub(crate) fn publish(
        &mut self,
        message: Message,
        token: T,
    ) -> Result<(), Rejected<Message, T>> {
        let r = self.client.publish(self.now, message, token);
        self.drain();
        r
    }

    pub(crate) fn subscribe(
        &mut self,
        request: SubscribeRequest,
        token: T,
    ) -> Result<(), Rejected<SubscribeRequest, T>> {
        let r = self.client.subscribe(self.now, request, token);
        self.drain();
        r
    }

    pub(crate) fn unsubscribe(
        &mut self,
        request: UnsubscribeRequest,
        token: T,
    ) -> Result<(), Rejected<UnsubscribeRequest, T>> {
        let r = self.client.unsubscribe(self.now, request, token);
        self.drain();
        r
    }

    pub(crate) fn ack(
        &mut self,
        id: mqtt_streaming_session::InboundId,
        code: ReasonCode,
    ) -> Result<(), CommandError> {
        let r = self.client.ack(self.now, id, code);
        self.drain();
        r
    }

    pub(crate) fn disconnect(&mut self, d: Disconnect) -> Result<(), CommandError> {
        let r = self.client.disconnect(self.now, d);
        self.drain();
        r
    }

    pub(crate) fn auth(&mut self, auth: mqtt_streaming_proto::Auth) -> Result<(), CommandError> {
        let r = self.client.auth(self.now, auth);
        self.drain();
        r
    }
}

/// A session of `version` with `config`, connected (clean start) and drained: the CONNECT and
/// the `Connected` event are consumed.
pub(crate) fn connected_with<T: std::fmt::Debug>(
    version: ProtocolVersion,
    config: ClientConfig,
    connack: ConnAck,
) -> Script<T> {
    let mut s = Script::new(version, config);
    s.connect(connect(version, "c"));
    let sent = s.sent();
    assert!(matches!(sent[..], [Packet::Connect(_)]), "{sent:?}");
    s.feed(Packet::ConnAck(Box::new(connack)));
    let events = s.events();
    assert!(
        matches!(events[..], [ClientEvent::Connected(_)]),
        "{events:?}"
    );
    s
}

/// A connected session with the default config and a plain CONNACK.
pub(crate) fn connected(version: ProtocolVersion) -> Script<u32> {
    connected_with(
        version,
        ClientConfig::default(),
        ConnAck::new(ReasonCode::Success),
    )
}

/// A CONNECT with Clean Start, no keep alive and nothing else.
pub(crate) fn connect(version: ProtocolVersion, client_id: &str) -> Connect {
    let mut c = Connect::new(version, MqttString::new(client_id).unwrap());
    c.keep_alive = 0;
    c
}

/// A CONNECT that resumes a session (Clean Start 0).
pub(crate) fn resume(version: ProtocolVersion, client_id: &str) -> Connect {
    let mut c = connect(version, client_id);
    c.clean_start = false;
    c
}

// ----- packet builders -----

pub(crate) fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero packet id")
}

pub(crate) fn topic(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

pub(crate) fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

pub(crate) fn msg(t: &str, qos: QoS, payload: &'static str) -> Message {
    Message::new(topic(t), qos, payload)
}

pub(crate) fn connack(session_present: bool) -> Packet {
    let mut c = ConnAck::new(ReasonCode::Success);
    c.session_present = session_present;
    Packet::ConnAck(Box::new(c))
}

pub(crate) fn server_publish(t: &str, qos: QoS, id: u16, payload: &'static str) -> Packet {
    Packet::Publish(Publish::new(
        topic(t),
        QosPid::new(qos, pid(id)),
        Bytes::from_static(payload.as_bytes()),
    ))
}

pub(crate) fn response(id: u16, code: ReasonCode) -> PubResponse {
    PubResponse {
        reason_code: code,
        ..PubResponse::new(pid(id))
    }
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

pub(crate) fn suback(id: u16, codes: &[ReasonCode]) -> Packet {
    Packet::SubAck(SubAck {
        packet_id: pid(id),
        reason_codes: codes.to_vec(),
        properties: Default::default(),
    })
}

pub(crate) fn unsuback(id: u16, codes: &[ReasonCode]) -> Packet {
    Packet::UnsubAck(UnsubAck {
        packet_id: pid(id),
        reason_codes: codes.to_vec(),
        properties: Default::default(),
    })
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

/// A one-line description of a packet: type and packet id, plus DUP for PUBLISH.
pub(crate) fn brief(p: &Packet) -> String {
    match p {
        Packet::Connect(_) => "CONNECT".into(),
        Packet::ConnAck(_) => "CONNACK".into(),
        Packet::Publish(p) => match p.qos_pid.packet_id() {
            Some(id) => format!("PUBLISH{}{}", id.get(), if p.dup { " DUP" } else { "" }),
            None => format!("PUBLISH0 {}", p.topic.as_str()),
        },
        Packet::PubAck(r) => format!("PUBACK{}", r.packet_id.get()),
        Packet::PubRec(r) => format!("PUBREC{}", r.packet_id.get()),
        Packet::PubRel(r) => format!("PUBREL{}", r.packet_id.get()),
        Packet::PubComp(r) => format!("PUBCOMP{}", r.packet_id.get()),
        Packet::Subscribe(s) => format!("SUBSCRIBE{}", s.packet_id.get()),
        Packet::SubAck(s) => format!("SUBACK{}", s.packet_id.get()),
        Packet::Unsubscribe(s) => format!("UNSUBSCRIBE{}", s.packet_id.get()),
        Packet::UnsubAck(s) => format!("UNSUBACK{}", s.packet_id.get()),
        Packet::PingReq => "PINGREQ".into(),
        Packet::PingResp => "PINGRESP".into(),
        Packet::Disconnect(d) => format!("DISCONNECT({:#04x})", d.reason_code.as_u8()),
        Packet::Auth(a) => format!("AUTH({:#04x})", a.reason_code.as_u8()),
    }
}

pub(crate) fn briefs(packets: &[Packet]) -> Vec<String> {
    packets.iter().map(brief).collect()
}

/// The `Closed` events among `events`.
pub(crate) fn closes<T>(events: &[ClientEvent<T>]) -> Vec<(Initiator, CloseReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Closed { initiator, reason } => Some((*initiator, reason.clone())),
            _ => None,
        })
        .collect()
}

/// Asserts that `events` hold exactly one `Closed`, with this initiator and reason.
pub(crate) fn assert_closed<T: std::fmt::Debug>(
    events: &[ClientEvent<T>],
    initiator: Initiator,
    reason: CloseReason,
) {
    assert_eq!(closes(events), vec![(initiator, reason)], "{events:?}");
}

/// A v5 protocol violation: the client sent DISCONNECT with `code` as its last packet and
/// reported one `Closed { Session, reason }`.
pub(crate) fn assert_violation<T: std::fmt::Debug>(
    s: &mut Script<T>,
    code: ReasonCode,
    reason: CloseReason,
) {
    let sent = s.sent();
    match sent.last() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, code, "{sent:?}"),
        _ => panic!("expected a DISCONNECT {code:?} last, sent {sent:?}"),
    }
    let events = s.events();
    assert_closed(&events, Initiator::Session, reason);
    assert_eq!(
        s.client.state(),
        mqtt_streaming_session::ConnectionState::Disconnected
    );
    // [MQTT-3.14.4-1] (5.0): nothing after the DISCONNECT; a later transport loss adds nothing.
    s.transport_closed();
    s.assert_quiet();
}

/// The tokens of `Published` events, with their reason codes.
pub(crate) fn published<T: Clone>(events: &[ClientEvent<T>]) -> Vec<(T, ReasonCode)> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Published {
                token, reason_code, ..
            } => Some((token.clone(), *reason_code)),
            _ => None,
        })
        .collect()
}

/// The messages delivered in `events`, as `(topic, payload, ack id)`.
pub(crate) fn delivered<T>(
    events: &[ClientEvent<T>],
) -> Vec<(String, Bytes, Option<mqtt_streaming_session::InboundId>)> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message { publish, ack } => Some((
                publish.topic.as_str().to_owned(),
                publish.payload.clone(),
                *ack,
            )),
            _ => None,
        })
        .collect()
}

pub(crate) fn qos_all() -> [QoS; 3] {
    [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
}
