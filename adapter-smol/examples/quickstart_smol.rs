//! The quickstart on smol: an embedded broker on 127.0.0.1 (an ephemeral port), one client
//! that subscribes and publishes at QoS 0, 1 and 2, every event printed as a line (the lines
//! of mqtt-streaming-tokio's quickstart). The code is mqtt-streaming-tokio's quickstart, shared with async-std's through `#[path]`.
//!
//! ```text
//! cargo run -p mqtt-streaming-smol --example quickstart-smol
//! cargo run -p mqtt-streaming-smol --example quickstart-smol -- --broker 127.0.0.1:1883
//! ```

use std::process::ExitCode;
use std::time::Duration;

use mqtt_streaming_smol as adapter;

#[path = "../../adapter-tokio/examples/common/quickstart.rs"]
mod quickstart;

async fn sleep(duration: Duration) {
    smol::Timer::after(duration).await;
}

fn main() -> ExitCode {
    match quickstart::parse_args().and_then(|args| smol::block_on(quickstart::run(args))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
