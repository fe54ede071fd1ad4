//! Issue 10 item 4 (and the partial-packet bound of item 6): overload holds publishers back
//! instead of losing messages they had acknowledgements for; a subscriber that stalls is
//! disconnected after `stalled_subscriber_timeout`; partial packets are bounded in total and
//! in time. Simulated network, manual clock.
#![cfg(feature = "sim")]

mod broker_support;

use std::collections::BTreeMap;
use std::time::Duration;

use broker_support::*;
use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{Packet, PacketId, Publish, QoS, QosPid, ReasonCode};
use mqtt_streaming_session::broker::{BrokerConfig, BrokerEvent};
use mqtt_streaming_session::sim::BrokerNet;
use mqtt_streaming_session::{AckMode, ClientConfig, ClientEvent, CloseReason, Message};

const PUBLISHERS: usize = 8;
/// The broker's Receive Maximum: what one held-back publisher can have unacknowledged.
const RECEIVE_MAXIMUM: u16 = 16;
/// Each subscriber session's queue and window.
const MAX_QUEUED: usize = 20;
const SUB_WINDOW: u16 = 10;
/// Messages each publisher sends.
const PER_PUBLISHER: u64 = 400;

fn config() -> BrokerConfig {
    BrokerConfig {
        server: BrokerConfig::default()
            .server
            .with_max_queued(MAX_QUEUED)
            .with_receive_maximum(RECEIVE_MAXIMUM),
        stalled_subscriber_timeout: Duration::from_secs(5),
        ..BrokerConfig::default()
    }
}

/// A subscriber that acknowledges by hand (so the test sets its pace), with a small window.
fn slow_subscriber(net: &mut BrokerNet, id: &str, expiry: u32) -> usize {
    let i = net.add_client(
        ClientConfig::default()
            .with_ack_mode(AckMode::Manual)
            .with_receive_maximum(SUB_WINDOW),
    );
    connect(net, i, connect_packet(V5, id, expiry == 0, expiry));
    i
}

/// Acknowledges up to `n` of the messages subscriber `s` has not acknowledged yet; `acked`
/// counts the events already handled.
fn ack_some(net: &mut BrokerNet, s: usize, acked: &mut usize, n: usize) {
    let now = net.now;
    let ids: Vec<_> = net.clients[s].events[*acked..]
        .iter()
        .enumerate()
        .filter_map(|(k, e)| match e {
            ClientEvent::Message { ack: Some(id), .. } => Some((k, *id)),
            _ => None,
        })
        .take(n)
        .collect();
    let mut last = None;
    for (k, id) in ids {
        net.clients[s]
            .session
            .ack(now, id, ReasonCode::Success)
            .unwrap();
        last = Some(k);
    }
    if let Some(k) = last {
        *acked += k + 1;
    }
}

/// `(publisher, sequence)` of every message subscriber `s` received, in order.
fn received_seqs(net: &BrokerNet, s: usize) -> Vec<(usize, u64)> {
    payloads(net, s)
        .iter()
        .map(|p| {
            let (a, b) = p.split_once('-').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect()
}

/// Sequence numbers publisher `p` had acknowledged (its token is the sequence number).
fn acked_seqs(net: &BrokerNet, p: usize) -> Vec<u64> {
    net.clients[p]
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Published {
                token, reason_code, ..
            } => {
                assert!(!reason_code.is_error(), "{reason_code:?}");
                Some(*token)
            }
            _ => None,
        })
        .collect()
}

struct FanIn {
    net: BrokerNet,
    publishers: Vec<usize>,
    sub: usize,
    next: Vec<u64>,
    acked: usize,
    /// Largest number of held-back messages seen.
    max_parked: usize,
    max_parked_bytes: usize,
}

impl FanIn {
    fn new(qos: QoS) -> Self {
        let mut net = net_with(config());
        let sub = slow_subscriber(&mut net, "sub", 0);
        subscribe(&mut net, sub, "load/#", qos);
        let publishers = (0..PUBLISHERS)
            .map(|k| client(&mut net, V5, &format!("pub{k}"), true, 0))
            .collect();
        Self {
            net,
            publishers,
            sub,
            next: vec![0; PUBLISHERS],
            acked: 0,
            max_parked: 0,
            max_parked_bytes: 0,
        }
    }

    /// Publishers keep their sessions full (flat out); the subscriber acknowledges `rate`
    /// messages every 10 ms.
    fn run(&mut self, qos: QoS, rounds: usize, rate: usize) {
        for _ in 0..rounds {
            for (k, &p) in self.publishers.iter().enumerate() {
                while self.next[k] < PER_PUBLISHER {
                    let now = self.net.now;
                    let payload = Bytes::from(format!("{k}-{}", self.next[k]));
                    let message = Message::new(topic(&format!("load/{k}")), qos, payload);
                    if self.net.clients[p]
                        .session
                        .publish(now, message, self.next[k])
                        .is_err()
                    {
                        break;
                    }
                    self.next[k] += 1;
                }
            }
            self.net.run_for(10);
            ack_some(&mut self.net, self.sub, &mut self.acked, rate);
            self.observe();
        }
    }

    /// Publishes the rest and lets the subscriber catch up with everything.
    fn finish(&mut self, qos: QoS, rate: usize) {
        for _ in 0..5000 {
            let done = self
                .publishers
                .iter()
                .all(|&p| acked_seqs(&self.net, p).len() as u64 == PER_PUBLISHER);
            if done && self.net.broker.stats().parked == 0 {
                break;
            }
            self.run(qos, 1, rate);
        }
        for _ in 0..100 {
            self.net.run_for(10);
            ack_some(&mut self.net, self.sub, &mut self.acked, 100);
        }
    }

    fn observe(&mut self) {
        let stats = self.net.broker.stats();
        self.max_parked = self.max_parked.max(stats.parked);
        self.max_parked_bytes = self.max_parked_bytes.max(stats.parked_bytes);
    }

    /// Every acknowledged message reached the subscriber (`exactly`: once), in order per
    /// publisher; returns how many each publisher had acknowledged.
    fn check_delivery(&self, exactly: bool) -> Vec<usize> {
        let got = received_seqs(&self.net, self.sub);
        let mut per: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        for (p, n) in got {
            per.entry(p).or_default().push(n);
        }
        let mut counts = Vec::new();
        for (k, &p) in self.publishers.iter().enumerate() {
            let acked = acked_seqs(&self.net, p);
            let seen = per.remove(&k).unwrap_or_default();
            // In order per publisher ([MQTT-4.6.0-6]); QoS 1 may repeat, never go back.
            let mut firsts = seen.clone();
            firsts.dedup();
            assert!(
                firsts.windows(2).all(|w| w[0] < w[1]),
                "publisher {k}: out of order {firsts:?}"
            );
            if exactly {
                assert_eq!(seen, firsts, "publisher {k}: a QoS 2 message twice");
            }
            for n in &acked {
                assert!(
                    firsts.binary_search(n).is_ok(),
                    "publisher {k}: message {n} acknowledged but never delivered \
                     (dropped_queue_full = {})",
                    self.net.broker.stats().dropped_queue_full
                );
            }
            counts.push(acked.len());
        }
        counts
    }
}

#[test]
fn fan_in_qos1_no_acknowledged_message_lost_memory_bounded() {
    // Issue 10 item 4: 8 publishers flat out at QoS 1 into one slow subscriber. Every
    // message a publisher got its PUBACK for reaches the subscriber, in order per publisher
    // ([MQTT-4.6.0-6]); the broker keeps at most one Receive Maximum of held-back messages per
    // publisher.
    let mut f = FanIn::new(Q1);
    f.run(Q1, 300, 5);
    f.finish(Q1, 5);
    let counts = f.check_delivery(false);
    assert!(
        counts.iter().all(|&c| c > 0),
        "every publisher progresses: {counts:?}"
    );
    let stats = f.net.broker.stats();
    assert_eq!(stats.dropped_queue_full, 0);
    assert!(
        stats.messages_parked > 0,
        "the overload held publishers back"
    );
    assert!(
        f.max_parked <= PUBLISHERS * usize::from(RECEIVE_MAXIMUM),
        "held back {} > {} publishers x Receive Maximum",
        f.max_parked,
        PUBLISHERS * usize::from(RECEIVE_MAXIMUM)
    );
    assert_eq!(stats.parked, 0, "all released at the end");
    assert_eq!(stats.parked_bytes, 0);
    // Nothing left unacknowledged either: everything published was acknowledged in the end.
    for &p in &f.publishers {
        assert_eq!(acked_seqs(&f.net, p).len() as u64, PER_PUBLISHER);
    }
}

#[test]
fn fan_in_qos2_exactly_once_in_order() {
    // Issue 10 item 4 at QoS 2: exactly once ([MQTT-4.3.3-2] 5.0 Method B at the broker),
    // in order per publisher, nothing acknowledged lost.
    let mut f = FanIn::new(Q2);
    f.run(Q2, 300, 5);
    f.finish(Q2, 5);
    let counts = f.check_delivery(true);
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    assert_eq!(f.net.broker.stats().dropped_queue_full, 0);
    assert!(f.max_parked <= PUBLISHERS * usize::from(RECEIVE_MAXIMUM));
}

#[test]
fn fan_in_fair_share_between_publishers() {
    // Issue 10 item 4, fair share: while the subscriber is the bottleneck, each publisher
    // gets about the same share of it (each waits its turn, one message per turn).
    let mut f = FanIn::new(Q1);
    f.run(Q1, 400, 4);
    let got = received_seqs(&f.net, f.sub);
    let mut per = [0usize; PUBLISHERS];
    for (p, _) in &got {
        per[*p] += 1;
    }
    let (min, max) = (per.iter().min().unwrap(), per.iter().max().unwrap());
    assert!(*min > 0 && *max <= 2 * *min, "shares {per:?}");
    f.finish(Q1, 4);
    f.check_delivery(false);
}

#[test]
fn shared_group_all_members_full_holds_back_instead_of_dropping() {
    // Issue 10 item 4 with a shared subscription (5.0 section 4.8.2): when every member of
    // the group is full, the message waits for one instead of being dropped; each message
    // reaches one member.
    let mut net = net_with(config());
    let members: Vec<usize> = (0..2)
        .map(|k| {
            let m = slow_subscriber(&mut net, &format!("m{k}"), 0);
            subscribe(&mut net, m, "$share/g/load/#", Q1);
            m
        })
        .collect();
    let publishers: Vec<usize> = (0..4)
        .map(|k| client(&mut net, V5, &format!("p{k}"), true, 0))
        .collect();
    let per = 100u64;
    let mut next = [0u64; 4];
    let mut acked = [0usize; 2];
    for _ in 0..3000 {
        for (k, &p) in publishers.iter().enumerate() {
            while next[k] < per {
                let now = net.now;
                let m = Message::new(topic(&format!("load/{k}")), Q1, format!("{k}-{}", next[k]));
                if net.clients[p].session.publish(now, m, next[k]).is_err() {
                    break;
                }
                next[k] += 1;
            }
        }
        net.run_for(10);
        for (i, &m) in members.iter().enumerate() {
            ack_some(&mut net, m, &mut acked[i], 3);
        }
        let done = publishers
            .iter()
            .all(|&p| acked_seqs(&net, p).len() as u64 == per);
        if done && net.broker.stats().parked == 0 {
            break;
        }
    }
    // What was acknowledged may still wait in a member's queue: let them catch up.
    for _ in 0..300 {
        net.run_for(10);
        for (i, &m) in members.iter().enumerate() {
            ack_some(&mut net, m, &mut acked[i], 20);
        }
    }
    assert_eq!(net.broker.stats().dropped_queue_full, 0);
    assert!(net.broker.stats().messages_parked > 0, "the group was full");
    let mut got: Vec<(usize, u64)> = members
        .iter()
        .flat_map(|&m| received_seqs(&net, m))
        .collect();
    got.sort_unstable();
    got.dedup();
    for (k, &p) in publishers.iter().enumerate() {
        for n in acked_seqs(&net, p) {
            assert!(
                got.binary_search(&(k, n)).is_ok(),
                "{k}-{n} acknowledged, not delivered"
            );
        }
    }
}

#[test]
fn non_reading_subscriber_disconnected_after_stall_timeout_publishers_resume() {
    // Issue 10 item 4 policy: a subscriber that acknowledges nothing while publishers wait
    // for it is disconnected after stalled_subscriber_timeout (5.0: DISCONNECT 0x97 Quota
    // exceeded); its persistent session keeps what it holds; the publishers go on.
    let mut net = net_with(config());
    let stuck = slow_subscriber(&mut net, "stuck", 600);
    subscribe(&mut net, stuck, "t", Q1);
    let fine = client(&mut net, V5, "fine", true, 0);
    subscribe(&mut net, fine, "t", Q1);
    let p = client(&mut net, V5, "pub", true, 0);
    let total = u64::from(SUB_WINDOW) + MAX_QUEUED as u64 + 30;
    for n in 0..total {
        let now = net.now;
        net.clients[p]
            .session
            .publish(now, Message::new(topic("t"), Q1, n.to_string()), n)
            .unwrap();
    }
    net.run_for(1000);
    let acked = acked_seqs(&net, p).len() as u64;
    assert!(
        acked <= u64::from(SUB_WINDOW) + MAX_QUEUED as u64,
        "held back while the subscriber is full: {acked} acknowledged"
    );
    assert!(net.broker.stats().parked > 0);
    assert_eq!(close_reason(&net, stuck), None, "not before the timeout");
    net.run_for(5000);
    assert_eq!(
        close_reason(&net, stuck),
        Some(CloseReason::Disconnect(ReasonCode::QuotaExceeded))
    );
    assert_eq!(net.broker.stats().stalled_subscribers_disconnected, 1);
    net.run_for(SETTLE_MS);
    // The publisher went on: everything acknowledged, all of it delivered to the reader.
    assert_eq!(acked_seqs(&net, p).len() as u64, total);
    assert_eq!(payloads(&net, fine).len() as u64, total);
    assert_eq!(net.broker.stats().parked, 0);
    // The stalled subscriber's session kept what it held (its window, resent, and its queue):
    // the rest is the documented loss for an offline session whose queue is full.
    let again = net.add_client(ClientConfig::default());
    connect(&mut net, again, connect_packet(V5, "stuck", false, 600));
    assert!(connack(&net, again).session_present);
    let kept = payloads(&net, again).len();
    assert_eq!(kept, usize::from(SUB_WINDOW) + MAX_QUEUED);
    assert_eq!(
        net.broker.stats().dropped_queue_full,
        total - kept as u64,
        "dropped for the full offline queue, counted"
    );
}

#[test]
fn held_back_publisher_acknowledged_after_its_reconnect() {
    // A publisher whose messages are held back leaves (persistent session) and comes back:
    // the messages still reach the subscriber, and the PUBACKs come on the new connection
    // ([MQTT-4.4.0-1]: the client re-sends, the broker does not deliver the re-sends twice).
    let mut net = net_with(config());
    let s = slow_subscriber(&mut net, "s", 0);
    subscribe(&mut net, s, "t", Q1);
    let p = client(&mut net, V5, "p", false, 600);
    let total = u64::from(SUB_WINDOW) + MAX_QUEUED as u64 + 5;
    for n in 0..total {
        let now = net.now;
        net.clients[p]
            .session
            .publish(now, Message::new(topic("t"), Q1, n.to_string()), n)
            .unwrap();
    }
    net.run_for(SETTLE_MS);
    assert!(acked_seqs(&net, p).len() < total as usize);
    cut(&mut net, p);
    connect(&mut net, p, connect_packet(V5, "p", false, 600));
    let mut acked = 0;
    for _ in 0..100 {
        ack_some(&mut net, s, &mut acked, 10);
        net.run_for(50);
    }
    let got: Vec<u64> = payloads(&net, s)
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    let mut firsts = got.clone();
    firsts.dedup();
    assert_eq!(firsts, (0..total).collect::<Vec<_>>());
    assert_eq!(acked_seqs(&net, p).len() as u64, total);
}

/// A raw connection that sent CONNECT (v5, keep alive 0) and was admitted.
fn raw_admitted(net: &mut BrokerNet, id: &str) -> mqtt_streaming_session::broker::ConnectionId {
    let conn = raw_connection(net, V5, vec![Packet::from(connect_packet(V5, id, true, 0))]);
    assert!(net
        .broker_events
        .iter()
        .any(|e| matches!(e, BrokerEvent::Connected { connection, .. } if *connection == conn)));
    conn
}

fn publish_bytes(payload_len: usize) -> BytesMut {
    let publish = Publish::new(
        topic("t"),
        QosPid::AtLeastOnce(PacketId::new(1).unwrap()),
        vec![b'x'; payload_len],
    );
    let mut buf = BytesMut::new();
    Packet::Publish(publish).encode(V5, &mut buf).unwrap();
    buf
}

fn closed(
    net: &mut BrokerNet,
    conn: mqtt_streaming_session::broker::ConnectionId,
) -> Option<CloseReason> {
    while let Some(e) = net.broker.poll_event() {
        net.broker_events.push(e);
    }
    net.broker_events.iter().find_map(|e| match e {
        BrokerEvent::Close {
            connection, reason, ..
        } if *connection == conn => Some(reason.clone()),
        _ => None,
    })
}

#[test]
fn slowloris_partial_packet_closed_at_its_deadline() {
    // Issue 10 item 6: a packet that started must complete within partial_packet_timeout; a
    // client sending one byte a second is closed (5.0: DISCONNECT 0x97 Quota exceeded).
    let mut net = net_with(BrokerConfig {
        partial_packet_timeout: Duration::from_secs(10),
        ..BrokerConfig::default()
    });
    let conn = raw_admitted(&mut net, "slow");
    let mut whole = publish_bytes(100);
    let mut buf = whole.split_to(10);
    for _ in 0..9 {
        let now = net.now;
        net.broker.handle_read(now, conn, &mut buf);
        net.run_for(1000);
        buf.extend_from_slice(&whole.split_to(1));
    }
    assert_eq!(
        closed(&mut net, conn),
        None,
        "9 s: still within the deadline"
    );
    net.run_for(1500);
    assert_eq!(
        closed(&mut net, conn),
        Some(CloseReason::Disconnect(ReasonCode::QuotaExceeded))
    );
    assert_eq!(net.broker.stats().partial_packets_refused, 1);
    assert_eq!(net.broker.stats().partial_bytes, 0);
}

#[test]
fn partial_packets_share_one_budget() {
    // Issue 10 item 6: partial packets reserve their announced size from
    // max_partial_bytes_total; a connection whose packet does not fit is not read until
    // another completes (then it gets ReadResumed).
    let mut net = net_with(BrokerConfig {
        max_partial_bytes_total: 1000,
        ..BrokerConfig::default()
    });
    let a = raw_admitted(&mut net, "a");
    let b = raw_admitted(&mut net, "b");
    let mut a_rest = publish_bytes(700);
    let mut a_buf = a_rest.split_to(10);
    let mut b_rest = publish_bytes(500);
    let mut b_buf = b_rest.split_to(10);
    let now = net.now;
    net.broker.handle_read(now, a, &mut a_buf);
    assert!(net.broker.wants_read(a));
    net.broker.handle_read(now, b, &mut b_buf);
    assert!(!net.broker.wants_read(b), "over the budget: not read");
    assert_eq!(b_buf.len(), 10, "kept in the caller's buffer");
    assert!(net.broker.stats().partial_bytes <= 1000);
    // `a` completes: `b` gets the budget.
    a_buf.extend_from_slice(&a_rest);
    net.broker.handle_read(now, a, &mut a_buf);
    assert!(a_buf.is_empty());
    let mut resumed = false;
    while let Some(e) = net.broker.poll_event() {
        resumed |= e == BrokerEvent::ReadResumed { connection: b };
    }
    assert!(resumed);
    assert!(net.broker.wants_read(b));
    b_buf.extend_from_slice(&b_rest);
    net.broker.handle_read(now, b, &mut b_buf);
    assert!(b_buf.is_empty());
    assert_eq!(net.broker.stats().partial_bytes, 0);
}

#[test]
fn large_packet_before_connect_closed_before_it_is_buffered() {
    // Issue 10 item 6: a client not admitted yet may not make the broker buffer more than
    // max_connect_packet_size.
    let mut net = net_with(BrokerConfig {
        max_connect_packet_size: 1024,
        ..BrokerConfig::default()
    });
    let now = net.now;
    let conn = net.broker.open(now).unwrap();
    // A CONNECT's fixed header announcing 100,000 bytes.
    let mut buf = BytesMut::from(&[0x10, 0xA0, 0x8D, 0x06][..]);
    net.broker.handle_read(now, conn, &mut buf);
    assert_eq!(
        closed(&mut net, conn),
        Some(CloseReason::Disconnect(ReasonCode::PacketTooLarge))
    );
}

#[test]
fn held_back_publishers_not_read_beyond_max_parked_bytes() {
    // Issue 10 item 4, the memory bound: while held-back messages exceed max_parked_bytes,
    // held-back publishers are not read (what they send waits in their transport), so the
    // broker keeps at most max_parked_bytes plus one message per publisher; reading resumes
    // (ReadResumed) as the subscriber catches up.
    let mut net = net_with(BrokerConfig {
        max_parked_bytes: 1000,
        ..config()
    });
    let s = slow_subscriber(&mut net, "s", 0);
    subscribe(&mut net, s, "t", Q1);
    let p = client(&mut net, V5, "p", true, 0);
    let conn = net.clients[p].link.as_ref().unwrap().1;
    let total = 60u64;
    for n in 0..total {
        let now = net.now;
        let payload = Bytes::from(vec![b'0' + (n % 10) as u8; 100]);
        let _ = net.clients[p]
            .session
            .publish(now, Message::new(topic("t"), Q1, payload), n);
    }
    net.run_for(1000);
    let stats = net.broker.stats();
    assert!(stats.parked_bytes > 1000, "{stats:?}");
    assert!(
        stats.parked_bytes <= 1000 + 101,
        "one message over at most: {stats:?}"
    );
    assert!(!net.broker.wants_read(conn));
    assert!(
        !net.clients[p].link.as_ref().unwrap().0.server_rx.is_empty(),
        "its further messages wait unread"
    );
    let mut acked = 0;
    for _ in 0..200 {
        ack_some(&mut net, s, &mut acked, 10);
        net.run_for(20);
    }
    assert!(net
        .broker_events
        .iter()
        .any(|e| *e == BrokerEvent::ReadResumed { connection: conn }));
    assert_eq!(net.broker.stats().parked, 0);
    assert_eq!(
        payloads(&net, s).len() as u64,
        acked_seqs(&net, p).len() as u64
    );
}

#[test]
fn v3_publisher_not_read_at_receive_maximum_while_held_back() {
    // An MQTT 3.1.1 client does not know our Receive Maximum: while its messages are held
    // back it is not read once it has that many unacknowledged, rather than closed for
    // exceeding a limit it was never told (5.0's 0x93 has no 3.1.1 counterpart).
    let mut net = net_with(config());
    let s = slow_subscriber(&mut net, "s", 0);
    subscribe(&mut net, s, "t", Q1);
    let p = net.add_client(ClientConfig::default().with_max_inflight(100));
    connect(&mut net, p, connect_packet(V3, "p3", true, 0));
    let conn = net.clients[p].link.as_ref().unwrap().1;
    let total = u64::from(SUB_WINDOW) + MAX_QUEUED as u64 + 60;
    for n in 0..total {
        let now = net.now;
        net.clients[p]
            .session
            .publish(now, Message::new(topic("t"), Q1, n.to_string()), n)
            .unwrap();
    }
    net.run_for(1000);
    assert_eq!(close_reason(&net, p), None, "not closed");
    assert!(!net.broker.wants_read(conn));
    assert_eq!(net.broker.stats().parked, usize::from(RECEIVE_MAXIMUM));
    let mut acked = 0;
    for _ in 0..300 {
        ack_some(&mut net, s, &mut acked, 10);
        net.run_for(20);
    }
    assert_eq!(acked_seqs(&net, p).len() as u64, total);
    let got: Vec<u64> = payloads(&net, s)
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(got, (0..total).collect::<Vec<_>>());
}

#[test]
fn subscriber_clean_start_forgets_what_it_was_owed_publishers_go_on() {
    // [MQTT-3.1.2-4] 3.1.1 / 5.0 3.1.2.4: Clean Start discards the session; what held-back
    // messages still owed the old session is not delivered to the new one (it subscribed to
    // nothing), and their publishers are acknowledged.
    let mut net = net_with(config());
    let s = slow_subscriber(&mut net, "s", 600);
    subscribe(&mut net, s, "t", Q1);
    let p = client(&mut net, V5, "p", true, 0);
    let total = u64::from(SUB_WINDOW) + MAX_QUEUED as u64 + 10;
    for n in 0..total {
        let now = net.now;
        net.clients[p]
            .session
            .publish(now, Message::new(topic("t"), Q1, n.to_string()), n)
            .unwrap();
    }
    net.run_for(SETTLE_MS);
    assert!(net.broker.stats().parked > 0);
    let again = net.add_client(ClientConfig::default());
    connect(&mut net, again, connect_packet(V5, "s", true, 0));
    net.run_for(SETTLE_MS);
    assert_eq!(acked_seqs(&net, p).len() as u64, total);
    assert_eq!(net.broker.stats().parked, 0);
    assert!(
        payloads(&net, again).is_empty(),
        "{:?}",
        payloads(&net, again)
    );
}

#[test]
fn subscriber_session_end_counts_the_held_back_copy_it_was_owed() {
    // A held-back message routed to a subscriber whose session then ends (Session Expiry 0,
    // transport lost) is dropped with that session and counted in dropped_session_ended, like
    // what its queue and window held; its publisher is acknowledged and goes on. The
    // publisher's later messages, routed after the session ended, owe it nothing.
    let mut net = net_with(config());
    let s = slow_subscriber(&mut net, "s", 0);
    subscribe(&mut net, s, "t", Q1);
    let p = client(&mut net, V5, "p", true, 0);
    let total = u64::from(SUB_WINDOW) + MAX_QUEUED as u64 + 10;
    for n in 0..total {
        let now = net.now;
        net.clients[p]
            .session
            .publish(now, Message::new(topic("t"), Q1, n.to_string()), n)
            .unwrap();
    }
    net.run_for(SETTLE_MS);
    assert_eq!(net.broker.stats().parked, 10);
    assert_eq!(net.broker.stats().dropped_session_ended, 0);
    cut(&mut net, s);
    net.run_for(SETTLE_MS);
    let stats = net.broker.stats();
    assert_eq!(stats.parked, 0);
    assert_eq!(stats.sessions, 1, "the subscriber's session ended");
    assert_eq!(acked_seqs(&net, p).len() as u64, total);
    assert_eq!(
        stats.dropped_session_ended,
        u64::from(SUB_WINDOW) + MAX_QUEUED as u64 + 1,
        "its window, its queue and the held-back copy routed to it: {stats:?}"
    );
}

#[test]
fn subscriber_clean_start_counts_the_held_back_copy_it_was_owed() {
    // [MQTT-3.1.2-4] Clean Start discards the session: the held-back copy the old session was
    // owed is dropped with it and counted in dropped_session_ended (not lost uncounted).
    let mut net = net_with(config());
    let s = slow_subscriber(&mut net, "s", 600);
    subscribe(&mut net, s, "t", Q1);
    let p = client(&mut net, V5, "p", true, 0);
    let total = u64::from(SUB_WINDOW) + MAX_QUEUED as u64 + 10;
    for n in 0..total {
        let now = net.now;
        net.clients[p]
            .session
            .publish(now, Message::new(topic("t"), Q1, n.to_string()), n)
            .unwrap();
    }
    net.run_for(SETTLE_MS);
    assert_eq!(net.broker.stats().parked, 10);
    let before = net.broker.stats().dropped_session_ended;
    let again = net.add_client(ClientConfig::default());
    connect(&mut net, again, connect_packet(V5, "s", true, 0));
    net.run_for(SETTLE_MS);
    let stats = net.broker.stats();
    assert_eq!(acked_seqs(&net, p).len() as u64, total);
    assert_eq!(
        stats.dropped_session_ended - before,
        u64::from(SUB_WINDOW) + MAX_QUEUED as u64 + 1,
        "its window, its queue and the held-back copy routed to it: {stats:?}"
    );
    // The publisher's later messages, routed once the old subscriptions were gone, matched
    // nothing (they were not routed to the discarded session and miscounted there).
    assert_eq!(stats.dropped_qos0_offline, 0, "{stats:?}");
    assert!(payloads(&net, again).is_empty());
}
