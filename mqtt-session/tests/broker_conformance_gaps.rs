//! Normative statements the broker core is responsible for, checked byte by byte: each test
//! drives [`Broker`] directly with encoded packets from hand-made clients and decodes what it
//! sends back, so the tests depend on nothing but the broker's public API and the codec.
//! Each test names the statement it checks and the version whose numbering it uses.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    topic_matches, ConnAck, Connect, Decoder, Disconnect, MqttString, Packet, PacketId,
    ProtocolVersion, PubResponse, Publish, QoS, QosPid, ReasonCode, SubAck, Subscribe,
    Subscription, SubscriptionOptions, TopicFilter, TopicName, UnsubAck, Unsubscribe, UserProperty,
};
use mqtt_streaming_session::broker::{
    AuthDecision, Broker, BrokerConfig, BrokerEvent, BrokerHooks, ConnectionId,
};
use mqtt_streaming_session::Instant;

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

// ---------------------------------------------------------------------------------------------
// A byte-level harness over the broker core
// ---------------------------------------------------------------------------------------------

/// Refuses the client ids and publish topics it is given.
#[derive(Default)]
struct Policy {
    refuse_client: BTreeMap<String, ReasonCode>,
    refuse_publish: BTreeSet<String>,
    refuse_subscribe: BTreeSet<String>,
}

impl BrokerHooks for Policy {
    fn authenticate(&mut self, connect: &Connect) -> AuthDecision {
        match self.refuse_client.get(connect.client_id.as_str()) {
            Some(&code) => AuthDecision::Reject(code),
            None => AuthDecision::Accept,
        }
    }

    fn authorize_publish(&mut self, _client_id: &str, topic: &TopicName) -> bool {
        !self.refuse_publish.contains(topic.as_str())
    }

    fn authorize_subscribe(&mut self, _client_id: &str, filter: &TopicFilter) -> bool {
        !self.refuse_subscribe.contains(filter.as_str())
    }
}

struct Net {
    broker: Broker<Policy>,
    now: Instant,
    /// Bytes the broker sent each connection, not yet decoded.
    rx: BTreeMap<ConnectionId, BytesMut>,
    version: BTreeMap<ConnectionId, ProtocolVersion>,
    closed: BTreeSet<ConnectionId>,
    connected: Vec<BrokerEvent>,
}

impl Net {
    fn new() -> Self {
        Self::with(BrokerConfig::default(), Policy::default())
    }

    fn with(config: BrokerConfig, policy: Policy) -> Self {
        Self {
            broker: Broker::with_hooks(config, policy),
            now: Instant::from_millis(1_000),
            rx: BTreeMap::new(),
            version: BTreeMap::new(),
            closed: BTreeSet::new(),
            connected: Vec::new(),
        }
    }

    /// Moves everything the broker has to send into the connections' receive buffers.
    fn pump(&mut self) {
        loop {
            let mut out = BytesMut::new();
            let Some(id) = self.broker.poll_transmit(self.now, &mut out) else {
                break;
            };
            self.rx.entry(id).or_default().extend_from_slice(&out);
        }
        while let Some(event) = self.broker.poll_event() {
            match event {
                BrokerEvent::Close { connection, .. } => {
                    self.closed.insert(connection);
                }
                e @ BrokerEvent::Connected { .. } => self.connected.push(e),
                BrokerEvent::ReadResumed { .. } => {}
            }
        }
    }

    fn open(&mut self, version: ProtocolVersion) -> ConnectionId {
        let id = self.broker.open(self.now).unwrap();
        self.version.insert(id, version);
        self.pump();
        id
    }

    fn send(&mut self, id: ConnectionId, packets: &[Packet]) {
        let mut buf = BytesMut::new();
        for p in packets {
            p.encode(self.version[&id], &mut buf).unwrap();
        }
        self.send_bytes(id, &buf);
    }

    fn send_bytes(&mut self, id: ConnectionId, bytes: &[u8]) {
        let mut buf = BytesMut::from(bytes);
        self.broker.handle_read(self.now, id, &mut buf);
        self.pump();
    }

    /// Every packet the broker sent `id` since the last call.
    fn recv(&mut self, id: ConnectionId) -> Vec<Packet> {
        let decoder = Decoder::new(self.version[&id]);
        let buf = self.rx.entry(id).or_default();
        let mut packets = Vec::new();
        while let Some(p) = decoder.decode(buf).expect("the broker sends valid packets") {
            packets.push(p);
        }
        assert!(buf.is_empty(), "a partial packet left");
        packets
    }

    fn advance(&mut self, ms: u64) {
        let end = Instant::from_millis(self.now.as_millis() + ms);
        // Fire each deadline at its time, as a driver would.
        while let Some(at) = self.broker.poll_timeout().filter(|&at| at <= end) {
            self.now = self.now.max(at);
            self.broker.handle_timeout(self.now);
            self.pump();
        }
        self.now = end;
        self.broker.handle_timeout(end);
        self.pump();
    }

    /// The transport of `id` is lost.
    fn cut(&mut self, id: ConnectionId) {
        self.broker.handle_closed(self.now, id);
        self.pump();
    }

    /// Connects `connect` on a new connection; returns it with the CONNACK.
    fn connect(&mut self, connect: Connect) -> (ConnectionId, ConnAck) {
        let id = self.open(connect.protocol);
        self.send(id, &[Packet::from(connect)]);
        // Only the CONNACK: what a resumed session sends next stays for `recv`.
        let decoder = Decoder::new(self.version[&id]);
        let buf = self.rx.entry(id).or_default();
        match decoder.decode(buf) {
            Ok(Some(Packet::ConnAck(ack))) => (id, *ack),
            other => panic!("expected a CONNACK, got {other:?}"),
        }
    }

    /// A connected client; `expiry` is the v5 Session Expiry Interval (persistent 3.1.1
    /// session when non-zero).
    fn client(&mut self, version: ProtocolVersion, id: &str, expiry: u32) -> ConnectionId {
        let (conn, ack) = self.connect(connect(version, id, expiry == 0, expiry));
        assert_eq!(ack.reason_code, ReasonCode::Success);
        conn
    }

    fn subscribe(&mut self, id: ConnectionId, packet_id: u16, filter: &str, qos: QoS) -> SubAck {
        self.send(
            id,
            &[Packet::Subscribe(Subscribe::new(
                pid(packet_id),
                TopicFilter::new(filter).unwrap(),
                SubscriptionOptions::new(qos),
            ))],
        );
        match &self.recv(id)[..] {
            [Packet::SubAck(ack)] => ack.clone(),
            other => panic!("expected a SUBACK, got {other:?}"),
        }
    }

    /// Publishes from `id` and completes the exchange (PUBACK, or PUBREC/PUBREL/PUBCOMP).
    fn publish(&mut self, id: ConnectionId, publish: Publish) {
        let qos_pid = publish.qos_pid;
        self.send(id, &[Packet::Publish(publish)]);
        let got = self.recv(id);
        match qos_pid {
            QosPid::AtMostOnce => assert!(got.is_empty(), "{got:?}"),
            QosPid::AtLeastOnce(p) => {
                assert!(
                    matches!(&got[..], [Packet::PubAck(a)] if a.packet_id == p),
                    "{got:?}"
                )
            }
            QosPid::ExactlyOnce(p) => {
                assert!(
                    matches!(&got[..], [Packet::PubRec(a)] if a.packet_id == p),
                    "{got:?}"
                );
                self.send(id, &[Packet::PubRel(PubResponse::new(p))]);
                let got = self.recv(id);
                assert!(
                    matches!(&got[..], [Packet::PubComp(a)] if a.packet_id == p),
                    "{got:?}"
                );
            }
        }
    }
}

fn pid(id: u16) -> PacketId {
    PacketId::new(id).unwrap()
}

fn string(s: &str) -> MqttString {
    MqttString::new(s).unwrap()
}

fn topic(name: &str) -> TopicName {
    TopicName::new(name).unwrap()
}

fn connect(version: ProtocolVersion, id: &str, clean: bool, expiry: u32) -> Connect {
    let mut c = Connect::new(version, string(id));
    c.clean_start = clean;
    c.keep_alive = 0;
    if version.is_v5() && expiry > 0 {
        c.properties.session_expiry_interval = Some(expiry);
    }
    c
}

fn message(name: &str, qos: QoS, packet_id: u16, payload: &str) -> Publish {
    let qos_pid = match qos {
        QoS::AtMostOnce => QosPid::AtMostOnce,
        QoS::AtLeastOnce => QosPid::AtLeastOnce(pid(packet_id)),
        QoS::ExactlyOnce => QosPid::ExactlyOnce(pid(packet_id)),
    };
    Publish::new(
        topic(name),
        qos_pid,
        Bytes::copy_from_slice(payload.as_bytes()),
    )
}

fn publishes(packets: &[Packet]) -> Vec<&Publish> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn payloads(packets: &[Packet]) -> Vec<String> {
    publishes(packets)
        .iter()
        .map(|p| String::from_utf8(p.payload.to_vec()).unwrap())
        .collect()
}

fn unsubscribe(id: u16, filter: &str) -> Unsubscribe {
    Unsubscribe {
        packet_id: pid(id),
        filters: vec![TopicFilter::new(filter).unwrap()],
        properties: Default::default(),
    }
}

fn packet_id_of(p: &Publish) -> PacketId {
    p.qos_pid.packet_id().expect("QoS 1 or 2")
}

// ---------------------------------------------------------------------------------------------
// Packet identifiers
// ---------------------------------------------------------------------------------------------

// [MQTT-2.3.1-4] (3.1.1): the Server's QoS > 0 PUBLISH packets follow the identifier rules.
// [MQTT-2.2.1-4] (5.0): each new QoS > 0 PUBLISH from the Server gets a non-zero identifier
// not currently in use.
#[test]
fn server_publish_packet_ids_are_unused_while_in_flight() {
    for version in [V3, V5] {
        let mut net = Net::new();
        let sub = net.client(version, "sub", 0);
        net.subscribe(sub, 1, "t", QoS::ExactlyOnce);
        let publisher = net.client(V5, "pub", 0);
        let mut in_use: BTreeSet<u16> = BTreeSet::new();
        let mut seen = 0;
        let mut next = 1u16;
        for round in 0..6 {
            for _ in 0..40 {
                let qos = if next % 2 == 0 {
                    QoS::AtLeastOnce
                } else {
                    QoS::ExactlyOnce
                };
                net.publish(publisher, message("t", qos, next, "m"));
                next += 1;
            }
            let got = net.recv(sub);
            for p in publishes(&got) {
                let id = packet_id_of(p).get();
                assert!(
                    in_use.insert(id),
                    "{version}: id {id} reused while in flight"
                );
                seen += 1;
            }
            // Acknowledge the oldest half: QoS 1 with PUBACK, QoS 2 up to PUBCOMP.
            let done: Vec<(u16, QoS)> = publishes(&got)
                .iter()
                .take(20)
                .map(|p| (packet_id_of(p).get(), p.qos_pid.qos()))
                .collect();
            for (id, qos) in done {
                if qos == QoS::AtLeastOnce {
                    net.send(sub, &[Packet::PubAck(PubResponse::new(pid(id)))]);
                } else {
                    net.send(sub, &[Packet::PubRec(PubResponse::new(pid(id)))]);
                    let rel = net.recv(sub);
                    assert!(
                        matches!(&rel[..], [Packet::PubRel(r)] if r.packet_id.get() == id),
                        "{version} round {round}: {rel:?}"
                    );
                    // Still in use until PUBCOMP.
                    net.send(sub, &[Packet::PubComp(PubResponse::new(pid(id)))]);
                }
                in_use.remove(&id);
            }
        }
        assert_eq!(seen, 240, "{version}: every message delivered");
    }
}

// [MQTT-2.3.1-7] (3.1.1): SUBACK and UNSUBACK carry the identifier of the request.
// [MQTT-2.2.1-6] (5.0): the same.
#[test]
fn suback_and_unsuback_carry_the_requests_packet_id() {
    for version in [V3, V5] {
        let mut net = Net::new();
        let c = net.client(version, "c", 0);
        let sub = |id: u16, f: &str| {
            Packet::Subscribe(Subscribe::new(
                pid(id),
                TopicFilter::new(f).unwrap(),
                SubscriptionOptions::new(QoS::AtLeastOnce),
            ))
        };
        let unsub = |id: u16, f: &str| Packet::Unsubscribe(unsubscribe(id, f));
        // Several requests in one read, identifiers in no particular order.
        net.send(
            c,
            &[
                sub(0xBEEF, "a"),
                sub(1, "b/#"),
                unsub(0xFFFF, "a"),
                sub(0x1234, "c/+"),
                unsub(7, "never"),
            ],
        );
        let ids: Vec<(char, u16)> = net
            .recv(c)
            .iter()
            .map(|p| match p {
                Packet::SubAck(SubAck { packet_id, .. }) => ('s', packet_id.get()),
                Packet::UnsubAck(UnsubAck { packet_id, .. }) => ('u', packet_id.get()),
                other => panic!("{version}: {other:?}"),
            })
            .collect();
        assert_eq!(
            ids,
            [
                ('s', 0xBEEF),
                ('s', 1),
                ('u', 0xFFFF),
                ('s', 0x1234),
                ('u', 7)
            ],
            "{version}"
        );
    }
}

// [MQTT-2.2.1-5] (5.0): PUBACK, PUBREC, PUBREL and PUBCOMP carry the identifier of the PUBLISH
// they belong to, in both directions.
#[test]
fn publish_responses_carry_the_publish_packet_id_v5() {
    let mut net = Net::new();
    let sub = net.client(V5, "sub", 0);
    net.subscribe(sub, 1, "t", QoS::ExactlyOnce);
    let p = net.client(V5, "pub", 0);
    // Inbound: the broker answers with the publisher's identifiers.
    net.send(
        p,
        &[Packet::Publish(message("t", QoS::AtLeastOnce, 0x0102, "1"))],
    );
    assert_eq!(net.recv(p), [Packet::PubAck(PubResponse::new(pid(0x0102)))]);
    net.send(
        p,
        &[Packet::Publish(message("t", QoS::ExactlyOnce, 0xFFFF, "2"))],
    );
    assert_eq!(net.recv(p), [Packet::PubRec(PubResponse::new(pid(0xFFFF)))]);
    net.send(p, &[Packet::PubRel(PubResponse::new(pid(0xFFFF)))]);
    assert_eq!(
        net.recv(p),
        [Packet::PubComp(PubResponse::new(pid(0xFFFF)))]
    );
    // Outbound: the broker's PUBREL carries the identifier of its own PUBLISH.
    let got = net.recv(sub);
    let qos2 = publishes(&got)
        .into_iter()
        .find(|p| p.qos_pid.qos() == QoS::ExactlyOnce)
        .map(packet_id_of)
        .unwrap();
    net.send(sub, &[Packet::PubRec(PubResponse::new(qos2))]);
    assert_eq!(net.recv(sub), [Packet::PubRel(PubResponse::new(qos2))]);
}

// ---------------------------------------------------------------------------------------------
// CONNECT
// ---------------------------------------------------------------------------------------------

// [MQTT-3.1.3-2] (3.1.1 and 5.0): the ClientId identifies the Session state: each client
// gets back its own subscriptions and queued messages, and an unknown id gets none.
#[test]
fn the_client_id_selects_the_session_state() {
    for version in [V3, V5] {
        let mut net = Net::new();
        let a = net.client(version, "alpha", 3600);
        net.subscribe(a, 1, "for/alpha", QoS::AtLeastOnce);
        let b = net.client(version, "beta", 3600);
        net.subscribe(b, 1, "for/beta", QoS::AtLeastOnce);
        net.send(
            a,
            &[Packet::Disconnect(Disconnect::new(ReasonCode::Success))],
        );
        net.send(
            b,
            &[Packet::Disconnect(Disconnect::new(ReasonCode::Success))],
        );
        let p = net.client(V5, "pub", 0);
        net.publish(p, message("for/alpha", QoS::AtLeastOnce, 1, "a"));
        net.publish(p, message("for/beta", QoS::AtLeastOnce, 2, "b"));
        for (id, expected) in [("beta", "b"), ("alpha", "a")] {
            let (conn, ack) = net.connect(connect(version, id, false, 3600));
            assert!(ack.session_present, "{version} {id}");
            assert_eq!(payloads(&net.recv(conn)), [expected], "{version} {id}");
        }
        let (_, ack) = net.connect(connect(version, "gamma", false, 3600));
        assert!(!ack.session_present, "{version}: no state for a new id");
    }
}

// [MQTT-3.1.3-5] (3.1.1 and 5.0): the Server must accept ClientIds of 1 to 23 bytes of
// 0-9, a-z, A-Z (also with a persistent session, where 3.1.1 needs a real id).
#[test]
fn client_ids_of_1_to_23_alphanumerics_are_accepted() {
    const ALPHABET: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut ids: Vec<String> = (1..=23).map(|n| ALPHABET[..n].to_string()).collect();
    ids.extend(["z".into(), "Z".into(), ALPHABET[39..].to_string()]);
    assert_eq!(ALPHABET[39..].len(), 23);
    for version in [V3, V5] {
        let mut net = Net::new();
        for id in &ids {
            for clean in [true, false] {
                let (conn, ack) = net.connect(connect(version, id, clean, 60));
                assert_eq!(ack.reason_code, ReasonCode::Success, "{version} {id:?}");
                assert!(!net.closed.contains(&conn));
                net.send(
                    conn,
                    &[Packet::Disconnect(Disconnect::new(ReasonCode::Success))],
                );
            }
        }
    }
}

// [MQTT-3.1.3-9] (3.1.1): a ClientId the Server rejects gets CONNACK return code 0x02
// Identifier rejected, then the connection is closed.
// [MQTT-3.2.2-4] (3.1.1): a CONNACK with a non-zero return code has Session Present 0.
#[test]
fn rejected_client_id_gets_return_code_2_and_close_v311() {
    let mut net = Net::new();
    // An empty ClientId with CleanSession 0.
    let id = net.open(V3);
    net.send(id, &[Packet::from(connect(V3, "", false, 0))]);
    assert_eq!(net.rx[&id][..], [0x20, 0x02, 0x00, 0x02], "return code 2");
    assert!(net.closed.contains(&id), "closed after the CONNACK");
    assert_eq!(net.broker.stats().sessions, 0);
}

// [MQTT-3.1.3-8] (5.0): a Server that rejects the ClientID may answer CONNACK 0x85 Client
// Identifier not valid, and must then close the connection.
// [MQTT-3.2.2-6] (5.0): a CONNACK with a non-zero Reason Code has Session Present 0.
#[test]
fn rejected_client_id_gets_0x85_and_close_v5() {
    let mut policy = Policy::default();
    policy
        .refuse_client
        .insert("bad id".into(), ReasonCode::ClientIdentifierNotValid);
    let mut net = Net::with(BrokerConfig::default(), policy);
    let id = net.open(V5);
    net.send(id, &[Packet::from(connect(V5, "bad id", true, 0))]);
    match &net.recv(id)[..] {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid);
            assert!(!ack.session_present);
        }
        other => panic!("{other:?}"),
    }
    assert!(net.closed.contains(&id));
    // Nothing sent after the refusal is processed.
    assert!(!net.broker.wants_read(id));
}

/// A CONNECT (3.1.1 or 5.0, client id "c") with `flags` and `payload` written by hand.
fn raw_connect(version: ProtocolVersion, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T'];
    body.push(if version.is_v5() { 5 } else { 4 });
    body.extend_from_slice(&[flags, 0x00, 0x00]);
    if version.is_v5() {
        body.push(0);
    }
    body.extend_from_slice(payload);
    let mut out = vec![0x10, body.len() as u8];
    out.extend_from_slice(&body);
    out
}

// [MQTT-3.1.4-1] (3.1.1 and 5.0): a CONNECT that does not conform to section 3.1 closes the
// connection; in 3.1.1 without a CONNACK ([MQTT-3.2.2-6] (3.1.1): no return code applies to
// a malformed CONNECT), in 5.0 at most a CONNACK with an error code.
// [MQTT-3.2.2-6] (3.1.1)
#[test]
fn malformed_connect_closes_the_connection() {
    let broken: [(u8, &[u8]); 4] = [
        (0x03, &[0x00, 0x01, b'c']),             // reserved flag set
        (0x02, &[0x00, 0x02, 0xC0, 0xAF]),       // ill-formed UTF-8 client id
        (0x12, &[0x00, 0x01, b'c']),             // Will QoS without the Will Flag
        (0x02, &[0x00, 0x01, b'c', 0x00, 0x01]), // bytes after the last field
    ];
    for version in [V3, V5] {
        for (flags, payload) in broken {
            let mut net = Net::new();
            let id = net.open(version);
            net.send_bytes(id, &raw_connect(version, flags, payload));
            assert!(
                net.closed.contains(&id),
                "{version} {flags:#x} {payload:02X?}"
            );
            let sent = net.recv(id);
            if version.is_v5() {
                for p in &sent {
                    assert!(
                        matches!(p, Packet::ConnAck(a) if a.reason_code.is_error()),
                        "{p:?}"
                    );
                }
            } else {
                assert!(sent.is_empty(), "no CONNACK in 3.1.1: {sent:?}");
            }
            assert!(net.connected.is_empty());
            assert_eq!(net.broker.stats().sessions, 0);
        }
    }
}

// [MQTT-3.1.4-2] (5.0): if an authentication or authorization check on the CONNECT fails, the
// Server must close the connection (after CONNACK with the code, 3.2.2.2).
// [MQTT-3.1.4-6] (5.0): nothing the client sent after the refused CONNECT is processed.
#[test]
fn failed_authentication_closes_the_connection_v5() {
    for code in [
        ReasonCode::BadUserNameOrPassword,
        ReasonCode::NotAuthorized,
        ReasonCode::Banned,
    ] {
        let mut policy = Policy::default();
        policy.refuse_client.insert("mallory".into(), code);
        let mut net = Net::with(BrokerConfig::default(), policy);
        let id = net.open(V5);
        let mut c = connect(V5, "mallory", true, 0);
        c.username = Some(string("mallory"));
        c.password = Some(Bytes::from_static(b"guess"));
        // A SUBSCRIBE right behind the CONNECT is not processed.
        net.send(
            id,
            &[
                Packet::from(c),
                Packet::Subscribe(Subscribe::new(
                    pid(1),
                    TopicFilter::new("#").unwrap(),
                    SubscriptionOptions::new(QoS::AtMostOnce),
                )),
            ],
        );
        match &net.recv(id)[..] {
            [Packet::ConnAck(ack)] => assert_eq!(ack.reason_code, code),
            other => panic!("{other:?}"),
        }
        assert!(net.closed.contains(&id), "{code:?}");
        assert_eq!(net.broker.stats().subscriptions, 0);
    }
}

// After a valid CONNECT the Server carries out the CleanSession / Clean Start processing (a
// clean start drops the stored session, a resumed one keeps its subscriptions):
// [MQTT-3.1.4-3] (3.1.1)
// [MQTT-3.1.4-4] (5.0)
// and it answers CONNACK return code 0: [MQTT-3.1.4-4] (3.1.1).
// [MQTT-3.1.4-5] (5.0): the accepted CONNECT gets CONNACK 0x00 Success.
#[test]
fn clean_start_processing_after_a_valid_connect() {
    for version in [V3, V5] {
        let mut net = Net::new();
        let c = net.client(version, "c", 3600);
        net.subscribe(c, 1, "kept", QoS::AtLeastOnce);
        net.cut(c);
        // Resumed: Session Present, the subscription still there.
        let (c, ack) = net.connect(connect(version, "c", false, 3600));
        assert_eq!(ack.reason_code, ReasonCode::Success);
        assert!(ack.session_present, "{version}");
        let p = net.client(V5, "p", 0);
        net.publish(p, message("kept", QoS::AtLeastOnce, 1, "one"));
        let got = net.recv(c);
        assert_eq!(payloads(&got), ["one"], "{version}");
        net.send(
            c,
            &[Packet::PubAck(PubResponse::new(packet_id_of(
                publishes(&got)[0],
            )))],
        );
        net.cut(c);
        // Clean start: a new session without the subscription.
        let (c, ack) = net.connect(connect(version, "c", true, 3600));
        assert_eq!(ack.reason_code, ReasonCode::Success);
        assert!(!ack.session_present, "{version}");
        net.publish(p, message("kept", QoS::AtLeastOnce, 2, "two"));
        assert!(
            net.recv(c).is_empty(),
            "{version}: the old subscription is gone"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------------------------

// [MQTT-3.3.2-3] (3.1.1 and 5.0): the Topic Name the Server sends a subscriber matches the
// Topic Filter of its subscription; messages on topics that match none are not sent.
#[test]
fn delivered_topic_names_match_the_subscriptions() {
    let filters = ["a/+/c", "b/#", "+", "exact/topic", "$SYS/#"];
    let topics = [
        "a/b/c",
        "a/x/c",
        "a/b",
        "a/b/c/d",
        "b",
        "b/",
        "b/x/y",
        "x",
        "/x",
        "exact/topic",
        "exact/topic/more",
        "Exact/topic",
        "$SYS/up",
        "$other",
    ];
    for version in [V3, V5] {
        let mut net = Net::new();
        let s = net.client(version, "s", 0);
        for (i, f) in filters.iter().enumerate() {
            net.subscribe(s, i as u16 + 1, f, QoS::AtMostOnce);
        }
        let p = net.client(V5, "p", 0);
        for t in topics {
            if t.starts_with('$') {
                // `$` topics are the broker's; publish them as the broker.
                net.broker.publish(
                    net.now,
                    mqtt_streaming_session::Message::new(topic(t), QoS::AtMostOnce, t.to_owned()),
                );
                net.pump();
            } else {
                net.publish(p, message(t, QoS::AtMostOnce, 0, t));
            }
        }
        let got = net.recv(s);
        let names: Vec<&str> = publishes(&got).iter().map(|p| p.topic.as_str()).collect();
        for name in &names {
            assert!(
                filters.iter().any(|f| topic_matches(f, name)),
                "{version}: {name} matches no subscription"
            );
        }
        let expected: Vec<&str> = topics
            .iter()
            .copied()
            .filter(|t| filters.iter().any(|f| topic_matches(f, t)))
            .collect();
        assert_eq!(names, expected, "{version}");
        assert!(!names.contains(&"$other") && names.contains(&"$SYS/up"));
    }
}

// [MQTT-4.5.0-1] (3.1.1 and 5.0): a message the Server takes ownership of is added to the
// Session state of every Client with a matching subscription, connected or not.
#[test]
fn a_message_goes_to_every_matching_session() {
    for version in [V3, V5] {
        let mut net = Net::new();
        let wild = net.client(version, "wild", 0);
        net.subscribe(wild, 1, "t/#", QoS::AtLeastOnce);
        let exact = net.client(version, "exact", 0);
        net.subscribe(exact, 1, "t/x", QoS::ExactlyOnce);
        let away = net.client(version, "away", 3600);
        net.subscribe(away, 1, "+/x", QoS::AtLeastOnce);
        net.cut(away);
        let other = net.client(version, "other", 0);
        net.subscribe(other, 1, "t/y", QoS::AtLeastOnce);
        let p = net.client(V5, "p", 0);
        net.publish(p, message("t/x", QoS::ExactlyOnce, 9, "m"));
        assert_eq!(payloads(&net.recv(wild)), ["m"], "{version}");
        assert_eq!(payloads(&net.recv(exact)), ["m"], "{version}");
        assert!(net.recv(other).is_empty(), "{version}");
        let (away, ack) = net.connect(connect(version, "away", false, 3600));
        assert!(ack.session_present);
        assert_eq!(payloads(&net.recv(away)), ["m"], "{version}");
    }
}

// [MQTT-4.6.0-5] (3.1.1 and 5.0): topics are Ordered Topics: the messages one Client publishes
// on a topic reach each subscriber in the order they were sent (per QoS), also while the
// subscriber's window holds them back.
#[test]
fn each_topic_is_an_ordered_topic() {
    for version in [V3, V5] {
        let mut net = Net::new();
        let mut c = connect(version, "s", true, 0);
        if version.is_v5() {
            c.properties.receive_maximum = std::num::NonZeroU16::new(3);
        }
        let (s, _) = net.connect(c);
        net.subscribe(s, 1, "o", QoS::ExactlyOnce);
        let p = net.client(V5, "p", 0);
        let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
        for i in 0..60u16 {
            net.publish(
                p,
                message("o", qos[usize::from(i % 3)], i + 1, &i.to_string()),
            );
        }
        let mut got: BTreeMap<QoS, Vec<u16>> = BTreeMap::new();
        // Drain, acknowledging as a client would, until nothing new arrives.
        loop {
            let packets = net.recv(s);
            if packets.is_empty() {
                break;
            }
            for packet in packets {
                match packet {
                    Packet::Publish(m) => {
                        let seq: u16 = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
                        got.entry(m.qos_pid.qos()).or_default().push(seq);
                        match m.qos_pid {
                            QosPid::AtMostOnce => {}
                            QosPid::AtLeastOnce(id) => {
                                net.send(s, &[Packet::PubAck(PubResponse::new(id))])
                            }
                            QosPid::ExactlyOnce(id) => {
                                net.send(s, &[Packet::PubRec(PubResponse::new(id))])
                            }
                        }
                    }
                    Packet::PubRel(r) => {
                        net.send(s, &[Packet::PubComp(PubResponse::new(r.packet_id))])
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        for (i, q) in qos.iter().enumerate() {
            let expected: Vec<u16> = (0..60).filter(|n| n % 3 == i as u16).collect();
            assert_eq!(got.get(q), Some(&expected), "{version} {q:?}");
        }
    }
}

// [MQTT-4.1.0-2] (3.1.1): a Session lasts at least as long as its Network Connection.
// [MQTT-4.1.0-1] (3.1.1): its state is kept for the whole of it.
// [MQTT-4.1.0-1] (5.0): Session State is not discarded while the connection is open, even with
// a Session Expiry Interval of 0 and no Keep Alive, however long it stays quiet.
#[test]
fn session_state_lives_as_long_as_the_connection() {
    for version in [V3, V5] {
        let mut net = Net::new();
        let s = net.client(version, "s", 0);
        net.subscribe(s, 1, "t", QoS::AtLeastOnce);
        let p = net.client(V5, "p", 0);
        // An unacknowledged QoS 1 message is part of the session state too.
        net.publish(p, message("t", QoS::AtLeastOnce, 1, "first"));
        let first = net.recv(s);
        for _ in 0..10 {
            net.advance(24 * 3600 * 1000);
        }
        assert!(!net.closed.contains(&s), "{version}");
        assert_eq!(net.broker.stats().subscriptions, 1, "{version}");
        net.publish(p, message("t", QoS::AtLeastOnce, 2, "later"));
        assert_eq!(payloads(&net.recv(s)), ["later"], "{version}");
        // The old in-flight message is still acknowledged without a protocol error.
        let old = packet_id_of(publishes(&first)[0]);
        net.send(s, &[Packet::PubAck(PubResponse::new(old))]);
        assert!(!net.closed.contains(&s), "{version}");
    }
}

// [MQTT-4.1.0-2] (5.0): the Server discards the Session State once the connection is closed
// and the Session Expiry Interval has passed, not before.
#[test]
fn session_state_is_discarded_when_the_expiry_interval_has_passed_v5() {
    let mut net = Net::new();
    let s = net.client(V5, "s", 60);
    net.subscribe(s, 1, "t", QoS::AtLeastOnce);
    net.cut(s);
    net.advance(59_000);
    let (s, ack) = net.connect(connect(V5, "s", false, 60));
    assert!(ack.session_present, "kept within the interval");
    net.cut(s);
    net.advance(60_001);
    assert_eq!(net.broker.stats().sessions, 0);
    assert_eq!(net.broker.stats().subscriptions, 0);
    let (s, ack) = net.connect(connect(V5, "s", false, 60));
    assert!(!ack.session_present, "discarded after the interval");
    let p = net.client(V5, "p", 0);
    net.publish(p, message("t", QoS::AtLeastOnce, 1, "x"));
    assert!(net.recv(s).is_empty());
}

// [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-18] [MQTT-3.3.2-20] (5.0): the Server forwards
// the Response Topic, the Correlation Data, the User Properties (in order, repeats kept) and
// the Content Type unchanged to every subscriber.
#[test]
fn request_response_properties_are_forwarded_unchanged_v5() {
    let mut net = Net::new();
    let s0 = net.client(V5, "s0", 0);
    net.subscribe(s0, 1, "req/#", QoS::AtMostOnce);
    let s2 = net.client(V5, "s2", 0);
    net.subscribe(s2, 1, "req/+", QoS::ExactlyOnce);
    let p = net.client(V5, "p", 0);
    let mut m = message("req/x", QoS::ExactlyOnce, 3, "body");
    m.properties.response_topic = Some(topic("resp/\u{FEFF}ü"));
    m.properties.correlation_data = Some(Bytes::from_static(&[0, 0xFF, 0x80, 0]));
    m.properties.content_type = Some(string("application/x+json; q=\"1\""));
    let users = [("k", "1"), ("a", "x"), ("k", "2"), ("", ""), ("k", "1")];
    m.properties.user_properties = users
        .iter()
        .map(|(n, v)| UserProperty::new(n, v).unwrap())
        .collect();
    net.publish(p, m.clone());
    for s in [s0, s2] {
        let got = net.recv(s);
        let [Packet::Publish(d)] = &got[..] else {
            panic!("{got:?}")
        };
        assert_eq!(d.properties.response_topic, m.properties.response_topic);
        assert_eq!(d.properties.correlation_data, m.properties.correlation_data);
        assert_eq!(d.properties.content_type, m.properties.content_type);
        assert_eq!(d.properties.user_properties, m.properties.user_properties);
    }
}

// [MQTT-3.3.4-2] (5.0): with overlapping subscriptions the Server delivers respecting the
// maximum QoS of all the matching subscriptions (one copy at that QoS, or a copy per
// subscription each at its own).
#[test]
fn overlapping_subscriptions_respect_the_highest_granted_qos_v5() {
    for published in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut net = Net::new();
        let s = net.client(V5, "s", 0);
        net.subscribe(s, 1, "a/+", QoS::AtMostOnce);
        net.subscribe(s, 2, "a/#", QoS::ExactlyOnce);
        net.subscribe(s, 3, "a/b", QoS::AtLeastOnce);
        let p = net.client(V5, "p", 0);
        net.publish(p, message("a/b", published, 1, "m"));
        let got = net.recv(s);
        let qos: Vec<QoS> = publishes(&got).iter().map(|p| p.qos_pid.qos()).collect();
        assert!(!qos.is_empty());
        assert_eq!(qos.iter().max(), Some(&published), "{qos:?}");
        if qos.len() > 1 {
            let mut sorted = qos.clone();
            sorted.sort();
            assert_eq!(
                sorted,
                [
                    QoS::AtMostOnce,
                    QoS::AtLeastOnce,
                    published.min(QoS::ExactlyOnce)
                ]
            );
        }
    }
}

// [MQTT-3.3.4-10] (5.0): the Server must not delay packets other than PUBLISH because the
// client's Receive Maximum is reached.
#[test]
fn receive_maximum_does_not_delay_other_packets_v5() {
    let mut net = Net::new();
    let mut c = connect(V5, "s", true, 0);
    c.properties.receive_maximum = std::num::NonZeroU16::new(1);
    let (s, _) = net.connect(c);
    net.subscribe(s, 1, "t", QoS::AtLeastOnce);
    let p = net.client(V5, "p", 0);
    for i in 1..=3 {
        net.publish(p, message("t", QoS::AtLeastOnce, i, "m"));
    }
    let first = net.recv(s);
    assert_eq!(publishes(&first).len(), 1, "the window is one message");
    net.send(
        s,
        &[
            Packet::Subscribe(Subscribe::new(
                pid(2),
                TopicFilter::new("u").unwrap(),
                SubscriptionOptions::new(QoS::AtMostOnce),
            )),
            Packet::Unsubscribe(unsubscribe(3, "u")),
            Packet::PingReq,
        ],
    );
    let got = net.recv(s);
    assert!(
        matches!(
            &got[..],
            [Packet::SubAck(_), Packet::UnsubAck(_), Packet::PingResp]
        ),
        "{got:?}"
    );
    // The window opens on the PUBACK: the next PUBLISH follows.
    net.send(
        s,
        &[Packet::PubAck(PubResponse::new(packet_id_of(
            publishes(&first)[0],
        )))],
    );
    assert_eq!(publishes(&net.recv(s)).len(), 1);
}

// [MQTT-3.1.2-25] (5.0): a message too large for the client's Maximum Packet Size is
// discarded, and the Server behaves as if sending it had completed: later messages flow, and
// it is not sent when the session resumes.
#[test]
fn message_too_large_for_the_client_is_discarded_as_if_sent_v5() {
    let mut net = Net::new();
    let mut c = connect(V5, "s", false, 3600);
    c.properties.maximum_packet_size = std::num::NonZeroU32::new(64);
    c.properties.receive_maximum = std::num::NonZeroU16::new(1);
    let (s, _) = net.connect(c.clone());
    net.subscribe(s, 1, "t", QoS::AtLeastOnce);
    let p = net.client(V5, "p", 0);
    net.publish(p, message("t", QoS::AtLeastOnce, 1, &"x".repeat(200)));
    net.publish(p, message("t", QoS::AtLeastOnce, 2, "small"));
    let got = net.recv(s);
    assert_eq!(
        payloads(&got),
        ["small"],
        "the large one is skipped, not blocking"
    );
    net.cut(s);
    let (s, ack) = net.connect(c);
    assert!(ack.session_present);
    let again = net.recv(s);
    assert_eq!(
        payloads(&again),
        ["small"],
        "only the unacknowledged small one is resent"
    );
    assert!(publishes(&again)[0].dup);
}

// [MQTT-3.8.4-7] (5.0): each SUBACK Reason Code gives the maximum QoS granted or says the
// subscription failed.
#[test]
fn suback_codes_grant_a_qos_or_report_failure_v5() {
    let mut policy = Policy::default();
    policy.refuse_subscribe.insert("secret/#".into());
    let mut config = BrokerConfig::default();
    config.server.maximum_qos = QoS::AtLeastOnce;
    let mut net = Net::with(config, policy);
    let s = net.client(V5, "s", 0);
    let subscriptions = [
        ("q0", QoS::AtMostOnce),
        ("q1", QoS::AtLeastOnce),
        ("q2", QoS::ExactlyOnce),
        ("secret/#", QoS::AtMostOnce),
    ];
    let mut subscribe = Subscribe::new(
        pid(1),
        TopicFilter::new(subscriptions[0].0).unwrap(),
        SubscriptionOptions::new(subscriptions[0].1),
    );
    for (f, q) in &subscriptions[1..] {
        subscribe.subscriptions.push(Subscription {
            filter: TopicFilter::new(f).unwrap(),
            options: SubscriptionOptions::new(*q),
        });
    }
    net.send(s, &[Packet::Subscribe(subscribe)]);
    let got = net.recv(s);
    let [Packet::SubAck(ack)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(
        ack.reason_codes,
        [
            ReasonCode::Success,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS1, // the server's Maximum QoS
            ReasonCode::NotAuthorized,
        ]
    );
    // The granted QoS is the one delivered with.
    let p = net.client(V5, "p", 0);
    net.publish(p, message("q2", QoS::AtLeastOnce, 1, "m"));
    let got = net.recv(s);
    assert_eq!(publishes(&got)[0].qos_pid.qos(), QoS::AtLeastOnce);
    net.publish(p, message("secret/x", QoS::AtMostOnce, 0, "no"));
    assert!(net.recv(s).iter().all(|p| !matches!(p, Packet::Publish(_))));
}

// ---------------------------------------------------------------------------------------------
// QoS 2 and message expiry
// ---------------------------------------------------------------------------------------------

// [MQTT-4.3.3-7] (5.0): once a QoS 2 PUBLISH has been sent, the Server (as sender) does not
// apply message expiry to it: it is sent again on resume, and so is the PUBREL.
#[test]
fn sent_qos2_message_is_not_expired_v5() {
    let mut net = Net::new();
    let (s, _) = net.connect(connect(V5, "s", false, 3600));
    net.subscribe(s, 1, "t", QoS::ExactlyOnce);
    let p = net.client(V5, "p", 0);
    for (i, payload) in ["unacked", "received"].iter().enumerate() {
        let mut m = message("t", QoS::ExactlyOnce, i as u16 + 1, payload);
        m.properties.message_expiry_interval = Some(2);
        net.publish(p, m);
    }
    let got = net.recv(s);
    assert_eq!(payloads(&got), ["unacked", "received"]);
    let second = packet_id_of(publishes(&got)[1]);
    net.send(s, &[Packet::PubRec(PubResponse::new(second))]);
    assert_eq!(net.recv(s), [Packet::PubRel(PubResponse::new(second))]);
    net.cut(s);
    net.advance(30_000); // well past the 2 s expiry
    let (s, ack) = net.connect(connect(V5, "s", false, 3600));
    assert!(ack.session_present);
    let again = net.recv(s);
    assert_eq!(payloads(&again), ["unacked"], "{again:?}");
    assert!(publishes(&again)[0].dup);
    assert!(
        again.contains(&Packet::PubRel(PubResponse::new(second))),
        "{again:?}"
    );
}

// [MQTT-4.3.3-13] (5.0): the Server (as QoS 2 receiver) completes the acknowledgement sequence
// even after the message's expiry has passed: a late PUBREL, also on a new connection, gets
// its PUBCOMP.
#[test]
fn qos2_exchange_completes_after_message_expiry_v5() {
    let mut net = Net::new();
    let s = net.client(V5, "s", 0);
    net.subscribe(s, 1, "t", QoS::ExactlyOnce);
    let (p, _) = net.connect(connect(V5, "p", false, 3600));
    for (id, payload) in [(1u16, "late"), (2, "later")] {
        let mut m = message("t", QoS::ExactlyOnce, id, payload);
        m.properties.message_expiry_interval = Some(1);
        net.send(p, &[Packet::Publish(m)]);
        assert_eq!(net.recv(p), [Packet::PubRec(PubResponse::new(pid(id)))]);
    }
    net.advance(10_000);
    net.send(p, &[Packet::PubRel(PubResponse::new(pid(1)))]);
    assert_eq!(net.recv(p), [Packet::PubComp(PubResponse::new(pid(1)))]);
    net.cut(p);
    net.advance(10_000);
    let (p, ack) = net.connect(connect(V5, "p", false, 3600));
    assert!(ack.session_present);
    net.send(p, &[Packet::PubRel(PubResponse::new(pid(2)))]);
    let got = net.recv(p);
    let [Packet::PubComp(comp)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(
        (comp.packet_id, comp.reason_code),
        (pid(2), ReasonCode::Success)
    );
}

// ---------------------------------------------------------------------------------------------
// Shared subscriptions
// ---------------------------------------------------------------------------------------------

// [MQTT-4.8.2-4] (5.0): a QoS 2 delivery through a shared subscription that the connection
// loss interrupted is completed with the same Client when it reconnects; no other member gets
// the message.
#[test]
fn interrupted_shared_qos2_delivery_completes_with_the_same_client_v5() {
    for acknowledged in [false, true] {
        let mut net = Net::new();
        let mut members = BTreeMap::new();
        for name in ["m1", "m2"] {
            let (c, _) = net.connect(connect(V5, name, false, 3600));
            net.subscribe(c, 1, "$share/g/job", QoS::ExactlyOnce);
            members.insert(name, c);
        }
        let p = net.client(V5, "p", 0);
        net.publish(p, message("job", QoS::ExactlyOnce, 1, "work"));
        let (&name, &conn) = members
            .iter()
            .find(|(_, &c)| !net.rx.get(&c).is_none_or(|b| b.is_empty()))
            .expect("one member got it");
        let got = net.recv(conn);
        assert_eq!(payloads(&got), ["work"]);
        let id = packet_id_of(publishes(&got)[0]);
        if acknowledged {
            net.send(conn, &[Packet::PubRec(PubResponse::new(id))]);
            assert_eq!(net.recv(conn), [Packet::PubRel(PubResponse::new(id))]);
        }
        net.cut(conn);
        net.advance(1_000);
        for (&other, &c) in &members {
            if other != name {
                assert!(net.recv(c).is_empty(), "{other} must not get it");
            }
        }
        let (conn, ack) = net.connect(connect(V5, name, false, 3600));
        assert!(ack.session_present);
        let again = net.recv(conn);
        if acknowledged {
            assert_eq!(again, [Packet::PubRel(PubResponse::new(id))]);
        } else {
            assert_eq!(payloads(&again), ["work"]);
            assert!(publishes(&again)[0].dup);
        }
    }
}

// [MQTT-4.8.2-6] (5.0): a member that rejects a shared message with PUBACK or PUBREC 0x80 or
// greater: the Server discards it and does not send it to another member.
#[test]
fn rejected_shared_message_is_not_offered_to_another_member_v5() {
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut net = Net::new();
        let mut members = Vec::new();
        for name in ["m1", "m2", "m3"] {
            let c = net.client(V5, name, 0);
            net.subscribe(c, 1, "$share/g/job", QoS::ExactlyOnce);
            members.push(c);
        }
        let p = net.client(V5, "p", 0);
        net.publish(p, message("job", qos, 1, "refused"));
        let mut receivers = 0;
        for &c in &members {
            let got = net.recv(c);
            for m in publishes(&got) {
                receivers += 1;
                let rejection = PubResponse {
                    reason_code: ReasonCode::UnspecifiedError,
                    ..PubResponse::new(packet_id_of(m))
                };
                net.send(
                    c,
                    &[if qos == QoS::AtLeastOnce {
                        Packet::PubAck(rejection)
                    } else {
                        Packet::PubRec(rejection)
                    }],
                );
            }
        }
        assert_eq!(receivers, 1);
        net.advance(1_000);
        for &c in &members {
            assert!(
                publishes(&net.recv(c)).is_empty(),
                "{qos:?}: offered again after the rejection"
            );
            assert!(!net.closed.contains(&c));
        }
        // The group still works.
        net.publish(p, message("job", qos, 2, "next"));
        let total: usize = members.iter().map(|&c| publishes(&net.recv(c)).len()).sum();
        assert_eq!(total, 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Transient errors
// ---------------------------------------------------------------------------------------------

// [MQTT-4.8.0-2] (3.1.1): a Transient Error while processing an inbound packet (the standard's
// example: an internal buffer full) closes the connection that packet came on. A 3.1.1 client
// has no way to learn our packet size limit; a PUBLISH beyond it cannot be buffered, so its
// connection is closed (no PUBACK), and no other client is affected.
#[test]
fn packet_beyond_our_buffers_closes_only_its_connection_v311() {
    let mut config = BrokerConfig::default();
    config.server.max_packet_size = 1024;
    let mut net = Net::with(config, Policy::default());
    let s = net.client(V3, "s", 0);
    net.subscribe(s, 1, "t", QoS::AtLeastOnce);
    let big = net.client(V3, "big", 0);
    let other = net.client(V3, "other", 0);
    net.send(
        big,
        &[Packet::Publish(message(
            "t",
            QoS::AtLeastOnce,
            1,
            &"x".repeat(2_000),
        ))],
    );
    assert!(net.closed.contains(&big));
    assert!(
        net.recv(big).is_empty(),
        "no PUBACK, no CONNACK: just the close"
    );
    assert!(net.recv(s).is_empty(), "not routed");
    // Everyone else goes on.
    net.publish(other, message("t", QoS::AtLeastOnce, 1, "fine"));
    assert_eq!(payloads(&net.recv(s)), ["fine"]);
    assert!(!net.closed.contains(&s) && !net.closed.contains(&other));
}

// [MQTT-3.1.3-10] (5.0): the Server keeps the order of the Will's User Properties when it
// publishes the Will Message (repeated names included).
#[test]
fn will_user_properties_keep_their_order_v5() {
    let mut net = Net::new();
    let s = net.client(V5, "s", 0);
    net.subscribe(s, 1, "wills/#", QoS::AtLeastOnce);
    let mut c = connect(V5, "dies", true, 0);
    let users: Vec<UserProperty> = [("k", "1"), ("a", "x"), ("k", "2"), ("b", ""), ("k", "1")]
        .iter()
        .map(|(n, v)| UserProperty::new(n, v).unwrap())
        .collect();
    c.will = Some(mqtt_streaming_proto::Will {
        topic: topic("wills/dies"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: mqtt_streaming_proto::WillProperties {
            user_properties: users.clone(),
            ..Default::default()
        },
    });
    let (conn, _) = net.connect(c);
    net.cut(conn);
    let got = net.recv(s);
    let [Packet::Publish(will)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(&will.payload[..], b"gone");
    assert_eq!(will.properties.user_properties, users);
}

// ---------------------------------------------------------------------------------------------
// Statements whose only citations were another version's (same id, other meaning)
// ---------------------------------------------------------------------------------------------

// [MQTT-3.1.2-15] (5.0): a Will Message with Will Retain 1 is published as a retained message:
// subscribers get it with RETAIN set (Retain As Published) and a later subscriber gets it
// from the store.
// [MQTT-3.1.2-7] (5.0): the Will Message of a CONNECT with Will Flag 1 is stored with the
// session and published when the connection is lost.
#[test]
fn will_with_retain_1_is_published_retained_v5() {
    let mut net = Net::new();
    let s = net.client(V5, "s", 0);
    let mut subscribe = Subscribe::new(
        pid(1),
        TopicFilter::new("status/#").unwrap(),
        SubscriptionOptions::new(QoS::AtLeastOnce),
    );
    subscribe.subscriptions[0].options.retain_as_published = true;
    net.send(s, &[Packet::Subscribe(subscribe)]);
    net.recv(s);
    let mut c = connect(V5, "dev", true, 0);
    c.will = Some(mqtt_streaming_proto::Will {
        topic: topic("status/dev"),
        payload: Bytes::from_static(b"offline"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Default::default(),
    });
    let (conn, _) = net.connect(c);
    net.cut(conn);
    let got = net.recv(s);
    assert!(
        matches!(&got[..], [Packet::Publish(p)] if p.retain && &p.payload[..] == b"offline"),
        "{got:?}"
    );
    let later = net.client(V5, "later", 0);
    net.send(
        later,
        &[Packet::Subscribe(Subscribe::new(
            pid(1),
            TopicFilter::new("status/+").unwrap(),
            SubscriptionOptions::new(QoS::AtLeastOnce),
        ))],
    );
    let got = net.recv(later);
    let retained: Vec<&Publish> = publishes(&got);
    assert_eq!(retained.len(), 1, "{got:?}");
    assert!(retained[0].retain);
    assert_eq!(&retained[0].payload[..], b"offline");
}

// [MQTT-3.8.4-6] (3.1.1): messages sent for a subscription use the lower of the published QoS
// and the maximum QoS the Server granted (which may be lower than the one requested).
#[test]
fn delivery_qos_is_the_lower_of_published_and_granted_v311() {
    let mut config = BrokerConfig::default();
    config.server.maximum_qos = QoS::AtLeastOnce;
    let mut net = Net::with(config, Policy::default());
    let asked = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    let mut subs = Vec::new();
    for (i, qos) in asked.iter().enumerate() {
        let s = net.client(V3, &format!("s{i}"), 0);
        let ack = net.subscribe(s, 1, "t", *qos);
        // Granted: at most the server's QoS 1.
        assert_eq!(
            ack.reason_codes,
            [ReasonCode::granted((*qos).min(QoS::AtLeastOnce))]
        );
        subs.push(s);
    }
    let p = net.client(V3, "p", 0);
    for (id, qos) in [(1, QoS::AtMostOnce), (2, QoS::AtLeastOnce)] {
        net.publish(p, message("t", qos, id, "m"));
    }
    let expected = [
        [QoS::AtMostOnce, QoS::AtMostOnce],
        [QoS::AtMostOnce, QoS::AtLeastOnce],
        [QoS::AtMostOnce, QoS::AtLeastOnce],
    ];
    for (s, want) in subs.iter().zip(expected) {
        let got = net.recv(*s);
        let qos: Vec<QoS> = publishes(&got).iter().map(|p| p.qos_pid.qos()).collect();
        assert_eq!(qos, want);
    }
}

// A SUBSCRIBE with several Topic Filters is handled as a series of SUBSCRIBEs whose answers are
// combined in one SUBACK: each filter gets its own code and its own subscription, and a filter
// equal to an existing one replaces it.
// [MQTT-3.8.4-4] (3.1.1)
// [MQTT-3.8.4-5] (5.0)
#[test]
fn subscribe_with_several_filters_is_a_series_of_subscribes() {
    for version in [V3, V5] {
        let mut net = Net::new();
        let s = net.client(version, "s", 0);
        net.subscribe(s, 1, "b", QoS::ExactlyOnce);
        let mut subscribe = Subscribe::new(
            pid(2),
            TopicFilter::new("a/+").unwrap(),
            SubscriptionOptions::new(QoS::AtLeastOnce),
        );
        for (f, q) in [("b", QoS::AtMostOnce), ("c/#", QoS::ExactlyOnce)] {
            subscribe.subscriptions.push(Subscription {
                filter: TopicFilter::new(f).unwrap(),
                options: SubscriptionOptions::new(q),
            });
        }
        net.send(s, &[Packet::Subscribe(subscribe)]);
        let got = net.recv(s);
        let [Packet::SubAck(ack)] = &got[..] else {
            panic!("{got:?}")
        };
        assert_eq!(
            ack.reason_codes,
            [
                ReasonCode::GrantedQoS1,
                ReasonCode::Success,
                ReasonCode::GrantedQoS2
            ],
            "{version}"
        );
        assert_eq!(net.broker.stats().subscriptions, 3, "{version}: b replaced");
        let p = net.client(V5, "p", 0);
        for (id, t) in [(1, "a/x"), (2, "b"), (3, "c/d/e")] {
            net.publish(p, message(t, QoS::ExactlyOnce, id, t));
        }
        let got = net.recv(s);
        let seen: Vec<(&str, QoS)> = publishes(&got)
            .iter()
            .map(|p| (p.topic.as_str(), p.qos_pid.qos()))
            .collect();
        assert_eq!(
            seen,
            [
                ("a/x", QoS::AtLeastOnce),
                ("b", QoS::AtMostOnce),
                ("c/d/e", QoS::ExactlyOnce)
            ],
            "{version}"
        );
    }
}

// [MQTT-3.3.5-2] (3.1.1): a PUBLISH the Server does not authorize is either acknowledged
// according to the normal QoS rules or the connection is closed; ours acknowledges it as usual
// (3.1.1 has no negative acknowledgement) and does not route it.
#[test]
fn unauthorized_publish_is_acknowledged_normally_and_dropped_v311() {
    let mut policy = Policy::default();
    policy.refuse_publish.insert("forbidden".into());
    let mut net = Net::with(BrokerConfig::default(), policy);
    let s = net.client(V3, "s", 0);
    net.subscribe(s, 1, "#", QoS::ExactlyOnce);
    let p = net.client(V3, "p", 0);
    // `publish` asserts the positive PUBACK, and PUBREC then PUBCOMP.
    net.publish(p, message("forbidden", QoS::AtLeastOnce, 1, "no"));
    net.publish(p, message("forbidden", QoS::ExactlyOnce, 2, "no"));
    net.publish(p, message("forbidden", QoS::AtMostOnce, 0, "no"));
    assert!(!net.closed.contains(&p));
    assert!(net.recv(s).is_empty(), "not routed");
    net.publish(p, message("allowed", QoS::AtLeastOnce, 3, "yes"));
    assert_eq!(payloads(&net.recv(s)), ["yes"]);
}

// ---------------------------------------------------------------------------------------------
// Retained messages and subscriptions (statements cited before only by another version's id)
// ---------------------------------------------------------------------------------------------

/// What a new subscriber to `filter` gets from the retained store, as (topic, payload, QoS).
fn retained_for(net: &mut Net, name: &str, filter: &str) -> Vec<(String, String, QoS)> {
    let s = net.client(V5, name, 0);
    net.send(
        s,
        &[Packet::Subscribe(Subscribe::new(
            pid(1),
            TopicFilter::new(filter).unwrap(),
            SubscriptionOptions::new(QoS::ExactlyOnce),
        ))],
    );
    net.recv(s)
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => {
                assert!(p.retain);
                Some((
                    p.topic.as_str().to_owned(),
                    String::from_utf8(p.payload.to_vec()).unwrap(),
                    p.qos_pid.qos(),
                ))
            }
            _ => None,
        })
        .collect()
}

// [MQTT-3.3.1-7] (3.1.1): a QoS 0 PUBLISH with RETAIN 1 discards the message retained before
// for its topic (we keep the new QoS 0 message in its place).
#[test]
fn qos0_retained_publish_replaces_the_retained_message_v311() {
    let mut net = Net::new();
    let p = net.client(V3, "p", 0);
    let mut old = message("r", QoS::AtLeastOnce, 1, "old");
    old.retain = true;
    net.publish(p, old);
    let mut new = message("r", QoS::AtMostOnce, 0, "new");
    new.retain = true;
    net.publish(p, new);
    assert_eq!(
        retained_for(&mut net, "s", "r"),
        [("r".to_owned(), "new".to_owned(), QoS::AtMostOnce)]
    );
}

// A PUBLISH with RETAIN 0 is neither stored as retained nor removes or replaces the message
// retained for its topic (not even with an empty payload).
// [MQTT-3.3.1-12] (3.1.1)
// [MQTT-3.3.1-8] (5.0)
#[test]
fn publish_without_retain_leaves_the_retained_store_alone() {
    for version in [V3, V5] {
        let mut net = Net::new();
        let p = net.client(version, "p", 0);
        let mut kept = message("r/a", QoS::AtLeastOnce, 1, "kept");
        kept.retain = true;
        net.publish(p, kept);
        net.publish(p, message("r/a", QoS::AtLeastOnce, 2, "live"));
        net.publish(p, message("r/a", QoS::AtMostOnce, 0, ""));
        net.publish(p, message("r/b", QoS::ExactlyOnce, 3, "not kept"));
        assert_eq!(
            retained_for(&mut net, "s", "r/#"),
            [("r/a".to_owned(), "kept".to_owned(), QoS::AtLeastOnce)],
            "{version}"
        );
        assert_eq!(net.broker.stats().retained, 1);
    }
}

// [MQTT-3.1.2-6] (5.0): a CONNECT with Clean Start 0 and no session for its ClientID creates a
// new session (Session Present 0), which then outlives the connection.
#[test]
fn clean_start_0_without_a_session_creates_one_v5() {
    let mut net = Net::new();
    let (c, ack) = net.connect(connect(V5, "fresh", false, 3600));
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert!(!ack.session_present);
    assert_eq!(net.broker.stats().sessions, 1);
    net.subscribe(c, 1, "t", QoS::AtLeastOnce);
    net.cut(c);
    assert_eq!(net.broker.stats().sessions, 1);
    let p = net.client(V5, "p", 0);
    net.publish(p, message("t", QoS::AtLeastOnce, 1, "queued"));
    let (c, ack) = net.connect(connect(V5, "fresh", false, 3600));
    assert!(ack.session_present);
    assert_eq!(payloads(&net.recv(c)), ["queued"]);
}

// [MQTT-3.10.4-2] (3.1.1 and 5.0): once a subscription is deleted the Server adds no new
// messages for it to the client's session: none sent while connected, none queued while away,
// and a remaining overlapping subscription still works.
#[test]
fn unsubscribe_stops_new_messages_for_the_filter() {
    for version in [V3, V5] {
        let mut net = Net::new();
        let s = net.client(version, "s", 3600);
        net.subscribe(s, 1, "a/+", QoS::AtLeastOnce);
        net.subscribe(s, 2, "a/keep", QoS::AtLeastOnce);
        net.send(s, &[Packet::Unsubscribe(unsubscribe(3, "a/+"))]);
        assert!(matches!(&net.recv(s)[..], [Packet::UnsubAck(_)]));
        let p = net.client(V5, "p", 0);
        net.publish(p, message("a/gone", QoS::AtLeastOnce, 1, "x"));
        net.publish(p, message("a/keep", QoS::AtLeastOnce, 2, "k1"));
        assert_eq!(payloads(&net.recv(s)), ["k1"], "{version}");
        net.cut(s);
        net.publish(p, message("a/gone", QoS::AtLeastOnce, 3, "y"));
        net.publish(p, message("a/keep", QoS::AtLeastOnce, 4, "k2"));
        let (s, ack) = net.connect(connect(version, "s", false, 3600));
        assert!(ack.session_present);
        let again = net.recv(s);
        // "k1" was never acknowledged: re-sent first; nothing for "a/gone".
        assert_eq!(payloads(&again), ["k1", "k2"], "{version}");
    }
}

// [MQTT-3.3.1-5] (5.0): a PUBLISH with RETAIN 1 from a client replaces the message retained for
// its topic and is stored (at its QoS) for later subscribers.
#[test]
fn retained_publish_replaces_and_is_stored_v5() {
    let mut net = Net::new();
    let p = net.client(V5, "p", 0);
    for (id, qos, payload) in [
        (1, QoS::ExactlyOnce, "first"),
        (2, QoS::AtLeastOnce, "second"),
    ] {
        let mut m = message("r", qos, id, payload);
        m.retain = true;
        net.publish(p, m);
    }
    assert_eq!(
        retained_for(&mut net, "s", "r"),
        [("r".to_owned(), "second".to_owned(), QoS::AtLeastOnce)]
    );
    assert_eq!(net.broker.stats().retained, 1);
}

// [MQTT-3.1.2-14] (5.0): a Will Message with Will Retain 0 is published as a non-retained
// message: subscribers get it without RETAIN (even with Retain As Published) and nothing is
// retained for a later subscriber.
#[test]
fn will_with_retain_0_is_published_non_retained_v5() {
    let mut net = Net::new();
    let s = net.client(V5, "s", 0);
    let mut subscribe = Subscribe::new(
        pid(1),
        TopicFilter::new("status/#").unwrap(),
        SubscriptionOptions::new(QoS::AtLeastOnce),
    );
    subscribe.subscriptions[0].options.retain_as_published = true;
    net.send(s, &[Packet::Subscribe(subscribe)]);
    net.recv(s);
    let mut c = connect(V5, "dev", true, 0);
    c.will = Some(mqtt_streaming_proto::Will {
        topic: topic("status/dev"),
        payload: Bytes::from_static(b"offline"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    });
    let (conn, _) = net.connect(c);
    net.cut(conn);
    let got = net.recv(s);
    assert!(
        matches!(&got[..], [Packet::Publish(p)] if !p.retain && &p.payload[..] == b"offline"),
        "{got:?}"
    );
    assert!(retained_for(&mut net, "later", "status/#").is_empty());
    assert_eq!(net.broker.stats().retained, 0);
}
