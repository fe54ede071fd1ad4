//! Broker behaviours named by single normative statements, in simulation (`BrokerNet`).
#![cfg(feature = "sim")]

mod broker_support;

use broker_support::*;
use mqtt_streaming_session::ClientEvent;

/// The reason codes of the last UNSUBACK client `i` received.
fn unsuback_codes(
    net: &mqtt_streaming_session::sim::BrokerNet,
    i: usize,
) -> Option<Vec<mqtt_streaming_proto::ReasonCode>> {
    net.clients[i].events.iter().rev().find_map(|e| match e {
        ClientEvent::Unsubscribed { unsuback, .. } => Some(unsuback.reason_codes.clone()),
        _ => None,
    })
}

#[test]
fn resubscribing_to_the_same_filter_replaces_the_subscription() {
    // [MQTT-3.8.4-3] (3.1.1 and 5.0): a SUBSCRIBE whose filter equals an existing one replaces
    // it; the new maximum QoS applies and messages are not delivered twice.
    for version in [V3, V5] {
        let mut net = net();
        let s = client(&mut net, version, "s", true, 0);
        subscribe(&mut net, s, "a/+", Q2);
        subscribe(&mut net, s, "a/+", Q0);
        assert_eq!(net.broker.stats().subscriptions, 1, "{version}");
        let p = client(&mut net, V5, "p", true, 0);
        publish(&mut net, p, "a/b", Q2, "x");
        let got = received(&net, s);
        assert_eq!(got.len(), 1, "{version}: one delivery");
        assert_eq!(
            got[0].qos_pid.qos(),
            Q0,
            "{version}: the replacing subscription's QoS"
        );
    }
}

#[test]
fn resubscribing_with_retain_handling_0_resends_retained_messages() {
    // [MQTT-3.8.4-4] (5.0): replacing a subscription with Retain Handling 0 sends the matching
    // retained messages again.
    let mut net = net();
    let p = client(&mut net, V5, "p", true, 0);
    send(
        &mut net,
        p,
        mqtt_streaming_session::Message::new(topic("r/1"), Q1, "kept").retained(),
    );
    let s = client(&mut net, V5, "s", true, 0);
    subscribe(&mut net, s, "r/#", Q1);
    subscribe(&mut net, s, "r/#", Q1);
    let got = received(&net, s);
    assert_eq!(got.len(), 2, "retained message sent on each SUBSCRIBE");
    assert!(got.iter().all(|p| p.retain && &p.payload[..] == b"kept"));
}

#[test]
fn unsuback_is_sent_even_when_nothing_was_unsubscribed() {
    // [MQTT-3.10.4-5] (3.1.1 and 5.0): the server answers every UNSUBSCRIBE with UNSUBACK,
    // with 0x11 No subscription existed in 5.0 ([MQTT-3.11.3-1]).
    for version in [V3, V5] {
        let mut net = net();
        let s = client(&mut net, version, "s", true, 0);
        unsubscribe(&mut net, s, "never/subscribed");
        let codes = unsuback_codes(&net, s).expect("an UNSUBACK");
        if version.is_v5() {
            assert_eq!(
                codes,
                [mqtt_streaming_proto::ReasonCode::NoSubscriptionExisted]
            );
        } else {
            assert!(codes.is_empty());
        }
    }
}

#[test]
fn unsubscribe_matches_filters_character_by_character() {
    // [MQTT-3.10.4-1] (3.1.1 and 5.0): a filter is removed only by the same characters; "a/+"
    // does not remove "a/b", and "a/#" is not "a/+".
    let mut net = net();
    let s = client(&mut net, V5, "s", true, 0);
    subscribe(&mut net, s, "a/b", Q1);
    unsubscribe(&mut net, s, "a/+");
    assert_eq!(
        unsuback_codes(&net, s).unwrap(),
        [mqtt_streaming_proto::ReasonCode::NoSubscriptionExisted]
    );
    let p = client(&mut net, V5, "p", true, 0);
    publish(&mut net, p, "a/b", Q1, "still");
    assert_eq!(payloads(&net, s), ["still"]);
    unsubscribe(&mut net, s, "a/b");
    assert_eq!(
        unsuback_codes(&net, s).unwrap(),
        [mqtt_streaming_proto::ReasonCode::Success]
    );
    publish(&mut net, p, "a/b", Q1, "gone");
    assert_eq!(payloads(&net, s), ["still"]);
}

#[test]
fn forwarded_dup_does_not_copy_the_incoming_dup() {
    // [MQTT-3.3.1-3] (3.1.1 and 5.0): DUP on a PUBLISH the server sends depends only on whether
    // that packet is a re-transmission, not on the DUP of the PUBLISH it received.
    let mut net = net();
    let s = client(&mut net, V3, "s", true, 0);
    subscribe(&mut net, s, "t", Q1);
    let mut publish = mqtt_streaming_proto::Publish::new(
        topic("t"),
        mqtt_streaming_proto::QosPid::AtLeastOnce(mqtt_streaming_proto::PacketId::new(9).unwrap()),
        "d",
    );
    publish.dup = true;
    let connect = mqtt_streaming_proto::Packet::from(connect_packet(V3, "raw", true, 0));
    raw_connection(
        &mut net,
        V3,
        vec![connect, mqtt_streaming_proto::Packet::Publish(publish)],
    );
    let got = received(&net, s);
    assert_eq!(got.len(), 1);
    assert!(!got[0].dup, "first transmission to the subscriber");
}

#[test]
fn topics_are_matched_without_normalisation() {
    // [MQTT-4.7.3-4] (3.1.1 and 5.0): no normalisation or substitution of characters: "é" as
    // one code point and as "e" + combining accent are different topics; case matters.
    let mut net = net();
    let s = client(&mut net, V5, "s", true, 0);
    subscribe(&mut net, s, "caf\u{e9}", Q1);
    let p = client(&mut net, V5, "p", true, 0);
    publish(&mut net, p, "cafe\u{301}", Q1, "decomposed");
    publish(&mut net, p, "CAF\u{c9}", Q1, "upper");
    publish(&mut net, p, "caf\u{e9}", Q1, "same");
    assert_eq!(payloads(&net, s), ["same"]);
}

#[test]
fn shared_delivery_uses_the_members_granted_qos() {
    // [MQTT-4.8.2-3] (5.0): a message delivered through a shared subscription is sent at the
    // QoS granted to that member's subscription.
    let mut net = net();
    let a = client(&mut net, V5, "a", true, 0);
    subscribe(&mut net, a, "$share/g/t", Q0);
    let p = client(&mut net, V5, "p", true, 0);
    publish(&mut net, p, "t", Q2, "x");
    let got = received(&net, a);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos_pid.qos(), Q0);
}
