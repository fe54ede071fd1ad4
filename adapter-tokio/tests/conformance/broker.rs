//! The embedded broker (`BrokerServer`) end to end, written once against the API the three
//! adapters share: our client against the broker over loopback TCP, connections cut by a
//! proxy of plain threads and std sockets (no runtime of its own, so the same on every
//! runtime).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqtt_streaming_proto::{ProtocolVersion, QoS, ReasonCode, Will};
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_session::{CloseReason, Initiator, SubscribeRequest};

use super::{filter, message, next_closed, next_message, options, timeout, topic, PATIENCE};
use crate::adapter::{connect_tcp, BrokerHandle, BrokerServer, ClientEvents, ClientOptions, Event};
use crate::rt;

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// A broker on 127.0.0.1 (an ephemeral port), spawned on the runtime.
async fn start() -> (SocketAddr, BrokerHandle) {
    let broker = BrokerServer::bind("127.0.0.1:0", BrokerConfig::default())
        .await
        .unwrap();
    let addr = broker.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    let handle = broker.spawn();
    assert_eq!(handle.local_addr(), Some(addr));
    (addr, handle)
}

/// Options of a client whose session outlives its connection (in 5.0, an expiry of an hour).
fn persistent(version: ProtocolVersion, id: &str) -> ClientOptions {
    let mut opts = options(version, id);
    opts.connect.clean_start = false;
    if version.is_v5() {
        opts.connect.properties.session_expiry_interval = Some(3600);
    }
    opts
}

/// The CONNACK's Session Present flag (the first event).
async fn session_present(events: &mut ClientEvents) -> bool {
    match timeout(PATIENCE, events.recv())
        .await
        .expect("no CONNACK event")
    {
        Some(Event::Connected(connack)) => connack.session_present,
        other => panic!("expected Connected, got {other:?}"),
    }
}

/// No application message arrives within 200 ms.
async fn no_message(events: &mut ClientEvents) {
    if let Some((publish, _)) = timeout(Duration::from_millis(200), next_message(events)).await {
        panic!("unexpected message {publish:?}");
    }
}

/// Waits until the broker holds exactly `n` open connections.
async fn connections(broker: &BrokerHandle, n: usize) {
    let waited = timeout(PATIENCE, async {
        while broker.stats().await.unwrap().connections != n {
            rt::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        waited.is_some(),
        "the broker did not get to {n} connections"
    );
}

/// A TCP proxy on 127.0.0.1 to `upstream`, on plain threads; [`cut`](Self::cut) shuts every
/// connection it carries down at once (both ends see the transport end, no DISCONNECT).
pub struct Proxy {
    pub addr: SocketAddr,
    sockets: Arc<Mutex<Vec<StdStream>>>,
    stopped: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sockets: Arc<Mutex<Vec<StdStream>>> = Arc::default();
        let stopped = Arc::new(AtomicBool::new(false));
        let (held, stop) = (sockets.clone(), stopped.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(inbound) = inbound else { continue };
                let Ok(outbound) = StdStream::connect(upstream) else {
                    continue;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let mut held = held.lock().unwrap();
                held.push(inbound.try_clone().unwrap());
                held.push(outbound.try_clone().unwrap());
                pipe(inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
                pipe(outbound, inbound);
            }
        });
        Self {
            addr,
            sockets,
            stopped,
        }
    }

    /// Shuts every connection carried so far down.
    pub fn cut(&self) {
        for socket in self.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` on a thread until either ends, then ends `to`'s writing side.
fn pipe(mut from: StdStream, mut to: StdStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accepting thread so that it sees the flag.
        let _ = StdStream::connect(self.addr);
    }
}

fn will(topic_name: &str) -> Will {
    Will {
        topic: topic(topic_name),
        payload: (&b"gone"[..]).into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    }
}

/// QoS 0, 1 and 2 through the broker, between clients of both versions: each publish is
/// acknowledged with Success, each message arrives once, in order, at the publish's QoS.
#[test]
fn broker_routes_qos_0_1_2() {
    rt::block_on(async {
        let (addr, broker) = start().await;
        for (i, (sub_v, pub_v)) in [(V311, V5), (V5, V311)].into_iter().enumerate() {
            let (sub, mut sub_events) = connect_tcp(addr, options(sub_v, &format!("s{i}")))
                .await
                .unwrap();
            let suback = sub
                .subscribe(SubscribeRequest::new(filter("b/+"), QoS::ExactlyOnce))
                .await
                .unwrap();
            assert_eq!(suback.reason_codes, [ReasonCode::GrantedQoS2]);
            let (publisher, _e) = connect_tcp(addr, options(pub_v, &format!("p{i}")))
                .await
                .unwrap();
            let levels = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
            for (n, qos) in levels.into_iter().enumerate() {
                let outcome = publisher
                    .publish(message(&format!("b/{n}"), qos, n))
                    .await
                    .unwrap();
                assert_eq!(outcome.reason_code, ReasonCode::Success);
            }
            for (n, qos) in levels.into_iter().enumerate() {
                let (publish, _) = next_message(&mut sub_events).await;
                assert_eq!(publish.topic.as_str(), format!("b/{n}"));
                assert_eq!(publish.qos_pid.qos(), qos);
                assert_eq!(&publish.payload[..], n.to_string().as_bytes());
            }
            no_message(&mut sub_events).await;
            sub.disconnect().await.unwrap();
            publisher.disconnect().await.unwrap();
            // `disconnect` returns once the DISCONNECT is sent, not once the broker read it:
            // a subscriber of this round still connected would also receive the next round's
            // messages (counted in `messages_out`).
            connections(&broker, 0).await;
        }
        let stats = broker.stats().await.unwrap();
        assert_eq!((stats.messages_in, stats.messages_out), (6, 6));
        broker.shutdown().await;
    });
}

/// A retained message goes to later subscribers of both versions with RETAIN set
/// ([MQTT-3.3.1-6]); an empty retained message clears it ([MQTT-3.3.1-10]).
#[test]
fn broker_retained_messages() {
    rt::block_on(async {
        let (addr, broker) = start().await;
        let (publisher, _e) = connect_tcp(addr, options(V311, "retainer")).await.unwrap();
        publisher
            .publish(message("r/1", QoS::AtLeastOnce, "kept").retained())
            .await
            .unwrap();
        for (i, version) in [V311, V5].into_iter().enumerate() {
            let (sub, mut events) = connect_tcp(addr, options(version, &format!("late{i}")))
                .await
                .unwrap();
            sub.subscribe(SubscribeRequest::new(filter("r/#"), QoS::AtLeastOnce))
                .await
                .unwrap();
            let (publish, _) = next_message(&mut events).await;
            assert!(publish.retain, "{version:?}");
            assert_eq!(
                (publish.topic.as_str(), &publish.payload[..]),
                ("r/1", &b"kept"[..])
            );
            no_message(&mut events).await;
            sub.disconnect().await.unwrap();
        }
        assert_eq!(broker.stats().await.unwrap().retained, 1);
        publisher
            .publish(message("r/1", QoS::AtLeastOnce, "").retained())
            .await
            .unwrap();
        let (sub, mut events) = connect_tcp(addr, options(V5, "after-clear")).await.unwrap();
        sub.subscribe(SubscribeRequest::new(filter("r/#"), QoS::AtLeastOnce))
            .await
            .unwrap();
        no_message(&mut events).await;
        assert_eq!(broker.stats().await.unwrap().retained, 0);
        broker.shutdown().await;
    });
}

/// A connection cut without DISCONNECT makes the broker publish the will ([MQTT-3.1.2-8]); a
/// normal DISCONNECT discards it ([MQTT-3.1.2-10]).
#[test]
fn broker_will_on_abrupt_close() {
    rt::block_on(async {
        let (addr, broker) = start().await;
        let (watcher, mut events) = connect_tcp(addr, options(V5, "watcher")).await.unwrap();
        watcher
            .subscribe(SubscribeRequest::new(filter("wills/#"), QoS::AtLeastOnce))
            .await
            .unwrap();
        for (i, version) in [V311, V5].into_iter().enumerate() {
            let mut opts = options(version, &format!("polite{i}"));
            opts.connect.will = Some(will("wills/polite"));
            let (client, _e) = connect_tcp(addr, opts).await.unwrap();
            client.disconnect().await.unwrap();

            let proxy = Proxy::start(addr);
            let mut opts = options(version, &format!("doomed{i}"));
            opts.connect.will = Some(will(&format!("wills/doomed{i}")));
            let (_doomed, mut doomed_events) = connect_tcp(proxy.addr, opts).await.unwrap();
            proxy.cut();
            let (publish, _) = next_message(&mut events).await;
            assert_eq!(publish.topic.as_str(), format!("wills/doomed{i}"));
            assert_eq!(&publish.payload[..], b"gone");
            assert_eq!(publish.qos_pid.qos(), QoS::AtLeastOnce);
            let (initiator, _) = next_closed(&mut doomed_events).await;
            assert_eq!(initiator, Initiator::Transport, "{version:?}");
        }
        no_message(&mut events).await;
        assert_eq!(broker.stats().await.unwrap().wills_published, 2);
        broker.shutdown().await;
    });
}

/// A persistent session survives a cut connection: QoS 1 and 2 messages published while the
/// client is away are queued ([MQTT-3.1.2-5] 3.1.1) and delivered in order, at their QoS and
/// exactly once, when it comes back with Session Present ([MQTT-3.2.2-2] 3.1.1,
/// [MQTT-3.2.2-2] 5.0), its subscription still in place.
#[test]
fn broker_persistent_session_across_cut() {
    rt::block_on(async {
        let (addr, broker) = start().await;
        let (publisher, _e) = connect_tcp(addr, options(V5, "feeder")).await.unwrap();
        for (i, version) in [V311, V5].into_iter().enumerate() {
            let id = format!("durable{i}");
            let proxy = Proxy::start(addr);
            let (client, mut events) = connect_tcp(proxy.addr, persistent(version, &id))
                .await
                .unwrap();
            assert!(!session_present(&mut events).await);
            client
                .subscribe(SubscribeRequest::new(filter("d/#"), QoS::ExactlyOnce))
                .await
                .unwrap();
            // One message while connected (QoS 0: nothing left to acknowledge), then the cut.
            publisher
                .publish(message("d/x", QoS::AtMostOnce, "before"))
                .await
                .unwrap();
            let (publish, _) = next_message(&mut events).await;
            assert_eq!(&publish.payload[..], b"before");
            proxy.cut();
            let (initiator, reason) = next_closed(&mut events).await;
            assert_eq!(
                (initiator, reason),
                (Initiator::Transport, CloseReason::TransportClosed)
            );
            connections(&broker, 1).await; // only the publisher's
            let sent: Vec<QoS> = (0..6)
                .map(|n| [QoS::AtLeastOnce, QoS::ExactlyOnce][n % 2])
                .collect();
            for (n, qos) in sent.iter().enumerate() {
                publisher.publish(message("d/x", *qos, n)).await.unwrap();
            }
            let (client, mut events) = connect_tcp(addr, persistent(version, &id)).await.unwrap();
            assert!(session_present(&mut events).await, "{version:?}");
            for (n, qos) in sent.iter().enumerate() {
                let (publish, _) = next_message(&mut events).await;
                assert_eq!(
                    &publish.payload[..],
                    n.to_string().as_bytes(),
                    "{version:?}"
                );
                assert_eq!(publish.qos_pid.qos(), *qos);
            }
            no_message(&mut events).await;
            // The subscription came along: new messages still arrive.
            publisher
                .publish(message("d/y", QoS::ExactlyOnce, "after"))
                .await
                .unwrap();
            let (publish, _) = next_message(&mut events).await;
            assert_eq!(&publish.payload[..], b"after");
            client.disconnect().await.unwrap();
        }
        assert_eq!(broker.stats().await.unwrap().dropped_session_ended, 0);
        broker.shutdown().await;
    });
}

/// Graceful broker shutdown: MQTT 5 clients are told 0x8B Server shutting down, 3.1.1 clients
/// see the transport close, `shutdown` resolves once all are closed, the listener is gone and
/// the handle reports the broker stopped; a second shutdown resolves at once.
#[test]
fn broker_graceful_shutdown() {
    rt::block_on(async {
        let (addr, broker) = start().await;
        let (c5, mut e5) = connect_tcp(addr, options(V5, "five")).await.unwrap();
        let (c3, mut e3) = connect_tcp(addr, options(V311, "three")).await.unwrap();
        connections(&broker, 2).await;
        assert!(!broker.is_stopped());
        timeout(PATIENCE, broker.shutdown())
            .await
            .expect("shutdown in time");
        assert!(broker.is_stopped());
        assert_eq!(
            next_closed(&mut e5).await,
            (
                Initiator::Peer,
                CloseReason::Disconnect(ReasonCode::ServerShuttingDown)
            )
        );
        assert_eq!(next_closed(&mut e3).await.1, CloseReason::TransportClosed);
        assert!(c5.is_closed() && c3.is_closed());
        assert!(connect_tcp(addr, options(V5, "late")).await.is_err());
        assert!(broker.stats().await.is_none());
        assert!(!broker.publish(message("t", QoS::AtMostOnce, "x")).await);
        timeout(PATIENCE, broker.shutdown())
            .await
            .expect("a second shutdown resolves at once");
    });
}

/// The runtime the adapter under test names its client for.
type Runtime = <crate::adapter::Client as crate::adapter::Reconnect>::Runtime;

/// A client's TCP connection, as `connect_tcp` and `reconnect_tcp` open it (the runtime's
/// `TcpConnect`) and as an `mqtt://` URL dials it (the runtime's `Dial`), takes the read
/// low-water mark with which the client reads acknowledgements in batches, on Linux (every
/// runtime: the socket's `SO_RCVLOWAT`); elsewhere none does.
#[test]
fn a_clients_tcp_connection_takes_the_read_low_water_mark() {
    use crate::adapter::engine::{Dial, TcpConnect, Transport};
    use crate::adapter::{Endpoint, TransportOptions};

    let supported = cfg!(any(target_os = "linux", target_os = "android"));
    rt::block_on(async {
        let (addr, broker) = start().await;
        let endpoint = Endpoint::parse(&format!("mqtt://{addr}")).unwrap();
        let transport_options = TransportOptions::default();
        let dialed = <Runtime as Dial>::dial(&endpoint, &transport_options);
        let connected = <Runtime as TcpConnect<SocketAddr>>::connect(addr);
        let mut transports: Vec<(&str, Box<dyn Transport>)> = vec![
            ("dialed", timeout(PATIENCE, dialed).await.unwrap().unwrap()),
            (
                "connected",
                Box::new(timeout(PATIENCE, connected).await.unwrap().unwrap()),
            ),
        ];
        for (how, transport) in &mut transports {
            assert_eq!(transport.set_read_low_water(64), supported, "{how}");
            assert_eq!(transport.set_read_low_water(1), supported, "{how}");
        }
        drop(transports);
        broker.shutdown().await;
    });
}

/// A publisher with a deep window, its acknowledgements read in batches
/// (`ClientOptions::batch_acks`, on by default): every one of thousands of pipelined QoS 1
/// publishes is acknowledged, over `connect_tcp` and over an `mqtt://` URL, in both versions.
/// The last ones, fewer than a batch, are read too (the mark follows what is still owed).
#[test]
fn a_publisher_with_a_deep_window_gets_every_acknowledgement() {
    const MESSAGES: usize = 5_000;

    rt::block_on(async {
        let (addr, broker) = start().await;
        let url = format!("mqtt://{addr}");
        for version in [V311, V5] {
            for by_url in [false, true] {
                let options = options(version, "deep");
                assert!(options.batch_acks, "on by default");
                let (client, _events) = if by_url {
                    crate::adapter::connect_url(&url, options).await.unwrap()
                } else {
                    connect_tcp(addr, options).await.unwrap()
                };
                let publishing = async {
                    let mut receipts = Vec::with_capacity(MESSAGES);
                    for i in 0..MESSAGES {
                        let payload = format!("{i:064}");
                        let publish = message("deep/t", QoS::AtLeastOnce, payload);
                        receipts.push(client.begin_publish(publish).await.unwrap());
                    }
                    for receipt in receipts {
                        // No one subscribes: a 5.0 broker says so in its PUBACK.
                        let code = receipt.await.unwrap().reason_code;
                        assert!(
                            matches!(
                                code,
                                ReasonCode::Success | ReasonCode::NoMatchingSubscribers
                            ),
                            "{code:?}"
                        );
                    }
                };
                timeout(PATIENCE * 3, publishing)
                    .await
                    .unwrap_or_else(|| panic!("{version:?}, by URL {by_url}: an ack never came"));
                client.disconnect().await.unwrap();
            }
        }
        broker.shutdown().await;
    });
}
