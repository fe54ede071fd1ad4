//! Issue 14: read access checked on every delivery (`BrokerHooks::authorize_delivery`), as
//! mosquitto checks its ACL's `read` rules on each message it sends: through a wildcard
//! subscription, a shared subscription, a retained message sent after SUBSCRIBE and an offline
//! queue. Simulation through `BrokerNet`.
#![cfg(feature = "sim")]

mod broker_support;

use broker_support::*;
use bytes::Bytes;
use mqtt_streaming_proto::{ReasonCode, TopicName, Will, WillProperties};
use mqtt_streaming_session::broker::{
    Broker, BrokerConfig, BrokerHooks, ClientInfo, Snapshot, StoreOp,
};
use mqtt_streaming_session::sim::{BrokerNet, NetworkConfig};
use mqtt_streaming_session::Message;

/// The user "bob" may not read `a/secret`; everyone may read everything else. Counts what it
/// was asked.
#[derive(Default)]
struct NoSecretsForBob {
    asked: Vec<(String, Option<String>, String)>,
}

impl BrokerHooks for NoSecretsForBob {
    const CHECKS_DELIVERY: bool = true;

    fn authorize_delivery(&mut self, subscriber: &ClientInfo<'_>, topic: &TopicName) -> bool {
        self.asked.push((
            subscriber.client_id.to_owned(),
            subscriber.username.map(str::to_owned),
            topic.as_str().to_owned(),
        ));
        !(subscriber.username == Some("bob") && topic.as_str() == "a/secret")
    }
}

/// The same decision, but `CHECKS_DELIVERY` left at its default: never asked.
#[derive(Default)]
struct ForgotTheConst {
    asked: usize,
}

impl BrokerHooks for ForgotTheConst {
    fn authorize_delivery(&mut self, _subscriber: &ClientInfo<'_>, _topic: &TopicName) -> bool {
        self.asked += 1;
        false
    }
}

fn acl_net_with(config: BrokerConfig) -> BrokerNet<NoSecretsForBob> {
    BrokerNet::with_broker(
        7,
        NetworkConfig::default(),
        Broker::with_hooks(config, NoSecretsForBob::default()),
    )
}

fn acl_net() -> BrokerNet<NoSecretsForBob> {
    acl_net_with(BrokerConfig::default())
}

/// Adds a client with user name `user` and connects it.
fn user<H: BrokerHooks>(net: &mut BrokerNet<H>, id: &str, name: &str, clean: bool) -> usize {
    let i = net.add_client(mqtt_streaming_session::ClientConfig::default());
    let mut c = connect_packet(V5, id, clean, if clean { 0 } else { 600 });
    c.username = Some(string(name));
    connect(net, i, c);
    i
}

#[test]
fn wildcard_subscriber_does_not_get_a_topic_it_may_not_read() {
    let mut net = acl_net();
    let bob = user(&mut net, "b1", "bob", true);
    let alice = user(&mut net, "a1", "alice", true);
    subscribe(&mut net, bob, "a/#", Q1);
    subscribe(&mut net, alice, "a/#", Q1);
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "a/open", Q1, "1");
    publish(&mut net, p, "a/secret", Q1, "2");
    publish(&mut net, p, "a/open", Q0, "3");
    publish(&mut net, p, "a/secret", Q0, "4");
    assert_eq!(payloads(&net, bob), ["1", "3"]);
    assert_eq!(payloads(&net, alice), ["1", "2", "3", "4"]);
    // The publisher's acknowledgement does not tell who may read what (QoS 0 ones counted
    // as sent).
    assert_eq!(publish_acks(&net, p), [ReasonCode::Success; 4]);
    assert_eq!(net.broker.stats().deliveries_unauthorized, 2);
    // Asked once per (message, matching subscriber), with the subscriber's user name.
    let asked = &net.broker.hooks_mut().asked;
    assert_eq!(asked.len(), 8, "{asked:?}");
    assert!(asked.contains(&("b1".into(), Some("bob".into()), "a/secret".into())));
}

#[test]
fn a_subscriber_with_only_denied_matches_gets_nothing_and_the_publisher_success() {
    let mut net = acl_net();
    let bob = user(&mut net, "b1", "bob", true);
    subscribe(&mut net, bob, "a/secret", Q1);
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "a/secret", Q1, "x");
    assert!(payloads(&net, bob).is_empty());
    assert_eq!(publish_acks(&net, p), [ReasonCode::Success]);
}

#[test]
fn shared_subscription_passes_over_a_member_that_may_not_read() {
    let mut net = acl_net();
    let bob = user(&mut net, "b1", "bob", true);
    let alice = user(&mut net, "a1", "alice", true);
    subscribe(&mut net, bob, "$share/g/a/#", Q1);
    subscribe(&mut net, alice, "$share/g/a/#", Q1);
    let p = client(&mut net, V5, "pub", true, 0);
    for i in 0..4 {
        publish(&mut net, p, "a/secret", Q1, &format!("s{i}"));
    }
    // QoS 0 and messages the broker publishes itself take the other path (no holding back).
    publish(&mut net, p, "a/secret", Q0, "s4");
    net.broker.publish(
        net.now,
        Message::new(topic("a/secret"), Q1, Bytes::from_static(b"s5")),
    );
    net.run_for(SETTLE_MS);
    for i in 0..4 {
        publish(&mut net, p, "a/open", Q1, &format!("o{i}"));
    }
    // Every secret went to alice, whoever's turn it was; the open ones are shared by both.
    let got_bob = payloads(&net, bob);
    let got_alice = payloads(&net, alice);
    assert!(got_bob.iter().all(|m| m.starts_with('o')), "{got_bob:?}");
    assert_eq!(
        got_alice.iter().filter(|m| m.starts_with('s')).count(),
        6,
        "{got_alice:?}"
    );
    assert!(!got_bob.is_empty(), "bob still gets his turns: {got_bob:?}");
    assert_eq!(got_bob.len() + got_alice.len(), 10);
    assert_eq!(net.broker.stats().deliveries_unauthorized, 0);
}

#[test]
fn shared_subscription_no_member_of_which_may_read_does_not_get_it() {
    let mut net = acl_net();
    let bob = user(&mut net, "b1", "bob", true);
    let bob2 = user(&mut net, "b2", "bob", true);
    subscribe(&mut net, bob, "$share/g/a/#", Q1);
    subscribe(&mut net, bob2, "$share/g/a/#", Q1);
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "a/secret", Q1, "s1");
    publish(&mut net, p, "a/secret", Q0, "s2");
    publish(&mut net, p, "a/open", Q1, "o");
    let all: Vec<String> = [payloads(&net, bob), payloads(&net, bob2)].concat();
    assert_eq!(all, ["o"]);
    assert_eq!(
        net.broker.stats().deliveries_unauthorized,
        2,
        "once per group"
    );
    assert_eq!(publish_acks(&net, p), [ReasonCode::Success; 3]);
    // A group of one: the same.
    let solo = user(&mut net, "b3", "bob", true);
    subscribe(&mut net, solo, "$share/h/a/secret", Q1);
    publish(&mut net, p, "a/secret", Q0, "s3");
    assert!(payloads(&net, solo).is_empty());
    // The g group counted once more, the h group once.
    assert_eq!(net.broker.stats().deliveries_unauthorized, 4);
}

#[test]
fn retained_messages_at_subscribe_are_checked_too() {
    // [MQTT-3.3.1-9] (5.0) sends matching retained messages after the SUBACK: each only to a
    // subscriber that may read it.
    let mut net = acl_net();
    net.broker.publish(
        net.now,
        Message::new(topic("a/secret"), Q1, Bytes::from_static(b"s")).retained(),
    );
    net.broker.publish(
        net.now,
        Message::new(topic("a/open"), Q1, Bytes::from_static(b"o")).retained(),
    );
    let bob = user(&mut net, "b1", "bob", true);
    let alice = user(&mut net, "a1", "alice", true);
    subscribe(&mut net, bob, "a/#", Q1);
    subscribe(&mut net, alice, "a/#", Q1);
    net.run_for(SETTLE_MS);
    let got = received(&net, bob);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].topic.as_str(), "a/open");
    assert!(got[0].retain);
    let mut alice_got = payloads(&net, alice);
    alice_got.sort();
    assert_eq!(alice_got, ["o", "s"]);
    assert_eq!(net.broker.stats().deliveries_unauthorized, 1);
}

#[test]
fn an_offline_session_queues_only_what_it_may_read() {
    let mut net = acl_net();
    let bob = user(&mut net, "b1", "bob", false);
    subscribe(&mut net, bob, "a/#", Q1);
    cut(&mut net, bob);
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "a/secret", Q1, "s");
    publish(&mut net, p, "a/open", Q1, "o");
    let mut c = connect_packet(V5, "b1", false, 600);
    c.username = Some(string("bob"));
    connect(&mut net, bob, c);
    net.run_for(SETTLE_MS);
    assert_eq!(payloads(&net, bob), ["o"]);
}

#[test]
fn a_will_is_checked_per_subscriber() {
    let mut net = acl_net();
    let bob = user(&mut net, "b1", "bob", true);
    let alice = user(&mut net, "a1", "alice", true);
    subscribe(&mut net, bob, "a/#", Q1);
    subscribe(&mut net, alice, "a/#", Q1);
    let w = net.add_client(mqtt_streaming_session::ClientConfig::default());
    let mut c = connect_packet(V5, "w", true, 0);
    c.will = Some(Will {
        topic: topic("a/secret"),
        payload: Bytes::from_static(b"gone"),
        qos: Q1,
        retain: false,
        properties: WillProperties::default(),
    });
    connect(&mut net, w, c);
    cut(&mut net, w);
    assert!(payloads(&net, bob).is_empty());
    assert_eq!(payloads(&net, alice), ["gone"]);
}

#[test]
fn hooks_that_leave_checks_delivery_false_are_never_asked() {
    // The default path does no work per delivery: the hook is not even called.
    let mut net = BrokerNet::with_broker(
        7,
        NetworkConfig::default(),
        Broker::with_hooks(BrokerConfig::default(), ForgotTheConst::default()),
    );
    let s = client(&mut net, V5, "s", true, 0);
    subscribe(&mut net, s, "a/#", Q1);
    let p = client(&mut net, V5, "p", true, 0);
    publish(&mut net, p, "a/secret", Q1, "x");
    assert_eq!(payloads(&net, s), ["x"]);
    assert_eq!(net.broker.hooks_mut().asked, 0);
}

#[test]
fn a_restored_session_is_checked_with_its_stored_user_name() {
    // After a restart, messages routed to a persistent session before its client connects
    // again are checked against the user name of its last CONNECT, kept in the records.
    let config = BrokerConfig {
        persistence: true,
        ..BrokerConfig::default()
    };
    let mut net = acl_net_with(config.clone());
    let mut store = std::collections::BTreeMap::<Vec<u8>, Vec<u8>>::new();
    let drain = |broker: &mut Broker<NoSecretsForBob>,
                 store: &mut std::collections::BTreeMap<Vec<u8>, Vec<u8>>| {
        while let Some(change) = broker.poll_change() {
            let mut ops = Vec::new();
            change.ops(0, &mut ops);
            for op in ops {
                match op {
                    StoreOp::Put(k, v) | StoreOp::Insert(k, v) => {
                        store.insert(k, v);
                    }
                    StoreOp::Delete(k) => {
                        store.remove(&k);
                    }
                    StoreOp::DeletePrefix(p) => store.retain(|k, _| !k.starts_with(&p)),
                }
            }
        }
    };
    let bob = user(&mut net, "b1", "bob", false);
    subscribe(&mut net, bob, "a/#", Q1);
    cut(&mut net, bob);
    drain(&mut net.broker, &mut store);
    // kill -9, restart from the records.
    let now = net.now;
    let mut broker = Broker::with_hooks(config, NoSecretsForBob::default());
    broker.restore(now, Snapshot::load(store.iter()).unwrap(), now.as_millis());
    net.broker = broker;
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "a/secret", Q1, "s");
    publish(&mut net, p, "a/open", Q1, "o");
    assert!(net.broker.hooks_mut().asked.contains(&(
        "b1".into(),
        Some("bob".into()),
        "a/secret".into()
    )));
    let mut c = connect_packet(V5, "b1", false, 600);
    c.username = Some(string("bob"));
    connect(&mut net, bob, c);
    assert!(connack(&net, bob).session_present);
    net.run_for(SETTLE_MS);
    assert_eq!(payloads(&net, bob), ["o"]);
}

#[test]
fn a_held_back_shared_message_waits_for_a_member_that_may_read_it() {
    // Overload: the only member of the group that may read `a/secret` is full. The held-back
    // copies wait for that member (not for the one whose turn it was, which may not read
    // them): as she acknowledges, they reach her, and the publisher gets its PUBACKs; the
    // other member is not taken for a stalled subscriber.
    let mut net = acl_net_with(BrokerConfig {
        server: BrokerConfig::default().server.with_max_queued(1),
        stalled_subscriber_timeout: std::time::Duration::from_secs(30),
        ..BrokerConfig::default()
    });
    let bob = user(&mut net, "b1", "bob", true);
    let alice = net.add_client(
        mqtt_streaming_session::ClientConfig::default()
            .with_ack_mode(mqtt_streaming_session::AckMode::Manual)
            .with_receive_maximum(1),
    );
    let mut c = connect_packet(V5, "a1", true, 0);
    c.username = Some(string("alice"));
    connect(&mut net, alice, c);
    subscribe(&mut net, bob, "$share/g/a/#", Q1);
    subscribe(&mut net, alice, "$share/g/a/#", Q1);
    let p = client(&mut net, V5, "pub", true, 0);
    for n in 0..6 {
        send(
            &mut net,
            p,
            Message::new(topic("a/secret"), Q1, Bytes::from(n.to_string())),
        );
    }
    net.run_for(SETTLE_MS);
    assert!(net.broker.stats().parked > 0, "held back");
    let mut acked = 0;
    for _ in 0..20 {
        let now = net.now;
        let ids: Vec<_> = net.clients[alice].events[acked..]
            .iter()
            .filter_map(|e| match e {
                mqtt_streaming_session::ClientEvent::Message { ack: Some(id), .. } => Some(*id),
                _ => None,
            })
            .collect();
        acked = net.clients[alice].events.len();
        for id in ids {
            net.clients[alice]
                .session
                .ack(now, id, ReasonCode::Success)
                .unwrap();
        }
        net.run_for(100);
    }
    // Well within the stall timeout.
    assert!(net.now.as_millis() < 10_000);
    assert_eq!(payloads(&net, alice), ["0", "1", "2", "3", "4", "5"]);
    assert!(payloads(&net, bob).is_empty());
    assert_eq!(publish_acks(&net, p), [ReasonCode::Success; 6]);
    assert_eq!(net.broker.stats().parked, 0);
    assert_eq!(net.broker.stats().stalled_subscribers_disconnected, 0);
}
