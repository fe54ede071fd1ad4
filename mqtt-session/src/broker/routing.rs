//! Routing and delivery: a PUBLISH goes to every matching subscription, live, queued for an
//! offline session, or re-routed within a shared subscription when its member cannot take it.

use mqtt_proto::{QoS, ReasonCode};

use super::subscriptions::{Delivery, SessionKey};
use super::{Broker, BrokerHooks, ConnectionId, Token};
use crate::error::{CommandError, Rejected};
use crate::message::Message;
use crate::shared::flows::AbandonCause;
use crate::shared::inbound::InboundId;
use crate::time::Instant;

impl<H: BrokerHooks> Broker<H> {
    pub(super) fn on_message(
        &mut self,
        now: Instant,
        id: ConnectionId,
        publish: mqtt_proto::Publish,
        ack: Option<InboundId>,
    ) {
        self.stats.messages_in += 1;
        let Some(conn) = self.connections.get(&id) else {
            return;
        };
        let key = conn.key;
        let client_id = conn.session.client_id().clone();
        let v5 = conn.session.version().is_v5();
        let message = Message::from_publish(publish);
        let code = if is_sys_topic(message.topic.as_str()) {
            self.stats.dropped_sys_topic += 1;
            ReasonCode::NotAuthorized
        } else if !self
            .hooks
            .authorize_publish(client_id.as_str(), &message.topic)
        {
            self.stats.dropped_unauthorized += 1;
            ReasonCode::NotAuthorized
        } else {
            if message.retain {
                self.retain(now, &message);
            }
            let delivered = self.route(now, key, message);
            if delivered == 0 && v5 {
                ReasonCode::NoMatchingSubscribers
            } else {
                ReasonCode::Success
            }
        };
        if let (Some(ack), Some(conn)) = (ack, self.connections.get_mut(&id)) {
            let code = if v5 { code } else { ReasonCode::Success };
            let result = conn.session.ack(now, ack, code);
            self.checked(now, id, result);
        }
    }

    pub(super) fn retain(&mut self, now: Instant, message: &Message) {
        if self.retained.store(now, message).is_err() {
            self.stats.dropped_retained_full += 1;
        }
    }

    /// Sends `message` to every matching subscription; returns how many sessions got it.
    pub(super) fn route(
        &mut self,
        now: Instant,
        publisher: Option<SessionKey>,
        message: Message,
    ) -> usize {
        let matches = self.index.matches(message.topic.as_str(), publisher);
        let n = matches.direct.len() + matches.shared.len();
        for (key, delivery) in matches.direct {
            self.deliver(
                now,
                key,
                outgoing(&message, &delivery, false),
                Token::default(),
            );
        }
        for (key, delivery, filter) in matches.shared {
            let token = Token {
                shared: Some(filter),
            };
            self.deliver(now, key, outgoing(&message, &delivery, false), token);
        }
        n
    }

    /// Hands a message to one session: live, queued while offline, or dropped with a count.
    pub(super) fn deliver(
        &mut self,
        now: Instant,
        key: SessionKey,
        message: Message,
        token: Token,
    ) {
        let Some(record) = self.sessions.get_mut(&key) else {
            return;
        };
        let result = match (record.connection, record.stored.as_mut()) {
            (Some(conn_id), _) => {
                let Some(conn) = self.connections.get_mut(&conn_id) else {
                    return;
                };
                let result = conn.session.publish(now, message, token);
                self.settle(now, conn_id);
                result
            }
            (None, Some(stored))
                if message.qos > QoS::AtMostOnce || self.config.queue_qos0_offline =>
            {
                stored.enqueue(now, message, token)
            }
            _ => {
                self.stats.dropped_qos0_offline += 1;
                return;
            }
        };
        match result {
            Ok(()) => self.stats.messages_out += 1,
            Err(Rejected {
                error,
                command,
                token,
            }) => self.on_rejected(now, key, &error, command, token),
        }
    }

    /// A session could not take a message: a shared one goes to another member, anything else
    /// is dropped and counted.
    pub(super) fn on_rejected(
        &mut self,
        now: Instant,
        key: SessionKey,
        error: &CommandError,
        message: Message,
        token: Token,
    ) {
        if token.shared.is_some() {
            self.reroute_shared(now, key, message, token);
            return;
        }
        match error {
            CommandError::PacketTooLarge { .. } => self.stats.dropped_too_large += 1,
            _ => self.stats.dropped_queue_full += 1,
        }
    }

    pub(super) fn on_abandoned(
        &mut self,
        now: Instant,
        key: Option<SessionKey>,
        token: Token,
        cause: &AbandonCause,
        message: Option<Message>,
    ) {
        match cause {
            AbandonCause::Expired => {
                self.stats.dropped_expired += 1;
                return;
            }
            AbandonCause::Refused(error) => {
                if let (Some(key), Some(message)) = (key, message) {
                    self.on_rejected(now, key, error, message, token);
                }
                return;
            }
            _ => {}
        }
        match (key, message) {
            (Some(key), Some(message)) if token.shared.is_some() => {
                self.reroute_shared(now, key, message, token);
            }
            _ => self.stats.dropped_session_ended += 1,
        }
    }

    /// A shared-subscription message its member could not take goes to another member, so a
    /// member leaving loses no QoS 1/2 message.
    pub(super) fn reroute_shared(
        &mut self,
        now: Instant,
        from: SessionKey,
        message: Message,
        token: Token,
    ) {
        let Some(filter) = token.shared.clone() else {
            return;
        };
        if let Some((key, _)) = self.index.shared_member(&filter, from) {
            // A member that refuses it too passes it on in turn; each pass moves round robin
            // and excludes the refusing member, but a group whose every member refuses must
            // not bounce it forever: `hops` bounds the passes by the group size.
            if self.reroute_hops >= self.index.shared_group_len(&filter) {
                self.reroute_hops = 0;
                self.stats.dropped_queue_full += 1;
                return;
            }
            self.reroute_hops += 1;
            self.deliver(now, key, message, token);
            self.reroute_hops = 0;
        } else {
            self.stats.dropped_session_ended += 1;
        }
    }
}

/// The PUBLISH a subscriber gets: QoS downgraded to its subscription's ([MQTT-3.8.4-8] in
/// 5.0), RETAIN per Retain As Published ([MQTT-3.3.1-12], [MQTT-3.3.1-13]) or set for
/// retained messages sent at subscribe, its subscription identifiers, and every other property
/// passed through unchanged (user properties in order, [MQTT-3.3.2-17]).
pub(super) fn outgoing(
    message: &Message,
    delivery: &Delivery,
    from_retained_store: bool,
) -> Message {
    let mut out = message.clone();
    out.qos = message.qos.min(delivery.qos);
    out.retain = if from_retained_store {
        true
    } else {
        delivery.retain_as_published && message.retain
    };
    out.properties.topic_alias = None;
    out.properties.subscription_identifiers = delivery.subscription_ids.clone();
    out
}

/// Whether `topic` is under `$SYS`, which only the broker itself publishes to: a client's
/// PUBLISH (or will) there is dropped, answered with 0x87 Not authorized in MQTT 5 (3.1.1
/// has no negative acknowledgement: acknowledged and dropped, as mosquitto does for both).
/// `$SYS` topics are the server's by convention ([MQTT-4.7.2-1] keeps them from wildcard
/// subscriptions for that reason), so a client must not be able to forge them.
pub(super) fn is_sys_topic(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}
