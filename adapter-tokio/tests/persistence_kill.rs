//! Issue 14, crash-safe persistence: a broker in a child process (this test binary run again
//! as `child_broker`) with a store in a temporary directory, killed with SIGKILL while QoS 1
//! and QoS 2 publishers and subscribers with persistent sessions are mid-stream, then
//! restarted from its store. Nothing acknowledged to a publisher is lost, no QoS 2 message is
//! delivered twice, the retained message survives, and a session that expired while the
//! broker was down does not come back.
//!
//! The clients are the pure `ClientSession` over blocking loopback sockets, each in a thread:
//! their sessions live in this process, across the broker's death.
#![cfg(all(feature = "persistence", feature = "tokio-runtime"))]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bytes::BytesMut;
use mqtt_streaming_proto::{
    Connect, Disconnect, MqttString, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName,
};
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_session::{
    ClientConfig, ClientEvent, ClientSession, Instant, Message, SubscribeRequest,
};
use mqtt_streaming_tokio::persistence::PersistenceOptions;
use mqtt_streaming_tokio::{BrokerOptions, BrokerServer};

const CHILD_DIR: &str = "MQTT_STREAMING_PERSIST_CHILD_DIR";
/// Messages per publisher.
const N: u64 = 5_000;
/// The whole test's bound.
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
#[ignore = "the broker process of `kill_9_mid_stream_loses_nothing_acknowledged`, run by it"]
fn child_broker() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut options = BrokerOptions::from(BrokerConfig::default());
        options.persistence = Some(PersistenceOptions::new(dir));
        let broker = BrokerServer::bind("127.0.0.1:0", options).await.unwrap();
        println!("PORT {}", broker.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        broker.serve().await.unwrap();
    });
}

/// The broker process, killed (SIGKILL) when dropped: a failing test leaves none behind.
struct BrokerProcess(Child);

impl BrokerProcess {
    fn kill_9(&mut self) {
        self.0.kill().unwrap(); // SIGKILL
        self.0.wait().unwrap();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the broker process on `dir`; returns it and its address.
fn start_broker(dir: &std::path::Path) -> (BrokerProcess, SocketAddr) {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_broker",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = BrokerProcess(child);
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        let line = lines.next().expect("the broker printed its port").unwrap();
        // After libtest's "test child_broker ... " on the same line.
        if let Some(at) = line.find("PORT ") {
            break line[at + 5..].trim().parse::<u16>().unwrap();
        }
    };
    // Keep reading (and discarding) its output so that it never blocks on a full pipe.
    thread::spawn(move || for _ in lines {});
    (child, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A client session over a blocking loopback socket.
struct Peer {
    session: ClientSession<u64>,
    stream: Option<TcpStream>,
    rx: BytesMut,
    start: std::time::Instant,
    events: Vec<ClientEvent<u64>>,
}

impl Peer {
    fn new() -> Self {
        Self {
            session: ClientSession::new(ClientConfig::default()),
            stream: None,
            rx: BytesMut::new(),
            start: std::time::Instant::now(),
            events: Vec::new(),
        }
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.start.elapsed().as_millis() as u64 + 1)
    }

    /// Connects to `addr` with `connect`; false if nothing listens there.
    fn connect(&mut self, addr: SocketAddr, connect: Connect) -> bool {
        let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return false;
        };
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        self.stream = Some(stream);
        self.rx.clear();
        let now = self.now();
        self.session.connect(now, connect).unwrap();
        true
    }

    fn lost(&mut self) {
        if self.stream.take().is_some() {
            let now = self.now();
            self.session.handle_closed(now);
        }
    }

    /// Writes, reads once (5 ms at most), fires timers, collects events.
    fn step(&mut self) {
        let now = self.now();
        let mut out = BytesMut::new();
        self.session.poll_transmit(now, &mut out);
        if let Some(stream) = &mut self.stream {
            if !out.is_empty() && stream.write_all(&out).is_err() {
                self.lost();
            }
        }
        if let Some(stream) = &mut self.stream {
            let mut buf = [0u8; 64 * 1024];
            match stream.read(&mut buf) {
                Ok(0) => self.lost(),
                Ok(n) => {
                    self.rx.extend_from_slice(&buf[..n]);
                    let now = self.now();
                    self.session.handle_read(now, &mut self.rx);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => self.lost(),
            }
        }
        let now = self.now();
        self.session.handle_timeout(now);
        while let Some(event) = self.session.poll_event() {
            if matches!(event, ClientEvent::Closed { .. }) {
                self.stream = None;
            }
            self.events.push(event);
        }
    }

    fn connected(&self) -> bool {
        self.stream.is_some()
    }

    fn connack_session_present(&self) -> Option<bool> {
        self.events.iter().rev().find_map(|e| match e {
            ClientEvent::Connected(ack) => Some(ack.session_present),
            _ => None,
        })
    }

    fn payloads(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Message { publish, .. } => {
                    Some(String::from_utf8(publish.payload.to_vec()).unwrap())
                }
                _ => None,
            })
            .collect()
    }
}

fn connect_packet(id: &str, clean: bool, expiry: u32) -> Connect {
    let mut c = Connect::new(ProtocolVersion::V5, MqttString::new(id).unwrap());
    c.clean_start = clean;
    c.keep_alive = 30;
    if expiry > 0 {
        c.properties.session_expiry_interval = Some(expiry);
    }
    c
}

/// Where the broker listens now (`None` while it is down).
type Address = Arc<Mutex<Option<SocketAddr>>>;

/// Keeps `peer` connected to the current broker (persistent session, Clean Start 0 after
/// the first connection).
fn keep_connected(peer: &mut Peer, addr: &Address, id: &str, first: &mut bool) {
    if peer.connected() {
        return;
    }
    let Some(at) = *addr.lock().unwrap() else {
        thread::sleep(Duration::from_millis(20));
        return;
    };
    if !peer.connect(at, connect_packet(id, *first, 3600)) {
        thread::sleep(Duration::from_millis(20));
        return;
    }
    *first = false;
}

/// A subscriber to `filter` at `qos` until `stop`; returns what it received.
fn subscriber(
    id: &'static str,
    filter: &'static str,
    qos: QoS,
    addr: Address,
    stop: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
    progress: Arc<Mutex<usize>>,
) -> thread::JoinHandle<Peer> {
    thread::spawn(move || {
        let mut peer = Peer::new();
        let mut first = true;
        let mut subscribed = false;
        let end = std::time::Instant::now() + DEADLINE;
        while !stop.load(Ordering::Acquire) && std::time::Instant::now() < end {
            keep_connected(&mut peer, &addr, id, &mut first);
            if peer.connected() && !subscribed {
                let now = peer.now();
                peer.session
                    .subscribe(
                        now,
                        SubscribeRequest::new(TopicFilter::new(filter).unwrap(), qos),
                        0,
                    )
                    .unwrap();
                subscribed = true;
            }
            peer.step();
            if peer
                .events
                .iter()
                .any(|e| matches!(e, ClientEvent::Subscribed { .. }))
            {
                ready.store(true, Ordering::Release);
            }
            *progress.lock().unwrap() = peer.payloads().len();
        }
        peer
    })
}

/// A publisher of `N` messages ("0", "1", ...) to `topic` at `qos`; returns the payloads
/// acknowledged to it and the abandoned ones.
fn publisher(
    id: &'static str,
    topic: &'static str,
    qos: QoS,
    addr: Address,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<(Vec<u64>, usize)> {
    thread::spawn(move || {
        let mut peer = Peer::new();
        let mut first = true;
        let mut next = 0u64;
        let mut acked = Vec::new();
        let mut abandoned = 0;
        let end = std::time::Instant::now() + DEADLINE;
        while !stop.load(Ordering::Acquire)
            && (acked.len() as u64) < N
            && std::time::Instant::now() < end
        {
            keep_connected(&mut peer, &addr, id, &mut first);
            while next < N && !first {
                let message = Message::new(TopicName::new(topic).unwrap(), qos, next.to_string());
                let now = peer.now();
                if peer.session.publish(now, message, next).is_err() {
                    break;
                }
                next += 1;
            }
            peer.step();
            for event in peer.events.drain(..) {
                match event {
                    ClientEvent::Published {
                        token, reason_code, ..
                    } => {
                        assert!(!reason_code.is_error(), "{token}: {reason_code:?}");
                        acked.push(token);
                    }
                    ClientEvent::Abandoned { .. } => abandoned += 1,
                    _ => {}
                }
            }
        }
        (acked, abandoned)
    })
}

/// Runs `peer` until `done` holds (or the deadline).
fn run_until(peer: &mut Peer, mut done: impl FnMut(&Peer) -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !done(peer) {
        assert!(
            std::time::Instant::now() < end,
            "timed out: {:?}",
            peer.events
        );
        peer.step();
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn kill_9_mid_stream_loses_nothing_acknowledged() {
    let dir = std::env::temp_dir().join(format!(
        "mqtt-streaming-persist-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let (mut broker, at) = start_broker(&dir);
    let addr: Address = Arc::new(Mutex::new(Some(at)));

    // A retained message, acknowledged.
    let mut retainer = Peer::new();
    assert!(retainer.connect(at, connect_packet("retainer", true, 0)));
    let now = retainer.now();
    retainer
        .session
        .publish(
            now,
            Message::new(TopicName::new("r/1").unwrap(), QoS::AtLeastOnce, "kept").retained(),
            0,
        )
        .unwrap();
    run_until(&mut retainer, |p| {
        p.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Published { .. }))
    });
    // A session that expires (2 s) while the broker is down.
    let mut expiring = Peer::new();
    assert!(expiring.connect(at, connect_packet("expiring", true, 2)));
    run_until(&mut expiring, |p| p.connack_session_present().is_some());
    let now = expiring.now();
    expiring
        .session
        .disconnect(now, Disconnect::new(ReasonCode::Success))
        .unwrap();
    expiring.step();

    let stop = Arc::new(AtomicBool::new(false));
    let ready = [
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    ];
    let progress = [Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0))];
    let s1 = subscriber(
        "sub-q1",
        "q1/#",
        QoS::AtLeastOnce,
        addr.clone(),
        stop.clone(),
        ready[0].clone(),
        progress[0].clone(),
    );
    let s2 = subscriber(
        "sub-q2",
        "q2/#",
        QoS::ExactlyOnce,
        addr.clone(),
        stop.clone(),
        ready[1].clone(),
        progress[1].clone(),
    );
    wait_for("the subscriptions", || {
        ready.iter().all(|r| r.load(Ordering::Acquire))
    });
    let p1 = publisher(
        "pub-q1",
        "q1/t",
        QoS::AtLeastOnce,
        addr.clone(),
        stop.clone(),
    );
    let p2 = publisher(
        "pub-q2",
        "q2/t",
        QoS::ExactlyOnce,
        addr.clone(),
        stop.clone(),
    );

    // Mid-stream: kill -9.
    wait_for("the stream to be under way", || {
        *progress[1].lock().unwrap() >= 100
    });
    *addr.lock().unwrap() = None;
    broker.kill_9();
    let at_kill = [*progress[0].lock().unwrap(), *progress[1].lock().unwrap()];
    assert!(
        (at_kill[1] as u64) < N,
        "killed mid-stream, not after it: {at_kill:?}"
    );
    // Down for longer than the expiring session's 2 s.
    thread::sleep(Duration::from_millis(2500));

    let (mut broker, at) = start_broker(&dir);
    *addr.lock().unwrap() = Some(at);
    let (acked1, abandoned1) = p1.join().unwrap();
    let (acked2, abandoned2) = p2.join().unwrap();
    assert_eq!(
        (abandoned1, abandoned2),
        (0, 0),
        "publisher sessions were resumed"
    );
    assert_eq!(acked1.len() as u64, N);
    assert_eq!(acked2.len() as u64, N);
    wait_for("every message at the subscribers", || {
        progress.iter().all(|p| *p.lock().unwrap() as u64 >= N)
    });
    // Let any duplicate that would come arrive.
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Release);
    let sub1 = s1.join().unwrap();
    let sub2 = s2.join().unwrap();

    // QoS 1: every acknowledged message at least once.
    let got1: BTreeMap<String, usize> =
        sub1.payloads()
            .into_iter()
            .fold(BTreeMap::new(), |mut m, p| {
                *m.entry(p).or_default() += 1;
                m
            });
    for n in &acked1 {
        assert!(
            got1.contains_key(&n.to_string()),
            "QoS 1 message {n} acknowledged and lost"
        );
    }
    // QoS 2: every acknowledged message exactly once.
    let got2: BTreeMap<String, usize> =
        sub2.payloads()
            .into_iter()
            .fold(BTreeMap::new(), |mut m, p| {
                *m.entry(p).or_default() += 1;
                m
            });
    for n in &acked2 {
        assert_eq!(
            got2.get(&n.to_string()),
            Some(&1),
            "QoS 2 message {n}: delivered {:?} times",
            got2.get(&n.to_string())
        );
    }
    assert_eq!(got2.len() as u64, N, "no QoS 2 message twice or unknown");
    assert!(sub1.connack_session_present() == Some(true));
    assert!(sub2.connack_session_present() == Some(true));

    // The retained message survived.
    let mut reader = Peer::new();
    assert!(reader.connect(at, connect_packet("reader", true, 0)));
    let now = reader.now();
    reader
        .session
        .subscribe(
            now,
            SubscribeRequest::new(TopicFilter::new("r/#").unwrap(), QoS::AtLeastOnce),
            0,
        )
        .unwrap();
    run_until(&mut reader, |p| !p.payloads().is_empty());
    assert_eq!(reader.payloads(), ["kept"]);
    // The expired session did not come back.
    let mut expiring = Peer::new();
    assert!(expiring.connect(at, connect_packet("expiring", false, 2)));
    run_until(&mut expiring, |p| p.connack_session_present().is_some());
    assert_eq!(expiring.connack_session_present(), Some(false));

    broker.kill_9();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The tokio client, connected to `addr` with `connect`.
async fn tokio_client(
    addr: SocketAddr,
    connect: Connect,
) -> (
    mqtt_streaming_tokio::Client,
    mqtt_streaming_tokio::ClientEvents,
) {
    let (client, mut events) =
        mqtt_streaming_tokio::connect_tcp(addr, mqtt_streaming_tokio::ClientOptions::new(connect))
            .await
            .unwrap();
    match events.recv().await {
        Some(mqtt_streaming_tokio::Event::Connected(_)) => (client, events),
        other => panic!("no CONNACK: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autosave_is_written_at_graceful_shutdown_and_restored() {
    // Autosave (an hour: no save happens on its own here) still saves when the broker stops
    // gracefully: the retained message and the persistent session with its subscription and
    // its queued message come back in the next broker on the same directory.
    let dir = std::env::temp_dir().join(format!(
        "mqtt-streaming-autosave-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let options = || {
        let mut options = BrokerOptions::from(BrokerConfig::default());
        options.persistence =
            Some(PersistenceOptions::new(&dir).autosave(Duration::from_secs(3600)));
        options
    };
    let broker = BrokerServer::bind("127.0.0.1:0", options()).await.unwrap();
    let addr = broker.local_addr().unwrap();
    let handle = broker.spawn();
    let (sub, _sub_events) = tokio_client(addr, connect_packet("sub", true, 3600)).await;
    sub.subscribe(SubscribeRequest::new(
        TopicFilter::new("q/#").unwrap(),
        QoS::AtLeastOnce,
    ))
    .await
    .unwrap();
    sub.disconnect().await.unwrap();
    let (publisher, _events) = tokio_client(addr, connect_packet("pub", true, 0)).await;
    publisher
        .publish(Message::new(TopicName::new("r/1").unwrap(), QoS::AtLeastOnce, "kept").retained())
        .await
        .unwrap();
    publisher
        .publish(Message::new(
            TopicName::new("q/1").unwrap(),
            QoS::AtLeastOnce,
            "queued",
        ))
        .await
        .unwrap();
    publisher.disconnect().await.unwrap();
    handle.shutdown().await;

    let broker = BrokerServer::bind("127.0.0.1:0", options()).await.unwrap();
    let addr = broker.local_addr().unwrap();
    let handle = broker.spawn();
    let (sub, mut events) = tokio_client(addr, connect_packet("sub", false, 3600)).await;
    let mut got = Vec::new();
    while got.is_empty() {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(mqtt_streaming_tokio::Event::Message { publish, .. })) => {
                got.push(String::from_utf8(publish.payload.to_vec()).unwrap());
            }
            Ok(Some(_)) => {}
            other => panic!("no queued message: {other:?}"),
        }
    }
    assert_eq!(got, ["queued"]);
    sub.subscribe(SubscribeRequest::new(
        TopicFilter::new("r/#").unwrap(),
        QoS::AtLeastOnce,
    ))
    .await
    .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(mqtt_streaming_tokio::Event::Message { publish, .. })) => {
                assert_eq!(&publish.payload[..], b"kept");
                assert!(publish.retain);
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("no retained message: {other:?}"),
        }
    }
    sub.disconnect().await.unwrap();
    handle.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
