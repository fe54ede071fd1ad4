//! The retained message store ([MQTT-3.3.1-5] to [MQTT-3.3.1-11] in 3.1.1; section 3.3.1.3 of
//! 5.0): one message per topic, replaced by the next retained PUBLISH, deleted by an empty one.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use mqtt_proto::{TopicFilter, TopicName};

use crate::message::Message;
use crate::time::Instant;

/// Why a retained message was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StoreFull;

#[derive(Debug)]
struct Retained {
    message: Message,
    stored_at: Instant,
}

/// Retained messages by topic, bounded in count.
#[derive(Debug)]
pub(crate) struct RetainedStore {
    messages: BTreeMap<TopicName, Retained>,
    max: usize,
}

impl RetainedStore {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            messages: BTreeMap::new(),
            max,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    /// Stores, replaces or (for an empty payload) deletes the retained message of a topic.
    pub(crate) fn store(&mut self, now: Instant, message: &Message) -> Result<(), StoreFull> {
        if message.payload.is_empty() {
            self.messages.remove(&message.topic);
            return Ok(());
        }
        if !self.messages.contains_key(&message.topic) && self.messages.len() >= self.max {
            return Err(StoreFull);
        }
        let mut stored = message.clone();
        stored.properties.topic_alias = None;
        stored.properties.subscription_identifiers.clear();
        self.messages.insert(
            message.topic.clone(),
            Retained {
                message: stored,
                stored_at: now,
            },
        );
        Ok(())
    }

    /// The retained messages whose topic matches `filter`, with their remaining Message Expiry
    /// Interval; expired ones are deleted on the way ([MQTT-3.3.2-5] in 5.0).
    pub(crate) fn matching(&mut self, now: Instant, filter: &TopicFilter) -> Vec<Message> {
        let mut out = Vec::new();
        let mut expired = Vec::new();
        for (topic, retained) in &self.messages {
            if !filter.matches(topic) {
                continue;
            }
            let mut message = retained.message.clone();
            if let Some(interval) = message.properties.message_expiry_interval {
                let waited =
                    u32::try_from((now - retained.stored_at).as_secs()).unwrap_or(u32::MAX);
                if waited >= interval {
                    expired.push(topic.clone());
                    continue;
                }
                message.properties.message_expiry_interval = Some(interval - waited);
            }
            out.push(message);
        }
        for topic in expired {
            self.messages.remove(&topic);
        }
        out
    }
}
