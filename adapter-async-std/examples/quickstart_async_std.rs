//! The quickstart on async-std: an embedded broker on 127.0.0.1 (an ephemeral port), one
//! client that subscribes and publishes at QoS 0, 1 and 2, every event printed as a line (the
//! lines of mqtt-streaming-tokio's quickstart). The code is mqtt-streaming-tokio's quickstart, shared through `#[path]`.
//!
//! ```text
//! cargo run -p mqtt-streaming-async-std --example quickstart-async-std
//! cargo run -p mqtt-streaming-async-std --example quickstart-async-std -- --broker 127.0.0.1:1883
//! ```

use std::process::ExitCode;
use std::time::Duration;

use mqtt_streaming_async_std as adapter;

#[path = "../../adapter-tokio/examples/common/quickstart.rs"]
mod quickstart;

async fn sleep(duration: Duration) {
    async_std::task::sleep(duration).await;
}

fn main() -> ExitCode {
    let result =
        quickstart::parse_args().and_then(|args| async_std::task::block_on(quickstart::run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
