//! SUBSCRIBE and UNSUBSCRIBE: the subscription index, per-session limits, and the retained
//! messages sent after a SUBACK.

use alloc::vec::Vec;

use mqtt_streaming_proto::{
    AckProperties, ReasonCode, RetainHandling, Subscribe, TopicFilter, Unsubscribe,
};

use super::subscriptions::{subscription_weight, Delivery, Sub};
use super::{client_id_of, Broker, BrokerHooks, ClientInfo, ConnectionId};
use crate::time::Instant;

impl<H: BrokerHooks> Broker<H> {
    pub(super) fn on_subscribe(&mut self, now: Instant, id: ConnectionId, subscribe: Subscribe) {
        let Some(conn) = self.connections.get(&id) else {
            return;
        };
        let Some(key) = conn.key() else {
            return;
        };
        let client_id = client_id_of(&self.sessions, conn);
        let username = self
            .sessions
            .get(&key)
            .and_then(|r| r.username.as_deref().cloned());
        let v5 = conn.session.version().is_v5();
        let maximum_qos = self.config.server.maximum_qos;
        let subscription_id = subscribe.properties.subscription_identifier;
        let mut codes = Vec::with_capacity(subscribe.subscriptions.len());
        let mut retained_to_send = Vec::new();
        for s in &subscribe.subscriptions {
            if let Some(code) =
                self.unavailable_feature(s.filter.is_shared(), &s.filter, subscription_id.is_some())
            {
                codes.push(if v5 {
                    code
                } else {
                    ReasonCode::UnspecifiedError
                });
                continue;
            }
            let client = ClientInfo::new(client_id.as_str(), username.as_ref().map(|u| u.as_str()));
            if let Err(code) = self.hooks.authorize_subscription(&client, &s.filter) {
                let suback_error =
                    code.is_error() && code.is_valid_for(mqtt_streaming_proto::PacketType::SubAck);
                codes.push(match (v5, suback_error) {
                    (true, true) => code,
                    (true, false) => ReasonCode::NotAuthorized,
                    (false, _) => ReasonCode::UnspecifiedError,
                });
                continue;
            }
            if let Some(code) = self.subscription_refusal(key, &s.filter, v5) {
                codes.push(code);
                continue;
            }
            let Some(record) = self.sessions.get_mut(&key) else {
                return;
            };
            if !record.subscriptions.contains_key(&s.filter)
                && record.subscriptions.len() >= self.config.max_subscriptions_per_session
            {
                codes.push(if v5 {
                    ReasonCode::QuotaExceeded
                } else {
                    ReasonCode::UnspecifiedError
                });
                continue;
            }
            let mut options = s.options;
            // QoS downgraded to what the server supports ([MQTT-3.2.2-10] in 5.0).
            options.qos = options.qos.min(maximum_qos);
            let sub = Sub {
                options,
                id: subscription_id,
            };
            // An owned copy, not a view into the read buffer (see `admit`), kept by the
            // session's record alone (a shared group keeps its own clone in the index): not
            // cloned for anything that goes sooner, so that it needs no shared header.
            let filter = s.filter.to_owned_compact();
            let weight = subscription_weight(&filter);
            let existed = self.index.insert(key, &filter, sub);
            self.journal_subscription(key, &filter, Some(sub));
            codes.push(ReasonCode::granted(options.qos));
            let send_retained = match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendAtSubscribeIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
            // Retained messages are not sent for shared subscriptions ([MQTT-4.8.2] in 5.0).
            if send_retained && !s.filter.is_shared() {
                let delivery = Delivery {
                    qos: options.qos,
                    retain_as_published: true,
                    subscription_ids: subscription_id.into_iter().collect(),
                };
                retained_to_send.push((filter.to_owned_compact(), delivery));
            }
            if let Some(record) = self.sessions.get_mut(&key) {
                if record.subscriptions.insert(filter, sub).is_none() {
                    record.subscription_weight += weight;
                }
            }
        }
        if let Some(conn) = self.connections.get_mut(&id) {
            let result =
                conn.session
                    .suback(now, subscribe.packet_id, codes, AckProperties::default());
            self.checked(now, id, result);
        }
        // After the SUBACK, the retained messages, with RETAIN set ([MQTT-3.3.1-8] in 3.1.1,
        // [MQTT-3.3.1-9] in 5.0): in bounded turns, as the session has room (see
        // `retained_delivery`).
        if !retained_to_send.is_empty() {
            for (filter, delivery) in retained_to_send {
                self.start_retained(now, key, filter, delivery);
            }
            self.retained_turn(now, key);
        }
    }

    pub(super) fn on_unsubscribe(
        &mut self,
        now: Instant,
        id: ConnectionId,
        unsubscribe: Unsubscribe,
    ) {
        let Some(key) = self.connections.get(&id).and_then(|c| c.key()) else {
            return;
        };
        let mut codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            if self.too_many_levels(filter.filter()) {
                // No subscription can have it ([MQTT-3.11.3-2]: an Unsubscribe Reason Code).
                codes.push(ReasonCode::TopicFilterInvalid);
                continue;
            }
            let existed = self.sessions.get_mut(&key).is_some_and(|r| {
                let existed = r.subscriptions.remove(filter).is_some();
                if existed {
                    r.subscription_weight -= subscription_weight(filter);
                }
                existed
            });
            self.index.remove(key, filter);
            if existed {
                self.journal_subscription(key, filter, None);
            }
            self.stop_retained(key, Some(filter));
            codes.push(if existed {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        if let Some(conn) = self.connections.get_mut(&id) {
            let result =
                conn.session
                    .unsuback(now, unsubscribe.packet_id, codes, AckProperties::default());
            self.checked(now, id, result);
        }
    }
}

impl<H: BrokerHooks> Broker<H> {
    /// The SUBACK code for a filter that asks for what `BrokerConfig` made unavailable:
    /// shared subscriptions (0x9E), wildcards (0xA2), Subscription Identifiers (0xA1).
    fn unavailable_feature(
        &self,
        shared: bool,
        filter: &TopicFilter,
        has_subscription_id: bool,
    ) -> Option<ReasonCode> {
        if shared && !self.config.shared_subscriptions_available {
            Some(ReasonCode::SharedSubscriptionsNotSupported)
        } else if filter.has_wildcards() && !self.config.wildcard_subscriptions_available {
            Some(ReasonCode::WildcardSubscriptionsNotSupported)
        } else if has_subscription_id && !self.config.subscription_identifiers_available {
            Some(ReasonCode::SubscriptionIdentifiersNotSupported)
        } else {
            None
        }
    }
}
