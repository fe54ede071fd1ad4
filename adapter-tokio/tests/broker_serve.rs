//! The broker core served over TCP (and an in-memory transport) by `BrokerServer`, exercised
//! with our own clients.

mod interop_support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use interop_support::*;
use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion, QoS, ReasonCode, Will};
use mqtt_streaming_session::broker::{AuthDecision, BrokerConfig, BrokerEvent, BrokerHooks};
use mqtt_streaming_session::{CloseReason, Initiator, SubscribeRequest};
use mqtt_streaming_tokio::{
    connect, connect_tcp, BrokerHandle, BrokerNotice, BrokerOptions, BrokerServer, Error, Event,
};

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

async fn start() -> (SocketAddr, BrokerHandle) {
    let broker = BrokerServer::bind("127.0.0.1:0", BrokerConfig::default())
        .await
        .unwrap();
    let addr = broker.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    (addr, broker.spawn())
}

/// QoS 0, 1 and 2 between every pair of protocol versions: each publish is acknowledged with
/// Success, each message arrives once, in order, at the QoS of the publish (the subscription
/// grants QoS 2) ([MQTT-4.3.3-2] in 3.1.1: no onward duplicate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_sub_qos_0_1_2_across_versions() {
    let (addr, broker) = start().await;
    for (i, (sub_v, pub_v)) in [(V311, V311), (V311, V5), (V5, V311), (V5, V5)]
        .into_iter()
        .enumerate()
    {
        let (sub, mut sub_events) = connect_tcp(addr, options(sub_v, &format!("sub{i}"), false))
            .await
            .unwrap();
        let suback = sub
            // A filter of this round's own: the previous round's subscriber may still be
            // closing in the broker (its DISCONNECT read after this round's first PUBLISH on
            // a loaded machine), and must not match this round's messages.
            .subscribe(SubscribeRequest::new(
                filter(&format!("q{i}/+/x")),
                QoS::ExactlyOnce,
            ))
            .await
            .unwrap();
        assert_eq!(suback.reason_codes, [ReasonCode::GrantedQoS2]);
        let (publisher, _pub_events) = connect_tcp(addr, options(pub_v, &format!("pub{i}"), false))
            .await
            .unwrap();
        for (n, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            let outcome = publisher
                .publish(message(&format!("q{i}/{n}/x"), qos, format!("m{n}")))
                .await
                .unwrap();
            assert_eq!(outcome.reason_code, ReasonCode::Success);
        }
        for (n, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            let (publish, _) = next_message(&mut sub_events).await;
            assert_eq!(publish.topic.as_str(), format!("q{i}/{n}/x"));
            assert_eq!(publish.qos_pid.qos(), qos);
            assert_eq!(&publish.payload[..], format!("m{n}").as_bytes());
            assert!(!publish.retain);
        }
        no_message(&mut sub_events, Duration::from_millis(100)).await;
        sub.disconnect().await.unwrap();
        publisher.disconnect().await.unwrap();
    }
    let stats = broker.stats().await.unwrap();
    assert_eq!(stats.messages_in, 12, "{stats:?}");
    assert_eq!(stats.messages_out, 12, "{stats:?}");
    assert_eq!(stats.connections_total, 8);
    broker.shutdown().await;
}

/// An MQTT 5 publish nobody subscribed to is answered 0x10 No matching subscribers: the
/// broker's own reason codes reach the client through the server.
#[tokio::test]
async fn no_matching_subscribers_in_v5() {
    let (addr, broker) = start().await;
    let (client, _events) = connect_tcp(addr, options(V5, "lonely", false))
        .await
        .unwrap();
    let outcome = client
        .publish(message("nobody/here", QoS::AtLeastOnce, "x"))
        .await
        .unwrap();
    assert_eq!(outcome.reason_code, ReasonCode::NoMatchingSubscribers);
    broker.shutdown().await;
}

/// A retained message goes to a later subscriber with RETAIN set ([MQTT-3.3.1-6],
/// [MQTT-3.3.1-8] in 3.1.1; [MQTT-3.3.1-9] in 5.0), and an empty retained message clears it.
#[tokio::test]
async fn retained_messages() {
    let (addr, broker) = start().await;
    let (publisher, _e) = connect_tcp(addr, options(V311, "retainer", false))
        .await
        .unwrap();
    publisher
        .publish(message("r/1", QoS::AtLeastOnce, "kept").retained())
        .await
        .unwrap();
    for (i, version) in [V311, V5].into_iter().enumerate() {
        let (sub, mut events) = connect_tcp(addr, options(version, &format!("late{i}"), false))
            .await
            .unwrap();
        sub.subscribe(SubscribeRequest::new(filter("r/#"), QoS::AtLeastOnce))
            .await
            .unwrap();
        let (publish, _) = next_message(&mut events).await;
        assert!(publish.retain, "{version:?}");
        assert_eq!(&publish.payload[..], b"kept");
        sub.disconnect().await.unwrap();
    }
    publisher
        .publish(message("r/1", QoS::AtLeastOnce, Bytes::new()).retained())
        .await
        .unwrap();
    let (sub, mut events) = connect_tcp(addr, options(V5, "after-clear", false))
        .await
        .unwrap();
    sub.subscribe(SubscribeRequest::new(filter("r/#"), QoS::AtLeastOnce))
        .await
        .unwrap();
    no_message(&mut events, Duration::from_millis(200)).await;
    assert_eq!(broker.stats().await.unwrap().retained, 0);
    broker.shutdown().await;
}

/// A connection cut without DISCONNECT makes the broker publish the will ([MQTT-3.1.2-8]);
/// a normal DISCONNECT discards it.
#[tokio::test]
async fn will_on_abrupt_close_only() {
    let (addr, broker) = start().await;
    let (watcher, mut events) = connect_tcp(addr, options(V5, "watcher", false))
        .await
        .unwrap();
    watcher
        .subscribe(SubscribeRequest::new(filter("wills/#"), QoS::AtLeastOnce))
        .await
        .unwrap();
    for (i, version) in [V311, V5].into_iter().enumerate() {
        // Graceful: no will.
        let mut opts = options(version, &format!("polite{i}"), false);
        opts.connect.will = Some(will("wills/polite"));
        let (client, _e) = connect_tcp(addr, opts).await.unwrap();
        client.disconnect().await.unwrap();
        // Cut: the will.
        let proxy = Proxy::start(addr).await;
        let mut opts = options(version, &format!("doomed{i}"), false);
        opts.connect.will = Some(will("wills/doomed"));
        let (_client, _e) = connect_tcp(proxy.addr, opts).await.unwrap();
        proxy.cut();
        let (publish, _) = next_message(&mut events).await;
        assert_eq!(publish.topic.as_str(), "wills/doomed", "{version:?}");
        assert_eq!(&publish.payload[..], b"gone");
    }
    no_message(&mut events, Duration::from_millis(100)).await;
    assert_eq!(broker.stats().await.unwrap().wills_published, 2);
    broker.shutdown().await;
}

fn will(topic_name: &str) -> Will {
    Will {
        topic: topic(topic_name),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    }
}

/// A persistent session survives its connection: QoS 1 and 2 messages published while the
/// client is away are queued ([MQTT-3.1.2-5] in 3.1.1) and delivered in order when it comes
/// back with Session Present ([MQTT-3.2.2-2] in 3.1.1, [MQTT-3.1.2-5] in 5.0), the
/// subscription still in place.
#[tokio::test]
async fn persistent_session_resumed_with_queued_messages() {
    let (addr, broker) = start().await;
    let (publisher, _e) = connect_tcp(addr, options(V5, "feeder", false))
        .await
        .unwrap();
    for (i, version) in [V311, V5].into_iter().enumerate() {
        let id = format!("durable{i}");
        let (client, mut events) = connect_tcp(addr, options(version, &id, true))
            .await
            .unwrap();
        match events.recv().await {
            Some(Event::Connected(connack)) => assert!(!connack.session_present),
            other => panic!("{other:?}"),
        }
        client
            .subscribe(SubscribeRequest::new(filter("d/#"), QoS::ExactlyOnce))
            .await
            .unwrap();
        client.disconnect().await.unwrap();
        for n in 0..5 {
            let qos = if n % 2 == 0 {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            };
            publisher
                .publish(message("d/x", qos, format!("{n}")))
                .await
                .unwrap();
        }
        let (client, mut events) = connect_tcp(addr, options(version, &id, true))
            .await
            .unwrap();
        match events.recv().await {
            Some(Event::Connected(connack)) => assert!(connack.session_present, "{version:?}"),
            other => panic!("{other:?}"),
        }
        for n in 0..5 {
            let (publish, _) = next_message(&mut events).await;
            assert_eq!(&publish.payload[..], format!("{n}").as_bytes());
        }
        no_message(&mut events, Duration::from_millis(100)).await;
        // Clean start discards it ([MQTT-3.1.2-4] in 5.0).
        client.disconnect().await.unwrap();
        let (client, mut events) = connect_tcp(addr, options(version, &id, false))
            .await
            .unwrap();
        match events.recv().await {
            Some(Event::Connected(connack)) => assert!(!connack.session_present),
            other => panic!("{other:?}"),
        }
        client.disconnect().await.unwrap();
    }
    broker.shutdown().await;
}

/// A second connection with the same client id takes the session over; the first is closed,
/// in MQTT 5 with DISCONNECT 0x8E Session taken over ([MQTT-3.1.4-3] in 5.0).
#[tokio::test]
async fn takeover() {
    let (addr, broker) = start().await;
    for version in [V311, V5] {
        let (first, mut first_events) = connect_tcp(addr, options(version, "twin", true))
            .await
            .unwrap();
        first
            .subscribe(SubscribeRequest::new(filter("t/#"), QoS::AtLeastOnce))
            .await
            .unwrap();
        let (second, mut second_events) = connect_tcp(addr, options(version, "twin", true))
            .await
            .unwrap();
        match second_events.recv().await {
            Some(Event::Connected(connack)) => assert!(connack.session_present),
            other => panic!("{other:?}"),
        }
        let (initiator, reason) = next_closed(&mut first_events).await;
        if version.is_v5() {
            assert_eq!(initiator, Initiator::Peer);
            assert_eq!(
                reason,
                CloseReason::Disconnect(ReasonCode::SessionTakenOver)
            );
        } else {
            assert_eq!(reason, CloseReason::TransportClosed);
        }
        // The subscription came along with the session.
        second
            .publish(message("t/1", QoS::AtLeastOnce, "mine"))
            .await
            .unwrap();
        let (publish, _) = next_message(&mut second_events).await;
        assert_eq!(&publish.payload[..], b"mine");
        second.disconnect().await.unwrap();
    }
    broker.shutdown().await;
}

/// Graceful shutdown: MQTT 5 clients are told 0x8B Server shutting down, 3.1.1 clients see
/// the connection close, `shutdown` resolves once all are closed, and the listener is gone.
#[tokio::test]
async fn graceful_shutdown() {
    let (addr, broker) = start().await;
    let (_c5, mut e5) = connect_tcp(addr, options(V5, "five", false)).await.unwrap();
    let (_c3, mut e3) = connect_tcp(addr, options(V311, "three", false))
        .await
        .unwrap();
    tokio::time::timeout(WAIT, broker.shutdown())
        .await
        .expect("shutdown in time");
    assert!(broker.is_stopped());
    let (initiator, reason) = next_closed(&mut e5).await;
    assert_eq!(initiator, Initiator::Peer);
    assert_eq!(
        reason,
        CloseReason::Disconnect(ReasonCode::ServerShuttingDown)
    );
    let (_, reason) = next_closed(&mut e3).await;
    assert_eq!(reason, CloseReason::TransportClosed);
    assert!(connect_tcp(addr, options(V5, "late", false)).await.is_err());
    assert!(broker.stats().await.is_none());
    // A second shutdown resolves at once.
    broker.shutdown().await;
}

/// Any transport: a client over an in-memory duplex, and a broker without a listener.
#[tokio::test]
async fn serve_transport_over_duplex() {
    let broker = BrokerServer::new(BrokerConfig::default());
    assert!(broker.local_addr().is_err());
    let handle = broker.spawn();
    let (a, b) = tokio::io::duplex(4096);
    handle.serve_transport(b).await.unwrap();
    let (client, mut events) = connect(a, options(V5, "memory", false)).await.unwrap();
    client
        .subscribe(SubscribeRequest::new(filter("m"), QoS::ExactlyOnce))
        .await
        .unwrap();
    client
        .publish(message("m", QoS::ExactlyOnce, "in memory"))
        .await
        .unwrap();
    let (publish, _) = next_message(&mut events).await;
    assert_eq!(&publish.payload[..], b"in memory");
    // The broker publishes too, as if a client had.
    assert!(
        handle
            .publish(message("m", QoS::AtMostOnce, "from the broker"))
            .await
    );
    let (publish, _) = next_message(&mut events).await;
    assert_eq!(&publish.payload[..], b"from the broker");
    handle.shutdown().await;
    let (a, b) = tokio::io::duplex(64);
    drop(a);
    assert!(handle.serve_transport(b).await.is_err());
}

/// Hooks decide who gets in: a refused CONNECT reaches the client as
/// `Error::ConnectionRefused` with the hook's code.
#[tokio::test]
async fn hooks_refuse_a_connection() {
    struct OnlyAlice;
    impl BrokerHooks for OnlyAlice {
        fn authenticate(&mut self, connect: &Connect) -> AuthDecision {
            match connect.username.as_ref().map(MqttString::as_str) {
                Some("alice") => AuthDecision::Accept,
                _ => AuthDecision::Reject(ReasonCode::BadUserNameOrPassword),
            }
        }
    }
    let broker = BrokerServer::bind("127.0.0.1:0", BrokerConfig::default())
        .await
        .unwrap()
        .with_hooks(OnlyAlice);
    let addr = broker.local_addr().unwrap();
    let handle = broker.spawn();
    match connect_tcp(addr, options(V5, "mallory", false)).await {
        Err(Error::ConnectionRefused(code)) => {
            assert_eq!(code, ReasonCode::BadUserNameOrPassword)
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    let mut opts = options(V5, "alice", false);
    opts.connect.username = Some(MqttString::new("alice").unwrap());
    let (client, _e) = connect_tcp(addr, opts).await.unwrap();
    client.disconnect().await.unwrap();
    handle.shutdown().await;
}

/// Notices: a TCP connection is reported with its peer address, then Connected, then Close.
#[tokio::test]
async fn notices_report_connections() {
    let mut broker = BrokerServer::bind("127.0.0.1:0", BrokerConfig::default())
        .await
        .unwrap();
    let addr = broker.local_addr().unwrap();
    let mut notices = broker.notices();
    let handle = broker.spawn();
    let (client, _e) = connect_tcp(addr, options(V311, "noted", false))
        .await
        .unwrap();
    client.disconnect().await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(
            tokio::time::timeout(WAIT, notices.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert!(matches!(&seen[0], BrokerNotice::Opened { peer: Some(p), .. } if p.ip().is_loopback()));
    assert!(matches!(
        &seen[1],
        BrokerNotice::Event { event: BrokerEvent::Connected { client_id, .. }, .. } if client_id.as_str() == "noted"
    ));
    assert!(matches!(
        &seen[2],
        BrokerNotice::Event { event: BrokerEvent::Close { reason, .. }, .. } if reason.is_normal()
    ));
    assert!(seen[1].to_string().contains("\"noted\""));
    handle.shutdown().await;
}

/// Bounded memory: a subscriber that stops reading while others flood it at QoS 0 is not cut
/// by the driver: its output is held in the core, where the QoS 0 messages beyond its limits
/// are dropped and counted (issue 10 item 4), and the publisher carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_reading_subscriber_qos0_flood_dropped_not_cut() {
    let mut options_ = BrokerOptions::from(BrokerConfig::default());
    options_.pause_reading_above = 16 * 1024;
    options_.linger = Duration::from_millis(200);
    let mut broker = BrokerServer::new(options_);
    let mut notices = broker.notices();
    let handle = broker.spawn();
    // The slow one: a tiny pipe, and an application that never reads its events.
    let (a, b) = tokio::io::duplex(1024);
    handle.serve_transport(b).await.unwrap();
    let mut slow_opts = options(V311, "slow", false);
    slow_opts.event_capacity = 1;
    let (slow, _slow_events) = connect(a, slow_opts).await.unwrap();
    slow.subscribe(SubscribeRequest::new(filter("flood"), QoS::AtMostOnce))
        .await
        .unwrap();
    let (a, b) = tokio::io::duplex(64 * 1024);
    handle.serve_transport(b).await.unwrap();
    let (fast, _fast_events) = connect(a, options(V311, "fast", false)).await.unwrap();
    let payload = Bytes::from(vec![7u8; 1024]);
    let dropped = tokio::time::timeout(WAIT, async {
        loop {
            fast.publish(message("flood", QoS::AtMostOnce, payload.clone()))
                .await
                .unwrap();
            let stats = handle.stats().await.unwrap();
            if stats.dropped_queue_full > 0 {
                return stats;
            }
        }
    })
    .await
    .expect("the flood beyond the subscriber's limits is dropped");
    assert_eq!(dropped.connections, 2, "nobody was cut");
    while let Ok(Some(notice)) =
        tokio::time::timeout(Duration::from_millis(100), notices.recv()).await
    {
        assert!(
            !matches!(notice, BrokerNotice::SlowConsumer { .. }),
            "cut as a slow consumer"
        );
    }
    // The publisher is unaffected.
    let outcome = fast
        .publish(message("flood", QoS::AtLeastOnce, "still here"))
        .await
        .unwrap();
    assert_eq!(outcome.reason_code, ReasonCode::Success);
    handle.shutdown().await;
}

/// A client that writes its packets one byte per write: every packet reaches the broker split
/// over many reads, and the broker keeps the partial packet between them (apart from the
/// connection's entry) until it is whole: CONNACK, SUBACK, the PUBACK and the message routed
/// back all arrive ([MQTT-4.3.2-1] 3.1.1: the QoS 1 PUBLISH is acknowledged).
#[tokio::test]
async fn packets_written_one_byte_at_a_time_are_reassembled() {
    use mqtt_streaming_proto::{Decoder, Packet};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (addr, broker) = start().await;
    let mut io = tokio::net::TcpStream::connect(addr).await.unwrap();
    io.set_nodelay(true).unwrap();
    #[rustfmt::skip]
    let bytes: &[u8] = &[
        // CONNECT, 3.1.1, clean session, keep alive 60, client id "d"
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b'd',
        // SUBSCRIBE id 1, "t" at QoS 1
        0x82, 6, 0, 1, 0, 1, b't', 1,
        // PUBLISH QoS 1 id 2 to "t", payload "hi"
        0x32, 7, 0, 1, b't', 0, 2, b'h', b'i',
    ];
    for byte in bytes {
        io.write_all(std::slice::from_ref(byte)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let decoder = Decoder::new(V311);
    let mut buf = bytes::BytesMut::new();
    let mut seen = Vec::new();
    let (mut puback, mut message) = (false, false);
    loop {
        while let Some(packet) = decoder.decode(&mut buf).unwrap() {
            match &packet {
                Packet::PubAck(ack) => puback |= u16::from(ack.packet_id) == 2,
                Packet::Publish(p) => {
                    message |= p.topic.as_str() == "t" && &p.payload[..] == b"hi";
                }
                _ => {}
            }
            seen.push(packet.packet_type());
        }
        if puback && message {
            break;
        }
        let read = tokio::time::timeout(WAIT, io.read_buf(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("nothing more after {seen:?}"))
            .unwrap();
        assert!(read > 0, "closed after {seen:?}");
    }
    use mqtt_streaming_proto::PacketType;
    assert_eq!(&seen[..2], [PacketType::ConnAck, PacketType::SubAck]);
    broker.shutdown().await;
}
