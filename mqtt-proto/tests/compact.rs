//! `to_owned_compact`: a kept value owns its bytes and no longer points into the read buffer it
//! was decoded from (issue 10, item 2).

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    Connect, Decoder, MqttString, Packet, ProtocolVersion, Publish, PublishProperties, QoS, QosPid,
    TopicFilter, TopicName, UserProperty, Will, WillProperties,
};

const V: ProtocolVersion = ProtocolVersion::V5;

/// Whether `part` lies inside the allocation `whole` spans.
fn inside(part: &[u8], whole: (usize, usize)) -> bool {
    let p = part.as_ptr() as usize;
    !part.is_empty() && p >= whole.0 && p + part.len() <= whole.1
}

fn span(buf: &BytesMut) -> (usize, usize) {
    let start = buf.as_ptr() as usize;
    (start, start + buf.capacity())
}

fn properties() -> PublishProperties {
    PublishProperties {
        message_expiry_interval: Some(60),
        response_topic: Some(TopicName::new("reply/to").unwrap()),
        correlation_data: Some(Bytes::from_static(b"corr")),
        user_properties: vec![UserProperty::new("k", "v").unwrap()],
        content_type: Some(MqttString::new("text/plain").unwrap()),
        ..PublishProperties::default()
    }
}

#[test]
fn compact_publish_shares_nothing_with_the_read_buffer() {
    let mut read = BytesMut::with_capacity(32 * 1024);
    let big = Publish::new(
        TopicName::new("big").unwrap(),
        QosPid::AtMostOnce,
        vec![7u8; 16384],
    );
    let mut small = Publish::new(
        TopicName::new("s/t").unwrap(),
        QosPid::AtMostOnce,
        "ten bytes!",
    );
    small.properties = properties();
    Packet::Publish(big).encode(V, &mut read).unwrap();
    Packet::Publish(small.clone()).encode(V, &mut read).unwrap();
    let whole = span(&read);
    let decoder = Decoder::new(V);
    decoder.decode(&mut read).unwrap().unwrap();
    let Some(Packet::Publish(decoded)) = decoder.decode(&mut read).unwrap() else {
        panic!("second PUBLISH")
    };
    // The decoded one is a view into the read buffer (this is what the copy is for).
    assert!(inside(&decoded.payload, whole));
    assert!(inside(decoded.topic.as_bytes(), whole));

    let kept = decoded.to_owned_compact();
    assert_eq!(kept, small);
    let p = &kept.properties;
    for field in [
        &kept.payload[..],
        kept.topic.as_bytes(),
        p.response_topic.as_ref().unwrap().as_bytes(),
        p.correlation_data.as_ref().unwrap(),
        p.content_type.as_ref().unwrap().as_bytes(),
        p.user_properties[0].name.as_bytes(),
        p.user_properties[0].value.as_bytes(),
    ] {
        assert!(
            !inside(field, whole),
            "a field still points into the read buffer"
        );
    }
}

#[test]
fn compact_connect_and_will_share_nothing_with_the_read_buffer() {
    let mut connect = Connect::new(V, MqttString::new("client-1").unwrap());
    connect.username = Some(MqttString::new("user").unwrap());
    connect.password = Some(Bytes::from_static(b"secret"));
    connect.properties.authentication_method = Some(MqttString::new("SCRAM").unwrap());
    connect.properties.authentication_data = Some(Bytes::from_static(b"data"));
    connect.will = Some(Will {
        topic: TopicName::new("will/t").unwrap(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: WillProperties {
            response_topic: Some(TopicName::new("r").unwrap()),
            correlation_data: Some(Bytes::from_static(b"c")),
            content_type: Some(MqttString::new("ct").unwrap()),
            user_properties: vec![UserProperty::new("a", "b").unwrap()],
            ..WillProperties::default()
        },
    });
    let mut read = BytesMut::with_capacity(4096);
    Packet::from(connect.clone()).encode(V, &mut read).unwrap();
    let whole = span(&read);
    let Some(Packet::Connect(decoded)) = Decoder::new(V).decode(&mut read).unwrap() else {
        panic!("CONNECT")
    };
    assert!(inside(decoded.client_id.as_bytes(), whole));
    let kept = decoded.to_owned_compact();
    assert_eq!(kept, connect);
    let will = kept.will.as_ref().unwrap();
    let wp = &will.properties;
    for field in [
        kept.client_id.as_bytes(),
        kept.username.as_ref().unwrap().as_bytes(),
        kept.password.as_ref().unwrap(),
        kept.properties
            .authentication_method
            .as_ref()
            .unwrap()
            .as_bytes(),
        kept.properties.authentication_data.as_ref().unwrap(),
        will.topic.as_bytes(),
        &will.payload[..],
        wp.response_topic.as_ref().unwrap().as_bytes(),
        wp.correlation_data.as_ref().unwrap(),
        wp.content_type.as_ref().unwrap().as_bytes(),
        wp.user_properties[0].value.as_bytes(),
    ] {
        assert!(
            !inside(field, whole),
            "a field still points into the read buffer"
        );
    }
}

#[test]
fn compact_filter_keeps_share_name() {
    let buf = Bytes::from_static(b"xx$share/g/a/+");
    let filter = TopicFilter::try_from_bytes(buf.slice(2..)).unwrap();
    let kept = filter.to_owned_compact();
    assert_eq!(kept, filter);
    assert_eq!(kept.share_name(), Some("g"));
    assert_eq!(kept.filter(), "a/+");
    assert_ne!(kept.as_bytes().as_ptr(), filter.as_bytes().as_ptr());
}

#[test]
fn topic_and_payload_compacted_together_share_one_allocation_of_their_size() {
    // Issue 12: a routed message's topic and payload are kept and dropped together, so they
    // are copied into one allocation (one allocation and one shared count per message).
    let mut read = BytesMut::with_capacity(4096);
    let message = Publish::new(
        TopicName::new("a/b").unwrap(),
        QosPid::AtMostOnce,
        "payload",
    );
    Packet::Publish(message).encode(V, &mut read).unwrap();
    let whole = span(&read);
    let Some(Packet::Publish(decoded)) = Decoder::new(V).decode(&mut read).unwrap() else {
        panic!("a PUBLISH")
    };
    let (topic, payload) = decoded.topic.to_owned_compact_with(&decoded.payload);
    assert_eq!((topic.as_str(), &payload[..]), ("a/b", &b"payload"[..]));
    // Neither points into the read buffer; the payload follows the topic in one allocation.
    assert!(!inside(topic.as_bytes(), whole) && !inside(&payload, whole));
    assert_eq!(
        topic.as_bytes().as_ptr() as usize + 3,
        payload.as_ptr() as usize
    );
    // Clones share it; dropping the topic leaves the payload intact.
    let again = payload.clone();
    drop(topic);
    assert_eq!(&again[..], b"payload");
    // Empty parts.
    let (empty, none) = TopicName::new("t").unwrap().to_owned_compact_with(b"");
    assert_eq!((empty.as_str(), none.len()), ("t", 0));
}
