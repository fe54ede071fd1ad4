//! A bare embedded broker on smol, for measuring it from outside (`mqtt-bench --idle N
//! --broker-pid PID`): binds the address given (127.0.0.1:1883 by default), prints its
//! process id and address, and serves until it is killed. `--park-idle-after MS` sets
//! `BrokerOptions::park_idle_after` (0: never park; the default: one second). Its allocator is
//! jemalloc (Unix), as `mqtt-broker`'s. The code is shared with async-std's `broker-async-std`
//! through `#[path]` (`examples/common/broker.rs`).
//!
//! ```text
//! cargo run --release -p mqtt-streaming-smol --example broker-smol -- 127.0.0.1:1883
//! ```

use std::process::ExitCode;

use mqtt_streaming_smol as adapter;

#[path = "common/broker.rs"]
mod broker;

fn main() -> ExitCode {
    match broker::parse_args() {
        Ok((addr, options)) => smol::block_on(broker::serve("broker-smol", addr, options)),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
