//! Heap held by an idle client connection (issue 12: memory per client connection at most half
//! of rumqttc's). The server is a blocking thread that answers CONNECT and SUBSCRIBE with raw
//! bytes and keeps each socket in a `Vec`, so that (almost) every byte allocated while the
//! clients connect is the clients'. A counting global allocator (`stats_alloc`: the
//! workspace forbids the `unsafe` a `GlobalAlloc` needs) gives the live heap. Its counters are
//! global, so this binary holds one test.

use std::alloc::System;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicFilter};
use mqtt_streaming_session::SubscribeRequest;
use mqtt_streaming_tokio::{connect_tcp, ClientOptions, Event};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not yet freed, process-wide.
fn live() -> isize {
    let stats = GLOBAL.stats();
    (stats.bytes_allocated as isize - stats.bytes_deallocated as isize) + stats.bytes_reallocated
}

/// Reads one whole MQTT packet (fixed header, remaining length, body).
fn read_packet(stream: &mut TcpStream) -> Vec<u8> {
    let mut header = [0u8; 1];
    stream.read_exact(&mut header).unwrap();
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).unwrap();
        len |= usize::from(byte[0] & 0x7f) << shift;
        shift += 7;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    body.insert(0, header[0]);
    body
}

/// Accepts `n` MQTT 3.1.1 clients: CONNACK to the CONNECT, SUBACK (QoS 1 granted) to the
/// SUBSCRIBE; keeps the sockets open until `release` is dropped.
fn fake_server(listener: TcpListener, n: usize, release: std::sync::mpsc::Receiver<()>) {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let (mut stream, _) = listener.accept().unwrap();
        let connect = read_packet(&mut stream);
        assert_eq!(connect[0], 0x10, "CONNECT first");
        stream.write_all(&[0x20, 0x02, 0x00, 0x00]).unwrap();
        let subscribe = read_packet(&mut stream);
        assert_eq!(subscribe[0], 0x82, "then SUBSCRIBE");
        stream
            .write_all(&[0x90, 0x03, subscribe[1], subscribe[2], 0x01])
            .unwrap();
        streams.push(stream);
    }
    let _ = release.recv();
}

/// An idle client connection (connected, one subscription, nothing in flight) holds little
/// heap: its driver task, its session, its channels, no read or write buffer. The bench
/// tool's figure (RSS per connection, BENCHMARKS.md) adds the allocator's overhead, the
/// tokio registration of the socket and the bench's own task per connection.
#[test]
fn an_idle_client_holds_little_heap() {
    const CLIENTS: usize = 200;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (release_tx, release_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || fake_server(listener, CLIENTS, release_rx));
    let per_client = runtime.block_on(async move {
        let mut clients = Vec::with_capacity(CLIENTS);
        // Warm up what the runtime allocates once (timer wheel, I/O driver pages).
        let before = live();
        for i in 0..CLIENTS {
            let connect = Connect::new(
                ProtocolVersion::V3_1_1,
                MqttString::new(&format!("idle-{i:04}")).unwrap(),
            );
            let (client, mut events) = connect_tcp(addr, ClientOptions::new(connect))
                .await
                .unwrap();
            assert!(matches!(events.recv().await, Some(Event::Connected(_))));
            let filter = TopicFilter::new(&format!("idle/{i}")).unwrap();
            client
                .subscribe(SubscribeRequest::new(filter, QoS::AtLeastOnce))
                .await
                .unwrap();
            clients.push((client, events));
        }
        // Let every driver go idle (write buffers written, read buffers given back).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = live();
        let per_client = (after - before) / CLIENTS as isize;
        drop(clients);
        per_client
    });
    drop(release_tx);
    server.join().unwrap();
    println!("heap per idle client connection: {per_client} bytes");
    assert!(per_client > 0);
    // 14,643 bytes before the driver's task future stopped holding a second copy of the
    // driver and the idle session gave its empty queues back; 6,215 after.
    assert!(
        per_client <= 7 * 1024,
        "an idle client holds {per_client} bytes of heap"
    );
}
