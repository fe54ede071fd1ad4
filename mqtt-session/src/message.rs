//! The commands' payloads: an application message to publish, and subscription requests.
//! Packet identifiers are not part of them: the session allocates those.

use alloc::vec::Vec;

use bytes::Bytes;
use mqtt_streaming_proto::{
    PacketId, Publish, PublishProperties, QoS, QosPid, SubscribeProperties, Subscription,
    SubscriptionOptions, TopicFilter, TopicName, UnsubscribeProperties,
};

/// An application message to publish.
///
/// ```
/// use mqtt_streaming_session::Message;
/// use mqtt_streaming_proto::{QoS, TopicName};
/// let message = Message::new(TopicName::new("sensors/1").unwrap(), QoS::AtLeastOnce, "21.5").retained();
/// assert!(message.retain);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The topic.
    pub topic: TopicName,
    /// The QoS to publish at.
    pub qos: QoS,
    /// Whether the server retains it.
    pub retain: bool,
    /// The payload.
    pub payload: Bytes,
    /// MQTT 5 properties (a Topic Alias set here is used as given).
    pub properties: PublishProperties,
}

impl Message {
    /// A message with no RETAIN and no properties.
    pub fn new(topic: TopicName, qos: QoS, payload: impl Into<Bytes>) -> Self {
        Self {
            topic,
            qos,
            retain: false,
            payload: payload.into(),
            properties: PublishProperties::default(),
        }
    }

    /// The same message with RETAIN set.
    pub fn retained(mut self) -> Self {
        self.retain = true;
        self
    }

    /// An owned, compact copy: topic and payload copied once into one allocation of their
    /// own, every property copied once into its own.
    ///
    /// A message decoded from the network is a set of slices of the read buffer, and a kept
    /// slice keeps the whole buffer alive: a 10-byte message that arrived in the same read as
    /// a 16 KiB one holds all 16 KiB. Copy a message with this before keeping it beyond one
    /// delivery (retained, queued, forwarded later); clones of the copy share it by reference
    /// count, so one copy serves any number of receivers.
    ///
    /// ```
    /// use mqtt_streaming_session::Message;
    /// use mqtt_streaming_proto::{QoS, TopicName};
    /// let message = Message::new(TopicName::new("t").unwrap(), QoS::AtMostOnce, "payload");
    /// assert_eq!(message.to_owned_compact(), message);
    /// ```
    pub fn to_owned_compact(&self) -> Self {
        // Topic and payload in one allocation: they are kept and dropped together.
        let (topic, payload) = self.topic.to_owned_compact_with(&self.payload);
        Self {
            topic,
            qos: self.qos,
            retain: self.retain,
            payload,
            properties: self.properties.to_owned_compact(),
        }
    }

    /// The PUBLISH that carries this message with packet identifier `id` (ignored at QoS 0).
    pub(crate) fn into_publish(self, id: PacketId) -> Publish {
        Publish {
            dup: false,
            qos_pid: QosPid::new(self.qos, id),
            retain: self.retain,
            topic: self.topic,
            properties: self.properties,
            payload: self.payload,
        }
    }

    /// The message a PUBLISH carried.
    pub(crate) fn from_publish(publish: Publish) -> Self {
        Self {
            topic: publish.topic,
            qos: publish.qos_pid.qos(),
            retain: publish.retain,
            payload: publish.payload,
            properties: publish.properties,
        }
    }
}

/// A SUBSCRIBE request: filters with options, and properties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeRequest {
    /// The filters; at least one.
    pub subscriptions: Vec<Subscription>,
    /// MQTT 5 properties (Subscription Identifier, User Properties).
    pub properties: SubscribeProperties,
}

impl SubscribeRequest {
    /// One filter at `qos` with default options.
    pub fn new(filter: TopicFilter, qos: QoS) -> Self {
        Self {
            subscriptions: alloc::vec![Subscription {
                filter,
                options: SubscriptionOptions::new(qos),
            }],
            properties: SubscribeProperties::default(),
        }
    }

    /// Adds a filter with its options.
    pub fn and(mut self, filter: TopicFilter, options: SubscriptionOptions) -> Self {
        self.subscriptions.push(Subscription { filter, options });
        self
    }
}

/// An UNSUBSCRIBE request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsubscribeRequest {
    /// The filters, exactly as subscribed; at least one.
    pub filters: Vec<TopicFilter>,
    /// MQTT 5 properties.
    pub properties: UnsubscribeProperties,
}

impl UnsubscribeRequest {
    /// One filter.
    pub fn new(filter: TopicFilter) -> Self {
        Self {
            filters: alloc::vec![filter],
            properties: UnsubscribeProperties::default(),
        }
    }
}
