//! Byte-exact vectors for MQTT 5.0.
//!
//! Every expected byte string below was worked out by hand from the packet layouts of the
//! MQTT 5.0 standard (OASIS Standard, 07 March 2019): fixed header (2.1), properties (2.2.2,
//! identifiers from table 2-4), reason codes (2.4) and the layout of each packet in chapter 3;
//! where the standard prints a non-normative example (PUBLISH variable header, SUBSCRIBE and
//! UNSUBSCRIBE payloads) the vector reuses it. Each vector is checked both ways: encoding the
//! value gives exactly the bytes, and decoding the bytes gives exactly the value and consumes
//! the whole buffer; every strict prefix decodes to `Ok(None)` and consumes nothing.
//!
//! The standard does not fix the order of properties inside a block. The vectors list them in
//! the order the encoder documents for each packet (its property structs write fields in
//! declaration order); `properties_in_any_order_decode_the_same` checks that the decoder does
//! not depend on that order.
//!
//! Statement ids cited here are those of MQTT 5.0.

use core::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect, ConnectProperties,
    Decoder, Disconnect, DisconnectProperties, MqttString, Packet, PacketId, PayloadFormat,
    ProtocolVersion, PubResponse, Publish, PublishProperties, QoS, QosPid, ReasonCode,
    RetainHandling, SubAck, Subscribe, SubscribeProperties, Subscription, SubscriptionId,
    SubscriptionOptions, TopicFilter, TopicName, UnsubAck, Unsubscribe, UnsubscribeProperties,
    UserProperty, Will, WillProperties,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

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

fn user(name: &str, value: &str) -> UserProperty {
    UserProperty::new(name, value).unwrap()
}

fn sub_id(id: u32) -> SubscriptionId {
    SubscriptionId::new(id).unwrap()
}

/// Every strict prefix of `bytes` is an incomplete packet: `Ok(None)`, nothing consumed.
fn assert_prefixes_incomplete(bytes: &[u8]) {
    let decoder = Decoder::new(V5);
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
fn check(packet: &Packet, expected: &[u8]) {
    let mut out = BytesMut::new();
    packet.encode(V5, &mut out).expect("encodes");
    assert_eq!(&out[..], expected, "encoded bytes differ");
    assert_eq!(packet.encoded_len(V5), Ok(expected.len()));
    assert_eq!(decode_all(expected), *packet, "decoded value differs");
    assert_prefixes_incomplete(expected);
}

/// Decodes `bytes` (exactly one whole packet), asserting nothing is left over.
fn decode_all(bytes: &[u8]) -> Packet {
    let mut input = BytesMut::from(bytes);
    let packet = Decoder::new(V5)
        .decode(&mut input)
        .expect("decodes")
        .expect("a whole packet");
    assert!(input.is_empty(), "{} bytes left over", input.len());
    packet
}

fn connect(client_id: &str) -> Connect {
    Connect::new(V5, s(client_id))
}

// ---------------------------------------------------------------------------------------------
// CONNECT (section 3.1)
// ---------------------------------------------------------------------------------------------

/// [MQTT-2.2.2-1] A CONNECT without properties still carries a Property Length of 0.
#[test]
fn connect_minimal() {
    let expected = [
        0x10, 0x10, // CONNECT; remaining length 16 = 10 + 1 + 5
        0x00, 0x04, b'M', b'Q', b'T', b'T', // Protocol Name "MQTT"
        0x05, // Protocol Version 5
        0x02, // Connect Flags: Clean Start
        0x00, 0x3C, // Keep Alive 60
        0x00, // Property Length 0
        0x00, 0x03, b'a', b'b', b'c', // Client Identifier "abc"
    ];
    check(&Packet::from(connect("abc")), &expected);
}

/// [MQTT-3.1.2-5] Clean Start 0 (flag bit 1 cleared), keep alive 0, empty Client Identifier
/// ([MQTT-3.1.3-6]).
#[test]
fn connect_clean_start_off_empty_client_id() {
    let mut c = connect("");
    c.clean_start = false;
    c.keep_alive = 0;
    let expected = [
        0x10, 0x0D, // CONNECT; remaining length 13
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, // "MQTT", version 5
        0x00, // no flags
        0x00, 0x00, // Keep Alive 0
        0x00, // Property Length 0
        0x00, 0x00, // Client Identifier: empty
    ];
    check(&Packet::from(c), &expected);
}

/// Section 3.1.2.11 of 5.0: every CONNECT property, User Property twice.
#[test]
fn connect_every_property() {
    let mut c = connect("cid");
    c.properties = ConnectProperties {
        session_expiry_interval: Some(120),
        receive_maximum: NonZeroU16::new(20),
        maximum_packet_size: NonZeroU32::new(4096),
        topic_alias_maximum: Some(10),
        request_response_information: Some(true),
        request_problem_information: Some(false),
        user_properties: vec![user("k", "v"), user("k", "v2")],
        authentication_method: Some(s("SCRAM")),
        authentication_data: Some(Bytes::from_static(&[0x01, 0x02])),
    };
    let expected = [
        0x10, 0x40, // CONNECT; remaining length 64 = 10 + 1 + 48 + 5
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, // "MQTT", version 5
        0x02, // Clean Start
        0x00, 0x3C, // Keep Alive 60
        0x30, // Property Length 48
        0x11, 0x00, 0x00, 0x00, 0x78, // Session Expiry Interval 120
        0x21, 0x00, 0x14, // Receive Maximum 20
        0x27, 0x00, 0x00, 0x10, 0x00, // Maximum Packet Size 4096
        0x22, 0x00, 0x0A, // Topic Alias Maximum 10
        0x19, 0x01, // Request Response Information 1
        0x17, 0x00, // Request Problem Information 0
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // User Property ("k", "v")
        0x26, 0x00, 0x01, b'k', 0x00, 0x02, b'v', b'2', // User Property ("k", "v2")
        0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', // Authentication Method "SCRAM"
        0x16, 0x00, 0x02, 0x01, 0x02, // Authentication Data
        0x00, 0x03, b'c', b'i', b'd', // Client Identifier "cid"
    ];
    check(&Packet::from(c), &expected);
}

/// [MQTT-3.1.2-9] [MQTT-3.1.3-1] Will Properties, Will Topic and Will Payload follow the
/// Client Identifier, then User Name and Password; Will QoS 2 with Will Retain, Clean Start 0.
#[test]
fn connect_will_with_every_will_property() {
    let mut c = connect("c");
    c.clean_start = false;
    c.keep_alive = 0;
    c.will = Some(Will {
        topic: topic("w"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: WillProperties {
            will_delay_interval: Some(5),
            payload_format: Some(PayloadFormat::Utf8),
            message_expiry_interval: Some(3600),
            content_type: Some(s("text/plain")),
            response_topic: Some(topic("r/1")),
            correlation_data: Some(Bytes::from_static(&[0xAB, 0xCD])),
            user_properties: vec![user("a", "b")],
        },
    });
    c.username = Some(s("u"));
    c.password = Some(Bytes::from_static(b"pw"));
    let expected = [
        0x10, 0x49, // CONNECT; remaining length 73 = 11 + 3 + 44 + 3 + 5 + 3 + 4
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, // "MQTT", version 5
        0xF4, // 1111_0100: user name, password, will retain, will QoS 10, will flag
        0x00, 0x00, // Keep Alive 0
        0x00, // Property Length 0
        0x00, 0x01, b'c', // Client Identifier
        0x2B, // Will Property Length 43
        0x18, 0x00, 0x00, 0x00, 0x05, // Will Delay Interval 5
        0x01, 0x01, // Payload Format Indicator 1 (UTF-8)
        0x02, 0x00, 0x00, 0x0E, 0x10, // Message Expiry Interval 3600
        0x03, 0x00, 0x0A, b't', b'e', b'x', b't', b'/', b'p', b'l', b'a', b'i',
        b'n', // Content Type "text/plain"
        0x08, 0x00, 0x03, b'r', b'/', b'1', // Response Topic "r/1"
        0x09, 0x00, 0x02, 0xAB, 0xCD, // Correlation Data
        0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b', // User Property ("a", "b")
        0x00, 0x01, b'w', // Will Topic "w"
        0x00, 0x03, b'b', b'y', b'e', // Will Payload "bye"
        0x00, 0x01, b'u', // User Name "u"
        0x00, 0x02, b'p', b'w', // Password "pw"
    ];
    check(&Packet::from(c), &expected);
}

/// [MQTT-3.1.2-12] Will QoS 1 without retain and without will properties (length 0).
#[test]
fn connect_will_qos1_no_will_properties() {
    let mut c = connect("c");
    c.will = Some(Will {
        topic: topic("t"),
        payload: Bytes::new(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    let expected = [
        0x10, 0x14, // CONNECT; remaining length 20 = 11 + 3 + 1 + 3 + 2
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, // "MQTT", version 5
        0x0E, // 0000_1110: will QoS 01, will flag, clean start
        0x00, 0x3C, // Keep Alive 60
        0x00, // Property Length 0
        0x00, 0x01, b'c', // Client Identifier
        0x00, // Will Property Length 0
        0x00, 0x01, b't', // Will Topic
        0x00, 0x00, // Will Payload: empty
    ];
    check(&Packet::from(c), &expected);
}

/// [MQTT-3.1.2-19] MQTT 5 allows a Password without a User Name (flags 0100_0010).
#[test]
fn connect_password_without_username_is_allowed() {
    let mut c = connect("c");
    c.password = Some(Bytes::from_static(b"p"));
    let expected = [
        0x10, 0x11, // CONNECT; remaining length 17
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, // "MQTT", version 5
        0x42, // password flag, clean start; no user name flag
        0x00, 0x3C, // Keep Alive 60
        0x00, // Property Length 0
        0x00, 0x01, b'c', // Client Identifier
        0x00, 0x01, b'p', // Password
    ];
    check(&Packet::from(c), &expected);
}

/// [MQTT-3.1.3-12] A non-ASCII User Name: "grüße" is 7 bytes.
#[test]
fn connect_non_ascii_username() {
    let mut c = connect("c");
    c.username = Some(s("grüße"));
    let expected = [
        0x10, 0x17, // CONNECT; remaining length 23 = 11 + 3 + 9
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, // "MQTT", version 5
        0x82, // user name flag, clean start
        0x00, 0x3C, // Keep Alive 60
        0x00, // Property Length 0
        0x00, 0x01, b'c', // Client Identifier
        0x00, 0x07, b'g', b'r', 0xC3, 0xBC, 0xC3, 0x9F, b'e', // User Name "grüße"
    ];
    check(&Packet::from(c), &expected);
}

// ---------------------------------------------------------------------------------------------
// CONNACK (section 3.2)
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.2.2-8] Every Connect Reason Code of table 3-1, without properties.
#[test]
fn connack_every_connect_reason_code() {
    let codes: [u8; 22] = [
        0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95,
        0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
    ];
    for byte in codes {
        let code = ReasonCode::from_u8(byte).expect("a defined code");
        assert_eq!(code.as_u8(), byte);
        let expected = [
            0x20, 0x03, // CONNACK; remaining length 3
            0x00, // Session Present 0 ([MQTT-3.2.2-6] for error codes)
            byte, // Connect Reason Code
            0x00, // Property Length 0
        ];
        check(&Packet::from(ConnAck::new(code)), &expected);
    }
}

/// [MQTT-3.2.2-3] Session Present 1 with Success.
#[test]
fn connack_session_present() {
    let mut ack = ConnAck::new(ReasonCode::Success);
    ack.session_present = true;
    check(&Packet::from(ack), &[0x20, 0x03, 0x01, 0x00, 0x00]);
}

/// Section 3.2.2.3 of 5.0: every CONNACK property.
#[test]
fn connack_every_property() {
    let mut ack = ConnAck::new(ReasonCode::Success);
    ack.properties = ConnAckProperties {
        session_expiry_interval: Some(300),
        receive_maximum: NonZeroU16::new(10),
        maximum_qos: Some(QoS::AtLeastOnce),
        retain_available: Some(false),
        maximum_packet_size: NonZeroU32::new(65536),
        assigned_client_identifier: Some(s("auto")),
        topic_alias_maximum: Some(5),
        reason_string: Some(s("ok")),
        user_properties: vec![user("x", "y")],
        wildcard_subscription_available: Some(true),
        subscription_identifiers_available: Some(false),
        shared_subscription_available: Some(true),
        server_keep_alive: Some(30),
        response_information: Some(s("resp")),
        server_reference: Some(s("srv")),
        authentication_method: Some(s("SCRAM")),
        authentication_data: Some(Bytes::from_static(&[0xFF])),
    };
    let expected = [
        0x20, 0x4C, // CONNACK; remaining length 76 = 2 + 1 + 73
        0x00, // Session Present 0
        0x00, // Success
        0x49, // Property Length 73
        0x11, 0x00, 0x00, 0x01, 0x2C, // Session Expiry Interval 300
        0x21, 0x00, 0x0A, // Receive Maximum 10
        0x24, 0x01, // Maximum QoS 1
        0x25, 0x00, // Retain Available 0
        0x27, 0x00, 0x01, 0x00, 0x00, // Maximum Packet Size 65536
        0x12, 0x00, 0x04, b'a', b'u', b't', b'o', // Assigned Client Identifier "auto"
        0x22, 0x00, 0x05, // Topic Alias Maximum 5
        0x1F, 0x00, 0x02, b'o', b'k', // Reason String "ok"
        0x26, 0x00, 0x01, b'x', 0x00, 0x01, b'y', // User Property ("x", "y")
        0x28, 0x01, // Wildcard Subscription Available 1
        0x29, 0x00, // Subscription Identifiers Available 0
        0x2A, 0x01, // Shared Subscription Available 1
        0x13, 0x00, 0x1E, // Server Keep Alive 30
        0x1A, 0x00, 0x04, b'r', b'e', b's', b'p', // Response Information "resp"
        0x1C, 0x00, 0x03, b's', b'r', b'v', // Server Reference "srv"
        0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', // Authentication Method
        0x16, 0x00, 0x01, 0xFF, // Authentication Data
    ];
    check(&Packet::from(ack), &expected);
}

/// Section 2.2.2.2 of 5.0 does not order properties: a block written in another order decodes
/// to the same value.
#[test]
fn properties_in_any_order_decode_the_same() {
    let mut ack = ConnAck::new(ReasonCode::Success);
    ack.properties.maximum_qos = Some(QoS::AtMostOnce);
    ack.properties.server_keep_alive = Some(30);
    ack.properties.user_properties = vec![user("a", "1"), user("b", "2")];
    let expected = [
        0x20, 0x16, // CONNACK; remaining length 22 = 2 + 1 + 19
        0x00, 0x00, // flags, Success
        0x13, // Property Length 19
        0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'1', // User Property ("a", "1")
        0x13, 0x00, 0x1E, // Server Keep Alive 30 (written before Maximum QoS here)
        0x26, 0x00, 0x01, b'b', 0x00, 0x01, b'2', // User Property ("b", "2")
        0x24, 0x00, // Maximum QoS 0
    ];
    assert_eq!(expected.len(), 2 + 0x16);
    assert_eq!(decode_all(&expected), Packet::from(ack));
}

// ---------------------------------------------------------------------------------------------
// PUBLISH (section 3.3)
// ---------------------------------------------------------------------------------------------

/// [MQTT-2.2.1-2] QoS 0: no Packet Identifier, then Property Length 0.
#[test]
fn publish_qos0() {
    let p = Publish::new(topic("a/b"), QosPid::AtMostOnce, &b"hi"[..]);
    let expected = [
        0x30, 0x08, // PUBLISH QoS 0; remaining length 8
        0x00, 0x03, b'a', b'/', b'b', // Topic Name "a/b"
        0x00, // Property Length 0
        b'h', b'i', // payload
    ];
    check(&Packet::Publish(p), &expected);
}

/// [MQTT-3.3.2-1] The PUBLISH variable header example of section 3.3.2 of 5.0: topic "a/b",
/// Packet Identifier 10, Property Length 0 (here at QoS 1, no payload).
#[test]
fn publish_qos1_spec_example() {
    let p = Publish::new(topic("a/b"), QosPid::AtLeastOnce(pid(10)), Bytes::new());
    let expected = [
        0x32, 0x08, // PUBLISH, flags 0010 (QoS 1); remaining length 8
        0x00, 0x03, b'a', b'/', b'b', // Topic Name "a/b"
        0x00, 0x0A, // Packet Identifier 10
        0x00, // Property Length 0
    ];
    check(&Packet::Publish(p), &expected);
}

/// [MQTT-3.3.4-3] QoS 2 with DUP and RETAIN and every PUBLISH property, three Subscription
/// Identifiers (1, 128 and the largest, 268 435 455) and a non-ASCII user property value.
#[test]
fn publish_qos2_dup_retain_every_property() {
    let mut p = Publish::new(topic("t/ü"), QosPid::ExactlyOnce(pid(0x0102)), &b"xyz"[..]);
    p.dup = true;
    p.retain = true;
    p.properties = PublishProperties {
        payload_format: Some(PayloadFormat::Utf8),
        message_expiry_interval: Some(60),
        topic_alias: NonZeroU16::new(5),
        response_topic: Some(topic("r/s")),
        correlation_data: Some(Bytes::from_static(&[0x07])),
        user_properties: vec![user("k", "grüße")],
        subscription_identifiers: vec![sub_id(1), sub_id(128), sub_id(268_435_455)],
        content_type: Some(s("json")),
    };
    let expected = [
        0x3D, // PUBLISH, flags 1101: DUP 1, QoS 10, RETAIN 1
        0x3E, // remaining length 62 = 6 + 2 + 1 + 50 + 3
        0x00, 0x04, b't', b'/', 0xC3, 0xBC, // Topic Name "t/ü" (4 bytes)
        0x01, 0x02, // Packet Identifier 0x0102
        0x32, // Property Length 50
        0x01, 0x01, // Payload Format Indicator 1
        0x02, 0x00, 0x00, 0x00, 0x3C, // Message Expiry Interval 60
        0x23, 0x00, 0x05, // Topic Alias 5
        0x08, 0x00, 0x03, b'r', b'/', b's', // Response Topic "r/s"
        0x09, 0x00, 0x01, 0x07, // Correlation Data
        0x26, 0x00, 0x01, b'k', 0x00, 0x07, b'g', b'r', 0xC3, 0xBC, 0xC3, 0x9F,
        b'e', // User Property ("k", "grüße")
        0x0B, 0x01, // Subscription Identifier 1
        0x0B, 0x80, 0x01, // Subscription Identifier 128
        0x0B, 0xFF, 0xFF, 0xFF, 0x7F, // Subscription Identifier 268 435 455
        0x03, 0x00, 0x04, b'j', b's', b'o', b'n', // Content Type "json"
        b'x', b'y', b'z', // payload
    ];
    check(&Packet::Publish(p), &expected);
}

/// [MQTT-3.3.2-12] A zero-length Topic Name with a Topic Alias (section 3.3.2.3.4).
#[test]
fn publish_topic_alias_with_empty_topic() {
    let mut p = Publish::new(TopicName::empty(), QosPid::AtMostOnce, &b"p"[..]);
    p.properties.topic_alias = NonZeroU16::new(1);
    let expected = [
        0x30, 0x07, // PUBLISH QoS 0; remaining length 7
        0x00, 0x00, // Topic Name: zero length
        0x03, // Property Length 3
        0x23, 0x00, 0x01, // Topic Alias 1
        b'p', // payload
    ];
    check(&Packet::Publish(p.clone()), &expected);
    let Packet::Publish(decoded) = decode_all(&expected) else {
        panic!("not a PUBLISH")
    };
    assert!(decoded.topic.is_empty());
}

/// [MQTT-3.3.2-10] A Topic Name together with a Topic Alias (establishing the mapping), QoS 1.
#[test]
fn publish_topic_alias_with_topic() {
    let mut p = Publish::new(topic("a"), QosPid::AtLeastOnce(pid(1)), Bytes::new());
    p.properties.topic_alias = NonZeroU16::new(0xFFFF);
    let expected = [
        0x32, 0x09, // PUBLISH QoS 1; remaining length 9
        0x00, 0x01, b'a', // Topic Name "a"
        0x00, 0x01, // Packet Identifier 1
        0x03, 0x23, 0xFF, 0xFF, // Property Length 3: Topic Alias 65535
    ];
    check(&Packet::Publish(p), &expected);
}

/// Section 3.3.1 of 5.0: QoS 1 with RETAIN and an empty payload (flags 0011).
#[test]
fn publish_qos1_retain() {
    let mut p = Publish::new(topic("r"), QosPid::AtLeastOnce(pid(2)), Bytes::new());
    p.retain = true;
    let expected = [
        0x33, 0x06, // PUBLISH, QoS 1, RETAIN; remaining length 6
        0x00, 0x01, b'r', // Topic Name "r"
        0x00, 0x02, // Packet Identifier 2
        0x00, // Property Length 0
    ];
    check(&Packet::Publish(p), &expected);
}

/// Section 1.5.5 of 5.0: a Property Length of 127 takes one byte (0x7F), 128 takes two
/// (0x80 0x01); the Remaining Length then crosses 128 as well.
#[test]
fn publish_property_length_127_and_128() {
    for (value_len, prop_len_bytes, remaining_bytes) in [
        (121usize, &[0x7Fu8][..], &[0x83u8, 0x01][..]), // 3 + 1 + 127 = 131
        (122, &[0x80, 0x01][..], &[0x85, 0x01][..]),    // 3 + 2 + 128 = 133
    ] {
        let value: String = "v".repeat(value_len);
        let mut p = Publish::new(topic("t"), QosPid::AtMostOnce, Bytes::new());
        p.properties.user_properties = vec![user("k", &value)];
        let mut expected = vec![0x30]; // PUBLISH QoS 0
        expected.extend_from_slice(remaining_bytes); // Remaining Length
        expected.extend_from_slice(&[0x00, 0x01, b't']); // Topic Name "t"
        expected.extend_from_slice(prop_len_bytes); // Property Length 6 + value_len
        expected.extend_from_slice(&[0x26, 0x00, 0x01, b'k', 0x00, value_len as u8]);
        expected.resize(expected.len() + value_len, b'v'); // the value
        check(&Packet::Publish(p), &expected);
    }
}

/// The payload and the binary properties of a decoded PUBLISH are slices of the input.
#[test]
fn publish_decode_is_zero_copy() {
    let bytes = [
        0x30, 0x0C, // PUBLISH QoS 0; remaining length 12
        0x00, 0x01, b't', // Topic Name
        0x05, 0x09, 0x00, 0x02, 0xC0, 0xDE, // Property Length 5: Correlation Data C0 DE
        b'd', b'a', b't', // payload... (3 bytes)
    ];
    // Remaining length: 3 + 1 + 5 + 3 = 12.
    let mut buf = BytesMut::with_capacity(32);
    buf.extend_from_slice(&bytes);
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let Some(Packet::Publish(p)) = Decoder::new(V5).decode(&mut buf).unwrap() else {
        panic!("not a PUBLISH")
    };
    assert_eq!(&p.payload[..], b"dat");
    let payload = p.payload.as_ptr() as usize;
    assert!(payload >= start && payload + p.payload.len() <= end);
    assert_eq!(payload, start + 11);
    let data = p.properties.correlation_data.as_ref().unwrap();
    assert_eq!(&data[..], [0xC0, 0xDE]);
    assert_eq!(data.as_ptr() as usize, start + 9);
}

// ---------------------------------------------------------------------------------------------
// PUBACK, PUBREC, PUBREL, PUBCOMP (sections 3.4 to 3.7)
// ---------------------------------------------------------------------------------------------

fn response(id: u16, code: ReasonCode, properties: AckProperties) -> PubResponse {
    PubResponse {
        packet_id: pid(id),
        reason_code: code,
        properties,
    }
}

/// [MQTT-3.4.2-1] PUBACK: the short form (Success, no properties) is the Packet Identifier
/// alone; every other PUBACK Reason Code of table 3-4 is followed by a Property Length.
#[test]
fn puback_short_and_long() {
    check(
        &Packet::PubAck(PubResponse::new(pid(10))),
        &[0x40, 0x02, 0x00, 0x0A], // PUBACK; length 2; Packet Identifier 10
    );
    for byte in [0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99] {
        let code = ReasonCode::from_u8(byte).unwrap();
        check(
            &Packet::PubAck(response(10, code, AckProperties::default())),
            // PUBACK; length 4; Packet Identifier 10; Reason Code; Property Length 0
            &[0x40, 0x04, 0x00, 0x0A, byte, 0x00],
        );
    }
    let props = AckProperties {
        reason_string: Some(s("nope")),
        user_properties: vec![user("a", "b")],
    };
    let expected = [
        0x40, 0x12, // PUBACK; remaining length 18 = 2 + 1 + 1 + 14
        0x00, 0x0A, // Packet Identifier 10
        0x80, // Unspecified error
        0x0E, // Property Length 14
        0x1F, 0x00, 0x04, b'n', b'o', b'p', b'e', // Reason String "nope"
        0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b', // User Property ("a", "b")
    ];
    check(
        &Packet::PubAck(response(10, ReasonCode::UnspecifiedError, props)),
        &expected,
    );
    // Success with a property is the long form too.
    let props = AckProperties {
        reason_string: Some(s("yes")),
        user_properties: vec![],
    };
    check(
        &Packet::PubAck(response(10, ReasonCode::Success, props)),
        &[
            0x40, 0x0A, 0x00, 0x0A, 0x00, 0x06, 0x1F, 0x00, 0x03, b'y', b'e', b's',
        ],
    );
}

/// [MQTT-3.4.2-1] Section 3.4.2.2.1: with a Remaining Length below 4 the Property Length is
/// absent (0), and with a Remaining Length of 2 the Reason Code is absent (Success).
#[test]
fn puback_shorter_forms_decode() {
    // Reason Code without Property Length.
    assert_eq!(
        decode_all(&[0x40, 0x03, 0x00, 0x0A, 0x10]),
        Packet::PubAck(response(
            10,
            ReasonCode::NoMatchingSubscribers,
            AckProperties::default()
        ))
    );
    // Success written out in full (Reason Code 0, Property Length 0).
    assert_eq!(
        decode_all(&[0x40, 0x04, 0x00, 0x0A, 0x00, 0x00]),
        Packet::PubAck(PubResponse::new(pid(10)))
    );
}

/// [MQTT-3.5.2-1] PUBREC with each PUBREC Reason Code of table 3-5, and the short form.
#[test]
fn pubrec_short_and_long() {
    check(
        &Packet::PubRec(PubResponse::new(pid(0x0203))),
        &[0x50, 0x02, 0x02, 0x03],
    );
    for byte in [0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99] {
        let code = ReasonCode::from_u8(byte).unwrap();
        check(
            &Packet::PubRec(response(0x0203, code, AckProperties::default())),
            &[0x50, 0x04, 0x02, 0x03, byte, 0x00],
        );
    }
    assert_eq!(
        decode_all(&[0x50, 0x03, 0x02, 0x03, 0x97]),
        Packet::PubRec(response(
            0x0203,
            ReasonCode::QuotaExceeded,
            AckProperties::default()
        ))
    );
}

/// [MQTT-3.6.2-1] PUBREL (flags 0010, [MQTT-3.6.1-1]): Success short form and 0x92.
#[test]
fn pubrel_short_and_long() {
    check(
        &Packet::PubRel(PubResponse::new(pid(10))),
        &[0x62, 0x02, 0x00, 0x0A],
    );
    check(
        &Packet::PubRel(response(
            10,
            ReasonCode::PacketIdentifierNotFound,
            AckProperties::default(),
        )),
        // PUBREL; length 4; id 10; Packet Identifier not found; Property Length 0
        &[0x62, 0x04, 0x00, 0x0A, 0x92, 0x00],
    );
    assert_eq!(
        decode_all(&[0x62, 0x03, 0x00, 0x0A, 0x92]),
        Packet::PubRel(response(
            10,
            ReasonCode::PacketIdentifierNotFound,
            AckProperties::default()
        ))
    );
}

/// [MQTT-3.7.2-1] PUBCOMP: short form, and 0x92 with a Reason String.
#[test]
fn pubcomp_short_and_long() {
    check(
        &Packet::PubComp(PubResponse::new(pid(10))),
        &[0x70, 0x02, 0x00, 0x0A],
    );
    let props = AckProperties {
        reason_string: Some(s("gone")),
        user_properties: vec![],
    };
    let expected = [
        0x70, 0x0B, // PUBCOMP; remaining length 11
        0x00, 0x0A, // Packet Identifier 10
        0x92, // Packet Identifier not found
        0x07, // Property Length 7
        0x1F, 0x00, 0x04, b'g', b'o', b'n', b'e', // Reason String "gone"
    ];
    check(
        &Packet::PubComp(response(10, ReasonCode::PacketIdentifierNotFound, props)),
        &expected,
    );
}

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK (sections 3.8 to 3.11)
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.8.1-1] The SUBSCRIBE payload example of section 3.8.3 of 5.0: "a/b" with options
/// 0x01 and "c/d" with options 0x02, after a Property Length of 0.
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
        properties: SubscribeProperties::default(),
    };
    let expected = [
        0x82, 0x0F, // SUBSCRIBE, flags 0010; remaining length 15
        0x00, 0x0A, // Packet Identifier 10
        0x00, // Property Length 0
        0x00, 0x03, b'a', b'/', b'b', 0x01, // "a/b", Maximum QoS 1
        0x00, 0x03, b'c', b'/', b'd', 0x02, // "c/d", Maximum QoS 2
    ];
    check(&Packet::Subscribe(sub), &expected);
}

/// [MQTT-3.8.3-3] Subscription options of section 3.8.3.1: No Local (bit 2), Retain As
/// Published (bit 3), Retain Handling (bits 5-4), a Subscription Identifier and a shared
/// subscription.
#[test]
fn subscribe_options_and_properties() {
    let sub = Subscribe {
        packet_id: pid(10),
        subscriptions: vec![
            Subscription {
                filter: filter("a/+"),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: false,
                    retain_handling: RetainHandling::SendAtSubscribe,
                },
            },
            Subscription {
                filter: filter("b/#"),
                options: SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: false,
                    retain_as_published: true,
                    retain_handling: RetainHandling::SendAtSubscribeIfNew,
                },
            },
            Subscription {
                filter: filter("$share/g/c"),
                options: SubscriptionOptions {
                    qos: QoS::AtMostOnce,
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: RetainHandling::DoNotSend,
                },
            },
        ],
        properties: SubscribeProperties {
            subscription_identifier: Some(sub_id(129)),
            user_properties: vec![user("k", "v")],
        },
    };
    let expected = [
        0x82, 0x26, // SUBSCRIBE, flags 0010; remaining length 38 = 2 + 11 + 6 + 6 + 13
        0x00, 0x0A, // Packet Identifier 10
        0x0A, // Property Length 10
        0x0B, 0x81, 0x01, // Subscription Identifier 129 (1 + 1 * 128)
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // User Property ("k", "v")
        0x00, 0x03, b'a', b'/', b'+', // "a/+"
        0x05, // 00_00_0_1_01: Retain Handling 0, RAP 0, No Local 1, QoS 1
        0x00, 0x03, b'b', b'/', b'#', // "b/#"
        0x1A, // 00_01_1_0_10: Retain Handling 1, RAP 1, No Local 0, QoS 2
        0x00, 0x0A, b'$', b's', b'h', b'a', b'r', b'e', b'/', b'g', b'/', b'c', // shared
        0x20, // 00_10_0_0_00: Retain Handling 2, QoS 0
    ];
    check(&Packet::Subscribe(sub), &expected);
}

/// [MQTT-3.9.3-2] Every Subscribe Reason Code of table 3-8, in the order of the filters.
#[test]
fn suback_every_subscribe_reason_code() {
    let bytes: [u8; 12] = [
        0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
    ];
    let ack = SubAck {
        packet_id: pid(10),
        reason_codes: bytes
            .iter()
            .map(|&b| ReasonCode::from_u8(b).unwrap())
            .collect(),
        properties: AckProperties::default(),
    };
    let mut expected = vec![
        0x90, 0x0F, // SUBACK; remaining length 15 = 2 + 1 + 12
        0x00, 0x0A, // Packet Identifier 10
        0x00, // Property Length 0
    ];
    expected.extend_from_slice(&bytes); // one Reason Code per filter
    check(&Packet::SubAck(ack), &expected);
}

/// Section 3.9.2.1 of 5.0: SUBACK with a Reason String.
#[test]
fn suback_with_reason_string() {
    let ack = SubAck {
        packet_id: pid(11),
        reason_codes: vec![ReasonCode::NotAuthorized],
        properties: AckProperties {
            reason_string: Some(s("bad")),
            user_properties: vec![],
        },
    };
    let expected = [
        0x90, 0x0A, // SUBACK; remaining length 10
        0x00, 0x0B, // Packet Identifier 11
        0x06, 0x1F, 0x00, 0x03, b'b', b'a', b'd', // Property Length 6: Reason String "bad"
        0x87, // Not authorized
    ];
    check(&Packet::SubAck(ack), &expected);
}

/// [MQTT-3.10.1-1] The UNSUBSCRIBE payload example of section 3.10.3 of 5.0: "a/b", "c/d".
#[test]
fn unsubscribe_spec_example() {
    let unsub = Unsubscribe {
        packet_id: pid(10),
        filters: vec![filter("a/b"), filter("c/d")],
        properties: UnsubscribeProperties::default(),
    };
    let expected = [
        0xA2, 0x0D, // UNSUBSCRIBE, flags 0010; remaining length 13
        0x00, 0x0A, // Packet Identifier 10
        0x00, // Property Length 0
        0x00, 0x03, b'a', b'/', b'b', // "a/b"
        0x00, 0x03, b'c', b'/', b'd', // "c/d"
    ];
    check(&Packet::Unsubscribe(unsub), &expected);
}

/// [MQTT-3.10.3-1] UNSUBSCRIBE with a User Property and a shared filter.
#[test]
fn unsubscribe_with_user_property_and_shared_filter() {
    let unsub = Unsubscribe {
        packet_id: pid(11),
        filters: vec![filter("a/b"), filter("$share/g/#")],
        properties: UnsubscribeProperties {
            user_properties: vec![user("k", "v")],
        },
    };
    let expected = [
        0xA2, 0x1B, // UNSUBSCRIBE; remaining length 27 = 2 + 8 + 5 + 12
        0x00, 0x0B, // Packet Identifier 11
        0x07, 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // Property Length 7: User Property
        0x00, 0x03, b'a', b'/', b'b', // "a/b"
        0x00, 0x0A, b'$', b's', b'h', b'a', b'r', b'e', b'/', b'g', b'/', b'#', // shared
    ];
    check(&Packet::Unsubscribe(unsub), &expected);
}

/// [MQTT-3.11.3-2] Every Unsubscribe Reason Code of table 3-9.
#[test]
fn unsuback_every_unsubscribe_reason_code() {
    let bytes: [u8; 7] = [0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
    let ack = UnsubAck {
        packet_id: pid(11),
        reason_codes: bytes
            .iter()
            .map(|&b| ReasonCode::from_u8(b).unwrap())
            .collect(),
        properties: AckProperties::default(),
    };
    let mut expected = vec![
        0xB0, 0x0A, // UNSUBACK; remaining length 10
        0x00, 0x0B, // Packet Identifier 11
        0x00, // Property Length 0
    ];
    expected.extend_from_slice(&bytes);
    check(&Packet::UnsubAck(ack), &expected);
}

/// Section 3.11.2.1 of 5.0: UNSUBACK with a Reason String.
#[test]
fn unsuback_with_reason_string() {
    let ack = UnsubAck {
        packet_id: pid(11),
        reason_codes: vec![ReasonCode::NoSubscriptionExisted],
        properties: AckProperties {
            reason_string: Some(s("bad")),
            user_properties: vec![],
        },
    };
    let expected = [
        0xB0, 0x0A, // UNSUBACK; remaining length 10
        0x00, 0x0B, // Packet Identifier 11
        0x06, 0x1F, 0x00, 0x03, b'b', b'a', b'd', // Property Length 6: Reason String
        0x11, // No subscription existed
    ];
    check(&Packet::UnsubAck(ack), &expected);
}

// ---------------------------------------------------------------------------------------------
// PINGREQ, PINGRESP (sections 3.12, 3.13)
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.12.4-1] PINGREQ and PINGRESP: a fixed header, remaining length 0.
#[test]
fn pingreq_pingresp() {
    check(&Packet::PingReq, &[0xC0, 0x00]);
    check(&Packet::PingResp, &[0xD0, 0x00]);
}

// ---------------------------------------------------------------------------------------------
// DISCONNECT (section 3.14)
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.14.2-1] Normal disconnection without properties is the two-byte short form; a
/// Remaining Length of 1 or 2 with code 0 decodes to the same value (section 3.14.2.1).
#[test]
fn disconnect_short_form() {
    check(&Packet::Disconnect(Disconnect::default()), &[0xE0, 0x00]);
    assert_eq!(
        decode_all(&[0xE0, 0x01, 0x00]),
        Packet::Disconnect(Disconnect::default())
    );
    assert_eq!(
        decode_all(&[0xE0, 0x02, 0x00, 0x00]),
        Packet::Disconnect(Disconnect::default())
    );
}

/// [MQTT-3.14.2-1] Every DISCONNECT Reason Code of table 3-10 (except 0x00, the short form)
/// is followed by a Property Length; without it (Remaining Length 1) it still decodes.
#[test]
fn disconnect_every_reason_code() {
    let codes = [
        0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
        0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
    ];
    for byte in codes {
        let d = Disconnect::new(ReasonCode::from_u8(byte).unwrap());
        // DISCONNECT; remaining length 2; Reason Code; Property Length 0
        check(&Packet::Disconnect(d.clone()), &[0xE0, 0x02, byte, 0x00]);
        assert_eq!(decode_all(&[0xE0, 0x01, byte]), Packet::Disconnect(d));
    }
}

/// [MQTT-3.14.2-1] Server-sent DISCONNECT 0x9C (Use another server) with Reason String and
/// Server Reference.
#[test]
fn disconnect_with_properties() {
    let d = Disconnect {
        reason_code: ReasonCode::UseAnotherServer,
        properties: DisconnectProperties {
            session_expiry_interval: None,
            reason_string: Some(s("bye")),
            user_properties: vec![],
            server_reference: Some(s("other")),
        },
    };
    let expected = [
        0xE0, 0x10, // DISCONNECT; remaining length 16
        0x9C, // Use another server
        0x0E, // Property Length 14
        0x1F, 0x00, 0x03, b'b', b'y', b'e', // Reason String "bye"
        0x1C, 0x00, 0x05, b'o', b't', b'h', b'e', b'r', // Server Reference "other"
    ];
    check(&Packet::Disconnect(d), &expected);
}

/// [MQTT-3.14.2-1] Client-sent Normal disconnection that updates the Session Expiry Interval
/// and carries a User Property: the long form with code 0x00.
#[test]
fn disconnect_normal_with_session_expiry() {
    let d = Disconnect {
        reason_code: ReasonCode::NORMAL_DISCONNECTION,
        properties: DisconnectProperties {
            session_expiry_interval: Some(60),
            reason_string: None,
            user_properties: vec![user("a", "b")],
            server_reference: None,
        },
    };
    let expected = [
        0xE0, 0x0E, // DISCONNECT; remaining length 14
        0x00, // Normal disconnection
        0x0C, // Property Length 12
        0x11, 0x00, 0x00, 0x00, 0x3C, // Session Expiry Interval 60
        0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b', // User Property ("a", "b")
    ];
    check(&Packet::Disconnect(d), &expected);
}

// ---------------------------------------------------------------------------------------------
// AUTH (section 3.15)
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.15.2-1] AUTH Success without properties: Remaining Length 0 (section 3.15.2.1).
#[test]
fn auth_short_form() {
    check(&Packet::Auth(Auth::default()), &[0xF0, 0x00]);
    assert_eq!(
        decode_all(&[0xF0, 0x02, 0x00, 0x00]),
        Packet::Auth(Auth::default())
    );
}

/// [MQTT-4.12.0-2] Continue authentication (0x18) with Authentication Method and Data.
#[test]
fn auth_continue_authentication() {
    let a = Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: Some(s("SCRAM")),
            authentication_data: Some(Bytes::from_static(&[1, 2, 3])),
            reason_string: None,
            user_properties: vec![],
        },
    };
    let expected = [
        0xF0, 0x10, // AUTH; remaining length 16
        0x18, // Continue authentication
        0x0E, // Property Length 14
        0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', // Authentication Method "SCRAM"
        0x16, 0x00, 0x03, 0x01, 0x02, 0x03, // Authentication Data
    ];
    check(&Packet::Auth(a), &expected);
    // Reason Code without a Property Length.
    assert_eq!(
        decode_all(&[0xF0, 0x01, 0x18]),
        Packet::Auth(Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties: AuthProperties::default(),
        })
    );
}

/// [MQTT-4.12.1-1] Re-authenticate (0x19) with Reason String and User Property.
#[test]
fn auth_reauthenticate() {
    let a = Auth {
        reason_code: ReasonCode::ReAuthenticate,
        properties: AuthProperties {
            authentication_method: Some(s("M")),
            authentication_data: None,
            reason_string: Some(s("again")),
            user_properties: vec![user("a", "b")],
        },
    };
    let expected = [
        0xF0, 0x15, // AUTH; remaining length 21 = 1 + 1 + 19
        0x19, // Re-authenticate
        0x13, // Property Length 19
        0x15, 0x00, 0x01, b'M', // Authentication Method "M"
        0x1F, 0x00, 0x05, b'a', b'g', b'a', b'i', b'n', // Reason String "again"
        0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b', // User Property ("a", "b")
    ];
    check(&Packet::Auth(a), &expected);
}

// ---------------------------------------------------------------------------------------------
// Remaining Length boundary in MQTT 5 (section 1.5.5)
// ---------------------------------------------------------------------------------------------

/// Table 1-1 of 5.0: Remaining Length 127 (0x7F) and 128 (0x80 0x01) on a PUBLISH with an
/// empty property block.
#[test]
fn remaining_length_127_and_128() {
    for (remaining, header) in [(127usize, &[0x7Fu8][..]), (128, &[0x80, 0x01][..])] {
        let payload = vec![0x5A; remaining - 4]; // 3 bytes of topic, 1 of Property Length
        let p = Publish::new(topic("t"), QosPid::AtMostOnce, payload.clone());
        let mut expected = vec![0x30];
        expected.extend_from_slice(header);
        expected.extend_from_slice(&[0x00, 0x01, b't', 0x00]);
        expected.extend_from_slice(&payload);
        check(&Packet::Publish(p), &expected);
    }
}
