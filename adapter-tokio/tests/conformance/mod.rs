//! The conformance suite: one set of end-to-end tests, written once against the API the three
//! adapters share, run unchanged under tokio, smol and async-std.
//!
//! A test crate includes it with
//! `#[path = "../../adapter-tokio/tests/conformance/mod.rs"] mod conformance;` after naming, at
//! its root, the adapter (`use mqtt_streaming_smol as adapter;`) and a module `rt` with three
//! functions over its runtime:
//!
//! ```text
//! pub fn block_on<F: Future>(future: F) -> F::Output;
//! pub fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static)
//!     -> Pin<Box<dyn Future<Output = T> + Send>>; // dropping it may cancel the task
//! pub async fn sleep(duration: Duration);
//! ```
//!
//! The tests here are a client against the server flow over loopback TCP (real sockets, real
//! time), the server being a small router written with the server flow (accept, grant, echo);
//! those of `broker.rs` are clients against the embedded broker (`BrokerServer`); those of
//! `interop.rs` (ignored unless `--ignored`) run against mosquitto and its tools.

#![allow(dead_code, unreachable_pub)]

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use mqtt_streaming_proto::{
    topic_matches, AckProperties, ConnAckProperties, Connect, MqttString, ProtocolVersion, Publish,
    QoS, ReasonCode, TopicFilter, TopicName,
};
use mqtt_streaming_session::SubscribeRequest;
use mqtt_streaming_session::{AckMode, CloseReason, CommandError, InboundId, Initiator, Message};
use tokio::sync::mpsc;

use crate::adapter::{
    connect_tcp, Client, ClientEvents, ClientOptions, ConnectionEvent, ConnectionHandle, Error,
    Event, Server, ServerConnection, ServerOptions,
};
use crate::rt;

mod broker;
mod interop;

/// How long a test waits for something that must happen.
const PATIENCE: Duration = Duration::from_secs(10);

/// `future`'s output, or `None` when `duration` passes first.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut sleep = pin!(rt::sleep(duration));
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        sleep.as_mut().poll(cx).map(|()| None)
    })
    .await
}

pub fn options(version: ProtocolVersion, id: &str) -> ClientOptions {
    let mut connect = Connect::new(version, MqttString::new(id).unwrap());
    connect.keep_alive = 10;
    ClientOptions::new(connect)
}

pub fn topic(name: &str) -> TopicName {
    TopicName::new(name).unwrap()
}

pub fn filter(name: &str) -> TopicFilter {
    TopicFilter::new(name).unwrap()
}

pub fn message(name: &str, qos: QoS, payload: impl ToString) -> Message {
    Message::new(topic(name), qos, payload.to_string().into_bytes())
}

/// How the test server behaves.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Refuse every CONNECT with this code.
    pub reject: Option<ReasonCode>,
    /// Don't route messages back to the client.
    pub no_echo: bool,
}

/// What the test server saw.
#[derive(Debug)]
pub enum Seen {
    Message(Box<Publish>, Option<InboundId>),
    Closed(Initiator, CloseReason),
}

/// The test server's side of one connection: what it saw, and its handle.
pub struct Router {
    pub seen: mpsc::UnboundedReceiver<Seen>,
    pub handle: ConnectionHandle,
    /// The router's task (smol cancels a task whose handle is dropped).
    _task: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Router {
    pub async fn next(&mut self) -> Seen {
        timeout(PATIENCE, self.seen.recv())
            .await
            .expect("the server saw nothing in time")
            .expect("the server is gone")
    }

    pub async fn next_message(&mut self) -> (Publish, Option<InboundId>) {
        loop {
            if let Seen::Message(publish, ack) = self.next().await {
                return (*publish, ack);
            }
        }
    }

    pub async fn closed(&mut self) -> (Initiator, CloseReason) {
        loop {
            if let Seen::Closed(initiator, reason) = self.next().await {
                return (initiator, reason);
            }
        }
    }
}

/// Runs the test server over `conn` (accepts or refuses, grants every subscription, routes
/// the client's messages back to it).
pub fn spawn_router(mut conn: ServerConnection, behaviour: Behaviour) -> Router {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let handle = conn.handle().clone();
    let task = rt::spawn(async move {
        let mut subscriptions: Vec<(TopicFilter, QoS)> = Vec::new();
        while let Some(event) = conn.events().recv().await {
            match event {
                ConnectionEvent::Connect(_) => match behaviour.reject {
                    Some(code) => conn.reject(code).await.unwrap(),
                    None => conn
                        .accept(ConnAckProperties::default(), None)
                        .await
                        .unwrap(),
                },
                ConnectionEvent::Subscribe(subscribe) => {
                    let mut codes = Vec::new();
                    for s in &subscribe.subscriptions {
                        subscriptions.push((s.filter.clone(), s.options.qos));
                        codes.push(ReasonCode::granted(s.options.qos));
                    }
                    conn.suback(subscribe.packet_id, codes, AckProperties::default())
                        .await
                        .unwrap();
                }
                ConnectionEvent::Message { publish, ack } => {
                    let granted = subscriptions
                        .iter()
                        .filter(|(f, _)| topic_matches(f.as_str(), publish.topic.as_str()))
                        .map(|(_, qos)| *qos)
                        .max();
                    if let (Some(granted), false) = (granted, behaviour.no_echo) {
                        let qos = publish.qos_pid.qos().min(granted);
                        let echo =
                            Message::new(publish.topic.clone(), qos, publish.payload.clone());
                        let _receipt = conn.begin_publish(echo).await.unwrap();
                    }
                    let _ = seen_tx.send(Seen::Message(Box::new(publish), ack));
                }
                ConnectionEvent::Closed {
                    initiator, reason, ..
                } => {
                    let _ = seen_tx.send(Seen::Closed(initiator, reason));
                }
                _ => {}
            }
        }
    });
    Router {
        seen,
        handle,
        _task: task,
    }
}

/// A client connected over loopback TCP to `server`, and the router serving it.
pub async fn tcp_pair(
    server: &Server,
    options: ClientOptions,
    behaviour: Behaviour,
) -> (Result<(Client, ClientEvents), Error>, Router) {
    let addr: SocketAddr = server.local_addr().unwrap();
    let client = rt::spawn(connect_tcp(addr, options));
    let conn = server.accept().await.unwrap();
    assert!(conn.peer_addr().is_some_and(|a| a.ip().is_loopback()));
    let router = spawn_router(conn, behaviour);
    (client.await, router)
}

pub async fn bind(options: ServerOptions) -> Server {
    Server::bind("127.0.0.1:0", options).await.unwrap()
}

/// The next `Message` event, skipping others.
pub async fn next_message(events: &mut ClientEvents) -> (Publish, Option<InboundId>) {
    loop {
        let event = timeout(PATIENCE, events.recv())
            .await
            .expect("no event in time")
            .expect("events ended");
        if let Event::Message { publish, ack } = event {
            return (publish, ack);
        }
    }
}

/// The `Closed` event, skipping others.
pub async fn next_closed(events: &mut ClientEvents) -> (Initiator, CloseReason) {
    loop {
        let event = timeout(PATIENCE, events.recv())
            .await
            .expect("no event in time")
            .expect("events ended before Closed");
        if let Event::Closed {
            initiator, reason, ..
        } = event
        {
            return (initiator, reason);
        }
    }
}

/// QoS 0, 1 and 2 from the client to the server and back, for MQTT 3.1.1 and 5.0: every
/// publish resolves with Success once acknowledged, the server sees each message at its QoS,
/// and each comes back once, in order ([MQTT-3.3.4-1], [MQTT-4.6.0-6]).
#[test]
fn qos_0_1_2_both_ways() {
    rt::block_on(async {
        let server = bind(ServerOptions::default()).await;
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let (client, mut router) =
                tcp_pair(&server, options(version, "qos"), Behaviour::default()).await;
            let (client, mut events) = client.unwrap();
            let suback = client
                .subscribe(SubscribeRequest::new(filter("q/#"), QoS::ExactlyOnce))
                .await
                .unwrap();
            assert_eq!(suback.reason_codes, [ReasonCode::granted(QoS::ExactlyOnce)]);
            let levels = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
            for qos in levels {
                let outcome = client.publish(message("q/t", qos, "x")).await.unwrap();
                assert_eq!(outcome.reason_code, ReasonCode::Success, "{version:?}");
                let (seen, _) = router.next_message().await;
                assert_eq!(seen.qos_pid.qos(), qos, "{version:?}");
            }
            for qos in levels {
                let (publish, _) = next_message(&mut events).await;
                assert_eq!(publish.qos_pid.qos(), qos, "{version:?}");
                assert_eq!(publish.topic.as_str(), "q/t");
            }
            assert!(
                timeout(Duration::from_millis(200), next_message(&mut events))
                    .await
                    .is_none(),
                "each message exactly once"
            );
            client.disconnect().await.unwrap();
            assert_eq!(
                router.closed().await,
                (
                    Initiator::Peer,
                    CloseReason::Disconnect(ReasonCode::Success)
                )
            );
        }
        server.shutdown().await;
    });
}

/// Manual acks: the server's QoS 1 publishes wait until the application acks; acks given out
/// of order leave in arrival order ([MQTT-4.6.0-2]); the server's futures resolve with the
/// codes the client chose; a second ack of the same id is refused.
#[test]
fn manual_acks() {
    rt::block_on(async {
        let server = bind(ServerOptions::default()).await;
        let mut opts = options(ProtocolVersion::V5, "manual");
        opts.session.ack_mode = AckMode::Manual;
        let (client, router) = tcp_pair(&server, opts, Behaviour::default()).await;
        let (client, mut events) = client.unwrap();
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
        assert_eq!(
            (&p1.payload[..], &p2.payload[..]),
            (&b"first"[..], &b"second"[..])
        );
        let (id1, id2) = (id1.unwrap(), id2.unwrap());
        let mut first = pin!(first);
        let mut second = pin!(second);
        let wait = Duration::from_millis(200);
        assert!(
            timeout(wait, first.as_mut()).await.is_none(),
            "not acked yet"
        );
        client.ack(id2, ReasonCode::Success).await.unwrap();
        assert!(
            timeout(wait, second.as_mut()).await.is_none(),
            "held back behind the first"
        );
        client
            .ack(id1, ReasonCode::ImplementationSpecificError)
            .await
            .unwrap();
        assert_eq!(
            first.await.unwrap().reason_code,
            ReasonCode::ImplementationSpecificError
        );
        assert_eq!(second.await.unwrap().reason_code, ReasonCode::Success);
        assert!(matches!(
            client.ack(id1, ReasonCode::Success).await,
            Err(Error::Rejected(CommandError::UnknownAck))
        ));
        client.disconnect().await.unwrap();
        server.shutdown().await;
    });
}

/// Back-pressure: with a window of 1, a queue of 1, a command channel of 1 and a server that
/// does not ack yet, `try_publish` soon hands the message back (QueueFull) while `publish`
/// waits; once the server acks, everything drains in order.
#[test]
fn back_pressure() {
    rt::block_on(async {
        let mut server_options = ServerOptions::default();
        server_options.config.ack_mode = AckMode::Manual;
        let server = bind(server_options).await;
        let mut opts = options(ProtocolVersion::V5, "pressure");
        opts.session.max_inflight = 1;
        opts.session.max_queued = 1;
        opts.command_capacity = 1;
        let behaviour = Behaviour {
            no_echo: true,
            ..Behaviour::default()
        };
        let (client, mut router) = tcp_pair(&server, opts, behaviour).await;
        let (client, _events) = client.unwrap();
        let mut receipts = Vec::new();
        // A refusal counts once it lasts: until the driver took the last command from the
        // channel (late on a loaded machine), the channel alone is full.
        let mut refused_since = None;
        let refused = loop {
            let n = receipts.len();
            assert!(n < 10, "the queue never filled up");
            match client.try_publish(message("bp", QoS::AtLeastOnce, format!("m{n}"))) {
                Ok(receipt) => {
                    receipts.push(receipt);
                    refused_since = None;
                }
                Err(refused) => {
                    let since = *refused_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= Duration::from_millis(500) {
                        break refused;
                    }
                }
            }
            // Let the driver take it from the channel.
            rt::sleep(Duration::from_millis(20)).await;
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

        let done = Arc::new(AtomicBool::new(false));
        let (waiter, flag) = (client.clone(), done.clone());
        let waiting = rt::spawn(async move {
            let outcome = waiter
                .publish(message("bp", QoS::AtLeastOnce, "waiter"))
                .await;
            flag.store(true, Ordering::SeqCst);
            outcome
        });
        rt::sleep(Duration::from_millis(300)).await;
        assert!(!done.load(Ordering::SeqCst), "publish waits for room");
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
        assert!(waiting.await.unwrap().is_success());
        for receipt in receipts {
            assert!(receipt.await.unwrap().is_success());
        }
        client.disconnect().await.unwrap();
        server.shutdown().await;
    });
}

/// Cancel safety: a `publish` future dropped after its first poll (the message handed over)
/// still delivers the message, at every QoS, and the session carries on normally.
#[test]
fn dropped_publish_future_still_delivered() {
    rt::block_on(async {
        let server = bind(ServerOptions::default()).await;
        let behaviour = Behaviour {
            no_echo: true,
            ..Behaviour::default()
        };
        let (client, mut router) =
            tcp_pair(&server, options(ProtocolVersion::V5, "cancel"), behaviour).await;
        let (client, _events) = client.unwrap();
        for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::AtMostOnce] {
            {
                let mut publish = pin!(client.publish(message("c", qos, "dropped")));
                // One poll hands the message over; then the future is dropped. On a
                // multi-threaded executor the driver (on another thread) may already have
                // sent the message and had it acknowledged by the time the receipt is first
                // polled, at any QoS: then the outcome must be a success. Either way the
                // message must arrive, once, below.
                poll_fn(|cx| {
                    if let Poll::Ready(outcome) = publish.as_mut().poll(cx) {
                        assert!(outcome.unwrap().is_success(), "{qos:?}");
                    }
                    Poll::Ready(())
                })
                .await;
            }
            let (seen, _) = router.next_message().await;
            assert_eq!(
                (&seen.payload[..], seen.qos_pid.qos()),
                (&b"dropped"[..], qos)
            );
            assert!(client
                .publish(message("c", qos, "after"))
                .await
                .unwrap()
                .is_success());
            let (seen, _) = router.next_message().await;
            assert_eq!(&seen.payload[..], b"after");
        }
        client.disconnect().await.unwrap();
        server.shutdown().await;
    });
}

/// Graceful shutdown: a client's `disconnect` reaches the server as a normal DISCONNECT; the
/// server's `shutdown` tells MQTT 5 clients 0x8B Server shutting down (3.1.1 clients see the
/// transport close), returns once every connection is closed, and stops listening.
#[test]
fn graceful_shutdown() {
    rt::block_on(async {
        let server = bind(ServerOptions::default()).await;
        let addr = server.local_addr().unwrap();
        let (leaving, mut router) = tcp_pair(
            &server,
            options(ProtocolVersion::V5, "leaving"),
            Behaviour::default(),
        )
        .await;
        let (leaving, _events) = leaving.unwrap();
        leaving.disconnect().await.unwrap();
        assert!(leaving.is_closed());
        assert_eq!(
            router.closed().await,
            (
                Initiator::Peer,
                CloseReason::Disconnect(ReasonCode::Success)
            )
        );

        let (v5, _r1) = tcp_pair(
            &server,
            options(ProtocolVersion::V5, "v5"),
            Behaviour::default(),
        )
        .await;
        let (v5, mut v5_events) = v5.unwrap();
        let (v3, _r2) = tcp_pair(
            &server,
            options(ProtocolVersion::V3_1_1, "v3"),
            Behaviour::default(),
        )
        .await;
        let (v3, mut v3_events) = v3.unwrap();
        timeout(PATIENCE, server.shutdown())
            .await
            .expect("shutdown finished");
        assert_eq!(
            next_closed(&mut v5_events).await,
            (
                Initiator::Peer,
                CloseReason::Disconnect(ReasonCode::ServerShuttingDown)
            )
        );
        assert_eq!(
            next_closed(&mut v3_events).await,
            (Initiator::Transport, CloseReason::TransportClosed)
        );
        assert!(v5.is_closed() && v3.is_closed());
        assert!(matches!(
            v5.publish(message("t", QoS::AtMostOnce, "late")).await,
            Err(Error::Closed(_))
        ));
        assert!(connect_tcp(addr, options(ProtocolVersion::V5, "late"))
            .await
            .is_err());
    });
}

/// A refused CONNACK fails `connect_tcp` with the server's code, for MQTT 5 and 3.1.1, and the
/// server closes the connection ([MQTT-3.2.2-7] 5.0, [MQTT-3.2.2-5] 3.1.1).
#[test]
fn refused_connack() {
    rt::block_on(async {
        let server = bind(ServerOptions::default()).await;
        for (version, code) in [
            (ProtocolVersion::V5, ReasonCode::BadUserNameOrPassword),
            (ProtocolVersion::V3_1_1, ReasonCode::NotAuthorized),
        ] {
            let behaviour = Behaviour {
                reject: Some(code),
                ..Behaviour::default()
            };
            let (client, mut router) =
                tcp_pair(&server, options(version, "refused"), behaviour).await;
            match client {
                Err(Error::ConnectionRefused(got)) => assert_eq!(got, code, "{version:?}"),
                other => panic!("expected ConnectionRefused, got {other:?}"),
            }
            let (_, reason) = router.closed().await;
            assert_eq!(reason, CloseReason::ConnectRefused(code));
            assert!(router.handle.is_closed());
        }
        server.shutdown().await;
    });
}
