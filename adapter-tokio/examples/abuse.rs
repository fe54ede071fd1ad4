//! `abuse`: hostile and overloading clients against an MQTT broker on this machine, with the
//! broker's resident memory and a canary's latency measured meanwhile (the figures of
//! BENCHMARKS.md's "Abuse" section, for our broker and mosquitto alike).
//!
//! ```text
//! cargo run --release -p mqtt-streaming-tokio --features cli --bin mqtt-broker -- -p 1884 &
//! cargo run --release -p mqtt-streaming-tokio --example abuse -- -p 1884 --pid $!
//! ```
//!
//! Loopback only: the host is always 127.0.0.1.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[path = "common/abuse.rs"]
mod abuse;

/// Run hostile and overloading clients against a broker on 127.0.0.1.
#[derive(Parser, Debug)]
#[command(name = "abuse")]
struct Args {
    /// The broker's port on 127.0.0.1.
    #[arg(short = 'p', long = "port")]
    port: u16,
    /// The broker's process id (its resident memory is sampled).
    #[arg(long = "pid")]
    pid: u32,
    /// The test suite's smaller sizes instead of the full ones.
    #[arg(long = "quick")]
    quick: bool,
    /// Seconds each timed phase lasts (storm, overloads).
    #[arg(long = "phase")]
    phase: Option<u64>,
    /// Run only these scenarios: deep-topics, empty-levels, retained-pin, subscribe-storm,
    /// fan-in-qos1, slow-reader, non-reader, churn, garbage.
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let target = abuse::Target {
        addr: SocketAddr::from(([127, 0, 0, 1], args.port)),
        pid: args.pid,
    };
    let mut sizes = if args.quick {
        abuse::Sizes::quick()
    } else {
        abuse::Sizes::full()
    };
    if let Some(secs) = args.phase {
        sizes.phase = Duration::from_secs(secs);
    }
    let wanted = |name: &str| args.scenarios.is_empty() || args.scenarios.iter().any(|s| s == name);
    let mut all_up = true;
    macro_rules! run {
        ($name:literal, $scenario:expr) => {
            if wanted($name) {
                let report = $scenario.await;
                println!("{report}");
                all_up &= report.broker_up;
                if !report.broker_up {
                    eprintln!("the broker is down after {}", $name);
                    return ExitCode::FAILURE;
                }
            }
        };
    }
    run!("deep-topics", abuse::deep_topics(target, &sizes));
    run!("empty-levels", abuse::empty_levels(target, &sizes));
    run!("retained-pin", abuse::retained_pinning(target, &sizes));
    run!("subscribe-storm", abuse::subscribe_storm(target, &sizes));
    run!(
        "fan-in-qos1",
        abuse::fan_in(target, &sizes, abuse::Reader::Fast)
    );
    run!(
        "slow-reader",
        abuse::fan_in(target, &sizes, abuse::Reader::Slow)
    );
    run!(
        "non-reader",
        abuse::fan_in(target, &sizes, abuse::Reader::Never)
    );
    run!("churn", abuse::churn(target, &sizes));
    run!("garbage", abuse::garbage(target, &sizes));
    if all_up {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
