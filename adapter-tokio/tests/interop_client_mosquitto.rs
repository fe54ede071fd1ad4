//! Our client against mosquitto (real software nobody here wrote), MQTT 3.1.1 and 5.0.
//! `#[ignore]`d: `.ci/run` installs mosquitto and runs them with `-- --ignored`.

mod interop_support;

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use interop_support::*;
use mqtt_streaming_proto::{MqttString, ProtocolVersion, QoS, ReasonCode, UserProperty, Will};
use mqtt_streaming_session::{ClientConfig, SubscribeRequest};
use mqtt_streaming_tokio::{connect_tcp, Event, Reconnect};

const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V3_1_1, ProtocolVersion::V5];

/// A client of ours connected to `broker` (clean start) and subscribed to `filter_text`,
/// the subscription granted at `qos`.
async fn subscriber(
    broker: &Mosquitto,
    version: ProtocolVersion,
    id: &str,
    filter_text: &str,
    qos: QoS,
) -> (
    mqtt_streaming_tokio::Client,
    mqtt_streaming_tokio::ClientEvents,
) {
    let (client, events) = connect_tcp(broker.addr, options(version, id, false))
        .await
        .unwrap();
    let suback = client
        .subscribe(SubscribeRequest::new(filter(filter_text), qos))
        .await
        .unwrap();
    assert_eq!(
        suback.reason_codes,
        [ReasonCode::granted(qos)],
        "{version:?} {filter_text}"
    );
    (client, events)
}

/// QoS 0, 1 and 2 both ways through mosquitto: each publish acknowledged, each message
/// received once at the publish's QoS, from our publisher and from mosquitto_pub
/// ([MQTT-4.3.3-2] in 3.1.1: no duplicate onward). Our client needs no extension of the
/// broker's: [MQTT-7.0.0-2] (3.1.1)
#[tokio::test]
#[ignore = "needs mosquitto (run by .ci/run)"]
async fn qos_0_1_2_both_ways() {
    let broker = Mosquitto::start("").await;
    for version in VERSIONS {
        let (sub, mut events) =
            subscriber(&broker, version, "q-sub", "q/#", QoS::ExactlyOnce).await;
        let (publisher, _e) = connect_tcp(broker.addr, options(version, "q-pub", false))
            .await
            .unwrap();
        for (n, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            let outcome = publisher
                .publish(message(&format!("q/{n}"), qos, format!("ours {n}")))
                .await
                .unwrap();
            assert!(outcome.is_success(), "{version:?} {outcome:?}");
            let (publish, _) = next_message(&mut events).await;
            assert_eq!(publish.qos_pid.qos(), qos);
            assert_eq!(&publish.payload[..], format!("ours {n}").as_bytes());
        }
        for qos in ["0", "1", "2"] {
            let status = std::process::Command::new("mosquitto_pub")
                .args(["-p", &broker.port.to_string(), "-q", qos, "-t", "q/theirs"])
                .args(["-m", &format!("theirs {qos}")])
                .status()
                .unwrap();
            assert!(status.success());
            let (publish, _) = next_message(&mut events).await;
            assert_eq!(publish.qos_pid.qos() as u8, qos.parse::<u8>().unwrap());
            assert_eq!(&publish.payload[..], format!("theirs {qos}").as_bytes());
        }
        no_message(&mut events, Duration::from_millis(200)).await;
        sub.disconnect().await.unwrap();
        publisher.disconnect().await.unwrap();
    }
}

/// A retained message reaches a later subscriber with RETAIN set ([MQTT-3.3.1-6] 3.1.1); a
/// will is published when our connection is cut ([MQTT-3.1.2-8]) and not after a normal
/// DISCONNECT.
#[tokio::test]
#[ignore = "needs mosquitto (run by .ci/run)"]
async fn retained_and_will() {
    let broker = Mosquitto::start("").await;
    for (i, version) in VERSIONS.into_iter().enumerate() {
        let (publisher, _e) = connect_tcp(broker.addr, options(version, "r-pub", false))
            .await
            .unwrap();
        publisher
            .publish(message(&format!("ret/{i}"), QoS::AtLeastOnce, "kept").retained())
            .await
            .unwrap();
        let (sub, mut events) = connect_tcp(broker.addr, options(version, "r-sub", false))
            .await
            .unwrap();
        sub.subscribe(SubscribeRequest::new(
            filter(&format!("ret/{i}")),
            QoS::AtLeastOnce,
        ))
        .await
        .unwrap();
        let (publish, _) = next_message(&mut events).await;
        assert!(publish.retain);
        assert_eq!(&publish.payload[..], b"kept");

        sub.subscribe(SubscribeRequest::new(filter("will/#"), QoS::AtLeastOnce))
            .await
            .unwrap();
        let will = |topic_name: &str| Will {
            topic: topic(topic_name),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
        };
        let mut polite = options(version, "polite", false);
        polite.connect.will = Some(will("will/polite"));
        let (client, _e) = connect_tcp(broker.addr, polite).await.unwrap();
        client.disconnect().await.unwrap();
        let proxy = Proxy::start(broker.addr).await;
        let mut doomed = options(version, "doomed", false);
        doomed.connect.will = Some(will("will/doomed"));
        let (_client, _e) = connect_tcp(proxy.addr, doomed).await.unwrap();
        proxy.cut();
        let (publish, _) = next_message(&mut events).await;
        assert_eq!(publish.topic.as_str(), "will/doomed", "{version:?}");
        no_message(&mut events, Duration::from_millis(200)).await;
        sub.disconnect().await.unwrap();
    }
}

/// A persistent session survives a TCP connection cut in the middle of QoS 2 flows both ways,
/// with the real `Client`: the transport dies, the client reports a resumable `Closed`, and
/// `reconnect` resumes the session on a new connection (Session Present). Every message in
/// each direction arrives exactly once ([MQTT-4.3.3-2] in 3.1.1, [MQTT-4.3.3-10] in 5.0:
/// re-sent PUBLISHes are not delivered twice; unacknowledged PUBLISH and PUBREL re-sent on
/// resume, [MQTT-4.4.0-1]) and every publish future that was waiting across the cut resolves
/// with mosquitto's Success.
#[tokio::test]
#[ignore = "needs mosquitto (run by .ci/run)"]
async fn persistent_session_resumed_after_cut_mid_qos2() {
    const N: usize = 60;
    // Every message in flight at once: mosquitto 2.0.11 leaves messages it queued for an
    // offline session queued after the session resumes until something else wakes the
    // client up, which is not what this test is about.
    let broker = Mosquitto::start("max_inflight_messages 100").await;
    for version in VERSIONS {
        let (watcher, mut watched) =
            subscriber(&broker, version, "watch", "cut/out", QoS::ExactlyOnce).await;
        let mut resumer = options(version, "resumer", true).resumable();
        // A small window of our own: the outbound flows advance a few per round trip.
        resumer.session = ClientConfig::default().with_max_inflight(4);
        let proxy = Proxy::start(broker.addr).await;
        let (client, mut events) = connect_tcp(proxy.addr, resumer).await.unwrap();
        client
            .subscribe(SubscribeRequest::new(filter("cut/in"), QoS::ExactlyOnce))
            .await
            .unwrap();
        // What the client receives, and its resumable `Closed` events, from its event stream.
        let received: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
        let collected = received.clone();
        let collector = tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    Event::Message { publish, .. } => {
                        collected.lock().unwrap().push(publish.payload);
                    }
                    Event::Closed { resumable, .. } => {
                        let _ = closed_tx.send(resumable);
                    }
                    _ => {}
                }
            }
        });
        // Flows in both directions at once: a publisher's in, then ours out.
        let (feeder, _e) = connect_tcp(broker.addr, options(version, "feeder", false))
            .await
            .unwrap();
        let feeding = tokio::spawn(async move {
            for n in 1..=N {
                // Spread out, so that the cut falls in the middle of the inbound flows.
                tokio::time::sleep(Duration::from_millis(3)).await;
                let _ = feeder
                    .begin_publish(message("cut/in", QoS::ExactlyOnce, format!("{n}")))
                    .await;
            }
            feeder
        });
        wait_until(|| received.lock().unwrap().len() >= 8).await;
        let mut receipts = Vec::new();
        for n in 1..=N {
            let receipt = client
                .begin_publish(message("cut/out", QoS::ExactlyOnce, format!("{n}")))
                .await
                .unwrap();
            receipts.push(receipt);
        }
        // Acknowledged so far, in order (the session completes them in order here).
        let acked = Arc::new(AtomicUsize::new(0));
        let counter = acked.clone();
        let (eight_tx, eight_rx) = tokio::sync::oneshot::channel();
        let outcomes = tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut eight = Some(eight_tx);
            for receipt in receipts {
                outcomes.push(receipt.await);
                if counter.fetch_add(1, Ordering::SeqCst) + 1 >= 8 {
                    if let Some(eight) = eight.take() {
                        let _ = eight.send(());
                    }
                }
            }
            outcomes
        });
        // Cut as soon as 8 are acknowledged, well before the last.
        tokio::time::timeout(WAIT, eight_rx).await.unwrap().unwrap();
        // Cut mid-flow.
        proxy.cut();
        let resumable = tokio::time::timeout(WAIT, closed_rx.recv()).await.unwrap();
        assert_eq!(
            resumable,
            Some(true),
            "{version:?}: the session survives the cut"
        );
        let cut_in = received.lock().unwrap().len();
        let cut_out = acked.load(Ordering::SeqCst);
        assert!(
            cut_in < N && cut_out < N,
            "the cut came too late: {cut_in} in, {cut_out} out"
        );
        // Resume on a new connection, directly.
        let connack = client.reconnect_tcp(broker.addr).await.unwrap();
        assert!(connack.session_present, "{version:?}");
        let outcomes = tokio::time::timeout(WAIT, outcomes).await.unwrap().unwrap();
        for outcome in outcomes {
            assert!(outcome.unwrap().is_success(), "{version:?}");
        }
        wait_until(|| received.lock().unwrap().len() >= N).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut inbound: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        for payload in received.lock().unwrap().iter() {
            *inbound.entry(payload.to_vec()).or_default() += 1;
        }
        assert_eq!(inbound.len(), N, "{version:?}: inbound loss");
        assert!(
            inbound.values().all(|&c| c == 1),
            "{version:?}: inbound duplicate"
        );
        let mut outbound: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        for _ in 0..N {
            let (publish, _) = next_message(&mut watched).await;
            *outbound.entry(publish.payload.to_vec()).or_default() += 1;
        }
        no_message(&mut watched, Duration::from_millis(300)).await;
        assert_eq!(outbound.len(), N, "{version:?}: outbound loss");
        assert!(
            outbound.values().all(|&c| c == 1),
            "{version:?}: outbound duplicate"
        );
        eprintln!(
            "{version:?}: cut after {cut_in} in / {cut_out} out of {N}; all {N} exactly once"
        );
        client.disconnect().await.unwrap();
        assert_eq!(closed_rx.recv().await, Some(false));
        collector.await.unwrap();
        feeding.await.unwrap().disconnect().await.unwrap();
        watcher.disconnect().await.unwrap();
    }
}

/// Waits until `done` holds (or panics after [`WAIT`]).
async fn wait_until(mut done: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("condition in time");
}

/// MQTT 5 properties through mosquitto: user properties (in order), response topic,
/// correlation data and content type arrive intact ([MQTT-3.3.2-17]); topic aliases we assign
/// are resolved by mosquitto; a message whose expiry passed is not delivered to a later
/// subscriber.
#[tokio::test]
#[ignore = "needs mosquitto (run by .ci/run)"]
async fn v5_properties_and_topic_alias() {
    let broker = Mosquitto::start("").await;
    let v5 = ProtocolVersion::V5;
    let (sub, mut events) = subscriber(&broker, v5, "p-sub", "props/#", QoS::AtLeastOnce).await;
    let mut opts = options(v5, "p-pub", false);
    opts.session.auto_topic_alias = true;
    let (publisher, mut pub_events) = connect_tcp(broker.addr, opts).await.unwrap();
    match pub_events.recv().await {
        Some(Event::Connected(connack)) => {
            assert!(connack.properties.topic_alias_maximum.unwrap_or(0) > 0)
        }
        other => panic!("{other:?}"),
    }
    let mut m = message("props/a", QoS::AtLeastOnce, "with properties");
    m.properties.user_properties = vec![
        UserProperty {
            name: MqttString::new("k").unwrap(),
            value: MqttString::new("1").unwrap(),
        },
        UserProperty {
            name: MqttString::new("k").unwrap(),
            value: MqttString::new("2").unwrap(),
        },
    ];
    m.properties.response_topic = Some(topic("props/reply"));
    m.properties.correlation_data = Some(Bytes::from_static(b"\x00\x01corr"));
    m.properties.content_type = Some(MqttString::new("text/plain").unwrap());
    m.properties.message_expiry_interval = Some(60);
    publisher.publish(m.clone()).await.unwrap();
    let (publish, _) = next_message(&mut events).await;
    assert_eq!(
        publish.properties.user_properties,
        m.properties.user_properties
    );
    assert_eq!(
        publish.properties.response_topic,
        m.properties.response_topic
    );
    assert_eq!(
        publish.properties.correlation_data,
        m.properties.correlation_data
    );
    assert_eq!(publish.properties.content_type, m.properties.content_type);
    let expiry = publish.properties.message_expiry_interval.unwrap();
    assert!((58..=60).contains(&expiry), "{expiry}");
    // The same topics again: sent with aliases (and an empty topic), resolved by mosquitto.
    for round in 0..3 {
        for t in ["props/a", "props/b"] {
            publisher
                .publish(message(t, QoS::AtLeastOnce, format!("{t} {round}")))
                .await
                .unwrap();
            let (publish, _) = next_message(&mut events).await;
            assert_eq!(publish.topic.as_str(), t);
            assert_eq!(&publish.payload[..], format!("{t} {round}").as_bytes());
        }
    }
    // Expiry: a retained message with a 1 s expiry is gone 2 s later.
    let mut short = message("props/short", QoS::AtLeastOnce, "soon gone").retained();
    short.properties.message_expiry_interval = Some(1);
    publisher.publish(short).await.unwrap();
    let _ = next_message(&mut events).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (late, mut late_events) = connect_tcp(broker.addr, options(v5, "p-late", false))
        .await
        .unwrap();
    late.subscribe(SubscribeRequest::new(
        filter("props/short"),
        QoS::AtLeastOnce,
    ))
    .await
    .unwrap();
    no_message(&mut late_events, Duration::from_millis(300)).await;
    publisher.disconnect().await.unwrap();
    sub.disconnect().await.unwrap();
    late.disconnect().await.unwrap();
}

/// Receive Maximum: mosquitto announces its own (`max_inflight_messages`) and our pipelined
/// QoS 1/2 publishes stay within it ([MQTT-3.3.4-7] in 5.0): mosquitto answers a publish
/// beyond its quota with 0x97 Quota exceeded, so every publish succeeding shows we never
/// exceeded it. (The other direction is not checked here: mosquitto 2.0 itself exceeds a
/// client's Receive Maximum, which our session rightly answers with DISCONNECT 0x93.)
#[tokio::test]
#[ignore = "needs mosquitto (run by .ci/run)"]
async fn receive_maximum_respected() {
    let broker = Mosquitto::start("max_inflight_messages 3").await;
    let v5 = ProtocolVersion::V5;
    let (sub, mut events) = subscriber(&broker, v5, "rm-sub", "rm/#", QoS::ExactlyOnce).await;
    let (publisher, mut pub_events) = connect_tcp(broker.addr, options(v5, "rm-pub", false))
        .await
        .unwrap();
    match pub_events.recv().await {
        Some(Event::Connected(connack)) => {
            assert_eq!(connack.properties.receive_maximum.map(|r| r.get()), Some(3))
        }
        other => panic!("{other:?}"),
    }
    let mut receipts = Vec::new();
    for n in 0..40 {
        let qos = if n % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        receipts.push(
            publisher
                .begin_publish(message("rm/x", qos, format!("{n}")))
                .await
                .unwrap(),
        );
    }
    for receipt in receipts {
        assert!(receipt.await.unwrap().is_success());
    }
    // Order is kept per QoS level only ([MQTT-4.6.0-6]): compare as a set.
    let mut seen = Vec::new();
    for _ in 0..40 {
        let (publish, _) = next_message(&mut events).await;
        seen.push(
            String::from_utf8(publish.payload.to_vec())
                .unwrap()
                .parse::<u32>()
                .unwrap(),
        );
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..40).collect::<Vec<_>>());
    assert!(!publisher.is_closed() && !sub.is_closed());
    publisher.disconnect().await.unwrap();
    sub.disconnect().await.unwrap();
}

/// A deep window of QoS 1 and 2 publishes (acknowledgements read in batches,
/// `ClientOptions::batch_acks`, on by default): 2,000 pipelined publishes in 3.1.1 and 5.0,
/// each acknowledged with Success ([MQTT-4.3.2-1], [MQTT-4.3.3-1]), and each received once, in
/// order per QoS ([MQTT-4.6.0-6]) by a subscriber at QoS 2.
#[tokio::test]
#[ignore = "needs mosquitto (run by .ci/run)"]
async fn deep_window_acknowledged_in_batches() {
    const N: u32 = 2_000;
    let broker = Mosquitto::start("max_inflight_messages 0\nmax_queued_messages 10000").await;
    for version in VERSIONS {
        let (sub, mut events) =
            subscriber(&broker, version, "deep-sub", "deep/#", QoS::ExactlyOnce).await;
        let mut publisher_options = options(version, "deep-pub", false);
        publisher_options.session.max_inflight = 256;
        assert!(publisher_options.batch_acks, "on by default");
        let (publisher, _e) = connect_tcp(broker.addr, publisher_options).await.unwrap();
        let mut receipts = std::collections::VecDeque::new();
        for n in 0..N {
            let qos = if n % 2 == 0 {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            };
            let topic = format!("deep/{}", n % 2);
            receipts.push_back(
                publisher
                    .begin_publish(message(&topic, qos, format!("{n}")))
                    .await
                    .unwrap(),
            );
            if receipts.len() >= 256 {
                let outcome = receipts.pop_front().unwrap().await.unwrap();
                assert!(outcome.is_success(), "{version:?} {outcome:?}");
            }
        }
        for receipt in receipts {
            let outcome = receipt.await.unwrap();
            assert!(outcome.is_success(), "{version:?} {outcome:?}");
        }
        let mut last: [Option<u32>; 2] = [None, None];
        for _ in 0..N {
            let (publish, _) = next_message(&mut events).await;
            let n: u32 = std::str::from_utf8(&publish.payload)
                .unwrap()
                .parse()
                .unwrap();
            let level = (n % 2) as usize;
            assert!(
                last[level].is_none_or(|before| before < n),
                "{version:?}: {n} after {last:?}"
            );
            last[level] = Some(n);
        }
        assert_eq!(last, [Some(N - 2), Some(N - 1)], "{version:?}");
        publisher.disconnect().await.unwrap();
        sub.disconnect().await.unwrap();
    }
}
