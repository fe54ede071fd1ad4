//! Issue 5, wills in simulation (`BrokerNet`): published when a connection ends without a
//! normal DISCONNECT, suppressed otherwise, MQTT 5 Will Delay Interval.
#![cfg(feature = "sim")]

mod broker_support;

use broker_support::*;
use bytes::Bytes;
use mqtt_streaming_proto::{Connect, Packet, ProtocolVersion, ReasonCode, Will, WillProperties};
use mqtt_streaming_session::sim::BrokerNet;

fn will(delay: Option<u32>, retain: bool) -> Will {
    Will {
        topic: topic("wills/dev"),
        payload: Bytes::from_static(b"gone"),
        qos: Q1,
        retain,
        properties: WillProperties {
            will_delay_interval: delay,
            ..WillProperties::default()
        },
    }
}

fn with_will(version: ProtocolVersion, expiry: u32, w: Will) -> Connect {
    let mut c = connect_packet(version, "dev", expiry == 0, expiry);
    c.will = Some(w);
    c
}

/// A watcher subscribed to the will topic, and the client with a will.
fn setup(version: ProtocolVersion, expiry: u32, w: Will) -> (BrokerNet, usize, usize) {
    let mut net = net();
    let watcher = client(&mut net, V5, "watcher", true, 0);
    subscribe(&mut net, watcher, "wills/#", Q1);
    let dev = net.add_client(mqtt_streaming_session::ClientConfig::default());
    connect(&mut net, dev, with_will(version, expiry, w));
    (net, watcher, dev)
}

#[test]
fn will_published_on_abrupt_close() {
    // [MQTT-3.1.2-8] 3.1.1 / 5.0 3.1.2.5: the will is published when the connection closes
    // without DISCONNECT.
    for version in [V3, V5] {
        let (mut net, watcher, dev) = setup(version, 0, will(None, false));
        cut(&mut net, dev);
        assert_eq!(payloads(&net, watcher), ["gone"], "{version:?}");
        assert_eq!(received(&net, watcher)[0].qos_pid.qos(), Q1);
        assert_eq!(net.broker.stats().wills_published, 1);
    }
}

#[test]
fn will_published_on_keep_alive_timeout() {
    // [MQTT-3.1.2-24] 3.1.1 / 5.0 3.1.2.10: no packet within 1.5 x keep alive closes the
    // connection, and the will is published.
    let mut net = net();
    let watcher = client(&mut net, V5, "watcher", true, 0);
    subscribe(&mut net, watcher, "wills/#", Q1);
    let mut c = with_will(V3, 0, will(None, false));
    c.keep_alive = 2;
    raw_connection(&mut net, V3, vec![Packet::from(c)]);
    net.run_for(2_500);
    assert!(
        payloads(&net, watcher).is_empty(),
        "not before 1.5 x keep alive"
    );
    net.run_for(1_000);
    assert_eq!(payloads(&net, watcher), ["gone"]);
    assert_eq!(net.broker.stats().connections, 1);
}

#[test]
fn will_published_on_protocol_error() {
    // [MQTT-3.1.0-2] 3.1.1 (a second CONNECT is a protocol violation) and 5.0 3.1.2.5: the will
    // is published when the server closes the connection for an error.
    let mut net = net();
    let watcher = client(&mut net, V5, "watcher", true, 0);
    subscribe(&mut net, watcher, "wills/#", Q1);
    let c = with_will(V5, 0, will(None, false));
    let conn = raw_connection(&mut net, V5, vec![Packet::from(c.clone())]);
    assert!(payloads(&net, watcher).is_empty());
    // After CONNACK, a second CONNECT.
    let mut buf = bytes::BytesMut::new();
    Packet::from(c).encode(V5, &mut buf).unwrap();
    let now = net.now;
    net.broker.handle_read(now, conn, &mut buf);
    net.run_for(SETTLE_MS);
    assert_eq!(payloads(&net, watcher), ["gone"]);
    assert!(net.broker_events.iter().any(|e| matches!(
        e,
        mqtt_streaming_session::broker::BrokerEvent::Close {
            reason: mqtt_streaming_session::CloseReason::ProtocolViolation(_),
            ..
        }
    )));
}

#[test]
fn will_suppressed_on_normal_disconnect() {
    // [MQTT-3.1.2-10] 3.1.1 / [MQTT-3.1.2-10] 5.0: DISCONNECT 0x00 deletes the will.
    for version in [V3, V5] {
        let (mut net, watcher, dev) = setup(version, 0, will(None, false));
        disconnect(&mut net, dev, ReasonCode::Success, None);
        net.run_for(1_000);
        assert!(payloads(&net, watcher).is_empty(), "{version:?}");
    }
}

#[test]
fn will_published_on_disconnect_with_will_message() {
    // 5.0 3.14.2.1: DISCONNECT 0x04 Disconnect with Will Message publishes the will.
    let (mut net, watcher, dev) = setup(V5, 0, will(None, false));
    disconnect(&mut net, dev, ReasonCode::DisconnectWithWillMessage, None);
    assert_eq!(payloads(&net, watcher), ["gone"]);
}

#[test]
fn will_delay_interval_honoured() {
    // 5.0 3.1.3.2.2: the will waits for the Will Delay Interval.
    let (mut net, watcher, dev) = setup(V5, 60, will(Some(5), false));
    cut(&mut net, dev);
    net.run_for(4_000);
    assert!(payloads(&net, watcher).is_empty());
    net.run_for(1_500);
    assert_eq!(payloads(&net, watcher), ["gone"]);
}

#[test]
fn reconnect_within_will_delay_cancels_the_will() {
    // [MQTT-3.1.3-9] 5.0: a new connection before the delay passes: the will is not sent.
    let (mut net, watcher, dev) = setup(V5, 60, will(Some(5), false));
    cut(&mut net, dev);
    net.run_for(2_000);
    connect(&mut net, dev, with_will(V5, 60, will(Some(5), false)));
    assert!(connack(&net, dev).session_present);
    net.run_for(10_000);
    assert!(payloads(&net, watcher).is_empty());
}

#[test]
fn session_end_before_will_delay_publishes_the_will() {
    // [MQTT-3.1.2-8] 5.0 3.1.3.2.2: published at the earlier of Will Delay and session end.
    let (mut net, watcher, dev) = setup(V5, 2, will(Some(30), false));
    cut(&mut net, dev);
    net.run_for(1_500);
    assert!(payloads(&net, watcher).is_empty());
    net.run_for(1_000);
    assert_eq!(
        payloads(&net, watcher),
        ["gone"],
        "published when the session expired"
    );
    net.run_for(40_000);
    assert_eq!(payloads(&net, watcher).len(), 1, "only once");
}

#[test]
fn will_delay_with_session_ending_at_close_publishes_at_once() {
    // 5.0 3.1.3.2.2: Session Expiry 0 ends the session at close, before any delay.
    let (mut net, watcher, dev) = setup(V5, 0, will(Some(30), false));
    cut(&mut net, dev);
    assert_eq!(payloads(&net, watcher), ["gone"]);
}

#[test]
fn will_retain_is_stored_as_retained() {
    // [MQTT-3.1.2-17] 3.1.1 / 5.0 3.1.2.7: Will Retain 1 publishes the will as retained.
    let (mut net, watcher, dev) = setup(V3, 0, will(None, true));
    cut(&mut net, dev);
    assert!(
        !received(&net, watcher)[0].retain,
        "normal forwarding: RETAIN 0"
    );
    assert_eq!(net.broker.stats().retained, 1);
    let late = client(&mut net, V5, "late", true, 0);
    subscribe(&mut net, late, "wills/dev", Q1);
    let got = received(&net, late);
    assert_eq!(got.len(), 1);
    assert!(got[0].retain);
}

#[test]
fn takeover_publishes_will_of_old_connection_v5_without_delay() {
    // [MQTT-3.1.4-3] 5.0 3.1.4: on takeover the old connection's will is published
    // (no delay); with a delay, the new connection cancels it.
    let (mut net, watcher, _dev) = setup(V5, 60, will(None, false));
    let other = net.add_client(mqtt_streaming_session::ClientConfig::default());
    connect(&mut net, other, connect_packet(V5, "dev", false, 60));
    assert_eq!(payloads(&net, watcher), ["gone"]);

    let (mut net, watcher, _dev) = setup(V5, 60, will(Some(10), false));
    let other = net.add_client(mqtt_streaming_session::ClientConfig::default());
    connect(&mut net, other, connect_packet(V5, "dev", false, 60));
    net.run_for(20_000);
    assert!(payloads(&net, watcher).is_empty());
}

#[test]
fn will_retain_0_publishes_the_will_non_retained() {
    // [MQTT-3.1.2-16] (3.1.1): with Will Retain 0 the will is published as a non-retained
    // message: it reaches current subscribers and is not kept for later ones.
    let (mut net, watcher, dev) = setup(V3, 0, will(None, false));
    cut(&mut net, dev);
    assert_eq!(payloads(&net, watcher), ["gone"]);
    assert_eq!(net.broker.stats().retained, 0);
    let late = client(&mut net, V5, "late", true, 0);
    subscribe(&mut net, late, "wills/dev", Q1);
    assert!(received(&net, late).is_empty());
}

#[test]
fn retained_messages_outlive_the_session_that_published_them() {
    // [MQTT-3.1.2-7] (3.1.1): retained messages are not part of the session state and are not
    // deleted when the session that published them ends.
    let mut net = net();
    let p = client(&mut net, V3, "publisher", true, 0);
    send(
        &mut net,
        p,
        mqtt_streaming_session::Message::new(topic("keep/me"), Q1, "still here").retained(),
    );
    disconnect(&mut net, p, ReasonCode::Success, None);
    assert_eq!(
        net.broker.stats().sessions,
        0,
        "the publisher's clean session has ended"
    );
    assert_eq!(net.broker.stats().retained, 1);
    let late = client(&mut net, V3, "late", true, 0);
    subscribe(&mut net, late, "keep/#", Q1);
    assert_eq!(payloads(&net, late), ["still here"]);
}
