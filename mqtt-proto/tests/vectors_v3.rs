//! Byte-exact vectors for MQTT 3.1 and 3.1.1.
//!
//! Every expected byte string below was worked out by hand from the packet layouts of the
//! MQTT 3.1.1 standard (OASIS Standard, 29 October 2014), section by section; where the
//! standard prints a non-normative example (CONNECT variable header, PUBLISH variable header,
//! SUBSCRIBE, SUBACK and UNSUBSCRIBE payloads) the vector reuses it. Each
//! vector is checked both ways: encoding the value gives exactly the bytes, and decoding the
//! bytes gives exactly the value and consumes the whole buffer. Every strict prefix of a vector
//! must decode to `Ok(None)` and leave the buffer untouched.
//!
//! Statement ids cited here are those of MQTT 3.1.1 unless the comment says otherwise.

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    ConnAck, Connect, Decoder, Disconnect, FixedHeader, MqttString, Packet, PacketId, PacketType,
    ProtocolVersion, PubResponse, Publish, QoS, QosPid, ReasonCode, SubAck, Subscribe,
    Subscription, SubscriptionOptions, TopicFilter, TopicName, UnsubAck, Unsubscribe, Will,
    WillProperties, PROTOCOL_MAX_PACKET_SIZE, VARINT_MAX,
};

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V31: ProtocolVersion = ProtocolVersion::V3_1;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn pid(id: u16) -> PacketId {
    PacketId::new(id).unwrap()
}

fn s(text: &str) -> MqttString {
    MqttString::new(text).unwrap()
}

fn topic(name: &str) -> TopicName {
    TopicName::new(name).unwrap()
}

fn filter(f: &str) -> TopicFilter {
    TopicFilter::new(f).unwrap()
}

/// Every strict prefix of `bytes` is an incomplete packet: `Ok(None)`, nothing consumed.
fn assert_prefixes_incomplete(version: ProtocolVersion, bytes: &[u8]) {
    let decoder = Decoder::new(version);
    for cut in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..cut]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(None),
            "prefix of {cut} bytes must be incomplete"
        );
        assert_eq!(
            &buf[..],
            &bytes[..cut],
            "prefix of {cut} bytes was consumed"
        );
    }
}

/// Encodes `packet` and compares with `expected`; decodes `expected` and compares with
/// `packet`. The decoder must consume exactly the whole buffer.
fn check(version: ProtocolVersion, packet: &Packet, expected: &[u8]) {
    let mut out = BytesMut::new();
    packet.encode(version, &mut out).expect("encodes");
    assert_eq!(&out[..], expected, "encoded bytes differ");
    assert_eq!(packet.encoded_len(version), Ok(expected.len()));

    let mut input = BytesMut::from(expected);
    let decoded = Decoder::new(version)
        .decode(&mut input)
        .expect("decodes")
        .expect("a whole packet");
    assert!(input.is_empty(), "{} bytes left over", input.len());
    assert_eq!(&decoded, packet, "decoded value differs");

    if expected.len() <= 600 {
        assert_prefixes_incomplete(version, expected);
    }
}

/// Decodes `bytes` (a whole packet) and returns the packet, asserting nothing is left over.
fn decode_all(version: ProtocolVersion, bytes: &[u8]) -> Packet {
    let mut input = BytesMut::from(bytes);
    let packet = Decoder::new(version)
        .decode(&mut input)
        .expect("decodes")
        .expect("a whole packet");
    assert!(input.is_empty());
    packet
}

fn connect(client_id: &str) -> Connect {
    Connect::new(V311, s(client_id))
}

// ---------------------------------------------------------------------------------------------
// CONNECT (section 3.1)
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.1.3-3] Client Identifier first in the payload; minimal CONNECT with Clean Session.
#[test]
fn connect_minimal_clean_session() {
    let packet = Packet::from(connect("abc"));
    let expected = [
        0x10, 0x0F, // CONNECT, flags 0; remaining length 15 = 10 (variable header) + 5
        0x00, 0x04, b'M', b'Q', b'T', b'T', // Protocol Name "MQTT"
        0x04, // Protocol Level 4 (3.1.1)
        0x02, // Connect Flags: Clean Session
        0x00, 0x3C, // Keep Alive 60
        0x00, 0x03, b'a', b'b', b'c', // Client Identifier "abc"
    ];
    check(V311, &packet, &expected);
}

/// [MQTT-3.1.2-4] Clean Session 0 is carried as flag bit 1 cleared; keep alive 0.
#[test]
fn connect_clean_session_off_keep_alive_zero() {
    let mut c = connect("c1");
    c.clean_start = false;
    c.keep_alive = 0;
    let expected = [
        0x10, 0x0E, // CONNECT; remaining length 14
        0x00, 0x04, b'M', b'Q', b'T', b'T', // "MQTT"
        0x04, // level 4
        0x00, // no flag at all
        0x00, 0x00, // Keep Alive 0: mechanism off
        0x00, 0x02, b'c', b'1', // Client Identifier "c1"
    ];
    check(V311, &Packet::from(c), &expected);
}

/// [MQTT-3.1.3-6] A zero-length Client Identifier is representable (with Clean Session 1,
/// [MQTT-3.1.3-7]).
#[test]
fn connect_empty_client_id() {
    let packet = Packet::from(connect(""));
    let expected = [
        0x10, 0x0C, // CONNECT; remaining length 12
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, // variable header
        0x00, 0x00, // Client Identifier: zero length
    ];
    check(V311, &packet, &expected);
}

/// [MQTT-3.1.2-9] The non-normative CONNECT variable header example of section 3.1.2.10 of 3.1.1 (flags 0xCE: user name,
/// password, will QoS 1, will flag, clean session; keep alive 10), with a payload in the order
/// of [MQTT-3.1.3-1].
#[test]
fn connect_spec_example_variable_header() {
    let mut c = connect("c");
    c.keep_alive = 10;
    c.will = Some(Will {
        topic: topic("t"),
        payload: Bytes::from_static(b"m"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    c.username = Some(s("u"));
    c.password = Some(Bytes::from_static(b"p"));
    let expected = [
        0x10, 0x19, // CONNECT; remaining length 25 = 10 + 5 fields of 3 bytes
        0x00, 0x04, b'M', b'Q', b'T', b'T', // "MQTT"
        0x04, // level 4
        0xCE, // 1100_1110: user name, password, will retain 0, will QoS 01, will, clean
        0x00, 0x0A, // Keep Alive 10
        0x00, 0x01, b'c', // Client Identifier
        0x00, 0x01, b't', // Will Topic
        0x00, 0x01, b'm', // Will Message
        0x00, 0x01, b'u', // User Name
        0x00, 0x01, b'p', // Password
    ];
    check(V311, &Packet::from(c), &expected);
}

/// [MQTT-3.1.2-19] [MQTT-3.1.2-21] User name and (binary) password present with their flags;
/// Will Retain 1 with Will QoS 1.
#[test]
fn connect_will_qos1_retain_username_password() {
    let mut c = connect("id");
    c.keep_alive = 10;
    c.will = Some(Will {
        topic: topic("w/t"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: WillProperties::default(),
    });
    c.username = Some(s("user"));
    c.password = Some(Bytes::from_static(&[0x01, 0x02]));
    let expected = [
        0x10, 0x22, // CONNECT; remaining length 34 = 10 + 4 + 5 + 5 + 6 + 4
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, // "MQTT", level 4
        0xEE, // 1110_1110: user, password, will retain, will QoS 01, will flag, clean
        0x00, 0x0A, // Keep Alive 10
        0x00, 0x02, b'i', b'd', // Client Identifier "id"
        0x00, 0x03, b'w', b'/', b't', // Will Topic "w/t"
        0x00, 0x03, b'b', b'y', b'e', // Will Message "bye"
        0x00, 0x04, b'u', b's', b'e', b'r', // User Name "user"
        0x00, 0x02, 0x01, 0x02, // Password: two binary bytes
    ];
    check(V311, &Packet::from(c), &expected);
}

/// [MQTT-3.1.2-14] Will QoS 2 (bits 4-3 = 10), Will Retain 0, an empty will message, and a
/// non-ASCII user name whose length counts bytes ([MQTT-3.1.3-11]).
#[test]
fn connect_will_qos2_username_only_non_ascii() {
    let mut c = connect("x");
    c.will = Some(Will {
        topic: topic("a"),
        payload: Bytes::new(),
        qos: QoS::ExactlyOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    c.username = Some(s("grüße"));
    let expected = [
        0x10, 0x1B, // CONNECT; remaining length 27 = 10 + 3 + 3 + 2 + 9
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, // "MQTT", level 4
        0x96, // 1001_0110: user name, will QoS 10, will flag, clean
        0x00, 0x3C, // Keep Alive 60
        0x00, 0x01, b'x', // Client Identifier
        0x00, 0x01, b'a', // Will Topic "a"
        0x00, 0x00, // Will Message: empty
        0x00, 0x07, b'g', b'r', 0xC3, 0xBC, 0xC3, 0x9F, b'e', // "grüße": 5 chars, 7 bytes
    ];
    check(V311, &Packet::from(c), &expected);
}

/// [MQTT-3.1.2-9] Will QoS 0 with Will Flag (bits 4-3 = 00, bit 2 = 1).
#[test]
fn connect_will_qos0() {
    let mut c = connect("x");
    c.will = Some(Will {
        topic: topic("w"),
        payload: Bytes::from_static(b"!"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    let expected = [
        0x10, 0x13, // CONNECT; remaining length 19 = 10 + 3 + 3 + 3
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, // "MQTT", level 4
        0x06, // 0000_0110: will flag, clean
        0x00, 0x3C, // Keep Alive 60
        0x00, 0x01, b'x', // Client Identifier
        0x00, 0x01, b'w', // Will Topic
        0x00, 0x01, b'!', // Will Message
    ];
    check(V311, &Packet::from(c), &expected);
}

/// [MQTT-3.1.2-1] MQTT 3.1: Protocol Name "MQIsdp" with Protocol Level 3.
#[test]
fn connect_mqtt_3_1_mqisdp_level_3() {
    let c = Connect::new(V31, s("abc"));
    let expected = [
        0x10, 0x11, // CONNECT; remaining length 17 = 12 + 5
        0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', // Protocol Name "MQIsdp"
        0x03, // Protocol Level 3
        0x02, // Clean Session
        0x00, 0x3C, // Keep Alive 60
        0x00, 0x03, b'a', b'b', b'c', // Client Identifier
    ];
    check(V31, &Packet::from(c.clone()), &expected);
    // CONNECT carries its own version: a decoder still set to 3.1.1 reads it as 3.1 too.
    assert_eq!(decode_all(V311, &expected), Packet::from(c));
}

/// [MQTT-3.1.2-22] MQTT 3.1 with user name and password.
#[test]
fn connect_mqtt_3_1_username_password() {
    let mut c = Connect::new(V31, s("c"));
    c.username = Some(s("u"));
    c.password = Some(Bytes::from_static(b"pw"));
    let expected = [
        0x10, 0x16, // CONNECT; remaining length 22 = 12 + 3 + 3 + 4
        0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, // "MQIsdp", level 3
        0xC2, // user name, password, clean
        0x00, 0x3C, // Keep Alive 60
        0x00, 0x01, b'c', // Client Identifier
        0x00, 0x01, b'u', // User Name
        0x00, 0x02, b'p', b'w', // Password
    ];
    check(V31, &Packet::from(c), &expected);
}

// ---------------------------------------------------------------------------------------------
// CONNACK (section 3.2)
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.2.2-4] CONNACK return codes 0 to 5 (table 3.1 of 3.1.1), Session Present 0.
#[test]
fn connack_return_codes_0_to_5() {
    let codes = [
        (0x00, ReasonCode::Success),                    // Connection Accepted
        (0x01, ReasonCode::UnsupportedProtocolVersion), // unacceptable protocol version
        (0x02, ReasonCode::ClientIdentifierNotValid),   // identifier rejected
        (0x03, ReasonCode::ServerUnavailable),          // server unavailable
        (0x04, ReasonCode::BadUserNameOrPassword),      // bad user name or password
        (0x05, ReasonCode::NotAuthorized),              // not authorized
    ];
    for (byte, code) in codes {
        let expected = [
            0x20, 0x02, // CONNACK; remaining length 2
            0x00, // Connect Acknowledge Flags: Session Present 0
            byte, // Connect Return code
        ];
        check(V311, &Packet::from(ConnAck::new(code)), &expected);
        check(V31, &Packet::from(ConnAck::new(code)), &expected);
    }
}

/// [MQTT-3.2.2-2] Session Present 1 is bit 0 of the acknowledge flags.
#[test]
fn connack_session_present() {
    let mut ack = ConnAck::new(ReasonCode::Success);
    ack.session_present = true;
    let expected = [0x20, 0x02, 0x01, 0x00]; // CONNACK, length 2, Session Present, accepted
    check(V311, &Packet::from(ack), &expected);
}

// ---------------------------------------------------------------------------------------------
// PUBLISH (section 3.3)
// ---------------------------------------------------------------------------------------------

/// [MQTT-2.3.1-5] A QoS 0 PUBLISH carries no Packet Identifier.
#[test]
fn publish_qos0() {
    let p = Publish::new(topic("a/b"), QosPid::AtMostOnce, &b"hello"[..]);
    let expected = [
        0x30, 0x0A, // PUBLISH, DUP 0, QoS 00, RETAIN 0; remaining length 10
        0x00, 0x03, b'a', b'/', b'b', // Topic Name "a/b"
        b'h', b'e', b'l', b'l', b'o', // payload (no packet identifier at QoS 0)
    ];
    check(V311, &Packet::Publish(p), &expected);
}

/// [MQTT-3.3.2-1] The PUBLISH variable header example of section 3.3.2 of 3.1.1: topic "a/b", packet identifier 10, at QoS 1 with
/// RETAIN.
#[test]
fn publish_qos1_retain_spec_example() {
    let mut p = Publish::new(topic("a/b"), QosPid::AtLeastOnce(pid(10)), Bytes::new());
    p.retain = true;
    let expected = [
        0x33, // PUBLISH, flags 0011: DUP 0, QoS 01, RETAIN 1
        0x07, // remaining length 7
        0x00, 0x03, b'a', b'/', b'b', // Topic Name "a/b"
        0x00, 0x0A, // Packet Identifier 10
    ];
    check(V311, &Packet::Publish(p), &expected);
}

/// [MQTT-3.3.1-1] DUP with QoS 2 (flags 1100).
#[test]
fn publish_qos2_dup() {
    let mut p = Publish::new(
        topic("x"),
        QosPid::ExactlyOnce(pid(0x1234)),
        &b"\x00\xFF"[..],
    );
    p.dup = true;
    let expected = [
        0x3C, // PUBLISH, flags 1100: DUP 1, QoS 10, RETAIN 0
        0x07, // remaining length 7
        0x00, 0x01, b'x', // Topic Name "x"
        0x12, 0x34, // Packet Identifier 0x1234
        0x00, 0xFF, // binary payload
    ];
    check(V311, &Packet::Publish(p), &expected);
}

/// [MQTT-3.3.1-1] DUP, QoS 1 and RETAIN together (flags 1011), largest packet identifier.
#[test]
fn publish_qos1_dup_retain_max_packet_id() {
    let mut p = Publish::new(topic("x"), QosPid::AtLeastOnce(PacketId::MAX), &b"z"[..]);
    p.dup = true;
    p.retain = true;
    let expected = [
        0x3B, // PUBLISH, flags 1011: DUP 1, QoS 01, RETAIN 1
        0x06, // remaining length 6
        0x00, 0x01, b'x', // Topic Name
        0xFF, 0xFF, // Packet Identifier 65535
        b'z', // payload
    ];
    check(V311, &Packet::Publish(p), &expected);
}

/// [MQTT-3.3.1-10] RETAIN with a zero-length payload (a retained-message delete), QoS 0.
#[test]
fn publish_qos0_retain_empty_payload() {
    let mut p = Publish::new(topic("a/b"), QosPid::AtMostOnce, Bytes::new());
    p.retain = true;
    let expected = [
        0x31, 0x05, // PUBLISH, RETAIN; remaining length 5
        0x00, 0x03, b'a', b'/', b'b', // Topic Name, then nothing
    ];
    check(V311, &Packet::Publish(p), &expected);
}

/// [MQTT-1.5.3-1] A non-ASCII topic: "grüße/welt" is 10 characters and 12 bytes.
#[test]
fn publish_non_ascii_topic() {
    let p = Publish::new(topic("grüße/welt"), QosPid::AtMostOnce, &b"hi"[..]);
    let expected = [
        0x30, 0x10, // PUBLISH QoS 0; remaining length 16 = 2 + 12 + 2
        0x00, 0x0C, // topic length 12
        b'g', b'r', 0xC3, 0xBC, 0xC3, 0x9F, b'e', b'/', b'w', b'e', b'l',
        b't', // "grüße/welt"
        b'h', b'i', // payload
    ];
    check(V311, &Packet::Publish(p), &expected);
}

/// [MQTT-1.5.3-3] U+FEFF (EF BB BF) inside a topic is kept, not stripped.
#[test]
fn publish_topic_with_bom_is_kept() {
    let p = Publish::new(topic("\u{FEFF}t"), QosPid::AtMostOnce, Bytes::new());
    let expected = [
        0x30, 0x06, // PUBLISH QoS 0; remaining length 6
        0x00, 0x04, 0xEF, 0xBB, 0xBF, b't', // U+FEFF then "t"
    ];
    check(V311, &Packet::Publish(p.clone()), &expected);
    let Packet::Publish(decoded) = decode_all(V311, &expected) else {
        panic!("not a PUBLISH")
    };
    assert_eq!(decoded.topic.as_str(), "\u{FEFF}t");
}

/// The payload of a decoded PUBLISH is a slice of the input buffer, not a copy.
#[test]
fn publish_decode_is_zero_copy() {
    let bytes = [
        0x32, 0x0B, // PUBLISH QoS 1; remaining length 11
        0x00, 0x03, b'a', b'/', b'b', // Topic Name
        0x00, 0x07, // Packet Identifier 7
        b'd', b'a', b't', b'a', // payload
    ];
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(&bytes);
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let Some(Packet::Publish(p)) = Decoder::new(V311).decode(&mut buf).unwrap() else {
        panic!("not a PUBLISH")
    };
    let payload = p.payload.as_ptr() as usize;
    assert_eq!(&p.payload[..], b"data");
    assert!(payload >= start && payload + p.payload.len() <= end);
    assert_eq!(
        payload,
        start + 9,
        "payload starts after header, topic and id"
    );
    let t = p.topic.as_bytes().as_ptr() as usize;
    assert_eq!(t, start + 4, "topic is a slice of the input too");
}

// ---------------------------------------------------------------------------------------------
// PUBACK, PUBREC, PUBREL, PUBCOMP (sections 3.4 to 3.7)
// ---------------------------------------------------------------------------------------------

/// [MQTT-2.3.1-6] The four acknowledgements carry only the Packet Identifier.
#[test]
fn pub_responses() {
    // PUBACK: type 4, flags 0000; remaining length 2; Packet Identifier 10.
    check(
        V311,
        &Packet::PubAck(PubResponse::new(pid(10))),
        &[0x40, 0x02, 0x00, 0x0A],
    );
    // PUBREC: type 5, flags 0000.
    check(
        V311,
        &Packet::PubRec(PubResponse::new(pid(0x0102))),
        &[0x50, 0x02, 0x01, 0x02],
    );
    // PUBREL: type 6, flags 0010 ([MQTT-3.6.1-1]).
    check(
        V311,
        &Packet::PubRel(PubResponse::new(pid(1))),
        &[0x62, 0x02, 0x00, 0x01],
    );
    // PUBCOMP: type 7, flags 0000.
    check(
        V311,
        &Packet::PubComp(PubResponse::new(PacketId::MAX)),
        &[0x70, 0x02, 0xFF, 0xFF],
    );
}

/// MQTT 5 reason codes and properties do not exist in 3.1.1: encoding drops them.
#[test]
fn pub_response_v5_fields_are_not_encoded_in_v3() {
    let mut ack = PubResponse::new(pid(10));
    ack.reason_code = ReasonCode::NoMatchingSubscribers;
    ack.properties.reason_string = Some(s("why"));
    let mut out = BytesMut::new();
    Packet::PubAck(ack).encode(V311, &mut out).unwrap();
    assert_eq!(&out[..], [0x40, 0x02, 0x00, 0x0A]);
}

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK (sections 3.8 to 3.11)
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.8.1-1] The SUBSCRIBE payload example of section 3.8.3 of 3.1.1: "a/b" at QoS 1 and "c/d" at QoS 2, packet id 10.
#[test]
fn subscribe_spec_example() {
    let sub = Subscribe {
        packet_id: pid(10),
        subscriptions: vec![
            Subscription {
                filter: filter("a/b"),
                options: SubscriptionOptions::new(QoS::AtLeastOnce),
            },
            Subscription {
                filter: filter("c/d"),
                options: SubscriptionOptions::new(QoS::ExactlyOnce),
            },
        ],
        properties: Default::default(),
    };
    let expected = [
        0x82, // SUBSCRIBE, flags 0010
        0x0E, // remaining length 14
        0x00, 0x0A, // Packet Identifier 10
        0x00, 0x03, b'a', b'/', b'b', 0x01, // "a/b", Requested QoS 1
        0x00, 0x03, b'c', b'/', b'd', 0x02, // "c/d", Requested QoS 2
    ];
    check(V311, &Packet::Subscribe(sub), &expected);
}

/// [MQTT-4.7.1-2] [MQTT-4.7.1-3] Filters with '#' and '+' at QoS 0.
#[test]
fn subscribe_wildcards_qos0() {
    let sub = Subscribe {
        packet_id: pid(1),
        subscriptions: vec![
            Subscription {
                filter: filter("#"),
                options: SubscriptionOptions::new(QoS::AtMostOnce),
            },
            Subscription {
                filter: filter("+/x/+"),
                options: SubscriptionOptions::new(QoS::AtMostOnce),
            },
        ],
        properties: Default::default(),
    };
    let expected = [
        0x82, 0x0E, // SUBSCRIBE; remaining length 14 = 2 + 4 + 8
        0x00, 0x01, // Packet Identifier 1
        0x00, 0x01, b'#', 0x00, // "#", QoS 0
        0x00, 0x05, b'+', b'/', b'x', b'/', b'+', 0x00, // "+/x/+", QoS 0
    ];
    check(V311, &Packet::Subscribe(sub), &expected);
}

/// In 3.1.1 the options byte carries only the QoS: MQTT 5 options are not encoded.
#[test]
fn subscribe_v5_options_dropped_in_v3() {
    let mut options = SubscriptionOptions::new(QoS::AtLeastOnce);
    options.no_local = true;
    options.retain_as_published = true;
    let sub = Subscribe::new(pid(2), filter("t"), options);
    let mut out = BytesMut::new();
    Packet::Subscribe(sub).encode(V311, &mut out).unwrap();
    assert_eq!(&out[..], [0x82, 0x06, 0x00, 0x02, 0x00, 0x01, b't', 0x01]);
}

/// [MQTT-3.9.3-1] The SUBACK payload example of section 3.9.3 of 3.1.1: return codes "QoS 0", "QoS 2", "Failure"; plus QoS 1.
#[test]
fn suback_return_codes() {
    let ack = SubAck {
        packet_id: pid(10),
        reason_codes: vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
            ReasonCode::GrantedQoS1,
        ],
        properties: Default::default(),
    };
    let expected = [
        0x90, 0x06, // SUBACK; remaining length 6
        0x00, 0x0A, // Packet Identifier 10
        0x00, // Success - Maximum QoS 0
        0x02, // Success - Maximum QoS 2
        0x80, // Failure
        0x01, // Success - Maximum QoS 1
    ];
    check(V311, &Packet::SubAck(ack), &expected);
}

/// [MQTT-3.9.3-2] Any MQTT 5 failure code goes out as the single 3.1.1 failure code 0x80.
#[test]
fn suback_v5_failure_codes_become_0x80() {
    let ack = SubAck {
        packet_id: pid(3),
        reason_codes: vec![ReasonCode::NotAuthorized, ReasonCode::TopicFilterInvalid],
        properties: Default::default(),
    };
    let mut out = BytesMut::new();
    Packet::SubAck(ack).encode(V311, &mut out).unwrap();
    assert_eq!(&out[..], [0x90, 0x04, 0x00, 0x03, 0x80, 0x80]);
}

/// [MQTT-3.10.1-1] The UNSUBSCRIBE payload example of section 3.10.3 of 3.1.1: UNSUBSCRIBE "a/b" and "c/d", packet id 10.
#[test]
fn unsubscribe_spec_example() {
    let unsub = Unsubscribe {
        packet_id: pid(10),
        filters: vec![filter("a/b"), filter("c/d")],
        properties: Default::default(),
    };
    let expected = [
        0xA2, // UNSUBSCRIBE, flags 0010
        0x0C, // remaining length 12
        0x00, 0x0A, // Packet Identifier 10
        0x00, 0x03, b'a', b'/', b'b', // "a/b"
        0x00, 0x03, b'c', b'/', b'd', // "c/d"
    ];
    check(V311, &Packet::Unsubscribe(unsub), &expected);
}

/// [MQTT-3.10.4-4] UNSUBACK in 3.1.1 has only the Packet Identifier, no codes.
#[test]
fn unsuback_has_no_codes() {
    let ack = UnsubAck {
        packet_id: pid(10),
        reason_codes: vec![],
        properties: Default::default(),
    };
    check(V311, &Packet::UnsubAck(ack), &[0xB0, 0x02, 0x00, 0x0A]);
    // MQTT 5 codes are dropped when encoding for 3.1.1.
    let ack5 = UnsubAck {
        packet_id: pid(10),
        reason_codes: vec![ReasonCode::NoSubscriptionExisted],
        properties: Default::default(),
    };
    let mut out = BytesMut::new();
    Packet::UnsubAck(ack5).encode(V311, &mut out).unwrap();
    assert_eq!(&out[..], [0xB0, 0x02, 0x00, 0x0A]);
}

// ---------------------------------------------------------------------------------------------
// PINGREQ, PINGRESP, DISCONNECT (sections 3.12 to 3.14)
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.12.4-1] PINGREQ and PINGRESP are a fixed header with remaining length 0.
#[test]
fn pingreq_pingresp() {
    check(V311, &Packet::PingReq, &[0xC0, 0x00]); // type 12, flags 0, length 0
    check(V311, &Packet::PingResp, &[0xD0, 0x00]); // type 13, flags 0, length 0
    check(V31, &Packet::PingReq, &[0xC0, 0x00]);
}

/// [MQTT-3.14.1-1] DISCONNECT is a fixed header with flags 0 and no body in 3.1.1.
#[test]
fn disconnect() {
    check(
        V311,
        &Packet::Disconnect(Disconnect::default()),
        &[0xE0, 0x00],
    );
    // A reason code is MQTT 5 only: still two bytes in 3.1.1.
    let mut out = BytesMut::new();
    Packet::Disconnect(Disconnect::new(ReasonCode::ServerShuttingDown))
        .encode(V311, &mut out)
        .unwrap();
    assert_eq!(&out[..], [0xE0, 0x00]);
}

// ---------------------------------------------------------------------------------------------
// A stream of several packets
// ---------------------------------------------------------------------------------------------

/// Packets back to back in one buffer are taken off one at a time.
#[test]
fn back_to_back_packets() {
    let mut buf = BytesMut::from(
        &[
            0xC0, 0x00, // PINGREQ
            0x40, 0x02, 0x00, 0x05, // PUBACK 5
            0xE0, 0x00, // DISCONNECT
            0x30, // the first byte of a PUBLISH still in flight
        ][..],
    );
    let d = Decoder::new(V311);
    assert_eq!(d.decode(&mut buf), Ok(Some(Packet::PingReq)));
    assert_eq!(
        d.decode(&mut buf),
        Ok(Some(Packet::PubAck(PubResponse::new(pid(5)))))
    );
    assert_eq!(
        d.decode(&mut buf),
        Ok(Some(Packet::Disconnect(Disconnect::default())))
    );
    assert_eq!(d.decode(&mut buf), Ok(None));
    assert_eq!(&buf[..], [0x30]);
}

// ---------------------------------------------------------------------------------------------
// Remaining Length boundaries (section 2.2.3 of 3.1.1, table 2.4)
// ---------------------------------------------------------------------------------------------

/// A QoS 0 PUBLISH to topic "t" whose Remaining Length is exactly `remaining`: 3 bytes of
/// topic, the rest payload.
fn publish_with_remaining(remaining: usize) -> Publish {
    Publish::new(topic("t"), QosPid::AtMostOnce, vec![0xA5; remaining - 3])
}

fn check_remaining_length(remaining: usize, length_bytes: &[u8]) {
    let p = publish_with_remaining(remaining);
    let mut expected = Vec::with_capacity(1 + length_bytes.len() + remaining);
    expected.push(0x30); // PUBLISH QoS 0
    expected.extend_from_slice(length_bytes); // the Remaining Length, hand-encoded
    expected.extend_from_slice(&[0x00, 0x01, b't']); // Topic Name "t"
    expected.resize(1 + length_bytes.len() + remaining, 0xA5); // payload
    check(V311, &Packet::Publish(p), &expected);

    // The header alone tells the decoder the size of the packet.
    let header = Decoder::new(V311)
        .peek_header(&expected[..1 + length_bytes.len()])
        .unwrap()
        .unwrap();
    assert_eq!(
        header,
        FixedHeader {
            packet_type: PacketType::Publish,
            flags: 0,
            remaining_length: remaining as u32,
            header_length: 1 + length_bytes.len() as u8,
        }
    );
    // One byte short of the whole packet: incomplete, nothing consumed.
    let mut short = BytesMut::from(&expected[..expected.len() - 1]);
    assert_eq!(Decoder::new(V311).decode(&mut short), Ok(None));
    assert_eq!(short.len(), expected.len() - 1);
}

/// Table 2.4 of 3.1.1: 127 is the largest one-byte length (0x7F).
#[test]
fn remaining_length_127() {
    check_remaining_length(127, &[0x7F]);
}

/// Table 2.4 of 3.1.1: 128 is the smallest two-byte length (0x80 0x01).
#[test]
fn remaining_length_128() {
    check_remaining_length(128, &[0x80, 0x01]);
}

/// Table 2.4 of 3.1.1: 16 383 is the largest two-byte length (0xFF 0x7F).
#[test]
fn remaining_length_16383() {
    check_remaining_length(16_383, &[0xFF, 0x7F]);
}

/// Table 2.4 of 3.1.1: 16 384 is the smallest three-byte length (0x80 0x80 0x01).
#[test]
fn remaining_length_16384() {
    check_remaining_length(16_384, &[0x80, 0x80, 0x01]);
}

/// Table 2.4 of 3.1.1: 2 097 151 is the largest three-byte length (0xFF 0xFF 0x7F).
#[test]
fn remaining_length_2097151() {
    check_remaining_length(2_097_151, &[0xFF, 0xFF, 0x7F]);
}

/// Table 2.4 of 3.1.1: 2 097 152 is the smallest four-byte length (0x80 0x80 0x80 0x01).
#[test]
fn remaining_length_2097152() {
    check_remaining_length(2_097_152, &[0x80, 0x80, 0x80, 0x01]);
}

/// Table 2.4 of 3.1.1: 268 435 455 (0xFF 0xFF 0xFF 0x7F) is the largest Remaining Length.
/// The decoder reads it from the header alone; the encoder sizes a PUBLISH that reaches it
/// without writing it (the payload is one lazily zeroed allocation that is never touched).
#[test]
fn remaining_length_268435455() {
    assert_eq!(VARINT_MAX, 268_435_455);
    assert_eq!(PROTOCOL_MAX_PACKET_SIZE, 268_435_455 + 5);
    let header = Decoder::new(V311)
        .peek_header(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F])
        .unwrap()
        .unwrap();
    assert_eq!(
        header,
        FixedHeader {
            packet_type: PacketType::Publish,
            flags: 0,
            remaining_length: 268_435_455,
            header_length: 5,
        }
    );
    assert_eq!(header.packet_size(), 268_435_460);
    // Only the header has arrived: the decoder waits for the body.
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    assert_eq!(Decoder::new(V311).decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), 5);

    let p = Publish::new(
        topic("t"),
        QosPid::AtMostOnce,
        Bytes::from(vec![0u8; 268_435_455 - 3]),
    );
    let mut head = BytesMut::new();
    let total = p.encode_header(V311, &mut head).unwrap();
    assert_eq!(total, 1 + 4 + 268_435_455);
    assert_eq!(&head[..], [0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0x00, 0x01, b't']);
    let packet = Packet::Publish(p);
    assert_eq!(packet.encoded_len(V311), Ok(1 + 4 + 268_435_455));
}
