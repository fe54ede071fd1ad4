//! Owned, compact copies of decoded values.
//!
//! A decoded packet does not copy: its topic, payload, strings and binary properties are
//! slices of the buffer it was decoded from, and each slice keeps that whole buffer alive. That
//! is right for a value used once and dropped, and wrong for one kept: a 10-byte retained
//! message decoded from a 16 KiB read holds all 16 KiB for as long as it is kept.
//!
//! `to_owned_compact` copies each field once into an allocation of its own, exactly its size.
//! Call it where a value starts to outlive the read it came from (a broker's retained store,
//! an offline queue, a will). The copy can then be shared by reference count (cloning a
//! [`Bytes`] does not copy), so a message sent to many subscribers is copied once, not once
//! per subscriber. Empty fields allocate nothing.
//!
//! ```
//! use bytes::BytesMut;
//! use mqtt_streaming_proto::{Decoder, Packet, ProtocolVersion, Publish, QosPid, TopicName};
//!
//! let mut read = BytesMut::new();
//! let big = Publish::new(TopicName::new("big").unwrap(), QosPid::AtMostOnce, vec![0u8; 16384]);
//! let small = Publish::new(TopicName::new("t").unwrap(), QosPid::AtMostOnce, "10 bytes..");
//! Packet::Publish(big).encode(ProtocolVersion::V5, &mut read).unwrap();
//! Packet::Publish(small).encode(ProtocolVersion::V5, &mut read).unwrap();
//! let decoder = Decoder::new(ProtocolVersion::V5);
//! let _big = decoder.decode(&mut read).unwrap().unwrap();
//! let Some(Packet::Publish(small)) = decoder.decode(&mut read).unwrap() else { panic!() };
//! // `small.payload` shares the 16 KiB read; the copy holds its own 10 bytes only.
//! let kept = small.to_owned_compact();
//! assert_eq!(kept, small);
//! ```

use bytes::{Bytes, BytesMut};

use crate::packet::{Connect, ConnectProperties, Publish, PublishProperties, Will, WillProperties};
use crate::property::UserProperty;
use crate::string::MqttString;
use crate::topic::TopicName;

/// A copy of `bytes` in an allocation of its own (none when empty).
pub(crate) fn compact_bytes(bytes: &Bytes) -> Bytes {
    Bytes::copy_from_slice(bytes)
}

fn compact_opt(bytes: &Option<Bytes>) -> Option<Bytes> {
    bytes.as_ref().map(compact_bytes)
}

fn compact_users(users: &[UserProperty]) -> alloc::vec::Vec<UserProperty> {
    users.iter().map(UserProperty::to_owned_compact).collect()
}

impl MqttString {
    /// An owned, compact copy: the string's bytes in an allocation of their own, so the copy
    /// does not keep the buffer it was decoded from alive.
    ///
    /// Decoded values are slices of the read buffer; a kept slice keeps all of it. Cloning a
    /// compact copy shares it by reference count.
    pub fn to_owned_compact(&self) -> Self {
        Self::from_validated(Bytes::copy_from_slice(self.as_bytes()))
    }
}

impl TopicName {
    /// An owned, compact copy: the name's bytes in an allocation of their own, so the copy
    /// does not keep the buffer it was decoded from alive.
    pub fn to_owned_compact(&self) -> Self {
        Self::from_validated(Bytes::copy_from_slice(self.as_bytes()))
    }

    /// An owned, compact copy of the name and of `payload` together: both in one allocation
    /// of exactly their size, shared by the two by reference count. For a message's topic
    /// and payload, which are kept and dropped together: one allocation and one shared count
    /// instead of two of each (cloning either then only counts a reference).
    ///
    /// ```
    /// use mqtt_streaming_proto::TopicName;
    /// let topic = TopicName::new("a/b").unwrap();
    /// let (name, payload) = topic.to_owned_compact_with(b"payload");
    /// assert_eq!((name.as_str(), &payload[..]), ("a/b", &b"payload"[..]));
    /// ```
    pub fn to_owned_compact_with(&self, payload: &[u8]) -> (Self, Bytes) {
        let name = self.as_bytes();
        let mut both = BytesMut::with_capacity(name.len() + payload.len());
        both.extend_from_slice(name);
        both.extend_from_slice(payload);
        let payload = both.split_off(name.len()).freeze();
        (Self::from_validated(both.freeze()), payload)
    }
}

impl UserProperty {
    /// An owned, compact copy of both strings.
    pub fn to_owned_compact(&self) -> Self {
        Self {
            name: self.name.to_owned_compact(),
            value: self.value.to_owned_compact(),
        }
    }
}

impl PublishProperties {
    /// An owned, compact copy: Response Topic, Correlation Data, Content Type and every User
    /// Property copied once each; the numeric properties as they are.
    pub fn to_owned_compact(&self) -> Self {
        Self {
            payload_format: self.payload_format,
            message_expiry_interval: self.message_expiry_interval,
            topic_alias: self.topic_alias,
            response_topic: self
                .response_topic
                .as_ref()
                .map(TopicName::to_owned_compact),
            correlation_data: compact_opt(&self.correlation_data),
            user_properties: compact_users(&self.user_properties),
            subscription_identifiers: self.subscription_identifiers.clone(),
            content_type: self.content_type.as_ref().map(MqttString::to_owned_compact),
        }
    }
}

impl Publish {
    /// An owned, compact copy: topic, payload and properties each copied once.
    pub fn to_owned_compact(&self) -> Self {
        Self {
            dup: self.dup,
            qos_pid: self.qos_pid,
            retain: self.retain,
            topic: self.topic.to_owned_compact(),
            properties: self.properties.to_owned_compact(),
            payload: compact_bytes(&self.payload),
        }
    }
}

impl WillProperties {
    /// An owned, compact copy of the will properties.
    pub fn to_owned_compact(&self) -> Self {
        Self {
            will_delay_interval: self.will_delay_interval,
            payload_format: self.payload_format,
            message_expiry_interval: self.message_expiry_interval,
            content_type: self.content_type.as_ref().map(MqttString::to_owned_compact),
            response_topic: self
                .response_topic
                .as_ref()
                .map(TopicName::to_owned_compact),
            correlation_data: compact_opt(&self.correlation_data),
            user_properties: compact_users(&self.user_properties),
        }
    }
}

impl Will {
    /// An owned, compact copy: topic, payload and properties each copied once.
    pub fn to_owned_compact(&self) -> Self {
        Self {
            topic: self.topic.to_owned_compact(),
            payload: compact_bytes(&self.payload),
            qos: self.qos,
            retain: self.retain,
            properties: self.properties.to_owned_compact(),
        }
    }
}

impl ConnectProperties {
    /// An owned, compact copy of the CONNECT properties.
    pub fn to_owned_compact(&self) -> Self {
        Self {
            session_expiry_interval: self.session_expiry_interval,
            receive_maximum: self.receive_maximum,
            maximum_packet_size: self.maximum_packet_size,
            topic_alias_maximum: self.topic_alias_maximum,
            request_response_information: self.request_response_information,
            request_problem_information: self.request_problem_information,
            user_properties: compact_users(&self.user_properties),
            authentication_method: self
                .authentication_method
                .as_ref()
                .map(MqttString::to_owned_compact),
            authentication_data: compact_opt(&self.authentication_data),
        }
    }
}

impl Connect {
    /// An owned, compact copy: client identifier, will, user name, password and properties
    /// each copied once (for a CONNECT kept while an authentication exchange goes on).
    pub fn to_owned_compact(&self) -> Self {
        Self {
            protocol: self.protocol,
            clean_start: self.clean_start,
            keep_alive: self.keep_alive,
            client_id: self.client_id.to_owned_compact(),
            will: self.will.as_ref().map(Will::to_owned_compact),
            username: self.username.as_ref().map(MqttString::to_owned_compact),
            password: compact_opt(&self.password),
            properties: self.properties.to_owned_compact(),
        }
    }
}
