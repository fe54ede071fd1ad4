//! Issue 10 item 4 over loopback: 8 publishers flat out at QoS 1 into one subscriber that
//! reads, but slowly. The broker holds the publishers back (withheld PUBACKs, unread sockets)
//! instead of dropping messages or cutting the subscriber: every acknowledged message arrives,
//! and the subscriber stays connected. Bounded in time (a few seconds of load); no timing
//! assertions beyond generous liveness bounds.

mod interop_support;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use interop_support::*;
use mqtt_streaming_proto::{ProtocolVersion, QoS};
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_session::SubscribeRequest;
use mqtt_streaming_tokio::{connect_tcp, BrokerNotice, BrokerServer, Event};

const PUBLISHERS: usize = 8;
/// How long the publishers go flat out.
const LOAD: Duration = Duration::from_secs(3);
/// Liveness bound for the subscriber to catch up afterwards.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Runs the fan-in with `payload_len`-byte messages; the subscriber pauses 1 ms after every
/// `read_batch` messages. Returns (acknowledged, delivered).
async fn fan_in(payload_len: usize, read_batch: usize, version: ProtocolVersion) -> (usize, usize) {
    let mut broker = BrokerServer::bind("127.0.0.1:0", BrokerConfig::default())
        .await
        .unwrap();
    let addr = broker.local_addr().unwrap();
    let mut notices = broker.notices();
    let handle = broker.spawn();
    let slow_cut = Arc::new(AtomicBool::new(false));
    let watch = {
        let slow_cut = slow_cut.clone();
        tokio::spawn(async move {
            while let Some(notice) = notices.recv().await {
                if matches!(notice, BrokerNotice::SlowConsumer { .. }) {
                    slow_cut.store(true, Ordering::SeqCst);
                }
            }
        })
    };

    let (sub, mut sub_events) = connect_tcp(addr, options(version, "sub", false))
        .await
        .unwrap();
    sub.subscribe(SubscribeRequest::new(filter("load/+"), QoS::AtLeastOnce))
        .await
        .unwrap();

    // The slow reader: counts what arrives, pausing every `read_batch` messages.
    let received = Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    let reader = tokio::spawn(async move {
        let mut got: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        let mut n = 0usize;
        let mut closed = None;
        let deadline = tokio::time::Instant::now() + LOAD + CATCH_UP;
        loop {
            let event = tokio::time::timeout_at(deadline, sub_events.recv()).await;
            match event {
                Ok(Some(Event::Message { publish, .. })) => {
                    let text = std::str::from_utf8(&publish.payload[..20]).unwrap();
                    let (p, seq) = text.trim_end().split_once('-').unwrap();
                    got.entry(p.parse().unwrap())
                        .or_default()
                        .push(seq.parse().unwrap());
                    n += 1;
                    count.store(n, Ordering::SeqCst);
                    if n % read_batch == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                Ok(Some(Event::Closed { reason, .. })) => {
                    closed = Some(reason);
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        (got, closed, sub_events)
    });

    let mut publishers = Vec::new();
    for k in 0..PUBLISHERS {
        let (client, events) = connect_tcp(addr, options(version, &format!("pub{k}"), false))
            .await
            .unwrap();
        publishers.push(tokio::spawn(async move {
            let _events = events;
            let mut acked = BTreeSet::new();
            let mut pending = VecDeque::new();
            let start = tokio::time::Instant::now();
            let mut seq = 0u64;
            while start.elapsed() < LOAD {
                let mut payload = format!("{k}-{seq:<18}").into_bytes();
                payload.resize(payload_len.max(20), b'.');
                let message = message(&format!("load/{k}"), QoS::AtLeastOnce, Bytes::from(payload));
                let receipt = tokio::time::timeout(CATCH_UP, client.begin_publish(message))
                    .await
                    .expect("publish handed over")
                    .unwrap();
                pending.push_back((seq, receipt));
                seq += 1;
                while pending.len() > 256 {
                    let (n, receipt) = pending.pop_front().unwrap();
                    let outcome = tokio::time::timeout(CATCH_UP, receipt)
                        .await
                        .expect("acknowledged in time")
                        .unwrap();
                    assert!(outcome.is_success(), "{outcome:?}");
                    acked.insert(n);
                }
            }
            for (n, receipt) in pending {
                let outcome = tokio::time::timeout(CATCH_UP, receipt)
                    .await
                    .expect("acknowledged in time")
                    .unwrap();
                assert!(outcome.is_success(), "{outcome:?}");
                acked.insert(n);
            }
            client.disconnect().await.unwrap();
            acked
        }));
    }
    let mut acked = Vec::new();
    for p in publishers {
        acked.push(p.await.unwrap());
    }
    let total_acked: usize = acked.iter().map(BTreeSet::len).sum();

    // Nothing was dropped; the subscriber catches up, then we stop it.
    let stats = handle.stats().await.unwrap();
    assert_eq!(stats.dropped_queue_full, 0, "{stats:?}");
    let caught_up = tokio::time::timeout(CATCH_UP, async {
        while received.load(Ordering::SeqCst) < total_acked {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let stats = handle.stats().await.unwrap();
    assert!(
        caught_up.is_ok(),
        "the subscriber got {} of {total_acked} in time; {stats:?}",
        received.load(Ordering::SeqCst)
    );
    sub.disconnect().await.unwrap();
    let (got, closed, _events) = reader.await.unwrap();
    assert!(
        closed.as_ref().is_none_or(|r| r.is_normal()),
        "the subscriber was cut: {closed:?}"
    );
    assert!(!slow_cut.load(Ordering::SeqCst), "cut as a slow consumer");
    let mut delivered = 0;
    let mut lost = 0;
    for (k, acked) in acked.iter().enumerate() {
        let seen = got.get(&k).cloned().unwrap_or_default();
        let mut firsts = seen.clone();
        firsts.dedup();
        assert!(
            firsts.windows(2).all(|w| w[0] < w[1]),
            "publisher {k}: out of order"
        );
        let set: BTreeSet<u64> = seen.into_iter().collect();
        delivered += acked.iter().filter(|n| set.contains(n)).count();
        lost += acked.iter().filter(|n| !set.contains(n)).count();
        assert!(!acked.is_empty(), "publisher {k} made progress");
    }
    eprintln!(
        "fan-in {PUBLISHERS}x{payload_len} B {version:?}: acknowledged {total_acked}, delivered {delivered}, lost {lost}, held back at some point {}",
        stats.messages_parked
    );
    assert_eq!(lost, 0, "acknowledged but never delivered");
    handle.shutdown().await;
    watch.abort();
    (total_acked, delivered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_qos1_small_messages_slow_reader_loses_nothing() {
    // Issue 10 item 4: 8 publishers flat out at QoS 1, 100-byte messages, a reader that
    // pauses 1 ms every 50 messages.
    let (acked, delivered) = fan_in(100, 50, ProtocolVersion::V5).await;
    assert!(acked > 0);
    assert_eq!(acked, delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_qos1_64k_flood_slow_reader_not_cut_loses_nothing() {
    // Issue 10 item 4: "a subscriber that reads, but slower than a 64 KiB flood, is
    // disconnected after 0.5 s": now it is not, and nothing acknowledged is lost (3.1.1
    // clients, which know no Receive Maximum).
    let (acked, delivered) = fan_in(64 * 1024, 4, ProtocolVersion::V3_1_1).await;
    assert!(acked > 0);
    assert_eq!(acked, delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_reading_subscriber_disconnected_after_stall_timeout_publisher_resumes() {
    // Issue 10 item 4 policy over loopback: a subscriber that takes messages but never
    // acknowledges them (manual acks, never given) holds its publisher back until
    // stalled_subscriber_timeout; then it is disconnected (5.0: DISCONNECT 0x97 Quota exceeded)
    // and the publisher's messages are all acknowledged.
    let config = BrokerConfig {
        stalled_subscriber_timeout: Duration::from_secs(1),
        server: BrokerConfig::default().server.with_max_queued(50),
        ..BrokerConfig::default()
    };
    let broker = BrokerServer::bind("127.0.0.1:0", config).await.unwrap();
    let addr = broker.local_addr().unwrap();
    let handle = broker.spawn();
    let mut stuck_opts = options(ProtocolVersion::V5, "stuck", false);
    stuck_opts.session.ack_mode = mqtt_streaming_session::AckMode::Manual;
    stuck_opts.session.receive_maximum = 10;
    let (stuck, mut stuck_events) = connect_tcp(addr, stuck_opts).await.unwrap();
    stuck
        .subscribe(SubscribeRequest::new(filter("t"), QoS::AtLeastOnce))
        .await
        .unwrap();
    let (publisher, _events) = connect_tcp(addr, options(ProtocolVersion::V5, "pub", false))
        .await
        .unwrap();
    let total = 200u64;
    let mut receipts = Vec::new();
    for n in 0..total {
        let m = message("t", QoS::AtLeastOnce, n.to_string());
        receipts.push(publisher.begin_publish(m).await.unwrap());
    }
    let stats = tokio::time::timeout(WAIT, async {
        loop {
            let s = handle.stats().await.unwrap();
            if s.parked > 0 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the publisher is held back while the subscriber is full");
    assert_eq!(stats.stalled_subscribers_disconnected, 0);
    // The stuck subscriber is told why, after the timeout.
    let reason = tokio::time::timeout(WAIT, async {
        loop {
            match stuck_events.recv().await {
                Some(Event::Closed { reason, .. }) => return reason,
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    })
    .await
    .expect("disconnected within the liveness bound");
    assert_eq!(
        reason,
        mqtt_streaming_session::CloseReason::Disconnect(
            mqtt_streaming_proto::ReasonCode::QuotaExceeded
        )
    );
    for receipt in receipts {
        let outcome = tokio::time::timeout(WAIT, receipt).await.unwrap().unwrap();
        assert!(outcome.is_success());
    }
    let stats = handle.stats().await.unwrap();
    assert_eq!(stats.stalled_subscribers_disconnected, 1);
    assert_eq!(stats.parked, 0);
    handle.shutdown().await;
}
