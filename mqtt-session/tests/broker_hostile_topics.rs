//! Issue 10, item 1: no client can crash the broker or make it hold memory out of proportion
//! through topics. Deep filters and topics, a `$share` group whose every member refuses a
//! message, the topic level limit and the subscription byte budgets.
//!
//! The walks over client-controlled structure must not recurse: the tests that build deep
//! structure run on a thread with a 256 KiB stack, on which a recursion of one frame per topic
//! level (or per group member) overflows long before the depths used here.

mod broker_support;

use broker_support::*;
use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    Connect, Packet, PacketId, ProtocolVersion, Publish, QoS, QosPid, ReasonCode, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName, Unsubscribe, Will,
};
use mqtt_streaming_session::broker::{Broker, BrokerConfig, ConnectionId};
use mqtt_streaming_session::{ClientEvent, CloseReason, Instant, Message, SubscribeRequest};
use proptest::prelude::*;

/// Far more levels than a 256 KiB stack has room for in a recursion of one frame per level.
const DEEP: usize = 20_000;

/// Runs `f` on a thread with a 256 KiB stack and propagates its panic.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

/// A broker without the level limit or budgets, so that deep structure is actually built.
fn unlimited() -> BrokerConfig {
    BrokerConfig {
        max_topic_levels: usize::MAX,
        max_subscription_bytes_per_session: usize::MAX,
        max_subscription_bytes_total: usize::MAX,
        ..BrokerConfig::default()
    }
}

/// The `Debug` summary of an index that holds nothing, not even an empty node.
const EMPTY_INDEX: &str = "SubscriptionIndex { subscriptions: 0, nodes: 0, weight: 0 }";

/// `a/a/.../a` with `levels` levels.
fn deep(levels: usize) -> String {
    let mut s = "a/".repeat(levels);
    s.pop();
    s
}

fn subscribe_deep_then(leave: impl FnOnce(&mut mqtt_streaming_session::sim::BrokerNet, usize)) {
    let mut net = net_with(unlimited());
    let c = client(&mut net, V5, "deep", true, 0);
    subscribe(&mut net, c, &deep(DEEP), Q1);
    assert_eq!(suback_codes(&net, c), [ReasonCode::GrantedQoS1]);
    assert_eq!(net.broker.stats().subscriptions, 1);
    leave(&mut net, c);
    assert_eq!(net.broker.stats().subscriptions, 0);
    // Every node the filter made is gone again.
    assert!(format!("{:?}", net.broker).contains(EMPTY_INDEX));
    // The broker still works.
    let d = client(&mut net, V5, "after", true, 0);
    subscribe(&mut net, d, "x/+", Q0);
    publish(&mut net, d, "x/1", Q0, "ok");
    assert_eq!(payloads(&net, d), ["ok"]);
}

#[test]
fn deep_filter_subscribe_then_unsubscribe_does_not_overflow() {
    on_small_stack(|| {
        subscribe_deep_then(|net, c| {
            unsubscribe(net, c, &deep(DEEP));
            assert!(net.clients[c].events.iter().any(|e| matches!(
                e,
                ClientEvent::Unsubscribed { unsuback, .. }
                    if unsuback.reason_codes == [ReasonCode::Success]
            )));
        })
    });
}

#[test]
fn deep_filter_subscribe_then_disconnect_does_not_overflow() {
    on_small_stack(|| {
        subscribe_deep_then(|net, c| disconnect(net, c, ReasonCode::Success, None));
    });
}

#[test]
fn deep_filter_receives_a_publish_to_its_deep_topic() {
    on_small_stack(|| {
        let mut net = net_with(unlimited());
        let c = client(&mut net, V5, "deep", true, 0);
        subscribe(&mut net, c, &deep(DEEP), Q0);
        // A sibling under a `+` at every level doubles the branches the match must follow.
        subscribe(&mut net, c, &format!("{}/+", deep(DEEP - 1)), Q0);
        let p = client(&mut net, V5, "pub", true, 0);
        publish(&mut net, p, &deep(DEEP), Q0, "deep");
        publish(&mut net, p, &deep(DEEP - 1), Q0, "not matched");
        assert_eq!(payloads(&net, c), ["deep"]);
    });
}

#[test]
fn debug_format_of_a_broker_with_a_deep_trie_does_not_overflow() {
    on_small_stack(|| {
        let mut net = net_with(unlimited());
        let c = client(&mut net, V5, "deep", true, 0);
        subscribe(&mut net, c, &deep(DEEP), Q0);
        let text = format!("{:?}", net.broker);
        // A summary of the index, not the tree: the only copy of the filter in the output is
        // the session's own list of subscriptions.
        assert!(text.contains("SubscriptionIndex"), "{}", &text[..200]);
        assert_eq!(text.matches(&deep(DEEP)).count(), 1);
    });
}

#[test]
fn drop_of_a_broker_with_a_deep_trie_does_not_overflow() {
    on_small_stack(|| {
        let mut net = net_with(unlimited());
        let c = client(&mut net, V5, "deep", true, 0);
        subscribe(&mut net, c, &deep(DEEP), Q0);
        // Many deep branches too: the drop must not hold one frame per level of any of them.
        for i in 0..20 {
            subscribe(&mut net, c, &format!("b/{i}/{}", deep(DEEP / 20)), Q0);
        }
        assert_eq!(net.broker.stats().subscriptions, 21);
        drop(net);
    });
}

// ----- a `$share` group whose every member refuses the message -----

fn feed(
    broker: &mut Broker,
    now: Instant,
    conn: ConnectionId,
    version: ProtocolVersion,
    packets: Vec<Packet>,
) {
    let mut buf = BytesMut::new();
    for p in packets {
        p.encode(version, &mut buf).unwrap();
    }
    broker.handle_read(now, conn, &mut buf);
    assert!(buf.is_empty());
}

fn drain(broker: &mut Broker, now: Instant) -> Vec<(ConnectionId, BytesMut)> {
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    while let Some(id) = broker.poll_transmit(now, &mut buf) {
        out.push((id, buf.split()));
    }
    while broker.poll_event().is_some() {}
    out
}

fn subscribe_packet(f: &str, qos: QoS) -> Packet {
    subscribe_packet_id(1, f, qos)
}

fn subscribe_packet_id(id: u16, f: &str, qos: QoS) -> Packet {
    Packet::from(Subscribe::new(
        PacketId::new(id).unwrap(),
        TopicFilter::new(f).unwrap(),
        SubscriptionOptions::new(qos),
    ))
}

#[test]
fn share_group_of_2000_members_that_all_refuse_drops_the_message_without_overflow() {
    on_small_stack(|| {
        let now = Instant::from_millis(0);
        let mut broker = Broker::new(BrokerConfig::default());
        const MEMBERS: usize = 2_000;
        for i in 0..MEMBERS {
            let conn = broker.open(now).unwrap();
            let mut c = connect_packet(V5, &format!("m{i}"), true, 0);
            // Room for the CONNACK and SUBACK, not for the PUBLISH below.
            c.properties.maximum_packet_size = std::num::NonZeroU32::new(64);
            feed(
                &mut broker,
                now,
                conn,
                V5,
                vec![Packet::from(c), subscribe_packet("$share/g/jobs", Q1)],
            );
        }
        let publisher = broker.open(now).unwrap();
        feed(
            &mut broker,
            now,
            publisher,
            V5,
            vec![Packet::from(connect_packet(V5, "p", true, 0))],
        );
        drain(&mut broker, now);
        let before = broker.stats();
        assert_eq!(before.subscriptions, MEMBERS);
        let publish = Publish::new(
            TopicName::new("jobs").unwrap(),
            QosPid::AtLeastOnce(PacketId::new(7).unwrap()),
            Bytes::from(vec![b'x'; 200]),
        );
        feed(&mut broker, now, publisher, V5, vec![Packet::from(publish)]);
        let sent = drain(&mut broker, now);
        let after = broker.stats();
        // Nothing went to any member, the message is counted as dropped exactly once, and the
        // publisher got its PUBACK.
        assert_eq!(after.messages_out, before.messages_out);
        assert_eq!(
            (after.dropped_too_large + after.dropped_queue_full)
                - (before.dropped_too_large + before.dropped_queue_full),
            1
        );
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, publisher);
        assert_eq!(sent[0].1[0], 0x40, "PUBACK");
        assert_eq!(after.connections, MEMBERS + 1);
    });
}

// ----- the topic level limit -----

/// One level past the limit, and the limit itself.
fn levels_config(max: usize) -> BrokerConfig {
    BrokerConfig {
        max_topic_levels: max,
        ..BrokerConfig::default()
    }
}

#[test]
fn default_topic_level_limit_is_128() {
    assert_eq!(BrokerConfig::default().max_topic_levels, 128);
}

/// [MQTT-3.9.3-2] (5.0): the refusal is a Subscribe Reason Code: 0x8F Topic Filter invalid
/// ("correctly formed but not allowed"); 3.1.1 has only 0x80 Failure ([MQTT-3.9.3-2] of 3.1.1).
#[test]
fn mqtt_3_9_3_2_filter_over_the_level_limit_gets_0x8f_or_0x80() {
    for (version, refused) in [
        (V5, ReasonCode::TopicFilterInvalid),
        (V3, ReasonCode::UnspecifiedError),
    ] {
        let mut net = net_with(BrokerConfig::default());
        let c = client(&mut net, version, "c", true, 0);
        let mut req = SubscribeRequest::new(filter(&deep(128)), Q1);
        req.subscriptions.push(req.subscriptions[0].clone());
        req.subscriptions[1].filter = filter(&deep(129));
        // A shared one: its levels are those of the filter after `$share/{name}/`.
        req.subscriptions.push(req.subscriptions[0].clone());
        req.subscriptions[2].filter = filter(&format!("$share/g/{}", deep(128)));
        req.subscriptions.push(req.subscriptions[0].clone());
        req.subscriptions[3].filter = filter(&format!("$share/g/{}", deep(129)));
        if !version.is_v5() {
            req.subscriptions.truncate(2);
        }
        subscribe_req(&mut net, c, req);
        let mut expected = vec![ReasonCode::GrantedQoS1, refused];
        if version.is_v5() {
            expected.extend([ReasonCode::GrantedQoS1, refused]);
        }
        assert_eq!(suback_codes(&net, c), expected, "{version:?}");
        assert_eq!(net.broker.stats().subscriptions, expected.len() / 2);
        // `#` and `+` are levels like any other.
        subscribe(&mut net, c, &format!("{}/#", deep(127)), Q0);
        assert_eq!(suback_codes(&net, c), [ReasonCode::Success]);
        subscribe(&mut net, c, &format!("{}/#", deep(128)), Q0);
        assert_eq!(suback_codes(&net, c), [refused]);
    }
}

/// [MQTT-3.11.3-2] (5.0): the UNSUBACK uses an Unsubscribe Reason Code: 0x8F Topic Filter
/// invalid for a filter no subscription can have.
#[test]
fn mqtt_3_11_3_2_unsubscribe_over_the_level_limit_gets_0x8f() {
    let mut net = net_with(levels_config(4));
    let c = client(&mut net, V5, "c", true, 0);
    let now = net.now;
    let mut req = mqtt_streaming_session::UnsubscribeRequest::new(filter("a/b/c/d/e"));
    req.filters.push(filter("a/b/c/d"));
    net.clients[c].session.unsubscribe(now, req, 0).unwrap();
    net.run_for(SETTLE_MS);
    let codes = net.clients[c]
        .events
        .iter()
        .find_map(|e| match e {
            ClientEvent::Unsubscribed { unsuback, .. } => Some(unsuback.reason_codes.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        codes,
        [
            ReasonCode::TopicFilterInvalid,
            ReasonCode::NoSubscriptionExisted
        ]
    );
}

/// A PUBLISH whose topic is over the limit ends the connection: MQTT 5 with DISCONNECT 0x90
/// Topic Name invalid (a DISCONNECT Reason Code, section 3.14.2.1 of 5.0), MQTT 3.1.1 by
/// closing (it has no way to say why, as for a refused PUBLISH, [MQTT-3.3.5-2] of 3.1.1). The
/// message is neither routed nor retained.
#[test]
fn publish_over_the_level_limit_closes_with_0x90() {
    for version in [V5, V3] {
        for qos in [Q0, Q1] {
            let mut net = net_with(levels_config(4));
            let s = client(&mut net, V5, "sub", true, 0);
            subscribe(&mut net, s, "#", Q1);
            let p = client(&mut net, version, "pub", true, 0);
            let mut m = Message::new(topic("a/b/c/d/e"), qos, Bytes::from_static(b"x"));
            m.retain = true;
            send(&mut net, p, m);
            net.run_for(SETTLE_MS);
            let reason = close_reason(&net, p).expect("closed");
            if version.is_v5() {
                assert_eq!(
                    reason,
                    CloseReason::Disconnect(ReasonCode::TopicNameInvalid),
                    "{version:?} {qos:?}"
                );
            }
            assert!(received(&net, s).is_empty());
            assert_eq!(net.broker.stats().retained, 0);
            // The limit itself is fine.
            let p2 = client(&mut net, version, "pub2", true, 0);
            publish(&mut net, p2, "a/b/c/d", qos, "ok");
            assert_eq!(payloads(&net, s), ["ok"]);
        }
    }
}

/// A will whose topic is over the limit is refused at CONNECT: MQTT 5 CONNACK 0x90 Topic Name
/// invalid (a CONNACK Reason Code, section 3.2.2.2 of 5.0); MQTT 3.1.1 return code 3, the
/// nearest ([MQTT-3.2.2-5] of 3.1.1: then the connection closes).
#[test]
fn will_topic_over_the_level_limit_is_refused_at_connect() {
    for (version, code) in [
        (V5, ReasonCode::TopicNameInvalid),
        (V3, ReasonCode::ServerUnavailable),
    ] {
        let mut net = net_with(levels_config(4));
        let i = net.add_client(Default::default());
        let mut c: Connect = connect_packet(version, "w", true, 0);
        c.will = Some(will("a/b/c/d/e"));
        connect(&mut net, i, c);
        assert_eq!(
            close_reason(&net, i),
            Some(CloseReason::ConnectRefused(code)),
            "{version:?}"
        );
        let mut c = connect_packet(version, "w", true, 0);
        c.will = Some(will("a/b/c/d"));
        connect(&mut net, i, c);
        assert_eq!(
            connack(&net, i).reason_code,
            ReasonCode::Success,
            "{version:?}"
        );
    }
}

fn will(t: &str) -> Will {
    Will {
        topic: topic(t),
        payload: Bytes::from_static(b"w"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    }
}

// ----- the subscription byte budgets -----

/// What one subscription to `f` counts against the budgets.
fn weight(f: &str) -> usize {
    BrokerConfig::subscription_weight(&filter(f))
}

#[test]
fn subscription_byte_budget_per_session_refuses_with_0x97_or_0x80() {
    for (version, refused) in [
        (V5, ReasonCode::QuotaExceeded),
        (V3, ReasonCode::UnspecifiedError),
    ] {
        let f = |i: usize| format!("{i}/{}", deep(100));
        let w = weight(&f(10));
        let config = BrokerConfig {
            max_subscription_bytes_per_session: 3 * w + w / 2,
            ..BrokerConfig::default()
        };
        let mut net = net_with(config);
        let c = client(&mut net, version, "c", true, 0);
        for i in 10..13 {
            subscribe(&mut net, c, &f(i), Q1);
            assert_eq!(
                suback_codes(&net, c),
                [ReasonCode::GrantedQoS1],
                "{version:?} {i}"
            );
        }
        subscribe(&mut net, c, &f(13), Q1);
        assert_eq!(suback_codes(&net, c), [refused], "{version:?}");
        // Replacing a subscription costs nothing new.
        subscribe(&mut net, c, &f(12), Q0);
        assert_eq!(suback_codes(&net, c), [ReasonCode::Success]);
        // A small one still fits in what is left.
        subscribe(&mut net, c, "x", Q0);
        assert_eq!(suback_codes(&net, c), [ReasonCode::Success]);
        // Unsubscribing gives the budget back.
        unsubscribe(&mut net, c, &f(10));
        subscribe(&mut net, c, &f(13), Q1);
        assert_eq!(suback_codes(&net, c), [ReasonCode::GrantedQoS1]);
        assert_eq!(net.broker.stats().subscriptions, 4);
    }
}

#[test]
fn subscription_byte_budget_of_the_broker_refuses_with_0x97() {
    let w = weight("a/b/c");
    let config = BrokerConfig {
        max_subscription_bytes_total: 2 * w,
        ..BrokerConfig::default()
    };
    let mut net = net_with(config);
    let a = client(&mut net, V5, "a", true, 0);
    let b = client(&mut net, V5, "b", true, 0);
    subscribe(&mut net, a, "a/b/c", Q0);
    subscribe(&mut net, b, "a/b/c", Q0);
    assert_eq!(suback_codes(&net, b), [ReasonCode::Success]);
    assert_eq!(net.broker.stats().subscription_bytes, 2 * w);
    subscribe(&mut net, b, "a/b/d", Q0);
    assert_eq!(suback_codes(&net, b), [ReasonCode::QuotaExceeded]);
    // Client a's session ends: its budget is the broker's again.
    disconnect(&mut net, a, ReasonCode::Success, None);
    subscribe(&mut net, b, "a/b/d", Q0);
    assert_eq!(suback_codes(&net, b), [ReasonCode::Success]);
    assert_eq!(net.broker.stats().subscription_bytes, 2 * w);
}

#[test]
fn the_default_budget_holds_the_default_number_of_ordinary_subscriptions() {
    // 1,000 subscriptions (the default count limit) of a filter like `devices/12345/cmd/+`.
    let config = BrokerConfig::default();
    assert!(
        config.max_subscriptions_per_session * weight("devices/12345/cmd/+")
            <= config.max_subscription_bytes_per_session
    );
}

// ----- the index agrees with `TopicFilter::matches` -----

fn level() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "", "$x"])
}

fn topic_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..5)
        .prop_map(|l| l.join("/"))
        .prop_filter("empty", |t| !t.is_empty())
}

fn filter_strategy() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop_oneof![3 => level(), 1 => Just("+")], 0..5),
        prop::bool::ANY,
    )
        .prop_filter_map("empty", |(mut l, multi)| {
            if multi {
                l.push("#");
            }
            Some(l.join("/")).filter(|f| !f.is_empty())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Reference model: a session receives a PUBLISH exactly when one of its filters matches
    /// by `TopicFilter::matches` ([MQTT-4.7.1-1]..[MQTT-4.7.2-1]), whatever the index does.
    #[test]
    fn index_matches_agree_with_topic_filter_matches(
        filters in prop::collection::vec(prop::collection::vec(filter_strategy(), 1..4), 1..8),
        topics in prop::collection::vec(topic_strategy(), 1..8),
        unsubscribe_first in prop::bool::ANY,
    ) {
        let now = Instant::from_millis(0);
        let mut broker = Broker::new(BrokerConfig::default());
        let mut conns = Vec::new();
        for (i, fs) in filters.iter().enumerate() {
            let conn = broker.open(now).unwrap();
            let mut packets = vec![Packet::from(connect_packet(V5, &format!("c{i}"), true, 0))];
            for (j, f) in fs.iter().enumerate() {
                packets.push(subscribe_packet_id(j as u16 + 1, f, Q0));
            }
            if unsubscribe_first {
                // Unsubscribing the first filter exercises the pruning.
                packets.push(Packet::from(Unsubscribe {
                    packet_id: PacketId::new(100).unwrap(),
                    filters: vec![TopicFilter::new(&fs[0]).unwrap()],
                    properties: Default::default(),
                }));
            }
            feed(&mut broker, now, conn, V5, packets);
            conns.push(conn);
        }
        drain(&mut broker, now);
        for t in &topics {
            let name = TopicName::new(t).unwrap();
            broker.publish(now, Message::new(name.clone(), Q0, Bytes::from_static(b"m")));
            let mut got: Vec<ConnectionId> = drain(&mut broker, now).into_iter().map(|(c, _)| c).collect();
            got.sort();
            let expected: Vec<ConnectionId> = filters
                .iter()
                .zip(&conns)
                .filter(|(fs, _)| {
                    fs.iter()
                        .filter(|f| !(unsubscribe_first && **f == fs[0]))
                        .any(|f| TopicFilter::new(f).unwrap().matches(&name))
                })
                .map(|(_, c)| *c)
                .collect();
            prop_assert_eq!(got, expected, "topic {}", t);
        }
        // Unsubscribing everything prunes every node.
        for (fs, conn) in filters.iter().zip(&conns) {
            let packets = vec![Packet::from(Unsubscribe {
                packet_id: PacketId::new(101).unwrap(),
                filters: fs.iter().map(|f| TopicFilter::new(f).unwrap()).collect(),
                properties: Default::default(),
            })];
            feed(&mut broker, now, *conn, V5, packets);
        }
        drain(&mut broker, now);
        prop_assert_eq!(broker.stats().subscriptions, 0);
        let debug = format!("{broker:?}");
        prop_assert!(debug.contains(EMPTY_INDEX), "{}", debug);
    }
}

/// The application's own retained message deeper than `max_topic_levels` is routed but not
/// retained: a retained message's pending deliveries hold its position level by level, so an
/// unbounded depth would cost every subscriber that much (found by the broker fuzzer: 72
/// subscribers of a 20,000-level retained topic held 40 KB each).
#[test]
fn application_retained_message_deeper_than_the_level_limit_is_not_retained() {
    let mut broker = Broker::new(levels_config(8));
    let now = Instant::from_millis(0);
    let mut message = Message::new(topic(&deep(9)), QoS::AtMostOnce, "x");
    message.retain = true;
    broker.publish(now, message);
    assert_eq!(broker.stats().retained, 0);
    assert_eq!(broker.stats().dropped_retained_too_deep, 1);
    let mut message = Message::new(topic(&deep(8)), QoS::AtMostOnce, "x");
    message.retain = true;
    broker.publish(now, message);
    assert_eq!(broker.stats().retained, 1);
}

fn with_user_properties(mut message: Message, n: usize) -> Message {
    for _ in 0..n {
        message
            .properties
            .user_properties
            .push(mqtt_streaming_proto::UserProperty {
                name: string(""),
                value: string(""),
            });
    }
    message
}

/// Each subscriber's copy of a message keeps its own list of User Properties (the payload is
/// shared), so `max_user_properties` bounds what one PUBLISH costs per subscriber: beyond it
/// the PUBLISH is acknowledged with 0x97 Quota exceeded (a PUBACK Reason Code, section
/// 3.4.2.1 of 5.0) and neither routed nor retained; at the limit it goes through.
#[test]
fn publish_with_more_user_properties_than_the_limit_is_refused_0x97() {
    let mut net = net();
    let limit = BrokerConfig::default().max_user_properties;
    let subscribers: Vec<usize> = (0..3)
        .map(|n| {
            let s = client(&mut net, V5, &format!("sub{n}"), true, 0);
            subscribe(&mut net, s, "props/#", Q1);
            s
        })
        .collect();
    let p = client(&mut net, V5, "pub", true, 0);
    let mut over = with_user_properties(Message::new(topic("props/a"), Q1, "over"), limit + 1);
    over.retain = true;
    send(&mut net, p, over);
    net.run_for(SETTLE_MS);
    assert_eq!(publish_acks(&net, p), [ReasonCode::QuotaExceeded]);
    assert_eq!(net.broker.stats().dropped_too_many_user_properties, 1);
    assert_eq!(net.broker.stats().retained, 0);
    let at = with_user_properties(Message::new(topic("props/a"), Q1, "at"), limit);
    send(&mut net, p, at);
    net.run_for(SETTLE_MS);
    for s in subscribers {
        let got = received(&net, s);
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].payload[..], b"at");
        assert_eq!(got[0].properties.user_properties.len(), limit);
    }
}

/// A will with more User Properties than `max_user_properties` would cost as much per
/// subscriber when published: the CONNECT is refused with CONNACK 0x97 Quota exceeded.
#[test]
fn will_with_more_user_properties_than_the_limit_is_refused_at_connect() {
    let mut net = net();
    let i = net.add_client(Default::default());
    let mut c: Connect = connect_packet(V5, "w", true, 0);
    let mut w = will("a/b");
    for _ in 0..=BrokerConfig::default().max_user_properties {
        w.properties
            .user_properties
            .push(mqtt_streaming_proto::UserProperty {
                name: string(""),
                value: string(""),
            });
    }
    c.will = Some(w);
    connect(&mut net, i, c);
    assert_eq!(
        close_reason(&net, i),
        Some(CloseReason::ConnectRefused(ReasonCode::QuotaExceeded))
    );
}
