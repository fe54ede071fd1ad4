//! The mosquitto interop subset, written once and run unchanged under every runtime:
//! our client against a mosquitto of our own, and mosquitto_pub / mosquitto_sub against our
//! broker. `#[ignore]`d: `.ci/run` installs mosquitto and runs them with `-- --ignored`.
//!
//! Waiting for a mosquitto process blocks the test's own thread only: our broker and client
//! drivers run on the runtime's other threads.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use mqtt_streaming_proto::{ProtocolVersion, QoS, ReasonCode};
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_session::SubscribeRequest;

use super::{filter, message, next_message, options, timeout, PATIENCE};
use crate::adapter::{connect_tcp, BrokerHandle, BrokerServer};
use crate::rt;

#[path = "../interop_support/mosquitto.rs"]
mod mosquitto;

use mosquitto::Mosquitto;

const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V3_1_1, ProtocolVersion::V5];

/// Our client against mosquitto, MQTT 3.1.1 and 5.0: QoS 0, 1 and 2 out (each publish
/// resolves with mosquitto's Success) and back in through our subscription (in order, at each
/// QoS, once), then a retained message reaching a later subscriber of ours with RETAIN set.
#[test]
#[ignore = "needs mosquitto (run by .ci/run)"]
fn mosquitto_our_client_qos_and_retained() {
    rt::block_on(async {
        let mosquitto = Mosquitto::start("").await;
        for (i, version) in VERSIONS.into_iter().enumerate() {
            let (client, mut events) =
                connect_tcp(mosquitto.addr, options(version, &format!("c{i}")))
                    .await
                    .unwrap();
            let suback = client
                .subscribe(SubscribeRequest::new(
                    filter(&format!("x{i}/#")),
                    QoS::ExactlyOnce,
                ))
                .await
                .unwrap();
            assert_eq!(suback.reason_codes, [ReasonCode::GrantedQoS2]);
            let levels = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
            for (n, qos) in levels.into_iter().enumerate() {
                let outcome = client
                    .publish(message(&format!("x{i}/{n}"), qos, n))
                    .await
                    .unwrap();
                assert_eq!(outcome.reason_code, ReasonCode::Success, "{version:?}");
            }
            for (n, qos) in levels.into_iter().enumerate() {
                let (publish, _) = next_message(&mut events).await;
                assert_eq!(publish.topic.as_str(), format!("x{i}/{n}"), "{version:?}");
                assert_eq!(publish.qos_pid.qos(), qos);
                assert_eq!(&publish.payload[..], n.to_string().as_bytes());
            }
            assert!(
                timeout(Duration::from_millis(200), next_message(&mut events))
                    .await
                    .is_none(),
                "each message once"
            );

            let retained_topic = format!("kept{i}");
            client
                .publish(message(&retained_topic, QoS::AtLeastOnce, "kept").retained())
                .await
                .unwrap();
            let (late, mut late_events) =
                connect_tcp(mosquitto.addr, options(version, &format!("late{i}")))
                    .await
                    .unwrap();
            late.subscribe(SubscribeRequest::new(
                filter(&retained_topic),
                QoS::AtLeastOnce,
            ))
            .await
            .unwrap();
            let (publish, _) = next_message(&mut late_events).await;
            assert!(publish.retain, "{version:?}");
            assert_eq!(&publish.payload[..], b"kept");
            late.disconnect().await.unwrap();
            client.disconnect().await.unwrap();
        }
    });
}

fn mosquitto_tool(tool: &str, port: u16, version: &str, args: &[&str]) -> Command {
    let mut command = Command::new(tool);
    command
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn publish(port: u16, version: &str, args: &[&str]) {
    let out = mosquitto_tool("mosquitto_pub", port, version, args)
        .output()
        .expect("mosquitto_pub is installed (.ci/run installs it)");
    assert!(out.status.success(), "mosquitto_pub {args:?}: {out:?}");
}

/// Waits until the broker holds `n` subscriptions.
async fn subscriptions(broker: &BrokerHandle, n: usize) {
    let waited = timeout(PATIENCE, async {
        while broker.stats().await.unwrap().subscriptions < n {
            rt::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_some(), "mosquitto_sub did not subscribe in time");
}

/// mosquitto_sub and mosquitto_pub through our broker on this runtime, MQTT 3.1.1 and 5.0:
/// QoS 0, 1 and 2 in order (wildcard subscription), and a retained message given to a later
/// mosquitto_sub; the broker's counters agree.
#[test]
#[ignore = "needs mosquitto-clients (run by .ci/run)"]
fn mosquitto_clients_against_our_broker() {
    rt::block_on(async {
        let server = BrokerServer::bind("127.0.0.1:0", BrokerConfig::default())
            .await
            .unwrap();
        let port = server.local_addr().unwrap().port();
        let broker = server.spawn();
        for (i, version) in ["311", "5"].into_iter().enumerate() {
            let sub = mosquitto_tool(
                "mosquitto_sub",
                port,
                version,
                &[
                    "-t",
                    &format!("m{i}/+"),
                    "-q",
                    "2",
                    "-v",
                    "-C",
                    "3",
                    "-W",
                    "10",
                ],
            )
            .spawn()
            .expect("mosquitto_sub is installed (.ci/run installs it)");
            subscriptions(&broker, 1).await;
            for qos in ["0", "1", "2"] {
                publish(
                    port,
                    version,
                    &["-t", &format!("m{i}/q{qos}"), "-q", qos, "-m", qos],
                );
            }
            let out: Output = sub.wait_with_output().unwrap();
            assert!(out.status.success(), "{out:?}");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("m{i}/q0 0\nm{i}/q1 1\nm{i}/q2 2\n")
            );

            let retained = format!("r{i}");
            publish(
                port,
                version,
                &["-t", &retained, "-r", "-q", "1", "-m", "kept"],
            );
            let out = mosquitto_tool(
                "mosquitto_sub",
                port,
                version,
                &["-t", &retained, "-v", "-C", "1", "-W", "5"],
            )
            .output()
            .unwrap();
            assert!(out.status.success(), "{out:?}");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("{retained} kept\n")
            );
            // Both mosquitto_sub processes have gone.
            let gone = timeout(PATIENCE, async {
                while broker.stats().await.unwrap().subscriptions > 0 {
                    rt::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
            assert!(gone.is_some(), "mosquitto_sub's subscriptions outlived it");
        }
        let stats = broker.stats().await.unwrap();
        assert_eq!(stats.retained, 2);
        assert_eq!(stats.messages_in, 8);
        broker.shutdown().await;
    });
}
