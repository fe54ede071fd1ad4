//! A script harness for byte-level server session conversations.
//!
//! The test plays the client: it builds packets with `mqtt_streaming_proto` types, encodes them for the
//! connection's protocol version and feeds the bytes to the server session through one input
//! buffer (so bytes the session leaves unread stay there, as they would in a driver's read
//! buffer). Everything the session transmits is decoded back into packets (the whole transmit
//! buffer must decode, with nothing left over), and every event is collected. Time is a manual
//! clock that only the test moves.

#![allow(dead_code)]

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    AckProperties, ConnAckProperties, Connect, Decoder, Disconnect, MqttString, Packet, PacketId,
    ProtocolVersion, PubResponse, Publish, QoS, QosPid, ReasonCode, Subscribe, Subscription,
    SubscriptionOptions, TopicFilter, TopicName, Unsubscribe, UnsubscribeProperties, Will,
    WillProperties, PROTOCOL_MAX_PACKET_SIZE,
};
use mqtt_streaming_session::{
    CloseReason, CommandError, Initiator, Instant, Message, Rejected, ServerConfig, ServerEvent,
    ServerSession, ServerState, SessionState,
};

pub(crate) const V31: ProtocolVersion = ProtocolVersion::V3_1;
pub(crate) const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
pub(crate) const V5: ProtocolVersion = ProtocolVersion::V5;

/// A server session driven by a test that plays the client.
pub(crate) struct Server {
    pub(crate) server: ServerSession<u32>,
    pub(crate) now: Instant,
    /// Version used to encode what the "client" sends and decode what the server sends.
    pub(crate) version: ProtocolVersion,
    /// The driver's read buffer: bytes the session has not consumed yet.
    pub(crate) inbox: BytesMut,
    sent: VecDeque<Packet>,
    events: VecDeque<ServerEvent<u32>>,
    /// Every `(time, packet)` the server ever transmitted.
    pub(crate) log: Vec<(Instant, Packet)>,
}

impl Server {
    pub(crate) fn new(version: ProtocolVersion, config: ServerConfig) -> Self {
        Self::at(version, config, Instant::ZERO)
    }

    pub(crate) fn at(version: ProtocolVersion, config: ServerConfig, now: Instant) -> Self {
        Self {
            server: ServerSession::new(config, now),
            now,
            version,
            inbox: BytesMut::new(),
            sent: VecDeque::new(),
            events: VecDeque::new(),
            log: Vec::new(),
        }
    }

    /// Drains the session the way the drain rule says: transmit, then events.
    pub(crate) fn drain(&mut self) {
        let mut wire = BytesMut::new();
        loop {
            let before = wire.len();
            let n = self.server.poll_transmit(self.now, &mut wire);
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
                Ok(None) => panic!("the server transmitted a partial packet: {wire:?}"),
                Err(e) => panic!("the server transmitted bytes that do not decode: {e}"),
            }
        }
        while let Some(event) = self.server.poll_event() {
            self.events.push_back(event);
        }
    }

    /// Packets transmitted since the last call.
    pub(crate) fn sent(&mut self) -> Vec<Packet> {
        self.sent.drain(..).collect()
    }

    /// Events reported since the last call.
    pub(crate) fn events(&mut self) -> Vec<ServerEvent<u32>> {
        self.events.drain(..).collect()
    }

    /// Asserts that nothing was transmitted and nothing reported since the last look.
    pub(crate) fn assert_quiet(&mut self) {
        let sent = self.sent();
        let events = self.events();
        assert!(sent.is_empty(), "unexpected transmission: {sent:?}");
        assert!(events_empty(&events), "unexpected events: {events:?}");
    }

    pub(crate) fn state(&self) -> ServerState {
        self.server.state()
    }

    // ----- inputs -----

    /// Encodes `packet` as the client would and feeds it.
    pub(crate) fn feed(&mut self, packet: Packet) {
        let bytes = encode(&packet, self.version);
        self.feed_bytes(&bytes);
    }

    /// Appends `bytes` to the read buffer and lets the session read.
    pub(crate) fn feed_bytes(&mut self, bytes: &[u8]) {
        self.inbox.extend_from_slice(bytes);
        self.read();
    }

    /// Lets the session read what is in the read buffer (after it stopped early).
    pub(crate) fn read(&mut self) {
        self.server.handle_read(self.now, &mut self.inbox);
        self.drain();
    }

    /// Moves the clock to `now + ms`, firing every deadline on the way at its own time.
    pub(crate) fn advance(&mut self, ms: u64) {
        let target = Instant::from_millis(self.now.as_millis() + ms);
        let mut guard = 0;
        while let Some(deadline) = self.server.poll_timeout() {
            if deadline > target {
                break;
            }
            guard += 1;
            assert!(guard < 100_000, "the deadline does not move: {deadline:?}");
            self.now = self.now.max(deadline);
            self.server.handle_timeout(self.now);
            self.drain();
        }
        self.now = target;
    }

    pub(crate) fn transport_closed(&mut self) {
        self.server.handle_closed(self.now);
        self.drain();
    }

    // ----- the CONNECT exchange -----

    /// Feeds `connect` (its version becomes the script's) and returns the `Connect` event.
    pub(crate) fn connect(&mut self, connect: Connect) -> Connect {
        self.version = connect.protocol;
        self.feed(Packet::Connect(Box::new(connect)));
        assert!(self.sent().is_empty(), "nothing is sent before the answer");
        match &self.events()[..] {
            [ServerEvent::Connect(c)] => (**c).clone(),
            other => panic!("expected one Connect event, got {other:?}"),
        }
    }

    /// Accepts with `properties` and returns the CONNACK sent (plus whatever followed it).
    pub(crate) fn accept_with(
        &mut self,
        properties: ConnAckProperties,
        session: Option<SessionState<u32>>,
    ) -> Vec<Packet> {
        self.server
            .accept(self.now, properties, session)
            .expect("accept");
        self.drain();
        let sent = self.sent();
        assert!(
            matches!(sent.first(), Some(Packet::ConnAck(c)) if c.reason_code == ReasonCode::Success),
            "CONNACK first: {sent:?}"
        );
        sent
    }

    /// Accepts with default properties and no stored session; returns the CONNACK.
    pub(crate) fn accept(&mut self) -> mqtt_streaming_proto::ConnAck {
        let sent = self.accept_with(ConnAckProperties::default(), None);
        assert_eq!(sent.len(), 1, "only the CONNACK: {sent:?}");
        match &sent[0] {
            Packet::ConnAck(c) => (**c).clone(),
            _ => unreachable!(),
        }
    }

    // ----- commands -----

    pub(crate) fn publish(
        &mut self,
        message: Message,
        token: u32,
    ) -> Result<(), Rejected<Message, u32>> {
        let r = self.server.publish(self.now, message, token);
        self.drain();
        r
    }

    pub(crate) fn suback(&mut self, id: u16, codes: &[ReasonCode]) -> Result<(), CommandError> {
        self.suback_with(id, codes, AckProperties::default())
    }

    pub(crate) fn suback_with(
        &mut self,
        id: u16,
        codes: &[ReasonCode],
        properties: AckProperties,
    ) -> Result<(), CommandError> {
        let r = self
            .server
            .suback(self.now, pid(id), codes.to_vec(), properties);
        self.drain();
        r
    }

    pub(crate) fn unsuback(&mut self, id: u16, codes: &[ReasonCode]) -> Result<(), CommandError> {
        self.unsuback_with(id, codes, AckProperties::default())
    }

    pub(crate) fn unsuback_with(
        &mut self,
        id: u16,
        codes: &[ReasonCode],
        properties: AckProperties,
    ) -> Result<(), CommandError> {
        let r = self
            .server
            .unsuback(self.now, pid(id), codes.to_vec(), properties);
        self.drain();
        r
    }

    pub(crate) fn ack(
        &mut self,
        id: mqtt_streaming_session::InboundId,
        code: ReasonCode,
    ) -> Result<(), CommandError> {
        let r = self.server.ack(self.now, id, code);
        self.drain();
        r
    }

    pub(crate) fn disconnect(&mut self, d: Disconnect) -> Result<(), CommandError> {
        let r = self.server.disconnect(self.now, d);
        self.drain();
        r
    }

    pub(crate) fn auth(&mut self, auth: mqtt_streaming_proto::Auth) -> Result<(), CommandError> {
        let r = self.server.auth(self.now, auth);
        self.drain();
        r
    }

    pub(crate) fn reject(&mut self, code: ReasonCode) -> Result<(), CommandError> {
        let r = self
            .server
            .reject(self.now, code, ConnAckProperties::default());
        self.drain();
        r
    }
}

fn events_empty(events: &[ServerEvent<u32>]) -> bool {
    events.is_empty()
}

/// A server with `config` that received `connect` and accepted it with default properties
/// (the Connect event and the CONNACK are consumed).
pub(crate) fn accepted_with(config: ServerConfig, connect: Connect) -> Server {
    let mut s = Server::new(connect.protocol, config);
    s.connect(connect);
    s.accept();
    s
}

/// A server of `version`, default config, that accepted a plain CONNECT from "c".
pub(crate) fn accepted(version: ProtocolVersion) -> Server {
    accepted_with(ServerConfig::default(), connect(version, "c"))
}

/// Encodes a packet for `version`.
pub(crate) fn encode(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut bytes = BytesMut::new();
    packet
        .encode(version, &mut bytes)
        .expect("the scripted client packet encodes");
    bytes
}

// ----- packet builders -----

/// A CONNECT with Clean Start, no keep alive and nothing else.
pub(crate) fn connect(version: ProtocolVersion, client_id: &str) -> Connect {
    let mut c = Connect::new(version, MqttString::new(client_id).unwrap());
    c.keep_alive = 0;
    c
}

/// A CONNECT that resumes a session (Clean Start 0); in MQTT 5 with a Session Expiry Interval
/// of one hour.
pub(crate) fn resume(version: ProtocolVersion, client_id: &str) -> Connect {
    let mut c = connect(version, client_id);
    c.clean_start = false;
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(3600);
    }
    c
}

pub(crate) fn will(t: &str, payload: &'static str) -> Will {
    Will {
        topic: topic(t),
        payload: Bytes::from_static(payload.as_bytes()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    }
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

/// A PUBLISH from the client (packet id ignored at QoS 0).
pub(crate) fn publish(t: &str, qos: QoS, id: u16, payload: &'static str) -> Publish {
    let qos_pid = if qos == QoS::AtMostOnce {
        QosPid::AtMostOnce
    } else {
        QosPid::new(qos, pid(id))
    };
    Publish::new(topic(t), qos_pid, Bytes::from_static(payload.as_bytes()))
}

pub(crate) fn client_publish(t: &str, qos: QoS, id: u16, payload: &'static str) -> Packet {
    Packet::Publish(publish(t, qos, id, payload))
}

pub(crate) fn subscribe(id: u16, filters: &[(&str, QoS)]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(id),
        subscriptions: filters
            .iter()
            .map(|(f, q)| Subscription {
                filter: filter(f),
                options: SubscriptionOptions::new(*q),
            })
            .collect(),
        properties: Default::default(),
    })
}

pub(crate) fn unsubscribe(id: u16, filters: &[&str]) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(id),
        filters: filters.iter().map(|f| filter(f)).collect(),
        properties: UnsubscribeProperties::default(),
    })
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

pub(crate) fn disconnect_packet(code: ReasonCode) -> Packet {
    Packet::Disconnect(Disconnect::new(code))
}

// ----- inspection -----

/// A one-line description of a packet: type and packet id (DUP for PUBLISH, the code where
/// one matters).
pub(crate) fn brief(p: &Packet) -> String {
    match p {
        Packet::Connect(_) => "CONNECT".into(),
        Packet::ConnAck(c) => format!("CONNACK({:#04x})", c.reason_code.as_u8()),
        Packet::Publish(p) => match p.qos_pid.packet_id() {
            Some(id) => format!(
                "PUBLISH{}{} {}",
                id.get(),
                if p.dup { " DUP" } else { "" },
                p.topic.as_str()
            ),
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
pub(crate) fn closes(events: &[ServerEvent<u32>]) -> Vec<(Initiator, CloseReason, Option<Will>)> {
    events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Closed {
                initiator,
                reason,
                will,
            } => Some((*initiator, reason.clone(), will.clone())),
            _ => None,
        })
        .collect()
}

/// Asserts that `events` hold exactly one `Closed`, with this initiator and reason; returns
/// its will.
pub(crate) fn assert_closed(
    events: &[ServerEvent<u32>],
    initiator: Initiator,
    reason: CloseReason,
) -> Option<Will> {
    let closes = closes(events);
    assert_eq!(closes.len(), 1, "one Closed event: {events:?}");
    let (i, r, w) = closes.into_iter().next().unwrap();
    assert_eq!((i, r), (initiator, reason), "{events:?}");
    w
}

/// A v5 protocol violation after CONNACK: the server sent DISCONNECT with `code` as its last
/// packet, reported one `Closed { Session, reason }` and is closed; a later transport loss
/// adds nothing. Returns the will handed over.
pub(crate) fn assert_violation(
    s: &mut Server,
    code: ReasonCode,
    reason: CloseReason,
) -> Option<Will> {
    let sent = s.sent();
    match sent.last() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, code, "{sent:?}"),
        _ => panic!("expected a DISCONNECT {code:?} last, sent {sent:?}"),
    }
    let events = s.events();
    let will = assert_closed(&events, Initiator::Session, reason);
    assert_eq!(s.state(), ServerState::Closed);
    // [MQTT-3.14.4-1] (5.0): nothing after the DISCONNECT.
    s.transport_closed();
    s.assert_quiet();
    will
}

/// The messages delivered in `events`, as `(topic, payload, ack id)`.
pub(crate) fn delivered(
    events: &[ServerEvent<u32>],
) -> Vec<(String, Bytes, Option<mqtt_streaming_session::InboundId>)> {
    events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Message { publish, ack } => Some((
                publish.topic.as_str().to_owned(),
                publish.payload.clone(),
                *ack,
            )),
            _ => None,
        })
        .collect()
}

/// The tokens of `Published` events, with their reason codes.
pub(crate) fn published(events: &[ServerEvent<u32>]) -> Vec<(u32, ReasonCode)> {
    events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Published {
                token, reason_code, ..
            } => Some((*token, *reason_code)),
            _ => None,
        })
        .collect()
}

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

pub(crate) fn qos_all() -> [QoS; 3] {
    [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
}
