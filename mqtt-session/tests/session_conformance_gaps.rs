//! Normative statements the client and server sessions are responsible for. Each test drives a
//! [`ClientSession`] or [`ServerSession`] through its public API with hand-made packets from
//! the peer, and decodes what the session sends. Each test names the statement it checks and
//! the version whose numbering it uses.

use std::num::NonZeroU32;

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    Auth, AuthProperties, ConnAck, ConnAckProperties, Connect, Decoder, Disconnect, MqttString,
    Packet, PacketId, ProtocolVersion, PubResponse, Publish, QoS, QosPid, ReasonCode, TopicName,
    UserProperty,
};
use mqtt_streaming_session::{
    ClientConfig, ClientEvent, ClientSession, ConnectionState, Instant, Message, ServerConfig,
    ServerEvent, ServerSession, ServerState,
};

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn pid(id: u16) -> PacketId {
    PacketId::new(id).unwrap()
}

fn string(s: &str) -> MqttString {
    MqttString::new(s).unwrap()
}

fn topic(name: &str) -> TopicName {
    TopicName::new(name).unwrap()
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// User Properties of about `bytes` bytes on the wire.
fn big_user_properties(bytes: usize) -> Vec<UserProperty> {
    (0..bytes / 64)
        .map(|i| UserProperty::new(&format!("name{i}"), &"v".repeat(50)).unwrap())
        .collect()
}

fn encode(version: ProtocolVersion, packets: &[Packet]) -> BytesMut {
    let mut buf = BytesMut::new();
    for p in packets {
        p.encode(version, &mut buf).unwrap();
    }
    buf
}

/// Decodes every whole packet in `bytes`, asserting each is at most `max` bytes long.
fn decode_all(version: ProtocolVersion, bytes: &mut BytesMut, max: usize) -> Vec<Packet> {
    let decoder = Decoder::new(version);
    let mut packets = Vec::new();
    loop {
        let before = bytes.len();
        match decoder.decode(bytes).expect("valid packets") {
            Some(p) => {
                let size = before - bytes.len();
                assert!(
                    size <= max,
                    "{size} bytes > Maximum Packet Size {max}: {p:?}"
                );
                packets.push(p);
            }
            None => break,
        }
    }
    assert!(bytes.is_empty());
    packets
}

// ---------------------------------------------------------------------------------------------
// A client against a hand-played server
// ---------------------------------------------------------------------------------------------

struct Client {
    session: ClientSession<u32>,
    version: ProtocolVersion,
    now: Instant,
    /// The server's Maximum Packet Size.
    max: usize,
}

impl Client {
    fn new(version: ProtocolVersion, config: ClientConfig) -> Self {
        Self {
            session: ClientSession::new(config),
            version,
            now: at(0),
            max: usize::MAX,
        }
    }

    fn connect(&mut self, connect: Connect, connack: ConnAck) -> Vec<Packet> {
        self.session.connect(self.now, connect).unwrap();
        let sent = self.sent();
        assert!(matches!(&sent[..], [Packet::Connect(_)]), "{sent:?}");
        if let Some(max) = connack.properties.maximum_packet_size {
            self.max = max.get() as usize;
        }
        self.feed(&[Packet::ConnAck(Box::new(connack))])
    }

    /// Feeds packets from the server; returns what the client sends in answer.
    fn feed(&mut self, packets: &[Packet]) -> Vec<Packet> {
        let mut buf = encode(self.version, packets);
        self.session.handle_read(self.now, &mut buf);
        self.sent()
    }

    fn sent(&mut self) -> Vec<Packet> {
        let mut out = BytesMut::new();
        self.session.poll_transmit(self.now, &mut out);
        decode_all(self.version, &mut out, self.max)
    }

    fn events(&mut self) -> Vec<ClientEvent<u32>> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }
}

fn connack(session_present: bool) -> ConnAck {
    ConnAck {
        session_present,
        reason_code: ReasonCode::Success,
        properties: ConnAckProperties::default(),
    }
}

fn client_connect(version: ProtocolVersion, clean: bool) -> Connect {
    let mut c = Connect::new(version, string("c"));
    c.clean_start = clean;
    c.keep_alive = 0;
    if version.is_v5() && !clean {
        c.properties.session_expiry_interval = Some(3600);
    }
    c
}

fn inbound(qos: QoS, id: u16, payload: &'static str) -> Packet {
    let qos_pid = match qos {
        QoS::AtMostOnce => QosPid::AtMostOnce,
        QoS::AtLeastOnce => QosPid::AtLeastOnce(pid(id)),
        QoS::ExactlyOnce => QosPid::ExactlyOnce(pid(id)),
    };
    Packet::Publish(Publish::new(topic("t"), qos_pid, payload))
}

// [MQTT-4.5.0-2] (3.1.1 and 5.0): the Client acknowledges every PUBLISH according to its QoS,
// also one it does not hand to the application: a re-sent QoS 2 message it already has is
// answered with PUBREC again, and messages the application never looks at are acknowledged.
#[test]
fn client_acknowledges_every_publish_even_unprocessed() {
    for version in [V3, V5] {
        let mut c = Client::new(version, ClientConfig::default());
        c.connect(client_connect(version, true), connack(false));
        // The application never polls events here.
        assert_eq!(
            c.feed(&[inbound(QoS::AtLeastOnce, 1, "a")]),
            [Packet::PubAck(PubResponse::new(pid(1)))]
        );
        assert_eq!(
            c.feed(&[inbound(QoS::ExactlyOnce, 2, "b")]),
            [Packet::PubRec(PubResponse::new(pid(2)))]
        );
        // The same QoS 2 message again (DUP): not delivered twice, still acknowledged.
        let Packet::Publish(mut dup) = inbound(QoS::ExactlyOnce, 2, "b") else {
            unreachable!()
        };
        dup.dup = true;
        assert_eq!(
            c.feed(&[Packet::Publish(dup)]),
            [Packet::PubRec(PubResponse::new(pid(2)))]
        );
        assert_eq!(
            c.feed(&[Packet::PubRel(PubResponse::new(pid(2)))]),
            [Packet::PubComp(PubResponse::new(pid(2)))]
        );
        let delivered = c
            .events()
            .into_iter()
            .filter(|e| matches!(e, ClientEvent::Message { .. }))
            .count();
        assert_eq!(
            delivered, 2,
            "{version}: the duplicate is not delivered again"
        );
    }
}

// [MQTT-3.2.2-4] (5.0): a Client without Session State that receives Session Present 1 must
// close the Network Connection (with DISCONNECT 0x82 Protocol Error in 5.0).
#[test]
fn client_without_session_state_closes_on_session_present_v5() {
    let mut c = Client::new(V5, ClientConfig::default());
    let sent = c.connect(client_connect(V5, true), connack(true));
    assert!(
        matches!(&sent[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ProtocolError),
        "{sent:?}"
    );
    assert_eq!(c.session.state(), ConnectionState::Disconnected);
    assert!(c
        .events()
        .iter()
        .any(|e| matches!(e, ClientEvent::Closed { .. })));
    assert!(!c
        .events()
        .iter()
        .any(|e| matches!(e, ClientEvent::Connected(_))));
}

// [MQTT-4.3.3-3] (5.0): a QoS 2 sender treats its PUBLISH as unacknowledged until the PUBREC
// arrives (it sends it again, DUP, on the resumed session).
// [MQTT-4.3.3-5] (5.0): and the PUBREL as unacknowledged until the PUBCOMP arrives.
#[test]
fn qos2_sender_keeps_publish_until_pubrec_and_pubrel_until_pubcomp_v5() {
    let mut c = Client::new(V5, ClientConfig::default());
    c.connect(client_connect(V5, false), connack(false));
    for (token, payload) in [(1, "a"), (2, "b")] {
        c.session
            .publish(
                c.now,
                Message::new(topic("t"), QoS::ExactlyOnce, payload),
                token,
            )
            .unwrap();
    }
    let sent = c.sent();
    let ids: Vec<PacketId> = sent
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => p.qos_pid.packet_id().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    // The second is received; the first is not.
    assert_eq!(
        c.feed(&[Packet::PubRec(PubResponse::new(ids[1]))]),
        [Packet::PubRel(PubResponse::new(ids[1]))]
    );
    for round in 0..2 {
        c.session.handle_closed(c.now);
        c.now = at(1_000 * (round + 1));
        let again = c.connect(client_connect(V5, false), connack(true));
        match &again[..] {
            [Packet::Publish(p), Packet::PubRel(rel)] => {
                assert!(p.dup);
                assert_eq!(p.qos_pid.packet_id(), Some(ids[0]));
                assert_eq!(&p.payload[..], b"a");
                assert_eq!(rel.packet_id, ids[1]);
            }
            other => panic!("round {round}: {other:?}"),
        }
    }
    assert_eq!(c.feed(&[Packet::PubComp(PubResponse::new(ids[1]))]), []);
    assert_eq!(
        c.feed(&[Packet::PubRec(PubResponse::new(ids[0]))]),
        [Packet::PubRel(PubResponse::new(ids[0]))]
    );
    c.feed(&[Packet::PubComp(PubResponse::new(ids[0]))]);
    let done: Vec<u32> = c
        .events()
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::Published { token, .. } => Some(token),
            _ => None,
        })
        .collect();
    assert_eq!(done, [2, 1]);
}

// ---------------------------------------------------------------------------------------------
// A server session against a hand-played client
// ---------------------------------------------------------------------------------------------

struct Server {
    session: ServerSession<u32>,
    version: ProtocolVersion,
    now: Instant,
    /// The client's Maximum Packet Size.
    max: usize,
}

impl Server {
    /// A server session that got `connect` (and has not answered it yet).
    fn new(config: ServerConfig, connect: Connect) -> Self {
        let version = connect.protocol;
        let max = connect
            .properties
            .maximum_packet_size
            .map_or(usize::MAX, |m| m.get() as usize);
        let mut s = Self {
            session: ServerSession::new(config, at(0)),
            version,
            now: at(0),
            max,
        };
        let mut buf = encode(version, &[Packet::from(connect)]);
        s.session.handle_read(s.now, &mut buf);
        assert!(matches!(
            s.session.poll_event(),
            Some(ServerEvent::Connect(_))
        ));
        s
    }

    fn feed(&mut self, packets: &[Packet]) -> Vec<Packet> {
        let mut buf = encode(self.version, packets);
        self.session.handle_read(self.now, &mut buf);
        self.sent()
    }

    fn sent(&mut self) -> Vec<Packet> {
        let mut out = BytesMut::new();
        self.session.poll_transmit(self.now, &mut out);
        decode_all(self.version, &mut out, self.max)
    }

    fn events(&mut self) -> Vec<ServerEvent<u32>> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }
}

fn small_client(max: u32) -> Connect {
    let mut c = Connect::new(V5, string("c"));
    c.properties.maximum_packet_size = NonZeroU32::new(max);
    c
}

// [MQTT-3.2.2-19] (5.0): the Server must not send a Reason String in CONNACK that would make it
// exceed the Client's Maximum Packet Size (accepting or refusing).
// [MQTT-3.2.2-20] (5.0): nor User Properties that would.
#[test]
fn connack_leaves_out_reason_string_and_user_properties_that_do_not_fit_v5() {
    let props = || ConnAckProperties {
        reason_string: Some(string(&"why ".repeat(40))),
        user_properties: big_user_properties(400),
        ..ConnAckProperties::default()
    };
    // Accepted.
    let mut s = Server::new(ServerConfig::default(), small_client(64));
    s.session.accept(s.now, props(), None).unwrap();
    match &s.sent()[..] {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.reason_code, ReasonCode::Success);
            assert_eq!(ack.properties.reason_string, None);
            assert!(ack.properties.user_properties.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // Refused.
    let mut s = Server::new(ServerConfig::default(), small_client(64));
    s.session
        .reject(s.now, ReasonCode::NotAuthorized, props())
        .unwrap();
    match &s.sent()[..] {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
            assert_eq!(ack.properties.reason_string, None);
            assert!(ack.properties.user_properties.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // A client with room gets them.
    let mut s = Server::new(ServerConfig::default(), small_client(100_000));
    s.session.accept(s.now, props(), None).unwrap();
    match &s.sent()[..] {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.properties.reason_string, props().reason_string);
            assert_eq!(ack.properties.user_properties, props().user_properties);
        }
        other => panic!("{other:?}"),
    }
}

// [MQTT-3.2.2-22] (5.0): a Server that sends no Server Keep Alive uses the Keep Alive the Client
// sent: it closes a silent client after one and a half times that value, not before.
#[test]
fn server_uses_the_clients_keep_alive_without_server_keep_alive_v5() {
    for (keep_alive, version) in [(10u16, V5), (7, V5), (10, V3)] {
        let mut c = Connect::new(version, string("c"));
        c.keep_alive = keep_alive;
        let mut s = Server::new(ServerConfig::default(), c);
        s.session
            .accept(s.now, ConnAckProperties::default(), None)
            .unwrap();
        let sent = s.sent();
        let [Packet::ConnAck(ack)] = &sent[..] else {
            panic!("{sent:?}")
        };
        assert_eq!(ack.properties.server_keep_alive, None);
        let limit = u64::from(keep_alive) * 1_500;
        s.session.handle_timeout(at(limit - 1));
        assert_eq!(s.session.state(), ServerState::Connected, "{keep_alive}");
        s.session.handle_timeout(at(limit));
        assert_eq!(s.session.state(), ServerState::Closed, "{keep_alive}");
        assert!(s
            .events()
            .iter()
            .any(|e| matches!(e, ServerEvent::Closed { .. })));
    }
}

// The acknowledgements of the QoS 1 and 2 exchanges never carry a Reason String or User
// Properties that would exceed the receiver's Maximum Packet Size (the sessions send them
// bare); checked for the server's PUBACK, PUBREC, PUBREL, PUBCOMP (including refusals) and for
// the client's, against a peer whose Maximum Packet Size is just above a bare acknowledgement.
// [MQTT-3.4.2-2] [MQTT-3.4.2-3] (5.0): PUBACK
// [MQTT-3.5.2-2] [MQTT-3.5.2-3] (5.0): PUBREC
// [MQTT-3.6.2-2] [MQTT-3.6.2-3] (5.0): PUBREL
// [MQTT-3.7.2-2] [MQTT-3.7.2-3] (5.0): PUBCOMP
#[test]
fn acknowledgements_fit_the_receivers_maximum_packet_size_v5() {
    // Server side: every packet decoded by `sent` is checked against 8 bytes.
    let mut s = Server::new(
        ServerConfig {
            ack_mode: mqtt_streaming_session::AckMode::Manual,
            ..ServerConfig::default()
        },
        small_client(8),
    );
    // (Our CONNACK with its limits is larger than 8 bytes; the acknowledgements are checked.)
    s.max = usize::MAX;
    s.session
        .accept(s.now, ConnAckProperties::default(), None)
        .unwrap();
    s.sent();
    s.max = 8;
    s.feed(&[
        inbound(QoS::AtLeastOnce, 1, "a"),
        inbound(QoS::ExactlyOnce, 2, "b"),
    ]);
    let ids: Vec<_> = s
        .events()
        .into_iter()
        .filter_map(|e| match e {
            ServerEvent::Message { ack, .. } => ack,
            _ => None,
        })
        .collect();
    s.session
        .ack(s.now, ids[0], ReasonCode::NotAuthorized)
        .unwrap();
    s.session
        .ack(s.now, ids[1], ReasonCode::QuotaExceeded)
        .unwrap();
    let acks = s.sent();
    assert!(
        matches!(
            &acks[..],
            [Packet::PubAck(a), Packet::PubRec(r)]
                if a.reason_code == ReasonCode::NotAuthorized && a.properties == Default::default()
                && r.reason_code == ReasonCode::QuotaExceeded && r.properties == Default::default()
        ),
        "{acks:?}"
    );
    s.session
        .publish(s.now, Message::new(topic("t"), QoS::ExactlyOnce, ""), 1)
        .unwrap();
    let sent = s.sent();
    let Packet::Publish(out) = &sent[0] else {
        panic!("{sent:?}")
    };
    let id = out.qos_pid.packet_id().unwrap();
    let rel = s.feed(&[Packet::PubRec(PubResponse::new(id))]);
    assert!(matches!(&rel[..], [Packet::PubRel(r)] if r.properties == Default::default()));
    // 3 inbound QoS 2 for PUBCOMP.
    s.feed(&[inbound(QoS::ExactlyOnce, 3, "c")]);
    for e in s.events() {
        if let ServerEvent::Message { ack: Some(ack), .. } = e {
            s.session.ack(s.now, ack, ReasonCode::Success).unwrap();
        }
    }
    s.sent();
    let comp = s.feed(&[Packet::PubRel(PubResponse::new(pid(3)))]);
    assert!(matches!(&comp[..], [Packet::PubComp(c)] if c.properties == Default::default()));

    // Client side: the server's Maximum Packet Size is 8.
    let mut c = Client::new(V5, ClientConfig::default());
    let mut ack = connack(false);
    ack.properties.maximum_packet_size = NonZeroU32::new(8);
    c.connect(client_connect(V5, true), ack);
    let got = c.feed(&[
        inbound(QoS::AtLeastOnce, 1, "a"),
        inbound(QoS::ExactlyOnce, 2, "b"),
    ]);
    assert_eq!(
        got,
        [
            Packet::PubAck(PubResponse::new(pid(1))),
            Packet::PubRec(PubResponse::new(pid(2)))
        ]
    );
    assert_eq!(
        c.feed(&[Packet::PubRel(PubResponse::new(pid(2)))]),
        [Packet::PubComp(PubResponse::new(pid(2)))]
    );
    c.session
        .publish(c.now, Message::new(topic("t"), QoS::ExactlyOnce, ""), 1)
        .unwrap();
    let sent = c.sent();
    let Packet::Publish(out) = &sent[0] else {
        panic!("{sent:?}")
    };
    let id = out.qos_pid.packet_id().unwrap();
    assert_eq!(
        c.feed(&[Packet::PubRec(PubResponse::new(id))]),
        [Packet::PubRel(PubResponse::new(id))]
    );
}

fn oversized_disconnect() -> Disconnect {
    let mut d = Disconnect::new(ReasonCode::AdministrativeAction);
    d.properties.reason_string = Some(string(&"because ".repeat(20)));
    d.properties.user_properties = big_user_properties(400);
    d
}

// [MQTT-3.14.2-4] (5.0): User Properties (and a Reason String, [MQTT-3.14.2-3]) that would make
// a DISCONNECT exceed the receiver's Maximum Packet Size are left out; the DISCONNECT still
// goes with its code. Checked for the server's DISCONNECT and the client's.
#[test]
fn disconnect_leaves_out_properties_that_do_not_fit_v5() {
    let mut s = Server::new(ServerConfig::default(), small_client(32));
    s.session
        .accept(s.now, ConnAckProperties::default(), None)
        .unwrap();
    s.sent();
    s.session.disconnect(s.now, oversized_disconnect()).unwrap();
    match &s.sent()[..] {
        [Packet::Disconnect(d)] => {
            assert_eq!(d.reason_code, ReasonCode::AdministrativeAction);
            assert!(d.properties.user_properties.is_empty());
            assert_eq!(d.properties.reason_string, None);
        }
        other => panic!("{other:?}"),
    }

    let mut c = Client::new(V5, ClientConfig::default());
    let mut ack = connack(false);
    ack.properties.maximum_packet_size = NonZeroU32::new(32);
    c.connect(client_connect(V5, true), ack);
    let mut d = oversized_disconnect();
    d.reason_code = ReasonCode::DisconnectWithWillMessage;
    c.session.disconnect(c.now, d).unwrap();
    match &c.sent()[..] {
        [Packet::Disconnect(d)] => {
            assert_eq!(d.reason_code, ReasonCode::DisconnectWithWillMessage);
            assert!(d.properties.user_properties.is_empty());
            assert_eq!(d.properties.reason_string, None);
        }
        other => panic!("{other:?}"),
    }
    // With room, they go.
    let mut c = Client::new(V5, ClientConfig::default());
    c.connect(client_connect(V5, true), connack(false));
    c.session.disconnect(c.now, oversized_disconnect()).unwrap();
    match &c.sent()[..] {
        [Packet::Disconnect(d)] => assert_eq!(d.properties, oversized_disconnect().properties),
        other => panic!("{other:?}"),
    }
}

fn oversized_auth(code: ReasonCode) -> Auth {
    Auth {
        reason_code: code,
        properties: AuthProperties {
            authentication_method: Some(string("M")),
            authentication_data: Some(Bytes::from_static(b"d")),
            reason_string: Some(string(&"step ".repeat(30))),
            user_properties: big_user_properties(400),
        },
    }
}

// [MQTT-3.15.2-2] (5.0): a Reason String that would make an AUTH exceed the receiver's Maximum
// Packet Size is left out.
// [MQTT-3.15.2-3] (5.0): and so are User Properties. Checked for the server's AUTH and the
// client's.
#[test]
fn auth_leaves_out_properties_that_do_not_fit_v5() {
    let mut connect = small_client(40);
    connect.properties.authentication_method = Some(string("M"));
    let mut s = Server::new(ServerConfig::default(), connect);
    s.session
        .auth(s.now, oversized_auth(ReasonCode::ContinueAuthentication))
        .unwrap();
    match &s.sent()[..] {
        [Packet::Auth(a)] => {
            assert_eq!(a.reason_code, ReasonCode::ContinueAuthentication);
            assert_eq!(a.properties.authentication_data.as_deref(), Some(&b"d"[..]));
            assert_eq!(a.properties.reason_string, None);
            assert!(a.properties.user_properties.is_empty());
        }
        other => panic!("{other:?}"),
    }

    let mut c = Client::new(V5, ClientConfig::default());
    let mut connect = client_connect(V5, true);
    connect.properties.authentication_method = Some(string("M"));
    c.session.connect(c.now, connect).unwrap();
    c.sent();
    c.max = 40;
    let mut ack = connack(false);
    ack.properties.maximum_packet_size = NonZeroU32::new(40);
    ack.properties.authentication_method = Some(string("M"));
    c.feed(&[Packet::ConnAck(Box::new(ack))]);
    assert_eq!(c.session.state(), ConnectionState::Connected);
    c.session
        .auth(c.now, oversized_auth(ReasonCode::ReAuthenticate))
        .unwrap();
    match &c.sent()[..] {
        [Packet::Auth(a)] => {
            assert_eq!(a.reason_code, ReasonCode::ReAuthenticate);
            assert_eq!(a.properties.reason_string, None);
            assert!(a.properties.user_properties.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

fn named_connect(version: ProtocolVersion, id: &str) -> Connect {
    let mut c = client_connect(version, false);
    c.client_id = string(id);
    c
}

// [MQTT-3.1.3-2] (3.1.1 and 5.0): the Client uses the ClientId to identify the Session state it
// holds: what it keeps for "a" is re-sent when "a" resumes, never into the session of another
// ClientId (the operations come back abandoned instead).
#[test]
fn client_session_state_belongs_to_its_client_id() {
    for version in [V3, V5] {
        let mut c = Client::new(version, ClientConfig::default());
        c.connect(named_connect(version, "a"), connack(false));
        c.session
            .publish(c.now, Message::new(topic("t"), QoS::AtLeastOnce, "x"), 1)
            .unwrap();
        assert_eq!(c.sent().len(), 1);
        // Resumed as "a": re-sent.
        c.session.handle_closed(c.now);
        let again = c.connect(named_connect(version, "a"), connack(true));
        assert!(
            matches!(&again[..], [Packet::Publish(p)] if p.dup),
            "{version}: {again:?}"
        );
        c.events();
        // Connected as "b", whose session the server has: nothing of "a" goes into it.
        c.session.handle_closed(c.now);
        let other = c.connect(named_connect(version, "b"), connack(true));
        assert!(other.is_empty(), "{version}: {other:?}");
        assert!(
            c.events()
                .iter()
                .any(|e| matches!(e, ClientEvent::Abandoned { token: 1, .. })),
            "{version}"
        );
        assert_eq!(c.session.inflight_len(), 0);
    }
    // An identifier the server assigned (5.0) is the one the state belongs to.
    let mut c = Client::new(V5, ClientConfig::default());
    let mut ack = connack(false);
    ack.properties.assigned_client_identifier = Some(string("given"));
    c.connect(named_connect(V5, ""), ack);
    c.session
        .publish(c.now, Message::new(topic("t"), QoS::AtLeastOnce, "x"), 1)
        .unwrap();
    c.sent();
    c.session.handle_closed(c.now);
    let again = c.connect(named_connect(V5, "given"), connack(true));
    assert!(
        matches!(&again[..], [Packet::Publish(p)] if p.dup),
        "{again:?}"
    );
}

// [MQTT-4.1.0-1] (5.0): the Client does not discard Session State while the connection is open
// (also with Session Expiry 0 and no Keep Alive, however long it stays quiet).
// [MQTT-4.1.0-2] (3.1.1): the Session lasts at least as long as the connection.
// [MQTT-4.1.0-1] (3.1.1): its state is kept for the whole of it.
#[test]
fn client_keeps_session_state_while_connected() {
    for version in [V3, V5] {
        let mut c = Client::new(version, ClientConfig::default());
        c.connect(client_connect(version, true), connack(false));
        c.session
            .publish(c.now, Message::new(topic("t"), QoS::ExactlyOnce, "x"), 1)
            .unwrap();
        let id = match &c.sent()[..] {
            [Packet::Publish(p)] => p.qos_pid.packet_id().unwrap(),
            other => panic!("{other:?}"),
        };
        // An inbound QoS 2 message waiting for its PUBREL is session state too.
        c.feed(&[inbound(QoS::ExactlyOnce, 9, "in")]);
        for day in 1..=30 {
            c.now = at(day * 24 * 3600 * 1000);
            c.session.handle_timeout(c.now);
        }
        assert_eq!(c.session.state(), ConnectionState::Connected);
        assert_eq!(c.session.inflight_len(), 1, "{version}");
        assert_eq!(
            c.feed(&[Packet::PubRec(PubResponse::new(id))]),
            [Packet::PubRel(PubResponse::new(id))]
        );
        assert_eq!(c.feed(&[Packet::PubComp(PubResponse::new(id))]), []);
        assert_eq!(
            c.feed(&[Packet::PubRel(PubResponse::new(pid(9)))]),
            [Packet::PubComp(PubResponse::new(pid(9)))]
        );
        let events = c.events();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, ClientEvent::Published { token: 1, .. })),
            "{version}"
        );
        assert!(!events.iter().any(|e| matches!(
            e,
            ClientEvent::Abandoned { .. } | ClientEvent::Closed { .. }
        )));
    }
}

// [MQTT-4.8.0-2] (3.1.1): a Transient Error while processing an inbound packet (an internal
// buffer full: a PUBLISH beyond the client's Maximum Packet Size, which a 3.1.1 server cannot
// know) closes the connection, without acknowledging the packet.
#[test]
fn client_closes_on_a_packet_beyond_its_buffers_v311() {
    let mut c = Client::new(
        V3,
        ClientConfig {
            max_packet_size: 256,
            ..ClientConfig::default()
        },
    );
    c.connect(client_connect(V3, true), connack(false));
    let Packet::Publish(mut big) = inbound(QoS::AtLeastOnce, 1, "") else {
        unreachable!()
    };
    big.payload = Bytes::from(vec![b'x'; 1_000]);
    let sent = c.feed(&[Packet::Publish(big)]);
    assert!(sent.is_empty(), "no PUBACK: {sent:?}");
    assert_eq!(c.session.state(), ConnectionState::Disconnected);
    let events = c.events();
    assert!(events
        .iter()
        .any(|e| matches!(e, ClientEvent::Closed { .. })));
    assert!(!events
        .iter()
        .any(|e| matches!(e, ClientEvent::Message { .. })));
}
