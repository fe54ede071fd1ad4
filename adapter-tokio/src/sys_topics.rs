//! Layer 11 (feature `broker-config`): the `$SYS` topics, mosquitto's names for the broker's
//! counters ([`BrokerStats`]), published retained at an interval. Imports `broker` (the
//! handle it publishes through) and `runtime` (its timer). The topics are listed on
//! [`SysTopics`].

use std::collections::HashMap;
use std::time::Duration;

use mqtt_streaming_proto::{QoS, TopicName};
use mqtt_streaming_session::broker::BrokerStats;
use mqtt_streaming_session::Message;

use crate::broker::BrokerHandleOn;
use crate::runtime::{sleep, Runtime};

/// The `$SYS` topics' values, and which changed since the last call.
//////
/// | topic | value |
/// | --- | --- |
/// | `$SYS/broker/version` | `mqtt-streaming VERSION` |
/// | `$SYS/broker/uptime` | `N seconds` |
/// | `$SYS/broker/clients/connected` | connections open (`BrokerStats::connections`) |
/// | `$SYS/broker/clients/total` | sessions held, connected or not (`sessions`) |
/// | `$SYS/broker/clients/disconnected` | sessions held without a connection |
/// | `$SYS/broker/clients/maximum` | the most connections seen open at once |
/// | `$SYS/broker/clients/parked` | idle connections parked without a task ([`BrokerHandleOn::parked_connections`]; this broker's own) |
/// | `$SYS/broker/connections/total` | connections accepted since the start (`connections_total`) |
/// | `$SYS/broker/messages/received`, `.../publish/messages/received` | PUBLISH packets received (`messages_in`) |
/// | `$SYS/broker/messages/sent`, `.../publish/messages/sent` | messages handed to subscribers (`messages_out`) |
/// | `$SYS/broker/publish/messages/dropped` | messages dropped, for any reason (the `dropped_*` counters) |
/// | `$SYS/broker/bytes/received`, `$SYS/broker/bytes/sent` | bytes read from and written to clients |
/// | `$SYS/broker/subscriptions/count` | subscriptions held |
/// | `$SYS/broker/retained messages/count` | retained messages held |
///
/// mosquitto counts every packet in `messages/received` and `messages/sent`; here they count
/// PUBLISH messages, as its `publish/messages/*` do. `connections/total` is this broker's own.
/// A topic is published again only when its value changed (`uptime` every time).
#[derive(Clone, Debug, Default)]
pub struct SysTopics {
    last: HashMap<&'static str, String>,
    maximum_connections: usize,
    parked: Option<usize>,
}

impl SysTopics {
    /// No value published yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of parked connections for `$SYS/broker/clients/parked` (absent until set).
    pub fn set_parked(&mut self, parked: usize) {
        self.parked = Some(parked);
    }

    /// The value of `$SYS/broker/version`: `mqtt-streaming VERSION`.
    pub fn version() -> String {
        format!("mqtt-streaming {}", env!("CARGO_PKG_VERSION"))
    }

    /// Every `$SYS` topic and its value for these counters (see [`SysTopics`]).
    pub fn values(&mut self, stats: &BrokerStats, uptime: Duration) -> Vec<(&'static str, String)> {
        self.maximum_connections = self.maximum_connections.max(stats.connections);
        let dropped = stats.dropped_queue_full
            + stats.dropped_too_large
            + stats.dropped_unauthorized
            + stats.dropped_sys_topic
            + stats.dropped_expired
            + stats.dropped_too_many_user_properties
            + stats.dropped_qos0_offline
            + stats.dropped_session_ended;
        let mut values = vec![
            ("$SYS/broker/version", Self::version()),
            (
                "$SYS/broker/uptime",
                format!("{} seconds", uptime.as_secs()),
            ),
            (
                "$SYS/broker/clients/connected",
                stats.connections.to_string(),
            ),
            ("$SYS/broker/clients/total", stats.sessions.to_string()),
            (
                "$SYS/broker/clients/disconnected",
                stats.sessions.saturating_sub(stats.connections).to_string(),
            ),
            (
                "$SYS/broker/clients/maximum",
                self.maximum_connections.to_string(),
            ),
            (
                "$SYS/broker/connections/total",
                stats.connections_total.to_string(),
            ),
            (
                "$SYS/broker/messages/received",
                stats.messages_in.to_string(),
            ),
            ("$SYS/broker/messages/sent", stats.messages_out.to_string()),
            (
                "$SYS/broker/publish/messages/received",
                stats.messages_in.to_string(),
            ),
            (
                "$SYS/broker/publish/messages/sent",
                stats.messages_out.to_string(),
            ),
            ("$SYS/broker/publish/messages/dropped", dropped.to_string()),
            ("$SYS/broker/bytes/received", stats.bytes_in.to_string()),
            ("$SYS/broker/bytes/sent", stats.bytes_out.to_string()),
            (
                "$SYS/broker/subscriptions/count",
                stats.subscriptions.to_string(),
            ),
            (
                "$SYS/broker/retained messages/count",
                stats.retained.to_string(),
            ),
        ];
        if let Some(parked) = self.parked {
            values.push(("$SYS/broker/clients/parked", parked.to_string()));
        }
        values
    }

    /// The retained QoS 0 messages to publish for these counters: the topics whose value
    /// changed since the last call (all of them the first time).
    pub fn changed(&mut self, stats: &BrokerStats, uptime: Duration) -> Vec<Message> {
        let mut out = Vec::new();
        for (topic, value) in self.values(stats, uptime) {
            if self.last.get(topic) == Some(&value) {
                continue;
            }
            self.last.insert(topic, value.clone());
            if let Ok(name) = TopicName::new(topic) {
                let mut message = Message::new(name, QoS::AtMostOnce, value.into_bytes());
                message.retain = true;
                out.push(message);
            }
        }
        out
    }
}

/// Publishes the `$SYS` topics through `handle` every `interval` until the broker stops.
/// Spawn it next to the broker: `runtime.spawn(publish_sys_topics(runtime.clone(), handle,
/// interval))`.
pub async fn publish_sys_topics<R: Runtime>(
    runtime: R,
    handle: BrokerHandleOn<R>,
    interval: Duration,
) {
    let started = std::time::Instant::now();
    let mut topics = SysTopics::new();
    loop {
        let Some(stats) = handle.stats().await else {
            return;
        };
        let Some(parked) = handle.parked_connections().await else {
            return;
        };
        topics.set_parked(parked);
        for message in topics.changed(&stats, started.elapsed()) {
            if !handle.publish(message).await {
                return;
            }
        }
        sleep(&runtime, interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_values_only_after_the_first_time() {
        let mut topics = SysTopics::new();
        let mut stats = BrokerStats::default();
        stats.connections = 2;
        stats.sessions = 3;
        stats.subscriptions = 4;
        stats.retained = 5;
        stats.messages_in = 6;
        stats.bytes_in = 7;
        let first = topics.changed(&stats, Duration::from_secs(1));
        let value = |ms: &[Message], t: &str| {
            ms.iter()
                .find(|m| m.topic.as_str() == t)
                .map(|m| String::from_utf8(m.payload.to_vec()).unwrap())
        };
        assert_eq!(first.len(), 16);
        assert!(first.iter().all(|m| m.retain && m.qos == QoS::AtMostOnce));
        assert_eq!(
            value(&first, "$SYS/broker/clients/connected").as_deref(),
            Some("2")
        );
        assert_eq!(
            value(&first, "$SYS/broker/clients/total").as_deref(),
            Some("3")
        );
        assert_eq!(
            value(&first, "$SYS/broker/clients/disconnected").as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&first, "$SYS/broker/subscriptions/count").as_deref(),
            Some("4")
        );
        assert_eq!(
            value(&first, "$SYS/broker/retained messages/count").as_deref(),
            Some("5")
        );
        assert_eq!(
            value(&first, "$SYS/broker/messages/received").as_deref(),
            Some("6")
        );
        assert_eq!(
            value(&first, "$SYS/broker/bytes/received").as_deref(),
            Some("7")
        );
        assert_eq!(
            value(&first, "$SYS/broker/uptime").as_deref(),
            Some("1 seconds")
        );
        assert_eq!(value(&first, "$SYS/broker/clients/parked"), None, "not set");
        topics.set_parked(4);
        stats.connections = 1;
        let second = topics.changed(&stats, Duration::from_secs(11));
        let mut names: Vec<&str> = second.iter().map(|m| m.topic.as_str()).collect();
        names.sort_unstable();
        // The maximum stays at 2.
        assert_eq!(
            names,
            [
                "$SYS/broker/clients/connected",
                "$SYS/broker/clients/disconnected",
                "$SYS/broker/clients/parked",
                "$SYS/broker/uptime"
            ]
        );
    }
}
