//! The end of connections and sessions: closes, wills (with their delay), session expiry, and
//! what an ending session's unfinished messages become.

use alloc::boxed::Box;
use core::time::Duration;

use mqtt_streaming_proto::{
    ConnAckProperties, Disconnect, MqttString, PublishProperties, QoS, ReasonCode, Will,
};

use super::subscriptions::SessionKey;
use super::{
    client_id_of, Broker, BrokerEvent, BrokerHooks, ClientInfo, ConnectionId, RecordTimer,
};
use crate::error::{CloseReason, CommandError};
use crate::message::Message;
use crate::server::{ServerState, SessionExpiry};
use crate::time::Instant;

impl<H: BrokerHooks> Broker<H> {
    /// Checks the outcome of a command the broker gave connection `id`'s session; every such
    /// command goes through here, none is ignored, and a connection whose session refused one
    /// is closed rather than left waiting for an answer that will not come.
    ///
    /// - A closed session refuses every command with `NotConnected`: no error (the connection
    ///   is going anyway).
    /// - An answer larger than the client's Maximum Packet Size even without its properties
    ///   (a SUBACK for very many filters): the client's limit leaves no way to answer; the
    ///   connection closes.
    /// - Anything else is a bug in the broker, which only gives commands it has checked: debug
    ///   builds panic, release builds count it in
    ///   [`session_errors`](super::BrokerStats::session_errors) and close the connection.
    pub(super) fn checked(
        &mut self,
        now: Instant,
        id: ConnectionId,
        result: Result<(), CommandError>,
    ) {
        let Err(error) = result else {
            return;
        };
        let Some(conn) = self.connections.get_mut(&id) else {
            return;
        };
        if conn.session.state() == ServerState::Closed {
            return;
        }
        if !matches!(error, CommandError::PacketTooLarge { .. }) {
            debug_assert!(
                false,
                "the broker gave a session a command it refused: {error:?}"
            );
            self.stats.session_errors += 1;
        }
        let code = ReasonCode::UnspecifiedError;
        let closed = if conn.session.state() == ServerState::Deciding {
            conn.session.reject(now, code, ConnAckProperties::default())
        } else {
            conn.session.disconnect(now, Disconnect::new(code))
        };
        // Both always close a session that is not closed yet.
        debug_assert!(closed.is_ok(), "{closed:?}");
        self.settle(now, id);
    }

    pub(super) fn on_closed(
        &mut self,
        now: Instant,
        id: ConnectionId,
        reason: CloseReason,
        will: Option<Will>,
    ) {
        let Some(conn) = self.connections.get_mut(&id) else {
            return;
        };
        // The connection stays until its last bytes (a CONNACK refusal, a DISCONNECT) are
        // transmitted; `refresh` removes it then.
        conn.closed = true;
        if let Some(deadline) = conn.deadline() {
            conn.set_deadline(None);
            self.connection_timers.remove(&(deadline, id));
        }
        let client_id = client_id_of(&self.sessions, conn);
        let expiry = conn.session.session_expiry();
        let state = conn.session.detach();
        let key = conn.key();
        self.events.push_back(BrokerEvent::Close {
            connection: id,
            client_id,
            reason,
        });
        let Some(key) = key else {
            return;
        };
        let Some(record) = self.sessions.get_mut(&key) else {
            return;
        };
        if record.connection == Some(id) {
            record.connection = None;
        } else {
            // Taken over: the new connection already owns the session.
            return;
        }
        record.stored = state.map(Box::new);
        let client_id = record.client_id.clone();
        // Messages owed to it now go to its offline queue (or are dropped, when it ends).
        self.wake_waiters(key);
        if let Some(will) = will {
            let delay = will.properties.will_delay_interval.unwrap_or(0);
            if delay == 0 {
                self.publish_will(now, key, &client_id, will);
            } else {
                let due = now + Duration::from_secs(u64::from(delay));
                if let Some(record) = self.sessions.get_mut(&key) {
                    record.pending_will = Some(Box::new((will, due)));
                }
                self.record_timers.insert((due, key, RecordTimer::Will));
            }
        }
        match expiry {
            SessionExpiry::AtClose => self.end_session(now, key),
            SessionExpiry::After(d) => {
                let at = now + d;
                if let Some(record) = self.sessions.get_mut(&key) {
                    record.expires_at = Some(at);
                }
                self.record_timers.insert((at, key, RecordTimer::Expiry));
            }
            SessionExpiry::Never => {}
        }
        if expiry != SessionExpiry::AtClose {
            self.journal_closed(now, key, expiry);
        }
    }

    /// Publishes a will as its client would have: authorized like a PUBLISH of that client
    /// (a will must not reach a topic its client may not publish to), retained when it says so.
    pub(super) fn publish_will(
        &mut self,
        now: Instant,
        key: SessionKey,
        client_id: &MqttString,
        will: Will,
    ) {
        if super::routing::is_sys_topic(will.topic.as_str()) {
            self.stats.dropped_sys_topic += 1;
            return;
        }
        let username = self
            .sessions
            .get(&key)
            .and_then(|r| r.username.as_deref().cloned());
        let client = ClientInfo::new(client_id.as_str(), username.as_ref().map(|u| u.as_str()));
        if !self.hooks.authorize_publish_from(&client, &will.topic) {
            self.stats.dropped_unauthorized += 1;
            return;
        }
        let message = Message {
            topic: will.topic,
            qos: will.qos,
            retain: will.retain,
            payload: will.payload,
            properties: PublishProperties {
                payload_format: will.properties.payload_format,
                message_expiry_interval: will.properties.message_expiry_interval,
                content_type: will.properties.content_type,
                response_topic: will.properties.response_topic,
                correlation_data: will.properties.correlation_data,
                user_properties: will.properties.user_properties,
                ..PublishProperties::default()
            },
        };
        self.stats.wills_published += 1;
        if message.retain {
            self.retain(now, &message);
        }
        self.route(now, Some(key), &message);
    }

    pub(super) fn fire_will(&mut self, now: Instant, key: SessionKey, due: Instant) {
        let Some(record) = self.sessions.get_mut(&key) else {
            return;
        };
        match record.pending_will.take() {
            Some(pending) if pending.1 == due => {
                let client_id = record.client_id.clone();
                self.publish_will(now, key, &client_id, pending.0);
                self.journal_header(key);
            }
            other => record.pending_will = other,
        }
    }

    pub(super) fn expire(&mut self, now: Instant, key: SessionKey, at: Instant) {
        let due = self
            .sessions
            .get(&key)
            .is_some_and(|r| r.connection.is_none() && r.expires_at == Some(at));
        if due {
            self.end_session(now, key);
        }
    }

    /// The session ends: a pending will goes out now ([MQTT-3.1.2-8] in 5.0: at the earlier
    /// of will delay and session end), subscriptions go, shared messages it held move to
    /// other members.
    pub(super) fn end_session(&mut self, now: Instant, key: SessionKey) {
        let Some(mut record) = self.sessions.remove(&key) else {
            return;
        };
        self.journal_ended(key, &record.client_id);
        self.drop_parked(key);
        self.wake_waiters(key);
        self.by_client_id.remove(&record.client_id);
        if let Some(pending) = record.pending_will.take() {
            let (will, due) = *pending;
            self.record_timers.remove(&(due, key, RecordTimer::Will));
            self.publish_will(now, key, &record.client_id, will);
        }
        if let Some(at) = record.expires_at.take() {
            self.record_timers.remove(&(at, key, RecordTimer::Expiry));
        }
        for filter in record.subscriptions.keys() {
            self.index.remove(key, filter);
        }
        self.stop_retained(key, None);
        if let Some(state) = record.stored.take() {
            let mut state = state;
            for (token, message) in state.take_in_flight() {
                // An interrupted shared QoS 2 delivery is not given to another subscriber
                // ([MQTT-4.8.2-5] in 5.0); an interrupted QoS 1 one should be (section 4.8.2).
                if token.shared.is_some() && message.qos == QoS::AtLeastOnce {
                    self.reroute_shared(now, key, message, token);
                } else if message.qos > QoS::AtMostOnce {
                    self.stats.dropped_session_ended += 1;
                }
            }
            for (token, message) in state.into_abandoned() {
                if token.shared.is_some() {
                    self.reroute_shared(now, key, message, token);
                } else if message.qos > QoS::AtMostOnce {
                    self.stats.dropped_session_ended += 1;
                }
            }
        }
    }
}
