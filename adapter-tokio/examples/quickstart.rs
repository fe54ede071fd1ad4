//! The quickstart: an embedded broker on 127.0.0.1 (an ephemeral port), one client that
//! subscribes and publishes at QoS 0, 1 and 2, every event printed as a line. The same code
//! (`common/quickstart.rs`) runs the smol and async-std quickstarts.
//!
//! ```text
//! cargo run -p mqtt-streaming-tokio --example quickstart
//! cargo run -p mqtt-streaming-tokio --example quickstart -- --broker 127.0.0.1:1883
//! ```

use std::process::ExitCode;
use std::time::Duration;

use mqtt_streaming_tokio as adapter;

#[path = "common/quickstart.rs"]
mod quickstart;

async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let result = match quickstart::parse_args() {
        Ok(args) => quickstart::run(args).await,
        Err(message) => Err(message),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
