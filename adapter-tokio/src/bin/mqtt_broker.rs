//! `mqtt-broker`: an MQTT 3.1.1 and 5.0 broker on the embedded broker core, until SIGINT/SIGTERM.
//!
//! ```text
//! cargo run -p mqtt-streaming-tokio --features cli --bin mqtt-broker -- -p 1883 -v
//! ```

use std::process::ExitCode;

use clap::Parser;
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_tokio::BrokerServer;

/// jemalloc rather than the system's allocator: with glibc's, rounds of 10,000 connections
/// opened and closed left the process holding every page they had touched (RSS 116 -> 319 MiB
/// over six rounds, 2 MiB of it in use); jemalloc returns them (see BENCHMARKS.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Run an MQTT broker (MQTT 3.1, 3.1.1 and 5.0) until SIGINT or SIGTERM, then shut down
/// gracefully.
#[derive(Parser, Debug)]
#[command(name = "mqtt-broker", disable_help_flag = true)]
struct Args {
    /// Port to listen on.
    #[arg(short = 'p', long = "port", default_value_t = 1883)]
    port: u16,
    /// Address to bind to.
    #[arg(long = "bind", default_value = "127.0.0.1")]
    bind: String,
    /// Log connections to stderr.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Print this help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut broker =
        match BrokerServer::bind((args.bind.as_str(), args.port), BrokerConfig::default()).await {
            Ok(broker) => broker,
            Err(e) => {
                eprintln!("error: cannot listen on {}:{}: {e}", args.bind, args.port);
                return ExitCode::FAILURE;
            }
        };
    if args.verbose {
        let mut notices = broker.notices();
        tokio::spawn(async move {
            while let Some(notice) = notices.recv().await {
                eprintln!("{notice}");
            }
        });
    }
    match broker.local_addr() {
        Ok(addr) => eprintln!("listening on {addr}"),
        Err(e) => eprintln!("listening ({e})"),
    }
    let handle = broker.spawn();
    if let Err(e) = shutdown_signal().await {
        eprintln!("error: cannot wait for signals: {e}");
    }
    eprintln!("shutting down");
    handle.shutdown().await;
    eprintln!("stopped");
    ExitCode::SUCCESS
}

#[cfg(unix)]
async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn shutdown_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}
