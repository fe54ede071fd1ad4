//! The bare broker for measuring from outside (`mqtt-bench --idle N --broker-pid PID`),
//! written once for smol and async-std (`broker-smol`, `broker-async-std`): its command line,
//! its serve loop and its allocator.
//!
//! The including example names the adapter (`use mqtt_streaming_smol as adapter;`) and runs
//! [`serve`] with its runtime's `block_on`.

use std::process::ExitCode;
use std::time::Duration;

use mqtt_streaming_session::broker::BrokerConfig;

use crate::adapter::{BrokerOptions, BrokerServer};

/// jemalloc, as `mqtt-broker`: it gives freed pages back to the system (glibc's allocator
/// keeps the holes that parked connections' tasks leave), so the process's memory shows what
/// the broker holds.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The address to bind (127.0.0.1:1883 unless given) and the broker's options:
/// `--park-idle-after MS` sets `BrokerOptions::park_idle_after` (0: never park; the default:
/// one second).
pub(crate) fn parse_args() -> Result<(String, BrokerOptions), String> {
    let mut addr = String::from("127.0.0.1:1883");
    let mut options = BrokerOptions::from(BrokerConfig::default());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--park-idle-after" {
            let Some(ms) = args.next().and_then(|ms| ms.parse::<u64>().ok()) else {
                return Err("--park-idle-after takes milliseconds".to_owned());
            };
            options.park_idle_after = (ms > 0).then(|| Duration::from_millis(ms));
        } else {
            addr = arg;
        }
    }
    Ok((addr, options))
}

/// Binds `addr`, prints the process id and the address bound (prefixed with `name`), and
/// serves until the process is killed.
pub(crate) async fn serve(name: &str, addr: String, options: BrokerOptions) -> ExitCode {
    let broker = match BrokerServer::bind(addr.as_str(), options).await {
        Ok(broker) => broker,
        Err(error) => {
            eprintln!("error: cannot bind {addr}: {error}");
            return ExitCode::FAILURE;
        }
    };
    match broker.local_addr() {
        Ok(local) => println!("{name}: pid {} on {local}", std::process::id()),
        Err(error) => eprintln!("{name}: pid {} ({error})", std::process::id()),
    }
    match broker.serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
