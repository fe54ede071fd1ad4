//! Heap allocations on the hot paths, counted by a global allocator that wraps `System`.
//!
//! The workspace forbids `unsafe` code in every target, and a `GlobalAlloc` implementation needs
//! it, so the counting allocator is the small `stats_alloc` crate. Its counters are global:
//! everything is checked from the single test of this binary, so that no other test thread
//! allocates while a region is being measured.
//!
//! The claims checked here:
//! - decoding QoS 0 and QoS 1 PUBLISH packets without user properties, MQTT 3.1.1 and 5.0,
//!   from one buffer allocates nothing per packet: 10 packets and 1,000 packets cost the same
//!   (at most one allocation: the first split of the buffer moves its storage to a shared,
//!   reference-counted header);
//! - the decoded topic and payload point into the input buffer (nothing is copied);
//! - the borrowed decoder (`Decoder::decode_slice`) allocates nothing at all for PUBLISH, not
//!   even once per buffer, in both versions, and in MQTT 5 also with properties (Topic Alias,
//!   User Properties, Correlation Data: kept as the validated raw block); its topic, payload and
//!   property block lie inside the input;
//! - encoding a PUBLISH into a buffer with enough capacity allocates nothing, and neither does
//!   the zero-copy path (`Publish::encode_header` plus a clone of the payload) once the payload
//!   is shared.

use std::alloc::System;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    Decoder, Packet, PacketId, PacketRef, ProtocolVersion, Publish, QosPid, TopicName, UserProperty,
};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V3_1_1, ProtocolVersion::V5];
const PAYLOAD_SIZES: [usize; 3] = [16, 4096, 65536];

fn qos_pid(qos: u8, i: usize) -> QosPid {
    match qos {
        0 => QosPid::AtMostOnce,
        _ => QosPid::AtLeastOnce(PacketId::new((i % 65_535 + 1) as u16).unwrap()),
    }
}

fn publish(qos: u8, i: usize, payload: &Bytes) -> Publish {
    Publish::new(
        TopicName::from_static("a/b/c/d").unwrap(),
        qos_pid(qos, i),
        payload.clone(),
    )
}

fn payload(len: usize) -> Bytes {
    (0..len).map(|i| i as u8).collect::<Vec<u8>>().into()
}

/// `n` PUBLISH packets back to back, in a buffer that owns exactly its bytes.
fn wire(version: ProtocolVersion, qos: u8, n: usize, payload_len: usize) -> BytesMut {
    let payload = payload(payload_len);
    let mut buf = BytesMut::new();
    for i in 0..n {
        Packet::Publish(publish(qos, i, &payload))
            .encode(version, &mut buf)
            .unwrap();
    }
    // A fresh, unshared buffer, as a transport read would leave it.
    BytesMut::from(&buf[..])
}

fn contains(range: &Range<usize>, bytes: &[u8]) -> bool {
    let start = bytes.as_ptr() as usize;
    range.contains(&start) && start + bytes.len() <= range.end
}

struct DecodeRun {
    packets: usize,
    allocations: usize,
    copied: usize,
}

/// The allocation counters are process-wide, and the test harness's own threads may allocate
/// now and then while a region is measured. Each measurement therefore keeps the quietest of
/// three runs: code that allocated per packet would show it in every run.
fn quietest<R>(mut run: impl FnMut() -> R, allocations: impl Fn(&R) -> usize) -> R {
    let mut best = run();
    for _ in 0..2 {
        let next = run();
        if allocations(&next) < allocations(&best) {
            best = next;
        }
    }
    best
}

/// Decodes every packet of `buf`, counting allocations and payloads or topics that do not lie
/// inside the input. Packets are dropped as soon as they are checked, as a consumer would.
fn decode_all(version: ProtocolVersion, mut buf: BytesMut, payload_len: usize) -> DecodeRun {
    let decoder = Decoder::new(version);
    let base = buf.as_ptr() as usize;
    let input = base..base + buf.len();
    let mut packets = 0;
    let mut copied = 0;
    let region = Region::new(GLOBAL);
    while let Some(packet) = decoder.decode(&mut buf).unwrap() {
        let Packet::Publish(publish) = packet else {
            panic!("not a PUBLISH")
        };
        if publish.payload.len() != payload_len
            || !contains(&input, &publish.payload)
            || !contains(&input, publish.topic.as_bytes())
        {
            copied += 1;
        }
        packets += 1;
    }
    let stats = region.change();
    assert!(buf.is_empty());
    DecodeRun {
        packets,
        allocations: stats.allocations + stats.reallocations,
        copied,
    }
}

fn check_decode() {
    for version in VERSIONS {
        for qos in [0, 1] {
            for payload_len in PAYLOAD_SIZES {
                let small = quietest(
                    || decode_all(version, wire(version, qos, 10, payload_len), payload_len),
                    |r| r.allocations,
                );
                let large = quietest(
                    || decode_all(version, wire(version, qos, 1000, payload_len), payload_len),
                    |r| r.allocations,
                );
                let case = format!("{version:?} QoS {qos}, {payload_len} B payloads");
                assert_eq!(small.packets, 10, "{case}");
                assert_eq!(large.packets, 1000, "{case}");
                assert_eq!(small.copied + large.copied, 0, "{case}: payload copied");
                assert_eq!(
                    small.allocations, large.allocations,
                    "{case}: allocations grow with the number of packets"
                );
                assert!(
                    large.allocations <= 1,
                    "{case}: {} allocations for 1000 packets",
                    large.allocations
                );
            }
        }
    }
}

/// `n` MQTT 5 PUBLISH packets carrying a Topic Alias, two User Properties and Correlation Data.
fn wire_with_properties(qos: u8, n: usize, payload_len: usize) -> Vec<u8> {
    let payload = payload(payload_len);
    let mut buf = BytesMut::new();
    for i in 0..n {
        let mut p = publish(qos, i, &payload);
        p.properties.topic_alias = std::num::NonZeroU16::new(1 + i as u16 % 10);
        p.properties.user_properties = vec![
            UserProperty::new("trace", "0af7651916cd43dd").unwrap(),
            UserProperty::new("unit", "°C").unwrap(),
        ];
        p.properties.correlation_data = Some(Bytes::from_static(b"req-17"));
        Packet::Publish(p)
            .encode(ProtocolVersion::V5, &mut buf)
            .unwrap();
    }
    buf.to_vec()
}

/// Decodes every packet of `input` with `decode_slice`, counting allocations and borrowed
/// fields that do not lie inside the input.
fn decode_slice_all(version: ProtocolVersion, input: &[u8], payload_len: usize) -> DecodeRun {
    let decoder = Decoder::new(version);
    let base = input.as_ptr() as usize;
    let range = base..base + input.len();
    let mut rest = input;
    let mut packets = 0;
    let mut copied = 0;
    let region = Region::new(GLOBAL);
    while let Some((packet, used)) = decoder.decode_slice(rest).unwrap() {
        let PacketRef::Publish(publish) = packet else {
            panic!("not a PUBLISH")
        };
        if publish.payload.len() != payload_len
            || !contains(&range, publish.payload)
            || !contains(&range, publish.topic.as_bytes())
            || !(publish.raw_properties().is_empty() || contains(&range, publish.raw_properties()))
        {
            copied += 1;
        }
        packets += 1;
        rest = &rest[used..];
    }
    let stats = region.change();
    assert!(rest.is_empty());
    DecodeRun {
        packets,
        allocations: stats.allocations + stats.reallocations,
        copied,
    }
}

fn check_decode_slice() {
    for version in VERSIONS {
        for qos in [0, 1] {
            for payload_len in PAYLOAD_SIZES {
                let case = format!("{version:?} QoS {qos}, {payload_len} B payloads, borrowed");
                let input = wire(version, qos, 1000, payload_len);
                let run = quietest(
                    || decode_slice_all(version, &input, payload_len),
                    |r| r.allocations,
                );
                assert_eq!(run.packets, 1000, "{case}");
                assert_eq!(
                    run.copied, 0,
                    "{case}: a field is not borrowed from the input"
                );
                assert_eq!(run.allocations, 0, "{case}: decode_slice allocated");
            }
        }
    }
    for qos in [0, 1] {
        let case = format!("V5 QoS {qos} with properties, borrowed");
        let input = wire_with_properties(qos, 1000, 16);
        let run = quietest(
            || decode_slice_all(ProtocolVersion::V5, &input, 16),
            |r| r.allocations,
        );
        assert_eq!(run.packets, 1000, "{case}");
        assert_eq!(
            run.copied, 0,
            "{case}: a field is not borrowed from the input"
        );
        assert_eq!(run.allocations, 0, "{case}: decode_slice allocated");
        // The properties are there, and decode on demand (which may allocate: it is a copy).
        let Some((PacketRef::Publish(first), _)) = Decoder::new(ProtocolVersion::V5)
            .decode_slice(&input)
            .unwrap()
        else {
            panic!("not a PUBLISH")
        };
        assert!(first.topic_alias().is_some(), "{case}");
        assert_eq!(first.properties().user_properties.len(), 2, "{case}");
    }
}

/// Allocations made while encoding `n` packets with `Packet::encode` into a buffer that
/// already has room for them.
fn encode_allocations(version: ProtocolVersion, qos: u8, n: usize, payload_len: usize) -> usize {
    let payload = payload(payload_len);
    let packets: Vec<Packet> = (0..n)
        .map(|i| Packet::Publish(publish(qos, i, &payload)))
        .collect();
    let total: usize = packets
        .iter()
        .map(|p| p.encoded_len(version).unwrap())
        .sum();
    let mut buf = BytesMut::with_capacity(total);
    let region = Region::new(GLOBAL);
    for packet in &packets {
        packet.encode(version, &mut buf).unwrap();
    }
    let stats = region.change();
    assert_eq!(buf.len(), total);
    stats.allocations + stats.reallocations
}

/// Allocations made by the zero-copy path: the header goes into a buffer with room for all
/// headers, the payload is handed out as a shared `Bytes` (what a vectored write would take).
fn zero_copy_allocations(version: ProtocolVersion, qos: u8, n: usize, payload_len: usize) -> usize {
    let payload = payload(payload_len);
    // Shared once up front, as a payload queued for sending already is.
    let _queued = payload.clone();
    let publishes: Vec<Publish> = (0..n).map(|i| publish(qos, i, &payload)).collect();
    let mut headers = BytesMut::with_capacity(n * 16);
    let mut chunks: Vec<Bytes> = Vec::with_capacity(2 * n);
    let mut total = 0;
    let region = Region::new(GLOBAL);
    for p in &publishes {
        total += p.encode_header(version, &mut headers).unwrap();
        chunks.push(headers.split().freeze());
        chunks.push(p.payload.clone());
    }
    let stats = region.change();
    let sent: usize = chunks.iter().map(Bytes::len).sum();
    assert_eq!(sent, total);
    for pair in chunks.chunks(2) {
        assert_eq!(pair[1].as_ptr(), payload.as_ptr(), "payload copied");
    }
    stats.allocations + stats.reallocations
}

fn check_encode() {
    for version in VERSIONS {
        for qos in [0, 1] {
            for payload_len in PAYLOAD_SIZES {
                let case = format!("{version:?} QoS {qos}, {payload_len} B payloads");
                assert_eq!(
                    quietest(
                        || encode_allocations(version, qos, 1000, payload_len),
                        |n| *n
                    ),
                    0,
                    "{case}: Packet::encode allocated"
                );
                let small = quietest(
                    || zero_copy_allocations(version, qos, 10, payload_len),
                    |n| *n,
                );
                let large = quietest(
                    || zero_copy_allocations(version, qos, 1000, payload_len),
                    |n| *n,
                );
                assert_eq!(
                    small, large,
                    "{case}: zero-copy encode allocations grow with the number of packets"
                );
                assert!(large <= 1, "{case}: {large} allocations for 1000 headers");
            }
        }
    }
}

#[test]
fn hot_paths_do_not_allocate() {
    check_decode();
    check_decode_slice();
    check_encode();
}
