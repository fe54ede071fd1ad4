//! Hostile and overloading clients against any MQTT broker over TCP, as the `abuse` program
//! and the `abuse` test run them: deep topics, memory amplification through empty topic levels,
//! retained messages sharing reads with large ones, subscribe storms over many retained
//! messages, QoS 1 fan-in overload, a slow and a non-reading subscriber, connection churn and
//! garbage. A canary pair measures the round trip of a QoS 1 message every 10 ms meanwhile.
//!
//! Everything here speaks MQTT through raw sockets and `mqtt-streaming-proto` (not through our client),
//! so it treats every broker alike, and every loop is bounded in count and in time. Only
//! loopback addresses are meant as targets.

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::fmt::{self, Write as _};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    Connect, Decoder, Disconnect, MqttString, Packet, PacketId, ProtocolVersion, PubResponse,
    Publish, QoS, QosPid, ReasonCode, Subscribe, SubscriptionOptions, TopicFilter, TopicName,
    Unsubscribe, UnsubscribeProperties,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The broker under test: where it listens and, for memory figures, its process.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    /// The broker's address (loopback).
    pub(crate) addr: SocketAddr,
    /// The broker's process id, whose resident memory is sampled.
    pub(crate) pid: u32,
}

/// How big each scenario is.
#[derive(Clone, Debug)]
pub(crate) struct Sizes {
    /// Levels of the deep filter subscribed, then unsubscribed.
    pub(crate) deep_levels: usize,
    /// Levels of the deep filter subscribed and published to.
    pub(crate) deeper_levels: usize,
    /// SUBSCRIBEs of `empty_levels` empty levels each.
    pub(crate) empty_level_subscribes: usize,
    /// Empty levels per such SUBSCRIBE.
    pub(crate) empty_levels: usize,
    /// Small retained messages, each sent in one write with a large PUBLISH.
    pub(crate) pinned_retained: usize,
    /// Retained messages stored before the subscribe storm.
    pub(crate) storm_retained: usize,
    /// How long the storm, the overloads and the slow readers last.
    pub(crate) phase: Duration,
    /// Publishers of the fan-in overload.
    pub(crate) publishers: usize,
    /// Rounds of connection churn, and connections per round.
    pub(crate) churn_rounds: usize,
    /// Connections per churn round.
    pub(crate) churn_connections: usize,
    /// Connections that send garbage.
    pub(crate) garbage_connections: usize,
}

impl Sizes {
    /// The sizes of the issue that found these problems (for the program).
    pub(crate) fn full() -> Self {
        Self {
            deep_levels: 14_600,
            deeper_levels: 32_768,
            empty_level_subscribes: 100,
            empty_levels: 60_000,
            pinned_retained: 20_000,
            storm_retained: 100_000,
            phase: Duration::from_secs(10),
            publishers: 8,
            churn_rounds: 6,
            churn_connections: 10_000,
            garbage_connections: 500,
        }
    }

    /// Smaller, for the test suite (a few seconds per scenario).
    pub(crate) fn quick() -> Self {
        Self {
            deep_levels: 14_600,
            deeper_levels: 32_768,
            empty_level_subscribes: 20,
            empty_levels: 60_000,
            pinned_retained: 5_000,
            storm_retained: 20_000,
            phase: Duration::from_secs(3),
            publishers: 8,
            churn_rounds: 3,
            churn_connections: 1_000,
            garbage_connections: 100,
        }
    }
}

/// Latencies of the canary's round trips.
#[derive(Clone, Debug, Default)]
pub(crate) struct Latency {
    /// Round trips completed.
    pub(crate) count: usize,
    /// Messages sent that never came back within the scenario.
    pub(crate) missing: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub(crate) max: Duration,
}

impl Latency {
    fn of(mut samples: Vec<Duration>, sent: usize) -> Self {
        samples.sort();
        let at = |q: f64| {
            if samples.is_empty() {
                Duration::ZERO
            } else {
                samples[((samples.len() - 1) as f64 * q).round() as usize]
            }
        };
        Self {
            count: samples.len(),
            missing: sent.saturating_sub(samples.len()),
            p50: at(0.5),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "canary p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} round trips, {} missing)",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.count,
            self.missing
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What one scenario did to the broker.
#[derive(Clone, Debug)]
pub(crate) struct Report {
    /// The scenario.
    pub(crate) name: &'static str,
    /// The broker still answered a fresh client's QoS 1 round trip afterwards.
    pub(crate) broker_up: bool,
    /// The broker's resident memory before, at its peak during, and after the scenario (KiB).
    pub(crate) rss_kib: (u64, u64, u64),
    /// The canary meanwhile.
    pub(crate) canary: Latency,
    /// QoS 1 messages the broker acknowledged to a publisher that the subscriber never got.
    pub(crate) acked_lost: Option<u64>,
    /// What else was counted, one line.
    pub(crate) details: String,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (before, peak, after) = self.rss_kib;
        write!(
            f,
            "{:<16} up: {:<5} rss before/peak/after: {}/{}/{} KiB; {}",
            self.name, self.broker_up, before, peak, after, self.canary
        )?;
        if let Some(lost) = self.acked_lost {
            write!(f, "; acknowledged but lost: {lost}")?;
        }
        if !self.details.is_empty() {
            write!(f, "; {}", self.details)?;
        }
        Ok(())
    }
}

/// Resident memory of process `pid`, in KiB (Linux `/proc`).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

// ----- a raw client -----

/// An MQTT client made of a socket, an encoder and a decoder: it sends exactly what it is told.
pub(crate) struct Raw {
    stream: TcpStream,
    version: ProtocolVersion,
    decoder: Decoder,
    read: BytesMut,
    write: BytesMut,
}

impl Raw {
    /// Opens a TCP connection without sending anything.
    pub(crate) async fn open(addr: SocketAddr, version: ProtocolVersion) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            version,
            decoder: Decoder::new(version).with_max_packet_size(u32::MAX),
            read: BytesMut::with_capacity(64 * 1024),
            write: BytesMut::new(),
        })
    }

    /// Connects as `client_id` (clean session) and waits for a successful CONNACK.
    pub(crate) async fn connect(
        addr: SocketAddr,
        version: ProtocolVersion,
        client_id: &str,
    ) -> io::Result<Self> {
        let mut raw = Self::open(addr, version).await?;
        let mut connect = Connect::new(version, string(client_id));
        connect.keep_alive = 120;
        raw.queue(&Packet::from(connect));
        raw.flush().await?;
        match raw.recv(Duration::from_secs(10)).await? {
            Some(Packet::ConnAck(ack)) if ack.reason_code == ReasonCode::Success => Ok(raw),
            other => Err(io::Error::other(format!("no CONNACK: {other:?}"))),
        }
    }

    /// Encodes `packet` into the write buffer.
    pub(crate) fn queue(&mut self, packet: &Packet) {
        packet
            .encode(self.version, &mut self.write)
            .expect("encodable packet");
    }

    /// Writes the write buffer out.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        let bytes = self.write.split();
        self.stream.write_all(&bytes).await
    }

    /// Sends raw bytes.
    pub(crate) async fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The next packet, `None` after `wait` without one; an error when the connection closed.
    pub(crate) async fn recv(&mut self, wait: Duration) -> io::Result<Option<Packet>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.decoder.decode(&mut self.read) {
                Ok(Some(packet)) => return Ok(Some(packet)),
                Ok(None) => {}
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
            self.read.reserve(16 * 1024);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.read)).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// Reads at most `max` bytes into the read buffer, waiting at most `wait`.
    pub(crate) async fn read_some(&mut self, max: usize, wait: Duration) -> io::Result<usize> {
        let mut chunk = vec![0; max];
        match timeout(wait, self.stream.read(&mut chunk)).await {
            Err(_) => Ok(0),
            Ok(Ok(0)) => Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(Ok(n)) => {
                self.read.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Ok(Err(e)) => Err(e),
        }
    }

    /// Decodes one packet already read, if there is a whole one.
    pub(crate) fn decoded(&mut self) -> io::Result<Option<Packet>> {
        self.decoder
            .decode(&mut self.read)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// Subscribes to `filter` and returns the SUBACK's reason codes (empty when the broker
    /// closed the connection or sent something else).
    pub(crate) async fn subscribe(
        &mut self,
        id: u16,
        filter: TopicFilter,
        qos: QoS,
    ) -> io::Result<Vec<ReasonCode>> {
        self.queue(&Packet::Subscribe(Subscribe::new(
            pid(id),
            filter,
            SubscriptionOptions::new(qos),
        )));
        self.flush().await?;
        loop {
            match self.recv(Duration::from_secs(10)).await? {
                Some(Packet::SubAck(ack)) => return Ok(ack.reason_codes),
                Some(Packet::Publish(p)) => self.ack(&p),
                _ => return Ok(Vec::new()),
            }
        }
    }

    /// Queues the acknowledgement a received PUBLISH needs.
    pub(crate) fn ack(&mut self, publish: &Publish) {
        match publish.qos_pid {
            QosPid::AtMostOnce => {}
            QosPid::AtLeastOnce(id) => self.queue(&Packet::PubAck(PubResponse::new(id))),
            QosPid::ExactlyOnce(id) => self.queue(&Packet::PubRec(PubResponse::new(id))),
        }
    }

    /// Sends DISCONNECT and closes.
    pub(crate) async fn disconnect(mut self) {
        self.queue(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)));
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}

fn string(s: &str) -> MqttString {
    MqttString::new(s).expect("valid string")
}

fn topic(s: &str) -> TopicName {
    TopicName::new(s).expect("valid topic")
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).expect("valid filter")
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n.max(1)).expect("non-zero")
}

/// `n` levels named `a`.
fn levels(n: usize) -> String {
    let mut s = String::with_capacity(n * 2);
    for i in 0..n {
        if i > 0 {
            s.push('/');
        }
        s.push('a');
    }
    s
}

// ----- the canary and the memory sampler -----

/// A QoS 1 round trip through the broker every 10 ms, on its own pair of connections.
struct Canary {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Latency>,
}

impl Canary {
    async fn start(addr: SocketAddr, name: &str) -> io::Result<Self> {
        let topic_name = format!("abuse/canary/{name}");
        let mut sub =
            Raw::connect(addr, ProtocolVersion::V3_1_1, &format!("canary-sub-{name}")).await?;
        sub.subscribe(1, filter(&topic_name), QoS::AtLeastOnce)
            .await?;
        let mut publisher =
            Raw::connect(addr, ProtocolVersion::V3_1_1, &format!("canary-pub-{name}")).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
        let samples: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let receiver = {
            let sent_at = sent_at.clone();
            let samples = samples.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut last_seen = Instant::now();
                loop {
                    match sub.recv(Duration::from_millis(100)).await {
                        Ok(Some(Packet::Publish(p))) => {
                            sub.ack(&p);
                            let _ = sub.flush().await;
                            let n = u64::from_be_bytes(p.payload[..8].try_into().unwrap_or([0; 8]));
                            if let Some(at) = sent_at.lock().unwrap().remove(&n) {
                                samples.lock().unwrap().push(at.elapsed());
                            }
                            last_seen = Instant::now();
                        }
                        Ok(_) => {
                            // Stop once told to and nothing came for a second.
                            if stop.load(Ordering::Relaxed)
                                && last_seen.elapsed() > Duration::from_secs(1)
                            {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
            })
        };
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    n += 1;
                    sent_at.lock().unwrap().insert(n, Instant::now());
                    let publish = Publish::new(
                        topic(&topic_name),
                        QosPid::AtLeastOnce(pid((n % 60_000) as u16 + 1)),
                        Bytes::copy_from_slice(&n.to_be_bytes()),
                    );
                    publisher.queue(&Packet::Publish(publish));
                    if publisher.flush().await.is_err() {
                        break;
                    }
                    // PUBACKs are read and dropped; they are not what is measured.
                    while let Ok(Some(_)) = publisher.recv(Duration::ZERO).await {}
                }
                let _ = receiver.await;
                let samples = std::mem::take(&mut *samples.lock().unwrap());
                Latency::of(samples, n as usize)
            })
        };
        Ok(Self { stop, task })
    }

    async fn stop(self) -> Latency {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// Samples a process's resident memory every 20 ms and keeps the peak.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
        let task = {
            let stop = stop.clone();
            let peak = peak.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Self { stop, peak, task }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

/// A fresh client's QoS 1 round trip through the broker, within 10 s.
pub(crate) async fn broker_up(addr: SocketAddr) -> bool {
    let check = async {
        let mut sub = Raw::connect(addr, ProtocolVersion::V5, "abuse-check-sub").await?;
        sub.subscribe(1, filter("abuse/check"), QoS::AtLeastOnce)
            .await?;
        let mut publisher = Raw::connect(addr, ProtocolVersion::V5, "abuse-check-pub").await?;
        publisher.queue(&Packet::Publish(Publish::new(
            topic("abuse/check"),
            QosPid::AtLeastOnce(pid(1)),
            "up",
        )));
        publisher.flush().await?;
        loop {
            match sub.recv(Duration::from_secs(10)).await? {
                Some(Packet::Publish(p)) if &p.payload[..] == b"up" => break,
                Some(_) => {}
                None => return Err(io::Error::other("no message")),
            }
        }
        sub.disconnect().await;
        publisher.disconnect().await;
        Ok::<_, io::Error>(())
    };
    matches!(timeout(Duration::from_secs(10), check).await, Ok(Ok(())))
}

/// Runs `scenario` between a canary and a memory sampler, then checks the broker is up.
async fn measured<F>(target: Target, name: &'static str, scenario: F) -> Report
where
    F: std::future::Future<Output = (Option<u64>, String)>,
{
    let before = rss_kib(target.pid);
    let sampler = Sampler::start(target.pid);
    let canary = Canary::start(target.addr, name).await;
    let (acked_lost, details) = scenario.await;
    let canary = match canary {
        Ok(canary) => canary.stop().await,
        Err(_) => Latency::default(),
    };
    let peak = sampler.stop().await;
    let broker_up = broker_up(target.addr).await;
    Report {
        name,
        broker_up,
        rss_kib: (before, peak, rss_kib(target.pid)),
        canary,
        acked_lost,
        details,
    }
}

// ----- the scenarios -----

/// A filter of `deep_levels` levels subscribed, unsubscribed, then the connection closed; a
/// filter of `deeper_levels` levels subscribed and published to; both versions.
pub(crate) async fn deep_topics(target: Target, sizes: &Sizes) -> Report {
    measured(target, "deep-topics", async {
        let mut out = String::new();
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let deep = levels(sizes.deep_levels);
            let result = async {
                let mut c = Raw::connect(target.addr, version, "abuse-deep").await?;
                let codes = c.subscribe(1, filter(&deep), QoS::AtMostOnce).await?;
                c.queue(&Packet::Unsubscribe(Unsubscribe {
                    packet_id: pid(2),
                    filters: vec![filter(&deep)],
                    properties: UnsubscribeProperties::default(),
                }));
                c.flush().await?;
                let _ = c.recv(Duration::from_secs(5)).await;
                c.disconnect().await;
                Ok::<_, io::Error>(codes)
            }
            .await;
            let _ = write!(
                out,
                "{version:?} {} levels: {:?}; ",
                sizes.deep_levels, result
            );
            let deeper = levels(sizes.deeper_levels);
            let result = async {
                let mut c = Raw::connect(target.addr, version, "abuse-deeper").await?;
                let codes = c.subscribe(1, filter(&deeper), QoS::AtMostOnce).await?;
                c.queue(&Packet::Publish(Publish::new(
                    topic(&deeper),
                    QosPid::AtMostOnce,
                    "x",
                )));
                c.flush().await?;
                let _ = c.recv(Duration::from_secs(2)).await;
                c.disconnect().await;
                Ok::<_, io::Error>(codes)
            }
            .await;
            let _ = write!(out, "{} levels: {:?}; ", sizes.deeper_levels, result);
        }
        (None, out)
    })
    .await
}

/// `empty_level_subscribes` SUBSCRIBEs of `empty_levels` empty levels each, from one
/// connection that stays open while memory is sampled.
pub(crate) async fn empty_levels(target: Target, sizes: &Sizes) -> Report {
    measured(target, "empty-levels", async {
        let result = async {
            let mut c = Raw::connect(target.addr, ProtocolVersion::V3_1_1, "abuse-empty").await?;
            let mut granted = 0;
            let mut refused = 0;
            for i in 0..sizes.empty_level_subscribes {
                // Distinct filters: `i` at the end, after the empty levels.
                let f = format!("{}{i}", "/".repeat(sizes.empty_levels - 1));
                match c.subscribe(i as u16 + 1, filter(&f), QoS::AtMostOnce).await {
                    Ok(codes) if codes.first().is_some_and(|c| !c.is_error()) => granted += 1,
                    Ok(_) => refused += 1,
                    Err(_) => {
                        refused += 1;
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            c.disconnect().await;
            Ok::<_, io::Error>((granted, refused))
        }
        .await;
        let sent = sizes.empty_level_subscribes * sizes.empty_levels;
        (
            None,
            format!("{sent} bytes of filters sent; granted/refused: {result:?}"),
        )
    })
    .await
}

/// `pinned_retained` retained messages of 10 bytes, each sent in one write with a 16 KB
/// non-retained PUBLISH; memory is read with the messages retained, then they are deleted.
pub(crate) async fn retained_pinning(target: Target, sizes: &Sizes) -> Report {
    let mut held = 0;
    let report = measured(target, "retained-pin", async {
        let big = Bytes::from(vec![b'x'; 16 * 1024]);
        let result = async {
            let mut c = Raw::connect(target.addr, ProtocolVersion::V3_1_1, "abuse-pin").await?;
            let before = rss_kib(target.pid);
            for i in 0..sizes.pinned_retained {
                c.queue(&Packet::Publish(Publish::new(
                    topic("abuse/big"),
                    QosPid::AtMostOnce,
                    big.clone(),
                )));
                let mut small = Publish::new(
                    topic(&format!("abuse/pin/{i}")),
                    QosPid::AtMostOnce,
                    "0123456789",
                );
                small.retain = true;
                c.queue(&Packet::Publish(small));
                c.flush().await?;
            }
            // A QoS 1 round trip: everything before it was handled.
            sync(&mut c).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            held = rss_kib(target.pid).saturating_sub(before);
            for i in 0..sizes.pinned_retained {
                let mut delete = Publish::new(
                    topic(&format!("abuse/pin/{i}")),
                    QosPid::AtMostOnce,
                    Bytes::new(),
                );
                delete.retain = true;
                c.queue(&Packet::Publish(delete));
                if i % 256 == 255 {
                    c.flush().await?;
                }
            }
            c.flush().await?;
            sync(&mut c).await?;
            c.disconnect().await;
            Ok::<_, io::Error>(())
        }
        .await;
        (
            None,
            format!(
                "{} retained held {} KiB ({} bytes each); {result:?}",
                sizes.pinned_retained,
                held,
                held * 1024 / sizes.pinned_retained.max(1) as u64
            ),
        )
    })
    .await;
    report
}

/// Waits until the broker has handled everything `c` sent before: a QoS 1 PUBLISH to a topic
/// nobody reads, and its PUBACK.
async fn sync(c: &mut Raw) -> io::Result<()> {
    c.queue(&Packet::Publish(Publish::new(
        topic("abuse/sync"),
        QosPid::AtLeastOnce(pid(65_000)),
        "s",
    )));
    c.flush().await?;
    loop {
        match c.recv(Duration::from_secs(30)).await? {
            Some(Packet::PubAck(ack)) if ack.packet_id == pid(65_000) => return Ok(()),
            Some(_) => {}
            None => return Err(io::Error::other("no PUBACK for the sync message")),
        }
    }
}

/// `storm_retained` retained messages stored, then one client re-subscribes in a loop (to a
/// filter matching one of them) for `phase`; the retained messages are deleted afterwards.
pub(crate) async fn subscribe_storm(target: Target, sizes: &Sizes) -> Report {
    // Stored before the canary starts: storing is not what is measured.
    let store = async {
        let mut c = Raw::connect(target.addr, ProtocolVersion::V3_1_1, "abuse-store").await?;
        for i in 0..sizes.storm_retained {
            let mut p = Publish::new(topic(&format!("abuse/storm/{i}")), QosPid::AtMostOnce, "r");
            p.retain = true;
            c.queue(&Packet::Publish(p));
            if i % 512 == 511 {
                c.flush().await?;
            }
        }
        c.flush().await?;
        sync(&mut c).await?;
        Ok::<_, io::Error>(c)
    }
    .await;
    let report = measured(target, "subscribe-storm", async {
        let result = async {
            let mut c = Raw::connect(target.addr, ProtocolVersion::V3_1_1, "abuse-storm").await?;
            let start = Instant::now();
            let mut subacks = 0u64;
            while start.elapsed() < sizes.phase {
                let codes = c
                    .subscribe(
                        (subacks % 60_000) as u16 + 1,
                        filter("abuse/storm/7"),
                        QoS::AtMostOnce,
                    )
                    .await?;
                if codes.is_empty() {
                    break;
                }
                subacks += 1;
            }
            c.disconnect().await;
            Ok::<_, io::Error>(subacks as f64 / start.elapsed().as_secs_f64())
        }
        .await;
        (
            None,
            format!(
                "{} retained; SUBACKs/s: {:.0}",
                sizes.storm_retained,
                result.unwrap_or(0.0)
            ),
        )
    })
    .await;
    if let Ok(mut c) = store {
        for i in 0..sizes.storm_retained {
            let mut p = Publish::new(
                topic(&format!("abuse/storm/{i}")),
                QosPid::AtMostOnce,
                Bytes::new(),
            );
            p.retain = true;
            c.queue(&Packet::Publish(p));
            if i % 512 == 511 && c.flush().await.is_err() {
                break;
            }
        }
        let _ = c.flush().await;
        let _ = sync(&mut c).await;
        c.disconnect().await;
    }
    report
}

/// How a subscriber of the overload scenarios reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reader {
    /// As fast as it can.
    Fast,
    /// 64 KiB every 100 ms.
    Slow,
    /// Never (until the publishers stop).
    Never,
}

/// `publishers` publishers send QoS 1 messages of 64 bytes flat out (64 in flight each) for
/// `phase` to one subscriber that reads as `reader` says; afterwards the subscriber reads
/// everything left, and every message a publisher got a PUBACK for must have arrived.
pub(crate) async fn fan_in(target: Target, sizes: &Sizes, reader: Reader) -> Report {
    let name = match reader {
        Reader::Fast => "fan-in-qos1",
        Reader::Slow => "slow-reader",
        Reader::Never => "non-reader",
    };
    measured(target, name, async {
        let result = fan_in_run(target.addr, sizes, reader).await;
        match result {
            Ok(counts) => (Some(counts.lost), counts.to_string()),
            Err(e) => (None, format!("error: {e}")),
        }
    })
    .await
}

#[derive(Debug, Default)]
struct FanInCounts {
    sent: u64,
    acked: u64,
    received: u64,
    lost: u64,
    subscriber_closed: bool,
}

impl fmt::Display for FanInCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}, acked {}, received {}, subscriber disconnected: {}",
            self.sent, self.acked, self.received, self.subscriber_closed
        )
    }
}

async fn fan_in_run(addr: SocketAddr, sizes: &Sizes, reader: Reader) -> io::Result<FanInCounts> {
    let mut sub = Raw::connect(addr, ProtocolVersion::V3_1_1, "abuse-fan-sub").await?;
    sub.subscribe(1, filter("abuse/fan/+"), QoS::AtLeastOnce)
        .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for p in 0..sizes.publishers {
        let stop = stop.clone();
        let mut c = Raw::connect(addr, ProtocolVersion::V3_1_1, &format!("abuse-fan-{p}")).await?;
        publishers.push(tokio::spawn(async move {
            let topic_name = topic(&format!("abuse/fan/{p}"));
            let mut in_flight: HashMap<u16, u64> = HashMap::new();
            let mut acked = BTreeSet::new();
            let mut seq = 0u64;
            let mut next_id = 1u16;
            loop {
                let stopping = stop.load(Ordering::Relaxed);
                while !stopping && in_flight.len() < 64 {
                    while in_flight.contains_key(&next_id) {
                        next_id = next_id % 1000 + 1;
                    }
                    let mut payload = vec![0u8; 64];
                    payload[..8].copy_from_slice(&seq.to_be_bytes());
                    c.queue(&Packet::Publish(Publish::new(
                        topic_name.clone(),
                        QosPid::AtLeastOnce(pid(next_id)),
                        payload,
                    )));
                    in_flight.insert(next_id, seq);
                    seq += 1;
                }
                if c.flush().await.is_err() {
                    break;
                }
                if stopping && in_flight.is_empty() {
                    break;
                }
                let wait = if stopping { 5_000 } else { 100 };
                match c.recv(Duration::from_millis(wait)).await {
                    Ok(Some(Packet::PubAck(ack))) => {
                        if let Some(n) = in_flight.remove(&ack.packet_id.get()) {
                            acked.insert(n);
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) if stopping => break,
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
            c.disconnect().await;
            (seq, acked)
        }));
    }
    let start = Instant::now();
    let mut received: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); sizes.publishers];
    let mut closed = false;
    let take = |sub: &mut Raw, received: &mut Vec<BTreeSet<u64>>| -> io::Result<bool> {
        let mut any = false;
        while let Some(packet) = sub.decoded()? {
            if let Packet::Publish(p) = packet {
                sub.ack(&p);
                let publisher: usize = p
                    .topic
                    .as_str()
                    .rsplit('/')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let n = u64::from_be_bytes(p.payload[..8].try_into().unwrap_or([0; 8]));
                if let Some(set) = received.get_mut(publisher) {
                    set.insert(n);
                }
                any = true;
            }
        }
        Ok(any)
    };
    while start.elapsed() < sizes.phase && !closed {
        let (max, pause) = match reader {
            Reader::Fast => (256 * 1024, Duration::ZERO),
            Reader::Slow => (64 * 1024, Duration::from_millis(100)),
            Reader::Never => (0, Duration::from_millis(100)),
        };
        if max == 0 {
            tokio::time::sleep(pause).await;
            continue;
        }
        match sub.read_some(max, Duration::from_millis(100)).await {
            Ok(_) => {}
            Err(_) => closed = true,
        }
        if take(&mut sub, &mut received).is_err() {
            closed = true;
        }
        let _ = sub.flush().await;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    // Everything left, as fast as possible, until nothing comes for two seconds.
    let mut quiet = Instant::now();
    while !closed && quiet.elapsed() < Duration::from_secs(2) {
        match sub.read_some(256 * 1024, Duration::from_millis(200)).await {
            Ok(0) => {}
            Ok(_) => quiet = Instant::now(),
            Err(_) => closed = true,
        }
        match take(&mut sub, &mut received) {
            Ok(true) => quiet = Instant::now(),
            Ok(false) => {}
            Err(_) => closed = true,
        }
        let _ = sub.flush().await;
    }
    let mut counts = FanInCounts {
        subscriber_closed: closed,
        ..FanInCounts::default()
    };
    for (p, task) in publishers.into_iter().enumerate() {
        let (sent, acked) = task.await.unwrap_or_default();
        counts.sent += sent;
        counts.acked += acked.len() as u64;
        counts.received += received[p].len() as u64;
        counts.lost += acked.difference(&received[p]).count() as u64;
    }
    if !closed {
        sub.disconnect().await;
    }
    Ok(counts)
}

/// `churn_rounds` rounds of `churn_connections` connect-and-close (20 at a time); the
/// details give the broker's resident memory after each round.
pub(crate) async fn churn(target: Target, sizes: &Sizes) -> Report {
    measured(target, "churn", async {
        let mut rounds = Vec::new();
        let mut failed = 0;
        for round in 0..sizes.churn_rounds {
            let per_task = sizes.churn_connections / 20;
            let tasks: Vec<_> = (0..20)
                .map(|t| {
                    let addr = target.addr;
                    tokio::spawn(async move {
                        let mut failed = 0;
                        for i in 0..per_task {
                            let id = format!("abuse-churn-{round}-{t}-{i}");
                            match Raw::connect(addr, ProtocolVersion::V3_1_1, &id).await {
                                Ok(c) => c.disconnect().await,
                                Err(_) => failed += 1,
                            }
                        }
                        failed
                    })
                })
                .collect();
            for task in tasks {
                failed += task.await.unwrap_or(per_task);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            rounds.push(rss_kib(target.pid) / 1024);
        }
        (
            None,
            format!("RSS after each round (MiB): {rounds:?}; failed connects: {failed}"),
        )
    })
    .await
}

/// `garbage_connections` connections (50 at a time) each sending a few KiB of pseudo-random
/// bytes (half of them after a valid CONNECT), then waiting up to a second for the broker to
/// close them.
pub(crate) async fn garbage(target: Target, sizes: &Sizes) -> Report {
    measured(target, "garbage", async {
        let mut closed_by_broker = 0;
        let mut start = 0;
        while start < sizes.garbage_connections {
            let end = (start + 50).min(sizes.garbage_connections);
            let tasks: Vec<_> = (start..end)
                .map(|i| tokio::spawn(garbage_connection(target.addr, i)))
                .collect();
            for task in tasks {
                closed_by_broker += usize::from(task.await.unwrap_or(false));
            }
            start = end;
        }
        (
            None,
            format!(
                "{closed_by_broker} of {} garbage connections closed by the broker within 1 s",
                sizes.garbage_connections
            ),
        )
    })
    .await
}

/// One garbage connection; whether the broker closed it.
async fn garbage_connection(addr: SocketAddr, i: usize) -> bool {
    // xorshift64, seeded per connection: the same garbage on every run.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let Ok(mut c) = Raw::open(addr, ProtocolVersion::V3_1_1).await else {
        return false;
    };
    if i % 2 == 0 {
        c.queue(&Packet::from(Connect::new(
            ProtocolVersion::V3_1_1,
            string(&format!("abuse-garbage-{i}")),
        )));
        let _ = c.flush().await;
    }
    let len = 256 + (next() % 4096) as usize;
    let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
    let _ = c.send_bytes(&bytes).await;
    loop {
        match c.recv(Duration::from_secs(1)).await {
            Ok(Some(_)) => {}
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}

/// Every scenario, in order.
pub(crate) async fn run_all(target: Target, sizes: &Sizes) -> Vec<Report> {
    let mut reports = Vec::new();
    reports.push(deep_topics(target, sizes).await);
    reports.push(empty_levels(target, sizes).await);
    reports.push(retained_pinning(target, sizes).await);
    reports.push(subscribe_storm(target, sizes).await);
    reports.push(fan_in(target, sizes, Reader::Fast).await);
    reports.push(fan_in(target, sizes, Reader::Slow).await);
    reports.push(fan_in(target, sizes, Reader::Never).await);
    reports.push(churn(target, sizes).await);
    reports.push(garbage(target, sizes).await);
    reports
}
