//! The drivers against a scripted peer that speaks raw bytes over `tokio::io::duplex`, with
//! tokio's clock paused: keep-alive timing as seen on the wire.

mod support;

use std::time::Duration;

use bytes::BytesMut;
use mqtt_streaming_proto::{Decoder, Packet, PacketType, ProtocolVersion};
use mqtt_streaming_session::{CloseReason, Initiator};
use mqtt_streaming_tokio::{
    connect, serve_connection, ClientOptions, ConnectionEvent, Event, ServerOptions,
};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// Reads the next whole packet the driver wrote; `None` at end of stream.
async fn read_packet(
    io: &mut DuplexStream,
    buf: &mut BytesMut,
    decoder: &Decoder,
) -> Option<Packet> {
    loop {
        if let Some(packet) = decoder.decode(buf).unwrap() {
            return Some(packet);
        }
        if io.read_buf(buf).await.unwrap() == 0 {
            return None;
        }
    }
}

/// A server that answers CONNACK and then never answers PINGREQ: the client sends its
/// PINGREQ after the keep alive with nothing else to send ([MQTT-3.1.2-23] 3.1.1), and when
/// no PINGRESP comes it closes the connection itself.
#[tokio::test(start_paused = true)]
async fn client_pings_then_gives_up_on_a_silent_server() {
    let (client_io, mut peer) = tokio::io::duplex(4096);
    let decoder = Decoder::new(ProtocolVersion::V3_1_1);
    let mut buf = BytesMut::new();
    let mut opts = ClientOptions::new(connect_packet(ProtocolVersion::V3_1_1, "pinger"));
    opts.connect.keep_alive = 4;
    let peer_task = tokio::spawn(async move {
        let connect = read_packet(&mut peer, &mut buf, &decoder).await.unwrap();
        assert_eq!(connect.packet_type(), PacketType::Connect);
        peer.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap();
        let connected_at = tokio::time::Instant::now();
        let ping = read_packet(&mut peer, &mut buf, &decoder).await.unwrap();
        assert_eq!(ping.packet_type(), PacketType::PingReq);
        let waited = connected_at.elapsed();
        // Then silence: the client closes the transport.
        let end = read_packet(&mut peer, &mut buf, &decoder).await;
        (waited, end.map(|p| p.packet_type()), connected_at.elapsed())
    });
    let (client, mut events) = connect(client_io, opts).await.unwrap();
    let (initiator, reason) = next_closed(&mut events).await;
    assert_eq!(initiator, Initiator::Session);
    assert_eq!(reason, CloseReason::KeepAliveTimeout);
    let (ping_after, after_ping, closed_after) = peer_task.await.unwrap();
    assert_eq!(
        ping_after,
        Duration::from_secs(4),
        "PINGREQ one keep alive after CONNECT"
    );
    assert_eq!(
        after_ping, None,
        "nothing but the close after the PINGREQ (3.1.1: no DISCONNECT)"
    );
    assert!(closed_after > ping_after && closed_after <= Duration::from_secs(10));
    assert!(client.is_closed());
}

/// The server flow closes a client that stays silent for one and a half keep-alive periods
/// ([MQTT-3.1.2-24] 3.1.1, [MQTT-3.1.2-22] 5.0), and answers PINGREQ with PINGRESP before that
/// ([MQTT-3.12.4-1]).
#[tokio::test(start_paused = true)]
async fn server_closes_a_silent_client_after_one_and_a_half_keep_alives() {
    let (server_io, mut peer) = tokio::io::duplex(4096);
    let mut conn = serve_connection(server_io, ServerOptions::default());
    let mut connect = connect_packet(ProtocolVersion::V3_1_1, "silent");
    connect.keep_alive = 10;
    let mut out = BytesMut::new();
    Packet::from(connect)
        .encode(ProtocolVersion::V3_1_1, &mut out)
        .unwrap();
    out.extend_from_slice(&[0xC0, 0x00]); // PINGREQ, held until the CONNECT is answered
    peer.write_all(&out).await.unwrap();
    let Some(ConnectionEvent::Connect(_)) = conn.events().recv().await else {
        panic!("expected Connect");
    };
    conn.accept(Default::default(), None).await.unwrap();
    let accepted_at = tokio::time::Instant::now();
    let decoder = Decoder::new(ProtocolVersion::V3_1_1);
    let mut buf = BytesMut::new();
    let connack = read_packet(&mut peer, &mut buf, &decoder).await.unwrap();
    assert_eq!(connack.packet_type(), PacketType::ConnAck);
    let pingresp = read_packet(&mut peer, &mut buf, &decoder).await.unwrap();
    assert_eq!(pingresp.packet_type(), PacketType::PingResp);
    let closed = loop {
        match conn.events().recv().await {
            Some(ConnectionEvent::Closed {
                initiator, reason, ..
            }) => break (initiator, reason),
            Some(_) => continue,
            None => panic!("no Closed event"),
        }
    };
    assert_eq!(closed, (Initiator::Session, CloseReason::KeepAliveTimeout));
    assert_eq!(accepted_at.elapsed(), Duration::from_secs(15));
    assert_eq!(
        read_packet(&mut peer, &mut buf, &decoder)
            .await
            .map(|p| p.packet_type()),
        None
    );
}

/// A slow application: with an event channel of 1 and 50 messages arriving while nobody reads,
/// the driver holds back (stops reading) instead of dropping or buffering without bound, and
/// every message arrives, in order, once the application reads.
#[tokio::test(start_paused = true)]
async fn unread_events_hold_the_driver_back_without_loss() {
    let mut opts = ClientOptions::new(connect_packet(ProtocolVersion::V5, "slow"));
    opts.event_capacity = 1;
    let (client, mut events, router) =
        duplex_pair(opts, ServerOptions::default(), Behaviour::default()).await;
    for i in 0..50u32 {
        let m = mqtt_streaming_session::Message::new(
            topic("slow"),
            mqtt_streaming_proto::QoS::AtLeastOnce,
            i.to_be_bytes().to_vec(),
        );
        // Don't wait for the client's ack: it cannot come before the client reads.
        drop(router.handle.begin_publish(m).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(matches!(events.recv().await, Some(Event::Connected(_))));
    for i in 0..50u32 {
        let (publish, _) = next_message(&mut events).await;
        assert_eq!(&publish.payload[..], i.to_be_bytes());
    }
    // All were acknowledged once read.
    let outcome = router
        .handle
        .publish(message(
            "slow",
            mqtt_streaming_proto::QoS::AtLeastOnce,
            "last",
        ))
        .await
        .unwrap();
    assert!(outcome.is_success());
    client.disconnect().await.unwrap();
}

/// Reads `count` PINGRESPs, each within 5 seconds.
async fn expect_pingresps(
    peer: &mut DuplexStream,
    buf: &mut BytesMut,
    decoder: &Decoder,
    count: usize,
) {
    for n in 0..count {
        let packet = tokio::time::timeout(Duration::from_secs(5), read_packet(peer, buf, decoder))
            .await
            .unwrap_or_else(|_| panic!("PINGRESP {n} never came: input was left unread"))
            .unwrap();
        assert_eq!(packet.packet_type(), PacketType::PingResp, "packet {n}");
    }
}

/// The driver reads only while the session wants input (`wants_read`), and hands it what it
/// kept once it wants more: a client that sends its CONNECT and 40 PINGREQs in one write, more
/// than the session holds before the application answers, gets its CONNACK and then all 40
/// PINGRESPs, in order, once the server accepts ([MQTT-3.12.4-1]).
#[tokio::test(start_paused = true)]
async fn input_beyond_what_the_session_holds_is_read_after_the_answer() {
    let (server_io, mut peer) = tokio::io::duplex(64 * 1024);
    let mut conn = serve_connection(server_io, ServerOptions::default());
    let mut out = BytesMut::new();
    Packet::from(connect_packet(ProtocolVersion::V3_1_1, "eager"))
        .encode(ProtocolVersion::V3_1_1, &mut out)
        .unwrap();
    for _ in 0..40 {
        out.extend_from_slice(&[0xC0, 0x00]); // PINGREQ
    }
    peer.write_all(&out).await.unwrap();
    let Some(ConnectionEvent::Connect(_)) = conn.events().recv().await else {
        panic!("expected Connect");
    };
    // The application takes its time: nothing is answered before the CONNACK.
    tokio::time::sleep(Duration::from_secs(1)).await;
    conn.accept(Default::default(), None).await.unwrap();
    let decoder = Decoder::new(ProtocolVersion::V3_1_1);
    let mut buf = BytesMut::new();
    let connack = read_packet(&mut peer, &mut buf, &decoder).await.unwrap();
    assert_eq!(connack.packet_type(), PacketType::ConnAck);
    expect_pingresps(&mut peer, &mut buf, &decoder, 40).await;
}

/// The same when the session stops for its own transmit buffer: with room for only 16 bytes of
/// answers (eight PINGRESPs), a burst of 40 PINGREQs is answered in full, the driver handing
/// the session the rest of what it read each time its buffer was drained ([MQTT-3.12.4-1]).
#[tokio::test(start_paused = true)]
async fn input_beyond_a_full_transmit_buffer_is_read_once_drained() {
    let (server_io, mut peer) = tokio::io::duplex(64 * 1024);
    let config = mqtt_streaming_session::ServerConfig::default().with_max_transmit_buffer(16);
    let mut conn = serve_connection(server_io, ServerOptions::from(config));
    let mut out = BytesMut::new();
    Packet::from(connect_packet(ProtocolVersion::V3_1_1, "burst"))
        .encode(ProtocolVersion::V3_1_1, &mut out)
        .unwrap();
    peer.write_all(&out).await.unwrap();
    let Some(ConnectionEvent::Connect(_)) = conn.events().recv().await else {
        panic!("expected Connect");
    };
    conn.accept(Default::default(), None).await.unwrap();
    let decoder = Decoder::new(ProtocolVersion::V3_1_1);
    let mut buf = BytesMut::new();
    let connack = read_packet(&mut peer, &mut buf, &decoder).await.unwrap();
    assert_eq!(connack.packet_type(), PacketType::ConnAck);
    peer.write_all(&[0xC0, 0x00].repeat(40)).await.unwrap();
    expect_pingresps(&mut peer, &mut buf, &decoder, 40).await;
}
