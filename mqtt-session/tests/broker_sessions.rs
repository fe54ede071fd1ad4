//! Issue 5, sessions by client id, in simulation (`BrokerNet`): takeover, clean start,
//! persistent sessions and their expiry, Session Present, subscriptions across reconnects.
#![cfg(feature = "sim")]

mod broker_support;

use broker_support::*;
use mqtt_streaming_proto::ReasonCode;
use mqtt_streaming_session::broker::BrokerEvent;
use mqtt_streaming_session::CloseReason;

#[test]
fn takeover_v5_old_connection_gets_disconnect_0x8e() {
    // [MQTT-3.1.4-3] 5.0: the existing connection gets DISCONNECT 0x8E and is closed.
    let mut net = net();
    let old = client(&mut net, V5, "dev", false, 600);
    let new = client(&mut net, V5, "dev", false, 600);
    assert_eq!(
        close_reason(&net, old),
        Some(CloseReason::Disconnect(ReasonCode::SessionTakenOver))
    );
    assert!(net.clients[old].link.is_none(), "old transport closed");
    assert!(close_reason(&net, new).is_none());
    assert!(connack(&net, new).session_present);
    assert_eq!(net.broker.stats().connections, 1);
    assert_eq!(net.broker.stats().sessions, 1);
}

#[test]
fn takeover_v311_closes_old_connection() {
    // [MQTT-3.1.4-2] 3.1.1: the server disconnects the existing client (no DISCONNECT).
    let mut net = net();
    let old = client(&mut net, V3, "dev", true, 0);
    let new = client(&mut net, V3, "dev", true, 0);
    assert!(net.clients[old].link.is_none());
    assert_eq!(close_reason(&net, old), Some(CloseReason::TransportClosed));
    assert!(net.clients[new].link.is_some());
    assert_eq!(net.broker.stats().connections, 1);
}

#[test]
fn clean_start_discards_the_stored_session() {
    // [MQTT-3.1.2-4] 5.0 / [MQTT-3.1.2-6] 3.1.1: Clean Start discards any existing session.
    let mut net = net();
    let c = client(&mut net, V5, "dev", false, 600);
    subscribe(&mut net, c, "a/#", Q1);
    cut(&mut net, c);
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "a/1", Q1, "queued");
    connect(&mut net, c, connect_packet(V5, "dev", true, 600));
    assert!(!connack(&net, c).session_present);
    assert!(payloads(&net, c).is_empty(), "queued message discarded");
    publish(&mut net, p, "a/2", Q1, "after");
    assert!(payloads(&net, c).is_empty(), "subscription discarded");
    assert_eq!(net.broker.stats().subscriptions, 0);
}

#[test]
fn persistent_session_v311_clean_session_0_resumes_with_subscriptions() {
    // [MQTT-3.1.2-4] 3.1.1: clean session 0 resumes the session; [MQTT-3.2.2-2] session present.
    let mut net = net();
    let c = client(&mut net, V3, "dev", false, 0);
    assert!(!connack(&net, c).session_present);
    subscribe(&mut net, c, "a/+", Q1);
    cut(&mut net, c);
    net.run_for(3_600_000);
    let p = client(&mut net, V3, "pub", true, 0);
    publish(&mut net, p, "a/1", Q1, "while away");
    connect(&mut net, c, connect_packet(V3, "dev", false, 0));
    assert!(connack(&net, c).session_present);
    assert_eq!(payloads(&net, c), ["while away"]);
    publish(&mut net, p, "a/2", Q1, "after");
    assert_eq!(
        payloads(&net, c),
        ["while away", "after"],
        "subscription survived"
    );
}

#[test]
fn v311_clean_session_1_ends_with_the_connection() {
    // [MQTT-3.1.2-6] 3.1.1: a clean session lasts as long as the network connection.
    let mut net = net();
    let c = client(&mut net, V3, "dev", true, 0);
    subscribe(&mut net, c, "a", Q1);
    cut(&mut net, c);
    assert_eq!(net.broker.stats().sessions, 0);
    assert_eq!(net.broker.stats().subscriptions, 0);
    connect(&mut net, c, connect_packet(V3, "dev", false, 0));
    assert!(!connack(&net, c).session_present);
}

#[test]
fn v5_session_expiry_zero_ends_at_disconnect() {
    // [MQTT-3.1.2-23] 5.0 (interval absent or 0: the session ends with the connection).
    let mut net = net();
    let c = client(&mut net, V5, "dev", false, 0);
    subscribe(&mut net, c, "a", Q1);
    disconnect(&mut net, c, ReasonCode::Success, None);
    assert_eq!(net.broker.stats().sessions, 0);
    connect(&mut net, c, connect_packet(V5, "dev", false, 60));
    assert!(!connack(&net, c).session_present);
}

#[test]
fn v5_disconnect_sets_session_expiry_to_zero() {
    // 5.0 3.14.2.2.2: the DISCONNECT's Session Expiry Interval replaces the CONNECT's.
    let mut net = net();
    let c = client(&mut net, V5, "dev", false, 600);
    subscribe(&mut net, c, "a", Q1);
    disconnect(&mut net, c, ReasonCode::Success, Some(0));
    assert_eq!(net.broker.stats().sessions, 0, "expired on disconnect");
    connect(&mut net, c, connect_packet(V5, "dev", false, 600));
    assert!(!connack(&net, c).session_present);
}

#[test]
fn v5_session_expires_on_the_timer() {
    // [MQTT-3.1.2-23] 5.0: the session is kept for the Session Expiry Interval, then discarded.
    let mut net = net();
    let c = client(&mut net, V5, "dev", false, 10);
    subscribe(&mut net, c, "a", Q1);
    cut(&mut net, c);
    net.run_for(9_000);
    assert_eq!(net.broker.stats().sessions, 1, "still held before 10 s");
    net.run_for(1_500);
    assert_eq!(net.broker.stats().sessions, 0, "gone after 10 s");
    assert_eq!(net.broker.stats().subscriptions, 0);
    assert_eq!(net.broker.poll_timeout(), None, "no timer left");
    connect(&mut net, c, connect_packet(V5, "dev", false, 10));
    assert!(!connack(&net, c).session_present);
}

#[test]
fn v5_reconnect_before_expiry_resumes() {
    // [MQTT-3.2.2-2] 5.0: Session Present when the server has the session.
    let mut net = net();
    let c = client(&mut net, V5, "dev", false, 10);
    subscribe(&mut net, c, "a", Q1);
    cut(&mut net, c);
    net.run_for(8_000);
    connect(&mut net, c, connect_packet(V5, "dev", false, 10));
    assert!(connack(&net, c).session_present);
    // The old expiry timer must not end the resumed session later.
    net.run_for(20_000);
    assert_eq!(net.broker.stats().sessions, 1);
    let p = client(&mut net, V5, "pub", true, 0);
    publish(&mut net, p, "a", Q1, "x");
    assert_eq!(payloads(&net, c), ["x"]);
}

#[test]
fn v5_session_expiry_max_never_expires() {
    // 5.0 3.1.2.11.2: 0xFFFFFFFF means the session does not expire.
    let mut net = net();
    let c = client(&mut net, V5, "dev", false, u32::MAX);
    subscribe(&mut net, c, "a", Q1);
    cut(&mut net, c);
    net.run_for(10 * 24 * 3_600_000);
    assert_eq!(net.broker.stats().sessions, 1);
    connect(&mut net, c, connect_packet(V5, "dev", false, u32::MAX));
    assert!(connack(&net, c).session_present);
}

#[test]
fn session_present_reported_in_broker_event() {
    // [MQTT-3.2.2-2] 3.1.1 / 5.0: the Connected event agrees with the CONNACK.
    let mut net = net();
    let c = client(&mut net, V5, "dev", false, 100);
    cut(&mut net, c);
    connect(&mut net, c, connect_packet(V5, "dev", false, 100));
    let flags: Vec<bool> = net
        .broker_events
        .iter()
        .filter_map(|e| match e {
            BrokerEvent::Connected {
                session_present, ..
            } => Some(*session_present),
            _ => None,
        })
        .collect();
    assert_eq!(flags, [false, true]);
}

#[test]
fn empty_client_id_is_assigned_one() {
    // [MQTT-3.2.2-16] 5.0: the server assigns an identifier and returns it in CONNACK.
    let mut net = net();
    let c = client(&mut net, V5, "", true, 0);
    let assigned = connack(&net, c).properties.assigned_client_identifier;
    assert!(assigned.is_some_and(|id| !id.is_empty()));
}
