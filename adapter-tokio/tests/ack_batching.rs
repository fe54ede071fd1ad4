//! The client reads acknowledgements in batches while the server owes many
//! (`ClientOptions::batch_acks`): the socket's receive low-water mark follows the
//! acknowledgements owed, and nothing waits on it for long (a server that stops
//! acknowledging, or a delivery below the mark, is read within the patience).
//!
//! Over real TCP sockets: the mark is a Linux socket option.
#![cfg(any(target_os = "linux", target_os = "android"))]

mod support;

use std::future::poll_fn;
use std::io;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use mqtt_streaming_proto::{Decoder, Packet, ProtocolVersion, QoS};
use mqtt_streaming_tokio::engine::{connect_transport_on, Transport};
use mqtt_streaming_tokio::{ClientOptions, Event, PublishReceipt, TokioIo, TokioRuntime};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Long enough never to be reached by a working client (the patience is a millisecond).
const PATIENCE: Duration = Duration::from_secs(5);

/// A connected pair of TCP sockets on 127.0.0.1.
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

/// The client's TCP transport, recording every low-water mark the driver sets.
struct Recording {
    inner: TokioIo<TcpStream>,
    marks: Arc<Mutex<Vec<usize>>>,
}

impl Transport for Recording {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        self.inner.poll_read(cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.inner.poll_write(cx, buf)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_flush(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_close(cx)
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_read_ready(cx)
    }

    fn set_read_low_water(&mut self, bytes: usize) -> bool {
        let supported = self.inner.set_read_low_water(bytes);
        self.marks.lock().unwrap().push(bytes);
        supported
    }
}

/// The server's end: reads packets, writes raw bytes.
struct Peer {
    io: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl Peer {
    async fn packet(&mut self) -> Packet {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buf).unwrap() {
                return packet;
            }
            let n = timeout(PATIENCE, self.io.read_buf(&mut self.buf))
                .await
                .expect("the client sent nothing")
                .unwrap();
            assert_ne!(n, 0, "the client closed");
        }
    }

    /// Reads `n` PUBLISHes; their packet ids.
    async fn publishes(&mut self, n: usize) -> Vec<u16> {
        let mut ids = Vec::new();
        for _ in 0..n {
            let Packet::Publish(publish) = self.packet().await else {
                panic!("expected a PUBLISH");
            };
            ids.push(publish.qos_pid.packet_id().expect("QoS 1").get());
        }
        ids
    }

    async fn puback(&mut self, id: u16) {
        let [hi, lo] = id.to_be_bytes();
        self.io.write_all(&[0x40, 0x02, hi, lo]).await.unwrap();
    }
}

/// A client over a recording TCP transport, connected to a raw peer (MQTT 3.1.1).
async fn connected(
    batch_acks: bool,
) -> (
    mqtt_streaming_tokio::Client,
    mqtt_streaming_tokio::ClientEvents,
    Peer,
    Arc<Mutex<Vec<usize>>>,
) {
    let (client_io, server_io) = tcp_pair().await;
    client_io.set_nodelay(true).unwrap();
    let marks = Arc::new(Mutex::new(Vec::new()));
    let transport = Recording {
        inner: TokioIo(client_io),
        marks: marks.clone(),
    };
    let mut peer = Peer {
        io: server_io,
        buf: BytesMut::new(),
        decoder: Decoder::new(ProtocolVersion::V3_1_1),
    };
    let mut options = ClientOptions::new(connect_packet(ProtocolVersion::V3_1_1, "batcher"));
    options.batch_acks = batch_acks;
    let server = async {
        assert!(matches!(peer.packet().await, Packet::Connect(_)));
        peer.io.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap();
    };
    let (connected, ()) = tokio::join!(
        connect_transport_on(TokioRuntime, transport, options),
        server
    );
    let (client, events) = connected.unwrap();
    (client, events, peer, marks)
}

async fn publish_qos1(client: &mqtt_streaming_tokio::Client, n: usize) -> Vec<PublishReceipt> {
    let mut receipts = Vec::new();
    for _ in 0..n {
        receipts.push(
            client
                .begin_publish(message("t", QoS::AtLeastOnce, "m"))
                .await
                .unwrap(),
        );
    }
    receipts
}

/// Every publish completes, acknowledged with Success.
async fn all_succeed(receipts: Vec<PublishReceipt>) {
    for receipt in receipts {
        let outcome = timeout(PATIENCE, receipt)
            .await
            .expect("acknowledged in time")
            .unwrap();
        assert!(outcome.is_success(), "{outcome:?}");
    }
}

fn marks(marks: &Mutex<Vec<usize>>) -> Vec<usize> {
    marks.lock().unwrap().clone()
}

/// Whether the mark went from `raised` straight down to 1. In these tests only the patience
/// does that: one acknowledgement read leaves far more than 8 owed.
fn lowered(seen: &[usize], raised: usize) -> bool {
    seen.windows(2).any(|pair| pair == [raised, 1])
}

/// The kernel side the driver relies on: below the mark a socket is not readable, reaching
/// it makes it readable, and lowering the mark wakes a reader whose bytes were held back.
#[tokio::test]
async fn the_low_water_mark_holds_readiness_back_and_lowering_it_wakes_the_reader() {
    let (reader, mut writer) = tcp_pair().await;
    writer.set_nodelay(true).unwrap();
    let mut reader = TokioIo(reader);
    let mut buf = BytesMut::with_capacity(64);
    assert!(reader.set_read_low_water(8));

    writer.write_all(&[1, 2, 3, 4]).await.unwrap();
    let early = timeout(
        Duration::from_millis(100),
        poll_fn(|cx| reader.poll_read_ready(cx)),
    )
    .await;
    assert!(early.is_err(), "4 bytes are below the mark of 8");
    writer.write_all(&[5, 6, 7, 8]).await.unwrap();
    timeout(PATIENCE, poll_fn(|cx| reader.poll_read_ready(cx)))
        .await
        .expect("8 bytes reach the mark")
        .unwrap();
    let n = poll_fn(|cx| reader.poll_read(cx, &mut buf)).await.unwrap();
    assert_eq!(n, 8);

    writer.write_all(&[9, 10]).await.unwrap();
    let early = timeout(
        Duration::from_millis(100),
        poll_fn(|cx| reader.poll_read_ready(cx)),
    )
    .await;
    assert!(early.is_err(), "2 bytes are below the mark of 8");
    assert!(reader.set_read_low_water(1));
    timeout(PATIENCE, poll_fn(|cx| reader.poll_read_ready(cx)))
        .await
        .expect("lowering the mark wakes the reader")
        .unwrap();
    let n = poll_fn(|cx| reader.poll_read(cx, &mut buf)).await.unwrap();
    assert_eq!((n, &buf[8..]), (2, &[9u8, 10][..]));
}

/// 32 QoS 1 publishes owed: the mark goes to a quarter of their PUBACKs (8 x 4 bytes), and
/// back to 1 once they are all in; every publish completes.
#[tokio::test]
async fn the_mark_follows_the_acknowledgements_owed() {
    let (client, _events, mut peer, recorded) = connected(true).await;
    assert!(marks(&recorded).is_empty(), "no mark while little is owed");
    let receipts = publish_qos1(&client, 32).await;
    let ids = peer.publishes(32).await;
    for id in ids {
        peer.puback(id).await;
    }
    all_succeed(receipts).await;
    // The driver sets the mark before it waits again.
    timeout(PATIENCE, async {
        while marks(&recorded).last() != Some(&1) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the mark goes back to 1");
    let seen = marks(&recorded);
    assert!(seen.contains(&32), "a quarter of 32 PUBACKs: {seen:?}");
    assert!(
        seen.iter().all(|&mark| mark <= 32),
        "never more than a quarter of what is owed: {seen:?}"
    );
}

/// With `batch_acks` off the driver never touches the mark.
#[tokio::test]
async fn without_batch_acks_the_mark_is_left_alone() {
    let (client, _events, mut peer, recorded) = connected(false).await;
    let receipts = publish_qos1(&client, 32).await;
    for id in peer.publishes(32).await {
        peer.puback(id).await;
    }
    all_succeed(receipts).await;
    assert!(marks(&recorded).is_empty(), "{:?}", marks(&recorded));
}

/// A server that acknowledges one of 32 publishes (4 bytes, below the mark) and then waits:
/// the PUBACK is still read (within the patience) and completes its publish, and a QoS 0
/// message delivered meanwhile (also below the mark) reaches the application.
#[tokio::test]
async fn input_below_the_mark_is_read_when_input_stops() {
    let (client, mut events, mut peer, recorded) = connected(true).await;
    let mut receipts = publish_qos1(&client, 32).await;
    let ids = peer.publishes(32).await;
    peer.puback(ids[0]).await;
    let first = receipts.remove(0);
    let outcome = timeout(PATIENCE, first)
        .await
        .expect("a lone PUBACK below the mark is read")
        .unwrap();
    assert!(outcome.is_success());
    let seen = marks(&recorded);
    assert!(
        lowered(&seen, 32),
        "raised for 32 owed, lowered when input stopped: {seen:?}"
    );

    // 31 owed now: the mark goes back up after the read; a delivery below it still arrives.
    let (topic, payload) = (b"in", b"hello");
    let mut delivery = vec![
        0x30,
        (2 + topic.len() + payload.len()) as u8,
        0,
        topic.len() as u8,
    ];
    delivery.extend_from_slice(topic);
    delivery.extend_from_slice(payload);
    assert!(delivery.len() < 16, "below the mark of 16 for 31 owed");
    peer.io.write_all(&delivery).await.unwrap();
    let event = timeout(PATIENCE, async {
        loop {
            match events.recv().await.expect("events go on") {
                Event::Message { publish, .. } => return publish,
                _ => continue,
            }
        }
    })
    .await
    .expect("a delivery below the mark is read");
    assert_eq!(
        (event.topic.as_str(), &event.payload[..]),
        ("in", &b"hello"[..])
    );
    let seen = marks(&recorded);
    assert!(
        lowered(&seen, 16),
        "raised for 31 owed, then lowered: {seen:?}"
    );

    for id in &ids[1..] {
        peer.puback(*id).await;
    }
    all_succeed(receipts).await;
}
