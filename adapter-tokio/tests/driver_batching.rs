//! The client's driver writes once per wake-up: input and commands that are ready together
//! are all taken before the answer goes out, in one write (fewer syscalls per message for a
//! busy publisher), and a lone command is written at once.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use mqtt_streaming_proto::{Decoder, Packet, PacketType, ProtocolVersion, QoS};
use mqtt_streaming_tokio::{connect, ClientOptions};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

async fn read_packet(io: &mut DuplexStream, buf: &mut BytesMut, decoder: &Decoder) -> Packet {
    loop {
        if let Some(packet) = decoder.decode(buf).unwrap() {
            return packet;
        }
        assert_ne!(io.read_buf(buf).await.unwrap(), 0, "the client closed");
    }
}

/// A PUBREC from the peer and a new QoS 2 publish from the application are ready at the same
/// wake-up of the driver: the PUBREL and the PUBLISH leave in one write, not one each.
#[tokio::test]
async fn input_and_commands_ready_together_leave_in_one_write() {
    let (client_io, mut peer) = tokio::io::duplex(64 * 1024);
    let writes = Arc::new(AtomicUsize::new(0));
    let io = CountingIo {
        inner: client_io,
        writes: writes.clone(),
    };
    let decoder = Decoder::new(ProtocolVersion::V3_1_1);
    let mut buf = BytesMut::new();
    let opts = ClientOptions::new(connect_packet(ProtocolVersion::V3_1_1, "batcher"));
    let peer_side = async {
        let connect = read_packet(&mut peer, &mut buf, &decoder).await;
        assert_eq!(connect.packet_type(), PacketType::Connect);
        peer.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap();
    };
    let (connected, ()) = tokio::join!(connect(io, opts), peer_side);
    let (client, _events) = connected.unwrap();

    // A lone publish is written at once, in one write.
    let before = writes.load(Ordering::SeqCst);
    let first = client
        .begin_publish(message("t", QoS::ExactlyOnce, "a"))
        .await
        .unwrap();
    let Packet::Publish(publish) = read_packet(&mut peer, &mut buf, &decoder).await else {
        panic!("expected the PUBLISH");
    };
    assert_eq!(writes.load(Ordering::SeqCst), before + 1);
    let id = publish
        .qos_pid
        .packet_id()
        .expect("QoS 2 has a packet id")
        .get();

    // The PUBREC arrives and the next publish is handed over before the driver runs again
    // (this runtime has one thread: the driver runs only when this task waits).
    let before = writes.load(Ordering::SeqCst);
    let [hi, lo] = id.to_be_bytes();
    peer.write_all(&[0x50, 0x02, hi, lo]).await.unwrap();
    let _second = client
        .begin_publish(message("t", QoS::ExactlyOnce, "b"))
        .await
        .unwrap();
    let mut kinds = Vec::new();
    for _ in 0..2 {
        kinds.push(
            read_packet(&mut peer, &mut buf, &decoder)
                .await
                .packet_type(),
        );
    }
    kinds.sort_by_key(|kind| *kind as u8);
    assert_eq!(kinds, [PacketType::Publish, PacketType::PubRel]);
    assert_eq!(
        writes.load(Ordering::SeqCst),
        before + 1,
        "the PUBREL and the PUBLISH should leave in one write"
    );
    drop(first);
}
