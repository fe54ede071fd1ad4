//! Fan-out through the broker core, byte for byte: a QoS 0 message routed to many subscribers
//! is encoded once per protocol version and RETAIN flag and shared by the subscribers whose
//! copies are the same bytes. Each subscriber must still get exactly the PUBLISH it would get
//! alone: its protocol version, its RETAIN (Retain As Published), its Subscription
//! Identifiers, its Maximum Packet Size and its topic aliases.
//!
//! The broker is driven directly with encoded packets, and each subscriber's bytes are
//! compared with the PUBLISH the codec encodes for that subscriber.

use std::collections::BTreeMap;
use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    Connect, MqttString, Packet, PacketId, ProtocolVersion, Publish, PublishProperties, QoS,
    QosPid, Subscribe, SubscribeProperties, Subscription, SubscriptionId, SubscriptionOptions,
    TopicFilter, TopicName, UserProperty,
};
use mqtt_streaming_session::broker::{Broker, BrokerConfig, ConnectionId};
use mqtt_streaming_session::Instant;

const V31: ProtocolVersion = ProtocolVersion::V3_1;
const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn now() -> Instant {
    Instant::from_millis(1)
}

/// A broker fed encoded packets; what it sends is kept per connection.
struct Wire {
    broker: Broker,
    out: BTreeMap<ConnectionId, BytesMut>,
    versions: BTreeMap<ConnectionId, ProtocolVersion>,
}

impl Wire {
    fn new(config: BrokerConfig) -> Self {
        Self {
            broker: Broker::new(config),
            out: BTreeMap::new(),
            versions: BTreeMap::new(),
        }
    }

    fn drain(&mut self) {
        let mut buf = BytesMut::new();
        while let Some(id) = self.broker.poll_transmit(now(), &mut buf) {
            self.out.entry(id).or_default().extend_from_slice(&buf);
            buf.clear();
        }
        while self.broker.poll_event().is_some() {}
    }

    fn send(&mut self, id: ConnectionId, packet: Packet) {
        let mut buf = BytesMut::new();
        packet.encode(self.versions[&id], &mut buf).unwrap();
        self.broker.handle_read(now(), id, &mut buf);
        assert!(buf.is_empty());
        self.drain();
    }

    /// What connection `id` was sent since the last call.
    fn take(&mut self, id: ConnectionId) -> BytesMut {
        self.out.remove(&id).unwrap_or_default()
    }

    /// Connects a client (CONNACK discarded).
    fn connect(&mut self, connect: Connect) -> ConnectionId {
        let id = self.broker.open(now()).unwrap();
        self.versions.insert(id, connect.protocol);
        self.send(id, Packet::from(connect));
        assert!(!self.take(id).is_empty(), "CONNACK");
        id
    }

    fn client(&mut self, version: ProtocolVersion, name: &str) -> ConnectionId {
        self.connect(Connect::new(version, MqttString::new(name).unwrap()))
    }

    /// Subscribes `id` to `filter` (SUBACK discarded).
    fn subscribe(
        &mut self,
        id: ConnectionId,
        filter: &str,
        options: SubscriptionOptions,
        subscription_id: Option<u32>,
    ) {
        self.send(
            id,
            Packet::Subscribe(Subscribe {
                packet_id: PacketId::new(1).unwrap(),
                subscriptions: vec![Subscription {
                    filter: TopicFilter::new(filter).unwrap(),
                    options,
                }],
                properties: SubscribeProperties {
                    subscription_identifier: subscription_id.and_then(SubscriptionId::new),
                    ..SubscribeProperties::default()
                },
            }),
        );
        assert!(!self.take(id).is_empty(), "SUBACK");
    }
}

fn qos0() -> SubscriptionOptions {
    SubscriptionOptions::new(QoS::AtMostOnce)
}

/// A QoS 0 PUBLISH of `payload` to `fan/out`, without properties.
fn fan_out(payload: &[u8]) -> Packet {
    Packet::Publish(Publish::new(
        TopicName::new("fan/out").unwrap(),
        QosPid::AtMostOnce,
        Bytes::copy_from_slice(payload),
    ))
}

/// The QoS 0 PUBLISH a subscriber of `version` should get.
fn expected(
    version: ProtocolVersion,
    topic: &str,
    retain: bool,
    properties: PublishProperties,
    payload: &[u8],
) -> BytesMut {
    let mut publish = Publish::new(
        TopicName::new(topic).unwrap(),
        QosPid::AtMostOnce,
        Bytes::copy_from_slice(payload),
    );
    publish.retain = retain;
    publish.properties = properties;
    let mut buf = BytesMut::new();
    Packet::Publish(publish).encode(version, &mut buf).unwrap();
    buf
}

#[test]
fn shared_encodings_are_each_subscribers_own_packet() {
    // [MQTT-3.3.1-12], [MQTT-3.3.1-13] (5.0): RETAIN cleared unless Retain As Published;
    // [MQTT-3.3.2-17] (5.0): user properties passed through in order; [MQTT-3.3.4-3] (5.0):
    // the Subscription Identifier of the matching subscription; [MQTT-3.3.2-7] (5.0): the
    // publisher's Topic Alias is its connection's, not passed on. Several subscribers of each
    // version share one encoding, the others get their own; every one gets its exact bytes.
    let mut wire = Wire::new(BrokerConfig::default());
    let a = wire.client(V31, "a");
    let b = wire.client(V3, "b");
    let c = wire.client(V5, "c");
    let d = wire.client(V5, "d");
    let e = wire.client(V5, "e");
    let f = wire.client(V3, "f");
    let g = wire.client(V5, "g");
    wire.subscribe(a, "fan/out", qos0(), None);
    // QoS 1 granted, the message is QoS 0: delivered at QoS 0, shared.
    wire.subscribe(b, "fan/#", SubscriptionOptions::new(QoS::AtLeastOnce), None);
    wire.subscribe(c, "fan/out", qos0(), None);
    wire.subscribe(d, "fan/+", qos0(), Some(7));
    let rap = SubscriptionOptions {
        retain_as_published: true,
        ..qos0()
    };
    wire.subscribe(e, "fan/out", rap, None);
    wire.subscribe(f, "fan/out", qos0(), None);
    wire.subscribe(g, "+/out", qos0(), None);

    let publisher = wire.client(V5, "pub");
    let properties = PublishProperties {
        user_properties: vec![
            UserProperty::new("k", "v").unwrap(),
            UserProperty::new("k", "w").unwrap(),
        ],
        content_type: Some(MqttString::new("text/plain").unwrap()),
        message_expiry_interval: Some(60),
        ..PublishProperties::default()
    };
    let mut first = Publish::new(
        TopicName::new("fan/out").unwrap(),
        QosPid::AtMostOnce,
        &b"one"[..],
    );
    first.retain = true;
    first.properties = properties.clone();
    first.properties.topic_alias = NonZeroU16::new(1);
    // The second uses the alias alone (empty topic).
    let mut second = Publish::new(TopicName::empty(), QosPid::AtMostOnce, &b"two"[..]);
    second.properties = properties.clone();
    second.properties.topic_alias = NonZeroU16::new(1);
    wire.send(publisher, Packet::Publish(first));
    wire.send(publisher, Packet::Publish(second));

    let with_id = PublishProperties {
        subscription_identifiers: vec![SubscriptionId::new(7).unwrap()],
        ..properties.clone()
    };
    for (id, version, props, retain_as_published) in [
        (a, V31, &properties, false),
        (b, V3, &properties, false),
        (c, V5, &properties, false),
        (d, V5, &with_id, false),
        (e, V5, &properties, true),
        (f, V3, &properties, false),
        (g, V5, &properties, false),
    ] {
        let mut want = expected(
            version,
            "fan/out",
            retain_as_published,
            props.clone(),
            b"one",
        );
        want.extend_from_slice(&expected(version, "fan/out", false, props.clone(), b"two"));
        assert_eq!(wire.take(id), want, "subscriber {id:?} ({version:?})");
    }
    assert_eq!(wire.broker.stats().dropped_too_large, 0);
}

#[test]
fn each_subscribers_maximum_packet_size_holds_with_a_shared_encoding() {
    // [MQTT-3.1.2-24] (5.0): the Server must not send a packet larger than the client's
    // Maximum Packet Size; the message is dropped for that client only
    // ([MQTT-3.1.2-25]: as if sent). The limit is checked against the shared encoding's size,
    // at the boundary too.
    let payload = [7u8; 40];
    let size = expected(V5, "fan/out", false, PublishProperties::default(), &payload).len();
    let mut wire = Wire::new(BrokerConfig::default());
    let mut subscribers = Vec::new();
    for (name, max) in [
        ("small", Some(30)),
        ("exact", Some(size as u32)),
        ("one-short", Some(size as u32 - 1)),
        ("large", Some(1000)),
        ("unlimited", None),
    ] {
        let mut connect = Connect::new(V5, MqttString::new(name).unwrap());
        connect.properties.maximum_packet_size = max.and_then(NonZeroU32::new);
        let id = wire.connect(connect);
        wire.subscribe(id, "fan/out", qos0(), None);
        subscribers.push((id, max.is_none_or(|max| max as usize >= size)));
    }
    let v3 = wire.client(V3, "v3");
    wire.subscribe(v3, "fan/out", qos0(), None);
    let publisher = wire.client(V3, "pub");
    wire.send(publisher, fan_out(&payload));
    for (id, fits) in subscribers {
        let want = if fits {
            expected(V5, "fan/out", false, PublishProperties::default(), &payload)
        } else {
            BytesMut::new()
        };
        assert_eq!(wire.take(id), want, "{id:?}");
    }
    assert_eq!(
        wire.take(v3),
        expected(V3, "fan/out", false, PublishProperties::default(), &payload)
    );
    assert_eq!(wire.broker.stats().dropped_too_large, 2);
}

#[test]
fn automatic_topic_aliases_give_a_subscriber_its_own_bytes() {
    // [MQTT-3.1.2-26], [MQTT-3.1.2-27] (5.0): aliases only up to the client's Topic Alias
    // Maximum, none when it is absent or 0. With automatic aliases on, a subscriber that
    // accepts them gets the topic and a new alias, then the alias alone; the others share the
    // plain PUBLISH.
    let mut config = BrokerConfig::default();
    config.server.auto_topic_alias = true;
    let mut wire = Wire::new(config);
    let mut connect = Connect::new(V5, MqttString::new("aliased").unwrap());
    connect.properties.topic_alias_maximum = Some(4);
    let aliased = wire.connect(connect);
    let plain = wire.client(V5, "plain");
    let plain2 = wire.client(V5, "plain2");
    let v3 = wire.client(V3, "v3");
    for id in [aliased, plain, plain2, v3] {
        wire.subscribe(id, "fan/out", qos0(), None);
    }
    let publisher = wire.client(V3, "pub");
    for payload in ["one", "two"] {
        wire.send(publisher, fan_out(payload.as_bytes()));
    }
    let alias = PublishProperties {
        topic_alias: NonZeroU16::new(1),
        ..PublishProperties::default()
    };
    let mut want = expected(V5, "fan/out", false, alias.clone(), b"one");
    let mut second = Publish::new(TopicName::empty(), QosPid::AtMostOnce, &b"two"[..]);
    second.properties = alias;
    Packet::Publish(second).encode(V5, &mut want).unwrap();
    assert_eq!(wire.take(aliased), want);
    for (id, version) in [(plain, V5), (plain2, V5), (v3, V3)] {
        let mut want = expected(
            version,
            "fan/out",
            false,
            PublishProperties::default(),
            b"one",
        );
        want.extend_from_slice(&expected(
            version,
            "fan/out",
            false,
            PublishProperties::default(),
            b"two",
        ));
        assert_eq!(wire.take(id), want, "{id:?}");
    }
}

#[test]
fn a_full_subscriber_drops_its_copy_and_the_others_get_theirs() {
    // [MQTT-4.3.1-1] (5.0) / [MQTT-3.3.1-2] (3.1.1): QoS 0 is delivered at most once; a
    // subscriber whose transmit buffer is full loses its copy (counted), the others get the
    // shared bytes all the same.
    let mut config = BrokerConfig::default();
    config.server.max_transmit_buffer = 64;
    let mut wire = Wire::new(config);
    let slow = wire.client(V3, "slow");
    let fast = wire.client(V3, "fast");
    let fast2 = wire.client(V3, "fast2");
    for id in [slow, fast, fast2] {
        wire.subscribe(id, "fan/out", qos0(), None);
    }
    // The driver cannot write to `slow`: its bytes wait in its session.
    wire.broker.pause_transmit(slow);
    let publisher = wire.client(V3, "pub");
    let payload = [1u8; 60];
    let one = expected(V3, "fan/out", false, PublishProperties::default(), &payload);
    for _ in 0..3 {
        wire.send(publisher, fan_out(&payload));
    }
    let three: Vec<u8> = one.iter().chain(&one).chain(&one).copied().collect();
    assert_eq!(&wire.take(fast)[..], &three[..]);
    assert_eq!(&wire.take(fast2)[..], &three[..]);
    // One PUBLISH fills its 64-byte buffer; the next two are refused.
    wire.broker.resume_transmit(slow);
    wire.drain();
    assert_eq!(wire.take(slow), one);
    assert_eq!(wire.broker.stats().dropped_queue_full, 2);
}
