//! Sessions that outlive connections: a resumable `Client` (`ClientOptions::resumable`) keeps
//! its driver and session after the transport is lost, and `Reconnect` resumes the session on
//! a new transport. The client publishes through a TCP proxy of this file to our broker
//! (`BrokerServer`); the proxy can hold back chosen packet types from the broker and cut
//! every connection it carries, so that the cut falls in a known stage of each flow.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use mqtt_streaming_proto::{
    Connect, MqttString, ProtocolVersion, Publish, QoS, ReasonCode, TopicName,
};
use mqtt_streaming_session::{
    AbandonCause, ClientConfig, CloseReason, CommandError, Initiator, Message, SubscribeRequest,
};
use mqtt_streaming_tokio::{
    connect_tcp, BrokerOptions, BrokerServer, Client, ClientEvents, ClientOptions, Error, Event,
    PublishReceipt, Reconnect,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);
const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V3_1_1, ProtocolVersion::V5];

const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBCOMP: u8 = 7;

fn message(topic: &str, qos: QoS, payload: &str) -> Message {
    Message::new(TopicName::new(topic).unwrap(), qos, payload.to_owned())
}

/// A persistent session: Clean Start 0 and, in 5.0, a Session Expiry Interval of an hour.
fn persistent(version: ProtocolVersion, id: &str) -> ClientOptions {
    let mut connect = Connect::new(version, MqttString::new(id).unwrap());
    connect.keep_alive = 30;
    connect.clean_start = false;
    if version.is_v5() {
        connect.properties.session_expiry_interval = Some(3600);
    }
    ClientOptions::new(connect).resumable()
}

async fn broker() -> SocketAddr {
    let server = BrokerServer::bind("127.0.0.1:0", BrokerOptions::default())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    drop(server.spawn());
    addr
}

/// A subscriber to `topic` at QoS 2, straight to the broker.
async fn subscriber(addr: SocketAddr, version: ProtocolVersion, topic: &str) -> Watcher {
    let mut connect = Connect::new(
        version,
        MqttString::new(&format!("watch-{}", topic.replace(['/', '#'], ""))).unwrap(),
    );
    connect.keep_alive = 30;
    let (client, events) = connect_tcp(addr, ClientOptions::new(connect))
        .await
        .unwrap();
    let filter = mqtt_streaming_proto::TopicFilter::new(topic).unwrap();
    let suback = client
        .subscribe(SubscribeRequest::new(filter, QoS::ExactlyOnce))
        .await
        .unwrap();
    assert_eq!(suback.reason_codes, [ReasonCode::GrantedQoS2]);
    Watcher {
        _client: client,
        events,
        seen: Vec::new(),
    }
}

struct Watcher {
    _client: Client,
    events: ClientEvents,
    seen: Vec<Publish>,
}

impl Watcher {
    /// Collects messages until `quiet` passes without one.
    async fn collect(&mut self, quiet: Duration) {
        while let Ok(Some(event)) = timeout(quiet, self.events.recv()).await {
            if let Event::Message { publish, .. } = event {
                self.seen.push(publish);
            }
        }
    }

    /// Collects until every payload in `wanted` was seen.
    async fn collect_until(&mut self, wanted: &[&str]) {
        timeout(WAIT, async {
            while !wanted.iter().all(|w| self.count(w) > 0) {
                match self.events.recv().await {
                    Some(Event::Message { publish, .. }) => self.seen.push(publish),
                    Some(_) => {}
                    None => panic!("the watcher's events ended"),
                }
            }
        })
        .await
        .expect("every message in time");
    }

    fn count(&self, payload: &str) -> usize {
        self.seen
            .iter()
            .filter(|p| &p.payload[..] == payload.as_bytes())
            .count()
    }

    fn last_index(&self, payload: &str) -> usize {
        self.seen
            .iter()
            .rposition(|p| &p.payload[..] == payload.as_bytes())
            .unwrap()
    }
}

/// A TCP proxy to `upstream` on 127.0.0.1. From the broker to the client it relays whole
/// packets, dropping (and counting) those whose type is in `hold`; [`cut`](Self::cut) drops
/// every connection carried so far (both sides see the transport end, no DISCONNECT).
struct Proxy {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    hold: Arc<Mutex<HashSet<u8>>>,
    held: Arc<Mutex<Vec<u8>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let hold: Arc<Mutex<HashSet<u8>>> = Arc::default();
        let held: Arc<Mutex<Vec<u8>>> = Arc::default();
        let (links2, hold2, held2) = (links.clone(), hold.clone(), held.clone());
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (hold, held) = (hold2.clone(), held2.clone());
                links2.lock().unwrap().push(tokio::spawn(async move {
                    let (mut client_rx, mut client_tx) = inbound.into_split();
                    let (mut broker_rx, mut broker_tx) = outbound.into_split();
                    let up = async {
                        let _ = tokio::io::copy(&mut client_rx, &mut broker_tx).await;
                    };
                    let down = async {
                        let mut buf = BytesMut::new();
                        loop {
                            while let Some(len) = whole_packet(&buf) {
                                let packet = buf.split_to(len);
                                let kind = packet[0] >> 4;
                                if hold.lock().unwrap().contains(&kind) {
                                    held.lock().unwrap().push(kind);
                                } else if client_tx.write_all(&packet).await.is_err() {
                                    return;
                                }
                            }
                            match broker_rx.read_buf(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            }
                        }
                    };
                    tokio::join!(up, down);
                }));
            }
        });
        Self {
            addr,
            accept,
            links,
            hold,
            held,
        }
    }

    /// Holds back packets of these types from the broker (replaces the set).
    fn hold(&self, kinds: &[u8]) {
        *self.hold.lock().unwrap() = kinds.iter().copied().collect();
    }

    /// Waits until `n` packets of type `kind` were held back.
    async fn wait_held(&self, kind: u8, n: usize) {
        timeout(WAIT, async {
            while self
                .held
                .lock()
                .unwrap()
                .iter()
                .filter(|k| **k == kind)
                .count()
                < n
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the broker answered in time");
    }

    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// The length of the whole MQTT packet at the front of `buf`, if it is all there.
fn whole_packet(buf: &[u8]) -> Option<usize> {
    let mut remaining = 0usize;
    for i in 0..4 {
        let byte = *buf.get(1 + i)?;
        remaining |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let len = 2 + i + remaining;
            return (buf.len() >= len).then_some(len);
        }
    }
    panic!("malformed remaining length from the broker");
}

/// The next `Closed` event (skipping others): its initiator, reason and `resumable` flag.
async fn next_closed(events: &mut ClientEvents) -> (Initiator, CloseReason, bool) {
    timeout(WAIT, async {
        loop {
            match events.recv().await.expect("events ended before Closed") {
                Event::Closed {
                    initiator,
                    reason,
                    resumable,
                    ..
                } => return (initiator, reason, resumable),
                _ => continue,
            }
        }
    })
    .await
    .expect("Closed in time")
}

async fn outcome(receipt: PublishReceipt) -> Result<mqtt_streaming_tokio::PublishOutcome, Error> {
    timeout(WAIT, receipt)
        .await
        .expect("the publish resolved in time")
}

/// The connection is cut with one QoS 2 flow waiting for its PUBCOMP, one for its PUBREC and
/// a QoS 1 flow waiting for its PUBACK. After `reconnect`, the session is present and the
/// client re-sends the PUBREL and the PUBLISHes (DUP) with their identifiers, in order
/// ([MQTT-4.4.0-1], [MQTT-4.6.0-1]); every publish future that was waiting resolves with the
/// broker's Success; publishes made while disconnected go out after, in order; each QoS 2
/// message reaches the subscriber exactly once ([MQTT-4.3.3-2] 3.1.1, [MQTT-4.3.3-10] 5.0: the
/// broker does not pass the re-sent PUBLISH on), each QoS 1 message at least once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_and_qos2_resume_after_cut_mid_flow() {
    for version in VERSIONS {
        let addr = broker().await;
        let mut watcher = subscriber(addr, version, "cut/#").await;
        let proxy = Proxy::start(addr).await;
        let (client, mut events) = connect_tcp(proxy.addr, persistent(version, "resumer"))
            .await
            .unwrap();

        // A completes; B waits for its PUBCOMP; C for its PUBREC; D for its PUBACK.
        let a = client
            .publish(message("cut/a", QoS::ExactlyOnce, "A"))
            .await
            .unwrap();
        assert!(a.is_success());
        proxy.hold(&[PUBCOMP]);
        let b = client
            .begin_publish(message("cut/b", QoS::ExactlyOnce, "B"))
            .await
            .unwrap();
        proxy.wait_held(PUBCOMP, 1).await;
        proxy.hold(&[PUBCOMP, PUBREC, PUBACK]);
        let c = client
            .begin_publish(message("cut/c", QoS::ExactlyOnce, "C"))
            .await
            .unwrap();
        let d = client
            .begin_publish(message("cut/d", QoS::AtLeastOnce, "D"))
            .await
            .unwrap();
        proxy.wait_held(PUBREC, 1).await;
        proxy.wait_held(PUBACK, 1).await;
        watcher.collect_until(&["A", "B", "D"]).await;

        proxy.cut();
        let (initiator, reason, resumable) = next_closed(&mut events).await;
        assert_eq!(initiator, Initiator::Transport, "{version:?}");
        assert_eq!(reason, CloseReason::TransportClosed);
        assert!(resumable, "the session survives the transport");
        assert!(client.is_closed() && !client.is_ended());

        // While disconnected: queued by the session.
        let e = client
            .begin_publish(message("cut/e", QoS::AtLeastOnce, "E"))
            .await
            .unwrap();
        let f = client
            .begin_publish(message("cut/f", QoS::ExactlyOnce, "F"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(watcher.count("E") + watcher.count("F"), 0);

        proxy.hold(&[]);
        let connack = client.reconnect_tcp(proxy.addr).await.unwrap();
        assert!(connack.session_present, "{version:?}: [MQTT-3.2.2-2]");
        assert!(!client.is_closed());
        match timeout(WAIT, events.recv()).await.unwrap() {
            Some(Event::Connected(connack)) => assert!(connack.session_present),
            other => panic!("expected Connected, got {other:?}"),
        }
        for (name, receipt) in [("B", b), ("C", c), ("D", d), ("E", e), ("F", f)] {
            let outcome = outcome(receipt).await.unwrap();
            assert_eq!(
                outcome.reason_code,
                ReasonCode::Success,
                "{version:?} {name}"
            );
        }
        watcher.collect_until(&["C", "E", "F"]).await;
        watcher.collect(Duration::from_millis(300)).await;
        for once in ["A", "B", "C", "F"] {
            assert_eq!(
                watcher.count(once),
                1,
                "{version:?}: QoS 2 {once} exactly once"
            );
        }
        assert!(watcher.count("D") >= 1 && watcher.count("E") == 1);
        assert!(
            watcher.last_index("D") < watcher.last_index("E")
                && watcher.last_index("E") < watcher.last_index("F"),
            "{version:?}: re-sent before queued, queued in order: {:?}",
            watcher
                .seen
                .iter()
                .map(|p| p.payload.clone())
                .collect::<Vec<_>>()
        );
        client.disconnect().await.unwrap();
        let (initiator, _, resumable) = next_closed(&mut events).await;
        assert_eq!(initiator, Initiator::Application);
        assert!(!resumable, "disconnect ends the session's driver");
        assert!(timeout(WAIT, events.recv()).await.unwrap().is_none());
        assert!(client.is_ended());
    }
}

/// The server lost the session (a new broker: Session Present 0, [MQTT-3.2.2-3]): the
/// publishes that were in flight fail with `Abandoned { SessionLost }`, handing their
/// messages back; a publish queued while disconnected (never sent) goes out on the new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_session_abandons_in_flight_publishes() {
    for version in VERSIONS {
        let first = broker().await;
        let proxy = Proxy::start(first).await;
        let (client, mut events) = connect_tcp(proxy.addr, persistent(version, "forgotten"))
            .await
            .unwrap();
        proxy.hold(&[PUBREC, PUBACK]);
        let q2 = client
            .begin_publish(message("lost/2", QoS::ExactlyOnce, "two"))
            .await
            .unwrap();
        let q1 = client
            .begin_publish(message("lost/1", QoS::AtLeastOnce, "one"))
            .await
            .unwrap();
        proxy.wait_held(PUBREC, 1).await;
        proxy.wait_held(PUBACK, 1).await;
        proxy.cut();
        assert!(next_closed(&mut events).await.2);
        let queued = client
            .begin_publish(message("lost/q", QoS::AtLeastOnce, "queued"))
            .await
            .unwrap();

        let second = broker().await;
        let mut watcher = subscriber(second, version, "lost/#").await;
        let connack = client.reconnect_tcp(second).await.unwrap();
        assert!(!connack.session_present, "{version:?}");
        for (receipt, payload) in [(q2, "two"), (q1, "one")] {
            match outcome(receipt).await {
                Err(Error::Abandoned {
                    cause: AbandonCause::SessionLost,
                    message: Some(message),
                }) => assert_eq!(&message.payload[..], payload.as_bytes()),
                other => panic!("{version:?}: expected SessionLost, got {other:?}"),
            }
        }
        assert!(outcome(queued).await.unwrap().is_success());
        watcher.collect_until(&["queued"]).await;
        watcher.collect(Duration::from_millis(200)).await;
        assert_eq!(watcher.count("two") + watcher.count("one"), 0);
        client.disconnect().await.unwrap();
    }
}

/// While disconnected, publishes are queued by the session up to its bound; `try_publish`
/// then hands the message back with `QueueFull`. After the reconnect every queued publish goes
/// out, in the order made ([MQTT-4.6.0-6]: the subscriber sees that order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_while_disconnected_go_out_in_order() {
    let addr = broker().await;
    let mut watcher = subscriber(addr, ProtocolVersion::V5, "off/#").await;
    let proxy = Proxy::start(addr).await;
    let mut options = persistent(ProtocolVersion::V5, "offline");
    options.session = ClientConfig::default().with_max_queued(3);
    options.command_capacity = 1;
    let (client, mut events) = connect_tcp(proxy.addr, options).await.unwrap();
    proxy.cut();
    assert!(next_closed(&mut events).await.2);

    let mut receipts = Vec::new();
    let mut refused = None;
    for n in 0..20 {
        let qos = if n % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        match client.try_publish(message("off/t", qos, &format!("m{n}"))) {
            Ok(receipt) => receipts.push(receipt),
            Err(error) => {
                assert!(matches!(
                    error.error,
                    Error::Rejected(CommandError::QueueFull)
                ));
                assert_eq!(&error.message.payload[..], format!("m{n}").as_bytes());
                refused = Some(n);
                break;
            }
        }
        // Let the driver take the command into the session's queue.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = refused.expect("the bounded queue filled up");
    assert!(refused >= 3, "at least the session's queue was accepted");

    client.reconnect_tcp(proxy.addr).await.unwrap();
    for receipt in receipts {
        assert!(outcome(receipt).await.unwrap().is_success());
    }
    let wanted: Vec<String> = (0..refused).map(|n| format!("m{n}")).collect();
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    watcher.collect_until(&wanted).await;
    let order: Vec<_> = watcher.seen.iter().map(|p| p.payload.clone()).collect();
    let expected: Vec<_> = wanted
        .iter()
        .map(|w| bytes::Bytes::from(w.to_string()))
        .collect();
    assert_eq!(order, expected);
    client.disconnect().await.unwrap();
}

/// `reconnect` while the connection is open is refused with `AlreadyConnected` (the transport
/// is dropped, the connection carries on); on a client that is not resumable, the driver ends
/// with the connection and `reconnect` fails with `Closed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_while_connected_is_refused() {
    let addr = broker().await;
    let (client, mut events) = connect_tcp(addr, persistent(ProtocolVersion::V5, "twice"))
        .await
        .unwrap();
    let spare = TcpStream::connect(addr).await.unwrap();
    match client.reconnect(spare).await {
        Err(Error::Rejected(CommandError::AlreadyConnected)) => {}
        other => panic!("expected AlreadyConnected, got {other:?}"),
    }
    let outcome = client
        .publish(message("still/here", QoS::AtLeastOnce, "x"))
        .await
        .unwrap();
    assert!(outcome.is_success());
    assert!(!client.is_closed());
    client.disconnect().await.unwrap();
    assert!(!next_closed(&mut events).await.2);

    // Not resumable: the driver ends with the transport.
    let proxy = Proxy::start(addr).await;
    let mut options = persistent(ProtocolVersion::V5, "plain");
    options.resumable = false;
    let (client, mut events) = connect_tcp(proxy.addr, options).await.unwrap();
    proxy.cut();
    assert!(!next_closed(&mut events).await.2);
    assert!(timeout(WAIT, events.recv()).await.unwrap().is_none());
    assert!(matches!(
        client.reconnect_tcp(addr).await,
        Err(Error::Closed(_))
    ));
    assert!(client.is_ended());
}

/// A reconnect whose transport ends before the CONNACK fails through its future, with no
/// `Closed` event, and the session keeps waiting: the next reconnect resumes it.
/// `disconnect` while waiting ends the driver: queued publishes fail with `Closed`, the
/// events end and `reconnect` fails. Dropping every handle while waiting ends it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_reconnect_then_disconnect_while_waiting() {
    let addr = broker().await;
    let proxy = Proxy::start(addr).await;
    let (client, mut events) = connect_tcp(proxy.addr, persistent(ProtocolVersion::V5, "retry"))
        .await
        .unwrap();
    proxy.cut();
    assert!(next_closed(&mut events).await.2);

    let (dead, peer) = tokio::io::duplex(1024);
    drop(peer);
    match client.reconnect(dead).await {
        Err(Error::Closed(Some(CloseReason::TransportClosed)) | Error::Io(_)) => {}
        other => panic!("expected a closed transport, got {other:?}"),
    }
    assert!(client.is_closed() && !client.is_ended());
    let connack = client.reconnect_tcp(proxy.addr).await.unwrap();
    assert!(connack.session_present);
    match timeout(WAIT, events.recv()).await.unwrap() {
        Some(Event::Connected(_)) => {}
        other => panic!("no Closed for the failed attempt: expected Connected, got {other:?}"),
    }

    proxy.cut();
    assert!(next_closed(&mut events).await.2);
    let queued = client
        .begin_publish(message("never", QoS::AtLeastOnce, "x"))
        .await
        .unwrap();
    client.disconnect().await.unwrap();
    match outcome(queued).await {
        Err(Error::Closed(Some(CloseReason::Disconnect(ReasonCode::Success)))) => {}
        other => panic!("expected Closed(Disconnect), got {other:?}"),
    }
    assert!(timeout(WAIT, events.recv()).await.unwrap().is_none());
    assert!(client.is_ended());
    assert!(matches!(
        client.reconnect_tcp(proxy.addr).await,
        Err(Error::Closed(_))
    ));

    // Dropping every handle while waiting for a transport ends the driver.
    let (client, mut events) = connect_tcp(proxy.addr, persistent(ProtocolVersion::V5, "drop"))
        .await
        .unwrap();
    proxy.cut();
    assert!(next_closed(&mut events).await.2);
    drop(client);
    assert!(timeout(WAIT, events.recv()).await.unwrap().is_none());
}
