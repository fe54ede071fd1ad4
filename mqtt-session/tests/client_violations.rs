//! Client session: malformed input and packets a server may not send. The session answers with
//! the MQTT 5 DISCONNECT reason code (nothing in 3.1.1), closes, reports exactly one `Closed`,
//! and never panics whatever the bytes.
//!
//! Statement ids name their version (3.1.1 or 5.0) in each test's first comment line.

mod support;

use mqtt_streaming_proto::{Packet, PacketType, QoS, ReasonCode};
use mqtt_streaming_session::{
    ClientConfig, ClientEvent, CloseReason, ConnectionState, Initiator, ProtocolViolation,
};
use support::client::*;

fn malformed_close(events: &[ClientEvent<u32>]) -> mqtt_streaming_proto::DecodeError {
    match closes(events)[..] {
        [(Initiator::Session, CloseReason::Malformed(ref e))] => e.clone(),
        ref other => panic!("expected one Closed(Malformed), got {other:?}"),
    }
}

#[test]
fn v5_malformed_bytes_get_disconnect_0x81_and_one_closed() {
    // [MQTT-4.13.1-1] (5.0): a malformed packet closes the connection, after DISCONNECT 0x81;
    // [MQTT-3.6.1-1] (PUBREL flags), [MQTT-3.3.1-4] (QoS 3), [MQTT-1.5.4-1] (UTF-8),
    // [MQTT-2.1.3-1] (reserved flags) (5.0) are examples.
    let cases: [(&str, &[u8]); 5] = [
        ("PUBREL with flags 0", &[0x60, 0x02, 0x00, 0x01]),
        ("PUBACK with flags 1", &[0x41, 0x02, 0x00, 0x01]),
        ("PUBLISH QoS 3", &[0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01]),
        (
            "PUBLISH topic not UTF-8",
            &[0x30, 0x05, 0x00, 0x02, 0xC3, 0x28, 0x00],
        ),
        ("PUBACK truncated body", &[0x40, 0x01, 0x00]),
    ];
    for (what, bytes) in cases {
        let mut s = connected(V5);
        s.publish(msg("t", QoS::AtLeastOnce, "kept"), 1).unwrap();
        s.sent();
        // A valid PUBACK after the bad packet must not be processed.
        let mut input = bytes.to_vec();
        input.extend_from_slice(&[0x40, 0x02, 0x00, 0x01]);
        s.feed_bytes(&input);
        let events = s.events();
        let error = malformed_close(&events);
        assert!(
            matches!(
                error.reason_code(),
                ReasonCode::MalformedPacket | ReasonCode::ProtocolError
            ),
            "{what}: {error:?}"
        );
        assert_eq!(events.len(), 1, "{what}: nothing else happens: {events:?}");
        let sent = s.sent();
        assert!(
            matches!(&sent[..], [Packet::Disconnect(d)] if d.reason_code == error.reason_code()),
            "{what}: {sent:?}"
        );
        assert_eq!(
            s.session.inflight_len(),
            1,
            "{what}: the PUBACK was not used"
        );
        // [MQTT-3.14.4-1] (5.0): nothing after; a transport close adds no second Closed.
        s.transport_closed();
        s.advance(1_000_000);
        s.assert_quiet();
    }
    // The usual case is exactly 0x81.
    let mut s = connected(V5);
    s.feed_bytes(&[0x60, 0x02, 0x00, 0x01]);
    assert_eq!(
        malformed_close(&s.events()).reason_code(),
        ReasonCode::MalformedPacket
    );
    assert_eq!(briefs(&s.sent()), ["DISCONNECT(0x81)"]);
}

#[test]
fn v311_malformed_bytes_close_without_disconnect() {
    // [MQTT-2.2.2-2], [MQTT-3.6.1-1] (3.1.1): invalid flags close the connection; 3.1.1 has
    // no client DISCONNECT reason to send.
    let mut s = connected(V3);
    s.feed_bytes(&[0x60, 0x02, 0x00, 0x01]);
    malformed_close(&s.events());
    assert!(s.sent().is_empty());
    assert_eq!(s.session.state(), ConnectionState::Disconnected);
    // AUTH does not exist in 3.1.1: a reserved packet type.
    let mut s = connected(V3);
    s.feed_bytes(&[0xF0, 0x00]);
    malformed_close(&s.events());
    assert!(s.sent().is_empty());
}

#[test]
fn v5_packets_a_server_never_sends_are_protocol_errors() {
    // [MQTT-4.13.1-1] (5.0): CONNECT, SUBSCRIBE, UNSUBSCRIBE and PINGREQ only go from client
    // to server; receiving one is a protocol error (DISCONNECT 0x82).
    let mut connect_packet = connect(V5, "x");
    connect_packet.keep_alive = 1;
    let packets = [
        Packet::Connect(Box::new(connect_packet)),
        Packet::Subscribe(mqtt_streaming_proto::Subscribe::new(
            pid(1),
            filter("a"),
            mqtt_streaming_proto::SubscriptionOptions::new(QoS::AtMostOnce),
        )),
        Packet::Unsubscribe(mqtt_streaming_proto::Unsubscribe {
            packet_id: pid(1),
            filters: vec![filter("a")],
            properties: Default::default(),
        }),
        Packet::PingReq,
    ];
    for packet in packets {
        let t = packet.packet_type();
        let mut s = connected(V5);
        s.feed(packet);
        assert_violation(
            &mut s,
            ReasonCode::ProtocolError,
            CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedPacket(t)),
        );
    }
}

#[test]
fn every_close_is_reported_exactly_once() {
    // One Closed per connection, whoever notices first: later handle_closed, handle_timeout or
    // input add nothing.
    let mut s = connected(V5);
    s.feed(Packet::PingReq);
    assert_eq!(closes(&s.events()).len(), 1);
    assert_eq!(briefs(&s.sent()), ["DISCONNECT(0x82)"]);
    s.transport_closed();
    s.transport_closed();
    s.session.handle_timeout(s.now);
    s.feed(Packet::PingResp);
    s.drain();
    s.assert_quiet();
    assert_eq!(s.session.state(), ConnectionState::Disconnected);

    // Transport loss first, then more of everything.
    let mut s = connected(V3);
    s.transport_closed();
    assert_closed(
        &s.events(),
        Initiator::Transport,
        CloseReason::TransportClosed,
    );
    s.transport_closed();
    s.advance(1_000_000);
    s.assert_quiet();
}

#[test]
fn input_split_at_every_byte_gives_the_same_conversation() {
    // The sans-IO contract: a partial packet stays in the buffer until the rest arrives.
    let mut stream = bytes::BytesMut::new();
    for p in [
        connack(false),
        server_publish("a/b", QoS::ExactlyOnce, 3, "payload"),
        pubrel(3),
        server_publish("c", QoS::AtLeastOnce, 4, "x"),
        Packet::PingResp,
    ] {
        p.encode(V5, &mut stream).unwrap();
    }
    let mut s: Script<u32> = Script::new(V5, ClientConfig::default());
    s.connect(connect(V5, "c"));
    s.sent();
    let mut buf = bytes::BytesMut::new();
    for b in stream.iter() {
        buf.extend_from_slice(&[*b]);
        s.session.handle_read(s.now, &mut buf);
        s.drain();
    }
    assert!(buf.is_empty());
    assert_eq!(briefs(&s.sent()), ["PUBREC3", "PUBCOMP3", "PUBACK4"]);
    let events = s.events();
    assert!(matches!(events[0], ClientEvent::Connected(_)));
    assert_eq!(delivered(&events).len(), 2);
    assert_eq!(s.session.state(), ConnectionState::Connected);
}

#[test]
fn arbitrary_bytes_never_panic_and_close_at_most_once() {
    // Never a panic, whatever the server sends; at most one Closed per connection; the
    // session's buffers stay bounded (the decoder refuses oversized packets from the header).
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..3_000 {
        let version = if round % 2 == 0 { V5 } else { V3 };
        let mut s = connected(version);
        s.publish(msg("t", QoS::ExactlyOnce, "m"), 1).unwrap();
        s.subscribe(
            mqtt_streaming_session::SubscribeRequest::new(filter("f"), QoS::AtLeastOnce),
            2,
        )
        .unwrap();
        s.sent();
        let len = (next() % 64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Bias towards plausible first bytes so that the bodies get exercised too.
        if let Some(b) = bytes.first_mut() {
            *b = [
                0x20, 0x30, 0x32, 0x34, 0x40, 0x50, 0x62, 0x70, 0x90, 0xB0, 0xD0, 0xE0, 0xF0,
            ][(next() % 13) as usize];
        }
        s.feed_bytes(&bytes);
        s.transport_closed();
        let events = s.events();
        assert_eq!(closes(&events).len(), 1, "{bytes:02x?}: {events:?}");
        // Every token still comes back or stays owed: nothing is lost or duplicated.
        let returned = events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    ClientEvent::Published { .. }
                        | ClientEvent::Subscribed { .. }
                        | ClientEvent::Abandoned { .. }
                )
            })
            .count();
        assert!(
            returned + s.session.inflight_len() == 2,
            "{bytes:02x?}: {events:?}"
        );
    }
}

#[test]
fn v5_unexpected_acks_from_the_server() {
    // [MQTT-3.2.0-2] (5.0) and [MQTT-4.13.1-1] (5.0): acks for nothing outstanding are
    // protocol errors; the reason goes in the Closed event.
    let mut s = connected(V5);
    s.feed(suback(7, &[ReasonCode::Success]));
    assert_violation(
        &mut s,
        ReasonCode::ProtocolError,
        CloseReason::ProtocolViolation(ProtocolViolation::UnexpectedAck(
            PacketType::SubAck,
            pid(7),
        )),
    );
}
