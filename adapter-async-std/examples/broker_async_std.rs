//! A bare embedded broker on async-std, for measuring it from outside (`mqtt-bench --idle N
//! --broker-pid PID`): mqtt-streaming-smol's `broker-smol` (the same command line, output and
//! jemalloc allocator; its code is shared through `#[path]`) with async-std's `block_on`,
//! listener and tasks.
//!
//! ```text
//! cargo run --release -p mqtt-streaming-async-std --example broker-async-std -- 127.0.0.1:1883
//! cargo run --release -p mqtt-streaming-async-std --example broker-async-std -- --park-idle-after 0
//! ```

use std::process::ExitCode;

use mqtt_streaming_async_std as adapter;

#[path = "../../adapter-smol/examples/common/broker.rs"]
mod broker;

fn main() -> ExitCode {
    match broker::parse_args() {
        Ok((addr, options)) => {
            async_std::task::block_on(broker::serve("broker-async-std", addr, options))
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
