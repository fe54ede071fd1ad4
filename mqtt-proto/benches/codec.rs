//! Codec benchmarks: `mqtt-streaming-proto` against its peers in the same run.
//!
//! Peers: `rumqttc::mqttbytes::v4` (3.1.1), `rumqttc::v5::mqttbytes::v5` (5.0) and `mqttrs`
//! (3.1.1). Every library decodes the same bytes (for 3.1.1 the three encoders produce identical
//! bytes, checked below before anything is timed) and encodes the same packets.
//!
//! Fairness rules:
//! - each library decodes from its natural input type: `BytesMut` for `mqtt-streaming-proto`'s owned
//!   decoder (`Decoder::decode`) and `rumqttc` (a fresh copy of the prepared stream made by
//!   `iter_batched` outside the timed part), `&[u8]` for `mqttrs` and for `mqtt-streaming-proto`'s
//!   borrowed decoder (`Decoder::decode_slice`, reported as `ours_*_borrowed`), which borrow
//!   and never consume; as `mqttrs` does not report how many bytes it used, its loop reads the
//!   Remaining Length itself (a few instructions), while `decode_slice` returns it;
//! - each library encodes into a buffer that already has room for the whole batch, cleared
//!   between iterations (`BytesMut` for `mqtt-streaming-proto` and `rumqttc`, `&mut [u8]` for `mqttrs`);
//! - every decoded packet is passed by reference to `black_box` and dropped inside the timed part, as a
//!   consumer would drop it; the emptied input buffer is returned and freed outside it.
//!
//! One iteration handles a batch of packets (1,000 for small payloads, fewer for large ones so a
//! batch stays near 1 MiB); the throughput is reported per packet. Run with
//! `cargo bench -p mqtt-streaming-proto --bench codec`; BENCHMARKS.md at the repository root has the
//! results.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_main, BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use mqtt_streaming_proto::{
    Connect, Decoder, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS, QosPid,
    Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName,
};
use rumqttc::mqttbytes::v4 as rv4;
use rumqttc::v5::mqttbytes::v5 as rv5;

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

const TOPIC: &str = "a/b/c/d";
const PAYLOAD_SIZES: [usize; 4] = [16, 256, 4096, 65536];
const MIX_PACKETS: usize = 1000;

/// Packets per iteration: 1,000, or fewer so that one batch stays near 1 MiB.
fn batch(payload: usize) -> usize {
    ((1 << 20) / (payload + 16)).clamp(16, 1000)
}

fn payload(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i * 31 + 7) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Packet identifiers 1, 2, ... wrapping before 0.
fn pid(i: usize) -> u16 {
    (i % 65_535 + 1) as u16
}

fn label(payload: usize) -> String {
    if payload >= 1024 {
        format!("{}KiB", payload / 1024)
    } else {
        format!("{payload}B")
    }
}

// ---------------------------------------------------------------------------------------------
// The PUBLISH batches, built with each library.

fn ours_publishes(qos: u8, n: usize, payload: &Bytes) -> Vec<Packet> {
    (0..n)
        .map(|i| {
            let qos_pid = match qos {
                0 => QosPid::AtMostOnce,
                _ => QosPid::AtLeastOnce(PacketId::new(pid(i)).unwrap()),
            };
            Packet::Publish(Publish::new(
                TopicName::from_static(TOPIC).unwrap(),
                qos_pid,
                payload.clone(),
            ))
        })
        .collect()
}

fn rv4_publishes(qos: u8, n: usize, payload: &Bytes) -> Vec<rv4::Publish> {
    (0..n)
        .map(|i| {
            let level = if qos == 0 {
                rumqttc::mqttbytes::QoS::AtMostOnce
            } else {
                rumqttc::mqttbytes::QoS::AtLeastOnce
            };
            let mut p = rv4::Publish::from_bytes(TOPIC, level, payload.clone());
            if qos != 0 {
                p.pkid = pid(i);
            }
            p
        })
        .collect()
}

fn rv5_publishes(qos: u8, n: usize, payload: &Bytes) -> Vec<rv5::Publish> {
    (0..n)
        .map(|i| {
            let level = if qos == 0 {
                rumqttc::v5::mqttbytes::QoS::AtMostOnce
            } else {
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce
            };
            let mut p = rv5::Publish::new(TOPIC, level, payload.clone(), None);
            if qos != 0 {
                p.pkid = pid(i);
            }
            p
        })
        .collect()
}

fn mqttrs_publishes(qos: u8, n: usize, payload: &[u8]) -> Vec<mqttrs::Packet<'_>> {
    (0..n)
        .map(|i| {
            let qospid = match qos {
                0 => mqttrs::QosPid::AtMostOnce,
                _ => mqttrs::QosPid::AtLeastOnce(mqttrs::Pid::try_from(pid(i)).unwrap()),
            };
            mqttrs::Packet::Publish(mqttrs::Publish {
                dup: false,
                qospid,
                retain: false,
                topic_name: TOPIC,
                payload,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Encoders and decoders of a whole batch, as timed.

fn ours_encode(packets: &[Packet], version: ProtocolVersion, out: &mut BytesMut) {
    for p in packets {
        p.encode(version, out).unwrap();
    }
}

fn ours_decode(decoder: &Decoder, mut buf: BytesMut) -> BytesMut {
    while !buf.is_empty() {
        let packet = decoder.decode(&mut buf).unwrap().unwrap();
        black_box(&packet);
    }
    buf
}

/// The borrowed decoder over the same kind of input as `mqttrs`: a `&[u8]` it never consumes.
fn ours_decode_slice(decoder: &Decoder, wire: &[u8]) -> usize {
    let mut rest = wire;
    let mut n = 0;
    while !rest.is_empty() {
        let (packet, used) = decoder.decode_slice(rest).unwrap().unwrap();
        black_box(&packet);
        rest = &rest[used..];
        n += 1;
    }
    n
}

fn rv4_decode(mut buf: BytesMut) -> BytesMut {
    while !buf.is_empty() {
        let packet = rv4::Packet::read(&mut buf, usize::MAX).unwrap();
        black_box(&packet);
    }
    buf
}

fn rv5_decode(mut buf: BytesMut) -> BytesMut {
    while !buf.is_empty() {
        let packet = rv5::Packet::read(&mut buf, None).unwrap();
        black_box(&packet);
    }
    buf
}

/// Length of the packet at the front of `bytes` (fixed header included): `mqttrs` decodes a
/// packet but does not say how long it was.
#[inline]
fn frame_len(bytes: &[u8]) -> usize {
    let mut remaining = 0usize;
    for (i, &b) in bytes[1..].iter().enumerate().take(4) {
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return 2 + i + remaining;
        }
    }
    panic!("malformed remaining length")
}

fn mqttrs_decode(wire: &[u8]) -> usize {
    let mut rest = wire;
    let mut n = 0;
    while !rest.is_empty() {
        let len = frame_len(rest);
        let packet = mqttrs::decode_slice(rest).unwrap().unwrap();
        black_box(&packet);
        rest = &rest[len..];
        n += 1;
    }
    n
}

fn mqttrs_encode(packets: &[mqttrs::Packet<'_>], out: &mut [u8]) -> usize {
    let mut at = 0;
    for p in packets {
        at += mqttrs::encode_slice(p, &mut out[at..]).unwrap();
    }
    at
}

/// Benchmarks decoding of `wire` (a `BytesMut` stream) by a function that consumes it.
fn bench_decode_bytesmut(
    group: &mut Group<'_>,
    name: &str,
    param: &str,
    wire: &BytesMut,
    decode: impl Fn(BytesMut) -> BytesMut,
) {
    group.bench_function(BenchmarkId::new(name, param), |b| {
        b.iter_batched(|| wire.clone(), &decode, BatchSize::LargeInput)
    });
}

// ---------------------------------------------------------------------------------------------
// PUBLISH.

fn publish(c: &mut Criterion) {
    let v311 = ProtocolVersion::V3_1_1;
    let v5 = ProtocolVersion::V5;
    for qos in [0u8, 1] {
        let mut decode = c.benchmark_group(format!("decode_publish_qos{qos}"));
        for size in PAYLOAD_SIZES {
            let n = batch(size);
            let param = label(size);
            let payload = payload(size);
            let ours = ours_publishes(qos, n, &payload);
            let wire_311 = encoded(&ours, v311);
            let wire_5 = encoded(&ours, v5);
            check_peers_agree(qos, n, &payload, &wire_311, &wire_5);
            decode.throughput(Throughput::Elements(n as u64));

            let decoder_311 = Decoder::new(v311);
            let decoder_5 = Decoder::new(v5);
            bench_decode_bytesmut(&mut decode, "ours_v311", &param, &wire_311, |buf| {
                ours_decode(&decoder_311, buf)
            });
            bench_decode_bytesmut(&mut decode, "ours_v5", &param, &wire_5, |buf| {
                ours_decode(&decoder_5, buf)
            });
            let flat: Vec<u8> = wire_311.to_vec();
            let flat_5: Vec<u8> = wire_5.to_vec();
            assert_eq!(ours_decode_slice(&decoder_311, &flat), n);
            assert_eq!(ours_decode_slice(&decoder_5, &flat_5), n);
            decode.bench_function(BenchmarkId::new("ours_v311_borrowed", &param), |b| {
                b.iter(|| ours_decode_slice(&decoder_311, black_box(&flat)))
            });
            decode.bench_function(BenchmarkId::new("ours_v5_borrowed", &param), |b| {
                b.iter(|| ours_decode_slice(&decoder_5, black_box(&flat_5)))
            });
            bench_decode_bytesmut(&mut decode, "rumqttc_v4", &param, &wire_311, rv4_decode);
            bench_decode_bytesmut(&mut decode, "rumqttc_v5", &param, &wire_5, rv5_decode);
            decode.bench_function(BenchmarkId::new("mqttrs", &param), |b| {
                b.iter(|| mqttrs_decode(black_box(&flat)))
            });
        }
        decode.finish();

        let mut encode = c.benchmark_group(format!("encode_publish_qos{qos}"));
        for size in PAYLOAD_SIZES {
            let n = batch(size);
            let param = label(size);
            let payload = payload(size);
            encode.throughput(Throughput::Elements(n as u64));

            let ours = ours_publishes(qos, n, &payload);
            for (name, version) in [("ours_v311", v311), ("ours_v5", v5)] {
                let mut out = BytesMut::with_capacity(encoded(&ours, version).len());
                encode.bench_function(BenchmarkId::new(name, &param), |b| {
                    b.iter(|| {
                        out.clear();
                        ours_encode(black_box(&ours), version, &mut out);
                        black_box(&out);
                    })
                });
            }

            let rv4 = rv4_publishes(qos, n, &payload);
            let mut out = BytesMut::with_capacity(encoded(&ours, v311).len());
            encode.bench_function(BenchmarkId::new("rumqttc_v4", &param), |b| {
                b.iter(|| {
                    out.clear();
                    for p in black_box(&rv4) {
                        p.write(&mut out).unwrap();
                    }
                    black_box(&out);
                })
            });

            let rv5 = rv5_publishes(qos, n, &payload);
            let mut out = BytesMut::with_capacity(encoded(&ours, v5).len());
            encode.bench_function(BenchmarkId::new("rumqttc_v5", &param), |b| {
                b.iter(|| {
                    out.clear();
                    for p in black_box(&rv5) {
                        p.write(&mut out).unwrap();
                    }
                    black_box(&out);
                })
            });

            let rs = mqttrs_publishes(qos, n, &payload);
            let mut out = vec![0u8; encoded(&ours, v311).len()];
            encode.bench_function(BenchmarkId::new("mqttrs", &param), |b| {
                b.iter(|| black_box(mqttrs_encode(black_box(&rs), &mut out)))
            });
        }
        encode.finish();
    }
}

/// The zero-copy encode path: `Publish::encode_header` writes everything but the payload, and
/// the payload's `Bytes` is handed on beside it (what a vectored write takes), not copied.
fn publish_zero_copy(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_publish_zero_copy");
    for qos in [0u8, 1] {
        for size in [4096, 65536] {
            let n = batch(size);
            let payload = payload(size);
            let publishes: Vec<Publish> = ours_publishes(qos, n, &payload)
                .into_iter()
                .map(|p| match p {
                    Packet::Publish(p) => p,
                    _ => unreachable!(),
                })
                .collect();
            group.throughput(Throughput::Elements(n as u64));
            for (name, version) in [
                ("ours_v311", ProtocolVersion::V3_1_1),
                ("ours_v5", ProtocolVersion::V5),
            ] {
                let param = format!("qos{qos}/{}", label(size));
                group.bench_function(BenchmarkId::new(name, param), |b| {
                    b.iter_batched(
                        || (BytesMut::with_capacity(n * 16), Vec::with_capacity(2 * n)),
                        |(mut headers, mut chunks): (BytesMut, Vec<Bytes>)| {
                            for p in black_box(&publishes) {
                                p.encode_header(version, &mut headers).unwrap();
                                chunks.push(headers.split().freeze());
                                chunks.push(p.payload.clone());
                            }
                            black_box(&chunks);
                            (headers, chunks)
                        },
                        BatchSize::LargeInput,
                    )
                });
            }
        }
    }
    group.finish();
}

fn encoded(packets: &[Packet], version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    ours_encode(packets, version, &mut buf);
    // A fresh buffer that owns exactly its bytes, as a transport read leaves it.
    BytesMut::from(&buf[..])
}

/// Before timing anything: every peer encodes the PUBLISH batch to exactly our bytes, and
/// decodes our bytes to the right number of packets and payload bytes.
fn check_peers_agree(qos: u8, n: usize, payload: &Bytes, wire_311: &BytesMut, wire_5: &BytesMut) {
    let mut out = BytesMut::new();
    for p in rv4_publishes(qos, n, payload) {
        p.write(&mut out).unwrap();
    }
    assert!(out == wire_311, "rumqttc v4 encodes other bytes");
    let mut out = BytesMut::new();
    for p in rv5_publishes(qos, n, payload) {
        p.write(&mut out).unwrap();
    }
    assert!(out == wire_5, "rumqttc v5 encodes other bytes");
    let mut out = vec![0u8; wire_311.len()];
    let len = mqttrs_encode(&mqttrs_publishes(qos, n, payload), &mut out);
    assert!(out[..len] == wire_311[..], "mqttrs encodes other bytes");

    let mut buf = wire_311.clone();
    let mut count = 0;
    while !buf.is_empty() {
        match rv4::Packet::read(&mut buf, usize::MAX).unwrap() {
            rv4::Packet::Publish(p) => assert_eq!(p.payload.len(), payload.len()),
            other => panic!("rumqttc v4 decoded {other:?}"),
        }
        count += 1;
    }
    assert_eq!(count, n);
    let mut buf = wire_5.clone();
    let mut count = 0;
    while !buf.is_empty() {
        match rv5::Packet::read(&mut buf, None).unwrap() {
            rv5::Packet::Publish(p) => assert_eq!(p.payload.len(), payload.len()),
            other => panic!("rumqttc v5 decoded {other:?}"),
        }
        count += 1;
    }
    assert_eq!(count, n);
    assert_eq!(mqttrs_decode(wire_311), n);
}

// ---------------------------------------------------------------------------------------------
// CONNECT / SUBSCRIBE mix.

/// Alternating CONNECT (client id, user name, password) and SUBSCRIBE (three filters).
fn ours_mix(version: ProtocolVersion) -> Vec<Packet> {
    (0..MIX_PACKETS)
        .map(|i| {
            if i % 2 == 0 {
                let client_id = MqttString::new(&format!("client-{i:06}")).unwrap();
                let mut connect = Connect::new(version, client_id);
                connect.keep_alive = 30;
                connect.username = Some(MqttString::new("sensor-fleet").unwrap());
                connect.password = Some(Bytes::from_static(b"correct horse battery"));
                Packet::Connect(Box::new(connect))
            } else {
                let mut subscribe = Subscribe::new(
                    PacketId::new(pid(i)).unwrap(),
                    TopicFilter::new(TOPIC).unwrap(),
                    SubscriptionOptions::new(QoS::AtLeastOnce),
                );
                for (filter, qos) in [
                    ("sensors/+/temperature", QoS::AtMostOnce),
                    ("alerts/#", QoS::ExactlyOnce),
                ] {
                    subscribe.subscriptions.push(Subscription {
                        filter: TopicFilter::new(filter).unwrap(),
                        options: SubscriptionOptions::new(qos),
                    });
                }
                Packet::Subscribe(subscribe)
            }
        })
        .collect()
}

fn mix(c: &mut Criterion) {
    let v311 = ProtocolVersion::V3_1_1;
    let v5 = ProtocolVersion::V5;
    let ours_311 = ours_mix(v311);
    let ours_5 = ours_mix(v5);
    let wire_311 = encoded(&ours_311, v311);
    let wire_5 = encoded(&ours_5, v5);
    let flat = wire_311.to_vec();

    // Each peer's packets are its own decoding of our bytes; they must encode back to them.
    let mut buf = wire_311.clone();
    let rv4: Vec<rv4::Packet> = std::iter::from_fn(|| {
        (!buf.is_empty()).then(|| rv4::Packet::read(&mut buf, usize::MAX).unwrap())
    })
    .collect();
    let mut buf = wire_5.clone();
    let rv5: Vec<rv5::Packet> = std::iter::from_fn(|| {
        (!buf.is_empty()).then(|| rv5::Packet::read(&mut buf, None).unwrap())
    })
    .collect();
    let mut rest = &flat[..];
    let mut rs = Vec::new();
    while !rest.is_empty() {
        let len = frame_len(rest);
        rs.push(mqttrs::decode_slice(rest).unwrap().unwrap());
        rest = &rest[len..];
    }
    assert_eq!(rv4.len(), MIX_PACKETS);
    assert_eq!(rv5.len(), MIX_PACKETS);
    assert_eq!(rs.len(), MIX_PACKETS);
    let mut out = BytesMut::new();
    for p in &rv4 {
        p.write(&mut out, usize::MAX).unwrap();
    }
    // rumqttc patches the CONNECT flags at an offset counted from the start of the buffer, not
    // of the packet, so a CONNECT appended after other bytes gets its flags written into the
    // first packet instead: the bytes differ but the work and the length are the same.
    assert_eq!(
        out.len(),
        wire_311.len(),
        "rumqttc v4 re-encodes another length"
    );
    let mut out = BytesMut::new();
    for p in &rv5 {
        p.write(&mut out, None).unwrap();
    }
    assert_eq!(
        out.len(),
        wire_5.len(),
        "rumqttc v5 re-encodes another length"
    );
    let mut out = vec![0u8; flat.len()];
    let len = mqttrs_encode(&rs, &mut out);
    assert!(out[..len] == flat[..], "mqttrs re-encodes other bytes");

    let mut group = c.benchmark_group("connect_subscribe_mix");
    group.throughput(Throughput::Elements(MIX_PACKETS as u64));
    let decoder_311 = Decoder::new(v311);
    let decoder_5 = Decoder::new(v5);
    bench_decode_bytesmut(&mut group, "ours_v311", "decode", &wire_311, |buf| {
        ours_decode(&decoder_311, buf)
    });
    bench_decode_bytesmut(&mut group, "ours_v5", "decode", &wire_5, |buf| {
        ours_decode(&decoder_5, buf)
    });
    let flat_5 = wire_5.to_vec();
    assert_eq!(ours_decode_slice(&decoder_311, &flat), MIX_PACKETS);
    assert_eq!(ours_decode_slice(&decoder_5, &flat_5), MIX_PACKETS);
    group.bench_function(BenchmarkId::new("ours_v311_borrowed", "decode"), |b| {
        b.iter(|| ours_decode_slice(&decoder_311, black_box(&flat)))
    });
    group.bench_function(BenchmarkId::new("ours_v5_borrowed", "decode"), |b| {
        b.iter(|| ours_decode_slice(&decoder_5, black_box(&flat_5)))
    });
    bench_decode_bytesmut(&mut group, "rumqttc_v4", "decode", &wire_311, rv4_decode);
    bench_decode_bytesmut(&mut group, "rumqttc_v5", "decode", &wire_5, rv5_decode);
    group.bench_function(BenchmarkId::new("mqttrs", "decode"), |b| {
        b.iter(|| mqttrs_decode(black_box(&flat)))
    });

    for (name, version, packets, len) in [
        ("ours_v311", v311, &ours_311, wire_311.len()),
        ("ours_v5", v5, &ours_5, wire_5.len()),
    ] {
        let mut out = BytesMut::with_capacity(len);
        group.bench_function(BenchmarkId::new(name, "encode"), |b| {
            b.iter(|| {
                out.clear();
                ours_encode(black_box(packets), version, &mut out);
                black_box(&out);
            })
        });
    }
    let mut out = BytesMut::with_capacity(wire_311.len());
    group.bench_function(BenchmarkId::new("rumqttc_v4", "encode"), |b| {
        b.iter(|| {
            out.clear();
            for p in black_box(&rv4) {
                p.write(&mut out, usize::MAX).unwrap();
            }
            black_box(&out);
        })
    });
    let mut out = BytesMut::with_capacity(wire_5.len());
    group.bench_function(BenchmarkId::new("rumqttc_v5", "encode"), |b| {
        b.iter(|| {
            out.clear();
            for p in black_box(&rv5) {
                p.write(&mut out, None).unwrap();
            }
            black_box(&out);
        })
    });
    let mut out = vec![0u8; flat.len()];
    group.bench_function(BenchmarkId::new("mqttrs", "encode"), |b| {
        b.iter(|| black_box(mqttrs_encode(black_box(&rs), &mut out)))
    });
    group.finish();
}

/// The entry points `criterion_group!` generates (public functions without documentation).
mod entry {
    #![allow(missing_docs, unreachable_pub)]
    use super::{mix, publish, publish_zero_copy};
    criterion::criterion_group!(benches, publish, publish_zero_copy, mix);
}

criterion_main!(entry::benches);
