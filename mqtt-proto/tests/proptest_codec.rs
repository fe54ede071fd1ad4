//! Property tests of the codec: arbitrary packets (built by `arbitrary` from proptest's byte
//! vectors) must survive encode-then-decode, their strict prefixes must ask for more input, a
//! stream of them must decode the same however it is cut, and arbitrary bytes must never make
//! the decoder panic.
#![cfg(feature = "arbitrary")]

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use mqtt_streaming_proto::fuzz_checks::{self, normalise};
use mqtt_streaming_proto::{
    DecodeError, Decoder, EncodeError, Packet, PacketType, ProtocolVersion, Publish, QosPid,
};
use proptest::prelude::*;

const CASES: u32 = 512;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Raw material for `arbitrary`: long enough for a few packets with properties.
fn seed() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..1536)
}

/// Every packet `arbitrary` builds from `data` that encodes for `version`, with its encoding.
fn encodable(data: &[u8], version: ProtocolVersion) -> Vec<(Packet, BytesMut)> {
    let mut u = Unstructured::new(data);
    let mut out = Vec::new();
    while !u.is_empty() && out.len() < 12 {
        let Ok(packet) = Packet::arbitrary(&mut u) else {
            break;
        };
        let mut buf = BytesMut::new();
        if packet.encode(version, &mut buf).is_ok() {
            out.push((packet, buf));
        }
    }
    out
}

fn decode_one(version: ProtocolVersion, bytes: &BytesMut) -> Packet {
    let mut buf = bytes.clone();
    let packet = Decoder::new(version)
        .decode(&mut buf)
        .expect("own encoding is valid")
        .expect("own encoding is complete");
    assert!(buf.is_empty(), "the packet left bytes behind");
    packet
}

proptest! {
    #![proptest_config(config())]

    /// MQTT 5 keeps every field: decode(encode(p)) == p. The one exception is a CONNECT whose
    /// own protocol is 3.1.x, since CONNECT is always encoded with its own version.
    #[test]
    fn v5_encode_then_decode_is_identity(data in seed()) {
        for (packet, bytes) in encodable(&data, ProtocolVersion::V5) {
            let decoded = decode_one(ProtocolVersion::V5, &bytes);
            match &packet {
                Packet::Connect(c) if !c.protocol.is_v5() => {
                    prop_assert_eq!(decoded, normalise(&packet, ProtocolVersion::V5));
                }
                _ => prop_assert_eq!(decoded, packet),
            }
        }
    }

    /// MQTT 3.1.1 and 3.1 drop the MQTT 5-only fields and map reason codes to return codes:
    /// decode(encode(p)) is the normalised p, and encoding that again gives the same bytes.
    #[test]
    fn v3_encode_then_decode_is_normalised(data in seed()) {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V3_1] {
            for (packet, bytes) in encodable(&data, version) {
                let decoded = decode_one(version, &bytes);
                prop_assert_eq!(&decoded, &normalise(&packet, version));
                let mut again = BytesMut::new();
                decoded.encode(version, &mut again).unwrap();
                prop_assert_eq!(again, bytes);
            }
        }
    }

    /// AUTH does not exist before MQTT 5: encoding one for 3.1.1 is refused, and writes nothing.
    #[test]
    fn auth_is_refused_before_v5(data in seed()) {
        let mut u = Unstructured::new(&data);
        if let Ok(auth) = mqtt_streaming_proto::Auth::arbitrary(&mut u) {
            let mut buf = BytesMut::from(&b"kept"[..]);
            let result = Packet::Auth(auth).encode(ProtocolVersion::V3_1_1, &mut buf);
            prop_assert_eq!(result, Err(EncodeError::NotInVersion(PacketType::Auth)));
            prop_assert_eq!(&buf[..], b"kept");
        }
    }

    /// Every strict prefix of a valid packet is `Ok(None)` and consumes nothing, in both
    /// versions: a partial packet is never an error.
    #[test]
    fn strict_prefixes_ask_for_more(data in seed()) {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let decoder = Decoder::new(version);
            for (_, bytes) in encodable(&data, version) {
                for len in 0..bytes.len() {
                    let mut prefix = BytesMut::from(&bytes[..len]);
                    prop_assert_eq!(decoder.decode(&mut prefix), Ok(None));
                    prop_assert_eq!(prefix.len(), len);
                }
            }
        }
    }

    /// A stream of many packets cut at arbitrary points decodes to the same sequence as the
    /// whole stream, which is the sequence of normalised packets.
    #[test]
    fn split_stream_decodes_to_same_sequence(
        data in seed(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
        v5 in any::<bool>(),
    ) {
        let version = if v5 { ProtocolVersion::V5 } else { ProtocolVersion::V3_1_1 };
        let packets = encodable(&data, version);
        let mut stream = BytesMut::new();
        for (_, bytes) in &packets {
            stream.extend_from_slice(bytes);
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.sort_unstable();
        points.push(stream.len());

        let decoder = Decoder::new(version);
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        let mut start = 0;
        for end in points {
            buf.extend_from_slice(&stream[start..end]);
            start = end;
            while let Some(p) = decoder.decode(&mut buf).expect("valid stream") {
                decoded.push(p);
            }
        }
        prop_assert!(buf.is_empty());
        let expected: Vec<Packet> = packets.iter().map(|(p, _)| normalise(p, version)).collect();
        prop_assert_eq!(decoded, expected);
    }

    /// [MQTT-1.5.5-1] The encoder writes the Remaining Length in the fewest bytes, and
    /// [MQTT-2.1.3-1] / 3.1.1 [MQTT-2.2.2-1] the fixed-header flags the packet type requires.
    #[test]
    fn fixed_header_is_minimal_with_required_flags_mqtt_1_5_5_1_mqtt_2_1_3_1(data in seed()) {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for (packet, bytes) in encodable(&data, version) {
                let remaining = bytes.len() - 1 - varint_bytes(&bytes[1..]);
                let mut minimal = BytesMut::new();
                put_varint(&mut minimal, remaining);
                prop_assert_eq!(&bytes[1..1 + minimal.len()], &minimal[..]);
                prop_assert_eq!(bytes[0] >> 4, packet.packet_type().as_u8());
                if let Some(flags) = packet.packet_type().required_flags() {
                    prop_assert_eq!(bytes[0] & 0x0f, flags);
                }
            }
        }
    }

    /// [MQTT-3.3.1-2] The DUP flag is 0 in every QoS 0 PUBLISH: the encoder never writes a
    /// QoS 0 PUBLISH with DUP set (it refuses the packet), and the decoder refuses one.
    #[test]
    fn dup_never_on_qos0_mqtt_3_3_1_2(data in seed(), v5 in any::<bool>()) {
        let version = if v5 { ProtocolVersion::V5 } else { ProtocolVersion::V3_1_1 };
        let mut u = Unstructured::new(&data);
        if let Ok(mut publish) = Publish::arbitrary(&mut u) {
            publish.dup = true;
            publish.qos_pid = QosPid::AtMostOnce;
            let mut buf = BytesMut::new();
            let result = Packet::Publish(publish.clone()).encode(version, &mut buf);
            prop_assert!(result.is_err(), "DUP written on a QoS 0 PUBLISH");
            prop_assert!(buf.is_empty());
            // The same packet with DUP clear, then the flag forced on the wire.
            publish.dup = false;
            if Packet::Publish(publish).encode(version, &mut buf).is_ok() {
                buf[0] |= 0b1000;
                prop_assert_eq!(
                    Decoder::new(version).decode(&mut buf),
                    Err(DecodeError::DupWithQoS0)
                );
            }
        }
    }

    /// A packet of exactly the Maximum Packet Size decodes; one byte more is refused from the
    /// fixed header with Packet too large (the receiving side of [MQTT-3.2.2-15] and
    /// [MQTT-3.1.2-24] in 5.0).
    #[test]
    fn maximum_packet_size_is_exact_mqtt_3_2_2_15(data in seed()) {
        for (packet, bytes) in encodable(&data, ProtocolVersion::V5) {
            let size = bytes.len() as u32;
            let exact = Decoder::new(ProtocolVersion::V5).with_max_packet_size(size);
            let decoded = exact.decode(&mut bytes.clone()).unwrap().unwrap();
            prop_assert_eq!(decoded.packet_type(), packet.packet_type());
            let under = Decoder::new(ProtocolVersion::V5).with_max_packet_size(size - 1);
            let mut head = BytesMut::from(&bytes[..bytes.len().min(5)]);
            prop_assert_eq!(
                under.decode(&mut head),
                Err(DecodeError::PacketTooLarge { size: bytes.len(), max: size - 1 })
            );
        }
    }

    /// Decoding arbitrary bytes never panics, for any version and size limit, and everything
    /// that decodes re-encodes canonically (the full decode check of the fuzz target).
    #[test]
    fn decoding_arbitrary_bytes_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzz_checks::check_decode(&data);
    }

    /// The same check on bytes that start like a real packet: a valid first byte and a
    /// Remaining Length that fits the input, so bodies get parsed rather than refused early.
    #[test]
    fn decoding_plausible_packets_never_panics(
        first in any::<u8>(),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut data = vec![first];
        let mut len = BytesMut::new();
        put_varint(&mut len, body.len());
        data.extend_from_slice(&len);
        data.extend_from_slice(&body);
        fuzz_checks::check_decode(&data);
    }

    /// The roundtrip and stream checks of the fuzz targets on proptest's inputs.
    #[test]
    fn fuzz_roundtrip_and_stream_checks_hold(data in seed()) {
        fuzz_checks::check_roundtrip(&data);
        fuzz_checks::check_decode_stream(&data);
    }
}

/// Bytes taken by the Variable Byte Integer at the front of `bytes`.
fn varint_bytes(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|b| b & 0x80 == 0)
        .expect("terminated")
        + 1
}

/// A test-side Variable Byte Integer writer (section 1.5.5), independent of the codec's.
fn put_varint(buf: &mut BytesMut, mut value: usize) {
    loop {
        let byte = (value % 128) as u8;
        value /= 128;
        if value == 0 {
            buf.extend_from_slice(&[byte]);
            return;
        }
        buf.extend_from_slice(&[byte | 0x80]);
    }
}
