//! `bench-transports`: throughput and connection (handshake) rate over each transport beside
//! plain TCP, our client against our broker embedded in the process, loopback only,
//! certificates made at start (rcgen). The transports are measured in interleaved rounds (TCP,
//! TLS, WebSocket, WebSocket+TLS, Unix, then again), so a machine whose load changes over the
//! run biases none of them; it prints the median and the range over the rounds.
//!
//! ```text
//! cargo run --release -p mqtt-streaming-tokio --features tls,websocket,unix --example bench-transports -- --rounds 5
//! ```

use std::collections::VecDeque;
use std::time::Instant;

use clap::Parser;
use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicFilter, TopicName};
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_session::{Message, SubscribeRequest};
use mqtt_streaming_tokio::engine::Listeners;
use mqtt_streaming_tokio::{
    connect_url_with, listen_url, BrokerServer, ClientOptions, Endpoint, Event, ListenOptions,
    TlsClientOptions, TlsServerOptions, TransportOptions,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// Throughput and handshake rate of TCP, TLS, WebSocket, WebSocket+TLS and Unix sockets.
#[derive(Parser, Debug)]
#[command(name = "bench-transports")]
struct Args {
    /// Interleaved rounds (each measures every transport once).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Messages per throughput run.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Payload bytes of the small messages.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Payload bytes of the large messages (a second throughput run, a tenth of the messages).
    #[arg(long, default_value_t = 16 * 1024)]
    large: usize,
    /// QoS of the throughput runs.
    #[arg(long, default_value_t = 1)]
    qos: u8,
    /// In-flight window of the publisher.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Connections (CONNECT, CONNACK, DISCONNECT) per handshake-rate run.
    #[arg(long, default_value_t = 300)]
    connects: usize,
    /// Connections made at once in the handshake-rate runs.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

fn options(id: &str) -> ClientOptions {
    let mut connect = Connect::new(ProtocolVersion::V5, MqttString::new(id).unwrap());
    connect.keep_alive = 60;
    ClientOptions::new(connect)
}

/// Messages per second from the first publish to the last delivery (one publisher, one
/// subscriber).
async fn throughput(
    url: &str,
    transport: &TransportOptions,
    id: &str,
    count: usize,
    size: usize,
    qos: QoS,
    window: usize,
) -> f64 {
    let (sub, mut events) = connect_url_with(url, transport, options(&format!("{id}-s")))
        .await
        .unwrap();
    let topic = format!("bench/{id}");
    sub.subscribe(SubscribeRequest::new(
        TopicFilter::new(&topic).unwrap(),
        qos,
    ))
    .await
    .unwrap();
    let (publisher, _pub_events) = connect_url_with(url, transport, options(&format!("{id}-p")))
        .await
        .unwrap();
    let receiving = tokio::spawn(async move {
        let mut got = 0;
        while got < count {
            match events.recv().await {
                Some(Event::Message { .. }) => got += 1,
                Some(Event::Closed { reason, .. }) => panic!("closed: {reason}"),
                Some(_) => {}
                None => break,
            }
        }
        got
    });
    let topic = TopicName::new(&topic).unwrap();
    let payload = bytes::Bytes::from(vec![0x42u8; size]);
    let started = Instant::now();
    let mut receipts = VecDeque::with_capacity(window);
    for _ in 0..count {
        if receipts.len() >= window {
            let receipt: mqtt_streaming_tokio::PublishReceipt = receipts.pop_front().unwrap();
            receipt.await.unwrap();
        }
        receipts.push_back(
            publisher
                .begin_publish(Message::new(topic.clone(), qos, payload.clone()))
                .await
                .unwrap(),
        );
    }
    for receipt in receipts {
        receipt.await.unwrap();
    }
    let got = receiving.await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(got, count, "{url}: lost messages");
    publisher.disconnect().await.unwrap();
    sub.disconnect().await.unwrap();
    count as f64 / elapsed.as_secs_f64()
}

/// Connections per second: connect (TCP, TLS/WebSocket handshakes, CONNECT/CONNACK) and
/// disconnect, `concurrency` at a time.
async fn handshake_rate(
    url: &str,
    transport: &TransportOptions,
    id: &str,
    connects: usize,
    concurrency: usize,
) -> f64 {
    let started = Instant::now();
    let per_task = connects / concurrency;
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let url = url.to_owned();
        let transport = transport.clone();
        let id = format!("{id}-{task}");
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                let (client, _events) = connect_url_with(&url, &transport, options(&id))
                    .await
                    .unwrap();
                client.disconnect().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    (per_task * concurrency) as f64 / started.elapsed().as_secs_f64()
}

fn median_and_range(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let qos = match args.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };

    // A CA and a server certificate for 127.0.0.1.
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let tls_server = TlsServerOptions::new(
        server_cert.pem().as_bytes(),
        server_key.serialize_pem().as_bytes(),
    )
    .unwrap()
    .build()
    .unwrap();
    let transport = TransportOptions::new().tls(
        TlsClientOptions::new()
            .add_ca_pem(ca.pem().as_bytes())
            .unwrap()
            .build()
            .unwrap(),
    );

    let dir = std::env::temp_dir().join(format!("bench-transports-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let listen = ListenOptions::new().tls(tls_server);
    let unix = format!("unix://{}", dir.join("broker.sock").display());
    let mut listeners = Vec::new();
    let mut urls = Vec::new();
    for (name, url) in [
        ("TCP", "mqtt://127.0.0.1:0"),
        ("TLS", "mqtts://127.0.0.1:0"),
        ("WebSocket", "ws://127.0.0.1:0/mqtt"),
        ("WebSocket+TLS", "wss://127.0.0.1:0/mqtt"),
        ("Unix", unix.as_str()),
    ] {
        let listener = listen_url(url, &listen).await.unwrap();
        let mut endpoint = Endpoint::parse(url).unwrap();
        if let Ok(addr) = listener.local_addr() {
            endpoint.port = addr.port();
        }
        urls.push((name, endpoint.to_string()));
        listeners.push(listener);
    }
    let broker = BrokerServer::new(BrokerConfig::default())
        .with_listener(Box::new(Listeners::new(listeners)))
        .spawn();

    let kinds = ["small", "large", "connects"];
    let mut results = vec![vec![Vec::new(); kinds.len()]; urls.len()];
    for round in 0..args.rounds {
        for (t, (name, url)) in urls.iter().enumerate() {
            let id = format!("r{round}t{t}");
            let small = throughput(
                url,
                &transport,
                &format!("{id}a"),
                args.messages,
                args.size,
                qos,
                args.window,
            )
            .await;
            let large = throughput(
                url,
                &transport,
                &format!("{id}b"),
                (args.messages / 10).max(1),
                args.large,
                qos,
                args.window,
            )
            .await;
            let connects =
                handshake_rate(url, &transport, &id, args.connects, args.concurrency).await;
            eprintln!("round {round} {name:>14}: {small:>9.0} msg/s ({} B), {large:>8.0} msg/s ({} B), {connects:>7.0} connections/s", args.size, args.large);
            results[t][0].push(small);
            results[t][1].push(large);
            results[t][2].push(connects);
        }
    }
    broker.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "| transport | {} B msg/s (QoS {}) | {} B msg/s | {} B MB/s | connections/s ({} at once) |",
        args.size, args.qos, args.large, args.large, args.concurrency
    );
    println!("|---|---|---|---|---|");
    let base: Vec<f64> = (0..kinds.len())
        .map(|k| median_and_range(&mut results[0][k].clone()).0)
        .collect();
    for (t, (name, _)) in urls.iter().enumerate() {
        let mut cells = Vec::new();
        for (k, base) in base.iter().enumerate() {
            let (median, low, high) = median_and_range(&mut results[t][k]);
            let relative = if t == 0 {
                String::new()
            } else {
                format!(", {:.2}x TCP", median / base)
            };
            cells.push(format!("{median:.0} ({low:.0}-{high:.0}{relative})"));
            if k == 1 {
                let mb = |v: f64| v * args.large as f64 / 1e6;
                cells.push(format!(
                    "{:.0} ({:.0}-{:.0})",
                    mb(median),
                    mb(low),
                    mb(high)
                ));
            }
        }
        println!("| {name} | {} |", cells.join(" | "));
    }
}
