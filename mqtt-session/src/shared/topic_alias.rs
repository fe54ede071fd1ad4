//! Topic aliases (MQTT 5, section 3.3.2.3.4): the maps live for one network connection only
//! ([MQTT-3.3.2-7]).
//!
//! Each map is boxed and allocated by its first alias: most connections use none, and every
//! session (a broker's thousands of idle clients) carries both tables.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use core::num::NonZeroU16;

use mqtt_streaming_proto::{Publish, TopicName};

use crate::error::ProtocolViolation;

/// Aliases the peer set up for PUBLISHes it sends us.
#[derive(Debug, Default)]
pub(crate) struct InboundAliases {
    max: u16,
    // Boxed for the 16 bytes it saves in every session while it is `None` (see above).
    #[allow(clippy::box_collection)]
    map: Option<Box<BTreeMap<u16, TopicName>>>,
}

impl InboundAliases {
    /// A new connection with our Topic Alias Maximum `max`.
    pub(crate) fn reset(&mut self, max: u16) {
        self.max = max;
        self.map = None;
    }

    /// Resolves the topic of an inbound PUBLISH in place: records a new mapping, or fills an
    /// empty topic from an existing one.
    pub(crate) fn resolve(&mut self, publish: &mut Publish) -> Result<(), ProtocolViolation> {
        let Some(alias) = publish.properties.topic_alias else {
            return Ok(());
        };
        if alias.get() > self.max {
            return Err(ProtocolViolation::TopicAliasInvalid);
        }
        if publish.topic.is_empty() {
            publish.topic = self
                .map
                .as_ref()
                .and_then(|map| map.get(&alias.get()))
                .cloned()
                .ok_or(ProtocolViolation::UnknownTopicAlias)?;
        } else {
            // Kept for the connection: an owned copy, not a view into the read buffer.
            self.map
                .get_or_insert_with(Box::default)
                .insert(alias.get(), publish.topic.to_owned_compact());
        }
        Ok(())
    }
}

/// Aliases we assign automatically to topics we publish to.
#[derive(Debug, Default)]
pub(crate) struct OutboundAliases {
    enabled: bool,
    max: u16,
    // Boxed for the 16 bytes it saves in every session while it is `None` (see above).
    #[allow(clippy::box_collection)]
    map: Option<Box<BTreeMap<TopicName, NonZeroU16>>>,
}

impl OutboundAliases {
    /// A new connection: the peer accepts aliases up to `max` ([MQTT-3.2.2-17]).
    pub(crate) fn reset(&mut self, enabled: bool, max: u16) {
        self.enabled = enabled;
        self.max = max;
        self.map = None;
    }

    /// Whether aliases are assigned on this connection.
    pub(crate) fn is_active(&self) -> bool {
        self.enabled && self.max > 0
    }

    /// Rewrites `publish` to use an alias: the first PUBLISH to a topic carries the topic and
    /// the new alias, later ones an empty topic and the alias. Topics beyond the peer's maximum
    /// go out unchanged. Returns whether the PUBLISH was changed.
    pub(crate) fn apply(&mut self, publish: &mut Publish) -> bool {
        if !self.enabled || self.max == 0 || publish.properties.topic_alias.is_some() {
            return false;
        }
        let map = self.map.get_or_insert_with(Box::default);
        if let Some(&alias) = map.get(&publish.topic) {
            publish.properties.topic_alias = Some(alias);
            publish.topic = TopicName::empty();
            return true;
        }
        let next = map.len() + 1;
        if next > usize::from(self.max) {
            return false;
        }
        let Some(alias) = u16::try_from(next).ok().and_then(NonZeroU16::new) else {
            return false;
        };
        map.insert(publish.topic.clone(), alias);
        publish.properties.topic_alias = Some(alias);
        true
    }
}
