//! The borrowed decoder (`Decoder::decode_slice`) against the owned one (`Decoder::decode`):
//! for the same bytes, both must ask for more input, or fail with the same error, or decode the
//! same packet (the borrowed one made owned with `PacketRef::to_owned`) of the same size.
//!
//! Inputs: arbitrary bytes; bytes that start like a packet of each type; streams of arbitrary
//! valid packets (built by `arbitrary`, as in `proptest_codec.rs`), whole and with a few bytes
//! changed so that errors deep inside otherwise valid packets (properties, topics, packet
//! identifiers) are reached; and PUBLISH packets with arbitrary properties, changed the same
//! way.
#![cfg(feature = "arbitrary")]

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use mqtt_streaming_proto::fuzz_checks::check_decode_slice_agrees;
use mqtt_streaming_proto::{
    DecodeError, Decoder, Packet, PacketRef, ProtocolVersion, Publish, PROTOCOL_MAX_PACKET_SIZE,
};
use proptest::prelude::*;

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn decoders() -> impl Iterator<Item = Decoder> {
    VERSIONS.into_iter().flat_map(|v| {
        [PROTOCOL_MAX_PACKET_SIZE, 64, 8]
            .into_iter()
            .map(move |max| Decoder::new(v).with_max_packet_size(max))
    })
}

/// The encodings of the packets `arbitrary` builds from `data` that encode for `version`, and
/// how many there are.
fn encoded_stream(data: &[u8], version: ProtocolVersion, publish_only: bool) -> (Vec<u8>, usize) {
    let mut u = Unstructured::new(data);
    let mut stream = BytesMut::new();
    let mut n = 0;
    while !u.is_empty() && n < 8 {
        let packet = if publish_only {
            Publish::arbitrary(&mut u).map(Packet::Publish)
        } else {
            Packet::arbitrary(&mut u)
        };
        let Ok(packet) = packet else { break };
        if packet.encode(version, &mut stream).is_ok() {
            n += 1;
        }
    }
    (stream.to_vec(), n)
}

/// XORs `mask` into the byte at each `(index, mask)` position.
fn mutate(bytes: &mut [u8], edits: &[(prop::sample::Index, u8)]) {
    if bytes.is_empty() {
        return;
    }
    for (index, mask) in edits {
        let i = index.index(bytes.len());
        bytes[i] ^= mask;
    }
}

/// Topic bytes: ordinary, separators, wildcards, U+0000, a two-byte UTF-8 sequence's halves,
/// and a byte that is never UTF-8.
const TOPIC_BYTES: [u8; 9] = [b'a', b'/', b'$', b'+', b'#', 0x00, 0xC3, 0xA9, 0xFF];

/// PUBLISH properties, properties of other packets, and unknown identifiers.
const PROPERTY_IDS: [u8; 13] = [
    0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26, 0x11, 0x1F, 0x00, 0x7F, 0x80,
];

fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8)>> {
    prop::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..4)
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes, every version and a few size limits.
    #[test]
    fn agrees_on_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..300)) {
        for decoder in decoders() {
            check_decode_slice_agrees(&decoder, &data);
        }
    }

    /// A valid first byte of any type (flags included) and a Remaining Length that fits the
    /// body, so that bodies are parsed instead of refused from the fixed header.
    #[test]
    fn agrees_on_plausible_packets(
        first in any::<u8>(),
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut data = vec![first];
        let mut len = body.len();
        loop {
            let byte = (len % 128) as u8;
            len /= 128;
            if len == 0 {
                data.push(byte);
                break;
            }
            data.push(byte | 0x80);
        }
        data.extend_from_slice(&body);
        for decoder in decoders() {
            check_decode_slice_agrees(&decoder, &data);
        }
    }

    /// PUBLISH-shaped bytes: any flags, a short topic from an alphabet with wildcards, U+0000
    /// and broken UTF-8, any packet identifier (0 included), then a property block of known
    /// and unknown identifiers with random values, then a payload.
    #[test]
    fn agrees_on_plausible_publish(
        flags in 0..16u8,
        topic in prop::collection::vec(prop::sample::select(TOPIC_BYTES.to_vec()), 0..6),
        pid in prop::sample::select(vec![0u16, 1, 0xFFFF]),
        properties in prop::collection::vec(
            (prop::sample::select(PROPERTY_IDS.to_vec()), prop::collection::vec(any::<u8>(), 0..6)),
            0..4,
        ),
        payload in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut body = Vec::new();
        body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        body.extend_from_slice(&topic);
        if flags & 0b0110 != 0 {
            body.extend_from_slice(&pid.to_be_bytes());
        }
        let mut block = Vec::new();
        for (id, value) in &properties {
            block.push(*id);
            block.extend_from_slice(value);
        }
        let mut v5_body = body.clone();
        v5_body.push(block.len() as u8);
        v5_body.extend_from_slice(&block);
        for (body, version) in [(&body, ProtocolVersion::V3_1_1), (&v5_body, ProtocolVersion::V5)] {
            let mut data = vec![0x30 | flags, (body.len() + payload.len()) as u8];
            data.extend_from_slice(body);
            data.extend_from_slice(&payload);
            check_decode_slice_agrees(&Decoder::new(version), &data);
        }
    }

    /// Streams of valid packets of every type decode completely, the same way, in every
    /// version.
    #[test]
    fn agrees_on_encoded_packets(data in prop::collection::vec(any::<u8>(), 0..1536)) {
        for version in VERSIONS {
            let (stream, n) = encoded_stream(&data, version, false);
            let decoder = Decoder::new(version);
            prop_assert_eq!(check_decode_slice_agrees(&decoder, &stream), n);
        }
    }

    /// The same streams with a few bytes changed.
    #[test]
    fn agrees_on_damaged_packets(
        data in prop::collection::vec(any::<u8>(), 0..1536),
        edits in edits(),
    ) {
        for version in VERSIONS {
            let (mut stream, _) = encoded_stream(&data, version, false);
            mutate(&mut stream, &edits);
            check_decode_slice_agrees(&Decoder::new(version), &stream);
        }
    }

    /// PUBLISH packets with arbitrary properties (user properties, aliases, response topics,
    /// subscription identifiers, ...): whole, they decode the same and completely; damaged,
    /// they fail the same or decode the same.
    #[test]
    fn agrees_on_publish_with_properties(
        data in prop::collection::vec(any::<u8>(), 0..1536),
        edits in edits(),
    ) {
        for version in VERSIONS {
            let (mut stream, n) = encoded_stream(&data, version, true);
            let decoder = Decoder::new(version);
            prop_assert_eq!(check_decode_slice_agrees(&decoder, &stream), n);
            mutate(&mut stream, &edits);
            check_decode_slice_agrees(&decoder, &stream);
        }
    }
}

/// The borrowed PUBLISH of a known packet: fields, accessors and the owned copy.
#[test]
fn borrowed_publish_fields_and_properties() {
    // MQTT 5 PUBLISH, QoS 1, DUP, RETAIN, topic "a/b", packet id 7, properties: Topic Alias 3,
    // User Property ("k", "v"); payload "xyz".
    let bytes = [
        0x3B, 21, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x07, 10, 0x23, 0x00, 0x03, 0x26, 0x00, 0x01,
        b'k', 0x00, 0x01, b'v', b'x', b'y', b'z', 0xC0, 0x00,
    ];
    let decoder = Decoder::new(ProtocolVersion::V5);
    let Ok(Some((PacketRef::Publish(p), used))) = decoder.decode_slice(&bytes) else {
        panic!("a whole PUBLISH");
    };
    assert_eq!(used, 23);
    assert!(p.dup && p.retain);
    assert_eq!(p.qos_pid.packet_id().map(|id| id.get()), Some(7));
    assert_eq!(p.topic, "a/b");
    assert_eq!(p.payload, b"xyz");
    assert_eq!(p.raw_properties(), &bytes[10..20]);
    assert_eq!(p.topic_alias().map(|a| a.get()), Some(3));
    let properties = p.properties();
    assert_eq!(properties.user_properties.len(), 1);
    assert_eq!(properties.user_properties[0].name.as_str(), "k");
    assert_eq!(properties.user_properties[0].value.as_str(), "v");
    let owned = decoder
        .decode(&mut BytesMut::from(&bytes[..]))
        .unwrap()
        .unwrap();
    assert_eq!(Packet::Publish(p.to_owned()), owned);
    // The PINGREQ after it comes back owned.
    assert_eq!(
        decoder.decode_slice(&bytes[used..]),
        Ok(Some((PacketRef::Other(Packet::PingReq), 2)))
    );
}

/// A few rejections, spelled out: the borrowed decoder returns the owned decoder's error.
#[test]
fn borrowed_rejections_match_owned() {
    let cases: [(ProtocolVersion, &[u8], DecodeError); 6] = [
        // DUP on QoS 0.
        (
            ProtocolVersion::V3_1_1,
            &[0x38, 0x04, 0x00, 0x01, b'a', b'x'],
            DecodeError::DupWithQoS0,
        ),
        // Packet identifier 0.
        (
            ProtocolVersion::V3_1_1,
            &[0x32, 0x05, 0x00, 0x01, b'a', 0x00, 0x00],
            DecodeError::ZeroPacketId,
        ),
        // Wildcard in the topic name.
        (
            ProtocolVersion::V3_1_1,
            &[0x30, 0x03, 0x00, 0x01, b'+'],
            DecodeError::InvalidTopic(mqtt_streaming_proto::TopicError::WildcardInName),
        ),
        // Empty topic without a Topic Alias.
        (
            ProtocolVersion::V5,
            &[0x30, 0x03, 0x00, 0x00, 0x00],
            DecodeError::EmptyTopicWithoutAlias,
        ),
        // Topic Alias twice.
        (
            ProtocolVersion::V5,
            &[
                0x30, 0x0A, 0x00, 0x01, b'a', 0x06, 0x23, 0x00, 0x01, 0x23, 0x00, 0x02,
            ],
            DecodeError::DuplicateProperty(mqtt_streaming_proto::PropertyId::TopicAlias),
        ),
        // Topic Alias 0.
        (
            ProtocolVersion::V5,
            &[0x30, 0x07, 0x00, 0x01, b'a', 0x03, 0x23, 0x00, 0x00],
            DecodeError::InvalidPropertyValue(mqtt_streaming_proto::PropertyId::TopicAlias),
        ),
    ];
    for (version, bytes, error) in cases {
        let decoder = Decoder::new(version);
        assert_eq!(
            decoder.decode_slice(bytes),
            Err(error.clone()),
            "{bytes:02x?}"
        );
        assert_eq!(
            decoder.decode(&mut BytesMut::from(bytes)),
            Err(error),
            "{bytes:02x?}"
        );
    }
    // Packet too large, from the fixed header alone.
    let decoder = Decoder::new(ProtocolVersion::V3_1_1).with_max_packet_size(10);
    assert_eq!(
        decoder.decode_slice(&[0x30, 0x7F]),
        Err(DecodeError::PacketTooLarge { size: 129, max: 10 })
    );
}
