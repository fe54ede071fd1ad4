//! `mqtt-bench`: an MQTT load generator in the spirit of emqtt-bench. N publishers and M subscribers
//! against any broker (or one embedded in the process), at QoS 0, 1 or 2, flat out with an
//! in-flight window or at a fixed rate; it reports messages per second sent and received,
//! loss and duplicates (sequence numbers in every payload), end-to-end latency percentiles
//! (an HDR histogram), the process's CPU time per message and, given the broker's process id,
//! the broker's CPU time per delivery and memory per idle connection. `--client rumqttc` drives
//! the same workload with rumqttc, `--client both` alternates the two over `--rounds`, and
//! `--client raw` with no client library at all (pre-encoded packets over plain TCP, a light
//! and neutral load for measuring brokers).
//!
//! Transport: TCP, or TLS with mosquitto's TLS flags (`--cafile` or `--capath` turn it on, and
//! the port defaults to 8883 then; `--cert`/`--key`, `--insecure`, `--tls-version`, `--alpn`).
//! Over TLS both libraries use the same rustls configuration (ring); the raw generator and the
//! embedded broker are plain TCP only.
//!
//! ```text
//! cargo run --release -p mqtt-streaming-tokio --features cli --bin mqtt-bench -- --embedded --pubs 2 --subs 2 -q 1 -d 2
//! cargo run --release -p mqtt-streaming-tokio --features cli --bin mqtt-bench -- -p 1883 --pubs 8 --subs 1 -q 1 -d 10 --client both --rounds 5 --json out.json
//! cargo run --release -p mqtt-streaming-tokio --features cli --bin mqtt-bench -- -h localhost --cafile ca.pem -q 1 -d 10 --client both
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_tokio::BrokerServer;
use serde_json::{json, Value};
use tokio::sync::watch;

#[path = "common/bench_clients.rs"]
mod bench_clients;
#[path = "common/bench_raw.rs"]
mod bench_raw;
#[path = "common/bench_stats.rs"]
mod bench_stats;
#[path = "common/tls_args.rs"]
mod tls_args;

use bench_clients::{Control, Library, Plan, PubResult, Publisher, Subscriber};
use bench_stats::{Counters, Tracker, STAMP_LEN};
use mqtt_streaming_tokio::TlsClient;
use tls_args::TlsArgs;

/// MQTT load generator: publishers and subscribers against a broker on TCP or TLS, reporting
/// throughput, loss, duplicates, latency percentiles and CPU per message.
#[derive(Parser, Debug)]
#[command(name = "mqtt-bench", disable_help_flag = true)]
struct Args {
    /// Broker host.
    #[arg(short = 'h', long = "host", default_value = "127.0.0.1")]
    host: String,
    /// Broker port. Default 1883, and 8883 over TLS (--cafile or --capath given).
    #[arg(short = 'p', long = "port")]
    port: Option<u16>,
    /// Start our broker inside this process on 127.0.0.1 (an ephemeral port) and use it
    /// instead of -h/-p (its CPU time is then counted in the process's).
    #[arg(long = "embedded", conflicts_with_all = ["host", "port"])]
    embedded: bool,
    /// TLS, as mosquitto_pub's flags: --cafile or --capath connect over TLS; --cert, --key,
    /// --insecure, --tls-version, --alpn.
    #[command(flatten)]
    tls: TlsArgs,
    /// Publishers.
    #[arg(long = "pubs", default_value_t = 1)]
    pubs: usize,
    /// Subscribers.
    #[arg(long = "subs", default_value_t = 1)]
    subs: usize,
    /// QoS of the publishes and the subscriptions: 0, 1 or 2.
    #[arg(short = 'q', long = "qos", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Payload size in bytes (at least 24: publisher, sequence number and send time).
    #[arg(short = 's', long = "size", default_value_t = 64)]
    size: usize,
    /// Topic of each publisher; `%i` is replaced by the publisher's index (0..N).
    #[arg(short = 't', long = "topic", default_value = "bench/%i")]
    topic: String,
    /// Filter of each subscriber; `%i` is replaced by the subscriber's index (0..M).
    #[arg(short = 'f', long = "filter", default_value = "bench/#")]
    filter: String,
    /// Messages per second per publisher; 0: flat out, bounded by the window.
    #[arg(short = 'r', long = "rate", default_value_t = 0.0)]
    rate: f64,
    /// In-flight window per publisher: messages handed to the client library and not yet
    /// acknowledged (QoS 0: not yet written).
    #[arg(short = 'w', long = "window", default_value_t = 64)]
    window: usize,
    /// Seconds of publishing (unless --count).
    #[arg(short = 'd', long = "duration", default_value_t = 10.0)]
    duration: f64,
    /// Messages per publisher instead of a duration.
    #[arg(short = 'n', long = "count")]
    count: Option<u64>,
    /// MQTT version: 311 or 5.
    #[arg(short = 'V', long = "mqtt", default_value = "311", value_parser = ["311", "5"])]
    mqtt: String,
    /// Client library driving the load: ours, rumqttc, both (ours and rumqttc alternating,
    /// --rounds each), or raw (no library: pre-encoded packets over plain TCP, the lightest
    /// load, for measuring brokers).
    #[arg(long = "client", value_enum, default_value_t = ClientChoice::Ours)]
    client: ClientChoice,
    /// Rounds per client library (medians and spread reported when above 1).
    #[arg(long = "rounds", default_value_t = 1)]
    rounds: usize,
    /// Our client reads every acknowledgement as it comes (`ClientOptions::batch_acks`
    /// off), for comparing with the default batched reads.
    #[arg(long = "no-batch-acks")]
    no_batch_acks: bool,
    /// The broker's process id: its CPU time per delivery (and memory per idle connection)
    /// is read from /proc.
    #[arg(long = "broker-pid")]
    broker_pid: Option<u32>,
    /// Instead of traffic: open this many idle connections, each with one subscription
    /// (filter `idle/%i`), and report memory per connection (this process's and, with
    /// --broker-pid, the broker's).
    #[arg(long = "idle")]
    idle: Option<usize>,
    /// Seconds the idle connections are held before memory is read.
    #[arg(long = "hold", default_value_t = 2.0)]
    hold: f64,
    /// Longest wait, in seconds, for subscribers to receive what was sent after publishing
    /// ended (the wait also ends after 3 s without progress).
    #[arg(long = "drain", default_value_t = 30.0)]
    drain: f64,
    /// Worker threads of the runtime (default: one per CPU).
    #[arg(long = "threads")]
    threads: Option<usize>,
    /// Write the results as JSON to this file.
    #[arg(long = "json")]
    json: Option<PathBuf>,
    /// Exit with failure when a run lost messages (QoS 1 and 2), or had publish errors.
    #[arg(long = "assert-no-loss")]
    assert_no_loss: bool,
    /// No progress line.
    #[arg(long = "quiet")]
    quiet: bool,
    /// Print this help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

impl Args {
    /// The TLS configuration the flags describe, or `None` for plain TCP.
    fn tls_client(&self) -> Result<Option<TlsClient>, String> {
        if !self.tls.requested() {
            return Ok(None);
        }
        self.tls
            .client()
            .map(Some)
            .map_err(|e| format!("TLS options: {e}"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ClientChoice {
    Ours,
    Rumqttc,
    Both,
    Raw,
}

/// One run's figures.
struct RunResult {
    library: Library,
    round: usize,
    publish_secs: f64,
    sent: u64,
    acked: u64,
    publish_errors: u64,
    first_error: Option<String>,
    expected: u64,
    received: u64,
    lost: u64,
    duplicates: u64,
    foreign: u64,
    subscriber_errors: Vec<String>,
    sent_per_s: f64,
    received_per_s: f64,
    latency: Histogram<u64>,
    cpu_s: Option<f64>,
    broker_cpu_s: Option<f64>,
    load: String,
}

impl RunResult {
    fn cpu_us_per_msg(&self) -> Option<f64> {
        let messages = self.sent + self.received;
        self.cpu_s
            .filter(|_| messages > 0)
            .map(|c| c * 1e6 / messages as f64)
    }

    fn broker_us_per_delivery(&self) -> Option<f64> {
        self.broker_cpu_s
            .filter(|_| self.received > 0)
            .map(|c| c * 1e6 / self.received as f64)
    }

    fn latency_us(&self, quantile: f64) -> Option<f64> {
        (!self.latency.is_empty()).then(|| self.latency.value_at_quantile(quantile) as f64 / 1e3)
    }

    fn latency_max_us(&self) -> Option<f64> {
        (!self.latency.is_empty()).then(|| self.latency.max() as f64 / 1e3)
    }

    fn to_json(&self) -> Value {
        json!({
            "client": self.library.name(),
            "round": self.round,
            "publish_s": self.publish_secs,
            "sent": self.sent,
            "acked": self.acked,
            "publish_errors": self.publish_errors,
            "first_error": self.first_error,
            "expected": self.expected,
            "received": self.received,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "foreign": self.foreign,
            "subscriber_errors": self.subscriber_errors,
            "sent_per_s": self.sent_per_s,
            "received_per_s": self.received_per_s,
            "latency_us": {
                "p50": self.latency_us(0.5),
                "p90": self.latency_us(0.9),
                "p99": self.latency_us(0.99),
                "p99_9": self.latency_us(0.999),
                "max": self.latency_max_us(),
                "samples": self.latency.len(),
            },
            "cpu_s": self.cpu_s,
            "cpu_us_per_msg": self.cpu_us_per_msg(),
            "broker_cpu_s": self.broker_cpu_s,
            "broker_cpu_us_per_delivery": self.broker_us_per_delivery(),
            "loadavg": self.load,
        })
    }

    fn print(&self, args: &Args, rounds: usize) {
        let loss_pct = if self.expected > 0 {
            self.lost as f64 * 100.0 / self.expected as f64
        } else {
            0.0
        };
        println!(
            "{} round {}/{}: {:.2} s publishing, load average {}",
            self.library.name(),
            self.round,
            rounds,
            self.publish_secs,
            self.load
        );
        println!(
            "  sent      {:>12} ({:>10.0}/s)  acked {}  publish errors {}{}",
            self.sent,
            self.sent_per_s,
            self.acked,
            self.publish_errors,
            self.first_error
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
        println!(
            "  received  {:>12} ({:>10.0}/s)  of {} expected: lost {} ({:.3}%), duplicates {}, foreign {}",
            self.received,
            self.received_per_s,
            self.expected,
            self.lost,
            loss_pct,
            self.duplicates,
            self.foreign
        );
        if !self.subscriber_errors.is_empty() {
            println!("  subscriber errors: {:?}", self.subscriber_errors);
        }
        let us = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
        println!(
            "  latency µs  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            us(self.latency_us(0.5)),
            us(self.latency_us(0.9)),
            us(self.latency_us(0.99)),
            us(self.latency_us(0.999)),
            us(self.latency_max_us())
        );
        if let (Some(cpu), Some(per)) = (self.cpu_s, self.cpu_us_per_msg()) {
            println!(
                "  cpu       {cpu:.2} s in this process{}: {per:.2} µs per message (sent + received)",
                if args.embedded { " (broker included)" } else { "" }
            );
        }
        if let (Some(cpu), Some(per)) = (self.broker_cpu_s, self.broker_us_per_delivery()) {
            println!("  broker    {cpu:.2} s CPU: {per:.2} µs per delivery");
        }
    }
}

fn expand(pattern: &str, index: usize) -> String {
    pattern.replace("%i", &index.to_string())
}

/// Prints a progress line every second until `done`.
async fn progress(label: String, counters: Arc<Counters>, mut done: watch::Receiver<bool>) {
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let (mut sent0, mut recv0) = (0, 0);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = done.wait_for(|d| *d) => return,
        }
        let sent = counters.sent.load(Ordering::Relaxed);
        let acked = counters.acked.load(Ordering::Relaxed);
        let recv = counters.received.load(Ordering::Relaxed);
        eprintln!(
            "[{label}] {:>4.0}s  sent {:>9}/s  received {:>9}/s  (total sent {sent}, acked {acked}, received {recv})",
            start.elapsed().as_secs_f64(),
            sent - sent0,
            recv - recv0,
        );
        (sent0, recv0) = (sent, recv);
    }
}

/// One run of the workload with `library`.
async fn run_once(
    args: &Args,
    host: &str,
    port: u16,
    library: Library,
    round: usize,
    run: u32,
) -> Result<RunResult, String> {
    let plan = Arc::new(Plan {
        host: host.to_owned(),
        port,
        v5: args.mqtt == "5",
        qos: args.qos,
        size: args.size,
        rate: (args.rate > 0.0).then_some(args.rate),
        window: args.window,
        count: args.count,
        run,
        base: Instant::now(),
        keep_alive: 60,
        batch_acks: !args.no_batch_acks,
        tls: args.tls_client()?,
    });
    let ctl = Arc::new(Control::default());
    let (done_tx, done_rx) = watch::channel(false);
    let cpu0 = bench_stats::cpu_seconds(None);
    let broker_cpu0 = args
        .broker_pid
        .and_then(|p| bench_stats::cpu_seconds(Some(p)));
    let label = format!("{} {round}/{}", library.name(), args.rounds);

    let topics: Vec<String> = (0..args.pubs).map(|i| expand(&args.topic, i)).collect();
    let filters: Vec<String> = (0..args.subs).map(|j| expand(&args.filter, j)).collect();

    // Subscribers first, each subscribed before any publisher connects.
    let mut subscribers = Vec::with_capacity(args.subs);
    for (j, filter) in filters.iter().enumerate() {
        let id = format!("bench-{run:08x}-s{j}");
        let sub = Subscriber::connect(library, &plan, &id, filter).await?;
        let tracker = Tracker::new(run, plan.base, args.pubs, ctl.counters.clone());
        let progress = tracker.progress.clone();
        subscribers.push((sub, tracker, progress));
    }
    let mut publishers = Vec::with_capacity(args.pubs);
    for i in 0..args.pubs {
        let id = format!("bench-{run:08x}-p{i}");
        publishers.push(Publisher::connect(library, &plan, &id).await?);
    }

    let progress_task = (!args.quiet).then(|| {
        tokio::spawn(progress(
            label.clone(),
            ctl.counters.clone(),
            done_rx.clone(),
        ))
    });
    let mut sub_tasks = Vec::new();
    let mut sub_progress = Vec::new();
    for (sub, tracker, progress) in subscribers {
        sub_progress.push(progress);
        sub_tasks.push(tokio::spawn(sub.run(tracker, done_rx.clone())));
    }
    let start = Instant::now();
    if args.count.is_none() {
        let ctl = ctl.clone();
        let duration = Duration::from_secs_f64(args.duration.max(0.0));
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            ctl.stop.store(true, Ordering::Relaxed);
        });
    }
    let pub_tasks: Vec<_> = publishers
        .into_iter()
        .zip(&topics)
        .enumerate()
        .map(|(i, (p, topic))| {
            tokio::spawn(p.run(plan.clone(), ctl.clone(), i as u32, topic.clone()))
        })
        .collect();
    let mut pub_results = Vec::with_capacity(pub_tasks.len());
    for task in pub_tasks {
        pub_results.push(task.await.unwrap_or_else(|e| PubResult {
            errors: 1,
            first_error: Some(format!("publisher task: {e}")),
            ..PubResult::default()
        }));
    }
    ctl.stop.store(true, Ordering::Relaxed);
    let last_send = pub_results.iter().filter_map(|r| r.last_send).max();

    // What each subscriber should get: everything sent on the topics its filter matches.
    let expected: Vec<u64> = filters
        .iter()
        .map(|f| {
            topics
                .iter()
                .zip(&pub_results)
                .filter(|(t, _)| bench_stats::topic_matches(f, t))
                .map(|(_, r)| r.sent)
                .sum()
        })
        .collect();
    let drain_deadline = Instant::now() + Duration::from_secs_f64(args.drain.max(0.0));
    let (mut last_total, mut last_change) = (u64::MAX, Instant::now());
    loop {
        let got: Vec<u64> = sub_progress
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .collect();
        if got.iter().zip(&expected).all(|(g, e)| g >= e) {
            break;
        }
        let total: u64 = got.iter().sum();
        let now = Instant::now();
        if total != last_total {
            (last_total, last_change) = (total, now);
        }
        if now >= drain_deadline || now - last_change >= Duration::from_secs(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = done_tx.send(true);
    let mut trackers = Vec::new();
    let mut subscriber_errors = Vec::new();
    for task in sub_tasks {
        match task.await {
            Ok((tracker, error)) => {
                trackers.push(tracker);
                subscriber_errors.extend(error);
            }
            Err(e) => subscriber_errors.push(format!("subscriber task: {e}")),
        }
    }
    if let Some(task) = progress_task {
        let _ = task.await;
    }
    let cpu_s = cpu0.zip(bench_stats::cpu_seconds(None)).map(|(a, b)| b - a);
    let broker_cpu_s = broker_cpu0
        .zip(
            args.broker_pid
                .and_then(|p| bench_stats::cpu_seconds(Some(p))),
        )
        .map(|(a, b)| b - a);

    let mut latency = bench_stats::new_histogram();
    for t in &trackers {
        let _ = latency.add(&t.latency);
    }
    let received: u64 = trackers.iter().map(|t| t.unique).sum();
    let expected_total: u64 = expected.iter().sum();
    let last_receive = trackers.iter().filter_map(|t| t.last_at).max();
    let per_s = |n: u64, end: Option<Instant>| {
        end.map(|e| (e - start).as_secs_f64())
            .filter(|s| *s > 0.0)
            .map_or(0.0, |s| n as f64 / s)
    };
    let sent: u64 = pub_results.iter().map(|r| r.sent).sum();
    Ok(RunResult {
        library,
        round,
        publish_secs: last_send.map_or(0.0, |e| bench_stats::secs(e - start)),
        sent,
        acked: pub_results.iter().map(|r| r.acked).sum(),
        publish_errors: pub_results.iter().map(|r| r.errors).sum(),
        first_error: pub_results.iter().find_map(|r| r.first_error.clone()),
        expected: expected_total,
        received,
        lost: trackers
            .iter()
            .zip(&expected)
            .map(|(t, e)| e.saturating_sub(t.unique))
            .sum(),
        duplicates: trackers.iter().map(|t| t.duplicates).sum(),
        foreign: trackers.iter().map(|t| t.foreign).sum(),
        subscriber_errors,
        sent_per_s: per_s(sent, last_send),
        received_per_s: per_s(received, last_receive),
        latency,
        cpu_s,
        broker_cpu_s,
        load: bench_stats::load_average(),
    })
}

/// Idle connections: memory per connection, in this process and in the broker.
async fn run_idle(
    args: &Args,
    host: &str,
    port: u16,
    library: Library,
    connections: usize,
) -> Result<Value, String> {
    let plan = Plan {
        host: host.to_owned(),
        port,
        v5: args.mqtt == "5",
        qos: args.qos,
        size: args.size,
        rate: None,
        window: args.window,
        count: None,
        run: 0,
        base: Instant::now(),
        keep_alive: 60,
        batch_acks: !args.no_batch_acks,
        tls: args.tls_client()?,
    };
    let own0 = bench_stats::rss_bytes(None);
    let broker0 = args
        .broker_pid
        .and_then(|p| bench_stats::rss_bytes(Some(p)));
    let (done_tx, done_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(connections);
    let id_base = std::process::id();
    for i in 0..connections {
        let id = format!("bench-idle-{id_base}-{i}");
        let sub = Subscriber::connect(library, &plan, &id, &format!("idle/{i}")).await?;
        tasks.push(tokio::spawn(sub.idle(done_rx.clone())));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.hold.max(0.0))).await;
    let own1 = bench_stats::rss_bytes(None);
    let broker1 = args
        .broker_pid
        .and_then(|p| bench_stats::rss_bytes(Some(p)));
    let _ = done_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let per = |a: Option<u64>, b: Option<u64>| {
        a.zip(b)
            .map(|(a, b)| b.saturating_sub(a) as f64 / connections.max(1) as f64)
    };
    let own = per(own0, own1);
    let broker = per(broker0, broker1);
    println!(
        "{}: {connections} idle connections with one subscription each: this process {} bytes per connection{}, broker {} bytes per connection",
        library.name(),
        own.map_or("-".to_owned(), |v| format!("{v:.0}")),
        if args.embedded { " (broker included)" } else { "" },
        broker.map_or("-".to_owned(), |v| format!("{v:.0}")),
    );
    Ok(json!({
        "client": library.name(),
        "connections": connections,
        "client_rss_bytes_per_connection": own,
        "broker_rss_bytes_per_connection": broker,
        "loadavg": bench_stats::load_average(),
    }))
}

fn summary(results: &[RunResult]) -> Value {
    let mut out = serde_json::Map::new();
    let metric = |rs: &[&RunResult], f: &dyn Fn(&RunResult) -> Option<f64>| {
        let values: Vec<f64> = rs.iter().filter_map(|r| f(r)).collect();
        bench_stats::spread(&values)
            .map(|(median, min, max)| json!({"median": median, "min": min, "max": max}))
    };
    type Metric = (&'static str, fn(&RunResult) -> Option<f64>);
    let metrics: [Metric; 8] = [
        ("sent_per_s", |r| Some(r.sent_per_s)),
        ("received_per_s", |r| Some(r.received_per_s)),
        ("lost", |r| Some(r.lost as f64)),
        ("latency_p50_us", |r| r.latency_us(0.5)),
        ("latency_p99_us", |r| r.latency_us(0.99)),
        ("latency_max_us", |r| r.latency_max_us()),
        ("cpu_us_per_msg", |r| r.cpu_us_per_msg()),
        ("broker_cpu_us_per_delivery", |r| r.broker_us_per_delivery()),
    ];
    for library in [Library::Ours, Library::Rumqttc, Library::Raw] {
        let rs: Vec<&RunResult> = results.iter().filter(|r| r.library == library).collect();
        if rs.is_empty() {
            continue;
        }
        let mut m = serde_json::Map::new();
        m.insert("rounds".into(), json!(rs.len()));
        for (name, f) in metrics {
            m.insert(name.into(), metric(&rs, &f).unwrap_or(Value::Null));
        }
        out.insert(library.name().into(), Value::Object(m));
    }
    Value::Object(out)
}

fn print_summary(summary: &Value) {
    let Some(map) = summary.as_object() else {
        return;
    };
    println!("\nsummary (median [min - max] over rounds):");
    let fmt = |v: &Value| {
        let n = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        format!("{:.2} [{:.2} - {:.2}]", n("median"), n("min"), n("max"))
    };
    for (library, metrics) in map {
        println!("  {library}:");
        if let Some(metrics) = metrics.as_object() {
            for (name, v) in metrics {
                if v.is_object() {
                    println!("    {name:<28} {}", fmt(v));
                }
            }
        }
    }
    let median = |lib: &str, m: &str| {
        summary
            .get(lib)
            .and_then(|l| l.get(m))
            .and_then(|v| v.get("median"))
            .and_then(Value::as_f64)
    };
    for m in [
        "received_per_s",
        "sent_per_s",
        "cpu_us_per_msg",
        "latency_p99_us",
    ] {
        if let (Some(a), Some(b)) = (median("ours", m), median("rumqttc", m)) {
            if b > 0.0 {
                println!("  ours / rumqttc, {m:<22} {:.2}x", a / b);
            }
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    if args.size < STAMP_LEN {
        return Err(format!("--size must be at least {STAMP_LEN} bytes"));
    }
    if args.filter.starts_with("$share/") {
        return Err("shared subscriptions are not supported (loss could not be counted)".into());
    }
    let tls = args.tls.requested();
    if !tls && args.tls.tls_only_given() {
        return Err(
            "--cert, --key, --insecure, --tls-version and --alpn need TLS (--cafile or --capath)"
                .into(),
        );
    }
    if tls && args.embedded {
        return Err("the embedded broker listens on plain TCP: TLS needs -h and -p".into());
    }
    if tls && args.client == ClientChoice::Raw {
        return Err(
            "the raw generator writes plain TCP: over TLS use --client ours, rumqttc or both"
                .into(),
        );
    }
    // The TLS flags are read once here, so that a bad file fails before any connection.
    args.tls_client()?;
    let mut embedded = None;
    let (host, port) = if args.embedded {
        let broker = BrokerServer::bind(("127.0.0.1", 0), BrokerConfig::default())
            .await
            .map_err(|e| format!("embedded broker: {e}"))?;
        let port = broker
            .local_addr()
            .map_err(|e| format!("embedded broker: {e}"))?
            .port();
        embedded = Some(broker.spawn());
        eprintln!("embedded broker on 127.0.0.1:{port}");
        ("127.0.0.1".to_owned(), port)
    } else {
        (
            args.host.clone(),
            args.port.unwrap_or(if tls { 8883 } else { 1883 }),
        )
    };
    let libraries: Vec<Library> = match args.client {
        ClientChoice::Ours => vec![Library::Ours],
        ClientChoice::Rumqttc => vec![Library::Rumqttc],
        ClientChoice::Both => vec![Library::Ours, Library::Rumqttc],
        ClientChoice::Raw => vec![Library::Raw],
    };
    let rounds = args.rounds.max(1);
    let machine = bench_stats::machine();
    let load_start = bench_stats::load_average();
    if let Some(n) = args.idle {
        println!(
            "bench: {n} idle connections, one subscription each, MQTT {}, broker {host}:{port}{}{}",
            if args.mqtt == "5" { "5.0" } else { "3.1.1" },
            if args.embedded { " (embedded)" } else { "" },
            if tls { " over TLS" } else { "" },
        );
    } else {
        println!(
            "bench: {} pub -> {} sub, QoS {}, {} B, MQTT {}, {}, {} ({}), broker {host}:{port}{}{}",
            args.pubs,
            args.subs,
            args.qos,
            args.size,
            if args.mqtt == "5" { "5.0" } else { "3.1.1" },
            if args.rate > 0.0 {
                format!("{} msg/s per publisher", args.rate)
            } else {
                format!("flat out (window {})", args.window)
            },
            match args.count {
                Some(n) => format!("{n} messages per publisher"),
                None => format!("{} s", args.duration),
            },
            format_args!("topic {}, filter {}", args.topic, args.filter),
            if args.embedded { " (embedded)" } else { "" },
            if tls { " over TLS" } else { "" },
        );
    }
    println!("machine: {machine}; load average {load_start}");

    let mut report = json!({
        "tool": "mqtt-streaming-tokio bench",
        "machine": machine,
        "loadavg_start": load_start,
        "broker": {
            "host": host, "port": port, "embedded": args.embedded, "pid": args.broker_pid,
            "transport": if tls { "tls" } else { "tcp" },
        },
        "workload": {
            "pubs": args.pubs, "subs": args.subs, "qos": args.qos, "size": args.size,
            "topic": args.topic, "filter": args.filter, "rate": args.rate, "window": args.window,
            "duration_s": args.duration, "count": args.count, "mqtt": args.mqtt,
            "rounds": rounds, "client": format!("{:?}", args.client).to_lowercase(),
        },
    });
    let mut ok = true;
    if let Some(connections) = args.idle {
        let mut idle = Vec::new();
        for round in 0..rounds {
            for k in 0..libraries.len() {
                // Alternate the order each round so neither library always goes first.
                let library = libraries[(k + round) % libraries.len()];
                idle.push(run_idle(&args, &host, port, library, connections).await?);
            }
        }
        report["idle"] = Value::Array(idle);
    } else {
        let mut results = Vec::new();
        let pid = std::process::id();
        for round in 0..rounds {
            for k in 0..libraries.len() {
                let library = libraries[(k + round) % libraries.len()];
                let run = pid.wrapping_mul(2_654_435_761) ^ ((round * 16 + k) as u32);
                let result = run_once(&args, &host, port, library, round + 1, run).await?;
                result.print(&args, rounds);
                let qos_loss = args.qos > 0 && result.lost > 0;
                if args.assert_no_loss
                    && (qos_loss
                        || result.publish_errors > 0
                        || !result.subscriber_errors.is_empty()
                        || result.received == 0)
                {
                    ok = false;
                }
                results.push(result);
                if results.len() < rounds * libraries.len() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        let summary = summary(&results);
        if results.len() > 1 {
            print_summary(&summary);
        }
        report["runs"] = Value::Array(results.iter().map(RunResult::to_json).collect());
        report["summary"] = summary;
    }
    report["loadavg_end"] = json!(bench_stats::load_average());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(broker) = embedded {
        broker.shutdown().await;
    }
    if !ok {
        eprintln!("bench: --assert-no-loss: a run lost messages or had errors");
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = args.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[path = "../../tests/pki/mod.rs"]
mod pki;

#[cfg(test)]
mod tests {
    use super::*;

    use bench_raw::RawConn;
    use mqtt_streaming_tokio::engine::Listeners;
    use mqtt_streaming_tokio::{listen_url, BrokerHandle, ListenOptions, TlsServerOptions};

    /// Our broker on an ephemeral loopback port.
    async fn embedded() -> (u16, mqtt_streaming_tokio::BrokerHandle) {
        let broker = BrokerServer::bind(("127.0.0.1", 0), BrokerConfig::default())
            .await
            .expect("binds");
        let port = broker.local_addr().expect("bound").port();
        (port, broker.spawn())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn raw_generator_against_our_broker_loses_nothing_at_qos_0_1_2() {
        let (port, broker) = embedded().await;
        for qos in ["0", "1", "2"] {
            let args = Args::parse_from([
                "mqtt-bench",
                "--client",
                "raw",
                "--pubs",
                "2",
                "--subs",
                "2",
                "-q",
                qos,
                "-n",
                "3000",
                "-w",
                "16",
                "--quiet",
            ]);
            let run = 0x5eed_0000 | qos.parse::<u32>().expect("digit");
            let r = run_once(&args, "127.0.0.1", port, Library::Raw, 1, run)
                .await
                .expect("runs");
            let what = format!("QoS {qos}: {:?} {:?}", r.first_error, r.subscriber_errors);
            assert_eq!(r.sent, 6000, "{what}");
            assert_eq!(
                r.acked, 6000,
                "every message acknowledged (QoS 0: written), {what}"
            );
            assert_eq!(
                (r.publish_errors, r.subscriber_errors.len()),
                (0, 0),
                "{what}"
            );
            // Both subscribers (bench/#) receive both publishers' messages, once each.
            assert_eq!((r.expected, r.received), (12_000, 12_000), "{what}");
            assert_eq!((r.lost, r.duplicates, r.foreign), (0, 0, 0), "{what}");
            assert_eq!(r.latency.len(), 12_000, "{what}");
        }
        broker.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn raw_generator_rate_limited_mqtt5_run_loses_nothing() {
        let (port, broker) = embedded().await;
        let args = Args::parse_from([
            "mqtt-bench",
            "--client",
            "raw",
            "-V",
            "5",
            "--pubs",
            "3",
            "--subs",
            "3",
            "-t",
            "pair/%i",
            "-f",
            "pair/%i",
            "-q",
            "2",
            "-r",
            "2000",
            "-d",
            "0.5",
            "-s",
            "300",
            "--quiet",
        ]);
        let r = run_once(&args, "127.0.0.1", port, Library::Raw, 1, 77)
            .await
            .expect("runs");
        let what = format!("{:?} {:?}", r.first_error, r.subscriber_errors);
        // About 1,000 per publisher in 0.5 s at 2,000/s: paced, not flat out.
        assert!((2_400..=3_300).contains(&r.sent), "sent {}, {what}", r.sent);
        assert_eq!(
            (r.acked, r.received, r.expected),
            (r.sent, r.sent, r.sent),
            "{what}"
        );
        assert_eq!(
            (r.lost, r.duplicates, r.publish_errors),
            (0, 0, 0),
            "{what}"
        );
        broker.shutdown().await;
    }

    /// MQTT-3.1.2-24: the server closes a connection that sends nothing for 1.5 times the keep
    /// alive; the raw connections send PINGREQ when idle, so a quiet subscriber survives.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn raw_connections_stay_alive_past_the_keep_alive_mqtt_3_1_2_24() {
        let (port, broker) = embedded().await;
        let plan = Plan {
            host: "127.0.0.1".into(),
            port,
            v5: false,
            qos: 1,
            size: 32,
            rate: None,
            window: 4,
            count: Some(5),
            run: 9,
            base: Instant::now(),
            keep_alive: 1,
            batch_acks: true,
            tls: None,
        };
        let counters = Arc::new(Counters::default());
        let mut sub = RawConn::connect(&plan, "ka-sub").await.expect("connects");
        sub.subscribe("ka-sub", "ka/t", 1)
            .await
            .expect("subscribes");
        let (done_tx, done_rx) = watch::channel(false);
        let mut tracker = Tracker::new(9, plan.base, 1, counters.clone());
        let progress = tracker.progress.clone();
        let receiving = tokio::spawn(async move {
            let error = sub
                .receive(|p, at| tracker.on_payload_at(p, at), done_rx)
                .await;
            tracker.flush();
            (error, tracker)
        });
        // Idle for more than 1.5 keep-alive intervals, then publish.
        tokio::time::sleep(Duration::from_millis(2600)).await;
        let publisher = RawConn::connect(&plan, "ka-pub").await.expect("connects");
        let ctl = Control::default();
        let result = publisher.publish(&plan, &ctl, 0, "ka/t").await;
        assert_eq!(
            (result.sent, result.acked, result.errors),
            (5, 5, 0),
            "{result:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while progress.load(Ordering::Relaxed) < 5 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = done_tx.send(true);
        let (error, tracker) = receiving.await.expect("joins");
        assert_eq!(error, None, "the subscriber's connection was not cut");
        assert_eq!(tracker.unique, 5);
        broker.shutdown().await;
    }

    /// Our broker with one TLS listener on an ephemeral loopback port, its certificate from
    /// `pki` (for localhost and 127.0.0.1).
    async fn tls_broker(pki: &pki::Pki) -> (u16, BrokerHandle) {
        let tls = TlsServerOptions::new(pki.server_cert.as_bytes(), pki.server_key.as_bytes())
            .expect("server certificate")
            .build()
            .expect("server configuration");
        let listener = listen_url("mqtts://127.0.0.1:0", &ListenOptions::new().tls(tls))
            .await
            .expect("listens");
        let port = listener.local_addr().expect("bound").port();
        let broker = BrokerServer::new(BrokerConfig::default())
            .with_listener(Box::new(Listeners::new(vec![listener])))
            .spawn();
        (port, broker)
    }

    /// A PEM file of its own for one test (removed by the caller).
    fn pem_file(name: &str, pem: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mqtt-bench-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let path = dir.join("ca.pem");
        std::fs::write(&path, pem).expect("writes the CA");
        path
    }

    fn bench_args(extra: &[&str]) -> Args {
        Args::parse_from(["mqtt-bench"].iter().chain(extra))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_libraries_run_the_workload_over_tls_without_loss() {
        let pki = pki::pki();
        let (port, broker) = tls_broker(&pki).await;
        let ca = pem_file("tls-ok", &pki.ca);
        for mqtt in ["311", "5"] {
            let args = bench_args(&[
                "--cafile",
                ca.to_str().expect("UTF-8 path"),
                "-V",
                mqtt,
                "--pubs",
                "2",
                "--subs",
                "2",
                "-q",
                "1",
                "-n",
                "500",
                "-s",
                "2000",
                "--quiet",
            ]);
            for library in [Library::Ours, Library::Rumqttc] {
                // The listener speaks only TLS: a plain TCP client would get no CONNACK.
                let r = run_once(&args, "127.0.0.1", port, library, 1, 0x7150)
                    .await
                    .unwrap_or_else(|e| panic!("{library:?} MQTT {mqtt} over TLS: {e}"));
                let what = format!("{library:?} MQTT {mqtt}: {:?}", r.first_error);
                assert_eq!(
                    (r.sent, r.acked, r.publish_errors),
                    (1000, 1000, 0),
                    "{what}"
                );
                assert_eq!((r.expected, r.received), (2000, 2000), "{what}");
                assert_eq!((r.lost, r.duplicates, r.foreign), (0, 0, 0), "{what}");
            }
        }
        broker.shutdown().await;
        let _ = std::fs::remove_dir_all(ca.parent().expect("in a directory"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_untrusted_server_certificate_fails_the_run_with_both_libraries() {
        let pki = pki::pki();
        let (port, broker) = tls_broker(&pki).await;
        // A CA that did not sign the server's certificate.
        let ca = pem_file("tls-untrusted", &pki.other_ca);
        let args = bench_args(&[
            "--cafile",
            ca.to_str().expect("UTF-8 path"),
            "-n",
            "10",
            "--quiet",
        ]);
        for library in [Library::Ours, Library::Rumqttc] {
            let failed = tokio::time::timeout(
                Duration::from_secs(30),
                run_once(&args, "127.0.0.1", port, library, 1, 0x7151),
            )
            .await
            .expect("fails promptly, no hang");
            let error = failed
                .err()
                .unwrap_or_else(|| panic!("{library:?} connected"));
            assert!(
                error.to_lowercase().contains("certificate"),
                "{library:?}: {error}"
            );
        }
        broker.shutdown().await;
        let _ = std::fs::remove_dir_all(ca.parent().expect("in a directory"));
    }

    #[tokio::test]
    async fn tls_flags_that_cannot_apply_are_refused_before_connecting() {
        for (flags, says) in [
            (
                &["--cafile", "ca.pem", "--client", "raw"][..],
                "raw generator",
            ),
            (&["--cafile", "ca.pem", "--embedded"][..], "embedded broker"),
            (&["--insecure"][..], "need TLS"),
            (&["--cafile", "/nonexistent/ca.pem"][..], "TLS options"),
        ] {
            let error = run(bench_args(flags)).await.expect_err("refused");
            assert!(error.contains(says), "{flags:?}: {error}");
        }
    }
}
