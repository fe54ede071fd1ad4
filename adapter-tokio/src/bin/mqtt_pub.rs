//! `mqtt-pub`: publish one message (or the same one `--repeat` times), with the flags of
//! `mosquitto_pub` for the common subset.
//!
//! ```text
//! cargo run -p mqtt-streaming-tokio --features cli --bin mqtt-pub -- -h localhost -t sensors/1 -m 21.5 -q 1
//! ```

mod common;

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use common::{qos_digit, ConnArgs, Failure};
use mqtt_streaming_proto::TopicName;
use mqtt_streaming_session::Message;

/// Publish a message (flag-compatible with mosquitto_pub).
#[derive(Parser, Debug)]
#[command(name = "mqtt-pub", disable_help_flag = true)]
#[command(group(clap::ArgGroup::new("payload").multiple(false)))]
struct Args {
    #[command(flatten)]
    conn: ConnArgs,
    /// Topic to publish to.
    #[arg(short = 't', long = "topic", required = true)]
    topic: String,
    /// The message payload.
    #[arg(short = 'm', long = "message", group = "payload")]
    message: Option<String>,
    /// Send the contents of a file as the message.
    #[arg(short = 'f', long = "file", group = "payload")]
    file: Option<std::path::PathBuf>,
    /// Send all of stdin as the message.
    #[arg(short = 's', long = "stdin-file", group = "payload")]
    stdin: bool,
    /// Send a null (zero length) message.
    #[arg(short = 'n', long = "null-message", group = "payload")]
    null: bool,
    /// Retain the message.
    #[arg(short = 'r', long = "retain")]
    retain: bool,
    /// Publish the message this many times.
    #[arg(long = "repeat", default_value_t = 1)]
    repeat: u32,
    /// Seconds to wait between repeats (fractions allowed).
    #[arg(long = "repeat-delay", default_value_t = 0.0)]
    repeat_delay: f64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.exit(),
    }
}

fn payload(args: &Args) -> Result<Bytes, Failure> {
    if let Some(m) = &args.message {
        return Ok(Bytes::from(m.clone().into_bytes()));
    }
    if let Some(path) = &args.file {
        return std::fs::read(path)
            .map(Bytes::from)
            .map_err(|e| Failure::new(format!("Error: unable to read {}: {e}", path.display())));
    }
    if args.stdin {
        let mut all = Vec::new();
        std::io::stdin()
            .read_to_end(&mut all)
            .map_err(|e| Failure::new(format!("Error: reading stdin: {e}")))?;
        return Ok(Bytes::from(all));
    }
    if args.null {
        return Ok(Bytes::new());
    }
    Err(Failure::new(
        "Error: Both topic and message must be supplied (-m, -f, -s or -n).",
    ))
}

async fn run(args: &Args) -> Result<(), Failure> {
    let topic = TopicName::new(&args.topic).map_err(|e| {
        Failure::new(format!(
            "Error: Invalid publish topic '{}': {e}",
            args.topic
        ))
    })?;
    let payload = payload(args)?;
    let options = args.conn.options("mqtt-pub", false)?;
    let (client, _events, label) = args.conn.connect(options).await?;
    let mut failed = false;
    for n in 0..args.repeat.max(1) {
        if n > 0 && args.repeat_delay > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(args.repeat_delay)).await;
        }
        let mut message = Message::new(topic.clone(), args.conn.qos, payload.clone());
        message.retain = args.retain;
        args.conn.debug(
            &label,
            &format!(
                "sending PUBLISH (d0, q{}, r{}, '{}', ... ({} bytes))",
                qos_digit(args.conn.qos),
                u8::from(args.retain),
                args.topic,
                payload.len()
            ),
        );
        let outcome = client
            .publish(message)
            .await
            .map_err(|e| Failure::new(format!("Error: {e}")))?;
        if !outcome.is_success() {
            eprintln!(
                "Warning: Publish {} failed: {}.",
                n + 1,
                outcome.reason_code.description()
            );
            failed = true;
        } else if args.conn.qos as u8 > 0 {
            let ack = if args.conn.qos as u8 == 1 {
                "PUBACK"
            } else {
                "PUBCOMP"
            };
            args.conn.debug(&label, &format!("received {ack}"));
        }
    }
    args.conn.debug(&label, "sending DISCONNECT");
    client
        .disconnect()
        .await
        .map_err(|e| Failure::new(format!("Error: {e}")))?;
    if failed {
        return Err(Failure::new("Error: some publishes were refused"));
    }
    Ok(())
}
