//! Flat-out QoS 1 latency with the client queue's old bound (4,096 messages) and the new
//! default (64 messages, 64 KiB): a publisher that hands messages over as fast as the client
//! takes them (no window of its own: `begin_publish` waits for room), through our broker to a
//! subscriber, each payload stamped with the time it was handed over. The latencies are
//! printed, not asserted (a shared machine's timings are no test); what is asserted is that
//! every message arrives.
//!
//! `cargo test --release -p mqtt-streaming-tokio --test queue_latency -- --ignored --nocapture`

use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicFilter, TopicName};
use mqtt_streaming_session::{ClientConfig, Message, SubscribeRequest};
use mqtt_streaming_tokio::{connect_tcp, BrokerOptions, BrokerServer, ClientOptions, Event};

fn options(id: &str, session: ClientConfig) -> ClientOptions {
    let connect = Connect::new(ProtocolVersion::V5, MqttString::new(id).unwrap());
    let mut options = ClientOptions::new(connect);
    options.session = session;
    options
}

/// Latencies (µs, sorted) of `duration` of flat-out QoS 1 publishing with `session`.
async fn run(session: ClientConfig, duration: Duration, tag: &str) -> Vec<u64> {
    let broker = BrokerServer::bind("127.0.0.1:0", BrokerOptions::default())
        .await
        .unwrap();
    let addr = broker.local_addr().unwrap();
    let broker = broker.spawn();
    let (sub, mut events) = connect_tcp(
        addr,
        options(&format!("{tag}-sub"), ClientConfig::default()),
    )
    .await
    .unwrap();
    sub.subscribe(SubscribeRequest::new(
        TopicFilter::new("lat/#").unwrap(),
        QoS::AtLeastOnce,
    ))
    .await
    .unwrap();
    let bound = session.max_queued;
    let window = session.max_inflight;
    let (publisher, _pub_events) = connect_tcp(addr, options(&format!("{tag}-pub"), session))
        .await
        .unwrap();
    let epoch = Arc::new(Instant::now());
    let topic = TopicName::new("lat/t").unwrap();
    let sender = {
        let epoch = epoch.clone();
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            let mut last = None;
            while epoch.elapsed() < duration {
                let stamp = epoch.elapsed().as_micros() as u64;
                let receipt = publisher
                    .begin_publish(Message::new(
                        topic.clone(),
                        QoS::AtLeastOnce,
                        stamp.to_be_bytes().to_vec(),
                    ))
                    .await
                    .unwrap();
                last = Some(receipt);
                sent += 1;
            }
            if let Some(last) = last {
                last.await.unwrap();
            }
            sent
        })
    };
    let mut latencies = Vec::new();
    let mut sender = sender;
    let sent = loop {
        tokio::select! {
            event = events.recv() => {
                if let Some(Event::Message { publish, .. }) = event {
                    let stamp = u64::from_be_bytes(publish.payload[..8].try_into().unwrap());
                    latencies.push(epoch.elapsed().as_micros() as u64 - stamp);
                }
            }
            sent = &mut sender => break sent.unwrap(),
        }
    };
    while (latencies.len() as u64) < sent {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(Event::Message { publish, .. })) => {
                let stamp = u64::from_be_bytes(publish.payload[..8].try_into().unwrap());
                latencies.push(epoch.elapsed().as_micros() as u64 - stamp);
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert_eq!(latencies.len() as u64, sent, "{tag}: every message arrives");
    let _ = publisher.disconnect().await;
    let _ = sub.disconnect().await;
    broker.shutdown().await;
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "{tag} (max_inflight {window}, max_queued {bound}): {} messages in {:?}, latency µs p50 {} p90 {} p99 {}",
        latencies.len(),
        duration,
        at(0.5),
        at(0.9),
        at(0.99)
    );
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --release -- --ignored --nocapture"]
async fn flat_out_qos1_latency_old_and_new_queue_bound() {
    let old = ClientConfig::default()
        .with_max_queued(4096)
        .with_max_queued_bytes(usize::MAX);
    for round in 0..3 {
        run(old.clone(), Duration::from_secs(3), &format!("old-{round}")).await;
        run(
            ClientConfig::default(),
            Duration::from_secs(3),
            &format!("new-{round}"),
        )
        .await;
        // For comparison: the new queue behind a window the size of rumqttc's default (100).
        let small_window = ClientConfig::default().with_max_inflight(100);
        run(
            small_window,
            Duration::from_secs(3),
            &format!("new-window-100-{round}"),
        )
        .await;
    }
}
