//! Normative statements about the encoding of strings, topics and CONNECT fields that the codec
//! enforces. Each input is written by hand from the packet layouts of the standards; each test
//! names the statement it checks and the version whose numbering it uses.

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    Connect, DecodeError, Decoder, MqttString, Packet, ProtocolVersion, Publish, QosPid,
    StringError, TopicError, TopicFilter, TopicName, UserProperty,
};

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// Ill-formed UTF-8: a lone continuation byte, an encoded surrogate U+D800, an overlong '/'.
const BAD_UTF8: [&[u8]; 3] = [&[b'a', 0x80], &[0xED, 0xA0, 0x80], &[0xC0, 0xAF]];

/// A packet: `first` byte, the Remaining Length, then `body`.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A two-byte length prefix and the bytes.
fn field(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A CONNECT with `flags` and `payload` (for 5.0 with an empty property block).
fn connect_bytes(version: ProtocolVersion, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T'];
    body.push(if version.is_v5() { 5 } else { 4 });
    body.extend_from_slice(&[flags, 0x00, 0x3C]);
    if version.is_v5() {
        body.push(0);
    }
    body.extend_from_slice(payload);
    packet(0x10, &body)
}

/// A QoS 0 PUBLISH with `topic` (raw bytes) and, for 5.0, the property block `props`.
fn publish_bytes(version: ProtocolVersion, topic: &[u8], props: &[u8]) -> Vec<u8> {
    let mut body = field(topic);
    if version.is_v5() {
        body.push(props.len() as u8);
        body.extend_from_slice(props);
    }
    packet(0x30, &body)
}

/// A SUBSCRIBE (packet id 1) or UNSUBSCRIBE with one filter (raw bytes).
fn filter_packet(version: ProtocolVersion, subscribe: bool, filter: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    if version.is_v5() {
        body.push(0);
    }
    body.extend_from_slice(&field(filter));
    if subscribe {
        body.push(0x01);
    }
    packet(if subscribe { 0x82 } else { 0xA2 }, &body)
}

#[track_caller]
fn decode(version: ProtocolVersion, bytes: &[u8]) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = Decoder::new(version)
        .decode(&mut buf)?
        .expect("a whole packet");
    assert!(buf.is_empty(), "the whole packet is consumed");
    Ok(packet)
}

/// Whether `error` reports ill-formed UTF-8 (or U+0000 when `null`), as a string or a topic.
fn is_string_error(error: &DecodeError, expected: StringError) -> bool {
    matches!(error, DecodeError::InvalidString(e) if *e == expected)
        || matches!(error, DecodeError::InvalidTopic(TopicError::String(e)) if *e == expected)
}

#[track_caller]
fn assert_bad_string(version: ProtocolVersion, bytes: &[u8], expected: StringError) {
    let error = decode(version, bytes).expect_err("must be rejected");
    assert!(
        is_string_error(&error, expected),
        "{version}: {bytes:02X?} gave {error:?}"
    );
    assert_eq!(
        error.reason_code(),
        mqtt_streaming_proto::ReasonCode::MalformedPacket
    );
}

#[test]
fn mqtt_3_1_3_4_client_id_is_a_utf8_string() {
    // [MQTT-3.1.3-4] (3.1.1 and 5.0): the ClientId must be a UTF-8 encoded string: a CONNECT
    // whose ClientId is not is malformed; a well-formed non-ASCII one is kept byte for byte.
    for version in [V311, V5] {
        for bad in BAD_UTF8 {
            assert_bad_string(
                version,
                &connect_bytes(version, 0x02, &field(bad)),
                StringError::InvalidUtf8,
            );
        }
        let good = connect_bytes(version, 0x02, &field("grüße".as_bytes()));
        let Packet::Connect(connect) = decode(version, &good).unwrap() else {
            panic!("not a CONNECT")
        };
        assert_eq!(connect.client_id.as_str(), "grüße");
    }
}

// [MQTT-3.1.3-11] (5.0): the same rule in 5.0's numbering.
#[test]
fn mqtt_3_1_3_10_will_topic_is_a_utf8_string_v311() {
    // [MQTT-3.1.3-10] (3.1.1): the Will Topic must be a UTF-8 encoded string.
    // (The same rule is [MQTT-3.1.3-11] in the other version; checked for both encodings.)
    for version in [V311, V5] {
        for bad in BAD_UTF8 {
            let mut payload = field(b"c");
            if version.is_v5() {
                payload.push(0); // will properties
            }
            payload.extend_from_slice(&field(bad));
            payload.extend_from_slice(&field(b"msg"));
            // Will Flag and Clean Session.
            assert_bad_string(
                version,
                &connect_bytes(version, 0x06, &payload),
                StringError::InvalidUtf8,
            );
        }
    }
}

// [MQTT-3.10.3-1] (3.1.1 and 5.0): UNSUBSCRIBE Topic Filters are UTF-8 encoded strings too.
#[test]
fn mqtt_3_8_3_1_subscribe_filters_are_utf8_strings() {
    // [MQTT-3.8.3-1] (3.1.1 and 5.0): the Topic Filters of SUBSCRIBE must be UTF-8 encoded
    // strings; a SUBSCRIBE (or UNSUBSCRIBE) with an ill-formed one is malformed.
    for version in [V311, V5] {
        for bad in BAD_UTF8 {
            for subscribe in [true, false] {
                assert_bad_string(
                    version,
                    &filter_packet(version, subscribe, bad),
                    StringError::InvalidUtf8,
                );
            }
        }
        let Packet::Subscribe(s) =
            decode(version, &filter_packet(version, true, "ä/+".as_bytes())).unwrap()
        else {
            panic!("not a SUBSCRIBE")
        };
        assert_eq!(s.subscriptions[0].filter.as_str(), "ä/+");
    }
}

#[test]
fn mqtt_4_7_3_2_no_null_character_in_topic_names_and_filters() {
    // [MQTT-4.7.3-2] (3.1.1 and 5.0): Topic Names and Topic Filters must not include U+0000:
    // the constructors refuse it and the decoder rejects it in a PUBLISH topic, a will topic,
    // a SUBSCRIBE and an UNSUBSCRIBE filter.
    assert_eq!(
        TopicName::new("a\0b"),
        Err(TopicError::String(StringError::NullCharacter))
    );
    assert_eq!(
        TopicFilter::new("a/\0/#"),
        Err(TopicError::String(StringError::NullCharacter))
    );
    for version in [V311, V5] {
        let null = StringError::NullCharacter;
        assert_bad_string(version, &publish_bytes(version, b"a\0b", &[]), null);
        assert_bad_string(version, &filter_packet(version, true, b"a/\0"), null);
        assert_bad_string(version, &filter_packet(version, false, b"\0"), null);
        let mut payload = field(b"c");
        if version.is_v5() {
            payload.push(0);
        }
        payload.extend_from_slice(&field(b"w\0"));
        payload.extend_from_slice(&field(b""));
        assert_bad_string(version, &connect_bytes(version, 0x06, &payload), null);
    }
}

#[test]
fn mqtt_4_7_3_3_topics_are_at_most_65535_bytes() {
    // [MQTT-4.7.3-3] (3.1.1 and 5.0): Topic Names and Topic Filters must not encode to more
    // than 65,535 bytes: one of 65,535 bytes is accepted and round-trips, one byte more is
    // refused by the constructors (a length prefix cannot describe it on the wire).
    let longest = "a".repeat(65_535);
    let too_long = "a".repeat(65_536);
    assert_eq!(
        TopicName::new(&too_long),
        Err(TopicError::String(StringError::TooLong))
    );
    assert_eq!(
        TopicFilter::new(&too_long),
        Err(TopicError::String(StringError::TooLong))
    );
    assert!(TopicFilter::new(&longest).is_ok());
    for version in [V311, V5] {
        let name = TopicName::new(&longest).unwrap();
        let mut buf = BytesMut::new();
        Packet::Publish(Publish::new(name.clone(), QosPid::AtMostOnce, Bytes::new()))
            .encode(version, &mut buf)
            .unwrap();
        let Packet::Publish(p) = decode(version, &buf).unwrap() else {
            panic!("not a PUBLISH")
        };
        assert_eq!(p.topic, name);
    }
}

#[test]
fn mqtt_1_5_4_3_bom_is_not_stripped_v5() {
    // [MQTT-1.5.4-3] (5.0): 0xEF 0xBB 0xBF is always U+FEFF and a receiver must not skip or
    // strip it: in a topic name and in both halves of a User Property.
    let bom = "\u{FEFF}";
    let mut props = vec![0x26];
    props.extend_from_slice(&field(format!("{bom}n").as_bytes()));
    props.extend_from_slice(&field(format!("{bom}v").as_bytes()));
    let bytes = publish_bytes(V5, format!("{bom}t").as_bytes(), &props);
    let Packet::Publish(p) = decode(V5, &bytes).unwrap() else {
        panic!("not a PUBLISH")
    };
    assert_eq!(p.topic.as_str(), "\u{FEFF}t");
    let user = &p.properties.user_properties[0];
    assert_eq!(user.name.as_str(), "\u{FEFF}n");
    assert_eq!(user.value.as_str(), "\u{FEFF}v");
    // And it is written back as it came.
    let mut again = BytesMut::new();
    Packet::Publish(p).encode(V5, &mut again).unwrap();
    assert_eq!(&again[..], &bytes[..]);
}

#[test]
fn mqtt_1_5_7_1_both_halves_of_a_string_pair_are_utf8_strings_v5() {
    // [MQTT-1.5.7-1] (5.0): the name and the value of a UTF-8 String Pair must both follow the
    // UTF-8 Encoded String rules: ill-formed UTF-8 or U+0000 in either half is malformed, and
    // `UserProperty::new` refuses U+0000 in either half.
    for (bad, error) in [
        (&b"a\x80"[..], StringError::InvalidUtf8),
        (&b"\0"[..], StringError::NullCharacter),
    ] {
        for name_is_bad in [true, false] {
            let (name, value): (&[u8], &[u8]) = if name_is_bad {
                (bad, b"v")
            } else {
                (b"n", bad)
            };
            let mut props = vec![0x26];
            props.extend_from_slice(&field(name));
            props.extend_from_slice(&field(value));
            assert_bad_string(V5, &publish_bytes(V5, b"t", &props), error);
        }
    }
    assert!(UserProperty::new("a\0", "v").is_err());
    assert!(UserProperty::new("n", "\0b").is_err());
    assert!(UserProperty::new("n", "v").is_ok());
}

#[test]
fn mqtt_3_1_2_16_user_name_flag_0_means_no_user_name_v5() {
    // [MQTT-3.1.2-16] (5.0): with the User Name Flag 0 no User Name is in the payload: we
    // write neither flag nor field for a CONNECT without one, and a CONNECT whose flag is 0
    // but which carries a User Name after the Client Identifier is malformed.
    let connect = Connect::new(V5, MqttString::new("c").unwrap());
    let mut buf = BytesMut::new();
    Packet::from(connect).encode(V5, &mut buf).unwrap();
    assert_eq!(&buf[..], &connect_bytes(V5, 0x02, &field(b"c"))[..]);
    assert_eq!(buf[9] & 0x80, 0, "User Name Flag");
    let mut payload = field(b"c");
    payload.extend_from_slice(&field(b"user"));
    assert_eq!(
        decode(V5, &connect_bytes(V5, 0x02, &payload)),
        Err(DecodeError::TrailingBytes)
    );
}

#[test]
fn mqtt_3_1_2_18_password_flag_0_means_no_password_v5() {
    // [MQTT-3.1.2-18] (5.0): with the Password Flag 0 no Password is in the payload: we write
    // neither flag nor field for a CONNECT without one, and a CONNECT whose flag is 0 but which
    // carries a Password after the User Name is malformed.
    let mut connect = Connect::new(V5, MqttString::new("c").unwrap());
    connect.username = Some(MqttString::new("u").unwrap());
    let mut buf = BytesMut::new();
    Packet::from(connect).encode(V5, &mut buf).unwrap();
    let mut payload = field(b"c");
    payload.extend_from_slice(&field(b"u"));
    assert_eq!(&buf[..], &connect_bytes(V5, 0x82, &payload)[..]);
    assert_eq!(buf[9] & 0x40, 0, "Password Flag");
    payload.extend_from_slice(&field(b"secret"));
    assert_eq!(
        decode(V5, &connect_bytes(V5, 0x82, &payload)),
        Err(DecodeError::TrailingBytes)
    );
}

#[test]
fn mqtt_3_3_2_13_response_topic_is_a_utf8_string_v5() {
    // [MQTT-3.3.2-13] (5.0): the Response Topic must be a UTF-8 Encoded String.
    for bad in BAD_UTF8 {
        let mut props = vec![0x08];
        props.extend_from_slice(&field(bad));
        assert_bad_string(
            V5,
            &publish_bytes(V5, b"t", &props),
            StringError::InvalidUtf8,
        );
    }
    let mut props = vec![0x08];
    props.extend_from_slice(&field("antwort/ü".as_bytes()));
    let Packet::Publish(p) = decode(V5, &publish_bytes(V5, b"t", &props)).unwrap() else {
        panic!("not a PUBLISH")
    };
    assert_eq!(
        p.properties.response_topic.as_ref().map(TopicName::as_str),
        Some("antwort/ü")
    );
}

#[test]
fn mqtt_3_3_2_19_content_type_is_a_utf8_string_v5() {
    // [MQTT-3.3.2-19] (5.0): the Content Type must be a UTF-8 Encoded String.
    for bad in BAD_UTF8 {
        let mut props = vec![0x03];
        props.extend_from_slice(&field(bad));
        assert_bad_string(
            V5,
            &publish_bytes(V5, b"t", &props),
            StringError::InvalidUtf8,
        );
    }
    let mut props = vec![0x03];
    props.extend_from_slice(&field(b"\0"));
    assert_bad_string(
        V5,
        &publish_bytes(V5, b"t", &props),
        StringError::NullCharacter,
    );
}

#[test]
fn mqtt_3_1_3_3_client_id_is_the_first_payload_field_v5() {
    // [MQTT-3.1.3-3] (5.0): the ClientID is present and is the first field of the CONNECT
    // payload, also when a will, a user name and a password follow; an empty one is still
    // written (length 0).
    for (id, will) in [("c1", true), ("", false)] {
        let mut connect = Connect::new(V5, MqttString::new(id).unwrap());
        connect.username = Some(MqttString::new("u").unwrap());
        connect.password = Some(Bytes::from_static(b"p"));
        if will {
            connect.will = Some(mqtt_streaming_proto::Will {
                topic: TopicName::new("w").unwrap(),
                payload: Bytes::from_static(b"m"),
                qos: mqtt_streaming_proto::QoS::AtMostOnce,
                retain: false,
                properties: Default::default(),
            });
        }
        let mut buf = BytesMut::new();
        Packet::from(connect).encode(V5, &mut buf).unwrap();
        // Fixed header (2), protocol name (6), level, flags, keep alive (2), properties (1).
        let payload = &buf[2 + 6 + 1 + 1 + 2 + 1..];
        assert_eq!(
            &payload[..2 + id.len()],
            &field(id.as_bytes())[..],
            "{id:?}"
        );
        let Packet::Connect(back) = decode(V5, &buf).unwrap() else {
            panic!("not a CONNECT")
        };
        assert_eq!(back.client_id.as_str(), id);
    }
    // A CONNECT whose payload ends before the ClientID is malformed.
    let truncated = connect_bytes(V5, 0x02, &[]);
    assert_eq!(decode(V5, &truncated), Err(DecodeError::UnexpectedEnd));
}
