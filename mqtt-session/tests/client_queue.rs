//! Client session: the publish queue's bound (messages and bytes) and overflow policies, the
//! queue held while a reconnecting client subscribes again, and unacknowledged publishes put
//! back in the queue when the server lost the session.

mod support;

use mqtt_streaming_proto::{Packet, QoS, ReasonCode};
use mqtt_streaming_session::{
    AbandonCause, ClientConfig, ClientEvent, CommandError, QueueOverflow, SubscribeRequest,
};
use support::client::*;

/// A connected session whose window is one message, so that further publishes queue.
fn one_in_flight(config: ClientConfig) -> Script<u32> {
    let mut s = Script::new(V5, config.with_max_inflight(1));
    s.connect(resume(V5, "c"));
    s.sent();
    s.feed(connack(false));
    s.events();
    s
}

fn abandoned(events: &[ClientEvent<u32>]) -> Vec<(u32, AbandonCause)> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Abandoned { token, cause, .. } => Some((*token, cause.clone())),
            _ => None,
        })
        .collect()
}

fn payloads(sent: &[Packet]) -> Vec<String> {
    publishes(sent)
        .iter()
        .map(|p| String::from_utf8(p.payload.to_vec()).unwrap())
        .collect()
}

#[test]
fn refuse_new_hands_the_message_back_when_the_byte_bound_is_reached() {
    let mut s = one_in_flight(ClientConfig::default().with_max_queued_bytes(10));
    s.publish(msg("t", QoS::AtLeastOnce, "0000"), 0).unwrap(); // in flight
    s.publish(msg("t", QoS::AtLeastOnce, "1111"), 1).unwrap();
    s.publish(msg("t", QoS::AtLeastOnce, "2222"), 2).unwrap();
    assert_eq!(s.session.queued_bytes(), 10);
    let refused = s
        .publish(msg("t", QoS::AtLeastOnce, "3333"), 3)
        .unwrap_err();
    assert_eq!(refused.error, CommandError::QueueFull);
    assert_eq!(refused.token, 3);
    assert_eq!(&refused.command.payload[..], b"3333");
    // The first ack makes room for one.
    s.sent();
    s.feed(puback(1));
    assert_eq!(s.session.queued_bytes(), 5);
    s.publish(msg("t", QoS::AtLeastOnce, "3333"), 3).unwrap();
    assert_eq!(s.session.queued_bytes(), 10);
}

#[test]
fn one_message_larger_than_the_byte_bound_still_queues_alone() {
    let mut s = one_in_flight(ClientConfig::default().with_max_queued_bytes(2));
    s.publish(msg("t", QoS::AtLeastOnce, "in flight"), 0)
        .unwrap();
    s.publish(msg("t", QoS::AtLeastOnce, "too big"), 1).unwrap();
    assert_eq!(s.session.queued_len(), 1);
    assert!(s.publish(msg("t", QoS::AtLeastOnce, "x"), 2).is_err());
}

#[test]
fn drop_oldest_abandons_the_front_of_the_queue_with_overflow() {
    let mut s = one_in_flight(
        ClientConfig::default()
            .with_max_queued(2)
            .with_queue_overflow(QueueOverflow::DropOldest),
    );
    for n in 0..5u32 {
        s.publish(
            msg("t", QoS::AtLeastOnce, ["0", "1", "2", "3", "4"][n as usize]),
            n,
        )
        .unwrap();
    }
    // 0 in flight (never dropped), 1 and 2 dropped for 3 and 4.
    let events = s.events();
    assert_eq!(
        abandoned(&events),
        [(1, AbandonCause::Overflow), (2, AbandonCause::Overflow)]
    );
    assert!(events.iter().all(|e| match e {
        ClientEvent::Abandoned { message, .. } => message.is_some(),
        _ => true,
    }));
    assert_eq!(payloads(&s.sent()), ["0"]);
    s.feed(puback(1));
    assert_eq!(payloads(&s.sent()), ["3"]);
}

#[test]
fn drop_qos0_first_keeps_qos1_and_refuses_when_no_qos0_is_left() {
    let mut s = one_in_flight(
        ClientConfig::default()
            .with_max_queued(2)
            .with_queue_overflow(QueueOverflow::DropQoS0First),
    );
    s.publish(msg("t", QoS::AtLeastOnce, "a"), 0).unwrap(); // in flight
    s.publish(msg("t", QoS::AtLeastOnce, "b"), 1).unwrap(); // queued (QoS 0 waits behind it)
    s.publish(msg("t", QoS::AtMostOnce, "c"), 2).unwrap();
    s.publish(msg("t", QoS::AtLeastOnce, "d"), 3).unwrap(); // drops "c"
    assert_eq!(abandoned(&s.events()), [(2, AbandonCause::Overflow)]);
    let refused = s.publish(msg("t", QoS::AtMostOnce, "e"), 4).unwrap_err();
    assert_eq!(refused.error, CommandError::QueueFull);
    s.sent();
    s.feed(puback(1));
    s.feed(puback(2));
    assert_eq!(payloads(&s.sent()), ["b", "d"]);
}

#[test]
fn a_held_queue_lets_subscribe_out_and_keeps_publishes_until_released() {
    let mut s = Script::new(V5, ClientConfig::default());
    s.connect(connect(V5, "c"));
    s.sent();
    s.feed(connack(false));
    s.events();
    s.session.hold_queue();
    assert!(s.session.is_queue_held());
    s.publish(msg("t", QoS::AtLeastOnce, "held"), 1).unwrap();
    s.publish(msg("t", QoS::AtMostOnce, "held 0"), 2).unwrap();
    s.subscribe(SubscribeRequest::new(filter("t"), QoS::AtLeastOnce), 3)
        .unwrap();
    assert_eq!(briefs(&s.sent()), ["SUBSCRIBE1"]);
    s.feed(suback(1, &[ReasonCode::GrantedQoS1]));
    assert!(s.sent().is_empty(), "nothing before the release");
    s.session.release_queue(s.now);
    s.drain();
    assert_eq!(payloads(&s.sent()), ["held", "held 0"]);
}

#[test]
fn session_loss_requeues_unacked_publishes_first_and_completes_released_qos2() {
    // [MQTT-4.4.0-1] resends only with a session present: with Session Present 0 the flows
    // cannot be resumed, so they are published again as new messages, before the queue.
    let mut s = Script::new(
        V5,
        ClientConfig::default()
            .with_max_inflight(3)
            .with_requeue_on_session_loss(true),
    );
    s.connect(connect(V5, "c"));
    s.sent();
    s.feed(connack(false));
    s.events();
    s.publish(msg("t", QoS::AtLeastOnce, "q1"), 1).unwrap();
    s.publish(msg("t", QoS::ExactlyOnce, "q2 received"), 2)
        .unwrap();
    s.publish(msg("t", QoS::ExactlyOnce, "q2 sent"), 3).unwrap();
    s.publish(msg("t", QoS::AtLeastOnce, "queued"), 4).unwrap();
    s.sent();
    s.feed(pubrec(2));
    s.sent(); // PUBREL 2
    s.transport_closed();
    s.events();
    s.connect(resume(V5, "c"));
    s.sent();
    s.feed(connack(false));
    let events = s.events();
    assert!(abandoned(&events).is_empty(), "{events:?}");
    let completed: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Published {
                token, reason_code, ..
            } => {
                assert_eq!(*reason_code, ReasonCode::Success);
                Some(*token)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        completed,
        [2],
        "the QoS 2 message the server took completes"
    );
    let sent = s.sent();
    assert_eq!(payloads(&sent), ["q1", "q2 sent", "queued"]);
    assert!(publishes(&sent).iter().all(|p| !p.dup), "new messages");
}

#[test]
fn without_requeue_session_loss_abandons_in_flight_publishes() {
    let mut s = Script::new(V5, ClientConfig::default());
    s.connect(connect(V5, "c"));
    s.sent();
    s.feed(connack(false));
    s.publish(msg("t", QoS::AtLeastOnce, "q1"), 1).unwrap();
    s.sent();
    s.transport_closed();
    s.events();
    s.connect(resume(V5, "c"));
    s.sent();
    s.feed(connack(false));
    assert_eq!(abandoned(&s.events()), [(1, AbandonCause::SessionLost)]);
}
