//! Issue 5, routing in simulation (`BrokerNet`): topic matching, overlapping subscriptions,
//! QoS downgrade, MQTT 5 subscription options and properties passed through, retained
//! messages.
#![cfg(feature = "sim")]

mod broker_support;

use broker_support::*;
use bytes::Bytes;
use mqtt_streaming_proto::{
    PayloadFormat, ReasonCode, RetainHandling, SubscriptionId, SubscriptionOptions, UserProperty,
};
use mqtt_streaming_session::{Message, SubscribeRequest};

fn opts(qos: mqtt_streaming_proto::QoS) -> SubscriptionOptions {
    SubscriptionOptions::new(qos)
}

#[test]
fn single_and_multi_level_wildcards() {
    // [MQTT-4.7.1-2], [MQTT-4.7.1-3] 3.1.1 / 5.0: `#` and `+` per the spec's examples.
    let mut net = net();
    let plus = client(&mut net, V5, "plus", true, 0);
    let hash = client(&mut net, V5, "hash", true, 0);
    let all = client(&mut net, V3, "all", true, 0);
    subscribe(&mut net, plus, "sport/+/player1", Q0);
    subscribe(&mut net, hash, "sport/tennis/#", Q0);
    subscribe(&mut net, all, "#", Q0);
    let p = client(&mut net, V5, "pub", true, 0);
    for t in [
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sport/tennis",
        "sport/golf/player1",
        "sport",
        "/sport",
    ] {
        publish(&mut net, p, t, Q0, t);
    }
    assert_eq!(
        payloads(&net, plus),
        ["sport/tennis/player1", "sport/golf/player1"]
    );
    assert_eq!(
        payloads(&net, hash),
        [
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis"
        ]
    );
    assert_eq!(payloads(&net, all).len(), 6);
}

#[test]
fn multi_level_wildcard_matches_the_parent_level() {
    // [MQTT-4.7.1-2] 5.0 4.7.1.2: "sport/#" also matches "sport".
    let mut net = net();
    let s = client(&mut net, V5, "s", true, 0);
    subscribe(&mut net, s, "sport/#", Q1);
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "sport", Q1, "parent");
    publish(&mut net, p, "sports", Q1, "other");
    assert_eq!(payloads(&net, s), ["parent"]);
}

#[test]
fn plus_matches_empty_levels() {
    // 5.0 4.7.1.3: "+/+" matches "/finance"; "/+" matches "/finance"; "+" does not.
    let mut net = net();
    let a = client(&mut net, V5, "a", true, 0);
    let b = client(&mut net, V5, "b", true, 0);
    subscribe(&mut net, a, "+/+", Q0);
    subscribe(&mut net, b, "+", Q0);
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "/finance", Q0, "x");
    assert_eq!(payloads(&net, a), ["x"]);
    assert!(payloads(&net, b).is_empty());
}

#[test]
fn dollar_topics_not_matched_by_leading_wildcards() {
    // [MQTT-4.7.2-1] 3.1.1 / 5.0: "#" and "+/..." do not match topics starting with "$".
    let mut net = net();
    let hash = client(&mut net, V5, "hash", true, 0);
    let plus = client(&mut net, V5, "plus", true, 0);
    let sys = client(&mut net, V5, "sys", true, 0);
    subscribe(&mut net, hash, "#", Q0);
    subscribe(&mut net, plus, "+/monitor/Clients", Q0);
    subscribe(&mut net, sys, "$SYS/#", Q0);
    // From the broker itself: clients may not publish under $SYS (issue 10 item 6).
    let now = net.now;
    let message = mqtt_streaming_session::Message::new(topic("$SYS/monitor/Clients"), Q0, "sys");
    net.broker.publish(now, message);
    net.run_for(SETTLE_MS);
    assert!(payloads(&net, hash).is_empty());
    assert!(payloads(&net, plus).is_empty());
    assert_eq!(payloads(&net, sys), ["sys"]);
}

#[test]
fn overlapping_subscriptions_v311_one_delivery_at_highest_qos() {
    // [MQTT-3.3.5-1] 3.1.1: one delivery at the maximum QoS of the matching subscriptions.
    let mut net = net();
    let s = client(&mut net, V3, "s", true, 0);
    subscribe(&mut net, s, "a/+", Q0);
    subscribe(&mut net, s, "a/#", Q2);
    subscribe(&mut net, s, "a/b", Q1);
    let p = client(&mut net, V3, "pub", true, 0);
    publish(&mut net, p, "a/b", Q2, "x");
    let got = received(&net, s);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos_pid.qos(), Q2);
}

#[test]
fn overlapping_subscriptions_v5_carry_every_subscription_identifier() {
    // [MQTT-3.3.4-3], [MQTT-3.3.4-4], [MQTT-3.3.4-5] 5.0: one PUBLISH with the identifiers of
    // all matching subscriptions, at the highest QoS.
    let mut net = net();
    let s = client(&mut net, V5, "s", true, 0);
    for (f, id, qos) in [("a/+", 7, Q0), ("a/#", 9, Q1), ("a/b", 0, Q0)] {
        let mut req = SubscribeRequest::new(filter(f), qos);
        req.properties.subscription_identifier = SubscriptionId::new(id);
        subscribe_req(&mut net, s, req);
    }
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "a/b", Q1, "x");
    let got = received(&net, s);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos_pid.qos(), Q1);
    let mut ids: Vec<u32> = got[0]
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    ids.sort();
    assert_eq!(ids, [7, 9]);
}

#[test]
fn qos_downgraded_to_granted_qos() {
    // [MQTT-3.8.4-8] 5.0 / 3.1.1 3.8.4: delivered at min(published QoS, granted QoS).
    let mut net = net();
    let s0 = client(&mut net, V5, "s0", true, 0);
    let s1 = client(&mut net, V3, "s1", true, 0);
    let s2 = client(&mut net, V5, "s2", true, 0);
    subscribe(&mut net, s0, "t", Q0);
    subscribe(&mut net, s1, "t", Q1);
    subscribe(&mut net, s2, "t", Q2);
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "t", Q2, "two");
    publish(&mut net, p, "t", Q1, "one");
    let q = |i| -> Vec<_> { received(&net, i).iter().map(|p| p.qos_pid.qos()).collect() };
    assert_eq!(q(s0), [Q0, Q0]);
    assert_eq!(q(s1), [Q1, Q1]);
    assert_eq!(q(s2), [Q2, Q1]);
}

#[test]
fn maximum_qos_caps_the_granted_qos() {
    // [MQTT-3.2.2-10] 5.0: the SUBACK grants at most the server's Maximum QoS.
    let mut config = mqtt_streaming_session::broker::BrokerConfig::default();
    config.server.maximum_qos = Q1;
    let mut net = net_with(config);
    let s = client(&mut net, V5, "s", true, 0);
    subscribe(&mut net, s, "t", Q2);
    assert_eq!(suback_codes(&net, s), [ReasonCode::GrantedQoS1]);
    assert_eq!(connack(&net, s).properties.maximum_qos, Some(Q1));
}

#[test]
fn no_local_not_sent_back_to_publisher() {
    // [MQTT-3.8.3-3] 5.0: No Local: not forwarded to the publishing connection's client id.
    let mut net = net();
    let a = client(&mut net, V5, "a", true, 0);
    let b = client(&mut net, V5, "b", true, 0);
    subscribe_opts(
        &mut net,
        a,
        "t",
        SubscriptionOptions {
            no_local: true,
            ..opts(Q1)
        },
    );
    subscribe_opts(
        &mut net,
        b,
        "t",
        SubscriptionOptions {
            no_local: true,
            ..opts(Q1)
        },
    );
    publish(&mut net, a, "t", Q1, "from a");
    assert!(payloads(&net, a).is_empty());
    assert_eq!(payloads(&net, b), ["from a"]);
}

#[test]
fn publisher_receives_its_own_message_without_no_local() {
    // 5.0 3.8.3.1 (No Local 0) / 3.1.1: a client subscribed to its own topic gets its messages,
    // in order.
    let mut net = net();
    let a = client(&mut net, V5, "a", true, 0);
    subscribe(&mut net, a, "t", Q1);
    for n in 0..5 {
        send(&mut net, a, Message::new(topic("t"), Q1, format!("{n}")));
    }
    net.run_for(SETTLE_MS);
    assert_eq!(payloads(&net, a), ["0", "1", "2", "3", "4"]);
}

#[test]
fn same_connection_publishes_reach_each_subscriber_in_order() {
    // [MQTT-4.6.0-6] 5.0 / 3.1.1 4.6: per-publisher order kept for every subscriber, including
    // subscribers routed after the publisher's own subscription (publisher session key first).
    let mut net = net();
    let a = client(&mut net, V5, "a", true, 0);
    subscribe(&mut net, a, "t", Q0);
    let b = client(&mut net, V5, "b", true, 0);
    subscribe(&mut net, b, "t", Q1);
    for n in 0..20 {
        send(&mut net, a, Message::new(topic("t"), Q1, format!("{n:02}")));
    }
    net.run_for(SETTLE_MS);
    let expected: Vec<String> = (0..20).map(|n| format!("{n:02}")).collect();
    assert_eq!(payloads(&net, a), expected);
    assert_eq!(payloads(&net, b), expected);
}

#[test]
fn retain_as_published_keeps_the_flag_otherwise_cleared() {
    // [MQTT-3.3.1-12], [MQTT-3.3.1-13] 5.0; [MQTT-3.3.1-9] 3.1.1: RETAIN 0 on normal forwarding
    // unless Retain As Published.
    let mut net = net();
    let rap = client(&mut net, V5, "rap", true, 0);
    let plain = client(&mut net, V5, "plain", true, 0);
    let v3 = client(&mut net, V3, "v3", true, 0);
    subscribe_opts(
        &mut net,
        rap,
        "t",
        SubscriptionOptions {
            retain_as_published: true,
            ..opts(Q1)
        },
    );
    subscribe(&mut net, plain, "t", Q1);
    subscribe(&mut net, v3, "t", Q1);
    let p = client(&mut net, V5, "pub", true, 0);
    send(&mut net, p, Message::new(topic("t"), Q1, "r").retained());
    net.run_for(SETTLE_MS);
    assert!(received(&net, rap)[0].retain);
    assert!(!received(&net, plain)[0].retain);
    assert!(!received(&net, v3)[0].retain);
}

#[test]
fn retain_handling_0_1_2() {
    // [MQTT-3.3.1-9], [MQTT-3.3.1-10], [MQTT-3.3.1-11] 5.0: retained messages on subscribe per
    // Retain Handling, with RETAIN set.
    let mut net = net();
    let p = client(&mut net, V5, "pub", true, 0);
    send(&mut net, p, Message::new(topic("t"), Q1, "kept").retained());
    net.run_for(SETTLE_MS);
    let mut got = Vec::new();
    for (name, rh) in [
        ("rh0", RetainHandling::SendAtSubscribe),
        ("rh1", RetainHandling::SendAtSubscribeIfNew),
        ("rh2", RetainHandling::DoNotSend),
    ] {
        let s = client(&mut net, V5, name, true, 0);
        let o = SubscriptionOptions {
            retain_handling: rh,
            ..opts(Q1)
        };
        subscribe_opts(&mut net, s, "t", o);
        subscribe_opts(&mut net, s, "t", o); // again: the subscription exists now
        got.push(received(&net, s));
    }
    assert_eq!(got[0].len(), 2, "0: at every subscribe");
    assert_eq!(got[1].len(), 1, "1: only when the subscription is new");
    assert_eq!(got[2].len(), 0, "2: never");
    assert!(got[0].iter().chain(&got[1]).all(|p| p.retain));
}

#[test]
fn message_expiry_interval_decremented_and_expired_not_delivered() {
    // [MQTT-3.3.2-5], [MQTT-3.3.2-6] 5.0: expired messages are not delivered; the interval
    // forwarded is the received one minus the time waited.
    let mut net = net();
    let s = client(&mut net, V5, "s", false, 3600);
    subscribe(&mut net, s, "t", Q1);
    cut(&mut net, s);
    let p = client(&mut net, V5, "pub", true, 0);
    let mut short = Message::new(topic("t"), Q1, "short");
    short.properties.message_expiry_interval = Some(5);
    let mut long = Message::new(topic("t"), Q1, "long");
    long.properties.message_expiry_interval = Some(100);
    send(&mut net, p, short);
    send(&mut net, p, long);
    net.run_for(10_500);
    connect(&mut net, s, connect_packet(V5, "s", false, 3600));
    let got = received(&net, s);
    assert_eq!(got.len(), 1, "the 5 s message expired");
    assert_eq!(&got[0].payload[..], b"long");
    let left = got[0].properties.message_expiry_interval.unwrap();
    assert!((89..=90).contains(&left), "{left}");
    assert_eq!(net.broker.stats().dropped_expired, 1);
}

#[test]
fn publish_properties_passed_through_in_order() {
    // [MQTT-3.3.2-4] (payload format), [MQTT-3.3.2-17] (user properties in order),
    // [MQTT-3.3.2-20] (content type), response topic and correlation data 5.0.
    let mut net = net();
    let s = client(&mut net, V5, "s", true, 0);
    subscribe(&mut net, s, "req", Q1);
    let p = client(&mut net, V5, "pub", true, 0);
    let mut m = Message::new(topic("req"), Q1, "{}");
    m.properties.payload_format = Some(PayloadFormat::Utf8);
    m.properties.content_type = Some(string("application/json"));
    m.properties.response_topic = Some(topic("resp/1"));
    m.properties.correlation_data = Some(Bytes::from_static(b"\x00\x01"));
    let users = vec![
        UserProperty::new("z", "1").unwrap(),
        UserProperty::new("a", "2").unwrap(),
        UserProperty::new("z", "3").unwrap(),
    ];
    m.properties.user_properties = users.clone();
    send(&mut net, p, m);
    net.run_for(SETTLE_MS);
    let got = &received(&net, s)[0].properties;
    assert_eq!(got.payload_format, Some(PayloadFormat::Utf8));
    assert_eq!(got.content_type, Some(string("application/json")));
    assert_eq!(got.response_topic, Some(topic("resp/1")));
    assert_eq!(got.correlation_data.as_deref(), Some(&b"\x00\x01"[..]));
    assert_eq!(got.user_properties, users);
}

#[test]
fn no_matching_subscribers_v5_puback_0x10() {
    // 5.0 3.4.2.1: PUBACK 0x10 No matching subscribers; 3.1.1 acks plainly.
    let mut net = net();
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "nobody", Q1, "x");
    assert_eq!(publish_acks(&net, p), [ReasonCode::NoMatchingSubscribers]);
}

#[test]
fn unsubscribe_stops_delivery() {
    // [MQTT-3.10.4-6] 5.0 / [MQTT-3.10.4-2] 3.1.1: no new messages after UNSUBACK.
    let mut net = net();
    let s = client(&mut net, V5, "s", true, 0);
    subscribe(&mut net, s, "t/+", Q1);
    unsubscribe(&mut net, s, "t/+");
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "t/1", Q1, "x");
    assert!(payloads(&net, s).is_empty());
    assert_eq!(net.broker.stats().subscriptions, 0);
}

// ----- retained messages -----

#[test]
fn retained_stored_and_delivered_on_subscribe_with_retain_set() {
    // [MQTT-3.3.1-5], [MQTT-3.3.1-6] (3.1.1 numbering) / [MQTT-3.3.1-9] 5.0: stored, sent to
    // new subscribers with RETAIN 1, downgraded to the granted QoS.
    let mut net = net();
    let p = client(&mut net, V3, "pub", true, 0);
    send(
        &mut net,
        p,
        Message::new(topic("s/1"), Q2, "one").retained(),
    );
    send(
        &mut net,
        p,
        Message::new(topic("s/2"), Q1, "two").retained(),
    );
    net.run_for(SETTLE_MS);
    assert_eq!(net.broker.stats().retained, 2);
    let s = client(&mut net, V3, "s", true, 0);
    subscribe(&mut net, s, "s/+", Q1);
    let got = received(&net, s);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|p| p.retain && p.qos_pid.qos() == Q1));
}

#[test]
fn retained_replaced_by_the_next_retained_publish() {
    // [MQTT-3.3.1-5] 3.1.1 / 5.0 3.3.1.3: a new retained message replaces the one held.
    let mut net = net();
    let p = client(&mut net, V5, "pub", true, 0);
    send(&mut net, p, Message::new(topic("t"), Q1, "old").retained());
    send(&mut net, p, Message::new(topic("t"), Q1, "new").retained());
    send(&mut net, p, Message::new(topic("t"), Q1, "not retained"));
    net.run_for(SETTLE_MS);
    let s = client(&mut net, V5, "s", true, 0);
    subscribe(&mut net, s, "t", Q1);
    assert_eq!(payloads(&net, s), ["new"]);
}

#[test]
fn retained_deleted_by_empty_payload() {
    // [MQTT-3.3.1-10], [MQTT-3.3.1-11] 3.1.1 / [MQTT-3.3.1-6], [MQTT-3.3.1-7] 5.0: an empty
    // retained message deletes the retained message and is not stored.
    let mut net = net();
    let live = client(&mut net, V5, "live", true, 0);
    subscribe(&mut net, live, "t", Q1);
    let p = client(&mut net, V5, "pub", true, 0);
    send(&mut net, p, Message::new(topic("t"), Q1, "x").retained());
    send(&mut net, p, Message::new(topic("t"), Q1, "").retained());
    net.run_for(SETTLE_MS);
    assert_eq!(net.broker.stats().retained, 0);
    assert_eq!(
        payloads(&net, live),
        ["x", ""],
        "the empty one is still forwarded"
    );
    let s = client(&mut net, V5, "s", true, 0);
    subscribe(&mut net, s, "t", Q1);
    assert!(payloads(&net, s).is_empty());
}

#[test]
fn retained_store_size_limit() {
    // Issue 5 limits: a new topic beyond max_retained_messages is not retained, but routed.
    let mut net = net_with(mqtt_streaming_session::broker::BrokerConfig {
        max_retained_messages: 2,
        ..Default::default()
    });
    let live = client(&mut net, V5, "live", true, 0);
    subscribe(&mut net, live, "t/+", Q1);
    let p = client(&mut net, V5, "pub", true, 0);
    for t in ["t/1", "t/2", "t/3"] {
        send(&mut net, p, Message::new(topic(t), Q1, t).retained());
    }
    send(
        &mut net,
        p,
        Message::new(topic("t/1"), Q1, "t/1 again").retained(),
    );
    net.run_for(SETTLE_MS);
    assert_eq!(payloads(&net, live).len(), 4);
    let stats = net.broker.stats();
    assert_eq!((stats.retained, stats.dropped_retained_full), (2, 1));
    let s = client(&mut net, V5, "s", true, 0);
    subscribe(&mut net, s, "t/+", Q1);
    let mut got = payloads(&net, s);
    got.sort();
    assert_eq!(got, ["t/1 again", "t/2"]);
}

#[test]
fn retained_message_expiry_applies_in_the_store() {
    // [MQTT-3.3.2-5] 5.0: a retained message whose interval passed is no longer sent.
    let mut net = net();
    let p = client(&mut net, V5, "pub", true, 0);
    let mut m = Message::new(topic("t"), Q1, "x").retained();
    m.properties.message_expiry_interval = Some(2);
    send(&mut net, p, m);
    net.run_for(3_000);
    let s = client(&mut net, V5, "s", true, 0);
    subscribe(&mut net, s, "t", Q1);
    assert!(payloads(&net, s).is_empty());
}
