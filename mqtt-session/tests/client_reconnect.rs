//! Client session: connection loss and reconnection on a new transport, re-sending with a
//! present session, abandoning with an absent one, disconnect() and server DISCONNECT.
//!
//! Statement ids name their version (3.1.1 or 5.0) in each test's first comment line.

mod support;

use bytes::BytesMut;
use mqtt_streaming_proto::{Disconnect, DisconnectProperties, MqttString, Packet, QoS, ReasonCode};
use mqtt_streaming_session::{
    AbandonCause, AckMode, ClientConfig, ClientEvent, CloseReason, CommandError, ConnectionState,
    Initiator, SubscribeRequest,
};
use support::client::*;

fn reconnect(s: &mut Script<u32>, session_present: bool) -> Vec<Packet> {
    s.transport_closed();
    s.events();
    s.connect(resume(s.version, "c"));
    assert_eq!(briefs(&s.sent()), ["CONNECT"]);
    s.feed(connack(session_present));
    s.sent()
}

#[test]
fn session_present_resends_publishes_and_pubrels_in_order_before_anything_new() {
    // [MQTT-4.4.0-1], [MQTT-3.3.1-1], [MQTT-4.6.0-1], [MQTT-4.6.0-4] (3.1.1 and 5.0): unacked
    // PUBLISHes again with DUP and their original ids, in original order, PUBRELs in PUBREC
    // order, and only then anything new. Alpakka "resend on reconnect". [MQTT-4.3.3-5],
    // [MQTT-4.3.3-6] (5.0): a QoS 2 flow past PUBREC re-sends its PUBREL (still unacknowledged
    // until PUBCOMP), never its PUBLISH again.
    for version in [V3, V5] {
        let mut s = connected(version);
        s.publish(msg("t", QoS::AtLeastOnce, "a"), 1).unwrap();
        s.publish(msg("t", QoS::ExactlyOnce, "b"), 2).unwrap();
        s.publish(msg("u", QoS::AtLeastOnce, "c"), 3).unwrap();
        s.publish(msg("t", QoS::ExactlyOnce, "d"), 4).unwrap();
        s.publish(msg("t", QoS::AtLeastOnce, "done"), 5).unwrap();
        s.feed(puback(5));
        s.feed(pubrec(4));
        s.feed(pubrec(2));
        assert_eq!(
            briefs(&s.sent()),
            ["PUBLISH1", "PUBLISH2", "PUBLISH3", "PUBLISH4", "PUBLISH5", "PUBREL4", "PUBREL2"]
        );
        s.events();
        s.transport_closed();
        s.events();
        // Commands while disconnected wait behind the re-sends.
        s.publish(msg("t", QoS::AtLeastOnce, "new"), 6).unwrap();
        s.publish(msg("t", QoS::AtMostOnce, "new0"), 7).unwrap();
        s.connect(resume(version, "c"));
        assert_eq!(briefs(&s.sent()), ["CONNECT"]);
        s.feed(connack(true));
        let sent = s.sent();
        assert_eq!(
            briefs(&sent),
            [
                "PUBLISH1 DUP",
                "PUBLISH3 DUP",
                "PUBREL4",
                "PUBREL2",
                "PUBLISH6",
                "PUBLISH0 t"
            ]
        );
        let p = publishes(&sent);
        assert_eq!(
            p.iter().map(|p| p.payload.clone()).collect::<Vec<_>>(),
            ["a", "c", "new", "new0"]
        );
        assert_eq!(p[1].topic.as_str(), "u");
        assert!(!p[2].dup, "a first transmission is not DUP");
        // The flows complete with the right tokens.
        s.feed(puback(3));
        s.feed(pubcomp(2));
        s.feed(puback(1));
        s.feed(pubcomp(4));
        s.feed(puback(6));
        let done = published(&s.events());
        assert_eq!(
            done.iter().map(|d| d.0).collect::<Vec<_>>(),
            [7, 3, 2, 1, 4, 6]
        );
    }
}

#[test]
fn session_absent_abandons_in_flight_and_resets_ids() {
    // [MQTT-3.2.2-5] (5.0) / [MQTT-3.1.2-6] (3.1.1): without a session on the server, the
    // client's session state goes: in-flight publishes come back as SessionLost with their
    // message, and packet ids start again at 1.
    for version in [V3, V5] {
        let mut s = connected(version);
        s.publish(msg("t", QoS::AtLeastOnce, "a"), 1).unwrap();
        s.publish(msg("t", QoS::ExactlyOnce, "b"), 2).unwrap();
        s.publish(msg("t", QoS::ExactlyOnce, "c"), 3).unwrap();
        s.feed(pubrec(3));
        s.sent();
        s.transport_closed();
        s.events();
        s.publish(msg("t", QoS::AtLeastOnce, "queued"), 4).unwrap();
        s.connect(resume(version, "c"));
        s.sent();
        s.feed(connack(false));
        let events = s.events();
        let lost: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Abandoned {
                    token,
                    cause: AbandonCause::SessionLost,
                    message: Some(m),
                } => Some((*token, m.payload.clone(), m.qos)),
                _ => None,
            })
            .collect();
        assert_eq!(
            lost,
            [
                (1, "a".into(), QoS::AtLeastOnce),
                (2, "b".into(), QoS::ExactlyOnce),
                (3, "c".into(), QoS::ExactlyOnce)
            ]
        );
        assert!(events
            .iter()
            .any(|e| matches!(e, ClientEvent::Connected(_))));
        // Nothing re-sent; the queued publish goes out with id 1.
        assert_eq!(briefs(&s.sent()), ["PUBLISH1"]);
        assert_eq!(s.session.inflight_len(), 1);
    }
}

#[test]
fn session_absent_forgets_inbound_state() {
    // [MQTT-3.1.2-6] (3.1.1) / [MQTT-3.2.2-5] (5.0): inbound QoS 2 ids awaiting PUBREL and
    // unacknowledged manual acks belong to the discarded session.
    let config = ClientConfig::default().with_ack_mode(AckMode::Manual);
    let mut s: Script<u32> = connected_with(
        V5,
        config,
        mqtt_streaming_proto::ConnAck::new(ReasonCode::Success),
    );
    s.feed(server_publish("t", QoS::ExactlyOnce, 1, "x"));
    s.feed(server_publish("t", QoS::AtLeastOnce, 2, "y"));
    let ids: Vec<_> = delivered(&s.events())
        .into_iter()
        .map(|d| d.2.unwrap())
        .collect();
    s.ack(ids[0], ReasonCode::Success).unwrap();
    assert_eq!(briefs(&s.sent()), ["PUBREC1"]);
    reconnect(&mut s, false);
    s.events();
    // The old message's ack id is stale.
    assert_eq!(
        s.ack(ids[1], ReasonCode::Success),
        Err(CommandError::UnknownAck)
    );
    assert!(s.sent().is_empty());
    // Id 1 is a new message on the new session.
    s.feed(server_publish("t", QoS::ExactlyOnce, 1, "fresh"));
    assert_eq!(delivered(&s.events()).len(), 1);
}

#[test]
fn a_stale_ack_id_stays_stale_after_the_idle_state_is_given_back() {
    // [MQTT-3.1.2-6] (3.1.1) / [MQTT-3.2.2-5] (5.0): the manual-ack ids of a discarded session
    // stay stale when the session gave the memory of its idle state back in between (issue 12:
    // the inbound state is boxed and freed when empty, its generation is not) and a message of
    // the new session reuses the packet identifier.
    let config = ClientConfig::default().with_ack_mode(AckMode::Manual);
    let mut s: Script<u32> = connected_with(
        V5,
        config,
        mqtt_streaming_proto::ConnAck::new(ReasonCode::Success),
    );
    s.feed(server_publish("t", QoS::AtLeastOnce, 2, "old"));
    let old = delivered(&s.events())[0].2.unwrap();
    reconnect(&mut s, false);
    s.events();
    s.session.shrink_idle();
    s.feed(server_publish("t", QoS::AtLeastOnce, 2, "new"));
    let fresh = delivered(&s.events())[0].2.unwrap();
    assert_eq!(fresh.packet_id(), old.packet_id());
    assert_ne!(fresh, old);
    assert_eq!(
        s.ack(old, ReasonCode::Success),
        Err(CommandError::UnknownAck)
    );
    assert!(s.sent().is_empty());
    s.ack(fresh, ReasonCode::Success).unwrap();
    assert_eq!(briefs(&s.sent()), ["PUBACK2"]);
}

#[test]
fn session_present_keeps_inbound_qos2_and_releases_acks_given_offline() {
    // [MQTT-4.3.3-10], [MQTT-4.3.3-11] (5.0); [MQTT-4.4.0-1] (3.1.1): after reconnecting to
    // the same session the server re-sends its PUBLISH (not delivered again, PUBREC again)
    // and its PUBREL (PUBCOMP); an ack the application gave while offline goes out after
    // CONNACK.
    let config = ClientConfig::default().with_ack_mode(AckMode::Manual);
    for version in [V3, V5] {
        let mut s: Script<u32> = connected_with(
            version,
            config.clone(),
            mqtt_streaming_proto::ConnAck::new(ReasonCode::Success),
        );
        s.feed(server_publish("t", QoS::ExactlyOnce, 1, "x"));
        s.feed(server_publish("t", QoS::AtLeastOnce, 2, "y"));
        let ids: Vec<_> = delivered(&s.events())
            .into_iter()
            .map(|d| d.2.unwrap())
            .collect();
        s.ack(ids[0], ReasonCode::Success).unwrap();
        assert_eq!(briefs(&s.sent()), ["PUBREC1"]);
        s.transport_closed();
        s.events();
        // Acked while offline: nothing to send it on.
        s.ack(ids[1], ReasonCode::Success).unwrap();
        s.assert_quiet();
        s.connect(resume(version, "c"));
        s.sent();
        s.feed(connack(true));
        assert_eq!(briefs(&s.sent()), ["PUBACK2"]);
        s.events();
        let mut again = server_publish("t", QoS::ExactlyOnce, 1, "x");
        if let Packet::Publish(p) = &mut again {
            p.dup = true;
        }
        s.feed(again);
        assert!(delivered(&s.events()).is_empty());
        assert_eq!(briefs(&s.sent()), ["PUBREC1"]);
        s.feed(pubrel(1));
        let sent = s.sent();
        assert!(
            matches!(&sent[..], [Packet::PubComp(r)] if r.reason_code == ReasonCode::Success),
            "{sent:?}"
        );
    }
}

#[test]
fn reconnect_on_a_new_transport_drops_stale_bytes() {
    // Alpakka "reconnect on a new transport": after handle_closed, connect starts clean: the
    // first bytes on the new transport are its CONNECT, never leftovers of the old one.
    let mut s = connected(V3);
    s.session
        .publish(s.now, msg("t", QoS::AtLeastOnce, "unsent"), 1)
        .unwrap();
    // The transport dies before the PUBLISH was written.
    s.session.handle_closed(s.now);
    s.session
        .connect(s.now, resume(V3, "c"))
        .expect("connect after close");
    s.drain();
    let sent = s.sent();
    assert_eq!(briefs(&sent), ["CONNECT"]);
    let events = s.events();
    assert_closed(&events, Initiator::Transport, CloseReason::TransportClosed);
    // With the session present, the never-written PUBLISH is sent with its id.
    s.feed(connack(true));
    let sent = s.sent();
    assert_eq!(publishes(&sent).len(), 1);
    assert_eq!(id_of(publishes(&sent)[0]), 1);
    s.feed(puback(1));
    assert_eq!(published(&s.events()), [(1, ReasonCode::Success)]);
}

#[test]
fn input_without_a_connection_is_left_untouched() {
    // The sans-IO contract: bytes fed while disconnected are neither consumed nor acted on.
    let mut s = connected(V3);
    s.transport_closed();
    s.events();
    let mut buf = BytesMut::from(&[0x40, 0x02, 0x00, 0x01][..]);
    s.session.handle_read(s.now, &mut buf);
    assert_eq!(buf.len(), 4);
    s.drain();
    s.assert_quiet();
}

#[test]
fn disconnect_sends_disconnect_and_reports_once() {
    // [MQTT-3.14.4-1], [MQTT-3.14.4-2] (3.1.1 and 5.0): after DISCONNECT nothing more is sent
    // on the connection; the session reports Closed{Application} once and keeps its state.
    for version in [V3, V5] {
        let mut s = connected(version);
        s.publish(msg("t", QoS::AtLeastOnce, "kept"), 1).unwrap();
        s.subscribe(SubscribeRequest::new(filter("f"), QoS::AtMostOnce), 2)
            .unwrap();
        s.sent();
        let d = Disconnect {
            reason_code: if version == V5 {
                ReasonCode::DisconnectWithWillMessage
            } else {
                ReasonCode::Success
            },
            properties: if version == V5 {
                DisconnectProperties {
                    session_expiry_interval: Some(300),
                    reason_string: Some(MqttString::new("bye").unwrap()),
                    ..DisconnectProperties::default()
                }
            } else {
                DisconnectProperties::default()
            },
        };
        s.disconnect(d.clone()).unwrap();
        let sent = s.sent();
        assert_eq!(sent, [Packet::Disconnect(d.clone())]);
        let events = s.events();
        assert!(matches!(
            events[0],
            ClientEvent::Abandoned {
                token: 2,
                cause: AbandonCause::ConnectionLost,
                ..
            }
        ));
        assert_closed(
            &events,
            Initiator::Application,
            CloseReason::Disconnect(d.reason_code),
        );
        assert_eq!(s.session.state(), ConnectionState::Disconnected);
        // Nothing more goes out; commands queue for the next connection.
        s.publish(msg("t", QoS::AtMostOnce, "later"), 3).unwrap();
        s.feed(puback(1));
        s.advance(1_000_000);
        s.transport_closed();
        s.assert_quiet();
        assert_eq!(
            s.disconnect(Disconnect::default()),
            Err(CommandError::NotConnected)
        );
        assert_eq!(s.session.inflight_len(), 1);
        assert_eq!(s.session.queued_len(), 1);
    }
}

#[test]
fn v5_server_disconnect_is_reported_with_its_reason() {
    // [MQTT-3.14.4-1] (5.0): the server sends nothing after its DISCONNECT; the client sends
    // nothing back and reports Closed{Peer} with the server's reason code.
    for code in [
        ReasonCode::NORMAL_DISCONNECTION,
        ReasonCode::ServerShuttingDown,
        ReasonCode::SessionTakenOver,
        ReasonCode::KeepAliveTimeout,
        ReasonCode::UseAnotherServer,
    ] {
        let mut s = connected(V5);
        s.publish(msg("t", QoS::AtLeastOnce, "kept"), 1).unwrap();
        s.sent();
        // Bytes after the DISCONNECT in the same read are not processed.
        let mut bytes = BytesMut::new();
        Packet::Disconnect(Disconnect::new(code))
            .encode(V5, &mut bytes)
            .unwrap();
        Packet::PubAck(response(1, ReasonCode::Success))
            .encode(V5, &mut bytes)
            .unwrap();
        s.feed_bytes(&bytes);
        assert!(s.sent().is_empty());
        let events = s.events();
        assert_closed(&events, Initiator::Peer, CloseReason::Disconnect(code));
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(s.session.inflight_len(), 1);
        s.transport_closed();
        s.assert_quiet();
    }
}

#[test]
fn v311_server_disconnect_is_a_protocol_violation() {
    // [MQTT-4.8.0-1] (3.1.1): a server never sends DISCONNECT in 3.1.1; the client closes.
    let mut s = connected(V3);
    s.feed_bytes(&[0xE0, 0x00]);
    assert!(s.sent().is_empty());
    assert_closed(
        &s.events(),
        Initiator::Session,
        CloseReason::ProtocolViolation(
            mqtt_streaming_session::ProtocolViolation::UnexpectedPacket(
                mqtt_streaming_proto::PacketType::Disconnect,
            ),
        ),
    );
}

#[test]
fn acknowledgements_owed_count_what_this_connection_sent() {
    // [MQTT-4.9.0-2] (5.0): after a resumption the publishes beyond the server's Receive
    // Maximum wait to be re-sent, so the server owes acknowledgements only for those sent.
    // [MQTT-4.3.3-5] (5.0): a QoS 2 flow past PUBREC still owes its PUBCOMP.
    let mut s = connected(V5);
    assert_eq!(s.session.acknowledgements_owed(), 0);
    s.publish(msg("t", QoS::AtMostOnce, "zero"), 1).unwrap();
    for t in 2..=4 {
        s.publish(msg("t", QoS::AtLeastOnce, "one"), t).unwrap();
    }
    s.publish(msg("t", QoS::ExactlyOnce, "two"), 5).unwrap();
    s.sent();
    // Four PUBLISHes at QoS 1 and 2 (the QoS 0 one is owed nothing).
    assert_eq!(s.session.acknowledgements_owed(), 4);
    // Packet ids 1-3 are the QoS 1 publishes, 4 the QoS 2 one.
    s.feed(pubrec(4));
    assert_eq!(briefs(&s.sent()), ["PUBREL4"]);
    assert_eq!(s.session.acknowledgements_owed(), 4, "PUBCOMP still owed");
    s.feed(puback(2));
    assert_eq!(s.session.acknowledgements_owed(), 3);

    s.transport_closed();
    s.events();
    assert_eq!(
        s.session.acknowledgements_owed(),
        0,
        "nothing owed without a connection"
    );
    s.connect(resume(V5, "c"));
    assert_eq!(briefs(&s.sent()), ["CONNECT"]);
    assert_eq!(
        s.session.acknowledgements_owed(),
        0,
        "nothing owed before the CONNACK"
    );
    let mut ack = mqtt_streaming_proto::ConnAck::new(ReasonCode::Success);
    ack.session_present = true;
    ack.properties.receive_maximum = core::num::NonZeroU16::new(2);
    s.feed(Packet::ConnAck(Box::new(ack)));
    assert_eq!(briefs(&s.sent()), ["PUBLISH1 DUP", "PUBREL4"]);
    assert_eq!(s.session.inflight_len(), 3);
    assert_eq!(
        s.session.acknowledgements_owed(),
        2,
        "PUBLISH3 waits for the window"
    );
    s.feed(puback(1));
    assert_eq!(briefs(&s.sent()), ["PUBLISH3 DUP"]);
    assert_eq!(s.session.acknowledgements_owed(), 2);
}
