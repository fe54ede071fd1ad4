//! `mqtt-pub`: publish a message (or each line of stdin, or the same message `--repeat`
//! times), with the flags, output and exit codes of `mosquitto_pub` for the flags listed in
//! `--help`.
//!
//! ```text
//! cargo run -p mqtt-streaming-tokio --features cli --bin mqtt-pub -- -h localhost -t sensors/1 -m 21.5 -q 1
//! ```

mod common;

use std::io::{BufRead, Read};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use common::{qos_digit, ConnArgs, Failure, Properties};
use mqtt_streaming_proto::TopicName;
use mqtt_streaming_session::Message;
use mqtt_streaming_tokio::Client;

/// Publish a message (mosquitto_pub's flags, for those listed here).
#[derive(Parser, Debug)]
#[command(
    name = "mqtt-pub",
    version,
    disable_help_flag = true,
    disable_version_flag = true
)]
#[command(group(clap::ArgGroup::new("payload").multiple(false)))]
struct Args {
    #[command(flatten)]
    conn: ConnArgs,
    /// Topic to publish to (or the path of an mqtt(s):// -L URL).
    #[arg(short = 't', long = "topic", required_unless_present = "url")]
    topic: Option<String>,
    /// The message payload.
    #[arg(short = 'm', long = "message", group = "payload")]
    message: Option<String>,
    /// Send the contents of a file as the message.
    #[arg(short = 'f', long = "file", group = "payload")]
    file: Option<std::path::PathBuf>,
    /// Send all of stdin as the message.
    #[arg(short = 's', long = "stdin-file", group = "payload")]
    stdin: bool,
    /// Send each line of stdin as a message (without its line end); an empty line is an
    /// empty message.
    #[arg(short = 'l', long = "stdin-line", group = "payload")]
    lines: bool,
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
        Err(failure) => failure.exit(args.conn.quiet),
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
        "Error: Both topic and message must be supplied (-m, -f, -s, -l or -n).",
    ))
}

struct Publisher<'a> {
    args: &'a Args,
    client: &'a Client,
    label: &'a str,
    topic: TopicName,
    topic_text: &'a str,
    properties: &'a Properties,
    sent: u32,
    failed: bool,
}

impl Publisher<'_> {
    /// Publishes one message and waits for its acknowledgement (QoS 2: PUBCOMP). A refusal by
    /// the broker is a warning; a refusal by the client itself is an error.
    async fn send(&mut self, payload: Bytes) -> Result<(), Failure> {
        let qos = self.args.conn.qos;
        let mut message = Message::new(self.topic.clone(), qos, payload.clone());
        message.retain = self.args.retain;
        self.properties.apply_publish(&mut message.properties)?;
        self.sent += 1;
        self.args.conn.debug(
            self.label,
            &format!(
                "sending PUBLISH (d0, q{}, r{}, '{}', ... ({} bytes))",
                qos_digit(qos),
                u8::from(self.args.retain),
                self.topic_text,
                payload.len()
            ),
        );
        let outcome = self
            .client
            .publish(message)
            .await
            .map_err(|e| Failure::new(format!("Error: {e}")))?;
        if !outcome.is_success() {
            if !self.args.conn.quiet {
                eprintln!(
                    "Warning: Publish {} failed: {}.",
                    self.sent,
                    outcome.reason_code.description()
                );
            }
            self.failed = true;
        } else if qos as u8 > 0 {
            let ack = if qos as u8 == 1 { "PUBACK" } else { "PUBCOMP" };
            self.args.conn.debug(self.label, &format!("received {ack}"));
        }
        Ok(())
    }
}

async fn run(args: &Args) -> Result<(), Failure> {
    let topic_text = match (&args.topic, args.conn.url_topic()?) {
        (Some(topic), _) => topic.clone(),
        (None, Some(topic)) => topic,
        (None, None) => {
            return Err(Failure::new(
                "Error: Invalid URL for -L argument specified - topic missing.",
            ))
        }
    };
    let topic = TopicName::new(&topic_text)
        .map_err(|e| Failure::new(format!("Error: Invalid publish topic '{topic_text}': {e}")))?;
    let payload = if args.lines {
        Bytes::new()
    } else {
        payload(args)?
    };
    let properties = args.conn.properties()?;
    let disconnect = properties.disconnect()?;
    // Checked before connecting: a bad -D publish property is a usage error.
    properties.apply_publish(&mut Default::default())?;
    let options = args.conn.options("mqtt-pub", &properties)?;
    let (client, _events, label) = args.conn.connect(options).await?;
    let mut publisher = Publisher {
        args,
        client: &client,
        label: &label,
        topic,
        topic_text: &topic_text,
        properties: &properties,
        sent: 0,
        failed: false,
    };
    let result = if args.lines {
        let mut result = Ok(());
        for line in std::io::stdin().lock().split(b'\n') {
            let mut line = match line {
                Ok(line) => line,
                Err(e) => {
                    result = Err(Failure::new(format!("Error: reading stdin: {e}")));
                    break;
                }
            };
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            result = publisher.send(Bytes::from(line)).await;
            if result.is_err() {
                break;
            }
        }
        result
    } else {
        let mut result = Ok(());
        for n in 0..args.repeat.max(1) {
            if n > 0 && args.repeat_delay > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(args.repeat_delay)).await;
            }
            result = publisher.send(payload.clone()).await;
            if result.is_err() {
                break;
            }
        }
        result
    };
    let failed = publisher.failed;
    // DISCONNECT in every case, a local refusal included: the broker learns we left on
    // purpose (no will, no keep-alive wait).
    args.conn.debug(&label, "sending DISCONNECT");
    let disconnected = client
        .disconnect_with(disconnect)
        .await
        .map_err(|e| Failure::new(format!("Error: {e}")));
    result?;
    disconnected?;
    if failed {
        return Err(Failure::new("Error: some publishes were refused"));
    }
    Ok(())
}
