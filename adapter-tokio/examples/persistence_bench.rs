//! `persistence-bench`: what persistence costs the broker (feature `persistence`).
//!
//! Throughput of QoS 1 through an embedded broker whose subscriber has a persistent session
//! (so every message is recorded and, in durable mode, acknowledged only once committed),
//! with persistence off, durable (`sync`) or `autosave`; or, with `--commit-cost N`, the time
//! of N single commits of the store (one message record written and one deleted, as a group
//! of one), measured alone.
//!
//! ```text
//! cargo run --release -p mqtt-streaming-tokio --features persistence --example persistence-bench -- --mode sync --pubs 4 -d 5
//! cargo run --release -p mqtt-streaming-tokio --features persistence --example persistence-bench -- --commit-cost 500
//! ```

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicFilter, TopicName};
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_session::{Message, SubscribeRequest};
use mqtt_streaming_tokio::persistence::{Durability, PersistenceOptions};
use mqtt_streaming_tokio::{connect_tcp, BrokerOptions, BrokerServer, ClientOptions, Event};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// No persistence.
    None,
    /// Durable acknowledgements, group commits.
    Sync,
    /// Saved every second (mosquitto's autosave_interval 1).
    Autosave,
}

/// What persistence costs: QoS 1 throughput with it off, durable or autosaved; or the cost of
/// one commit of the store.
#[derive(Parser, Debug)]
#[command(name = "persistence-bench")]
struct Args {
    /// Persistence mode.
    #[arg(long, value_enum, default_value_t = Mode::Sync)]
    mode: Mode,
    /// Publishers (QoS 1, each with a window of --window messages in flight).
    #[arg(long, default_value_t = 4)]
    pubs: usize,
    /// Messages in flight per publisher.
    #[arg(short = 'w', long, default_value_t = 64)]
    window: usize,
    /// Seconds of publishing.
    #[arg(short = 'd', long, default_value_t = 5.0)]
    duration: f64,
    /// Payload bytes.
    #[arg(short = 's', long, default_value_t = 64)]
    size: usize,
    /// The store's directory (default: a new one under the system's temporary directory,
    /// removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Instead of traffic: time this many commits of one record each.
    #[arg(long)]
    commit_cost: Option<usize>,
}

fn temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "mqtt-persistence-bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ))
}

fn commit_cost(dir: &std::path::Path, n: usize) {
    std::fs::create_dir_all(dir).expect("store directory");
    let db = redb::Database::create(dir.join("commit-cost.redb")).expect("store");
    let table: redb::TableDefinition<'_, &[u8], &[u8]> = redb::TableDefinition::new("t");
    let value = vec![0x5a_u8; 100];
    let mut times = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let start = Instant::now();
        let mut tx = db.begin_write().expect("transaction");
        tx.set_durability(redb::Durability::Immediate);
        {
            let mut t = tx.open_table(table).expect("table");
            t.insert(i.to_be_bytes().as_slice(), value.as_slice())
                .expect("insert");
            if i > 0 {
                t.remove((i - 1).to_be_bytes().as_slice()).expect("remove");
            }
        }
        tx.commit().expect("commit");
        times.push(start.elapsed());
    }
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    let mean = times.iter().sum::<Duration>() / n as u32;
    println!(
        "commits: {n}  mean {:.3} ms  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        mean.as_secs_f64() * 1e3,
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        pct(1.0).as_secs_f64() * 1e3,
    );
}

fn connect_packet(id: &str, expiry: Option<u32>) -> Connect {
    let mut c = Connect::new(ProtocolVersion::V5, MqttString::new(id).expect("client id"));
    c.properties.session_expiry_interval = expiry;
    c
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let own_dir = args.dir.is_none();
    let dir = args.dir.clone().unwrap_or_else(temp_dir);
    if let Some(n) = args.commit_cost {
        commit_cost(&dir, n.max(1));
        if own_dir {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return;
    }
    let mut options = BrokerOptions::from(BrokerConfig::default());
    options.persistence = match args.mode {
        Mode::None => None,
        Mode::Sync => Some(PersistenceOptions::new(&dir)),
        Mode::Autosave => Some(PersistenceOptions {
            dir: dir.clone(),
            durability: Durability::Autosave(Duration::from_secs(1)),
        }),
    };
    let broker = BrokerServer::bind("127.0.0.1:0", options)
        .await
        .expect("broker");
    let addr = broker.local_addr().expect("address");
    let broker = broker.spawn();

    // The subscriber: a persistent session (expiry one hour), so every message is recorded.
    let (sub, mut events) =
        connect_tcp(addr, ClientOptions::new(connect_packet("sub", Some(3600))))
            .await
            .expect("subscriber");
    sub.subscribe(SubscribeRequest::new(
        TopicFilter::new("bench/#").expect("filter"),
        QoS::AtLeastOnce,
    ))
    .await
    .expect("subscribe");
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if matches!(event, Event::Message { .. }) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });

    let acked = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs_f64(args.duration);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.pubs {
        let acked = acked.clone();
        let window = args.window.max(1);
        let payload = vec![b'x'; args.size];
        tasks.push(tokio::spawn(async move {
            let id = format!("pub-{i}");
            let (client, _events) =
                connect_tcp(addr, ClientOptions::new(connect_packet(&id, None)))
                    .await
                    .expect("publisher");
            let topic = TopicName::new(&format!("bench/{i}")).expect("topic");
            let mut receipts = VecDeque::new();
            while Instant::now() < end {
                while receipts.len() < window {
                    let m = Message::new(topic.clone(), QoS::AtLeastOnce, payload.clone());
                    receipts.push_back(client.begin_publish(m).await.expect("publish"));
                }
                if let Some(r) = receipts.pop_front() {
                    r.await.expect("acknowledged");
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            for r in receipts {
                r.await.expect("acknowledged");
                acked.fetch_add(1, Ordering::Relaxed);
            }
            let _ = client.disconnect().await;
        }));
    }
    for t in tasks {
        t.await.expect("publisher task");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let acked = acked.load(Ordering::Relaxed);
    let drain_end = Instant::now() + Duration::from_secs(30);
    while received.load(Ordering::Relaxed) < acked && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let received = received.load(Ordering::Relaxed);
    println!(
        "mode {:?}  pubs {}  window {}  acked {}  received {}  {:.0} msg/s acknowledged",
        args.mode,
        args.pubs,
        args.window,
        acked,
        received,
        acked as f64 / elapsed
    );
    let _ = sub.disconnect().await;
    broker.shutdown().await;
    if own_dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
