//! The retained messages a SUBSCRIBE asks for, sent in bounded turns.
//!
//! A filter can match any number of retained messages, and a subscriber's queue holds
//! `max_queued`. Sending them all at once would take as long as there are matches, with every
//! other client waiting, and drop whatever does not fit the queue. Instead each subscription
//! that asked for retained messages gets a [`RetainedCursor`] into the store; a turn sends at
//! most [`PER_TURN`] messages (and visits at most [`VISITS_PER_TURN`] nodes of the store), and
//! never more than the subscriber's session takes ([`ServerSession::publish_room`]). The next
//! turn comes when the session has room again (the client acknowledged a message, or its bytes
//! were transmitted): [`Broker::poll_timeout`] then asks for a [`Broker::handle_timeout`]
//! at once, which runs one turn for each session with room, so a subscriber with 100,000
//! retained messages shares the broker with everyone else.
//!
//! Each message is checked with [`BrokerHooks::authorize_delivery`] as it is sent (a message
//! the subscriber may not read is skipped and counted).
//!
//! A retained message stored after the SUBSCRIBE is not sent from the store: the subscription
//! already got it live. A session that goes offline keeps its cursors and continues after it
//! resumes; a new SUBSCRIBE to the same filter restarts its cursor; an UNSUBSCRIBE, a clean
//! start or the end of the session drops it.
//!
//! [`ServerSession::publish_room`]: crate::ServerSession::publish_room

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;

use mqtt_streaming_proto::TopicFilter;

use super::retained::{Budget, RetainedCursor};
use super::routing::outgoing;
use super::subscriptions::{Delivery, SessionKey};
use super::{Broker, BrokerHooks, ConnectionId, Token};
use crate::error::{CommandError, Rejected};
use crate::message::Message;
use crate::time::Instant;

/// Retained messages sent to one session in one turn, at most.
pub(super) const PER_TURN: usize = 256;
/// Nodes of the retained store visited for one session in one turn, at most.
pub(super) const VISITS_PER_TURN: usize = 4096;
/// Sessions served by one [`Broker::handle_timeout`], at most; the others stay due, served
/// round robin.
pub(super) const SESSIONS_PER_CALL: usize = 16;

/// One subscription's retained messages still to send.
#[derive(Debug)]
struct Pending {
    cursor: RetainedCursor,
    delivery: Delivery,
    /// Taken from the store, not yet taken by the session (it was full).
    taken: VecDeque<Message>,
}

/// The retained deliveries of every session.
#[derive(Debug, Default)]
pub(super) struct RetainedDeliveries {
    pending: BTreeMap<SessionKey, VecDeque<Pending>>,
    /// Sessions whose session may have room: a turn is due.
    ready: BTreeSet<SessionKey>,
    /// When the first of them became ready.
    due: Option<Instant>,
    /// The session served last, for round robin.
    last_served: SessionKey,
}

impl RetainedDeliveries {
    /// When a turn is due.
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }

    fn set_ready(&mut self, now: Instant, key: SessionKey) {
        if self.pending.contains_key(&key) {
            self.ready.insert(key);
            self.due.get_or_insert(now);
        }
    }
}

impl<H: BrokerHooks> Broker<H> {
    /// Starts sending the retained messages matching `filter` to session `key` (after its
    /// SUBACK), replacing an earlier cursor of the same filter. The first turn runs with
    /// [`retained_turn`](Self::retained_turn), once for all the filters of a SUBSCRIBE.
    pub(super) fn start_retained(
        &mut self,
        now: Instant,
        key: SessionKey,
        filter: TopicFilter,
        delivery: Delivery,
    ) {
        let cursor = self.retained.cursor(filter);
        let list = self.retained_deliveries.pending.entry(key).or_default();
        list.retain(|p| p.cursor.filter() != cursor.filter());
        list.push_back(Pending {
            cursor,
            delivery,
            taken: VecDeque::new(),
        });
        self.retained_deliveries.set_ready(now, key);
    }

    /// Stops sending retained messages for `filter` (unsubscribed), or for every filter.
    pub(super) fn stop_retained(&mut self, key: SessionKey, filter: Option<&TopicFilter>) {
        let deliveries = &mut self.retained_deliveries;
        if let Some(list) = deliveries.pending.get_mut(&key) {
            match filter {
                Some(filter) => list.retain(|p| p.cursor.filter() != filter),
                None => list.clear(),
            }
            if list.is_empty() {
                deliveries.pending.remove(&key);
                deliveries.ready.remove(&key);
            }
        }
    }

    /// Connection `id`'s session may have room again (a message was acknowledged or its bytes
    /// were transmitted, or it resumed): a turn is due if it has retained messages to get.
    pub(super) fn retained_room(&mut self, now: Instant, id: ConnectionId) {
        if self.retained_deliveries.pending.is_empty() {
            return;
        }
        if let Some(key) = self.connections.get(&id).and_then(|c| c.key()) {
            self.retained_deliveries.set_ready(now, key);
        }
    }

    /// One turn for each of up to [`SESSIONS_PER_CALL`] sessions that may have room, round
    /// robin (from `handle_timeout`); the rest stay due.
    pub(super) fn retained_turns(&mut self, now: Instant) {
        let deliveries = &mut self.retained_deliveries;
        deliveries.due = None;
        // Each session once per call: the ones after the last served, then from the start.
        let after = deliveries.last_served.saturating_add(1);
        let keys: Vec<SessionKey> = deliveries
            .ready
            .range(after..)
            .chain(deliveries.ready.range(..after))
            .take(SESSIONS_PER_CALL)
            .copied()
            .collect();
        if let Some(&last) = keys.last() {
            deliveries.last_served = last;
        }
        for key in keys {
            self.retained_turn(now, key);
        }
        if !self.retained_deliveries.ready.is_empty() {
            self.retained_deliveries.due = Some(now);
        }
    }

    /// Sends session `key` up to [`PER_TURN`] of its pending retained messages, as many as
    /// its session takes. Stays ready only if it stopped for the turn's bound, not for room.
    pub(super) fn retained_turn(&mut self, now: Instant, key: SessionKey) {
        self.retained_deliveries.ready.remove(&key);
        let Some(conn_id) = self.sessions.get(&key).and_then(|r| r.connection) else {
            // Offline: continued when it resumes.
            return;
        };
        let Some(mut list) = self.retained_deliveries.pending.remove(&key) else {
            return;
        };
        let mut sent = 0usize;
        let mut visits = 0usize;
        let mut full = false;
        let mut batch = Vec::new();
        'turn: while let Some(pending) = list.front_mut() {
            let Some(conn) = self.connections.get_mut(&conn_id) else {
                break;
            };
            if pending.taken.is_empty() {
                let room = conn.session.publish_room().min(PER_TURN - sent);
                if room == 0 {
                    full = true;
                    break;
                }
                let budget = Budget {
                    messages: room,
                    visits: VISITS_PER_TURN - visits,
                };
                visits += self
                    .retained
                    .walk(now, &mut pending.cursor, budget, &mut batch);
                pending.taken.extend(batch.drain(..));
            }
            while let Some(message) = pending.taken.pop_front() {
                if !self.connections.contains_key(&conn_id) {
                    break 'turn;
                }
                if !self.may_read(key, &message.topic) {
                    self.stats.deliveries_unauthorized += 1;
                    continue;
                }
                let out = outgoing(&message, &pending.delivery, true);
                let mut token = Token::default();
                self.journal_delivery(now, key, &out, &mut token);
                let Some(conn) = self.connections.get_mut(&conn_id) else {
                    break 'turn;
                };
                let result = conn.session.publish(now, out, token);
                if let Err(refused) = &result {
                    self.journal_done(Some(key), &refused.token);
                }
                match result {
                    Ok(()) => {
                        self.stats.messages_out += 1;
                        sent += 1;
                    }
                    Err(Rejected { error, .. }) if error.is_backpressure() => {
                        pending.taken.push_front(message);
                        full = true;
                        break 'turn;
                    }
                    Err(Rejected {
                        error: CommandError::PacketTooLarge { .. },
                        ..
                    }) => self.stats.dropped_too_large += 1,
                    Err(_) => {
                        // Closed: the rest waits for the session to resume.
                        pending.taken.push_front(message);
                        full = true;
                        break 'turn;
                    }
                }
            }
            if pending.cursor.is_done() && pending.taken.is_empty() {
                list.pop_front();
            }
            if sent >= PER_TURN || visits >= VISITS_PER_TURN {
                break;
            }
        }
        if !list.is_empty() {
            self.retained_deliveries.pending.insert(key, list);
            if !full {
                self.retained_deliveries.set_ready(now, key);
            }
        }
        self.settle(now, conn_id);
    }
}
