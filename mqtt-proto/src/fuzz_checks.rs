//! Invariant checks of the codec, shared by the cargo-fuzz targets in `fuzz/` and by the test
//! that replays their committed corpus (`tests/fuzz_corpus.rs`), so each check exists once.
//!
//! Each function takes raw fuzzer input and panics (through `assert!`) as soon as an invariant
//! is violated; returning normally means the input found nothing. They are meant for testing
//! only and are compiled with the `arbitrary` feature.
//!
//! - [`check_decode`]: arbitrary bytes through every decoder configuration.
//! - [`check_decode_stream`]: valid packets, cut into arbitrary fragments.
//! - [`check_roundtrip`]: arbitrary packet values, encoded and decoded again.
//!
//! [`normalise`] states what a packet looks like after a trip through the wire of a given
//! protocol version; the checks and the property tests compare against it.

use alloc::format;
use alloc::vec::Vec;

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;

use crate::{
    Decoder, Packet, ProtocolVersion, Publish, ReasonCode, SubscriptionOptions,
    PROTOCOL_MAX_PACKET_SIZE,
};

/// Every protocol version the decoder can be set to.
const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

/// Maximum Packet Sizes [`check_decode`] tries: the protocol's own limit and a few small ones,
/// so that the size check runs both before and after a body is complete.
const MAX_PACKET_SIZES: [u32; 4] = [PROTOCOL_MAX_PACKET_SIZE, 256, 16, 2];

/// Upper bound on the packets one input builds, to keep each run short.
const MAX_PACKETS: usize = 16;

/// The value a decoder produces from `packet` encoded for `version`, for a packet that encodes
/// without error.
///
/// Everything survives an MQTT 5 trip. The legitimate differences, each a rule of the
/// standards rather than a loss in the codec:
///
/// - CONNECT is always encoded with its own `protocol`, whatever `version` says, so a CONNECT
///   for 3.1 or 3.1.1 loses its properties and will properties even on an MQTT 5 connection.
/// - For 3.1 and 3.1.1, every MQTT 5-only field takes its default: properties, the reason code
///   of PUBACK/PUBREC/PUBREL/PUBCOMP, DISCONNECT and UNSUBACK, and the subscription options
///   other than QoS; CONNACK and SUBACK reason codes become the 3.1.1 return code nearest to
///   them and then the reason code that return code decodes to.
pub fn normalise(packet: &Packet, version: ProtocolVersion) -> Packet {
    if let Packet::Connect(connect) = packet {
        let mut connect = connect.clone();
        if !connect.protocol.is_v5() {
            connect.properties = Default::default();
            if let Some(will) = &mut connect.will {
                will.properties = Default::default();
            }
        }
        return Packet::Connect(connect);
    }
    if version.is_v5() {
        return packet.clone();
    }
    let mut packet = packet.clone();
    match &mut packet {
        Packet::Connect(_) | Packet::PingReq | Packet::PingResp | Packet::Auth(_) => {}
        Packet::ConnAck(p) => {
            p.properties = Default::default();
            p.reason_code = ReasonCode::from_v3_connack(p.reason_code.to_v3_connack())
                .expect("every reason code maps to a 3.1.1 CONNACK return code");
        }
        Packet::Publish(p) => p.properties = Default::default(),
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            p.reason_code = ReasonCode::Success;
            p.properties = Default::default();
        }
        Packet::Subscribe(p) => {
            p.properties = Default::default();
            for s in &mut p.subscriptions {
                s.options = SubscriptionOptions::new(s.options.qos);
            }
        }
        Packet::SubAck(p) => {
            p.properties = Default::default();
            for code in &mut p.reason_codes {
                *code = ReasonCode::from_v3_suback(code.to_v3_suback())
                    .expect("every reason code maps to a 3.1.1 SUBACK return code");
            }
        }
        Packet::Unsubscribe(p) => p.properties = Default::default(),
        Packet::UnsubAck(p) => {
            p.reason_codes.clear();
            p.properties = Default::default();
        }
        Packet::Disconnect(p) => *p = Default::default(),
    }
    packet
}

/// Decodes arbitrary bytes with every protocol version and several Maximum Packet Sizes, taking
/// packets off the front until the decoder asks for more or fails.
///
/// Panics when:
/// - decoding panics, or `Ok(None)` consumed bytes;
/// - a decoded packet consumed other than the size its fixed header declares, or more than the
///   Maximum Packet Size;
/// - [`Decoder::peek_header`] and [`Decoder::decode`] disagree about the fixed header;
/// - a decoded packet does not re-encode for the decoder's version, or its re-encoding does
///   not decode to the same value and re-encode to the same bytes (the encoding is a
///   canonical form);
/// - a decoded packet is not already in its [`normalise`]d form;
/// - a strict prefix of a decoded packet, or of its re-encoding, is not `Ok(None)`;
/// - the size limit is not exact: with a limit one byte under the packet's size the decoder
///   must refuse it as too large, with a limit of exactly its size it must accept it;
/// - [`Decoder::decode_slice`] disagrees with [`Decoder::decode`] (see
///   [`check_decode_slice_agrees`]).
pub fn check_decode(data: &[u8]) {
    for version in VERSIONS {
        for max in MAX_PACKET_SIZES {
            decode_all(Decoder::new(version).with_max_packet_size(max), data);
        }
    }
}

fn decode_all(decoder: Decoder, data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let mut offset = 0;
    loop {
        let before = buf.len();
        let header = decoder.peek_header(&buf);
        let borrowed = decoder
            .decode_slice(&buf)
            .map(|r| r.map(|(p, n)| (p.to_owned(), n)));
        let result = decoder.decode(&mut buf);
        assert_slice_agrees(&borrowed, &result, before - buf.len());
        match result {
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumed input");
                match header {
                    Ok(None) => {}
                    Ok(Some(h)) => assert!(
                        h.packet_size() > before,
                        "Ok(None) although the whole packet ({h:?}) is buffered"
                    ),
                    Err(e) => panic!("peek_header failed with {e:?} but decode asked for more"),
                }
                return;
            }
            Err(e) => {
                // Every error describes itself without panicking.
                let _ = (e.reason_code(), e.rule(), format!("{e}"));
                if let Err(header_error) = header {
                    assert_eq!(header_error, e, "peek_header and decode disagree");
                }
                return;
            }
            Ok(Some(packet)) => {
                let consumed = before - buf.len();
                let h = match header {
                    Ok(Some(h)) => h,
                    other => panic!("decoded {packet:?} but peek_header said {other:?}"),
                };
                assert_eq!(
                    consumed,
                    h.packet_size(),
                    "consumed other than the declared size"
                );
                assert!(consumed <= decoder.max_packet_size() as usize);
                assert_eq!(h.packet_type, packet.packet_type());
                let raw = &data[offset..offset + consumed];
                offset += consumed;
                check_prefixes(&decoder, raw);
                check_size_limit(decoder, raw, &packet);
                check_reencode(decoder.version(), &packet);
            }
        }
    }
}

/// Decodes `data` packet by packet with [`Decoder::decode_slice`] and [`Decoder::decode`]
/// side by side, until one asks for more input or fails, and panics unless they agree at
/// every step: both `Ok(None)`, or the same error, or the same packet (the borrowed one made
/// owned) of the same size; a PUBLISH comes back borrowed, its Topic Alias and raw property
/// block matching the owned packet's properties, its topic and payload inside `data`; any
/// other packet comes back owned. Returns how many packets were decoded.
pub fn check_decode_slice_agrees(decoder: &Decoder, data: &[u8]) -> usize {
    let mut buf = BytesMut::from(data);
    let mut rest = data;
    let mut count = 0;
    loop {
        let before = buf.len();
        let slice_result = decoder.decode_slice(rest);
        if let Ok(Some((packet, used))) = &slice_result {
            check_packet_ref(packet, data);
            rest = &rest[(*used).min(rest.len())..];
        }
        let borrowed = slice_result.map(|r| r.map(|(p, n)| (p.to_owned(), n)));
        let owned = decoder.decode(&mut buf);
        assert_slice_agrees(&borrowed, &owned, before - buf.len());
        match owned {
            Ok(Some(_)) => count += 1,
            _ => return count,
        }
    }
}

/// A borrowed packet is what it should be: PUBLISH borrowed from `input` with consistent
/// accessors, anything else owned.
fn check_packet_ref(packet: &crate::PacketRef<'_>, input: &[u8]) {
    let range = input.as_ptr_range();
    let inside =
        |s: &[u8]| s.is_empty() || (range.start <= s.as_ptr() && s.as_ptr_range().end <= range.end);
    match packet {
        crate::PacketRef::Publish(p) => {
            assert!(
                inside(p.topic.as_bytes()),
                "borrowed topic not in the input"
            );
            assert!(inside(p.payload), "borrowed payload not in the input");
            assert!(
                inside(p.raw_properties()),
                "raw properties not in the input"
            );
            assert_eq!(p.topic_alias(), p.properties().topic_alias);
            let owned = p.to_owned();
            assert_eq!(Packet::Publish(owned.clone()), packet.to_owned());
            assert_eq!(Publish::from(*p), owned);
        }
        crate::PacketRef::Other(other) => {
            assert_ne!(other.packet_type(), crate::PacketType::Publish);
        }
    }
    assert_eq!(packet.packet_type(), packet.to_owned().packet_type());
    assert_eq!(packet.clone().into_packet(), packet.to_owned());
}

/// The borrowed decoder's result (made owned) against the owned decoder's, which consumed
/// `consumed` bytes.
fn assert_slice_agrees(
    borrowed: &Result<Option<(Packet, usize)>, crate::DecodeError>,
    owned: &Result<Option<Packet>, crate::DecodeError>,
    consumed: usize,
) {
    match (borrowed, owned) {
        (Ok(None), Ok(None)) => {}
        (Err(a), Err(b)) => assert_eq!(a, b, "decode_slice and decode fail differently"),
        (Ok(Some((a, used))), Ok(Some(b))) => {
            assert_eq!(a, b, "decode_slice and decode decode different packets");
            assert_eq!(
                *used, consumed,
                "decode_slice and decode consume different sizes"
            );
        }
        (a, b) => panic!("decode_slice gave {a:?}, decode gave {b:?}"),
    }
}

/// A decoded packet re-encodes, canonically, to bytes that decode back to it.
fn check_reencode(version: ProtocolVersion, packet: &Packet) {
    assert_eq!(
        normalise(packet, version),
        *packet,
        "a decoded packet is not in normal form for {version}"
    );
    let mut first = BytesMut::new();
    if let Err(e) = packet.encode(version, &mut first) {
        panic!("decoded packet does not re-encode for {version}: {e:?}\n{packet:?}");
    }
    assert_eq!(packet.encoded_len(version), Ok(first.len()));
    // No length comparison with the input: an MQTT 5 acknowledgement or DISCONNECT may omit
    // an empty Property Length after its reason code, which the encoder always writes.
    let unlimited = Decoder::new(version);
    check_prefixes(&unlimited, &first);
    let first_bytes = first.clone();
    let again = match unlimited.decode(&mut first) {
        Ok(Some(again)) => again,
        other => panic!("re-encoding of {packet:?} decodes to {other:?}"),
    };
    assert!(first.is_empty(), "re-encoding has bytes after the packet");
    assert_eq!(again, *packet, "decode(encode(decode(x))) != decode(x)");
    let mut second = BytesMut::new();
    again
        .encode(version, &mut second)
        .expect("the same value encoded once already");
    assert_eq!(second, first_bytes, "encoding is not canonical");
}

/// The Maximum Packet Size is exact: a limit of the packet's size accepts it, one byte less
/// refuses it from the fixed header.
fn check_size_limit(decoder: Decoder, raw: &[u8], packet: &Packet) {
    let size = raw.len();
    let Ok(size_u32) = u32::try_from(size) else {
        return;
    };
    let exact = decoder.with_max_packet_size(size_u32);
    assert_eq!(
        exact.decode(&mut BytesMut::from(raw)).as_ref(),
        Ok(&Some(packet.clone()))
    );
    let under = decoder.with_max_packet_size(size_u32 - 1);
    match under.decode(&mut BytesMut::from(raw)) {
        Err(crate::DecodeError::PacketTooLarge { size: s, max }) => {
            assert_eq!((s, max), (size, size_u32 - 1));
        }
        other => panic!(
            "a {size}-byte packet with a limit of {} gave {other:?}",
            size - 1
        ),
    }
}

/// Every strict prefix of a complete packet is `Ok(None)` and consumes nothing: a reader must
/// never fail on a packet that has only partly arrived.
fn check_prefixes(decoder: &Decoder, packet: &[u8]) {
    let mut buf = BytesMut::with_capacity(packet.len());
    for &byte in packet {
        let len = buf.len();
        match decoder.decode(&mut buf) {
            Ok(None) => assert_eq!(buf.len(), len, "Ok(None) consumed a partial packet"),
            other => panic!("a {len}-byte prefix of {packet:02x?} decoded to {other:?}"),
        }
        buf.extend_from_slice(&[byte]);
    }
}

/// Splits the input into a decoder version, a list of cut points and a sequence of arbitrary
/// packets; encodes the packets (skipping those the encoder refuses) into one stream and
/// decodes it twice: fed in the fragments the cut points make, and whole.
///
/// Panics when a refused packet changed the buffer, when either decoding fails or leaves bytes
/// behind, when the fragments decode to a different sequence than the whole stream, or when
/// that sequence is not the [`normalise`]d packets.
pub fn check_decode_stream(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(&version) = u.choose(&VERSIONS) else {
        return;
    };
    let Ok(cut_count) = u.int_in_range(0..=24usize) else {
        return;
    };
    let mut cuts: Vec<usize> = Vec::with_capacity(cut_count);
    for _ in 0..cut_count {
        match u.arbitrary::<u16>() {
            Ok(c) => cuts.push(usize::from(c)),
            Err(_) => return,
        }
    }

    let mut stream = BytesMut::new();
    let mut expected = Vec::new();
    while !u.is_empty() && expected.len() < MAX_PACKETS {
        let Ok(packet) = Packet::arbitrary(&mut u) else {
            break;
        };
        let len = stream.len();
        match packet.encode(version, &mut stream) {
            Ok(()) => expected.push(normalise(&packet, version)),
            Err(_) => assert_eq!(stream.len(), len, "a failed encode wrote bytes"),
        }
    }

    for c in &mut cuts {
        *c %= stream.len() + 1;
    }
    cuts.sort_unstable();
    cuts.push(stream.len());

    let decoder = Decoder::new(version);
    let mut fragmented = Vec::new();
    let mut buf = BytesMut::new();
    let mut start = 0;
    for end in cuts {
        buf.extend_from_slice(&stream[start..end]);
        start = end;
        loop {
            let len = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(p)) => fragmented.push(p),
                Ok(None) => {
                    assert_eq!(buf.len(), len, "Ok(None) consumed input");
                    break;
                }
                Err(e) => panic!(
                    "valid stream failed after {} packets: {e:?}",
                    fragmented.len()
                ),
            }
        }
    }
    assert!(buf.is_empty(), "bytes left after the last fragment");

    let mut whole = stream.clone();
    let mut at_once = Vec::new();
    while let Some(p) = decoder.decode(&mut whole).expect("valid stream decodes") {
        at_once.push(p);
    }
    assert!(
        whole.is_empty(),
        "bytes left after decoding the whole stream"
    );
    assert_eq!(fragmented, at_once, "fragmentation changed the packets");
    assert_eq!(
        at_once, expected,
        "decoded packets differ from the normalised originals"
    );
}

/// Builds arbitrary packet values and encodes each for an arbitrary version, after arbitrary
/// bytes already in the buffer.
///
/// Panics when:
/// - [`Packet::encoded_len`] and [`Packet::encode`] disagree, about success or about length;
/// - a failed encode changed the buffer, or a successful one changed the bytes before it;
/// - the fixed header is not canonical: its Remaining Length is not written in the fewest
///   bytes ([MQTT-1.5.5-1]) or its packet type is wrong;
/// - [`Publish::encode_header`] followed by the payload differs from [`Packet::encode`];
/// - the encoding does not decode (with the same version; CONNECT with any version) to
///   exactly the packet, or, for 3.1.x and for CONNECTs of 3.1.x, to its [`normalise`]d form;
/// - the decoded value does not re-encode to the identical bytes;
/// - a strict prefix of the encoding is not `Ok(None)`.
pub fn check_roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(&version) = u.choose(&VERSIONS) else {
        return;
    };
    let Ok(prefix_len) = u.int_in_range(0..=8usize) else {
        return;
    };
    let Ok(prefix) = u.bytes(prefix_len) else {
        return;
    };
    let mut built = 0;
    while !u.is_empty() && built < MAX_PACKETS {
        let Ok(packet) = Packet::arbitrary(&mut u) else {
            return;
        };
        roundtrip_one(&packet, version, prefix);
        built += 1;
    }
}

/// Whether `packet` must decode to exactly itself after an MQTT 5 trip. The only exception: a
/// CONNECT is encoded with its own protocol version, so one for 3.1.x loses its MQTT 5 fields.
fn exact_in_v5(packet: &Packet) -> bool {
    !matches!(packet, Packet::Connect(c) if !c.protocol.is_v5())
}

fn roundtrip_one(packet: &Packet, version: ProtocolVersion, prefix: &[u8]) {
    let mut buf = BytesMut::from(prefix);
    let len = packet.encoded_len(version);
    let encoded = match packet.encode(version, &mut buf) {
        Err(e) => {
            assert_eq!(
                &buf[..],
                prefix,
                "a failed encode ({e:?}) changed the buffer"
            );
            assert_eq!(len, Err(e), "encoded_len and encode disagree");
            return;
        }
        Ok(()) => {
            assert_eq!(&buf[..prefix.len()], prefix, "encode changed earlier bytes");
            buf.split_off(prefix.len())
        }
    };
    assert_eq!(
        len,
        Ok(encoded.len()),
        "encoded_len differs from the bytes written"
    );

    let decoder = Decoder::new(version);
    let header = match decoder.peek_header(&encoded) {
        Ok(Some(h)) => h,
        other => panic!("own encoding of {packet:?} has header {other:?}"),
    };
    assert_eq!(header.packet_type, packet.packet_type());
    assert_eq!(header.packet_size(), encoded.len());
    // [MQTT-1.5.5-1]: the Remaining Length in the fewest bytes.
    assert_eq!(
        usize::from(header.header_length),
        1 + crate::wire::varint_len(header.remaining_length),
        "non-minimal Remaining Length"
    );

    if let Packet::Publish(publish) = packet {
        check_publish_header(publish, version, &encoded);
    }

    check_prefixes(&decoder, &encoded);
    let mut rest = encoded.clone();
    let decoded = match decoder.decode(&mut rest) {
        Ok(Some(p)) => p,
        other => panic!("own {version} encoding of {packet:?} decodes to {other:?}"),
    };
    assert!(
        rest.is_empty(),
        "the packet did not consume its whole encoding"
    );
    if version.is_v5() && exact_in_v5(packet) {
        assert_eq!(decoded, *packet, "an MQTT 5 round trip changed the packet");
    }
    assert_eq!(
        decoded,
        normalise(packet, version),
        "round trip for {version}"
    );

    if let Packet::Connect(_) = packet {
        // CONNECT carries its own version: every decoder reads it the same.
        for other in VERSIONS {
            let mut bytes = encoded.clone();
            assert_eq!(
                Decoder::new(other).decode(&mut bytes).as_ref(),
                Ok(&Some(decoded.clone()))
            );
        }
    }

    let mut again = BytesMut::new();
    decoded
        .encode(version, &mut again)
        .expect("a decoded packet re-encodes");
    assert_eq!(again, encoded, "re-encoding is not byte-identical");
}

/// The header-only encoding of a PUBLISH, followed by its payload, is the whole encoding.
fn check_publish_header(publish: &Publish, version: ProtocolVersion, encoded: &[u8]) {
    let mut header = BytesMut::new();
    let total = publish
        .encode_header(version, &mut header)
        .expect("encode succeeded, so encode_header does");
    assert_eq!(total, encoded.len());
    header.extend_from_slice(&publish.payload);
    assert_eq!(&header[..], encoded, "encode_header + payload != encode");
}
