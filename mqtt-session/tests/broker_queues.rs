//! Issue 5, offline queues and shared subscriptions in simulation (`BrokerNet`).
#![cfg(feature = "sim")]

mod broker_support;

use std::collections::BTreeSet;

use broker_support::*;
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_session::{AckMode, ClientConfig};

fn manual_ack_client(
    net: &mut mqtt_streaming_session::sim::BrokerNet,
    id: &str,
    expiry: u32,
) -> usize {
    let i = net.add_client(ClientConfig::default().with_ack_mode(AckMode::Manual));
    connect(net, i, connect_packet(V5, id, false, expiry));
    i
}

#[test]
fn qos1_and_qos2_kept_while_away_qos0_dropped() {
    // [MQTT-3.1.2-5] 3.1.1 / 5.0 4.1: QoS 1 and 2 messages are part of the stored session;
    // QoS 0 may be discarded (and is, by default).
    let mut net = net();
    let s = client(&mut net, V5, "s", false, 600);
    subscribe(&mut net, s, "t", Q2);
    cut(&mut net, s);
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "t", Q0, "q0");
    publish(&mut net, p, "t", Q1, "q1");
    publish(&mut net, p, "t", Q2, "q2");
    connect(&mut net, s, connect_packet(V5, "s", false, 600));
    assert_eq!(payloads(&net, s), ["q1", "q2"]);
    let qos: Vec<_> = received(&net, s).iter().map(|p| p.qos_pid.qos()).collect();
    assert_eq!(qos, [Q1, Q2]);
    assert_eq!(net.broker.stats().dropped_qos0_offline, 1);
}

#[test]
fn qos0_queued_offline_when_configured() {
    // Issue 5: "QoS 1/2 (and optionally QoS 0) kept while the client is away".
    let mut net = net_with(BrokerConfig {
        queue_qos0_offline: true,
        ..BrokerConfig::default()
    });
    let s = client(&mut net, V3, "s", false, 0);
    subscribe(&mut net, s, "t", Q1);
    cut(&mut net, s);
    let p = client(&mut net, V3, "pub", true, 0);
    publish(&mut net, p, "t", Q0, "q0");
    connect(&mut net, s, connect_packet(V3, "s", false, 0));
    assert_eq!(payloads(&net, s), ["q0"]);
}

#[test]
fn offline_queue_bounded_newest_refused_and_counted() {
    // Issue 5 limits: at most ServerConfig.max_queued messages per session while away; when
    // full the newest message is refused (dropped) and counted in dropped_queue_full.
    let mut net = net_with(BrokerConfig {
        server: BrokerConfig::default().server.with_max_queued(3),
        ..BrokerConfig::default()
    });
    let s = client(&mut net, V5, "s", false, 600);
    subscribe(&mut net, s, "t", Q1);
    cut(&mut net, s);
    let p = client(&mut net, V5, "pub", true, 0);
    for n in 1..=5 {
        publish(&mut net, p, "t", Q1, &n.to_string());
    }
    assert_eq!(net.broker.stats().dropped_queue_full, 2);
    connect(&mut net, s, connect_packet(V5, "s", false, 600));
    assert_eq!(payloads(&net, s), ["1", "2", "3"]);
}

#[test]
fn resume_sends_inflight_resends_first_then_queue_in_order() {
    // [MQTT-4.4.0-1] 5.0 / 3.1.1: unacknowledged PUBLISHes re-sent (DUP) on resume, before the
    // messages queued while away, in order ([MQTT-4.6.0-1]).
    let mut net = net();
    let s = manual_ack_client(&mut net, "s", 600);
    subscribe(&mut net, s, "t", Q1);
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "t", Q1, "1");
    publish(&mut net, p, "t", Q1, "2");
    assert_eq!(payloads(&net, s), ["1", "2"]);
    cut(&mut net, s); // never acknowledged
    publish(&mut net, p, "t", Q1, "3");
    publish(&mut net, p, "t", Q2, "4");
    // The same client id from a fresh client session (which holds no acknowledgement state of
    // the earlier connection, so it reports the re-sends as messages).
    let again = net.add_client(ClientConfig::default());
    connect(&mut net, again, connect_packet(V5, "s", false, 600));
    assert!(connack(&net, again).session_present);
    let got = received(&net, again);
    let after: Vec<_> = got
        .iter()
        .map(|p| (String::from_utf8(p.payload.to_vec()).unwrap(), p.dup))
        .collect();
    assert_eq!(
        after,
        [
            ("1".into(), true),
            ("2".into(), true),
            ("3".into(), false),
            ("4".into(), false)
        ]
    );
}

#[test]
fn shared_subscription_each_message_to_one_member_round_robin() {
    // 5.0 4.8.2: each message of a shared subscription goes to exactly one member; accepted on
    // 3.1.1 too. Round robin by default (issue 5).
    let mut net = net();
    let a = client(&mut net, V5, "a", true, 0);
    let b = client(&mut net, V3, "b", true, 0);
    let c = client(&mut net, V5, "c", true, 0);
    for i in [a, b, c] {
        subscribe(&mut net, i, "$share/g/jobs/+", Q1);
    }
    let p = client(&mut net, V5, "pub", true, 0);
    for n in 0..9 {
        publish(&mut net, p, &format!("jobs/{n}"), Q1, &n.to_string());
    }
    let mut all = BTreeSet::new();
    for i in [a, b, c] {
        let got = payloads(&net, i);
        assert_eq!(got.len(), 3, "round robin: 3 each");
        for x in got {
            assert!(all.insert(x), "delivered to one member only");
        }
    }
    assert_eq!(all.len(), 9);
    // Strict rotation: member k gets messages k, k+3, k+6.
    assert_eq!(payloads(&net, a), ["0", "3", "6"]);
}

#[test]
fn shared_and_direct_subscription_of_one_client_both_deliver() {
    // 5.0 4.8.2: a shared subscription is independent of a client's ordinary subscriptions.
    let mut net = net();
    let a = client(&mut net, V5, "a", true, 0);
    subscribe(&mut net, a, "$share/g/t", Q1);
    subscribe(&mut net, a, "t", Q1);
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "t", Q1, "x");
    assert_eq!(payloads(&net, a), ["x", "x"]);
}

#[test]
fn shared_member_leaving_does_not_lose_queued_messages() {
    // 5.0 4.8.2 / issue 5: when a member's session ends, the QoS 1/2 messages it held (in
    // flight and queued while away) are re-routed to another member.
    let mut net = net();
    let a = manual_ack_client(&mut net, "a", 5);
    subscribe(&mut net, a, "$share/g/t", Q1);
    let b = client(&mut net, V5, "b", true, 0);
    subscribe(&mut net, b, "$share/g/t", Q1);
    let p = client(&mut net, V5, "pub", true, 0);
    for n in 0..4 {
        publish(&mut net, p, "t", Q1, &n.to_string());
    }
    assert_eq!(
        payloads(&net, a).len(),
        2,
        "in flight at a, never acknowledged"
    );
    cut(&mut net, a);
    for n in 4..8 {
        publish(&mut net, p, "t", Q1, &n.to_string());
    }
    assert_eq!(
        payloads(&net, b).len(),
        4,
        "a's share is queued for it meanwhile"
    );
    net.run_for(6_000); // a's session expires
    let mut got: Vec<u32> = payloads(&net, b)
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, (0..8).collect::<Vec<_>>());
    assert_eq!(net.broker.stats().dropped_session_ended, 0);
}

#[test]
fn shared_member_unsubscribing_leaves_others_serving() {
    // 5.0 4.8.2: the group continues with its remaining members.
    let mut net = net();
    let a = client(&mut net, V5, "a", true, 0);
    let b = client(&mut net, V5, "b", true, 0);
    subscribe(&mut net, a, "$share/g/t", Q1);
    subscribe(&mut net, b, "$share/g/t", Q1);
    unsubscribe(&mut net, a, "$share/g/t");
    let p = client(&mut net, V5, "pub", true, 0);
    for n in 0..3 {
        publish(&mut net, p, "t", Q1, &n.to_string());
    }
    assert!(payloads(&net, a).is_empty());
    assert_eq!(payloads(&net, b), ["0", "1", "2"]);
}

#[test]
fn retained_not_sent_for_shared_subscriptions() {
    // 5.0 4.8.2: retained messages are not sent when a shared subscription is made.
    let mut net = net();
    let p = client(&mut net, V5, "pub", true, 0);
    send(
        &mut net,
        p,
        mqtt_streaming_session::Message::new(topic("t"), Q1, "r").retained(),
    );
    net.run_for(SETTLE_MS);
    let a = client(&mut net, V5, "a", true, 0);
    subscribe(&mut net, a, "$share/g/t", Q1);
    assert!(payloads(&net, a).is_empty());
}

#[test]
fn shared_qos2_delivery_interrupted_by_session_end_goes_to_no_other_member() {
    // [MQTT-4.8.2-5] 5.0: if the chosen member's session ends before it reconnects, an
    // interrupted QoS 2 delivery of a shared subscription must not be sent to another
    // subscriber; messages that member never started (queued while away) still move.
    let mut net = net();
    let a = manual_ack_client(&mut net, "a", 5);
    subscribe(&mut net, a, "$share/g/t", Q2);
    let b = client(&mut net, V5, "b", true, 0);
    subscribe(&mut net, b, "$share/g/t", Q2);
    let p = client(&mut net, V5, "pub", true, 0);
    for n in 0..2 {
        publish(&mut net, p, "t", Q2, &n.to_string());
    }
    // Round robin: "0" went to a (never acknowledged: a acks manually), "1" to b.
    assert_eq!(payloads(&net, a), ["0"]);
    assert_eq!(payloads(&net, b), ["1"]);
    cut(&mut net, a);
    for n in 2..4 {
        publish(&mut net, p, "t", Q2, &n.to_string());
    }
    net.run_for(6_000); // a's session expires
    let mut got = payloads(&net, b);
    got.sort();
    // "0" was in flight at a: dropped, not re-sent to b. a's queued share ("2") moved to b.
    assert_eq!(got, ["1", "2", "3"]);
    assert_eq!(net.broker.stats().dropped_session_ended, 1);
}
