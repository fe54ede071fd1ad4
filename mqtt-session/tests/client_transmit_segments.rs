//! Client session: `poll_transmit_buf` hands large payloads over as segments of their own
//! (not copied), and the bytes, read in order, are exactly those of `poll_transmit`.

mod support;

use bytes::{Buf, Bytes, BytesMut};
use mqtt_streaming_proto::{Packet, PacketId, ProtocolVersion, QoS, QosPid};
use mqtt_streaming_session::{ClientSession, Instant, Message, TransmitBuf, SEGMENT_FROM};
use support::client::*;

/// A payload of `len` bytes whose bytes tell where they are (so that a reordering or a
/// misplaced segment shows).
fn payload(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

/// The messages of the test, small and large mixed, at QoS 0, 1 and 2.
fn mixed() -> Vec<Message> {
    let sizes = [
        (QoS::AtMostOnce, 10),
        (QoS::AtMostOnce, SEGMENT_FROM),
        (QoS::AtLeastOnce, 4096),
        (QoS::AtMostOnce, SEGMENT_FROM - 1),
        (QoS::ExactlyOnce, 70_000),
        (QoS::AtLeastOnce, 3),
        (QoS::AtMostOnce, 5000),
        (QoS::AtMostOnce, 0),
    ];
    sizes
        .iter()
        .enumerate()
        .map(|(i, &(qos, len))| Message::new(topic("a/b"), qos, payload(len, i as u8)))
        .collect()
}

fn connected_session(version: ProtocolVersion) -> ClientSession<u32> {
    // The harness connects the session and answers with a CONNACK; the session is then
    // taken out of it so that the test drains it itself.
    let s = connected(version);
    s.session
}

/// Every byte the session transmits for `messages`, drained one way or the other.
/// A connected session with `messages` published (tokens 0, 1, 2...), nothing drained yet.
fn publishing_session(version: ProtocolVersion, messages: &[Message]) -> ClientSession<u32> {
    let mut session = connected_session(version);
    for (i, message) in messages.iter().enumerate() {
        session
            .publish(Instant::ZERO, message.clone(), i as u32)
            .unwrap();
    }
    session
}

fn transmit(version: ProtocolVersion, messages: &[Message], segmented: bool) -> Vec<u8> {
    let mut session = publishing_session(version, messages);
    let now = Instant::ZERO;
    if segmented {
        let mut buf = TransmitBuf::new();
        while session.poll_transmit_buf(now, &mut buf) > 0 {}
        buf.chunks().flatten().copied().collect()
    } else {
        let mut buf = BytesMut::new();
        while session.poll_transmit(now, &mut buf) > 0 {}
        buf.to_vec()
    }
}

#[test]
fn large_publishes_go_out_byte_identical_to_the_single_buffer_encoding() {
    // The segmented output, read in order, is the single-buffer one: same packets, same
    // order (QoS 0, 1 and 2, small and large mixed), and it decodes to the messages sent.
    for version in [V3, V5] {
        let messages = mixed();
        let flat = transmit(version, &messages, false);
        let segmented = transmit(version, &messages, true);
        assert_eq!(segmented, flat, "{version:?}");
        // And what it carries is each message in order, with its payload intact.
        let mut wire = BytesMut::from(&segmented[..]);
        let decoder = mqtt_streaming_proto::Decoder::new(version).with_max_packet_size(1 << 20);
        let mut decoded = Vec::new();
        while let Some(packet) = decoder.decode(&mut wire).unwrap() {
            match packet {
                Packet::Publish(p) => decoded.push(p),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(wire.is_empty());
        assert_eq!(decoded.len(), messages.len());
        for (p, m) in decoded.iter().zip(&messages) {
            assert_eq!(p.qos_pid.qos(), m.qos);
            assert_eq!(p.payload, m.payload);
        }
    }
}

#[test]
fn large_payloads_are_referenced_and_small_ones_copied() {
    let messages = mixed();
    let mut session = publishing_session(V5, &messages);
    let now = Instant::ZERO;
    let mut buf = TransmitBuf::new();
    while session.poll_transmit_buf(now, &mut buf) > 0 {}
    let chunks: Vec<&[u8]> = buf.chunks().collect();
    for m in &messages {
        let referenced = chunks
            .iter()
            .any(|c| c.as_ptr() == m.payload.as_ptr() && !c.is_empty());
        assert_eq!(
            referenced,
            m.payload.len() >= SEGMENT_FROM,
            "payload of {} bytes",
            m.payload.len()
        );
    }
    // Headers and small packets between them are runs of their own: 4 large payloads, each
    // after a run that ends with its header, then the last run.
    assert_eq!(buf.segment_count(), 9);
}

#[test]
fn short_writes_resume_where_they_stopped() {
    // A transport that takes a few bytes at a time (1, 2, 3... bytes, resuming mid-header
    // and mid-payload) receives exactly the single-buffer bytes.
    let messages = mixed();
    let flat = transmit(V3, &messages, false);
    let mut session = publishing_session(V3, &messages);
    let now = Instant::ZERO;
    let mut buf = TransmitBuf::new();
    while session.poll_transmit_buf(now, &mut buf) > 0 {}
    let mut received = Vec::new();
    let mut take = 1;
    while buf.has_remaining() {
        // A vectored write of `take` bytes: the first `take` bytes of the chunks, in order.
        let written: Vec<u8> = buf.chunks().flatten().copied().take(take).collect();
        received.extend_from_slice(&written);
        buf.advance(written.len());
        take = take % 4099 + 7;
    }
    assert_eq!(received, flat);
}

#[test]
fn output_appended_behind_an_unwritten_one_keeps_order() {
    // A driver whose last write was short drains the session into its buffer again: what it
    // writes is the packets in the order they were sent.
    let messages = mixed();
    let flat = transmit(V5, &messages, false);
    let mut session = connected_session(V5);
    let now = Instant::ZERO;
    let mut out = TransmitBuf::new();
    let mut written = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        session.publish(now, message.clone(), i as u32).unwrap();
        while session.poll_transmit_buf(now, &mut out) > 0 {}
        // Write a little, leaving the rest for after the next publish.
        let n = out.chunk().len().min(5);
        written.extend_from_slice(&out.chunk()[..n]);
        out.advance(n);
    }
    written.extend(out.chunks().flatten().copied());
    assert_eq!(written, flat);
}

#[test]
fn the_copying_drains_give_the_same_bytes_from_a_segmented_transmit_buffer() {
    // poll_transmit_swap (a driver over a transport that does not gather) copies the
    // segments into one contiguous buffer.
    let messages = mixed();
    let flat = transmit(V3, &messages, false);
    let mut session = publishing_session(V3, &messages);
    let now = Instant::ZERO;
    let mut buf = BytesMut::new();
    while session.poll_transmit_swap(now, &mut buf) > 0 {}
    assert_eq!(&buf[..], &flat[..]);
}

#[test]
fn a_large_qos1_payload_sent_as_a_segment_is_kept_for_the_resend() {
    // [MQTT-4.4.0-1] (3.1.1 and 5.0): an unacknowledged PUBLISH is sent again on a resumed
    // session, with its payload: the segment handed to the transport was a reference, so the
    // session still holds the payload (only a QoS 0 payload is moved out).
    for version in [V3, V5] {
        let mut s = connected(version);
        let big = payload(4096, 9);
        // Straight to the session (the harness's own drain would copy).
        s.session
            .publish(
                Instant::ZERO,
                Message::new(topic("t"), QoS::AtLeastOnce, big.clone()),
                1,
            )
            .unwrap();
        let mut buf = TransmitBuf::new();
        while s.session.poll_transmit_buf(Instant::ZERO, &mut buf) > 0 {}
        assert!(buf.chunks().any(|c| c.as_ptr() == big.as_ptr()));
        drop(buf);
        s.events();
        s.transport_closed();
        s.events();
        let mut again = resume(version, "c");
        again.clean_start = false;
        s.connect(again);
        s.sent();
        let mut ack = mqtt_streaming_proto::ConnAck::new(mqtt_streaming_proto::ReasonCode::Success);
        ack.session_present = true;
        s.feed(Packet::ConnAck(Box::new(ack)));
        let sent = s.sent();
        let p = publishes(&sent);
        assert_eq!(p.len(), 1, "{sent:?}");
        assert!(p[0].dup);
        assert_eq!(p[0].qos_pid, QosPid::AtLeastOnce(PacketId::new(1).unwrap()));
        assert_eq!(p[0].payload, big);
    }
}
