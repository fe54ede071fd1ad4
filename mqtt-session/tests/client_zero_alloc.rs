//! Steady-state heap allocations of the client session, counted by a global allocator.
//!
//! Claim (issue 3): once warmed up, publishing QoS 0 and receiving QoS 0 allocate nothing
//! beyond the caller's buffers. The session encodes into its transmit buffer, hands it to
//! the caller by swapping buffers, decodes inbound PUBLISHes as slices of the caller's read
//! buffer, and reuses its event queue; none of that needs the allocator once capacities have
//! grown to the working size.
//!
//! Everything is measured from one test so that no other test thread allocates meanwhile.

use std::alloc::System;

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    Connect, MqttString, Packet, ProtocolVersion, Publish, QoS, QosPid, TopicName,
};
use mqtt_streaming_session::{ClientConfig, ClientEvent, ClientSession, Instant, Message};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A connected client session and the encoded bytes of `n` inbound QoS 0 PUBLISHes.
fn connected(version: ProtocolVersion) -> ClientSession<u64> {
    let mut client = ClientSession::new(ClientConfig::default());
    let now = Instant::from_millis(0);
    client
        .connect(
            now,
            Connect::new(version, MqttString::new("alloc").unwrap()),
        )
        .unwrap();
    let mut out = BytesMut::new();
    let _ = client.poll_transmit(now, &mut out);
    let mut connack = BytesMut::new();
    let ack = mqtt_streaming_proto::ConnAck::new(mqtt_streaming_proto::ReasonCode::Success);
    Packet::from(ack).encode(version, &mut connack).unwrap();
    client.handle_read(now, &mut connack);
    while client.poll_event().is_some() {}
    client
}

/// One round: publish `batch` QoS 0 messages, drain the transmit buffer; feed `batch`
/// inbound QoS 0 PUBLISHes, drain the events.
fn round(
    client: &mut ClientSession<u64>,
    message: &Message,
    inbound: &Bytes,
    read: &mut BytesMut,
    out: &mut BytesMut,
    batch: usize,
) -> usize {
    let now = Instant::from_millis(1);
    for token in 0..batch as u64 {
        client.publish(now, message.clone(), token).unwrap();
    }
    while client.poll_transmit(now, out) > 0 {}
    let sent = out.len();
    out.clear();
    read.extend_from_slice(inbound);
    client.handle_read(now, read);
    let mut received = 0;
    while let Some(event) = client.poll_event() {
        match event {
            ClientEvent::Message { publish, .. } => {
                assert_eq!(&publish.payload[..], b"0123456789abcdef");
                received += 1;
            }
            ClientEvent::Published { .. } => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(received, batch);
    sent
}

#[test]
fn steady_state_qos0_publish_and_receive_allocate_nothing() {
    // The counter sees allocations at all (a zero below is not a broken instrument).
    let probe = Region::new(GLOBAL);
    let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(10));
    drop(v);
    assert!(probe.change().allocations >= 1);

    const BATCH: usize = 64;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut client = connected(version);
        let topic = TopicName::new("sensors/kitchen/temp").unwrap();
        let payload = Bytes::from_static(b"0123456789abcdef");
        let message = Message::new(topic.clone(), QoS::AtMostOnce, payload.clone());
        let mut inbound = BytesMut::new();
        for _ in 0..BATCH {
            Packet::Publish(Publish::new(
                topic.clone(),
                QosPid::AtMostOnce,
                payload.clone(),
            ))
            .encode(version, &mut inbound)
            .unwrap();
        }
        let inbound = inbound.freeze();
        let mut read = BytesMut::with_capacity(inbound.len() * 2);
        let mut out = BytesMut::with_capacity(inbound.len() * 2);

        // Warm up: queues and buffers grow to their working size.
        for _ in 0..4 {
            round(&mut client, &message, &inbound, &mut read, &mut out, BATCH);
        }

        // The counters are process-wide, and the test harness's own threads may allocate now
        // and then while we measure. Measure three windows and keep the quietest: a session
        // that allocated per message would show thousands in every window.
        let mut fewest = usize::MAX;
        for _ in 0..3 {
            let region = Region::new(GLOBAL);
            let mut sent = 0;
            for _ in 0..100 {
                sent += round(&mut client, &message, &inbound, &mut read, &mut out, BATCH);
            }
            let stats = region.change();
            assert!(sent > 0);
            fewest = fewest.min(stats.allocations + stats.reallocations);
        }
        assert_eq!(
            fewest, 0,
            "{version}: {fewest} allocations or reallocations in the quietest window of 6,400 QoS 0 messages each way"
        );
    }
}
