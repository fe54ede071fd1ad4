//! Client session: keep alive (PINGREQ when idle, dead server detection within 1.5x keep
//! alive even under continuous QoS 0 traffic) and the server's Keep Alive.
//!
//! Statement ids name their version (3.1.1 or 5.0) in each test's first comment line.

mod support;

use mqtt_streaming_proto::{ConnAck, Packet, QoS, ReasonCode};
use mqtt_streaming_session::{ClientConfig, CloseReason, ConnectionState, Initiator, Instant};
use support::client::*;

fn with_keep_alive(
    version: mqtt_streaming_proto::ProtocolVersion,
    secs: u16,
    connack: ConnAck,
) -> Script<u32> {
    let mut s = Script::new(version, ClientConfig::default());
    let mut c = connect(version, "c");
    c.keep_alive = secs;
    s.connect(c);
    s.sent();
    s.feed(Packet::ConnAck(Box::new(connack)));
    s.events();
    s
}

fn ping_times(s: &Script<u32>) -> Vec<u64> {
    s.log
        .iter()
        .filter(|(_, p)| matches!(p, Packet::PingReq))
        .map(|(t, _)| t.as_millis())
        .collect()
}

#[test]
fn pingreq_after_an_idle_interval_and_ping_cycles() {
    // [MQTT-3.1.2-23] (3.1.1) / [MQTT-3.1.2-20] (5.0): with nothing else to send, PINGREQ
    // within the keep alive; Alpakka "ping cycles": answered pings keep the link up.
    for version in [V3, V5] {
        let mut s = with_keep_alive(version, 10, ConnAck::new(ReasonCode::Success));
        assert_eq!(s.session.poll_timeout(), Some(Instant::from_millis(10_000)));
        s.advance(9_999);
        s.assert_quiet();
        s.advance(1);
        assert_eq!(briefs(&s.sent()), ["PINGREQ"]);
        for _ in 0..3 {
            s.advance(200);
            s.feed(Packet::PingResp);
            s.advance(9_800);
            assert_eq!(briefs(&s.sent()), ["PINGREQ"]);
        }
        assert_eq!(ping_times(&s), [10_000, 20_000, 30_000, 40_000]);
        assert!(s.events().is_empty());
        assert_eq!(s.session.state(), ConnectionState::Connected);
    }
}

#[test]
fn traffic_both_ways_postpones_the_ping() {
    // [MQTT-3.1.2-23] (3.1.1): the limit is on the gap between packets the client sends; a
    // QoS 1 exchange at 6 s moves the next PINGREQ to 16 s.
    let mut s = with_keep_alive(V3, 10, ConnAck::new(ReasonCode::Success));
    s.advance(6_000);
    s.publish(msg("t", QoS::AtLeastOnce, "m"), 1).unwrap();
    s.feed(puback(1));
    s.sent();
    s.events();
    assert_eq!(s.session.poll_timeout(), Some(Instant::from_millis(16_000)));
    s.advance(9_999);
    s.assert_quiet();
    s.advance(1);
    assert_eq!(briefs(&s.sent()), ["PINGREQ"]);
}

#[test]
fn unanswered_ping_closes_within_one_and_a_half_keep_alives() {
    // Alpakka "ping failure"; [MQTT-3.1.2-24] (3.1.1) / [MQTT-3.1.2-22] (5.0) state the
    // server's 1.5x rule; the client applies the same bound to a silent server.
    for version in [V3, V5] {
        let mut s = with_keep_alive(version, 10, ConnAck::new(ReasonCode::Success));
        s.advance(10_000);
        assert_eq!(briefs(&s.sent()), ["PINGREQ"]);
        s.advance(4_999);
        s.assert_quiet();
        s.advance(1);
        assert_closed(
            &s.events(),
            Initiator::Session,
            CloseReason::KeepAliveTimeout,
        );
        assert_eq!(s.session.state(), ConnectionState::Disconnected);
        assert_eq!(s.session.poll_timeout(), None);
        s.transport_closed();
        s.assert_quiet();
    }
}

#[test]
fn dead_server_is_detected_while_the_application_publishes_qos0() {
    // [MQTT-3.1.2-22] (5.0) / [MQTT-3.1.2-24] (3.1.1), applied to the server: continuous QoS 0
    // publishing does not hide a server that stopped answering. Alpakka never detects it: its
    // ping timer only looks at what was sent.
    for version in [V3, V5] {
        let mut s = with_keep_alive(version, 10, ConnAck::new(ReasonCode::Success));
        let mut closed_at = None;
        for step in 1..=400u32 {
            s.advance(50);
            if s.session.state() != ConnectionState::Connected {
                break;
            }
            s.publish(msg("t", QoS::AtMostOnce, "tick"), step).unwrap();
            s.sent();
            let events = s.events();
            if !closes(&events).is_empty() {
                closed_at = Some(s.now.as_millis());
                assert_closed(&events, Initiator::Session, CloseReason::KeepAliveTimeout);
                break;
            }
        }
        let closed_at = closed_at.or_else(|| {
            let events = s.events();
            (!closes(&events).is_empty()).then(|| {
                assert_closed(&events, Initiator::Session, CloseReason::KeepAliveTimeout);
                s.now.as_millis()
            })
        });
        let closed_at = closed_at.expect("the dead server was never detected");
        assert!(closed_at <= 15_000, "detected only at {closed_at} ms");
        // A PINGREQ went out by one keep alive, despite the continuous traffic.
        let pings = ping_times(&s);
        assert_eq!(pings.len(), 1, "{pings:?}");
        assert!(pings[0] <= 10_000, "{pings:?}");
    }
}

#[test]
fn keep_alive_zero_means_no_pings_and_no_deadline() {
    // [MQTT-3.1.2-20] (5.0): keep alive 0 turns the mechanism off.
    let mut s = with_keep_alive(V5, 0, ConnAck::new(ReasonCode::Success));
    assert_eq!(s.session.poll_timeout(), None);
    s.advance(10_000_000);
    s.assert_quiet();
    assert_eq!(s.session.state(), ConnectionState::Connected);
}

#[test]
fn v5_server_keep_alive_replaces_ours() {
    // [MQTT-3.1.2-21], [MQTT-3.2.2-21] (5.0): the CONNACK's Server Keep Alive is used instead
    // of the Keep Alive the client sent.
    let mut ack = ConnAck::new(ReasonCode::Success);
    ack.properties.server_keep_alive = Some(5);
    let mut s = with_keep_alive(V5, 60, ack);
    s.advance(5_000);
    assert_eq!(briefs(&s.sent()), ["PINGREQ"]);
    s.advance(2_500);
    assert_closed(
        &s.events(),
        Initiator::Session,
        CloseReason::KeepAliveTimeout,
    );

    // Server Keep Alive 0 switches keep alive off even though the client asked for 60 s.
    let mut ack = ConnAck::new(ReasonCode::Success);
    ack.properties.server_keep_alive = Some(0);
    let mut s = with_keep_alive(V5, 60, ack);
    assert_eq!(s.session.poll_timeout(), None);
    s.advance(1_000_000);
    s.assert_quiet();

    // A larger Server Keep Alive lengthens it.
    let mut ack = ConnAck::new(ReasonCode::Success);
    ack.properties.server_keep_alive = Some(100);
    let mut s = with_keep_alive(V5, 10, ack);
    s.advance(99_999);
    s.assert_quiet();
    s.advance(1);
    assert_eq!(briefs(&s.sent()), ["PINGREQ"]);
}

#[test]
fn early_or_repeated_timeouts_are_harmless() {
    // The sans-IO contract: handle_timeout is idempotent and harmless when early.
    let mut s = with_keep_alive(V3, 10, ConnAck::new(ReasonCode::Success));
    for t in [0u64, 1, 5_000, 9_999, 9_999] {
        s.session.handle_timeout(Instant::from_millis(t));
        s.drain();
    }
    s.assert_quiet();
    s.now = Instant::from_millis(10_000);
    for _ in 0..3 {
        s.session.handle_timeout(s.now);
        s.drain();
    }
    assert_eq!(briefs(&s.sent()), ["PINGREQ"], "one PINGREQ, not three");
}
