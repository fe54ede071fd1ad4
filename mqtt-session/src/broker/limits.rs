//! The limits on what a client sends in topics: the number of levels of topic names and
//! filters, and the byte budgets of subscriptions (see [`BrokerConfig`](super::BrokerConfig)).

use mqtt_streaming_proto::{Disconnect, ReasonCode, TopicFilter};

use super::subscriptions::{subscription_weight, SessionKey};
use super::{Broker, BrokerHooks, ConnectionId};
use crate::time::Instant;

impl<H: BrokerHooks> Broker<H> {
    /// Whether `topic` (a topic name, or the part of a filter matched against topics) has more
    /// levels than `max_topic_levels`.
    pub(super) fn too_many_levels(&self, topic: &str) -> bool {
        levels(topic) > self.config.max_topic_levels
    }

    /// The SUBACK code refusing `key`'s subscription to `filter`, when it has too many levels
    /// or a new subscription would go beyond a byte budget; `None` when it may go ahead.
    pub(super) fn subscription_refusal(
        &self,
        key: SessionKey,
        filter: &TopicFilter,
        v5: bool,
    ) -> Option<ReasonCode> {
        let refused = if self.too_many_levels(filter.filter()) {
            ReasonCode::TopicFilterInvalid
        } else {
            let is_new = self
                .sessions
                .get(&key)
                .is_some_and(|r| !r.subscriptions.contains_key(filter));
            let weight = subscription_weight(filter);
            let over = |used: usize, max: usize| used.saturating_add(weight) > max;
            if is_new
                && (over(
                    self.sessions.get(&key).map_or(0, |r| r.subscription_weight),
                    self.config.max_subscription_bytes_per_session,
                ) || over(
                    self.index.weight(),
                    self.config.max_subscription_bytes_total,
                ))
            {
                ReasonCode::QuotaExceeded
            } else {
                return None;
            }
        };
        Some(if v5 {
            refused
        } else {
            ReasonCode::UnspecifiedError
        })
    }

    /// Ends connection `id`, whose PUBLISH had a topic name with too many levels: DISCONNECT
    /// 0x90 Topic Name invalid in MQTT 5, a plain close in 3.1.x.
    pub(super) fn refuse_topic(&mut self, now: Instant, id: ConnectionId) {
        if let Some(conn) = self.connections.get_mut(&id) {
            let _ = conn
                .session
                .disconnect(now, Disconnect::new(ReasonCode::TopicNameInvalid));
        }
    }
}

/// The levels of a topic name or filter: one more than its `/` separators.
pub(super) fn levels(topic: &str) -> usize {
    topic.bytes().filter(|&b| b == b'/').count() + 1
}
