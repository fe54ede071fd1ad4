//! Back-pressure on publishers: a QoS 1/2 message a connected subscriber cannot take yet
//! (its queue or transmit buffer is full) is kept with the subscribers still owed, and its
//! publisher's acknowledgement withheld, until they take it; publishers waiting for a
//! subscriber go on in turn as it makes room; a subscriber that makes no progress for
//! `stalled_subscriber_timeout` is disconnected (see [`BrokerConfig`](super::BrokerConfig)).

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use mqtt_streaming_proto::{PacketId, QoS, ReasonCode};

use super::subscriptions::SessionKey;
use super::{Broker, BrokerHooks, ConnectionId, RecordTimer, Token};
use crate::message::Message;
use crate::shared::inbound::InboundId;
use crate::time::Instant;

/// A QoS 1/2 message of one publisher whose acknowledgement is withheld.
#[derive(Debug)]
pub(super) struct Parked {
    state: ParkedState,
    /// The acknowledgement to send once every subscriber has it.
    ack: InboundId,
    /// The message's QoS as published (its copies may have less).
    qos: QoS,
    /// The code to acknowledge with (known once routed).
    code: ReasonCode,
    /// Bytes counted in `parked_bytes`.
    bytes: usize,
}

#[derive(Debug)]
enum ParkedState {
    /// Waits behind an earlier message of the same publisher; routed when its turn comes
    /// (as if read then).
    Unrouted(Box<Message>),
    /// Routed: these subscribers could not take it yet.
    Owed(Vec<Owed>),
}

/// The packet identifiers of `publisher`'s held-back QoS 2 messages that were routed (their
/// copies are all recorded): a restored broker answers their re-send with PUBREC.
pub(super) fn routed_qos2(
    parked: &BTreeMap<SessionKey, VecDeque<Parked>>,
    publisher: SessionKey,
) -> impl Iterator<Item = PacketId> + '_ {
    parked
        .get(&publisher)
        .into_iter()
        .flatten()
        .filter(|p| p.qos == QoS::ExactlyOnce && matches!(p.state, ParkedState::Owed(_)))
        .map(|p| p.ack.packet_id())
}

/// One subscriber's copy of a held-back message.
#[derive(Debug)]
pub(super) struct Owed {
    pub(super) key: SessionKey,
    pub(super) message: Message,
    pub(super) token: Token,
    /// The publisher is in this subscriber's `Waiters`.
    waiting: bool,
    /// Its number in the persistence records, as a message queued for session `key` (0: not
    /// recorded). Only copies of QoS 2 messages are (see `persistence`, "Held-back
    /// messages").
    recorded: u64,
}

impl Owed {
    pub(super) fn new(key: SessionKey, message: Message, token: Token) -> Self {
        Self {
            key,
            message,
            token,
            waiting: false,
            recorded: 0,
        }
    }
}

/// The publishers waiting for one subscriber, in the order they started waiting.
#[derive(Debug)]
pub(super) struct Waiters {
    publishers: VecDeque<SessionKey>,
    /// The last time the subscriber acknowledged something or took a held-back message.
    progress_at: Instant,
    /// Its `RecordTimer::Stall` entry.
    timer_at: Instant,
}

impl<H: BrokerHooks> Broker<H> {
    /// Holds back a QoS 1/2 message (published with `qos`) of `publisher`: `Ok` with the
    /// deliveries some subscribers could not take (not empty), or `Err` with a message that
    /// arrived while earlier ones wait. Its acknowledgement `ack` is sent once every
    /// subscriber has it.
    pub(super) fn park(
        &mut self,
        now: Instant,
        publisher: SessionKey,
        ack: InboundId,
        qos: QoS,
        routed: Result<(ReasonCode, Vec<Owed>), Message>,
    ) {
        // The message owns its bytes already (one compact copy, made in `on_message`), and
        // every subscriber's copy shares them.
        let (state, code, bytes) = match routed {
            Ok((code, mut owed)) => {
                let Some(first) = owed.first() else {
                    return;
                };
                let bytes = first.message.topic.len() + first.message.payload.len();
                self.record_owed(now, qos, &mut owed);
                (ParkedState::Owed(owed), code, bytes)
            }
            Err(message) => {
                let bytes = message.topic.len() + message.payload.len();
                (
                    ParkedState::Unrouted(Box::new(message)),
                    ReasonCode::Success,
                    bytes,
                )
            }
        };
        self.parked_bytes += bytes;
        self.stats.messages_parked += 1;
        self.parked.entry(publisher).or_default().push_back(Parked {
            state,
            ack,
            qos,
            code,
            bytes,
        });
        self.register(now, publisher);
        self.journal_dirty(publisher);
    }

    /// Records the copies of a held-back QoS 2 message not recorded yet as queued for their
    /// subscribers (when persistence is on and the subscriber's session is persistent): with
    /// the copies its subscribers took, recorded as they took them, the message is then in
    /// the records everywhere it was routed, and its publisher's packet identifier is
    /// recorded as answered (see `persistence`, "Held-back messages").
    fn record_owed(&mut self, now: Instant, qos: QoS, owed: &mut [Owed]) {
        if self.journal.is_none() || qos != QoS::ExactlyOnce {
            return;
        }
        for o in owed.iter_mut().filter(|o| o.recorded == 0) {
            let mut token = Token::default();
            self.journal_delivery(now, o.key, &o.message, &mut token);
            o.recorded = token.seq;
        }
    }

    /// The record of a held-back copy ([`record_owed`](Self::record_owed)) is no longer
    /// needed: the copy was delivered (and recorded again where it went) or dropped.
    fn forget_owed(&mut self, key: SessionKey, recorded: u64) {
        if recorded != 0 {
            let token = Token {
                shared: None,
                seq: recorded,
            };
            self.journal_done(Some(key), &token);
        }
    }

    /// Puts `publisher` in the `Waiters` of every subscriber its first message still waits
    /// for.
    fn register(&mut self, now: Instant, publisher: SessionKey) {
        let Some(head) = self
            .parked
            .get_mut(&publisher)
            .and_then(VecDeque::front_mut)
        else {
            return;
        };
        let ParkedState::Owed(owed) = &mut head.state else {
            return;
        };
        let timeout = self.config.stalled_subscriber_timeout;
        for o in owed.iter_mut().filter(|o| !o.waiting) {
            o.waiting = true;
            let waiters = self.waiters.entry(o.key).or_insert_with(|| {
                let at = now + timeout;
                self.record_timers.insert((at, o.key, RecordTimer::Stall));
                Waiters {
                    publishers: VecDeque::new(),
                    progress_at: now,
                    timer_at: at,
                }
            });
            waiters.publishers.push_back(publisher);
        }
    }

    /// Subscriber `key` may have room (it acknowledged, drained, closed or ended): its
    /// waiting publishers are retried once the current events are handled.
    pub(super) fn wake_waiters(&mut self, key: SessionKey) {
        if self.waiters.contains_key(&key) {
            self.room.push_back(key);
        }
    }

    /// Subscriber `key` made progress (for the stall timeout).
    pub(super) fn on_progress(&mut self, now: Instant, key: SessionKey) {
        if let Some(waiters) = self.waiters.get_mut(&key) {
            waiters.progress_at = now;
        }
    }

    /// Lets the publishers waiting for subscriber `key` go on, one at a time in the order
    /// they started waiting, until it refuses again. A publisher that goes on and is held
    /// back again waits at the end of the line: each gets one message through per turn.
    pub(super) fn resume_waiters(&mut self, now: Instant, key: SessionKey) {
        let turns = self.waiters.get(&key).map_or(0, |w| w.publishers.len());
        for _ in 0..turns {
            let Some(publisher) = self
                .waiters
                .get_mut(&key)
                .and_then(|w| w.publishers.pop_front())
            else {
                break;
            };
            if let Some(o) = self.head_owed(publisher, key) {
                o.waiting = false;
            }
            self.advance(now, publisher);
            if self.head_owed(publisher, key).is_some() {
                // Refused again: it is full; the others wait for its next room.
                break;
            }
        }
        if self
            .waiters
            .get(&key)
            .is_some_and(|w| w.publishers.is_empty())
        {
            if let Some(w) = self.waiters.remove(&key) {
                self.record_timers
                    .remove(&(w.timer_at, key, RecordTimer::Stall));
            }
        }
    }

    /// The copy for subscriber `key` of `publisher`'s first held-back message.
    fn head_owed(&mut self, publisher: SessionKey, key: SessionKey) -> Option<&mut Owed> {
        match &mut self.parked.get_mut(&publisher)?.front_mut()?.state {
            ParkedState::Owed(owed) => owed.iter_mut().find(|o| o.key == key),
            ParkedState::Unrouted(_) => None,
        }
    }

    /// Delivers `publisher`'s held-back messages in order as far as the subscribers take
    /// them, acknowledging each once all have it.
    fn advance(&mut self, now: Instant, publisher: SessionKey) {
        // Its held-back messages (routed ones, acknowledged ones) are part of its records.
        self.journal_dirty(publisher);
        while let Some(head) = self
            .parked
            .get_mut(&publisher)
            .and_then(VecDeque::front_mut)
        {
            let qos = head.qos;
            let state = core::mem::replace(&mut head.state, ParkedState::Owed(Vec::new()));
            let owed = match state {
                ParkedState::Unrouted(message) => {
                    let (code, mut owed) =
                        self.accept_message(now, Some(publisher), *message, true);
                    self.record_owed(now, qos, &mut owed);
                    if let Some(head) = self
                        .parked
                        .get_mut(&publisher)
                        .and_then(VecDeque::front_mut)
                    {
                        head.code = code;
                    }
                    owed
                }
                ParkedState::Owed(owed) => {
                    let mut still = Vec::new();
                    for o in owed {
                        if o.waiting {
                            still.push(o);
                            continue;
                        }
                        let (key, recorded) = (o.key, o.recorded);
                        if o.token.shared.is_none() && !self.sessions.contains_key(&key) {
                            // Its subscriber's session ended while the copy waited: dropped
                            // with what that session held, and counted as such.
                            self.stats.dropped_session_ended += 1;
                            continue;
                        }
                        match self.offer(now, key, o.message, o.token, true) {
                            Some(mut again) => {
                                if again.key == key {
                                    again.recorded = recorded;
                                } else {
                                    // A shared one now waits for another member: recorded
                                    // for that one instead, below.
                                    self.forget_owed(key, recorded);
                                }
                                still.push(again);
                            }
                            None => {
                                // Taken (and recorded again as such), or dropped.
                                self.forget_owed(key, recorded);
                                self.on_progress(now, key);
                            }
                        }
                    }
                    self.record_owed(now, qos, &mut still);
                    still
                }
            };
            let Some(queue) = self.parked.get_mut(&publisher) else {
                // Its session ended meanwhile.
                return;
            };
            if !owed.is_empty() {
                if let Some(head) = queue.front_mut() {
                    head.state = ParkedState::Owed(owed);
                }
                self.register(now, publisher);
                return;
            }
            let Some(done) = queue.pop_front() else {
                break;
            };
            if queue.is_empty() {
                self.parked.remove(&publisher);
            }
            self.parked_bytes -= done.bytes;
            self.ack_publisher(now, publisher, done.ack, done.code);
        }
        self.parked.remove(&publisher);
        self.parked_changed(publisher);
    }

    /// Sends (or, while its client is away, records) the acknowledgement of a held-back
    /// message.
    fn ack_publisher(
        &mut self,
        now: Instant,
        publisher: SessionKey,
        ack: InboundId,
        code: ReasonCode,
    ) {
        let Some(record) = self.sessions.get_mut(&publisher) else {
            return;
        };
        if let Some(id) = record.connection {
            if self.connections.contains_key(&id) {
                self.ack_message(now, id, ack, code);
                self.settle(now, id);
            }
        } else if let Some(stored) = record.stored.as_mut() {
            // Sent after CONNACK when the session resumes.
            stored.ack(ack);
        }
    }

    /// `publisher`'s held-back messages changed: its connection (and, when the total fell
    /// under `max_parked_bytes`, every connection not read) gets its read state refreshed.
    fn parked_changed(&mut self, publisher: SessionKey) {
        if let Some(id) = self.sessions.get(&publisher).and_then(|r| r.connection) {
            self.unsettle(id);
        }
        if self.parked_bytes <= self.config.max_parked_bytes && !self.read_paused.is_empty() {
            let paused: Vec<ConnectionId> = self.read_paused.iter().copied().collect();
            for id in paused {
                self.unsettle(id);
            }
        }
    }

    /// `publisher`'s session ended (or started clean): its held-back messages go, never
    /// acknowledged.
    pub(super) fn drop_parked(&mut self, publisher: SessionKey) {
        let Some(queue) = self.parked.remove(&publisher) else {
            return;
        };
        for parked in queue {
            self.parked_bytes -= parked.bytes;
            self.stats.parked_dropped += 1;
            if let ParkedState::Owed(owed) = parked.state {
                for o in &owed {
                    self.forget_owed(o.key, o.recorded);
                }
                for o in owed.iter().filter(|o| o.waiting) {
                    if let Some(w) = self.waiters.get_mut(&o.key) {
                        w.publishers.retain(|p| *p != publisher);
                        if w.publishers.is_empty() {
                            self.room.push_back(o.key);
                        }
                    }
                }
            }
        }
        self.parked_changed(publisher);
    }

    /// Subscriber `key`'s session was discarded (clean start): what held-back messages still
    /// owe it is dropped with it (counted in `dropped_session_ended`, as what the session
    /// held; the new session has no subscriptions), and their publishers go on. Called once
    /// the discarded session's subscriptions are gone, so that the publishers' later
    /// messages, routed now, do not match them.
    pub(super) fn forget_subscriber(&mut self, now: Instant, key: SessionKey) {
        let Some(waiters) = self.waiters.remove(&key) else {
            return;
        };
        self.record_timers
            .remove(&(waiters.timer_at, key, RecordTimer::Stall));
        for publisher in waiters.publishers {
            if let Some(ParkedState::Owed(owed)) = self
                .parked
                .get_mut(&publisher)
                .and_then(VecDeque::front_mut)
                .map(|head| &mut head.state)
            {
                // Their records went with the discarded session's.
                let before = owed.len();
                owed.retain(|o| o.key != key);
                self.stats.dropped_session_ended += (before - owed.len()) as u64;
            }
            self.advance(now, publisher);
        }
    }

    /// The stall timer of subscriber `key` fired: disconnected when it made no progress for
    /// `stalled_subscriber_timeout` while publishers wait for it.
    pub(super) fn check_stalled(&mut self, now: Instant, key: SessionKey, at: Instant) {
        let timeout = self.config.stalled_subscriber_timeout;
        let Some(waiters) = self.waiters.get_mut(&key) else {
            return;
        };
        if waiters.timer_at != at {
            return;
        }
        let due = waiters.progress_at + timeout;
        if due > now {
            waiters.timer_at = due;
            self.record_timers.insert((due, key, RecordTimer::Stall));
            return;
        }
        // Checked again after this disconnection, should it not end the wait.
        let next = now + timeout;
        waiters.timer_at = next;
        waiters.progress_at = now;
        self.record_timers.insert((next, key, RecordTimer::Stall));
        match self.sessions.get(&key).and_then(|r| r.connection) {
            Some(id) => {
                self.stats.stalled_subscribers_disconnected += 1;
                // 5.0 section 3.14.2.1: 0x97 Quota exceeded, "an implementation or
                // administrative imposed limit has been exceeded".
                self.close_connection(now, id, ReasonCode::QuotaExceeded);
            }
            None => {
                self.wake_waiters(key);
                self.run(now);
            }
        }
    }
}
