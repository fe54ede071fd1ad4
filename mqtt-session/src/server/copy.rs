//! One receiver's copy of a message, described by reference instead of built, and the QoS 0
//! PUBLISHes that identical copies of one message share: what a broker's fan-out hands to
//! [`ServerSession::publish_copy`](super::ServerSession::publish_copy).
//!
//! A message routed to N subscribers used to be cloned N times (topic, payload and properties,
//! each a reference count or an allocation) and moved through the router by value, and its
//! PUBLISH encoded N times. A copy that is sent at once at QoS 0 needs none of that: it is the
//! same bytes for every receiver with the same protocol version and RETAIN flag, as long as it
//! carries no Subscription Identifier and no Topic Alias. Those bytes are encoded once and
//! appended to each receiver's transmit buffer. A copy that is kept (queued, in flight, held
//! back, stored for an offline session) is built into an owned [`Message`] there, and only there.

use bytes::BytesMut;
use mqtt_streaming_proto::{
    EncodeError, ProtocolVersion, Publish, PublishProperties, QoS, QosPid, SubscriptionId,
};

use crate::message::Message;

/// One receiver's copy of `message`: at `qos`, with RETAIN `retain` and the Subscription
/// Identifiers `subscription_ids`; any Topic Alias of the original is left out (aliases belong
/// to one connection, [MQTT-3.3.2-7] in 5.0).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MessageCopy<'a> {
    pub(crate) message: &'a Message,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) subscription_ids: &'a [SubscriptionId],
}

impl<'a> MessageCopy<'a> {
    /// `message` exactly as it is (a copy built earlier, handed on again).
    pub(crate) fn exact(message: &'a Message) -> Self {
        Self {
            message,
            qos: message.qos,
            retain: message.retain,
            subscription_ids: &message.properties.subscription_identifiers,
        }
    }

    /// The copy as an owned message (sharing the original's topic and payload bytes), for
    /// whoever keeps it.
    pub(crate) fn to_message(self) -> Message {
        let mut properties = self.message.properties.clone();
        properties.topic_alias = None;
        if properties.subscription_identifiers[..] != *self.subscription_ids {
            properties.subscription_identifiers = self.subscription_ids.to_vec();
        }
        Message {
            topic: self.message.topic.clone(),
            qos: self.qos,
            retain: self.retain,
            payload: self.message.payload.clone(),
            properties,
        }
    }

    /// What the copy counts against a queue's byte bound (topic and payload).
    pub(crate) fn queued_size(&self) -> usize {
        self.message.topic.len() + self.message.payload.len()
    }

    /// Whether every receiver of the same protocol version gets the same bytes for this copy
    /// when it is sent at once: QoS 0 (no packet identifier) and no Subscription Identifier.
    /// (The receiver's automatic topic aliases are the session's to check.)
    pub(crate) fn is_shareable(&self) -> bool {
        self.qos == QoS::AtMostOnce && self.subscription_ids.is_empty()
    }
}

/// Slots of [`EncodedCopies`]: each protocol version, RETAIN clear and set.
const SLOTS: usize = 6;

/// The QoS 0 PUBLISHes of one message, encoded once per protocol version and RETAIN flag and
/// shared by every receiver whose copy is byte-identical ([`MessageCopy::is_shareable`]).
/// Holds one message at a time: [`reset`](Self::reset) before the next.
#[derive(Debug, Default)]
pub(crate) struct EncodedCopies {
    /// Off: every copy is encoded by its own session (one receiver only: nothing to share).
    on: bool,
    buf: BytesMut,
    /// Where each encoding lies in `buf`, or the error encoding it gave.
    slots: [Option<Result<(usize, usize), EncodeError>>; SLOTS],
}

impl EncodedCopies {
    /// For a new message; `on` when it has more than one receiver. The encodings of the
    /// previous one are freed (an idle owner holds nothing here).
    pub(crate) fn reset(&mut self, on: bool) {
        self.on = on;
        self.slots = Default::default();
        self.buf = BytesMut::new();
    }

    /// Whether copies are shared at all.
    pub(crate) fn is_on(&self) -> bool {
        self.on
    }

    /// The PUBLISH of `copy` (shareable) for `version`: encoded on first use.
    pub(crate) fn get(
        &mut self,
        version: ProtocolVersion,
        copy: &MessageCopy<'_>,
    ) -> Result<&[u8], EncodeError> {
        debug_assert!(copy.is_shareable());
        let slot = match version {
            ProtocolVersion::V3_1 => 0,
            ProtocolVersion::V3_1_1 => 2,
            ProtocolVersion::V5 => 4,
        } + usize::from(copy.retain);
        let (start, end) = match &self.slots[slot] {
            Some(encoded) => encoded.clone()?,
            None => {
                let encoded = self.encode(version, copy);
                self.slots[slot] = Some(encoded.clone());
                encoded?
            }
        };
        Ok(&self.buf[start..end])
    }

    fn encode(
        &mut self,
        version: ProtocolVersion,
        copy: &MessageCopy<'_>,
    ) -> Result<(usize, usize), EncodeError> {
        let message = copy.message;
        // 5.0 passes the properties through ([MQTT-3.3.2-17]) but the Topic Alias; 3.1.x
        // encodes none.
        let properties = if version.is_v5() {
            PublishProperties {
                topic_alias: None,
                ..message.properties.clone()
            }
        } else {
            PublishProperties::default()
        };
        let publish = Publish {
            dup: false,
            qos_pid: QosPid::AtMostOnce,
            retain: copy.retain,
            topic: message.topic.clone(),
            properties,
            payload: message.payload.clone(),
        };
        let start = self.buf.len();
        // One allocation for the first encoding and usually the next (header, topic,
        // properties and payload).
        let size = Publish::encoded_len_of(
            version,
            &publish.topic,
            QoS::AtMostOnce,
            &publish.properties,
            publish.payload.len(),
        )?;
        self.buf.reserve(size.max(256));
        publish.encode_header(version, &mut self.buf)?;
        self.buf.extend_from_slice(&publish.payload);
        Ok((start, self.buf.len()))
    }
}
