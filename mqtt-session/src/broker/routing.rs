//! Routing and delivery: a PUBLISH goes to every matching subscription, live, queued for an
//! offline session, or re-routed within a shared subscription when its member cannot take it.

use alloc::vec::Vec;

use mqtt_streaming_proto::{QoS, ReasonCode, TopicName};

use super::backpressure::Owed;
use super::subscriptions::{Delivery, Matches, SessionKey};
use super::{Broker, BrokerHooks, ClientInfo, ConnectionId, Token};
use crate::error::CommandError;
use crate::message::Message;
use crate::server::{EncodedCopies, MessageCopy};
use crate::shared::inbound::InboundId;
use crate::time::Instant;
use crate::AbandonCause;

/// What routing a message works in, kept from one message to the next for its room (both
/// parts bound what they keep).
#[derive(Debug, Default)]
pub(super) struct RouteScratch {
    /// The subscriptions the message matches.
    matches: Matches,
    /// Its QoS 0 PUBLISHes shared by subscribers.
    encoded: EncodedCopies,
}

impl<H: BrokerHooks> Broker<H> {
    /// A PUBLISH from a client. QoS 1/2 ones are acknowledged once every connected subscriber
    /// has taken them; until then they are held back, and so are the publisher's later QoS
    /// 1/2 messages, in order (see `backpressure`).
    pub(super) fn on_message(
        &mut self,
        now: Instant,
        id: ConnectionId,
        publish: mqtt_streaming_proto::Publish,
        ack: Option<InboundId>,
    ) {
        self.stats.messages_in += 1;
        if self.too_many_levels(publish.topic.as_str()) {
            self.refuse_topic(now, id);
            return;
        }
        let Some(conn) = self.connections.get(&id) else {
            return;
        };
        let key = conn.key();
        // Copied once, here: the decoded message is a view into the read buffer, and the
        // retained store, offline queues, in-flight windows and held-back messages keep it
        // beyond this read. Every subscriber shares this copy (issue 10).
        let message = Message::from_publish(publish).to_owned_compact();
        if let (Some(key), Some(ack)) = (key, ack) {
            let qos = message.qos;
            if self.parked.contains_key(&key) {
                // Behind the publisher's earlier messages ([MQTT-4.6.0-6]).
                self.park(now, key, ack, qos, Err(message));
                return;
            }
            let (code, owed) = self.accept_message(now, Some(key), message, true);
            if !owed.is_empty() {
                self.park(now, key, ack, qos, Ok((code, owed)));
                return;
            }
            self.ack_message(now, id, ack, code);
            return;
        }
        let (code, _) = self.accept_message(now, key, message, false);
        if let Some(ack) = ack {
            self.ack_message(now, id, ack, code);
        }
    }

    /// Authorizes, retains and routes a client's message; returns the code to acknowledge it
    /// with and, with `hold`, the deliveries connected subscribers could not take yet.
    pub(super) fn accept_message(
        &mut self,
        now: Instant,
        publisher: Option<SessionKey>,
        message: Message,
        hold: bool,
    ) -> (ReasonCode, Vec<Owed>) {
        if is_sys_topic(message.topic.as_str()) {
            self.stats.dropped_sys_topic += 1;
            return (ReasonCode::NotAuthorized, Vec::new());
        }
        if message.properties.user_properties.len() > self.config.max_user_properties {
            // Each subscriber's copy keeps its own list: bounded per message (issue 10).
            self.stats.dropped_too_many_user_properties += 1;
            return (ReasonCode::QuotaExceeded, Vec::new());
        }
        // The publisher's names are borrowed, not cloned, for the hook (a clone per message
        // touched two reference counts, and promoted a unique buffer to a shared one).
        let record = publisher.and_then(|key| self.sessions.get(&key));
        let client = ClientInfo::new(
            record.map_or("", |r| r.client_id.as_str()),
            record.and_then(|r| r.username.as_ref()).map(|u| u.as_str()),
        );
        if !self.hooks.authorize_publish_from(&client, &message.topic) {
            self.stats.dropped_unauthorized += 1;
            return (ReasonCode::NotAuthorized, Vec::new());
        }
        if message.retain {
            self.retain(now, &message);
        }
        let (delivered, owed) = self.route_held(now, publisher, &message, hold);
        let code = if delivered == 0 {
            ReasonCode::NoMatchingSubscribers
        } else {
            ReasonCode::Success
        };
        (code, owed)
    }

    /// Acknowledges a message of connection `id` (MQTT 3.1.x clients get Success).
    pub(super) fn ack_message(
        &mut self,
        now: Instant,
        id: ConnectionId,
        ack: InboundId,
        code: ReasonCode,
    ) {
        if let Some(conn) = self.connections.get_mut(&id) {
            let code = if conn.session.version().is_v5() {
                code
            } else {
                ReasonCode::Success
            };
            let result = conn.session.ack(now, ack, code);
            self.checked(now, id, result);
        }
    }

    pub(super) fn retain(&mut self, now: Instant, message: &Message) {
        if self.too_many_levels(message.topic.as_str()) {
            self.stats.dropped_retained_too_deep += 1;
            return;
        }
        if self.retained.store(now, message).is_err() {
            self.stats.dropped_retained_full += 1;
            // A message it would have replaced is deleted.
            self.journal_retained(now, &message.topic, None);
        } else {
            let kept = (!message.payload.is_empty()).then_some(message);
            self.journal_retained(now, &message.topic, kept);
        }
    }

    /// Sends `message` to every matching subscription; returns how many sessions got it.
    pub(super) fn route(
        &mut self,
        now: Instant,
        publisher: Option<SessionKey>,
        message: &Message,
    ) -> usize {
        self.route_held(now, publisher, message, false).0
    }

    /// [`route`](Self::route); with `hold`, the QoS 1/2 deliveries that connected sessions
    /// cannot take yet come back instead of being dropped.
    ///
    /// Each subscriber's copy is described by reference ([`MessageCopy`]) and built into a
    /// message of its own only where it is kept; QoS 0 copies that are the same bytes share
    /// one encoding of the PUBLISH ([`EncodedCopies`]).
    pub(super) fn route_held(
        &mut self,
        now: Instant,
        publisher: Option<SessionKey>,
        message: &Message,
        hold: bool,
    ) -> (usize, Vec<Owed>) {
        // Taken out for the loop (a nested route, from a session drained meanwhile, gets
        // a fresh one).
        let RouteScratch {
            mut matches,
            mut encoded,
        } = core::mem::take(&mut self.route_scratch);
        self.index
            .matches_into(message.topic.as_str(), publisher, &mut matches);
        let n = matches.direct.len() + matches.shared.len();
        let mut owed = Vec::new();
        encoded.reset(n > 1);
        for (key, delivery) in &matches.direct {
            let copy = outgoing_copy(message, delivery, false);
            owed.extend(self.offer_copy(now, *key, &copy, Token::default(), hold, &mut encoded));
        }
        for (key, delivery, filter) in matches.shared.drain(..) {
            let token = Token {
                shared: Some(filter),
                ..Token::default()
            };
            let copy = outgoing_copy(message, &delivery, false);
            owed.extend(self.offer_copy(now, key, &copy, token, hold, &mut encoded));
        }
        encoded.reset(false);
        matches.clear();
        self.route_scratch = RouteScratch { matches, encoded };
        (n, owed)
    }

    /// Hands a message to one session: live, queued while offline, or dropped with a count.
    /// With `hold`, a QoS 1/2 message that a connected session cannot take yet (its queue or
    /// transmit buffer is full) comes back instead of being dropped, as owed to the session
    /// it waits for (`key`, or for a shared subscription the member it waits for).
    pub(super) fn offer(
        &mut self,
        now: Instant,
        key: SessionKey,
        message: Message,
        token: Token,
        hold: bool,
    ) -> Option<Owed> {
        let copy = MessageCopy::exact(&message);
        let mut encoded = EncodedCopies::default();
        self.offer_copy(now, key, &copy, token, hold, &mut encoded)
    }

    /// [`offer`](Self::offer) for a copy described by reference: built into a message only
    /// where it is kept (queued, in flight, held back, re-routed).
    fn offer_copy(
        &mut self,
        now: Instant,
        key: SessionKey,
        copy: &MessageCopy<'_>,
        token: Token,
        hold: bool,
        encoded: &mut EncodedCopies,
    ) -> Option<Owed> {
        if hold && token.shared.is_some() {
            return self.offer_shared(now, key, copy, token, encoded);
        }
        if !self.may_read(key, &copy.message.topic) {
            if token.shared.is_some() {
                // Passed over: another member of the group gets it.
                self.reroute_shared(now, key, copy.to_message(), token);
            } else {
                self.stats.deliveries_unauthorized += 1;
            }
            return None;
        }
        let live = hold
            && self
                .sessions
                .get(&key)
                .is_some_and(|r| r.connection.is_some());
        match self.try_deliver(now, key, copy, token, encoded) {
            Ok(()) => None,
            Err((error, token))
                if error.is_backpressure()
                    && live
                    && copy.qos > QoS::AtMostOnce
                    && token.shared.is_none() =>
            {
                Some(Owed::new(key, copy.to_message(), token))
            }
            Err((error, token)) => {
                if token.shared.is_some() {
                    self.on_rejected(now, key, &error, copy.to_message(), token);
                } else {
                    self.count_refusal(&error);
                }
                None
            }
        }
    }

    /// Whether session `key` may receive a message of `topic` ([`BrokerHooks::authorize_delivery`]; no
    /// work at all unless the hooks ask for it). Every delivery path asks this once per copy,
    /// before the copy is journaled or queued.
    #[inline]
    pub(super) fn may_read(&mut self, key: SessionKey, topic: &TopicName) -> bool {
        if !H::CHECKS_DELIVERY {
            return true;
        }
        let Some(record) = self.sessions.get(&key) else {
            return true;
        };
        let subscriber = ClientInfo::new(
            record.client_id.as_str(),
            record.username.as_ref().map(|u| u.as_str()),
        );
        self.hooks.authorize_delivery(&subscriber, topic)
    }

    /// [`offer`](Self::offer) up to a refusal, whose cause and token are handed back (the
    /// caller builds the message if it keeps it): re-routing tries the next member in a loop
    /// rather than by recursion.
    fn try_deliver(
        &mut self,
        now: Instant,
        key: SessionKey,
        copy: &MessageCopy<'_>,
        mut token: Token,
        encoded: &mut EncodedCopies,
    ) -> Result<(), (CommandError, Token)> {
        if self.journal.is_some() {
            // Recorded for a persistent session (no cost otherwise).
            let takes = self.sessions.get(&key).is_some_and(|r| {
                r.connection.is_some()
                    || (r.stored.is_some()
                        && (copy.qos > QoS::AtMostOnce || self.config.queue_qos0_offline))
            });
            if takes && copy.qos > QoS::AtMostOnce {
                self.journal_delivery(now, key, &copy.to_message(), &mut token);
            }
        }
        let Some(record) = self.sessions.get_mut(&key) else {
            return Ok(());
        };
        let result = match (record.connection, record.stored.as_mut()) {
            (Some(conn_id), _) => {
                let Some(conn) = self.connections.get_mut(&conn_id) else {
                    return Ok(());
                };
                let result = conn.session.publish_copy(now, copy, token, encoded);
                self.settle(now, conn_id);
                result
            }
            (None, Some(stored))
                if copy.qos > QoS::AtMostOnce || self.config.queue_qos0_offline =>
            {
                // Kept until the session resumes: an owned copy.
                stored
                    .enqueue(now, copy.to_message(), token)
                    .map_err(|refused| (refused.error, refused.token))
            }
            _ => {
                self.stats.dropped_qos0_offline += 1;
                return Ok(());
            }
        };
        match &result {
            Ok(()) => self.stats.messages_out += 1,
            Err((_, token)) => self.journal_done(Some(key), token),
        }
        result
    }

    /// Counts a delivery dropped for `error`.
    fn count_refusal(&mut self, error: &CommandError) {
        match error {
            CommandError::PacketTooLarge { .. } => self.stats.dropped_too_large += 1,
            _ => self.stats.dropped_queue_full += 1,
        }
    }

    /// A shared-subscription message held for its publisher: offered to `key`, then to the
    /// group's other members in round-robin order; members that may not read it are passed
    /// over; when every other member is connected and full, it comes back (to wait for the
    /// first of them). Otherwise a refusal by all is dropped and counted, as in
    /// [`reroute_shared`](Self::reroute_shared).
    fn offer_shared(
        &mut self,
        now: Instant,
        key: SessionKey,
        copy: &MessageCopy<'_>,
        token: Token,
        encoded: &mut EncodedCopies,
    ) -> Option<Owed> {
        let filter = token.shared.clone()?;
        let mut members = Vec::from([key]);
        members.extend(self.index.shared_rotation(&filter, key));
        let mut token = token;
        let mut all_full = true;
        let mut last_error = None;
        let mut readers_denied = false;
        // The first member that was offered it: the one it waits for.
        let mut tried = None;
        for (n, member) in members.into_iter().enumerate() {
            if !self.may_read(member, &copy.message.topic) {
                // Passed over: neither full nor taking it.
                readers_denied = true;
                continue;
            }
            if n > 0 {
                self.index.shared_served(&filter, member);
            }
            let Some(record) = self.sessions.get(&member) else {
                // Its session ended while the message waited.
                continue;
            };
            let live = record.connection.is_some();
            tried.get_or_insert(member);
            match self.try_deliver(now, member, copy, token, encoded) {
                Ok(()) => return None,
                Err((error, refused)) => {
                    all_full &= live && error.is_backpressure() && copy.qos > QoS::AtMostOnce;
                    token = refused;
                    last_error = Some(error);
                }
            }
        }
        let Some(wait_for) = tried else {
            if readers_denied {
                self.stats.deliveries_unauthorized += 1;
                return None;
            }
            // Every member's session ended while it waited: it waits for `key`, as before.
            return Some(Owed::new(key, copy.to_message(), token));
        };
        if all_full {
            return Some(Owed::new(wait_for, copy.to_message(), token));
        }
        match last_error {
            Some(CommandError::PacketTooLarge { .. }) => self.stats.dropped_too_large += 1,
            _ => self.stats.dropped_queue_full += 1,
        }
        None
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
    /// member leaving loses no QoS 1/2 message. The other members are tried in round-robin
    /// order, each once, in a loop (a group may have thousands of members, and each refusal
    /// must not cost a stack frame); members that may not read it
    /// ([`may_read`](Self::may_read)) are passed over; when every one refuses, the message is
    /// dropped and counted by the last refusal's cause.
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
        let members = self.index.shared_rotation(&filter, from);
        if members.is_empty() {
            if self.may_read(from, &message.topic) {
                self.stats.dropped_session_ended += 1;
            } else {
                // Its only member was passed over (`offer`).
                self.stats.deliveries_unauthorized += 1;
            }
            return;
        }
        let copy = MessageCopy::exact(&message);
        let mut encoded = EncodedCopies::default();
        let mut token = token;
        let mut last_error = None;
        for key in members {
            if !self.may_read(key, &message.topic) {
                continue;
            }
            self.index.shared_served(&filter, key);
            match self.try_deliver(now, key, &copy, token, &mut encoded) {
                Ok(()) => return,
                Err((error, refused)) => {
                    token = refused;
                    last_error = Some(error);
                }
            }
        }
        match last_error {
            // No member may read it.
            None if H::CHECKS_DELIVERY => self.stats.deliveries_unauthorized += 1,
            Some(CommandError::PacketTooLarge { .. }) => self.stats.dropped_too_large += 1,
            _ => self.stats.dropped_queue_full += 1,
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
    outgoing_copy(message, delivery, from_retained_store).to_message()
}

/// [`outgoing`], described by reference rather than built.
pub(super) fn outgoing_copy<'a>(
    message: &'a Message,
    delivery: &'a Delivery,
    from_retained_store: bool,
) -> MessageCopy<'a> {
    MessageCopy {
        message,
        qos: message.qos.min(delivery.qos),
        retain: if from_retained_store {
            true
        } else {
            delivery.retain_as_published && message.retain
        },
        subscription_ids: &delivery.subscription_ids,
    }
}

/// Whether `topic` is under `$SYS`, which only the broker itself publishes to: a client's
/// PUBLISH (or will) there is dropped, answered with 0x87 Not authorized in MQTT 5 (3.1.1
/// has no negative acknowledgement: acknowledged and dropped, as mosquitto does for both).
/// `$SYS` topics are the server's by convention ([MQTT-4.7.2-1] keeps them from wildcard
/// subscriptions for that reason), so a client must not be able to forge them.
pub(super) fn is_sys_topic(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}
