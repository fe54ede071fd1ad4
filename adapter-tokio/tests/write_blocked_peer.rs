//! A server that does not read while its own write to the client is blocked (it writes all it
//! has, then reads, as a simple broker or one with a blocking write per connection does): the
//! client keeps reading what the server sends while its own publishes wait to be written, or
//! each would wait for the other. Over loopback TCP with small socket buffers, so that both
//! directions fill quickly.

mod support;

use std::time::Duration;

use bytes::BytesMut;
use mqtt_streaming_proto::{Decoder, Packet, PacketId, ProtocolVersion, Publish, QoS, QosPid};
use mqtt_streaming_session::Message;
use mqtt_streaming_tokio::engine::connect_transport_on;
use mqtt_streaming_tokio::{Client, ClientEvents, ClientOptions, Event, TokioIo, TokioRuntime};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

const BUFFER: u32 = 16 * 1024;
const V: ProtocolVersion = ProtocolVersion::V3_1_1;

/// A connected pair of loopback TCP sockets with small send and receive buffers.
async fn small_buffer_pair() -> (TcpStream, TcpStream) {
    let small = || {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(BUFFER).unwrap();
        socket.set_recv_buffer_size(BUFFER).unwrap();
        socket
    };
    let listening = small();
    listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listening.local_addr().unwrap();
    let listener = listening.listen(1).unwrap();
    let (client, accepted) = tokio::join!(small().connect(addr), listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

/// A client `id` connected (MQTT 3.1.1) over [`small_buffer_pair`], and the server's socket,
/// past the CONNACK.
async fn connected(id: &str) -> (Client, ClientEvents, TcpStream) {
    let (client_io, mut server_io) = small_buffer_pair().await;
    client_io.set_nodelay(true).unwrap();
    let options = ClientOptions::new(connect_packet(V, id));
    let handshake = async {
        let mut buf = BytesMut::new();
        let decoder = Decoder::new(V);
        loop {
            if let Some(Packet::Connect(_)) = decoder.decode(&mut buf).unwrap() {
                break;
            }
            server_io.read_buf(&mut buf).await.unwrap();
        }
        server_io
            .write_all(&[0x20, 0x02, 0x00, 0x00])
            .await
            .unwrap();
    };
    let (connected, ()) = tokio::join!(
        connect_transport_on(TokioRuntime, TokioIo(client_io), options),
        handshake
    );
    let (client, events) = connected.unwrap();
    (client, events, server_io)
}

/// `count` PUBLISH packets of `size` payload bytes each, encoded, at `qos` (ids from 1).
fn deliveries(count: u16, size: usize, qos: QoS) -> BytesMut {
    let mut bytes = BytesMut::new();
    for id in 1..=count {
        let qos_pid = match qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            _ => QosPid::AtLeastOnce(PacketId::new(id).unwrap()),
        };
        let publish = Publish::new(topic("down"), qos_pid, vec![0x5A; size]);
        Packet::Publish(publish).encode(V, &mut bytes).unwrap();
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reads_while_its_publishes_wait_for_a_server_blocked_on_its_write() {
    let (client, mut events, mut server_io) = connected("blocked").await;

    // The application reads its events (unread events would rightly hold input back).
    const DELIVERIES: u16 = 256;
    let receiving = tokio::spawn(async move {
        let mut got = 0;
        while got < usize::from(DELIVERIES) {
            match events.recv().await {
                Some(Event::Message { .. }) => got += 1,
                Some(Event::Closed { reason, .. }) => panic!("closed: {reason}"),
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    });
    // The server writes 4 MiB of deliveries and reads nothing until they are all written. It
    // starts once the client's publishes fill what lies between them (it reads nothing
    // before either).
    let down = deliveries(DELIVERIES, 16 * 1024, QoS::AtMostOnce);
    let server = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server_io.write_all(&down).await.unwrap();
        // Then it reads what the client sent meanwhile (its 4 MiB of publishes).
        let mut received = 0usize;
        let mut buf = vec![0; 64 * 1024];
        while received < 8 * (512 * 1024) {
            let n = server_io.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client closed");
            received += n;
        }
        received
    });
    // Meanwhile the client publishes 4 MiB, in messages of 512 KiB: each alone is more than
    // the buffers between them hold, and more than the client lets wait before it would stop
    // reading if it did not read while its output waits.
    let publishing = async {
        let mut receipts = Vec::new();
        for _ in 0..8 {
            let payload = bytes::Bytes::from(vec![0xA5; 512 * 1024]);
            let message = Message::new(topic("up"), QoS::AtMostOnce, payload);
            receipts.push(client.begin_publish(message).await.unwrap());
        }
        for receipt in receipts {
            assert!(receipt.await.unwrap().is_success());
        }
    };
    timeout(Duration::from_secs(20), async {
        publishing.await;
        receiving.await.unwrap();
        assert!(server.await.unwrap() >= 8 * 512 * 1024);
    })
    .await
    .expect("neither side waits for the other for good");
}

/// What a server that never reads can make the client keep is bounded: the client reads on
/// while its output waits only until its answers (here a PUBACK for each QoS 1 delivery,
/// [MQTT-4.3.2-2]) reach the driver's allowance, then stops reading, so the server's write
/// blocks instead of the client's memory growing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_reads_cannot_make_the_client_answer_without_bound() {
    let (client, mut events, mut server_io) = connected("unread").await;
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    // The client's publish fills what lies between them: the server reads nothing, ever.
    let payload = bytes::Bytes::from(vec![0xA5; 512 * 1024]);
    let _receipt = client
        .begin_publish(Message::new(topic("up"), QoS::AtMostOnce, payload))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // 600,000 QoS 1 deliveries of one byte (9 bytes each, 5.4 MB): answered without bound,
    // they would all be read at once; the allowance (256 KiB of PUBACKs, 65,536 of them)
    // stops the client long before.
    let mut down = BytesMut::new();
    for _ in 0..10 {
        down.extend_from_slice(&deliveries(60_000, 1, QoS::AtLeastOnce));
    }
    let written = timeout(Duration::from_secs(3), server_io.write_all(&down)).await;
    assert!(
        written.is_err(),
        "the client stopped reading: the server's write is still blocked"
    );
}
