//! Session benchmarks: the in-flight table under QoS 1 and QoS 2 traffic.
//!
//! A connected client (and a server session) keeps `depth` QoS 1 publishes in flight; each
//! iteration publishes one more message and feeds the PUBACK of the oldest one, so the table
//! sees one insert and one removal per iteration at a steady size. The QoS 2 case goes
//! through PUBREC, PUBREL and PUBCOMP. The figures cover the command, the encoding, the decode
//! of the acknowledgement and the event.
#![allow(missing_docs)]

use std::collections::VecDeque;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mqtt_streaming_proto::{
    ConnAck, ConnAckProperties, Connect, MqttString, Packet, PacketId, ProtocolVersion,
    PubResponse, QoS, ReasonCode, TopicName,
};
use mqtt_streaming_session::{
    ClientConfig, ClientEvent, ClientSession, Instant, Message, ServerConfig, ServerEvent,
    ServerSession,
};

const V: ProtocolVersion = ProtocolVersion::V5;

fn now() -> Instant {
    Instant::from_millis(1)
}

fn client(depth: u16) -> ClientSession<u64> {
    let config = ClientConfig::default().with_max_inflight(depth + 1);
    let mut client = ClientSession::new(config);
    client
        .connect(now(), Connect::new(V, MqttString::new("bench").unwrap()))
        .unwrap();
    let mut wire = BytesMut::new();
    Packet::from(ConnAck::new(ReasonCode::Success))
        .encode(V, &mut wire)
        .unwrap();
    client.handle_read(now(), &mut wire);
    while client.poll_transmit(now(), &mut BytesMut::new()) > 0 {}
    while client.poll_event().is_some() {}
    client
}

fn server(depth: u16) -> ServerSession<u64> {
    let config = ServerConfig::default().with_max_inflight(depth + 1);
    let mut server = ServerSession::new(config, now());
    let mut wire = BytesMut::new();
    Packet::from(Connect::new(V, MqttString::new("bench").unwrap()))
        .encode(V, &mut wire)
        .unwrap();
    server.handle_read(now(), &mut wire);
    while server.poll_event().is_some() {}
    server
        .accept(now(), ConnAckProperties::default(), None)
        .unwrap();
    while server.poll_transmit(now(), &mut BytesMut::new()) > 0 {}
    server
}

fn ack(packet: fn(PubResponse) -> Packet, id: PacketId) -> BytesMut {
    let mut wire = BytesMut::new();
    packet(PubResponse::new(id)).encode(V, &mut wire).unwrap();
    wire
}

fn message(qos: QoS) -> Message {
    Message::new(
        TopicName::new("bench/inflight").unwrap(),
        qos,
        &[0u8; 64][..],
    )
}

/// Fills the window with `depth` messages; returns their packet ids, oldest first.
fn fill<F: FnMut(Message, u64)>(depth: u16, qos: QoS, mut publish: F) -> VecDeque<PacketId> {
    for token in 0..u64::from(depth) {
        publish(message(qos), token);
    }
    (1..=depth).map(|id| PacketId::new(id).unwrap()).collect()
}

fn qos1(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_qos1_publish_puback");
    group.throughput(Throughput::Elements(1));
    for depth in [16u16, 1024] {
        group.bench_with_input(BenchmarkId::new("client", depth), &depth, |b, &depth| {
            let mut session = client(depth);
            let mut ids = fill(depth, QoS::AtLeastOnce, |m, t| {
                session.publish(now(), m, t).unwrap()
            });
            let mut out = BytesMut::new();
            let m = message(QoS::AtLeastOnce);
            let mut next = u64::from(depth);
            b.iter(|| {
                session.publish(now(), m.clone(), next).unwrap();
                next += 1;
                let id = ids.pop_front().unwrap();
                ids.push_back(id.wrapping_add_for_bench(depth));
                let mut wire = ack(Packet::PubAck, id);
                session.handle_read(now(), &mut wire);
                while session.poll_transmit(now(), &mut out) > 0 {}
                out.clear();
                while let Some(event) = session.poll_event() {
                    assert!(matches!(event, ClientEvent::Published { .. }));
                }
            });
        });
        group.bench_with_input(BenchmarkId::new("server", depth), &depth, |b, &depth| {
            let mut session = server(depth);
            let mut ids = fill(depth, QoS::AtLeastOnce, |m, t| {
                session.publish(now(), m, t).unwrap()
            });
            let mut out = BytesMut::new();
            let m = message(QoS::AtLeastOnce);
            let mut next = u64::from(depth);
            b.iter(|| {
                session.publish(now(), m.clone(), next).unwrap();
                next += 1;
                let id = ids.pop_front().unwrap();
                ids.push_back(id.wrapping_add_for_bench(depth));
                let mut wire = ack(Packet::PubAck, id);
                session.handle_read(now(), &mut wire);
                while session.poll_transmit(now(), &mut out) > 0 {}
                out.clear();
                while let Some(event) = session.poll_event() {
                    assert!(matches!(event, ServerEvent::Published { .. }));
                }
            });
        });
    }
    group.finish();
}

fn qos2(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_qos2_publish_pubrec_pubcomp");
    group.throughput(Throughput::Elements(1));
    let depth = 1024u16;
    group.bench_with_input(BenchmarkId::new("client", depth), &depth, |b, &depth| {
        let mut session = client(depth);
        let mut ids = fill(depth, QoS::ExactlyOnce, |m, t| {
            session.publish(now(), m, t).unwrap()
        });
        let mut out = BytesMut::new();
        let m = message(QoS::ExactlyOnce);
        let mut next = u64::from(depth);
        b.iter(|| {
            session.publish(now(), m.clone(), next).unwrap();
            next += 1;
            let id = ids.pop_front().unwrap();
            ids.push_back(id.wrapping_add_for_bench(depth));
            let mut wire = ack(Packet::PubRec, id);
            wire.extend_from_slice(&ack(Packet::PubComp, id));
            session.handle_read(now(), &mut wire);
            while session.poll_transmit(now(), &mut out) > 0 {}
            out.clear();
            while let Some(event) = session.poll_event() {
                assert!(matches!(event, ClientEvent::Published { .. }));
            }
        });
    });
    group.finish();
}

/// The id the session allocates `depth` publishes after `id` (ids wrap from 65,535 to 1).
trait WrappingAdd {
    fn wrapping_add_for_bench(self, depth: u16) -> PacketId;
}

impl WrappingAdd for PacketId {
    fn wrapping_add_for_bench(self, depth: u16) -> PacketId {
        let next = (u32::from(self.get()) - 1 + u32::from(depth)) % 65_535 + 1;
        PacketId::new(next as u16).unwrap()
    }
}

criterion_group!(benches, qos1, qos2);
criterion_main!(benches);
