//! The client side of the harness: [`Script`] plays a server to a [`ClientSession`].

pub(crate) use super::*;

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    ConnAck, Connect, Disconnect, Packet, ProtocolVersion, PubResponse, Publish, QoS, QosPid,
    ReasonCode, SubAck, UnsubAck,
};
use mqtt_streaming_session::{
    ClientConfig, ClientEvent, ClientSession, ClientSnapshot, CloseReason, CommandError, Initiator,
    Instant, Message, Rejected, SubscribeRequest, UnsubscribeRequest,
};

/// A client session driven by a test that plays the server.
pub(crate) type Script<T = u32> = Harness<ClientSession<T>>;

impl<T: std::fmt::Debug> Harness<ClientSession<T>> {
    pub(crate) fn new(version: ProtocolVersion, config: ClientConfig) -> Self {
        Self::from_session(version, ClientSession::new(config))
    }

    pub(crate) fn from_session(version: ProtocolVersion, client: ClientSession<T>) -> Self {
        // Bytes a client leaves unread (there is no connection) are dropped.
        Harness::with_session(client, version, Instant::ZERO, false)
    }

    pub(crate) fn restored(
        version: ProtocolVersion,
        config: ClientConfig,
        snapshot: ClientSnapshot,
        token: impl FnMut(&Publish) -> T,
    ) -> Self {
        Self::from_session(version, ClientSession::restore(config, snapshot, token))
    }

    pub(crate) fn connect(&mut self, connect: Connect) {
        self.version = connect.protocol;
        self.session.connect(self.now, connect).expect("connect");
        self.drain();
    }

    // ----- commands -----

    pub(crate) fn publish(
        &mut self,
        message: Message,
        token: T,
    ) -> Result<(), Rejected<Message, T>> {
        self.command(|s, now| s.publish(now, message, token))
    }

    pub(crate) fn subscribe(
        &mut self,
        request: SubscribeRequest,
        token: T,
    ) -> Result<(), Rejected<SubscribeRequest, T>> {
        self.command(|s, now| s.subscribe(now, request, token))
    }

    pub(crate) fn unsubscribe(
        &mut self,
        request: UnsubscribeRequest,
        token: T,
    ) -> Result<(), Rejected<UnsubscribeRequest, T>> {
        self.command(|s, now| s.unsubscribe(now, request, token))
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

/// A CONNECT that resumes a session (Clean Start 0).
pub(crate) fn resume(version: ProtocolVersion, client_id: &str) -> Connect {
    let mut c = connect(version, client_id);
    c.clean_start = false;
    c
}

// ----- packet builders -----

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
        s.session.state(),
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
