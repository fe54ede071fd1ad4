//! The client against the server flow over `tokio::io::duplex`: both drivers, end to end.

mod support;

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use mqtt_streaming_proto::{
    ProtocolVersion, QoS, ReasonCode, SubscriptionOptions, UnsubAck, Will, WillProperties,
};
use mqtt_streaming_session::{
    AckMode, CloseReason, CommandError, Initiator, SubscribeRequest, UnsubscribeRequest,
};
use mqtt_streaming_tokio::{connect, serve_connection, ClientOptions, Error, Event, ServerOptions};
use support::*;

fn options(version: ProtocolVersion, id: &str) -> ClientOptions {
    let mut connect = connect_packet(version, id);
    connect.keep_alive = 30;
    ClientOptions::new(connect)
}

fn manual_server() -> ServerOptions {
    let mut server = ServerOptions::default();
    server.config.ack_mode = AckMode::Manual;
    server
}

/// QoS 0, 1 and 2 from the client to the server and back, for both protocol versions: each
/// publish future resolves with Success once acknowledged, each message arrives once, in
/// order, at the QoS of the publish (the subscription grants QoS 2).
/// [MQTT-3.3.4-1] (3.1.1 and 5.0), [MQTT-4.3.2-4] and [MQTT-4.3.3-11] (5.0).
#[tokio::test]
async fn qos_0_1_2_both_ways() {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let (client, mut events, mut router) = duplex_pair(
            options(version, "both-ways"),
            ServerOptions::default(),
            Behaviour::default(),
        )
        .await;
        let suback = client
            .subscribe(SubscribeRequest::new(filter("echo/#"), QoS::ExactlyOnce))
            .await
            .unwrap();
        assert_eq!(suback.reason_codes, [ReasonCode::granted(QoS::ExactlyOnce)]);
        let payloads = ["zero", "one", "two"];
        for (qos, payload) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .zip(payloads)
        {
            let outcome = client
                .publish(message("echo/x", qos, payload))
                .await
                .unwrap();
            assert_eq!(outcome.reason_code, ReasonCode::Success);
            assert!(outcome.is_success());
            let (seen, _) = router.next_message().await;
            assert_eq!(seen.qos_pid.qos(), qos, "{version:?}");
            assert_eq!(&seen.payload[..], payload.as_bytes());
        }
        for (qos, payload) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .zip(payloads)
        {
            let (publish, ack) = next_message(&mut events).await;
            assert_eq!(publish.qos_pid.qos(), qos, "{version:?}");
            assert_eq!(&publish.payload[..], payload.as_bytes());
            assert_eq!(publish.topic.as_str(), "echo/x");
            assert!(ack.is_none(), "automatic acks");
        }
        // Exactly once: nothing else arrives.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), next_message(&mut events))
                .await
                .is_err()
        );
        client.disconnect().await.unwrap();
    }
}

/// The publish future resolves with the server's reason code: 0x10 (a success code) and
/// 0x87 Not authorized on PUBACK, 0x87 on the PUBREC that ends a QoS 2 flow, and the PUBCOMP's
/// Success after a PUBREC with 0x10, which the PUBREL continues ([MQTT-4.3.3-4] 5.0).
#[tokio::test]
async fn publish_resolves_with_the_reason_code() {
    for (code, qos) in [
        (ReasonCode::NoMatchingSubscribers, QoS::AtLeastOnce),
        (ReasonCode::NotAuthorized, QoS::AtLeastOnce),
        (ReasonCode::NotAuthorized, QoS::ExactlyOnce),
        (ReasonCode::NoMatchingSubscribers, QoS::ExactlyOnce),
    ] {
        // A PUBREC below 0x80 continues the flow: the outcome is then the PUBCOMP's code.
        let expected = match (qos, code.is_error()) {
            (QoS::ExactlyOnce, false) => ReasonCode::Success,
            _ => code,
        };
        let behaviour = Behaviour {
            ack_with: Some(code),
            no_echo: true,
            ..Behaviour::default()
        };
        let (client, _events, mut router) = duplex_pair(
            options(ProtocolVersion::V5, "codes"),
            manual_server(),
            behaviour,
        )
        .await;
        let outcome = client.publish(message("t", qos, "p")).await.unwrap();
        assert_eq!(outcome.reason_code, expected, "{qos:?}");
        assert_eq!(outcome.is_success(), !code.is_error());
        let (publish, ack) = router.next_message().await;
        assert_eq!(publish.qos_pid.qos(), qos);
        assert!(ack.is_some(), "manual mode gives an ack id");
        client.disconnect().await.unwrap();
    }
}

/// SUBACK codes come back per filter, in order ([MQTT-3.9.3-1] 5.0); UNSUBACK likewise.
#[tokio::test]
async fn subscribe_and_unsubscribe_results() {
    let behaviour = Behaviour {
        suback: Some(vec![
            ReasonCode::granted(QoS::AtLeastOnce),
            ReasonCode::NotAuthorized,
            ReasonCode::granted(QoS::AtMostOnce),
        ]),
        ..Behaviour::default()
    };
    let (client, _events, _router) = duplex_pair(
        options(ProtocolVersion::V5, "subs"),
        ServerOptions::default(),
        behaviour,
    )
    .await;
    let request = SubscribeRequest::new(filter("a/+"), QoS::ExactlyOnce)
        .and(
            filter("secret/#"),
            SubscriptionOptions::new(QoS::AtLeastOnce),
        )
        .and(filter("c"), SubscriptionOptions::new(QoS::AtMostOnce));
    let suback = client.subscribe(request).await.unwrap();
    assert_eq!(
        suback.reason_codes,
        [
            ReasonCode::granted(QoS::AtLeastOnce),
            ReasonCode::NotAuthorized,
            ReasonCode::GRANTED_QOS_0
        ]
    );
    let mut unsubscribe = UnsubscribeRequest::new(filter("a/+"));
    unsubscribe.filters.push(filter("never"));
    let unsuback: UnsubAck = client.unsubscribe(unsubscribe).await.unwrap();
    assert_eq!(
        unsuback.reason_codes,
        [ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
    );
    // A request the session refuses never reaches the wire: the error comes back at once.
    let empty = UnsubscribeRequest {
        filters: Vec::new(),
        properties: Default::default(),
    };
    assert!(matches!(
        client.unsubscribe(empty).await,
        Err(Error::Rejected(CommandError::Encode(_)))
    ));
    client.disconnect().await.unwrap();
}

/// Manual acks: the server's QoS 1 publish stays unacknowledged until the application acks;
/// then the server's publish future resolves with the code the client chose. Acks given out of
/// order leave in arrival order ([MQTT-4.6.0-2] 5.0), and a second ack of the same id is refused.
#[tokio::test(start_paused = true)]
async fn manual_acks() {
    let mut opts = options(ProtocolVersion::V5, "manual");
    opts.session.ack_mode = AckMode::Manual;
    let (client, mut events, router) =
        duplex_pair(opts, ServerOptions::default(), Behaviour::default()).await;
    let first = router
        .handle
        .begin_publish(message("m/1", QoS::AtLeastOnce, "first"))
        .await
        .unwrap();
    let second = router
        .handle
        .begin_publish(message("m/2", QoS::AtLeastOnce, "second"))
        .await
        .unwrap();
    let (p1, id1) = next_message(&mut events).await;
    let (p2, id2) = next_message(&mut events).await;
    assert_eq!(&p1.payload[..], b"first");
    assert_eq!(&p2.payload[..], b"second");
    let (id1, id2) = (id1.unwrap(), id2.unwrap());

    let mut first = pin!(first);
    let mut second = pin!(second);
    // Not acked yet: the server's futures wait (paused time: the timeout elapses at once).
    assert!(tokio::time::timeout(Duration::from_secs(5), first.as_mut())
        .await
        .is_err());
    // Ack the second first: it is held back until the first is acked (arrival order).
    client.ack(id2, ReasonCode::Success).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), second.as_mut())
            .await
            .is_err()
    );
    client
        .ack(id1, ReasonCode::ImplementationSpecificError)
        .await
        .unwrap();
    let outcome1 = first.await.unwrap();
    assert_eq!(
        outcome1.reason_code,
        ReasonCode::ImplementationSpecificError
    );
    let outcome2 = second.await.unwrap();
    assert_eq!(outcome2.reason_code, ReasonCode::Success);
    assert!(matches!(
        client.ack(id1, ReasonCode::Success).await,
        Err(Error::Rejected(CommandError::UnknownAck))
    ));
    client.disconnect().await.unwrap();
}

/// Back-pressure: with a window of 1, a queue of 1 and a command channel of 1, and a server
/// that never acknowledges, `try_publish` soon hands the message back with QueueFull, and
/// `publish` waits; once the server acks, the waiting publish goes through.
#[tokio::test(start_paused = true)]
async fn back_pressure() {
    let mut opts = options(ProtocolVersion::V5, "pressure");
    opts.session.max_inflight = 1;
    opts.session.max_queued = 1;
    opts.command_capacity = 1;
    let behaviour = Behaviour {
        no_echo: true,
        ..Behaviour::default()
    };
    let (client, _events, mut router) = duplex_pair(opts, manual_server(), behaviour).await;
    let mut receipts = Vec::new();
    let refused = loop {
        let n = receipts.len();
        assert!(n < 10, "the queue never filled up");
        let payload = format!("m{n}");
        let m = mqtt_streaming_session::Message::new(topic("bp"), QoS::AtLeastOnce, payload);
        match client.try_publish(m) {
            Ok(receipt) => receipts.push(receipt),
            Err(refused) => break refused,
        }
        // Let the driver take it from the channel.
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(matches!(
        refused.error,
        Error::Rejected(CommandError::QueueFull)
    ));
    assert_eq!(
        refused.message.payload,
        format!("m{}", receipts.len()).as_bytes()
    );
    // in flight (1) + session queue (1) + held by the driver (1) + channel (1)
    assert_eq!(receipts.len(), 4);

    // `publish` waits for room instead.
    let waiter = client.clone();
    let waiting = tokio::spawn(async move {
        waiter
            .publish(message("bp", QoS::AtLeastOnce, "waiter"))
            .await
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!waiting.is_finished());
    // The server acks every message as it arrives; everything drains, in order.
    let mut order = Vec::new();
    for _ in 0..5 {
        let (publish, ack) = router.next_message().await;
        order.push(String::from_utf8(publish.payload.to_vec()).unwrap());
        router
            .handle
            .ack(ack.unwrap(), ReasonCode::Success)
            .await
            .unwrap();
    }
    assert_eq!(order, ["m0", "m1", "m2", "m3", "waiter"]);
    assert!(waiting.await.unwrap().unwrap().is_success());
    for receipt in receipts {
        assert!(receipt.await.unwrap().is_success());
    }
    client.disconnect().await.unwrap();
}

/// Cancel safety: a `publish` future dropped after it handed the message to the driver does
/// not lose the message or upset the session; later operations work normally.
#[tokio::test]
async fn dropped_publish_future_still_publishes() {
    let behaviour = Behaviour {
        no_echo: true,
        ..Behaviour::default()
    };
    let (client, _events, mut router) = duplex_pair(
        options(ProtocolVersion::V5, "cancel"),
        ServerOptions::default(),
        behaviour,
    )
    .await;
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::AtMostOnce] {
        {
            let publish = client.publish(message("c", qos, "dropped"));
            let mut publish = pin!(publish);
            // One poll hands the message over (the channel has room); then drop the future.
            poll_fn(|cx| {
                assert!(publish.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
        }
        let (seen, _) = router.next_message().await;
        assert_eq!(&seen.payload[..], b"dropped");
        assert_eq!(seen.qos_pid.qos(), qos);
        let outcome = client.publish(message("c", qos, "after")).await.unwrap();
        assert!(outcome.is_success());
        let (seen, _) = router.next_message().await;
        assert_eq!(&seen.payload[..], b"after");
    }
    // A dropped subscribe is still made.
    {
        let subscribe = client.subscribe(SubscribeRequest::new(filter("s"), QoS::AtLeastOnce));
        let mut subscribe = pin!(subscribe);
        poll_fn(|cx| {
            assert!(subscribe.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
    }
    let suback = client
        .subscribe(SubscribeRequest::new(filter("s2"), QoS::AtLeastOnce))
        .await
        .unwrap();
    assert_eq!(suback.reason_codes.len(), 1);
    client.disconnect().await.unwrap();
}

/// A refused CONNACK fails `connect` with the code, and the server closes the connection
/// ([MQTT-3.2.2-7] 5.0, [MQTT-3.2.2-5] 3.1.1).
#[tokio::test]
async fn refused_connack_is_connection_refused() {
    for (version, code) in [
        (ProtocolVersion::V5, ReasonCode::BadUserNameOrPassword),
        (ProtocolVersion::V3_1_1, ReasonCode::NotAuthorized),
    ] {
        let (client_io, server_io) = tokio::io::duplex(4096);
        let behaviour = Behaviour {
            reject: Some(code),
            ..Behaviour::default()
        };
        let mut router = spawn_router(
            serve_connection(server_io, ServerOptions::default()),
            behaviour,
        );
        let result = connect(client_io, options(version, "refused")).await;
        match result {
            Err(Error::ConnectionRefused(got)) => assert_eq!(got, code, "{version:?}"),
            other => panic!("expected ConnectionRefused, got {other:?}"),
        }
        let (_, reason, _) = router.closed().await;
        assert_eq!(reason, CloseReason::ConnectRefused(code));
        assert!(router.handle.is_closed());
    }
}

/// A server-initiated DISCONNECT is reported as `Closed` by the peer with its code, pending
/// operations fail with that reason, and later operations too.
#[tokio::test]
async fn server_disconnect_is_reported() {
    let behaviour = Behaviour {
        no_echo: true,
        ..Behaviour::default()
    };
    let (client, mut events, mut router) = duplex_pair(
        options(ProtocolVersion::V5, "kicked"),
        manual_server(),
        behaviour,
    )
    .await;
    // Never acked by the server (manual mode, no ack).
    let pending = client
        .begin_publish(message("p", QoS::AtLeastOnce, "pending"))
        .await
        .unwrap();
    router.next_message().await;
    router
        .handle
        .disconnect(ReasonCode::AdministrativeAction)
        .await
        .unwrap();
    let (initiator, reason) = next_closed(&mut events).await;
    assert_eq!(initiator, Initiator::Peer);
    assert_eq!(
        reason,
        CloseReason::Disconnect(ReasonCode::AdministrativeAction)
    );
    assert!(events.recv().await.is_none(), "Closed is the last event");
    let expected = CloseReason::Disconnect(ReasonCode::AdministrativeAction);
    match pending.await {
        Err(Error::Closed(Some(reason))) => assert_eq!(reason, expected),
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(client.is_closed());
    assert_eq!(client.close_reason(), Some(expected.clone()));
    match client.publish(message("p", QoS::AtMostOnce, "late")).await {
        Err(Error::Closed(Some(reason))) => assert_eq!(reason, expected),
        other => panic!("expected Closed, got {other:?}"),
    }
    let (initiator, reason, _) = router.closed().await;
    assert_eq!(initiator, Initiator::Application);
    assert_eq!(reason, expected);
}

fn with_will(version: ProtocolVersion, id: &str) -> ClientOptions {
    let mut opts = options(version, id);
    opts.connect.will = Some(Will {
        topic: topic("wills/x"),
        payload: "gone".into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    opts
}

/// Graceful client shutdown: publishes handed over before `disconnect` still go out, the
/// DISCONNECT makes the server discard the will ([MQTT-3.14.4-3] 3.1.1 and 5.0), the transport
/// is closed ([MQTT-3.14.4-2] 5.0) and `Closed` is the last event.
#[tokio::test]
async fn graceful_client_disconnect() {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let behaviour = Behaviour {
            no_echo: true,
            ..Behaviour::default()
        };
        let (client, mut events, mut router) = duplex_pair(
            with_will(version, "graceful"),
            ServerOptions::default(),
            behaviour,
        )
        .await;
        let receipt = client
            .begin_publish(message("last", QoS::AtMostOnce, "before disconnect"))
            .await
            .unwrap();
        client.disconnect().await.unwrap();
        assert!(receipt.await.unwrap().is_success());
        let (seen, _) = router.next_message().await;
        assert_eq!(&seen.payload[..], b"before disconnect");
        let (initiator, reason, will) = router.closed().await;
        assert_eq!(initiator, Initiator::Peer, "{version:?}");
        assert_eq!(reason, CloseReason::Disconnect(ReasonCode::Success));
        assert!(will.is_none(), "a normal DISCONNECT discards the will");
        let (initiator, reason) = next_closed(&mut events).await;
        assert_eq!(initiator, Initiator::Application);
        assert!(reason.is_normal());
        assert!(events.recv().await.is_none());
        assert!(matches!(client.disconnect().await, Err(Error::Closed(_))));
    }
}

/// Dropping every handle disconnects gracefully too; a transport that just dies instead makes
/// the server hand out the will ([MQTT-3.1.2-8] 5.0).
#[tokio::test]
async fn dropped_handles_disconnect_but_a_dead_transport_leaves_the_will() {
    let (client, _events, mut router) = duplex_pair(
        with_will(ProtocolVersion::V5, "dropped"),
        ServerOptions::default(),
        Behaviour::default(),
    )
    .await;
    drop(client);
    let (initiator, reason, will) = router.closed().await;
    assert_eq!(initiator, Initiator::Peer);
    assert_eq!(reason, CloseReason::Disconnect(ReasonCode::Success));
    assert!(will.is_none());

    // The client's transport vanishes without a DISCONNECT.
    let (client_io, server_io) = tokio::io::duplex(4096);
    let mut router = spawn_router(
        serve_connection(server_io, ServerOptions::default()),
        Behaviour::default(),
    );
    let killed = Arc::new(AtomicBool::new(false));
    let io = Killable {
        inner: client_io,
        killed: killed.clone(),
    };
    let (client, _events) = connect(io, with_will(ProtocolVersion::V5, "vanishing"))
        .await
        .unwrap();
    killed.store(true, Ordering::SeqCst);
    drop(client);
    let (initiator, _, will) = router.closed().await;
    // The DISCONNECT was swallowed: the server only sees the transport go.
    assert_eq!(initiator, Initiator::Transport);
    assert_eq!(will.unwrap().payload, "gone".as_bytes());
}

/// Keep alive over (paused) time: with a 2 s keep alive and nothing to send for a minute, the
/// client's PINGREQs keep the connection open ([MQTT-3.1.2-23] 3.1.1, [MQTT-3.1.2-20] 5.0),
/// where the server would otherwise close it after 1.5 x keep alive ([MQTT-3.1.2-22] 5.0).
#[tokio::test(start_paused = true)]
async fn keep_alive_pings_keep_the_connection_open() {
    let mut opts = options(ProtocolVersion::V5, "pinger");
    opts.connect.keep_alive = 2;
    let (client, mut events, router) =
        duplex_pair(opts, ServerOptions::default(), Behaviour::default()).await;
    let start = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(start.elapsed() >= Duration::from_secs(60));
    assert!(!client.is_closed());
    assert!(!router.handle.is_closed());
    assert!(events
        .try_recv()
        .is_some_and(|e| matches!(e, Event::Connected(_))));
    assert!(events.try_recv().is_none());
    client.disconnect().await.unwrap();
}

/// Batching: publishes handed over together leave in one write, not one per packet.
#[tokio::test]
async fn one_drain_is_one_write() {
    let (client_io, server_io) = tokio::io::duplex(1024 * 1024);
    let mut router = spawn_router(
        serve_connection(server_io, ServerOptions::default()),
        Behaviour {
            no_echo: true,
            ..Behaviour::default()
        },
    );
    let writes = Arc::new(AtomicUsize::new(0));
    let io = CountingIo {
        inner: client_io,
        writes: writes.clone(),
    };
    let (client, _events) = connect(io, options(ProtocolVersion::V5, "batch"))
        .await
        .unwrap();
    let before = writes.load(Ordering::SeqCst);
    let mut receipts = Vec::new();
    // On this current-thread runtime the driver does not run until we yield: all 50 are
    // waiting in the channel when it does.
    for i in 0..50 {
        let m = mqtt_streaming_session::Message::new(topic("b"), QoS::AtLeastOnce, format!("{i}"));
        receipts.push(client.begin_publish(m).await.unwrap());
    }
    for receipt in receipts {
        receipt.await.unwrap();
    }
    for i in 0..50 {
        let (seen, _) = router.next_message().await;
        assert_eq!(seen.payload, format!("{i}").as_bytes());
    }
    let used = writes.load(Ordering::SeqCst) - before;
    assert_eq!(used, 1, "50 PUBLISHes in {used} writes");
    client.disconnect().await.unwrap();
}

/// Issue 11: the crate-doc server (`accept` with default properties and no session) serves
/// an MQTT 5 client with an empty client identifier, as mosquitto_pub can be: the session
/// assigns one ([MQTT-3.2.2-16], 5.0). The plain `accept` used to be refused for want of an
/// Assigned Client Identifier, leaving the client waiting for a CONNACK.
#[tokio::test]
async fn empty_client_id_v5_is_served_by_the_plain_accept_mqtt_3_2_2_16() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let (client_io, server_io) = tokio::io::duplex(4096);
        let mut router = spawn_router(
            serve_connection(server_io, ServerOptions::default()),
            Behaviour::default(),
        );
        let connected = tokio::time::timeout(
            Duration::from_secs(5),
            connect(client_io, options(version, "")),
        )
        .await;
        let (client, _events) = connected.expect("a CONNACK in time").unwrap();
        let outcome = client
            .publish(message("empty/id", QoS::AtLeastOnce, "x"))
            .await
            .unwrap();
        assert_eq!(outcome.reason_code, ReasonCode::Success);
        assert!(matches!(router.next().await, Seen::Connect(c) if c.client_id.is_empty()));
        client.disconnect().await.unwrap();
        router.closed().await;
    }
}

/// Issue 11: a refused `ConnectionHandle::accept` does not lose the session it was given:
/// it comes back through `detach_session`, and the next `accept` can resume it.
#[tokio::test]
async fn refused_accept_gives_the_detached_session_back() {
    use mqtt_streaming_proto::{ConnAckProperties, MqttString};
    use mqtt_streaming_tokio::ConnectionEvent;

    let (client_io, server_io) = tokio::io::duplex(4096);
    let mut router = spawn_router(
        serve_connection(server_io, ServerOptions::default()),
        Behaviour::default(),
    );
    let (client, _events) = connect(client_io, options(ProtocolVersion::V5, "keep"))
        .await
        .unwrap();
    client.disconnect().await.unwrap();
    router.closed().await;
    let detached = router
        .handle
        .detach_session()
        .expect("the accepted session");

    let (client_io, server_io) = tokio::io::duplex(4096);
    let mut conn = serve_connection(server_io, ServerOptions::default());
    let mut resume = connect_packet(ProtocolVersion::V5, "keep");
    resume.clean_start = false;
    let connecting = tokio::spawn(connect(client_io, ClientOptions::new(resume)));
    assert!(matches!(
        conn.events().recv().await,
        Some(ConnectionEvent::Connect(_))
    ));
    // An Authentication Method the CONNECT did not carry: the session refuses the answer.
    let bad = ConnAckProperties {
        authentication_method: Some(MqttString::new("made-up").unwrap()),
        ..ConnAckProperties::default()
    };
    let refused = conn.accept(bad, Some(detached)).await.unwrap_err();
    assert!(
        matches!(
            refused,
            Error::Rejected(CommandError::AuthenticationMethodMismatch)
        ),
        "{refused:?}"
    );
    let detached = conn.detach_session().expect("the session is handed back");
    conn.accept(ConnAckProperties::default(), Some(detached))
        .await
        .unwrap();
    let (client, _events) = connecting.await.unwrap().unwrap();
    client.disconnect().await.unwrap();
}
