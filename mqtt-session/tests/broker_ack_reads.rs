//! Reads full of acknowledgements (issue 12): the broker core gives a run of consecutive
//! PUBACKs of one read to the session together (at most 32 at a time) and handles their events
//! after the last, where each PUBLISH is still routed before the next packet is decoded. Every
//! acknowledged flow must end, the window must open by as many messages as were acknowledged,
//! and packets after the run must be handled in order.
//!
//! The broker is driven directly with encoded MQTT 3.1.1 packets.

use bytes::BytesMut;
use mqtt_streaming_proto::{
    Connect, Decoder, MqttString, Packet, PacketId, ProtocolVersion, PubResponse, Publish, QoS,
    QosPid, Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName,
};
use mqtt_streaming_session::broker::{Broker, BrokerConfig, ConnectionId};
use mqtt_streaming_session::Instant;

const V: ProtocolVersion = ProtocolVersion::V3_1_1;
/// The broker's in-flight window per subscriber in these tests.
const WINDOW: u16 = 40;

fn now() -> Instant {
    Instant::from_millis(1)
}

fn encode(packets: impl IntoIterator<Item = Packet>) -> BytesMut {
    let mut buf = BytesMut::new();
    for packet in packets {
        packet.encode(V, &mut buf).unwrap();
    }
    buf
}

fn qos1(topic: &str, id: u16, payload: &str) -> Packet {
    Packet::Publish(Publish::new(
        TopicName::new(topic).unwrap(),
        QosPid::AtLeastOnce(PacketId::new(id).unwrap()),
        payload.as_bytes().to_vec(),
    ))
}

fn puback(id: PacketId) -> Packet {
    Packet::PubAck(PubResponse::new(id))
}

struct Wire {
    broker: Broker,
}

impl Wire {
    fn new() -> Self {
        let mut config = BrokerConfig::default();
        config.server.max_inflight = WINDOW;
        Self {
            broker: Broker::new(config),
        }
    }

    /// Feeds `bytes` to `conn` in one read; returns the packets each connection got.
    fn read(&mut self, conn: ConnectionId, mut bytes: BytesMut) -> Vec<(ConnectionId, Packet)> {
        self.broker.handle_read(now(), conn, &mut bytes);
        assert!(bytes.is_empty(), "the whole read was consumed");
        let mut got = Vec::new();
        let mut out = BytesMut::new();
        while let Some(id) = self.broker.poll_transmit(now(), &mut out) {
            let decoder = Decoder::new(V);
            while let Some(packet) = decoder.decode(&mut out).unwrap() {
                got.push((id, packet));
            }
            out.clear();
        }
        while self.broker.poll_event().is_some() {}
        got
    }

    fn client(&mut self, id: &str, filter: Option<&str>) -> ConnectionId {
        let conn = self.broker.open(now()).unwrap();
        let mut packets = vec![Packet::from(Connect::new(V, MqttString::new(id).unwrap()))];
        if let Some(filter) = filter {
            packets.push(Packet::Subscribe(Subscribe {
                packet_id: PacketId::new(1).unwrap(),
                subscriptions: vec![Subscription {
                    filter: TopicFilter::new(filter).unwrap(),
                    options: SubscriptionOptions::new(QoS::AtLeastOnce),
                }],
                properties: Default::default(),
            }));
        }
        self.read(conn, encode(packets));
        conn
    }
}

/// The identifiers and payloads of the PUBLISHes `conn` got.
fn publishes(got: &[(ConnectionId, Packet)], conn: ConnectionId) -> Vec<(PacketId, String)> {
    got.iter()
        .filter(|(c, _)| *c == conn)
        .filter_map(|(_, p)| match p {
            Packet::Publish(p) => Some((
                p.qos_pid.packet_id().unwrap(),
                String::from_utf8(p.payload.to_vec()).unwrap(),
            )),
            _ => None,
        })
        .collect()
}

fn pubacks(got: &[(ConnectionId, Packet)], conn: ConnectionId) -> Vec<PacketId> {
    got.iter()
        .filter(|(c, _)| *c == conn)
        .filter_map(|(_, p)| match p {
            Packet::PubAck(r) => Some(r.packet_id),
            _ => None,
        })
        .collect()
}

#[test]
fn a_read_of_more_acknowledgements_than_one_batch_ends_every_flow() {
    // A QoS 1 flow ends with the receiver's PUBACK; 40 PUBACKs in one read (more than one
    // batch of 32) must end all 40, so the full window opens again.
    let mut wire = Wire::new();
    let sub = wire.client("sub", Some("t"));
    let publisher = wire.client("pub", None);
    let first = encode((1..=WINDOW).map(|i| qos1("t", i, &format!("a{i}"))));
    let got = wire.read(publisher, first);
    let delivered = publishes(&got, sub);
    assert_eq!(delivered.len(), usize::from(WINDOW), "the window is full");
    assert_eq!(pubacks(&got, publisher).len(), usize::from(WINDOW));

    let acks = encode(delivered.iter().map(|(id, _)| puback(*id)));
    let got = wire.read(sub, acks);
    assert!(publishes(&got, sub).is_empty());

    // Every flow ended: the next 40 all go out at once (one left in flight would hold one
    // back in the queue).
    let second = encode((1..=WINDOW).map(|i| qos1("t", i, &format!("b{i}"))));
    let got = wire.read(publisher, second);
    let delivered = publishes(&got, sub);
    assert_eq!(
        delivered.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(),
        (1..=WINDOW).map(|i| format!("b{i}")).collect::<Vec<_>>()
    );
}

#[test]
fn packets_after_a_run_of_acknowledgements_are_handled_in_order() {
    // Within one read: PUBACKs, then a PUBLISH of the same client, then PUBACKs again. The
    // PUBLISH is routed (and acknowledged) once, between the two runs.
    let mut wire = Wire::new();
    let sub = wire.client("sub", Some("t"));
    let publisher = wire.client("pub", None);
    let got = wire.read(
        publisher,
        encode((1..=WINDOW).map(|i| qos1("t", i, &format!("a{i}")))),
    );
    let delivered = publishes(&got, sub);
    assert_eq!(delivered.len(), usize::from(WINDOW));

    // The subscriber acknowledges half, publishes to its own topic, acknowledges the rest.
    let half = delivered.len() / 2;
    let mut read = encode(delivered[..half].iter().map(|(id, _)| puback(*id)));
    read.extend_from_slice(&encode([qos1("t", 7, "own")]));
    read.extend_from_slice(&encode(delivered[half..].iter().map(|(id, _)| puback(*id))));
    let got = wire.read(sub, read);
    // Its own message came back to it (room was made by the first half), and it got its
    // PUBACK.
    assert_eq!(
        publishes(&got, sub)
            .into_iter()
            .map(|(_, p)| p)
            .collect::<Vec<_>>(),
        ["own"]
    );
    assert_eq!(pubacks(&got, sub), [PacketId::new(7).unwrap()]);

    // All 40 first flows ended: 39 more fit beside "own", still in flight.
    let got = wire.read(
        publisher,
        encode((1..WINDOW).map(|i| qos1("t", i, &format!("b{i}")))),
    );
    assert_eq!(publishes(&got, sub).len(), usize::from(WINDOW) - 1);
}

/// A subscriber whose deliveries filled its transmit buffer (it reads nothing for a while) is
/// still read: its acknowledgements are what frees the buffer. Regression (session 9): the
/// broker stopped reading it at `max_transmit_buffer`, refilling the buffer with deliveries
/// as soon as it read any, so a client that itself stopped reading while its publishes
/// could not be written waited for the broker, and the broker for it, for good. Reading stops
/// only once answers fill the room above the buffer (a quarter of it).
#[test]
fn a_subscriber_whose_deliveries_filled_its_transmit_buffer_is_still_read_for_its_acks() {
    const MAX_TRANSMIT: usize = 4096;
    let mut config = BrokerConfig::default();
    config.server.max_inflight = WINDOW;
    config.server.max_transmit_buffer = MAX_TRANSMIT;
    let mut wire = Wire {
        broker: Broker::new(config),
    };
    let sub = wire.client("sub", Some("t"));
    let publisher = wire.client("pub", None);
    wire.broker.pause_transmit(sub);
    // Twenty deliveries of 500 bytes: the buffer takes them up to its 4096 bytes.
    let payload = "x".repeat(500);
    wire.read(publisher, encode((1..=20).map(|i| qos1("t", i, &payload))));
    assert!(
        wire.broker.wants_read(sub),
        "read while deliveries fill its buffer"
    );
    let mut ack = encode([puback(PacketId::new(1).unwrap())]);
    wire.broker.handle_read(now(), sub, &mut ack);
    assert!(ack.is_empty(), "its PUBACK is read");
    // A client that reads nothing: its PINGREQs are answered until the answers fill the room.
    let mut answered = 0;
    while wire.broker.wants_read(sub) && answered < 10_000 {
        let mut ping = BytesMut::from(&[0xC0u8, 0][..]);
        wire.broker.handle_read(now(), sub, &mut ping);
        assert!(ping.is_empty());
        answered += 1;
    }
    // Each PINGRESP is 2 bytes: at most a quarter of the buffer's worth of them, and more
    // than none (the deliveries left room below that).
    assert!(
        (1..=MAX_TRANSMIT / 4 / 2).contains(&answered),
        "{answered} PINGREQs read"
    );
    // Once it reads again, so does the broker.
    wire.broker.resume_transmit(sub);
    let mut out = BytesMut::new();
    while wire.broker.poll_transmit(now(), &mut out).is_some() {
        out.clear();
    }
    assert!(wire.broker.wants_read(sub));
}
