//! A bare embedded broker on smol, for measuring it from outside (`mqtt-bench --idle N
//! --broker-pid PID`): binds the address given (127.0.0.1:1883 by default), prints its
//! process id and address, and serves until it is killed. `--park-idle-after MS` sets
//! `BrokerOptions::park_idle_after` (0: never park; the default: one second). Its allocator is
//! jemalloc (Unix), as `mqtt-broker`'s.
//!
//! ```text
//! cargo run --release -p mqtt-streaming-smol --example broker-smol -- 127.0.0.1:1883
//! ```

use std::process::ExitCode;
use std::time::Duration;

use mqtt_streaming_smol::mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_smol::{BrokerOptions, BrokerServer};

/// jemalloc, as `mqtt-broker`: it gives freed pages back to the system (glibc's allocator
/// keeps the holes that parked connections' tasks leave), so the process's memory shows what
/// the broker holds.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let mut addr = String::from("127.0.0.1:1883");
    let mut options = BrokerOptions::from(BrokerConfig::default());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--park-idle-after" {
            let Some(ms) = args.next().and_then(|ms| ms.parse::<u64>().ok()) else {
                eprintln!("error: --park-idle-after takes milliseconds");
                return ExitCode::FAILURE;
            };
            options.park_idle_after = (ms > 0).then(|| Duration::from_millis(ms));
        } else {
            addr = arg;
        }
    }
    smol::block_on(async {
        let broker = match BrokerServer::bind(addr.as_str(), options).await {
            Ok(broker) => broker,
            Err(error) => {
                eprintln!("error: cannot bind {addr}: {error}");
                return ExitCode::FAILURE;
            }
        };
        match broker.local_addr() {
            Ok(local) => println!("broker-smol: pid {} on {local}", std::process::id()),
            Err(error) => eprintln!("broker-smol: pid {} ({error})", std::process::id()),
        }
        match broker.serve().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        }
    })
}
