//! The abuse suite (issue: broker hardening): hostile and overloading clients against our
//! broker over loopback, bounded in time and count. The scenarios are the `abuse` program's
//! (`examples/common/abuse.rs`); here they run against an in-process broker, with the
//! process's resident memory standing for the broker's (the clients' own memory is a few MiB).
//!
//! Checked for every scenario: the broker still answers a fresh client; its memory stays under
//! the bound stated per scenario; the canary's QoS 1 round trips all complete and stay under a
//! generous liveness bound (2 s: a broker stalled by one client's work takes seconds, a working
//! one milliseconds; this is not a speed measurement); no QoS 1 message the broker
//! acknowledged to a publisher is lost.

#[path = "../examples/common/abuse.rs"]
mod abuse;

use std::time::Duration;

use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_tokio::BrokerServer;

const MIB: u64 = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuse_suite_broker_stays_up_bounded_and_lossless() {
    let broker = BrokerServer::bind("127.0.0.1:0", BrokerConfig::default())
        .await
        .unwrap();
    let addr = broker.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    let handle = broker.spawn();
    let target = abuse::Target {
        addr,
        pid: std::process::id(),
    };
    let sizes = abuse::Sizes::quick();
    let mut failures = Vec::new();
    // A filter of 14,600 levels and one of 32,768 (today's stack overflow): refused by the
    // level limit, no recursion, nothing kept.
    check(
        &mut failures,
        &abuse::deep_topics(target, &sizes).await,
        16 * MIB,
    );
    // 20 filters of 60,000 empty levels (1.2 MB sent): refused by the level limit (before:
    // ~100 bytes held per level, 110 MiB).
    check(
        &mut failures,
        &abuse::empty_levels(target, &sizes).await,
        16 * MIB,
    );
    // 5,000 retained 10-byte messages, each read together with a 16 KB PUBLISH: each holds
    // its own bytes, not the read chunk (before: ~25 KB each, 123 MiB).
    let report = abuse::retained_pinning(target, &sizes).await;
    check(&mut failures, &report, 64 * MIB);
    // A SUBSCRIBE storm over 20,000 retained messages: the canary keeps its latency.
    check(
        &mut failures,
        &abuse::subscribe_storm(target, &sizes).await,
        64 * MIB,
    );
    // QoS 1 fan-in, 8 publishers flat out to one subscriber that reads fast, slowly, or not
    // at all (for less than the stalled-subscriber timeout): nothing acknowledged is lost, the
    // subscriber is not disconnected, memory stays bounded.
    for reader in [
        abuse::Reader::Fast,
        abuse::Reader::Slow,
        abuse::Reader::Never,
    ] {
        let report = abuse::fan_in(target, &sizes, reader).await;
        if report.details.contains("subscriber disconnected: true") {
            failures.push(format!("{}: {}", report.name, report.details));
        }
        check(&mut failures, &report, 128 * MIB);
    }
    // Connection churn gives its memory back: 3 rounds of 1,000 connect-and-close.
    check(&mut failures, &abuse::churn(target, &sizes).await, 32 * MIB);
    // Garbage from 100 connections: each closed, the broker up.
    check(
        &mut failures,
        &abuse::garbage(target, &sizes).await,
        16 * MIB,
    );
    handle.shutdown().await;
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Checks one scenario's report against its memory bound and the suite's other bounds.
fn check(failures: &mut Vec<String>, report: &abuse::Report, max_growth_kib: u64) {
    println!("{report}");
    let (before, peak, _) = report.rss_kib;
    if !report.broker_up {
        failures.push(format!("{}: the broker is down", report.name));
    }
    if peak.saturating_sub(before) > max_growth_kib {
        failures.push(format!(
            "{}: memory grew by {} KiB (bound {max_growth_kib} KiB)",
            report.name,
            peak.saturating_sub(before)
        ));
    }
    if report.canary.missing > 0 || report.canary.p99 > Duration::from_secs(2) {
        failures.push(format!("{}: {}", report.name, report.canary));
    }
    if report.acked_lost.is_some_and(|lost| lost > 0) {
        failures.push(format!("{}: {}", report.name, report.details));
    }
}
