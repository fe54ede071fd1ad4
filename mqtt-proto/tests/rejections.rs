//! Malformed input: one test per rule of the standards, asserting the exact [`DecodeError`]
//! and the MQTT 5 reason code a session reports it with (0x81 Malformed Packet, 0x82 Protocol
//! Error, 0x84 Unsupported Protocol Version, 0x95 Packet too large); then the encoder's
//! refusals ([`EncodeError`]), which must leave the output buffer untouched.
//!
//! Every input below is hand-written from the packet layouts of the standards. Each test names
//! the statement it checks and the version whose numbering it uses (3.1.1 or 5.0).

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    Auth, ConnAck, Connect, DecodeError, Decoder, Disconnect, EncodeError, MqttString, Packet,
    PacketId, PacketType, PropertyId, ProtocolVersion, PubResponse, Publish, QoS, QosPid,
    ReasonCode, StringError, SubAck, Subscribe, SubscriptionOptions, TopicError, TopicFilter,
    TopicName, UnsubAck, Unsubscribe,
};

const V31: ProtocolVersion = ProtocolVersion::V3_1;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

const MALFORMED: ReasonCode = ReasonCode::MalformedPacket;
const PROTOCOL: ReasonCode = ReasonCode::ProtocolError;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Decodes `bytes` with `version` and asserts the exact error and its reason code.
#[track_caller]
fn assert_rejects(version: ProtocolVersion, bytes: &[u8], error: DecodeError, code: ReasonCode) {
    let mut buf = BytesMut::from(bytes);
    let got = Decoder::new(version)
        .decode(&mut buf)
        .expect_err("the input must be rejected");
    assert_eq!(got, error, "input {bytes:02X?}");
    assert_eq!(got.reason_code(), code, "reason code of {got:?}");
    let rule = got.rule();
    assert!(
        rule.starts_with("MQTT-") && !rule.contains('?'),
        "rule {rule:?}"
    );
}

/// Decodes `bytes` with `version`; the packet must be accepted whole.
#[track_caller]
fn accepts(version: ProtocolVersion, bytes: &[u8]) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let packet = Decoder::new(version)
        .decode(&mut buf)
        .expect("must be accepted")
        .expect("a whole packet");
    assert!(buf.is_empty());
    packet
}

/// A v5 PUBLISH (QoS 0, topic "t") carrying the property block `props` (without its length)
/// and no payload.
fn v5_publish_with(props: &[u8]) -> Vec<u8> {
    assert!(props.len() < 128 && props.len() + 4 < 128);
    let mut b = vec![0x30, (3 + 1 + props.len()) as u8, 0x00, 0x01, b't'];
    b.push(props.len() as u8);
    b.extend_from_slice(props);
    b
}

/// A v5 CONNECT (client id "c") carrying the CONNECT property block `props`.
fn v5_connect_with(props: &[u8]) -> Vec<u8> {
    let mut b = vec![0x10, (10 + 1 + props.len() + 3) as u8];
    b.extend_from_slice(&[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C]);
    b.push(props.len() as u8);
    b.extend_from_slice(props);
    b.extend_from_slice(&[0x00, 0x01, b'c']);
    b
}

/// A v5 CONNECT with a will (topic "w", empty payload) carrying the will property block
/// `props`.
fn v5_connect_with_will(props: &[u8]) -> Vec<u8> {
    let mut b = vec![0x10, (10 + 1 + 3 + 1 + props.len() + 3 + 2) as u8];
    b.extend_from_slice(&[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x06, 0x00, 0x3C]);
    b.push(0x00); // CONNECT Property Length 0
    b.extend_from_slice(&[0x00, 0x01, b'c']); // Client Identifier
    b.push(props.len() as u8); // Will Property Length
    b.extend_from_slice(props);
    b.extend_from_slice(&[0x00, 0x01, b'w', 0x00, 0x00]); // Will Topic, Will Payload
    b
}

/// A v5 CONNACK (Success) carrying the property block `props`.
fn v5_connack_with(props: &[u8]) -> Vec<u8> {
    let mut b = vec![0x20, (2 + 1 + props.len()) as u8, 0x00, 0x00];
    b.push(props.len() as u8);
    b.extend_from_slice(props);
    b
}

/// A v5 SUBSCRIBE (packet id 1, filter "t" with options 0) carrying `props`.
fn v5_subscribe_with(props: &[u8]) -> Vec<u8> {
    let mut b = vec![0x82, (2 + 1 + props.len() + 4) as u8, 0x00, 0x01];
    b.push(props.len() as u8);
    b.extend_from_slice(props);
    b.extend_from_slice(&[0x00, 0x01, b't', 0x00]);
    b
}

/// A v5 acknowledgement of type byte `first` (PUBACK..PUBCOMP, DISCONNECT or AUTH shape:
/// optional packet id, reason code, properties).
fn v5_ack_with(first: u8, packet_id: bool, code: u8, props: &[u8]) -> Vec<u8> {
    let id_len = if packet_id { 2 } else { 0 };
    let mut b = vec![first, (id_len + 1 + 1 + props.len()) as u8];
    if packet_id {
        b.extend_from_slice(&[0x00, 0x01]);
    }
    b.push(code);
    b.push(props.len() as u8);
    b.extend_from_slice(props);
    b
}

/// A SUBACK / UNSUBACK (v5 shape: packet id 1, properties, codes).
fn v5_sub_ack_with(first: u8, props: &[u8], codes: &[u8]) -> Vec<u8> {
    let mut b = vec![first, (2 + 1 + props.len() + codes.len()) as u8, 0x00, 0x01];
    b.push(props.len() as u8);
    b.extend_from_slice(props);
    b.extend_from_slice(codes);
    b
}

/// A SUBSCRIBE with one filter and options byte, packet id 1 (with a v5 Property Length 0
/// when `v5`).
fn subscribe_bytes(v5: bool, filter: &[u8], options: u8) -> Vec<u8> {
    let props = usize::from(v5);
    let mut b = vec![0x82, (2 + props + 2 + filter.len() + 1) as u8, 0x00, 0x01];
    if v5 {
        b.push(0x00);
    }
    b.extend_from_slice(&[0x00, filter.len() as u8]);
    b.extend_from_slice(filter);
    b.push(options);
    b
}

/// A v3 CONNECT ("MQTT" level 4, keep alive 60) with `flags` and `payload` after the header.
fn v311_connect(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0x10, (10 + payload.len()) as u8];
    b.extend_from_slice(&[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, flags, 0x00, 0x3C]);
    b.extend_from_slice(payload);
    b
}

/// A v5 CONNECT with `flags`, an empty property block, then `payload`.
fn v5_connect(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0x10, (11 + payload.len()) as u8];
    b.extend_from_slice(&[
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, flags, 0x00, 0x3C, 0x00,
    ]);
    b.extend_from_slice(payload);
    b
}

fn pid(id: u16) -> PacketId {
    PacketId::new(id).unwrap()
}

fn s(text: &str) -> MqttString {
    MqttString::new(text).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Fixed header (section 2.2 of 3.1.1, 2.1 of 5.0)
// ---------------------------------------------------------------------------------------------

/// Packet type 0 is reserved (table 2.1 of 3.1.1, table 2-1 of 5.0: "Forbidden").
#[test]
fn reserved_packet_type_0() {
    for version in [V31, V311, V5] {
        assert_rejects(
            version,
            &[0x00, 0x00],
            DecodeError::ReservedPacketType(0),
            MALFORMED,
        );
    }
}

/// Packet type 15 is reserved in 3.1.1 (table 2.1); it is AUTH only in 5.0.
#[test]
fn packet_type_15_is_reserved_before_v5() {
    for version in [V31, V311] {
        assert_rejects(
            version,
            &[0xF0, 0x00],
            DecodeError::ReservedPacketType(15),
            MALFORMED,
        );
    }
    assert_eq!(accepts(V5, &[0xF0, 0x00]), Packet::Auth(Auth::default()));
}

/// [MQTT-2.2.2-2] (3.1.1) / [MQTT-2.1.3-1] (5.0): every flag value but the required one is
/// refused for every type other than PUBLISH, from the first byte alone.
#[test]
fn mqtt_2_2_2_2_invalid_flags_every_non_publish_type() {
    for type_bits in (1u8..=15).filter(|&t| t != 3) {
        let packet_type = PacketType::from_u8(type_bits).unwrap();
        let required = match packet_type {
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
            _ => 0b0000,
        };
        for flags in (0u8..16).filter(|&f| f != required) {
            let first = type_bits << 4 | flags;
            let versions: &[ProtocolVersion] = if type_bits == 15 { &[V5] } else { &[V311, V5] };
            for &version in versions {
                let expected = DecodeError::InvalidFlags { packet_type, flags };
                // The first byte alone is enough.
                assert_eq!(
                    Decoder::new(version).peek_header(&[first]),
                    Err(expected.clone())
                );
                assert_rejects(version, &[first, 0x00], expected, MALFORMED);
            }
        }
    }
}

/// [MQTT-3.6.1-1] (3.1.1 and 5.0): PUBREL with flags 0000.
#[test]
fn mqtt_3_6_1_1_pubrel_flags_0000() {
    for version in [V311, V5] {
        assert_rejects(
            version,
            &[0x60, 0x02, 0x00, 0x01],
            DecodeError::InvalidFlags {
                packet_type: PacketType::PubRel,
                flags: 0,
            },
            MALFORMED,
        );
    }
}

/// [MQTT-3.8.1-1] (3.1.1 and 5.0): SUBSCRIBE with flags 0000.
#[test]
fn mqtt_3_8_1_1_subscribe_flags_0000() {
    for version in [V311, V5] {
        assert_rejects(
            version,
            &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b't', 0x00],
            DecodeError::InvalidFlags {
                packet_type: PacketType::Subscribe,
                flags: 0,
            },
            MALFORMED,
        );
    }
}

/// [MQTT-3.10.1-1] (3.1.1 and 5.0): UNSUBSCRIBE with flags 0000.
#[test]
fn mqtt_3_10_1_1_unsubscribe_flags_0000() {
    assert_rejects(
        V311,
        &[0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, b't'],
        DecodeError::InvalidFlags {
            packet_type: PacketType::Unsubscribe,
            flags: 0,
        },
        MALFORMED,
    );
}

/// [MQTT-2.2.2-1] (3.1.1): CONNECT with flags 0001.
#[test]
fn mqtt_2_2_2_1_connect_flags_0001() {
    let mut bytes = v311_connect(0x02, &[0x00, 0x01, b'c']);
    bytes[0] = 0x11;
    assert_rejects(
        V311,
        &bytes,
        DecodeError::InvalidFlags {
            packet_type: PacketType::Connect,
            flags: 1,
        },
        MALFORMED,
    );
}

/// [MQTT-3.14.1-1] (3.1.1 and 5.0): DISCONNECT with a reserved flag set.
#[test]
fn mqtt_3_14_1_1_disconnect_flags() {
    for version in [V311, V5] {
        assert_rejects(
            version,
            &[0xE8, 0x00],
            DecodeError::InvalidFlags {
                packet_type: PacketType::Disconnect,
                flags: 0b1000,
            },
            MALFORMED,
        );
    }
}

/// [MQTT-3.15.1-1] (5.0): AUTH with a reserved flag set.
#[test]
fn mqtt_3_15_1_1_auth_flags() {
    assert_rejects(
        V5,
        &[0xF1, 0x00],
        DecodeError::InvalidFlags {
            packet_type: PacketType::Auth,
            flags: 1,
        },
        MALFORMED,
    );
}

/// Section 1.5.5 of 5.0 / 2.2.3 of 3.1.1: the Remaining Length has at most four bytes; a
/// fourth byte with the continuation bit is malformed, known before any body byte.
#[test]
fn remaining_length_fourth_byte_with_continuation_bit() {
    for version in [V311, V5] {
        let header = [0x30, 0xFF, 0xFF, 0xFF, 0xFF];
        assert_eq!(
            Decoder::new(version).peek_header(&header),
            Err(DecodeError::MalformedVariableByteInteger)
        );
        assert_rejects(
            version,
            &header,
            DecodeError::MalformedVariableByteInteger,
            MALFORMED,
        );
        assert_rejects(
            version,
            &[0xC0, 0x80, 0x80, 0x80, 0x80, 0x00],
            DecodeError::MalformedVariableByteInteger,
            MALFORMED,
        );
    }
    // Three continuation bytes are still just an incomplete header.
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF][..]);
    assert_eq!(Decoder::new(V5).decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), 4);
}

/// Section 1.5.5 of 5.0: the same limit for a Variable Byte Integer inside the body (a
/// Property Length of five bytes).
#[test]
fn property_length_fourth_byte_with_continuation_bit() {
    assert_rejects(
        V5,
        &[
            0x30, 0x09, 0x00, 0x01, b't', 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00,
        ],
        DecodeError::MalformedVariableByteInteger,
        MALFORMED,
    );
}

/// [MQTT-3.2.2-15] (5.0; section 3.1.2.11.4): a packet over the Maximum Packet Size is refused
/// from its fixed header, before the body has arrived.
#[test]
fn mqtt_3_2_2_15_packet_too_large_from_header_alone() {
    let decoder = Decoder::new(V5).with_max_packet_size(100);
    // PUBLISH, Remaining Length 1000 (0xE8 0x07): 1003 bytes in all. No body byte present.
    let header = [0x30, 0xE8, 0x07];
    let expected = DecodeError::PacketTooLarge {
        size: 1003,
        max: 100,
    };
    assert_eq!(decoder.peek_header(&header), Err(expected.clone()));
    let mut buf = BytesMut::from(&header[..]);
    let err = decoder.decode(&mut buf).unwrap_err();
    assert_eq!(err, expected);
    assert_eq!(err.reason_code(), ReasonCode::PacketTooLarge);
    assert_eq!(err.reason_code().as_u8(), 0x95);

    // The limit counts the whole packet: 5 bytes fit a limit of 5, not of 4.
    let packet = [0x30, 0x03, 0x00, 0x01, b't'];
    let mut buf = BytesMut::from(&packet[..]);
    assert!(Decoder::new(V311)
        .with_max_packet_size(5)
        .decode(&mut buf)
        .unwrap()
        .is_some());
    let mut buf = BytesMut::from(&packet[..]);
    assert_eq!(
        Decoder::new(V311).with_max_packet_size(4).decode(&mut buf),
        Err(DecodeError::PacketTooLarge { size: 5, max: 4 })
    );
}

// ---------------------------------------------------------------------------------------------
// PUBLISH
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.3.1-4] (3.1.1 and 5.0): QoS 3 is refused from the first byte alone.
#[test]
fn mqtt_3_3_1_4_publish_qos_3() {
    for version in [V311, V5] {
        for first in [0x36, 0x37, 0x3E, 0x3F] {
            assert_eq!(
                Decoder::new(version).peek_header(&[first]),
                Err(DecodeError::InvalidQoS(3))
            );
        }
        assert_rejects(
            version,
            &[0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01],
            DecodeError::InvalidQoS(3),
            MALFORMED,
        );
    }
}

/// [MQTT-3.3.1-2] (3.1.1 and 5.0): DUP must be 0 for QoS 0.
#[test]
fn mqtt_3_3_1_2_dup_with_qos0() {
    assert_rejects(
        V311,
        &[0x38, 0x03, 0x00, 0x01, b't'],
        DecodeError::DupWithQoS0,
        MALFORMED,
    );
    assert_rejects(
        V5,
        &[0x38, 0x04, 0x00, 0x01, b't', 0x00],
        DecodeError::DupWithQoS0,
        MALFORMED,
    );
}

/// [MQTT-2.3.1-1] (3.1.1) / [MQTT-2.2.1-3] (5.0): a Packet Identifier of 0 in PUBLISH QoS 1
/// and 2, the four acknowledgements, SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK.
#[test]
fn mqtt_2_3_1_1_zero_packet_id() {
    let v3: [&[u8]; 10] = [
        &[0x32, 0x05, 0x00, 0x01, b't', 0x00, 0x00], // PUBLISH QoS 1
        &[0x34, 0x05, 0x00, 0x01, b't', 0x00, 0x00], // PUBLISH QoS 2
        &[0x40, 0x02, 0x00, 0x00],                   // PUBACK
        &[0x50, 0x02, 0x00, 0x00],                   // PUBREC
        &[0x62, 0x02, 0x00, 0x00],                   // PUBREL
        &[0x70, 0x02, 0x00, 0x00],                   // PUBCOMP
        &[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b't', 0x00], // SUBSCRIBE
        &[0x90, 0x03, 0x00, 0x00, 0x00],             // SUBACK
        &[0xA2, 0x05, 0x00, 0x00, 0x00, 0x01, b't'], // UNSUBSCRIBE
        &[0xB0, 0x02, 0x00, 0x00],                   // UNSUBACK
    ];
    for bytes in v3 {
        assert_rejects(V311, bytes, DecodeError::ZeroPacketId, MALFORMED);
    }
    let v5: [&[u8]; 4] = [
        &[0x32, 0x06, 0x00, 0x01, b't', 0x00, 0x00, 0x00], // PUBLISH QoS 1
        &[0x40, 0x02, 0x00, 0x00],                         // PUBACK
        &[0x82, 0x07, 0x00, 0x00, 0x00, 0x00, 0x01, b't', 0x00], // SUBSCRIBE
        &[0xA2, 0x06, 0x00, 0x00, 0x00, 0x00, 0x01, b't'], // UNSUBSCRIBE
    ];
    for bytes in v5 {
        assert_rejects(V5, bytes, DecodeError::ZeroPacketId, MALFORMED);
    }
}

/// [MQTT-3.3.2-2] (3.1.1 and 5.0): '+' and '#' in a Topic Name.
#[test]
fn mqtt_3_3_2_2_wildcards_in_topic_name() {
    for topic in [&b"a/+"[..], b"a/#", b"+", b"#", b"a+b"] {
        let mut v3 = vec![0x30, 2 + topic.len() as u8, 0x00, topic.len() as u8];
        v3.extend_from_slice(topic);
        assert_rejects(
            V311,
            &v3,
            DecodeError::InvalidTopic(TopicError::WildcardInName),
            MALFORMED,
        );
        let mut v5 = vec![0x30, 3 + topic.len() as u8, 0x00, topic.len() as u8];
        v5.extend_from_slice(topic);
        v5.push(0x00);
        assert_rejects(
            V5,
            &v5,
            DecodeError::InvalidTopic(TopicError::WildcardInName),
            MALFORMED,
        );
    }
}

/// [MQTT-3.3.2-14] (5.0): a Response Topic is a topic name, without wildcards.
#[test]
fn mqtt_3_3_2_14_wildcard_in_response_topic() {
    assert_rejects(
        V5,
        &v5_publish_with(&[0x08, 0x00, 0x03, b'r', b'/', b'#']),
        DecodeError::InvalidTopic(TopicError::WildcardInName),
        MALFORMED,
    );
}

/// [MQTT-4.7.1-1] (3.1.1) / [MQTT-4.7.0-1] (5.0): a Will Topic is a topic name: no wildcards.
#[test]
fn mqtt_4_7_1_1_wildcard_in_will_topic() {
    assert_rejects(
        V311,
        &v311_connect(0x06, &[0x00, 0x01, b'c', 0x00, 0x01, b'+', 0x00, 0x00]),
        DecodeError::InvalidTopic(TopicError::WildcardInName),
        MALFORMED,
    );
}

/// [MQTT-4.7.3-1] (3.1.1): a zero-length Topic Name.
#[test]
fn mqtt_4_7_3_1_empty_topic_name_v3() {
    assert_rejects(
        V311,
        &[0x30, 0x02, 0x00, 0x00],
        DecodeError::InvalidTopic(TopicError::Empty),
        MALFORMED,
    );
    assert_rejects(
        V311,
        &[0x32, 0x06, 0x00, 0x00, 0x00, 0x01, b'h', b'i'],
        DecodeError::InvalidTopic(TopicError::Empty),
        MALFORMED,
    );
}

/// [MQTT-3.3.2-1] (5.0; section 3.3.2.3.4): a zero-length Topic Name without a Topic Alias is
/// a Protocol Error.
#[test]
fn mqtt_3_3_2_1_empty_topic_without_alias_v5() {
    assert_rejects(
        V5,
        &[0x30, 0x03, 0x00, 0x00, 0x00],
        DecodeError::EmptyTopicWithoutAlias,
        PROTOCOL,
    );
    // Other properties do not stand in for the alias.
    assert_rejects(
        V5,
        &[0x30, 0x05, 0x00, 0x00, 0x02, 0x01, 0x01],
        DecodeError::EmptyTopicWithoutAlias,
        PROTOCOL,
    );
}

// ---------------------------------------------------------------------------------------------
// Strings (section 1.5.3 of 3.1.1, 1.5.4 of 5.0)
// ---------------------------------------------------------------------------------------------

/// [MQTT-1.5.3-1] (3.1.1) / [MQTT-1.5.4-1] (5.0): ill-formed UTF-8: a stray 0xFF, an
/// encoded surrogate U+D800 (ED A0 80), an overlong '/' (C0 AF) and an overlong U+0000
/// (C0 80), a truncated sequence.
#[test]
fn mqtt_1_5_3_1_ill_formed_utf8() {
    let bad: [&[u8]; 5] = [
        &[b'a', 0xFF],
        &[0xED, 0xA0, 0x80],
        &[0xC0, 0xAF],
        &[0xC0, 0x80],
        &[b'a', 0xE2, 0x82],
    ];
    for text in bad {
        let expected = DecodeError::InvalidString(StringError::InvalidUtf8);
        // As a Topic Name (3.1.1 PUBLISH).
        let mut p = vec![0x30, 2 + text.len() as u8, 0x00, text.len() as u8];
        p.extend_from_slice(text);
        assert_rejects(V311, &p, expected.clone(), MALFORMED);
        // As a Client Identifier (3.1.1 CONNECT).
        let mut payload = vec![0x00, text.len() as u8];
        payload.extend_from_slice(text);
        assert_rejects(
            V311,
            &v311_connect(0x02, &payload),
            expected.clone(),
            MALFORMED,
        );
        // As a Reason String property (5.0 PUBACK).
        let mut props = vec![0x1F, 0x00, text.len() as u8];
        props.extend_from_slice(text);
        assert_rejects(
            V5,
            &v5_ack_with(0x40, true, 0x00, &props),
            expected.clone(),
            MALFORMED,
        );
        // As a topic filter (5.0 SUBSCRIBE).
        assert_rejects(V5, &subscribe_bytes(true, text, 0), expected, MALFORMED);
    }
}

/// [MQTT-1.5.3-2] (3.1.1) / [MQTT-1.5.4-2] (5.0): U+0000 in a string.
#[test]
fn mqtt_1_5_3_2_null_character() {
    let expected = DecodeError::InvalidString(StringError::NullCharacter);
    // Topic Name "a\0b".
    assert_rejects(
        V311,
        &[0x30, 0x05, 0x00, 0x03, b'a', 0x00, b'b'],
        expected.clone(),
        MALFORMED,
    );
    // Client Identifier "\0".
    assert_rejects(
        V311,
        &v311_connect(0x02, &[0x00, 0x01, 0x00]),
        expected.clone(),
        MALFORMED,
    );
    // User Property name "\0" ([MQTT-1.5.7-1] in 5.0: both halves of a string pair).
    assert_rejects(
        V5,
        &v5_publish_with(&[0x26, 0x00, 0x01, 0x00, 0x00, 0x01, b'v']),
        expected.clone(),
        MALFORMED,
    );
    // Topic filter "a/\0" (5.0 [MQTT-4.7.3-2]).
    assert_rejects(V5, &subscribe_bytes(true, b"a/\0", 0), expected, MALFORMED);
}

// ---------------------------------------------------------------------------------------------
// CONNECT
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.1.2-1] (3.1.1 and 5.0): a Protocol Name that does not match the level. 5.0 lets the
/// server answer with CONNACK 0x84.
#[test]
fn mqtt_3_1_2_1_bad_protocol_name() {
    let cases: [(&[u8], u8); 4] = [
        (b"MQTX", 4),
        (b"mqtt", 5),
        (b"MQIsdp", 4), // the 3.1 name with the 3.1.1 level
        (b"MQTT", 3),   // the 3.1.1 name with the 3.1 level
    ];
    for (name, level) in cases {
        let mut b = vec![0x10, (2 + name.len() + 4 + 3) as u8, 0x00, name.len() as u8];
        b.extend_from_slice(name);
        b.extend_from_slice(&[level, 0x02, 0x00, 0x3C]);
        b.extend_from_slice(&[0x00, 0x01, b'c']);
        assert_rejects(
            V311,
            &b,
            DecodeError::InvalidProtocolName,
            ReasonCode::UnsupportedProtocolVersion,
        );
    }
}

/// [MQTT-3.1.2-2] (3.1.1 and 5.0): an unsupported Protocol Level (6, 0, 2) is refused with
/// 0x84 (CONNACK 0x01 in 3.1.1).
#[test]
fn mqtt_3_1_2_2_unsupported_protocol_level() {
    for level in [6u8, 0, 2, 0xFF] {
        let mut b = v311_connect(0x02, &[0x00, 0x01, b'c']);
        b[8] = level;
        let mut buf = BytesMut::from(&b[..]);
        let err = Decoder::new(V5).decode(&mut buf).unwrap_err();
        assert_eq!(err, DecodeError::UnsupportedProtocolVersion(level));
        assert_eq!(err.reason_code(), ReasonCode::UnsupportedProtocolVersion);
        assert_eq!(err.reason_code().as_u8(), 0x84);
        assert_eq!(err.reason_code().to_v3_connack(), 0x01);
    }
}

/// [MQTT-3.1.2-3] (3.1.1 and 5.0): the reserved bit 0 of the Connect Flags.
#[test]
fn mqtt_3_1_2_3_connect_reserved_flag() {
    assert_rejects(
        V311,
        &v311_connect(0x03, &[0x00, 0x01, b'c']),
        DecodeError::ConnectReservedFlag,
        MALFORMED,
    );
    assert_rejects(
        V5,
        &v5_connect(0x01, &[0x00, 0x01, b'c']),
        DecodeError::ConnectReservedFlag,
        MALFORMED,
    );
}

/// [MQTT-3.1.2-13] (3.1.1) / [MQTT-3.1.2-11] (5.0): Will QoS must be 0 without the Will Flag.
#[test]
fn mqtt_3_1_2_13_will_qos_without_will_flag() {
    for flags in [0x0A, 0x12] {
        // Will QoS 1 / 2, Clean Session, no Will Flag.
        assert_rejects(
            V311,
            &v311_connect(flags, &[0x00, 0x01, b'c']),
            DecodeError::WillFlagsWithoutWill,
            MALFORMED,
        );
        assert_rejects(
            V5,
            &v5_connect(flags, &[0x00, 0x01, b'c']),
            DecodeError::WillFlagsWithoutWill,
            MALFORMED,
        );
    }
}

/// [MQTT-3.1.2-15] (3.1.1) / [MQTT-3.1.2-13] (5.0): Will Retain must be 0 without the Will
/// Flag.
#[test]
fn mqtt_3_1_2_15_will_retain_without_will_flag() {
    assert_rejects(
        V311,
        &v311_connect(0x22, &[0x00, 0x01, b'c']),
        DecodeError::WillFlagsWithoutWill,
        MALFORMED,
    );
    assert_rejects(
        V5,
        &v5_connect(0x22, &[0x00, 0x01, b'c']),
        DecodeError::WillFlagsWithoutWill,
        MALFORMED,
    );
}

/// [MQTT-3.1.2-14] (3.1.1) / [MQTT-3.1.2-12] (5.0): Will QoS 3 is malformed.
#[test]
fn mqtt_3_1_2_14_will_qos_3() {
    // 0001_1110: Will QoS 11, Will Flag, Clean Session.
    assert_rejects(
        V311,
        &v311_connect(0x1E, &[0x00, 0x01, b'c', 0x00, 0x01, b'w', 0x00, 0x00]),
        DecodeError::InvalidQoS(3),
        MALFORMED,
    );
    assert_rejects(
        V5,
        &v5_connect(
            0x1E,
            &[0x00, 0x01, b'c', 0x00, 0x00, 0x01, b'w', 0x00, 0x00],
        ),
        DecodeError::InvalidQoS(3),
        MALFORMED,
    );
}

/// [MQTT-3.1.2-22] (3.1.1): a Password without a User Name; also in MQTT 3.1. Allowed in 5.0.
#[test]
fn mqtt_3_1_2_22_password_without_username() {
    assert_rejects(
        V311,
        &v311_connect(0x42, &[0x00, 0x01, b'c', 0x00, 0x01, b'p']),
        DecodeError::PasswordWithoutUsername,
        MALFORMED,
    );
    let mut v31 = vec![
        0x10, 0x12, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x42,
    ];
    v31.extend_from_slice(&[0x00, 0x3C, 0x00, 0x01, b'c', 0x00, 0x01, b'p']);
    assert_rejects(V31, &v31, DecodeError::PasswordWithoutUsername, MALFORMED);

    // 5.0 dropped the rule ([MQTT-3.1.2-19] only ties the Password to its flag).
    let Packet::Connect(c) = accepts(V5, &v5_connect(0x42, &[0x00, 0x01, b'c', 0x00, 0x01, b'p']))
    else {
        panic!("not a CONNECT")
    };
    assert_eq!(c.username, None);
    assert_eq!(c.password.as_deref(), Some(&b"p"[..]));
}

/// [MQTT-3.1.2-19] (3.1.1) / [MQTT-3.1.2-17] (5.0): a flag announces a field that is missing:
/// the string length runs past the end of the packet.
#[test]
fn mqtt_3_1_2_19_username_flag_without_username() {
    assert_rejects(
        V311,
        &v311_connect(0x82, &[0x00, 0x01, b'c']),
        DecodeError::UnexpectedEnd,
        MALFORMED,
    );
}

/// Section 3.1.2.11.10 of 5.0: Authentication Data without an Authentication Method is a
/// Protocol Error.
#[test]
fn authentication_data_without_method() {
    assert_rejects(
        V5,
        &v5_connect_with(&[0x16, 0x00, 0x01, 0xAA]),
        DecodeError::InvalidPropertyValue(PropertyId::AuthenticationData),
        PROTOCOL,
    );
}

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE, UNSUBSCRIBE, topic filters
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.8.3-3] (3.1.1) / [MQTT-3.8.3-2] (5.0): a SUBSCRIBE without any filter.
#[test]
fn mqtt_3_8_3_3_subscribe_without_filters() {
    assert_rejects(
        V311,
        &[0x82, 0x02, 0x00, 0x01],
        DecodeError::NoTopicFilters,
        PROTOCOL,
    );
    assert_rejects(
        V5,
        &[0x82, 0x03, 0x00, 0x01, 0x00],
        DecodeError::NoTopicFilters,
        PROTOCOL,
    );
}

/// [MQTT-3.10.3-2] (3.1.1 and 5.0): an UNSUBSCRIBE without any filter.
#[test]
fn mqtt_3_10_3_2_unsubscribe_without_filters() {
    assert_rejects(
        V311,
        &[0xA2, 0x02, 0x00, 0x01],
        DecodeError::NoTopicFilters,
        PROTOCOL,
    );
    assert_rejects(
        V5,
        &[0xA2, 0x03, 0x00, 0x01, 0x00],
        DecodeError::NoTopicFilters,
        PROTOCOL,
    );
}

/// [MQTT-3.8.3-4] (3.1.1): bits 7-2 of the Requested QoS byte are reserved; QoS 3 is
/// malformed too.
#[test]
fn mqtt_3_8_3_4_v3_reserved_option_bits() {
    for options in [0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFC] {
        assert_rejects(
            V311,
            &subscribe_bytes(false, b"t", options),
            DecodeError::InvalidSubscriptionOptions(options),
            MALFORMED,
        );
    }
    assert_rejects(
        V311,
        &subscribe_bytes(false, b"t", 0x03),
        DecodeError::InvalidQoS(3),
        MALFORMED,
    );
}

/// [MQTT-3.8.3-5] (5.0): bits 7-6 of the Subscription Options are reserved.
#[test]
fn mqtt_3_8_3_5_v5_reserved_option_bits() {
    for options in [0x40, 0x80, 0xC0, 0x41] {
        assert_rejects(
            V5,
            &subscribe_bytes(true, b"t", options),
            DecodeError::InvalidSubscriptionOptions(options),
            MALFORMED,
        );
    }
}

/// Section 3.8.3.1 of 5.0: Retain Handling 3 is a Protocol Error.
#[test]
fn retain_handling_3() {
    assert_rejects(
        V5,
        &subscribe_bytes(true, b"t", 0x30),
        DecodeError::InvalidRetainHandling,
        PROTOCOL,
    );
}

/// [MQTT-4.7.1-2] (3.1.1) / [MQTT-4.7.1-1] (5.0): '#' must be last and fill its level.
#[test]
fn mqtt_4_7_1_2_misplaced_multi_level_wildcard() {
    for f in [&b"a/#/b"[..], b"a/b#", b"#/", b"##", b"a#"] {
        for (v5, version) in [(false, V311), (true, V5)] {
            assert_rejects(
                version,
                &subscribe_bytes(v5, f, 0),
                DecodeError::InvalidTopic(TopicError::MisplacedMultiLevelWildcard),
                MALFORMED,
            );
        }
    }
    // In UNSUBSCRIBE too.
    assert_rejects(
        V311,
        &[0xA2, 0x07, 0x00, 0x01, 0x00, 0x03, b'#', b'/', b'a'],
        DecodeError::InvalidTopic(TopicError::MisplacedMultiLevelWildcard),
        MALFORMED,
    );
}

/// [MQTT-4.7.1-3] (3.1.1) / [MQTT-4.7.1-2] (5.0): '+' must fill a whole level.
#[test]
fn mqtt_4_7_1_3_misplaced_single_level_wildcard() {
    for f in [&b"a+/b"[..], b"a/+b", b"++", b"a/b+"] {
        for (v5, version) in [(false, V311), (true, V5)] {
            assert_rejects(
                version,
                &subscribe_bytes(v5, f, 0),
                DecodeError::InvalidTopic(TopicError::MisplacedSingleLevelWildcard),
                MALFORMED,
            );
        }
    }
}

/// [MQTT-4.7.3-1] (3.1.1 and 5.0): a zero-length topic filter.
#[test]
fn mqtt_4_7_3_1_empty_topic_filter() {
    assert_rejects(
        V311,
        &subscribe_bytes(false, b"", 0),
        DecodeError::InvalidTopic(TopicError::Empty),
        MALFORMED,
    );
    assert_rejects(
        V5,
        &[0xA2, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00],
        DecodeError::InvalidTopic(TopicError::Empty),
        MALFORMED,
    );
}

/// [MQTT-4.8.2-1] [MQTT-4.8.2-2] (5.0): "$share/" needs a non-empty ShareName without
/// wildcards, then '/', then a non-empty filter.
#[test]
fn mqtt_4_8_2_1_malformed_shared_subscription() {
    for f in [
        &b"$share/"[..],
        b"$share//a",
        b"$share/g",
        b"$share/g/",
        b"$share/g+/a",
        b"$share/#/a",
    ] {
        assert_rejects(
            V5,
            &subscribe_bytes(true, f, 0),
            DecodeError::InvalidTopic(TopicError::InvalidSharedSubscription),
            PROTOCOL,
        );
    }
    // The filter after the share name obeys the wildcard rules.
    assert_rejects(
        V5,
        &subscribe_bytes(true, b"$share/g/a#", 0),
        DecodeError::InvalidTopic(TopicError::MisplacedMultiLevelWildcard),
        MALFORMED,
    );
}

/// [MQTT-3.8.3-4] (5.0): No Local on a shared subscription is a Protocol Error.
#[test]
fn mqtt_3_8_3_4_v5_no_local_on_shared_subscription() {
    assert_rejects(
        V5,
        &subscribe_bytes(true, b"$share/g/a", 0x04),
        DecodeError::NoLocalOnSharedSubscription,
        PROTOCOL,
    );
    // The same option on an ordinary filter is fine.
    assert!(matches!(
        accepts(V5, &subscribe_bytes(true, b"a", 0x04)),
        Packet::Subscribe(_)
    ));
}

// ---------------------------------------------------------------------------------------------
// Properties (section 2.2.2 of 5.0)
// ---------------------------------------------------------------------------------------------

/// Section 2.2.2.2 of 5.0: a property that may appear once, twice, is a Protocol Error, in
/// every property block.
#[test]
fn duplicate_property_in_every_context() {
    let session_expiry = [0x11, 0x00, 0x00, 0x00, 0x01];
    let reason = [0x1F, 0x00, 0x01, b'r'];
    let twice = |p: &[u8]| [p, p].concat();
    let cases: Vec<(&str, Vec<u8>, PropertyId)> = vec![
        (
            "CONNECT",
            v5_connect_with(&twice(&session_expiry)),
            PropertyId::SessionExpiryInterval,
        ),
        (
            "will",
            v5_connect_with_will(&twice(&[0x18, 0x00, 0x00, 0x00, 0x01])),
            PropertyId::WillDelayInterval,
        ),
        (
            "CONNACK",
            v5_connack_with(&twice(&[0x24, 0x00])),
            PropertyId::MaximumQoS,
        ),
        (
            "PUBLISH",
            v5_publish_with(&twice(&[0x23, 0x00, 0x01])),
            PropertyId::TopicAlias,
        ),
        (
            "PUBLISH",
            v5_publish_with(&twice(&[0x03, 0x00, 0x01, b'x'])),
            PropertyId::ContentType,
        ),
        (
            "PUBACK",
            v5_ack_with(0x40, true, 0x00, &twice(&reason)),
            PropertyId::ReasonString,
        ),
        (
            "PUBREC",
            v5_ack_with(0x50, true, 0x00, &twice(&reason)),
            PropertyId::ReasonString,
        ),
        (
            "PUBREL",
            v5_ack_with(0x62, true, 0x00, &twice(&reason)),
            PropertyId::ReasonString,
        ),
        (
            "PUBCOMP",
            v5_ack_with(0x70, true, 0x00, &twice(&reason)),
            PropertyId::ReasonString,
        ),
        (
            "SUBACK",
            v5_sub_ack_with(0x90, &twice(&reason), &[0x00]),
            PropertyId::ReasonString,
        ),
        (
            "UNSUBACK",
            v5_sub_ack_with(0xB0, &twice(&reason), &[0x00]),
            PropertyId::ReasonString,
        ),
        (
            "DISCONNECT",
            v5_ack_with(0xE0, false, 0x00, &twice(&session_expiry)),
            PropertyId::SessionExpiryInterval,
        ),
        (
            "AUTH",
            v5_ack_with(0xF0, false, 0x18, &twice(&[0x15, 0x00, 0x01, b'm'])),
            PropertyId::AuthenticationMethod,
        ),
    ];
    for (context, bytes, id) in cases {
        let mut buf = BytesMut::from(&bytes[..]);
        let err = Decoder::new(V5).decode(&mut buf).unwrap_err();
        assert_eq!(err, DecodeError::DuplicateProperty(id), "in {context}");
        assert_eq!(err.reason_code(), PROTOCOL, "in {context}");
    }
}

/// Section 2.2.2.2 / 3.3.2.3.7 of 5.0: User Property may repeat (same name too), order kept.
#[test]
fn user_property_may_repeat() {
    let up = |n: u8, v: u8| [0x26, 0x00, 0x01, n, 0x00, 0x01, v];
    let props = [up(b'k', b'1'), up(b'k', b'2'), up(b'a', b'3')].concat();
    let Packet::Publish(p) = accepts(V5, &v5_publish_with(&props)) else {
        panic!("not a PUBLISH")
    };
    let pairs: Vec<(&str, &str)> = p
        .properties
        .user_properties
        .iter()
        .map(|u| (u.name.as_str(), u.value.as_str()))
        .collect();
    assert_eq!(pairs, [("k", "1"), ("k", "2"), ("a", "3")]);
    // Also in CONNECT, the will properties and an acknowledgement.
    assert!(matches!(
        accepts(V5, &v5_connect_with(&props)),
        Packet::Connect(_)
    ));
    assert!(matches!(
        accepts(V5, &v5_connect_with_will(&props)),
        Packet::Connect(_)
    ));
    assert!(matches!(
        accepts(V5, &v5_ack_with(0x40, true, 0x00, &props)),
        Packet::PubAck(_)
    ));
}

/// [MQTT-3.3.4-4] (5.0): a PUBLISH may carry several Subscription Identifiers; a SUBSCRIBE at
/// most one (section 3.8.2.1.2: a second one is a Protocol Error).
#[test]
fn subscription_identifier_repeats_only_in_publish() {
    let Packet::Publish(p) = accepts(V5, &v5_publish_with(&[0x0B, 0x01, 0x0B, 0x02, 0x0B, 0x01]))
    else {
        panic!("not a PUBLISH")
    };
    let ids: Vec<u32> = p
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    assert_eq!(ids, [1, 2, 1]);

    assert_rejects(
        V5,
        &v5_subscribe_with(&[0x0B, 0x01, 0x0B, 0x02]),
        DecodeError::DuplicateProperty(PropertyId::SubscriptionIdentifier),
        PROTOCOL,
    );
}

/// Section 2.2.2.2 of 5.0: a property identifier not valid for the packet is malformed.
#[test]
fn property_not_allowed_in_packet() {
    let cases: Vec<(Vec<u8>, Option<PacketType>, PropertyId)> = vec![
        (
            v5_publish_with(&[0x11, 0x00, 0x00, 0x00, 0x01]),
            Some(PacketType::Publish),
            PropertyId::SessionExpiryInterval,
        ),
        (
            v5_connect_with(&[0x23, 0x00, 0x01]),
            Some(PacketType::Connect),
            PropertyId::TopicAlias,
        ),
        (
            v5_connect_with_will(&[0x11, 0x00, 0x00, 0x00, 0x01]),
            None,
            PropertyId::SessionExpiryInterval,
        ),
        (
            v5_connect_with(&[0x18, 0x00, 0x00, 0x00, 0x01]),
            Some(PacketType::Connect),
            PropertyId::WillDelayInterval,
        ),
        (
            v5_connack_with(&[0x18, 0x00, 0x00, 0x00, 0x01]),
            Some(PacketType::ConnAck),
            PropertyId::WillDelayInterval,
        ),
        (
            v5_subscribe_with(&[0x1F, 0x00, 0x01, b'r']),
            Some(PacketType::Subscribe),
            PropertyId::ReasonString,
        ),
        (
            vec![0xA2, 0x07, 0x00, 0x01, 0x02, 0x0B, 0x01, 0x00, 0x00],
            Some(PacketType::Unsubscribe),
            PropertyId::SubscriptionIdentifier,
        ),
        (
            v5_ack_with(0x40, true, 0x00, &[0x23, 0x00, 0x01]),
            Some(PacketType::PubAck),
            PropertyId::TopicAlias,
        ),
        (
            v5_sub_ack_with(0x90, &[0x1C, 0x00, 0x01, b's'], &[0x00]),
            Some(PacketType::SubAck),
            PropertyId::ServerReference,
        ),
        (
            v5_ack_with(0xE0, false, 0x00, &[0x15, 0x00, 0x01, b'm']),
            Some(PacketType::Disconnect),
            PropertyId::AuthenticationMethod,
        ),
        (
            v5_ack_with(0xF0, false, 0x18, &[0x11, 0x00, 0x00, 0x00, 0x01]),
            Some(PacketType::Auth),
            PropertyId::SessionExpiryInterval,
        ),
        (
            v5_publish_with(&[0x24, 0x01]),
            Some(PacketType::Publish),
            PropertyId::MaximumQoS,
        ),
    ];
    for (bytes, packet_type, property) in cases {
        assert_rejects(
            V5,
            &bytes,
            DecodeError::PropertyNotAllowed {
                packet_type,
                property,
            },
            MALFORMED,
        );
    }
}

/// Section 2.2.2.2 of 5.0 (table 2-4): an identifier the standard does not define.
#[test]
fn unknown_property_identifier() {
    for id in [0x00u8, 0x04, 0x0A, 0x14, 0x2B, 0x7F] {
        assert_rejects(
            V5,
            &v5_publish_with(&[id, 0x00]),
            DecodeError::UnknownProperty(id),
            MALFORMED,
        );
    }
}

/// Sections 3.1.2.11, 3.2.2.3, 3.3.2.3 and 3.8.2.1 of 5.0: property values out of range are
/// Protocol Errors (Receive Maximum 0, Maximum Packet Size 0, Topic Alias 0 ([MQTT-3.3.2-8]),
/// Subscription Identifier 0, Maximum QoS 2, a boolean byte of 2).
#[test]
fn property_values_out_of_range() {
    let cases: Vec<(Vec<u8>, PropertyId)> = vec![
        (
            v5_connect_with(&[0x21, 0x00, 0x00]),
            PropertyId::ReceiveMaximum,
        ),
        (
            v5_connack_with(&[0x21, 0x00, 0x00]),
            PropertyId::ReceiveMaximum,
        ),
        (
            v5_connect_with(&[0x27, 0x00, 0x00, 0x00, 0x00]),
            PropertyId::MaximumPacketSize,
        ),
        (
            v5_connack_with(&[0x27, 0x00, 0x00, 0x00, 0x00]),
            PropertyId::MaximumPacketSize,
        ),
        (v5_publish_with(&[0x23, 0x00, 0x00]), PropertyId::TopicAlias),
        (
            v5_subscribe_with(&[0x0B, 0x00]),
            PropertyId::SubscriptionIdentifier,
        ),
        (
            v5_publish_with(&[0x0B, 0x00]),
            PropertyId::SubscriptionIdentifier,
        ),
        (v5_connack_with(&[0x24, 0x02]), PropertyId::MaximumQoS),
        (
            v5_connect_with(&[0x17, 0x02]),
            PropertyId::RequestProblemInformation,
        ),
        (
            v5_connect_with(&[0x19, 0x02]),
            PropertyId::RequestResponseInformation,
        ),
        (v5_connack_with(&[0x25, 0x02]), PropertyId::RetainAvailable),
        (
            v5_connack_with(&[0x28, 0x02]),
            PropertyId::WildcardSubscriptionAvailable,
        ),
        (
            v5_connack_with(&[0x29, 0xFF]),
            PropertyId::SubscriptionIdentifierAvailable,
        ),
        (
            v5_connack_with(&[0x2A, 0x02]),
            PropertyId::SharedSubscriptionAvailable,
        ),
        (
            v5_publish_with(&[0x01, 0x02]),
            PropertyId::PayloadFormatIndicator,
        ),
    ];
    for (bytes, id) in cases {
        assert_rejects(V5, &bytes, DecodeError::InvalidPropertyValue(id), PROTOCOL);
    }
}

/// Section 2.2.2 of 5.0: a property that overruns its Property Length is malformed.
#[test]
fn property_overruns_property_length() {
    // Property Length 2, but Topic Alias needs 3 bytes; the payload byte is not part of it.
    assert_rejects(
        V5,
        &[0x30, 0x07, 0x00, 0x01, b't', 0x02, 0x23, 0x00, 0x01],
        DecodeError::UnexpectedEnd,
        MALFORMED,
    );
    // Property Length larger than the rest of the packet.
    assert_rejects(
        V5,
        &[0x30, 0x05, 0x00, 0x01, b't', 0x09, 0x23],
        DecodeError::UnexpectedEnd,
        MALFORMED,
    );
}

// ---------------------------------------------------------------------------------------------
// Lengths: trailing bytes, truncated fields
// ---------------------------------------------------------------------------------------------

/// Section 2.2.3 of 3.1.1 / 2.1.4 of 5.0: bytes beyond the last field of the packet.
#[test]
fn trailing_bytes() {
    let v3: [&[u8]; 6] = [
        &[0xC0, 0x01, 0x00],             // PINGREQ with a body
        &[0xD0, 0x01, 0x00],             // PINGRESP with a body
        &[0x20, 0x03, 0x00, 0x00, 0x00], // CONNACK with an extra byte
        &[0x40, 0x03, 0x00, 0x01, 0x00], // PUBACK with 3 bytes (3.1.1 has no code)
        &[0xB0, 0x03, 0x00, 0x01, 0x00], // UNSUBACK with a code in 3.1.1
        &[0xE0, 0x01, 0x00],             // DISCONNECT with a body in 3.1.1
    ];
    for bytes in v3 {
        assert_rejects(V311, bytes, DecodeError::TrailingBytes, MALFORMED);
    }
    // CONNECT with a byte after the last payload field.
    assert_rejects(
        V311,
        &v311_connect(0x02, &[0x00, 0x01, b'c', 0xFF]),
        DecodeError::TrailingBytes,
        MALFORMED,
    );
    let v5: [&[u8]; 3] = [
        &[0xC0, 0x01, 0x00],                         // PINGREQ with a body
        &[0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0xFF], // PUBACK: a byte after the properties
        &[0xE0, 0x03, 0x00, 0x00, 0xFF],             // DISCONNECT: same
    ];
    for bytes in v5 {
        assert_rejects(V5, bytes, DecodeError::TrailingBytes, MALFORMED);
    }
}

/// Section 1.5.3 of 3.1.1 / 1.5.4 of 5.0: a string whose length runs past the packet.
#[test]
fn truncated_field() {
    // Topic length 10 in a Remaining Length of 4.
    assert_rejects(
        V311,
        &[0x30, 0x04, 0x00, 0x0A, b'a', b'b'],
        DecodeError::UnexpectedEnd,
        MALFORMED,
    );
    // Client Identifier length 5 with only 1 byte left.
    assert_rejects(
        V5,
        &v5_connect(0x02, &[0x00, 0x05, b'c']),
        DecodeError::UnexpectedEnd,
        MALFORMED,
    );
    // QoS 1 PUBLISH too short for its Packet Identifier.
    assert_rejects(
        V311,
        &[0x32, 0x04, 0x00, 0x01, b't', 0x00],
        DecodeError::UnexpectedEnd,
        MALFORMED,
    );
    // PUBACK with a single byte.
    assert_rejects(
        V5,
        &[0x40, 0x01, 0x00],
        DecodeError::UnexpectedEnd,
        MALFORMED,
    );
    // CONNACK with one byte.
    assert_rejects(
        V311,
        &[0x20, 0x01, 0x00],
        DecodeError::UnexpectedEnd,
        MALFORMED,
    );
}

// ---------------------------------------------------------------------------------------------
// Reason and return codes
// ---------------------------------------------------------------------------------------------

fn invalid_code(packet_type: PacketType, code: u8) -> DecodeError {
    DecodeError::InvalidReasonCode { packet_type, code }
}

/// Section 3.2.2.3 of 3.1.1 (return codes 6-255 reserved) / [MQTT-3.2.2-8] (5.0).
#[test]
fn mqtt_3_2_2_8_connack_code_out_of_range() {
    for code in [0x06, 0x80, 0xFF] {
        assert_rejects(
            V311,
            &[0x20, 0x02, 0x00, code],
            invalid_code(PacketType::ConnAck, code),
            MALFORMED,
        );
    }
    // 0x05 is a 3.1.1 return code, not a 5.0 reason code; 0x01, 0x04, 0x8B, 0x8E, 0x92 exist
    // but not in CONNACK.
    for code in [0x05, 0x01, 0x04, 0x8B, 0x8E, 0x92, 0xFF] {
        assert_rejects(
            V5,
            &[0x20, 0x03, 0x00, code, 0x00],
            invalid_code(PacketType::ConnAck, code),
            MALFORMED,
        );
    }
}

/// [MQTT-3.2.2-1] (5.0): bits 7-1 of the Connect Acknowledge Flags are reserved.
#[test]
fn mqtt_3_2_2_1_connack_reserved_flags() {
    assert_rejects(
        V5,
        &[0x20, 0x03, 0x02, 0x00, 0x00],
        DecodeError::ConnAckReservedFlags,
        MALFORMED,
    );
    assert_rejects(
        V311,
        &[0x20, 0x02, 0x80, 0x00],
        DecodeError::ConnAckReservedFlags,
        MALFORMED,
    );
}

/// [MQTT-3.9.3-2] (3.1.1 and 5.0): SUBACK codes outside the allowed set.
#[test]
fn mqtt_3_9_3_2_suback_code_out_of_range() {
    for code in [0x03, 0x81, 0x87] {
        assert_rejects(
            V311,
            &[0x90, 0x03, 0x00, 0x01, code],
            invalid_code(PacketType::SubAck, code),
            MALFORMED,
        );
    }
    for code in [0x93, 0x03, 0x11, 0x92] {
        assert_rejects(
            V5,
            &v5_sub_ack_with(0x90, &[], &[0x00, code]),
            invalid_code(PacketType::SubAck, code),
            MALFORMED,
        );
    }
}

/// [MQTT-3.11.3-2] (5.0): UNSUBACK codes outside table 3-9.
#[test]
fn mqtt_3_11_3_2_unsuback_code_out_of_range() {
    for code in [0x01, 0x10, 0x8E] {
        assert_rejects(
            V5,
            &v5_sub_ack_with(0xB0, &[], &[code]),
            invalid_code(PacketType::UnsubAck, code),
            MALFORMED,
        );
    }
}

/// [MQTT-3.4.2-1] [MQTT-3.5.2-1] (5.0): PUBACK / PUBREC codes outside tables 3-4 / 3-5.
#[test]
fn mqtt_3_4_2_1_puback_pubrec_invalid_codes() {
    for code in [0x92, 0x01, 0x11, 0x8E, 0x05] {
        assert_rejects(
            V5,
            &[0x40, 0x03, 0x00, 0x01, code],
            invalid_code(PacketType::PubAck, code),
            MALFORMED,
        );
        assert_rejects(
            V5,
            &[0x50, 0x04, 0x00, 0x01, code, 0x00],
            invalid_code(PacketType::PubRec, code),
            MALFORMED,
        );
    }
}

/// [MQTT-3.6.2-1] [MQTT-3.7.2-1] (5.0): PUBREL and PUBCOMP take only 0x00 and 0x92.
#[test]
fn mqtt_3_6_2_1_pubrel_pubcomp_invalid_codes() {
    for code in [0x10, 0x80, 0x83, 0x91] {
        assert_rejects(
            V5,
            &[0x62, 0x03, 0x00, 0x01, code],
            invalid_code(PacketType::PubRel, code),
            MALFORMED,
        );
        assert_rejects(
            V5,
            &[0x70, 0x03, 0x00, 0x01, code],
            invalid_code(PacketType::PubComp, code),
            MALFORMED,
        );
    }
}

/// [MQTT-3.14.2-1] (5.0): DISCONNECT codes outside table 3-10.
#[test]
fn mqtt_3_14_2_1_disconnect_invalid_codes() {
    for code in [0x01, 0x02, 0x10, 0x18, 0x84, 0x85, 0x92, 0xA3, 0xFF] {
        assert_rejects(
            V5,
            &[0xE0, 0x01, code],
            invalid_code(PacketType::Disconnect, code),
            MALFORMED,
        );
    }
}

/// [MQTT-3.15.2-1] (5.0): AUTH takes only 0x00, 0x18 and 0x19.
#[test]
fn mqtt_3_15_2_1_auth_invalid_codes() {
    for code in [0x01, 0x04, 0x80, 0x87, 0x8C, 0x1A] {
        assert_rejects(
            V5,
            &[0xF0, 0x02, code, 0x00],
            invalid_code(PacketType::Auth, code),
            MALFORMED,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Encoder refusals: nothing is appended
// ---------------------------------------------------------------------------------------------

/// Encoding `packet` for `version` fails with `error`; `encoded_len` agrees, and the buffer
/// keeps exactly what it held.
#[track_caller]
fn assert_encode_fails(version: ProtocolVersion, packet: &Packet, error: EncodeError) {
    let mut buf = BytesMut::from(&b"keep"[..]);
    assert_eq!(packet.encode(version, &mut buf), Err(error.clone()));
    assert_eq!(&buf[..], b"keep", "the buffer was written to");
    assert_eq!(packet.encoded_len(version), Err(error));
}

/// [MQTT-4.7.3-1] (3.1.1) / section 3.3.2.3.4 (5.0): no empty Topic Name without a Topic Alias
/// (and no alias at all before 5.0).
#[test]
fn encode_empty_topic_without_alias() {
    let p = Packet::Publish(Publish::new(
        TopicName::empty(),
        QosPid::AtMostOnce,
        Bytes::new(),
    ));
    assert_encode_fails(V311, &p, EncodeError::EmptyTopicWithoutAlias);
    assert_encode_fails(V5, &p, EncodeError::EmptyTopicWithoutAlias);
    let mut aliased = Publish::new(TopicName::empty(), QosPid::AtMostOnce, Bytes::new());
    aliased.properties.topic_alias = core::num::NonZeroU16::new(1);
    assert_encode_fails(
        V311,
        &Packet::Publish(aliased),
        EncodeError::EmptyTopicWithoutAlias,
    );
}

/// [MQTT-3.8.3-3] (3.1.1) / [MQTT-3.8.3-2] (5.0), [MQTT-3.10.3-2]: no empty SUBSCRIBE or
/// UNSUBSCRIBE.
#[test]
fn encode_empty_subscribe_and_unsubscribe() {
    let sub = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        subscriptions: vec![],
        properties: Default::default(),
    });
    let unsub = Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(1),
        filters: vec![],
        properties: Default::default(),
    });
    for version in [V311, V5] {
        assert_encode_fails(version, &sub, EncodeError::NoTopicFilters);
        assert_encode_fails(version, &unsub, EncodeError::NoTopicFilters);
    }
}

/// Table 2.1 of 3.1.1: type 15 is reserved, so AUTH cannot be sent before 5.0.
#[test]
fn encode_auth_before_v5() {
    for version in [V31, V311] {
        assert_encode_fails(
            version,
            &Packet::Auth(Auth::default()),
            EncodeError::NotInVersion(PacketType::Auth),
        );
    }
}

/// [MQTT-3.4.2-1] [MQTT-3.14.2-1] [MQTT-3.2.2-8] [MQTT-3.9.3-2] [MQTT-3.11.3-2]
/// [MQTT-3.15.2-1] (5.0): the sender uses only the codes its packet allows.
#[test]
fn encode_reason_code_not_valid_for_packet() {
    let mut puback = PubResponse::new(pid(1));
    puback.reason_code = ReasonCode::PacketIdentifierNotFound;
    let mut pubrel = PubResponse::new(pid(1));
    pubrel.reason_code = ReasonCode::NoMatchingSubscribers;
    let cases = [
        (
            Packet::PubAck(puback),
            PacketType::PubAck,
            ReasonCode::PacketIdentifierNotFound,
        ),
        (
            Packet::PubRel(pubrel),
            PacketType::PubRel,
            ReasonCode::NoMatchingSubscribers,
        ),
        (
            Packet::Disconnect(Disconnect::new(ReasonCode::GrantedQoS1)),
            PacketType::Disconnect,
            ReasonCode::GrantedQoS1,
        ),
        (
            Packet::from(ConnAck::new(ReasonCode::NoMatchingSubscribers)),
            PacketType::ConnAck,
            ReasonCode::NoMatchingSubscribers,
        ),
        (
            Packet::SubAck(SubAck {
                packet_id: pid(1),
                reason_codes: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
                properties: Default::default(),
            }),
            PacketType::SubAck,
            ReasonCode::NoSubscriptionExisted,
        ),
        (
            Packet::UnsubAck(UnsubAck {
                packet_id: pid(1),
                reason_codes: vec![ReasonCode::GrantedQoS1],
                properties: Default::default(),
            }),
            PacketType::UnsubAck,
            ReasonCode::GrantedQoS1,
        ),
        (
            Packet::Auth(Auth {
                reason_code: ReasonCode::NotAuthorized,
                properties: Default::default(),
            }),
            PacketType::Auth,
            ReasonCode::NotAuthorized,
        ),
    ];
    for (packet, packet_type, code) in cases {
        assert_encode_fails(
            V5,
            &packet,
            EncodeError::InvalidReasonCode { packet_type, code },
        );
    }
}

/// Section 1.5.6 of 5.0 / 1.5.3 of 3.1.1: a binary field holds at most 65 535 bytes (password,
/// will payload, Correlation Data, Authentication Data).
#[test]
fn encode_binary_field_over_65535_bytes() {
    let big = Bytes::from(vec![0u8; 65_536]);
    let mut c = Connect::new(V311, s("c"));
    c.username = Some(s("u"));
    c.password = Some(big.clone());
    assert_encode_fails(
        V311,
        &Packet::from(c),
        EncodeError::FieldTooLong { len: 65_536 },
    );

    let mut c = Connect::new(V5, s("c"));
    c.will = Some(mqtt_streaming_proto::Will {
        topic: TopicName::new("w").unwrap(),
        payload: big.clone(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    assert_encode_fails(
        V5,
        &Packet::from(c),
        EncodeError::FieldTooLong { len: 65_536 },
    );

    let mut p = Publish::new(
        TopicName::new("t").unwrap(),
        QosPid::AtMostOnce,
        Bytes::new(),
    );
    p.properties.correlation_data = Some(big.clone());
    assert_encode_fails(
        V5,
        &Packet::Publish(p),
        EncodeError::FieldTooLong { len: 65_536 },
    );

    let a = Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: mqtt_streaming_proto::AuthProperties {
            authentication_method: Some(s("m")),
            authentication_data: Some(big),
            ..Default::default()
        },
    };
    assert_encode_fails(
        V5,
        &Packet::Auth(a),
        EncodeError::FieldTooLong { len: 65_536 },
    );

    // 65 535 bytes is still fine.
    let mut c = Connect::new(V311, s("c"));
    c.username = Some(s("u"));
    c.password = Some(Bytes::from(vec![0u8; 65_535]));
    assert!(Packet::from(c).encoded_len(V311).is_ok());
}

/// [MQTT-3.1.2-22] (3.1.1): a Password without a User Name cannot be sent in 3.1 or 3.1.1.
#[test]
fn encode_password_without_username_v3() {
    for version in [V31, V311] {
        let mut c = Connect::new(version, s("c"));
        c.password = Some(Bytes::from_static(b"p"));
        assert_encode_fails(
            version,
            &Packet::from(c),
            EncodeError::PasswordWithoutUsername,
        );
    }
    let mut c = Connect::new(V5, s("c"));
    c.password = Some(Bytes::from_static(b"p"));
    assert!(Packet::from(c).encoded_len(V5).is_ok());
}

/// Section 3.2.2.3.4 of 5.0: Maximum QoS is 0 or 1; 2 is expressed by leaving it out.
#[test]
fn encode_maximum_qos_2_in_connack() {
    let mut ack = ConnAck::new(ReasonCode::Success);
    ack.properties.maximum_qos = Some(QoS::ExactlyOnce);
    assert_encode_fails(
        V5,
        &Packet::from(ack),
        EncodeError::InvalidPropertyValue(PropertyId::MaximumQoS),
    );
}

/// [MQTT-3.8.3-4] (5.0): No Local on a shared subscription cannot be sent.
#[test]
fn encode_no_local_on_shared_subscription() {
    let mut options = SubscriptionOptions::new(QoS::AtLeastOnce);
    options.no_local = true;
    let sub = Subscribe::new(pid(1), TopicFilter::new("$share/g/t").unwrap(), options);
    assert_encode_fails(
        V5,
        &Packet::Subscribe(sub),
        EncodeError::NoLocalOnSharedSubscription,
    );
}

// Section 3.8.3.1 of 5.0: "It is a Protocol Error if the Maximum QoS field has the value 3"
// (0x82), while in 3.1.1 the same byte makes the packet malformed ([MQTT-3.8.3-4] in 3.1.1, 0x81).
#[test]
fn subscription_qos_3_is_a_protocol_error_in_v5_and_malformed_in_v311() {
    use mqtt_streaming_proto::{DecodeError, Decoder, ProtocolVersion, ReasonCode};
    // SUBSCRIBE, packet id 1, (v5: no properties), filter "a", options 0x03.
    let v5 = [0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x03];
    let err = Decoder::new(ProtocolVersion::V5)
        .decode(&mut bytes::BytesMut::from(&v5[..]))
        .unwrap_err();
    assert_eq!(err, DecodeError::InvalidSubscriptionQoS);
    assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
    let v3 = [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03];
    let err = Decoder::new(ProtocolVersion::V3_1_1)
        .decode(&mut bytes::BytesMut::from(&v3[..]))
        .unwrap_err();
    assert_eq!(err, DecodeError::InvalidQoS(3));
    assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
}
