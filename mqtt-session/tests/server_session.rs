//! Server session: session lifetime across connections (detach, enqueue while offline, resume
//! with Session Present and re-sends, clean start discarding, into_abandoned) and the
//! equivalents of Alpakka's server cases (flow through a server session, reconnect after
//! DISCONNECT and after a dropped connection, re-send to a reconnected client).
//!
//! Statement ids name their version (3.1.1 or 5.0) in each test's first comment line.

mod support;

use core::num::NonZeroU16;

use mqtt_streaming_proto::{ConnAckProperties, Packet, QoS, ReasonCode};
use mqtt_streaming_session::{
    AbandonCause, CloseReason, CommandError, Initiator, Instant, ServerConfig, ServerEvent,
    ServerState, SessionState,
};
use support::server::*;

/// A persistent-session connection of client "c" with `pending` outbound messages sent and
/// unacknowledged: a QoS 1 (token 1, id 1), a QoS 2 (token 2, id 2) and, after PUBREC, a QoS 2
/// waiting for PUBCOMP (token 3, id 3). Then the transport drops.
fn dropped_with_inflight(version: mqtt_streaming_proto::ProtocolVersion) -> SessionState<u32> {
    let mut s = accepted_with(ServerConfig::default(), resume(version, "c"));
    s.publish(msg("a", QoS::AtLeastOnce, "one"), 1).unwrap();
    s.publish(msg("b", QoS::ExactlyOnce, "two"), 2).unwrap();
    s.publish(msg("c", QoS::ExactlyOnce, "three"), 3).unwrap();
    assert_eq!(
        briefs(&s.sent()),
        ["PUBLISH1 a", "PUBLISH2 b", "PUBLISH3 c"]
    );
    s.feed(pubrec(3));
    assert_eq!(briefs(&s.sent()), ["PUBREL3"]);
    assert!(s.session.detach().is_none(), "not before the close");
    s.transport_closed();
    assert_closed(
        &s.events(),
        Initiator::Transport,
        CloseReason::TransportClosed,
    );
    let state = s.session.detach().expect("detached");
    assert!(s.session.detach().is_none(), "only once");
    assert_eq!(state.inflight_len(), 3);
    state
}

#[test]
fn resume_resends_inflight_then_queued_in_order() {
    // [MQTT-4.4.0-1] (3.1.1 and 5.0) and [MQTT-3.2.2-2] (3.1.1) / [MQTT-3.2.2-3] (5.0): a
    // Clean Start 0 reconnect with stored state gets Session Present 1; unacknowledged PUBLISHes
    // are re-sent with DUP and their original ids, the PUBREL re-sent (not the PUBLISH,
    // [MQTT-4.3.3-6] 5.0), in original order ([MQTT-4.6.0-1]); messages queued while the client
    // was away follow, in order (Alpakka "re-send to a reconnected client").
    for version in [V3, V5] {
        let mut state = dropped_with_inflight(version);
        state
            .enqueue(Instant::ZERO, msg("q", QoS::AtLeastOnce, "four"), 4)
            .unwrap();
        state
            .enqueue(Instant::ZERO, msg("q", QoS::AtMostOnce, "five"), 5)
            .unwrap();
        assert_eq!(state.queued_len(), 2);
        let mut s = Server::new(version, ServerConfig::default());
        s.connect(resume(version, "c"));
        let sent = s.accept_with(ConnAckProperties::default(), Some(state));
        let Packet::ConnAck(ack) = &sent[0] else {
            panic!()
        };
        assert!(ack.session_present);
        assert_eq!(
            briefs(&sent[1..]),
            [
                "PUBLISH1 DUP a",
                "PUBLISH2 DUP b",
                "PUBREL3",
                "PUBLISH4 q",
                "PUBLISH0 q"
            ]
        );
        let ps = publishes(&sent);
        assert_eq!(&ps[0].payload[..], b"one");
        assert!(!ps[2].dup, "new messages are not DUP");
        assert_eq!(published(&s.events()), [(5, ReasonCode::Success)]);
        // The flows complete on the new connection with their tokens.
        s.feed(puback(1));
        s.feed(pubrec(2));
        assert_eq!(briefs(&s.sent()), ["PUBREL2"]);
        s.feed(pubcomp(2));
        s.feed(pubcomp(3));
        s.feed(puback(4));
        assert_eq!(
            published(&s.events()),
            [
                (1, ReasonCode::Success),
                (2, ReasonCode::Success),
                (3, ReasonCode::Success),
                (4, ReasonCode::Success)
            ]
        );
        assert_eq!(s.session.inflight_len(), 0);
        // New ids do not collide with the resumed ones.
        s.publish(msg("n", QoS::AtLeastOnce, "six"), 6).unwrap();
        assert_eq!(briefs(&s.sent()), ["PUBLISH5 n"]);
    }
}

#[test]
fn clean_start_discards_the_stored_session() {
    // [MQTT-3.1.2-6] and [MQTT-3.2.2-1] (3.1.1) / [MQTT-3.1.2-4] and [MQTT-3.2.2-2] (5.0):
    // Clean Start 1 discards the stored session: Session Present 0, nothing re-sent, and every
    // token it held comes back as Abandoned (SessionLost) with its message.
    for version in [V3, V5] {
        let mut state = dropped_with_inflight(version);
        state
            .enqueue(Instant::ZERO, msg("q", QoS::AtLeastOnce, "four"), 4)
            .unwrap();
        let mut s = Server::new(version, ServerConfig::default());
        s.connect(connect(version, "c"));
        let sent = s.accept_with(ConnAckProperties::default(), Some(state));
        assert_eq!(sent.len(), 1, "{sent:?}");
        let Packet::ConnAck(ack) = &sent[0] else {
            panic!()
        };
        assert!(!ack.session_present);
        let mut abandoned: Vec<(u32, String)> = s
            .events()
            .into_iter()
            .map(|e| match e {
                ServerEvent::Abandoned {
                    token,
                    cause: AbandonCause::SessionLost,
                    message: Some(m),
                } => (token, String::from_utf8(m.payload.to_vec()).unwrap()),
                other => panic!("{other:?}"),
            })
            .collect();
        abandoned.sort();
        assert_eq!(
            abandoned,
            [
                (1, "one".into()),
                (2, "two".into()),
                (3, "three".into()),
                (4, "four".into())
            ]
        );
        // A fresh session: ids start over.
        s.publish(msg("n", QoS::AtLeastOnce, "x"), 9).unwrap();
        assert_eq!(briefs(&s.sent()), ["PUBLISH1 n"]);
    }
}

#[test]
fn session_present_0_without_stored_state() {
    // [MQTT-3.2.2-3] (3.1.1) / [MQTT-3.2.2-3] (5.0): Clean Start 0 without stored state:
    // Session Present 0.
    for version in [V3, V5] {
        let mut s = Server::new(version, ServerConfig::default());
        s.connect(resume(version, "c"));
        assert!(!s.accept().session_present);
    }
}

#[test]
fn enqueue_while_offline_is_bounded() {
    // [MQTT-3.1.2-5] (3.1.1): messages for an absent persistent client are queued by the
    // owner; the queue is bounded and a full one hands the message and token back.
    let mut state: SessionState<u32> = SessionState::new(2);
    state
        .enqueue(Instant::ZERO, msg("a", QoS::AtLeastOnce, "1"), 1)
        .unwrap();
    state
        .enqueue(Instant::ZERO, msg("a", QoS::ExactlyOnce, "2"), 2)
        .unwrap();
    let r = state
        .enqueue(Instant::ZERO, msg("a", QoS::AtMostOnce, "3"), 3)
        .unwrap_err();
    assert_eq!(r.error, CommandError::QueueFull);
    assert_eq!(r.token, 3);
    assert_eq!(r.command, msg("a", QoS::AtMostOnce, "3"));
    assert_eq!(state.queued_len(), 2);
    // A new session for a client seen for the first time: Session Present 1 (the server has
    // state for it) and the queue is delivered.
    let mut s = Server::new(V3, ServerConfig::default());
    s.connect(resume(V3, "c"));
    let sent = s.accept_with(ConnAckProperties::default(), Some(state));
    let Packet::ConnAck(ack) = &sent[0] else {
        panic!()
    };
    assert!(ack.session_present);
    assert_eq!(briefs(&sent[1..]), ["PUBLISH1 a", "PUBLISH2 a"]);
}

#[test]
fn into_abandoned_returns_every_token() {
    // An expired session hands back every message it held, in-flight first, then queued.
    let mut state = dropped_with_inflight(V5);
    state
        .enqueue(Instant::ZERO, msg("q", QoS::AtLeastOnce, "four"), 4)
        .unwrap();
    let back = state.into_abandoned();
    let tokens: Vec<u32> = back.iter().map(|(t, _)| *t).collect();
    assert_eq!(tokens, [1, 2, 3, 4]);
    assert_eq!(&back[0].1.payload[..], b"one");
    assert_eq!(back[2].1.qos, QoS::ExactlyOnce);
}

#[test]
fn no_session_to_detach_unless_accepted_and_closed() {
    // Only an accepted, closed connection has a session to detach.
    let mut s = Server::new(V3, ServerConfig::default());
    s.connect(connect(V3, "c"));
    s.reject(ReasonCode::NotAuthorized).unwrap();
    assert!(s.session.detach().is_none());
    let mut s = accepted(V3);
    assert!(s.session.detach().is_none());
    assert_eq!(s.state(), ServerState::Connected);
}

#[test]
fn inbound_qos2_survives_the_reconnect() {
    // [MQTT-4.3.3-10] and [MQTT-4.4.0-1] (5.0) / [MQTT-4.3.3-2] (3.1.1): a QoS 2 message
    // answered with PUBREC before the connection dropped is not delivered again when the
    // client re-sends it with DUP after resuming, and its PUBREL gets PUBCOMP (Alpakka
    // "duplicate inbound publish" across a reconnect).
    for version in [V3, V5] {
        let mut s = accepted_with(ServerConfig::default(), resume(version, "c"));
        s.feed(client_publish("t", QoS::ExactlyOnce, 7, "once"));
        assert_eq!(briefs(&s.sent()), ["PUBREC7"]);
        assert_eq!(delivered(&s.events()).len(), 1);
        s.transport_closed();
        s.events();
        let state = s.session.detach();
        let mut s = Server::new(version, ServerConfig::default());
        s.connect(resume(version, "c"));
        let sent = s.accept_with(ConnAckProperties::default(), state);
        assert_eq!(briefs(&sent), ["CONNACK(0x00)"]);
        let mut dup = publish("t", QoS::ExactlyOnce, 7, "once");
        dup.dup = true;
        s.feed(Packet::Publish(dup));
        assert_eq!(briefs(&s.sent()), ["PUBREC7"]);
        assert!(s.events().is_empty(), "not delivered twice");
        s.feed(pubrel(7));
        match &s.sent()[..] {
            [Packet::PubComp(c)] => assert_eq!(c.reason_code, ReasonCode::Success),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn resend_respects_the_new_connections_receive_maximum_v5() {
    // [MQTT-3.3.4-9] (5.0): re-sent PUBLISHes count against the Receive Maximum the client
    // sends on the new connection; the rest wait, in order, before anything new.
    let mut s = accepted_with(ServerConfig::default(), resume(V5, "c"));
    for i in 1..=3 {
        s.publish(msg("a", QoS::AtLeastOnce, "x"), i).unwrap();
    }
    s.sent();
    s.transport_closed();
    s.events();
    let mut state = s.session.detach().unwrap();
    state
        .enqueue(Instant::ZERO, msg("a", QoS::AtLeastOnce, "new"), 4)
        .unwrap();
    let mut c = resume(V5, "c");
    c.properties.receive_maximum = NonZeroU16::new(1);
    let mut s = Server::new(V5, ServerConfig::default());
    s.connect(c);
    let sent = s.accept_with(ConnAckProperties::default(), Some(state));
    assert_eq!(briefs(&sent[1..]), ["PUBLISH1 DUP a"]);
    s.feed(puback(1));
    assert_eq!(briefs(&s.sent()), ["PUBLISH2 DUP a"]);
    s.feed(puback(2));
    assert_eq!(briefs(&s.sent()), ["PUBLISH3 DUP a"]);
    s.feed(puback(3));
    assert_eq!(briefs(&s.sent()), ["PUBLISH4 a"]);
}

#[test]
fn outbound_topic_aliases_start_over_on_the_new_connection_v5() {
    // [MQTT-3.3.2-7] (5.0): alias mappings do not carry over: after a resume, the first
    // PUBLISH to a topic carries the topic again (and re-sends carry the full topic).
    let config = ServerConfig::default().with_auto_topic_alias(true);
    let mut c = resume(V5, "c");
    c.properties.topic_alias_maximum = Some(4);
    let mut s = accepted_with(config.clone(), c.clone());
    s.publish(msg("long/topic", QoS::AtLeastOnce, "1"), 1)
        .unwrap();
    s.publish(msg("long/topic", QoS::AtLeastOnce, "2"), 2)
        .unwrap();
    let sent = s.sent();
    assert_eq!(publishes(&sent)[1].topic.as_str(), "");
    s.transport_closed();
    s.events();
    let state = s.session.detach();
    let mut s = Server::new(V5, config);
    s.connect(c);
    let sent = s.accept_with(ConnAckProperties::default(), state);
    let resent = publishes(&sent);
    assert_eq!(resent.len(), 2);
    assert!(resent
        .iter()
        .all(|p| p.topic.as_str() == "long/topic" && p.dup));
    s.publish(msg("long/topic", QoS::AtMostOnce, "3"), 3)
        .unwrap();
    let sent = s.sent();
    assert_eq!(publishes(&sent)[0].topic.as_str(), "long/topic");
}

// ----- Alpakka server cases -----

#[test]
fn flow_through_a_server_session() {
    // Alpakka "flow through a server session"; [MQTT-3.2.0-1], [MQTT-3.8.4-1],
    // [MQTT-3.3.4-1] (3.1.1): CONNECT -> CONNACK, SUBSCRIBE -> SUBACK, the client's QoS 1
    // PUBLISH -> PUBACK, a PUBLISH to the client -> its PUBACK completes the token,
    // DISCONNECT -> one normal Closed.
    let mut s = Server::new(V3, ServerConfig::default());
    let c = s.connect(connect(V3, "flow"));
    assert_eq!(c.client_id.as_str(), "flow");
    assert_eq!(
        briefs(&s.accept_with(Default::default(), None)),
        ["CONNACK(0x00)"]
    );
    s.feed(subscribe(1, &[("topic1", QoS::AtLeastOnce)]));
    assert!(matches!(&s.events()[..], [ServerEvent::Subscribe(_)]));
    s.suback(1, &[ReasonCode::GrantedQoS1]).unwrap();
    assert_eq!(briefs(&s.sent()), ["SUBACK1"]);
    s.feed(client_publish("topic1", QoS::AtLeastOnce, 2, "ohi"));
    assert_eq!(briefs(&s.sent()), ["PUBACK2"]);
    assert_eq!(delivered(&s.events())[0].0, "topic1");
    s.publish(msg("topic1", QoS::AtLeastOnce, "ohi"), 42)
        .unwrap();
    assert_eq!(briefs(&s.sent()), ["PUBLISH1 topic1"]);
    s.feed(puback(1));
    assert_eq!(published(&s.events()), [(42, ReasonCode::Success)]);
    s.feed(disconnect_packet(ReasonCode::Success));
    let events = s.events();
    assert_closed(
        &events,
        Initiator::Peer,
        CloseReason::Disconnect(ReasonCode::Success),
    );
}

#[test]
fn reconnect_after_disconnect_with_the_session_resumed() {
    // Alpakka "reconnect after DISCONNECT"; [MQTT-3.1.2-4] (3.1.1): a persistent session
    // outlives a normal DISCONNECT: the unacknowledged QoS 1 message is re-sent on the next
    // connection of the same client.
    let mut s = accepted_with(ServerConfig::default(), resume(V3, "c"));
    s.publish(msg("t", QoS::AtLeastOnce, "keep"), 1).unwrap();
    s.sent();
    s.feed(disconnect_packet(ReasonCode::Success));
    assert!(closes(&s.events())[0].1.is_normal());
    let state = s.session.detach();
    let mut s = Server::at(V3, ServerConfig::default(), Instant::from_millis(5_000));
    s.connect(resume(V3, "c"));
    let sent = s.accept_with(ConnAckProperties::default(), state);
    assert_eq!(briefs(&sent), ["CONNACK(0x00)", "PUBLISH1 DUP t"]);
    let Packet::ConnAck(ack) = &sent[0] else {
        panic!()
    };
    assert!(ack.session_present);
    s.feed(puback(1));
    assert_eq!(published(&s.events()), [(1, ReasonCode::Success)]);
}

#[test]
fn reconnect_after_a_dropped_connection_with_the_session_resumed_v5() {
    // Alpakka "reconnect after a dropped connection"; [MQTT-3.1.2-5] and [MQTT-3.2.2-3] (5.0):
    // after a transport loss the session (Session Expiry Interval > 0) resumes, Session
    // Present 1, re-sends first; a manual ack pending from the old connection still works on
    // the inbound side once the client re-sends.
    let config = ServerConfig::default().with_ack_mode(mqtt_streaming_session::AckMode::Manual);
    let mut s = accepted_with(config.clone(), resume(V5, "c"));
    s.feed(client_publish("in", QoS::AtLeastOnce, 3, "up"));
    let ack_id = delivered(&s.events())[0].2.unwrap();
    s.publish(msg("out", QoS::ExactlyOnce, "down"), 1).unwrap();
    s.sent();
    s.transport_closed();
    let will = assert_closed(
        &s.events(),
        Initiator::Transport,
        CloseReason::TransportClosed,
    );
    assert!(will.is_none());
    let state = s.session.detach();
    let mut s = Server::new(V5, config);
    s.connect(resume(V5, "c"));
    let sent = s.accept_with(ConnAckProperties::default(), state);
    assert_eq!(briefs(&sent), ["CONNACK(0x00)", "PUBLISH1 DUP out"]);
    // The client re-sends its unacknowledged QoS 1 PUBLISH: not delivered again.
    let mut dup = publish("in", QoS::AtLeastOnce, 3, "up");
    dup.dup = true;
    s.feed(Packet::Publish(dup));
    assert!(delivered(&s.events()).is_empty());
    s.ack(ack_id, ReasonCode::Success).unwrap();
    assert_eq!(briefs(&s.sent()), ["PUBACK3"]);
}

/// Issue 12: a broker keeps one `ServerSession` per connected client, so its size is part of
/// what every idle connection costs. What only the way to CONNACK needs (the configuration,
/// the deadline, held packets, the offered will) is boxed and dropped once the connection is
/// accepted, and the topic alias tables are allocated by their first alias.
#[test]
fn an_idle_server_session_stays_small() {
    let size = core::mem::size_of::<mqtt_streaming_session::ServerSession<u32>>();
    assert!(size <= 560, "ServerSession is {size} bytes (712 before)");
}
