//! `mqtt-sub`: subscribe and print messages, with the flags and output of `mosquitto_sub`
//! for the common subset.
//!
//! ```text
//! cargo run -p mqtt-streaming-tokio --features cli --bin mqtt-sub -- -h localhost -t 'sensors/#' -v -C 10
//! ```

mod common;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use common::{qos_digit, ConnArgs, Failure};
use mqtt_streaming_proto::{SubscriptionOptions, TopicFilter};
use mqtt_streaming_session::SubscribeRequest;
use mqtt_streaming_tokio::Event;

/// Subscribe to topics and print the messages (flag-compatible with mosquitto_sub).
#[derive(Parser, Debug)]
#[command(name = "mqtt-sub", disable_help_flag = true)]
struct Args {
    #[command(flatten)]
    conn: ConnArgs,
    /// Topic filter to subscribe to (repeat for several).
    #[arg(short = 't', long = "topic", required = true)]
    topics: Vec<String>,
    /// Exit after this many messages.
    #[arg(short = 'C', long = "count")]
    count: Option<u64>,
    /// Print "topic payload" instead of "payload".
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Persistent session: no clean start, a session that does not expire (needs -i).
    #[arg(short = 'c', long = "disable-clean-session")]
    persistent: bool,
    /// Stop after this many seconds.
    #[arg(short = 'W')]
    timeout: Option<u64>,
    /// Do not print retained ("stale") messages.
    #[arg(short = 'R')]
    no_retained: bool,
    /// Do not print a newline after each payload.
    #[arg(short = 'N')]
    no_newline: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.exit(),
    }
}

async fn run(args: &Args) -> Result<(), Failure> {
    let mut request: Option<SubscribeRequest> = None;
    for topic in &args.topics {
        let filter = TopicFilter::new(topic).map_err(|e| {
            Failure::new(format!("Error: Invalid subscription topic '{topic}': {e}"))
        })?;
        let options = SubscriptionOptions::new(args.conn.qos);
        request = Some(match request {
            None => SubscribeRequest::new(filter, args.conn.qos),
            Some(r) => r.and(filter, options),
        });
    }
    let request = request.ok_or_else(|| Failure::new("Error: no topic given"))?;
    let options = args.conn.options("mqtt-sub", args.persistent)?;
    let (client, mut events, label) = args.conn.connect(options).await?;
    for topic in &args.topics {
        args.conn.debug(
            &label,
            &format!(
                "sending SUBSCRIBE (Topic: {topic}, QoS: {})",
                qos_digit(args.conn.qos)
            ),
        );
    }
    let suback = client
        .subscribe(request)
        .await
        .map_err(|e| Failure::new(format!("Error: {e}")))?;
    args.conn.debug(&label, "received SUBACK");
    if suback.reason_codes.iter().all(|c| c.is_error()) {
        return Err(Failure::new("All subscription requests were denied."));
    }
    let deadline = args
        .timeout
        .map(|secs| tokio::time::Instant::now() + Duration::from_secs(secs));
    let mut received = 0u64;
    let stdout = std::io::stdout();
    loop {
        if args.count.is_some_and(|n| received >= n) {
            break;
        }
        let event = match deadline {
            Some(at) => match tokio::time::timeout_at(at, events.recv()).await {
                Ok(event) => event,
                Err(_) => {
                    let _ = client.disconnect().await;
                    return Err(Failure {
                        message: "Timed out".into(),
                        code: 27,
                    });
                }
            },
            None => events.recv().await,
        };
        match event {
            Some(Event::Message { publish, .. }) => {
                args.conn.debug(
                    &label,
                    &format!(
                        "received PUBLISH (d{}, q{}, r{}, '{}', ... ({} bytes))",
                        u8::from(publish.dup),
                        qos_digit(publish.qos_pid.qos()),
                        u8::from(publish.retain),
                        publish.topic.as_str(),
                        publish.payload.len()
                    ),
                );
                if args.no_retained && publish.retain {
                    continue;
                }
                received += 1;
                let mut out = stdout.lock();
                let written = (|| {
                    if args.verbose {
                        out.write_all(publish.topic.as_str().as_bytes())?;
                        out.write_all(b" ")?;
                        if publish.payload.is_empty() {
                            out.write_all(b"(null)")?;
                        }
                    }
                    out.write_all(&publish.payload)?;
                    if !args.no_newline {
                        out.write_all(b"\n")?;
                    }
                    out.flush()
                })();
                if written.is_err() {
                    // The reader went away (a closed pipe): stop quietly, as a filter does.
                    break;
                }
            }
            Some(Event::Closed { reason, .. }) => {
                return Err(Failure::new(format!("Error: connection lost: {reason}")));
            }
            Some(_) => {}
            None => return Err(Failure::new("Error: connection lost")),
        }
    }
    args.conn.debug(&label, "sending DISCONNECT");
    client
        .disconnect()
        .await
        .map_err(|e| Failure::new(format!("Error: {e}")))
}
