//! The server side of the harness: [`Server`] plays a client to a [`ServerSession`].

pub(crate) use super::*;

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    AckProperties, ConnAckProperties, Connect, Disconnect, Packet, ProtocolVersion, PubResponse,
    Publish, QoS, QosPid, ReasonCode, Subscribe, Subscription, SubscriptionOptions, Unsubscribe,
    UnsubscribeProperties, Will, WillProperties,
};
use mqtt_streaming_session::{
    CloseReason, CommandError, Initiator, Instant, Message, Rejected, ServerConfig, ServerEvent,
    ServerSession, ServerState, SessionState,
};

/// A server session driven by a test that plays the client.
pub(crate) type Server = Harness<ServerSession<u32>>;

impl Harness<ServerSession<u32>> {
    pub(crate) fn new(version: ProtocolVersion, config: ServerConfig) -> Self {
        Self::at(version, config, Instant::ZERO)
    }

    pub(crate) fn at(version: ProtocolVersion, config: ServerConfig, now: Instant) -> Self {
        // Bytes the server leaves unread stay in the read buffer, as in a driver's.
        Harness::with_session(ServerSession::new(config, now), version, now, true)
    }

    pub(crate) fn state(&self) -> ServerState {
        self.session.state()
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
        self.session
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
        self.command(|s, now| s.publish(now, message, token))
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
        self.command(|s, now| s.suback(now, pid(id), codes.to_vec(), properties))
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
        self.command(|s, now| s.unsuback(now, pid(id), codes.to_vec(), properties))
    }

    pub(crate) fn ack(
        &mut self,
        id: mqtt_streaming_session::InboundId,
        code: ReasonCode,
    ) -> Result<(), CommandError> {
        self.command(|s, now| s.ack(now, id, code))
    }

    pub(crate) fn disconnect(&mut self, d: Disconnect) -> Result<(), CommandError> {
        self.command(|s, now| s.disconnect(now, d))
    }

    pub(crate) fn auth(&mut self, auth: mqtt_streaming_proto::Auth) -> Result<(), CommandError> {
        self.command(|s, now| s.auth(now, auth))
    }

    pub(crate) fn reject(&mut self, code: ReasonCode) -> Result<(), CommandError> {
        self.command(|s, now| s.reject(now, code, ConnAckProperties::default()))
    }
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

// ----- packet builders -----

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
