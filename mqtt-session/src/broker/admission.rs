//! Admission: CONNECT, enhanced authentication, refusals, takeover of a client's earlier
//! connection and the resumption or discarding of its stored session.

use alloc::boxed::Box;

use mqtt_streaming_proto::{
    Auth, AuthProperties, ConnAckProperties, Connect, Disconnect, MqttString, ReasonCode,
};

use super::small_map::SmallMap;
use super::{
    client_id_of, AuthDecision, Broker, BrokerEvent, BrokerHooks, ConnectionId, RecordTimer,
    SessionRecord,
};
use crate::server::ServerState;
use crate::time::Instant;

impl<H: BrokerHooks> Broker<H> {
    pub(super) fn on_connect(&mut self, now: Instant, id: ConnectionId, connect: Connect) {
        if self.connections.get(&id).is_some_and(|c| c.refusing) {
            // Opened beyond `max_connections`: tell the client why it cannot come in (5.0
            // section 3.2.2.2, 0x97 Quota exceeded; 3.1.1 return code 3 Server unavailable).
            self.refuse(now, id, ReasonCode::QuotaExceeded);
            return;
        }
        if let Some(will) = &connect.will {
            if self.too_many_levels(will.topic.as_str()) {
                return self.refuse(now, id, ReasonCode::TopicNameInvalid);
            }
            if will.properties.user_properties.len() > self.config.max_user_properties {
                self.stats.dropped_too_many_user_properties += 1;
                return self.refuse(now, id, ReasonCode::QuotaExceeded);
            }
        }
        if let Some(max) = self.config.server_keep_alive {
            // MQTT 3.1.x has no Server Keep Alive to tell the client: one asking for more
            // than the limit is refused with return code 2 Identifier rejected (mosquitto's
            // `max_keepalive`). MQTT 5 clients are told the limit in CONNACK instead.
            if !connect.protocol.is_v5() && max > 0 && connect.keep_alive > max {
                return self.refuse(now, id, ReasonCode::ClientIdentifierNotValid);
            }
        }
        match self.hooks.authenticate(&connect) {
            AuthDecision::Accept => self.admit(now, id, &connect),
            AuthDecision::Reject(code) => self.refuse(now, id, code),
            AuthDecision::Continue(properties) => {
                if let Some(conn) = self.connections.get_mut(&id) {
                    // Kept while the exchange goes on: an owned copy, not a view into the
                    // read buffer.
                    conn.pending_connect = Some(Box::new(connect.to_owned_compact()));
                }
                self.challenge(now, id, properties);
            }
        }
    }

    pub(super) fn on_auth(&mut self, now: Instant, id: ConnectionId, auth: &Auth) {
        let Some(conn) = self.connections.get(&id) else {
            return;
        };
        let client_id = client_id_of(&self.sessions, conn);
        let decision = self.hooks.continue_authentication(client_id.as_str(), auth);
        let connected = conn.session.state() == ServerState::Connected;
        match decision {
            AuthDecision::Continue(properties) => self.challenge(now, id, properties),
            AuthDecision::Reject(code) if connected => {
                // A refused re-authentication: DISCONNECT and close ([MQTT-4.12.1-2] in 5.0).
                // The hook's code is a CONNACK one (0x86, 0x8A...): the session sends the
                // nearest a DISCONNECT may carry (0x87 Not authorized for those).
                if let Some(conn) = self.connections.get_mut(&id) {
                    let result = conn.session.disconnect(now, Disconnect::new(code));
                    self.checked(now, id, result);
                }
            }
            AuthDecision::Reject(code) => self.refuse(now, id, code),
            AuthDecision::Accept if connected => {
                // Re-authentication succeeded.
                let method = auth.properties.authentication_method.clone();
                if let Some(conn) = self.connections.get_mut(&id) {
                    let reply = Auth {
                        reason_code: ReasonCode::Success,
                        properties: AuthProperties {
                            authentication_method: method,
                            ..AuthProperties::default()
                        },
                    };
                    let result = conn.session.auth(now, reply);
                    self.checked(now, id, result);
                }
            }
            AuthDecision::Accept => {
                let pending = self
                    .connections
                    .get_mut(&id)
                    .and_then(|c| c.pending_connect.take());
                if let Some(connect) = pending {
                    self.admit(now, id, &connect);
                }
            }
        }
    }

    pub(super) fn challenge(&mut self, now: Instant, id: ConnectionId, properties: AuthProperties) {
        if let Some(conn) = self.connections.get_mut(&id) {
            let auth = Auth {
                reason_code: ReasonCode::ContinueAuthentication,
                properties,
            };
            if conn.session.auth(now, auth).is_err() {
                // The client's method cannot carry the exchange ([MQTT-4.12.0-1]): refuse the
                // CONNECT, or end a re-authentication ([MQTT-4.12.1-2]).
                let code = ReasonCode::BadAuthenticationMethod;
                let result = if conn.session.state() == ServerState::Deciding {
                    conn.session.reject(now, code, ConnAckProperties::default())
                } else {
                    conn.session.disconnect(now, Disconnect::new(code))
                };
                self.checked(now, id, result);
            }
        }
    }

    pub(super) fn refuse(&mut self, now: Instant, id: ConnectionId, code: ReasonCode) {
        if let Some(conn) = self.connections.get_mut(&id) {
            let code = if code.is_error()
                && code.is_valid_for(mqtt_streaming_proto::PacketType::ConnAck)
            {
                code
            } else {
                ReasonCode::NotAuthorized
            };
            let result = conn.session.reject(now, code, ConnAckProperties::default());
            self.checked(now, id, result);
        }
    }

    /// Accepts a CONNECT: finds or creates the client's session record, takes over an
    /// existing connection of the same client ([MQTT-3.1.4-3]), resumes or discards the stored
    /// session ([MQTT-3.1.2-4], [MQTT-3.1.2-5]) and answers with CONNACK.
    pub(super) fn admit(&mut self, now: Instant, id: ConnectionId, connect: &Connect) {
        let mut properties = ConnAckProperties::default();
        if let Some(max) = self.config.server_keep_alive {
            // [MQTT-3.2.2-21]: the client uses ours; told when its own is none or longer.
            if connect.keep_alive == 0 || connect.keep_alive > max {
                properties.server_keep_alive = Some(max);
            }
        }
        if !self.config.shared_subscriptions_available {
            properties.shared_subscription_available = Some(false);
        }
        if !self.config.wildcard_subscriptions_available {
            properties.wildcard_subscription_available = Some(false);
        }
        if !self.config.subscription_identifiers_available {
            properties.subscription_identifiers_available = Some(false);
        }
        let client_id = if connect.client_id.is_empty() {
            // [MQTT-3.1.3-6] (3.1.1) / [MQTT-3.2.2-16] (5.0): a unique identifier of our own.
            // Given to the session in both versions: MQTT 5 clients are told it in CONNACK,
            // for 3.1.1 ones it is the session's name for them (and the hooks').
            let assigned = self.assign_client_id();
            properties.assigned_client_identifier = Some(assigned.clone());
            assigned
        } else {
            // An owned copy: the decoded one points into the transport's read buffer and
            // would keep all of it alive as long as the session lives. The session made one
            // when the CONNECT arrived: shared, not copied again.
            match self
                .connections
                .get(&id)
                .map(|conn| conn.session.client_id())
            {
                Some(own) if *own == connect.client_id => own.clone(),
                _ => connect.client_id.to_owned_compact(),
            }
        };
        // Takeover: the old connection goes with 0x8E ([MQTT-3.1.4-3]); its session detaches
        // into the record (or ends, if it was to end with its connection).
        let previous = self
            .by_client_id
            .get(&client_id)
            .and_then(|key| self.sessions.get(key))
            .and_then(|r| r.connection);
        if let Some(old) = previous.filter(|old| *old != id) {
            if let Some(conn) = self.connections.get_mut(&old) {
                let result = conn
                    .session
                    .disconnect(now, Disconnect::new(ReasonCode::SessionTakenOver));
                self.checked(now, old, result);
            }
            // At once, not queued: the old connection's session state must be back in the
            // record before the new connection takes it.
            self.drain(now, old);
        }
        let key = match self.by_client_id.get(&client_id) {
            Some(&key) => key,
            None => {
                let key = self.next_session;
                self.next_session += 1;
                self.by_client_id.insert(client_id.clone(), key);
                self.sessions.insert(
                    key,
                    Box::new(SessionRecord {
                        client_id: client_id.clone(),
                        username: None,
                        connection: None,
                        stored: None,
                        subscriptions: SmallMap::default(),
                        subscription_weight: 0,
                        expires_at: None,
                        pending_will: None,
                    }),
                );
                key
            }
        };
        let clean_start = connect.clean_start;
        let Some(record) = self.sessions.get_mut(&key) else {
            return;
        };
        // A reconnect within the will delay cancels the will ([MQTT-3.1.3-9] in 5.0).
        if let Some(pending) = record.pending_will.take() {
            self.record_timers
                .remove(&(pending.1, key, RecordTimer::Will));
        }
        if let Some(at) = record.expires_at.take() {
            self.record_timers.remove(&(at, key, RecordTimer::Expiry));
        }
        record.username = connect
            .username
            .as_ref()
            .map(|name| Box::new(name.to_owned_compact()));
        let stored = record.stored.take().map(|state| *state);
        let session_present = stored.is_some() && !clean_start;
        if clean_start {
            // Held-back messages of the discarded session are never acknowledged, and what
            // other publishers' held-back messages owed it is dropped with it (once its
            // subscriptions are gone: those publishers' later messages are routed then).
            self.drop_parked(key);
            let Some(record) = self.sessions.get_mut(&key) else {
                return;
            };
            record.subscription_weight = 0;
            for (filter, _) in record.subscriptions.take_all() {
                self.index.remove(key, &filter);
            }
            self.stop_retained(key, None);
            self.forget_subscriber(now, key);
        }
        let Some(conn) = self.connections.get_mut(&id) else {
            return;
        };
        if let Err(mut rejected) = conn.session.accept(now, properties, stored) {
            // The stored session comes back: it is not lost with the connection.
            if let Some(record) = self.sessions.get_mut(&key) {
                record.stored = rejected.session.take().map(Box::new);
            }
            self.checked(now, id, Err(rejected.error));
            return;
        }
        conn.set_key(key);
        // The record keeps the same string: the session's box goes (8 bytes instead of 32 in
        // every connection).
        conn.session.release_client_id();
        let version = conn.session.version();
        let expiry = conn.session.session_expiry();
        if let Some(record) = self.sessions.get_mut(&key) {
            record.connection = Some(id);
        }
        self.journal_admitted(key, clean_start, expiry, connect.will.as_ref());
        // Retained messages still owed from before go on.
        self.retained_room(now, id);
        self.events.push_back(BrokerEvent::Connected {
            connection: id,
            client_id,
            version,
            session_present,
        });
    }

    pub(super) fn assign_client_id(&mut self) -> MqttString {
        loop {
            let candidate = alloc::format!("auto-{:016x}", self.next_assigned_id);
            self.next_assigned_id += 1;
            if let Ok(id) = MqttString::new(&candidate) {
                if !self.by_client_id.contains_key(&id) {
                    return id;
                }
            }
        }
    }
}
