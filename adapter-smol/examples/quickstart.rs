//! The quickstart on smol: an in-process MQTT server (the server flow, echoing messages) on
//! 127.0.0.1 (an ephemeral port), one client that subscribes and publishes at QoS 0, 1 and 2,
//! every event printed as a line (the client's lines are those of adapter-tokio's quickstart).
//!
//! ```text
//! cargo run -p adapter-smol --example quickstart
//! cargo run -p adapter-smol --example quickstart -- --broker 127.0.0.1:1883
//! ```

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use adapter_smol as adapter;

#[path = "common/echo.rs"]
mod echo;
#[path = "common/quickstart.rs"]
mod quickstart;

async fn sleep(duration: Duration) {
    smol::Timer::after(duration).await;
}

fn spawn<T: Send + 'static>(
    future: impl Future<Output = T> + Send + 'static,
) -> impl Future<Output = T> {
    smol::spawn(future)
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
