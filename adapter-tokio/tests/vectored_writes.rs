//! The client's driver writes large payloads as segments of their own (vectored writes,
//! `TransmitBuf`): over a transport that gathers and takes only a few bytes per write, the
//! peer receives every packet whole, in order, byte for byte; over one that does not
//! gather, the driver's writes are contiguous.

mod support;

use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{Decoder, Packet, PacketType, ProtocolVersion, QoS};
use mqtt_streaming_session::{Message, SEGMENT_FROM};
use mqtt_streaming_tokio::engine::{connect_transport_on, Transport};
use mqtt_streaming_tokio::{ClientOptions, TokioIo, TokioRuntime};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// What the transport saw: per write call, how many slices it was given.
#[derive(Default)]
struct Seen {
    slices_per_call: Vec<usize>,
}

/// A transport over a duplex pipe that takes at most a few bytes per write (short writes
/// that cut headers and payloads anywhere), and gathers vectored writes when `vectored`.
struct ShortWrites {
    inner: TokioIo<DuplexStream>,
    vectored: bool,
    /// The most bytes each successive write takes (cycled).
    limits: Vec<usize>,
    next: usize,
    seen: Arc<Mutex<Seen>>,
}

impl ShortWrites {
    fn limit(&mut self) -> usize {
        let limit = self.limits[self.next % self.limits.len()];
        self.next += 1;
        limit
    }
}

impl Transport for ShortWrites {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        self.inner.poll_read(cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.seen.lock().unwrap().slices_per_call.push(1);
        let limit = self.limit();
        self.inner.poll_write(cx, &buf[..buf.len().min(limit)])
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        assert!(
            self.vectored,
            "a vectored write to a transport that does not gather"
        );
        self.seen.lock().unwrap().slices_per_call.push(bufs.len());
        // Gather up to the limit, as a socket taking part of a writev would.
        let limit = self.limit();
        let mut gathered = Vec::new();
        for buf in bufs {
            let room = limit - gathered.len();
            gathered.extend_from_slice(&buf[..buf.len().min(room)]);
            if gathered.len() == limit {
                break;
            }
        }
        self.inner.poll_write(cx, &gathered)
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_flush(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_close(cx)
    }
}

/// A payload whose bytes tell where they are.
fn payload(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

/// Publishes small and large messages at QoS 0 and 1 through a client over `ShortWrites`;
/// returns what the peer decoded and what the transport saw.
async fn run(vectored: bool) -> (Vec<Message>, Vec<Packet>, Seen) {
    let (client_io, mut peer) = tokio::io::duplex(1 << 20);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let transport = ShortWrites {
        inner: TokioIo(client_io),
        vectored,
        limits: vec![3, 1, 700, 5000, 17, 2, 9000],
        next: 0,
        seen: seen.clone(),
    };
    let decoder = Decoder::new(ProtocolVersion::V5).with_max_packet_size(1 << 20);
    let mut buf = BytesMut::new();
    let options = ClientOptions::new(connect_packet(ProtocolVersion::V5, "vectored"));
    let accept = async {
        loop {
            if let Some(packet) = decoder.decode(&mut buf).unwrap() {
                assert_eq!(packet.packet_type(), PacketType::Connect);
                break;
            }
            assert_ne!(peer.read_buf(&mut buf).await.unwrap(), 0);
        }
        peer.write_all(&[0x20, 0x03, 0x00, 0x00, 0x00])
            .await
            .unwrap();
    };
    let (connected, ()) = tokio::join!(
        connect_transport_on(TokioRuntime, transport, options),
        accept
    );
    let (client, _events) = connected.unwrap();

    let sizes = [
        10,
        SEGMENT_FROM,
        4096,
        1,
        SEGMENT_FROM - 1,
        70_000,
        0,
        5000,
        3,
    ];
    let messages: Vec<Message> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let qos = if i % 3 == 2 {
                QoS::AtLeastOnce
            } else {
                QoS::AtMostOnce
            };
            Message::new(topic("v/t"), qos, payload(len, i as u8))
        })
        .collect();
    // All handed over before any is written (the driver takes them in one batch).
    let mut receipts = Vec::new();
    for message in &messages {
        receipts.push(client.begin_publish(message.clone()).await.unwrap());
    }
    let mut packets = Vec::new();
    while packets.len() < messages.len() {
        if let Some(packet) = decoder.decode(&mut buf).unwrap() {
            if let Packet::Publish(publish) = &packet {
                if let Some(id) = publish.qos_pid.packet_id() {
                    let id = id.get().to_be_bytes();
                    peer.write_all(&[0x40, 0x02, id[0], id[1]]).await.unwrap();
                }
            }
            packets.push(packet);
            continue;
        }
        assert_ne!(
            peer.read_buf(&mut buf).await.unwrap(),
            0,
            "the client closed"
        );
    }
    for receipt in receipts {
        assert!(receipt.await.unwrap().is_success());
    }
    drop(client);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    (messages, packets, seen)
}

fn assert_delivered_in_order(messages: &[Message], packets: &[Packet]) {
    assert_eq!(packets.len(), messages.len());
    for (packet, message) in packets.iter().zip(messages) {
        let Packet::Publish(publish) = packet else {
            panic!("expected a PUBLISH, got {packet:?}");
        };
        assert_eq!(publish.qos_pid.qos(), message.qos);
        assert_eq!(publish.topic, message.topic);
        assert_eq!(
            publish.payload,
            message.payload,
            "payload of {} bytes",
            message.payload.len()
        );
    }
}

#[tokio::test]
async fn short_vectored_writes_deliver_every_packet_whole_and_in_order() {
    let (messages, packets, seen) = run(true).await;
    assert_delivered_in_order(&messages, &packets);
    // The large payloads went as segments of their own: some writes had several slices.
    assert!(
        seen.slices_per_call.iter().any(|&n| n > 1),
        "{:?}",
        seen.slices_per_call
    );
}

#[tokio::test]
async fn a_transport_that_does_not_gather_gets_contiguous_writes() {
    let (messages, packets, seen) = run(false).await;
    assert_delivered_in_order(&messages, &packets);
    // Every write was a plain one (the transport would have panicked otherwise).
    assert!(seen.slices_per_call.iter().all(|&n| n == 1));
}
