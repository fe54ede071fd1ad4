//! `mqtt-sub`: subscribe and print messages, with the flags, output and exit codes of
//! `mosquitto_sub` for the flags listed in `--help`. Like mosquitto_sub, it reconnects by
//! itself when the connection is lost (every second), subscribing again when the broker lost
//! the session; a broker that refuses the reconnection ends it.
//!
//! ```text
//! cargo run -p mqtt-streaming-tokio --features cli --bin mqtt-sub -- -h localhost -t 'sensors/#' -v -C 10
//! ```

mod common;

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Parser;
use common::{qos_digit, ConnArgs, Failure};
use mqtt_streaming_proto::{Publish, QoS, SubscriptionOptions, TopicFilter};
use mqtt_streaming_session::{Message, SubscribeRequest, UnsubscribeRequest};
use mqtt_streaming_tokio::{Client, Error, Event, ReconnectPolicy};

/// Subscribe to topics and print the messages (mosquitto_sub's flags, for those listed here).
#[derive(Parser, Debug)]
#[command(
    name = "mqtt-sub",
    version,
    disable_help_flag = true,
    disable_version_flag = true
)]
struct Args {
    #[command(flatten)]
    conn: ConnArgs,
    /// Topic filter to subscribe to (repeat for several; an mqtt(s):// -L URL's path is one
    /// more).
    #[arg(short = 't', long = "topic", required_unless_present_any = ["unsubscribe", "url"])]
    topics: Vec<String>,
    /// Topic filter whose messages are not printed (repeat for several).
    #[arg(short = 'T', long = "filter-out")]
    filter_out: Vec<String>,
    /// Topic filter to unsubscribe from after subscribing (repeat for several); useful with -c
    /// to remove a persistent session's subscription.
    #[arg(short = 'U', long = "unsubscribe")]
    unsubscribe: Vec<String>,
    /// Exit after this many messages (QoS 2 exchanges are finished first).
    #[arg(short = 'C', long = "count")]
    count: Option<u64>,
    /// Exit once the subscriptions are acknowledged.
    #[arg(short = 'E')]
    exit_after_subscribe: bool,
    /// Print "topic payload" instead of "payload".
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Output format: %t topic, %p payload, %q QoS, %r retain flag, %l payload length, %m
    /// message id, %x / %X payload in hex, %U Unix time (seconds.nanoseconds), %I ISO-8601
    /// time (UTC), %C content type, %D correlation data, %E message expiry interval, %F
    /// payload format indicator, %R response topic, %S subscription identifiers, %P user
    /// properties, %% a percent sign; \n \t \r \0 \a \e \v \\ escapes. Overrides -v.
    #[arg(short = 'F', long = "format")]
    format: Option<String>,
    /// Stop after this many seconds (exit code 27).
    #[arg(short = 'W')]
    timeout: Option<u64>,
    /// Do not print retained ("stale") messages.
    #[arg(short = 'R')]
    no_retained: bool,
    /// Only print retained messages; exit at the first message that is not retained.
    #[arg(long = "retained-only")]
    retained_only: bool,
    /// Clear each retained message received (publish an empty retained message to its
    /// topic); -T keeps a topic from being cleared.
    #[arg(long = "remove-retained")]
    remove_retained: bool,
    /// Do not print a newline after each message.
    #[arg(short = 'N')]
    no_newline: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.exit(args.conn.quiet),
    }
}

/// One piece of a `-F` format.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Field(char),
}

fn parse_format(format: &str) -> Result<Vec<Piece>, Failure> {
    let mut pieces = Vec::new();
    let mut text = Vec::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => {
                let Some(f) = chars.next() else {
                    return Err(Failure::new("Error: Incomplete format specifier."));
                };
                if f == '%' {
                    text.push(b'%');
                    continue;
                }
                if !"tpqrlmxXUICDEFRSP".contains(f) {
                    return Err(Failure::new(format!(
                        "Error: Invalid or unsupported format specifier '%{f}'."
                    )));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Field(f));
            }
            '\\' => {
                let byte = match chars.next() {
                    Some('\\') => b'\\',
                    Some('0') => 0,
                    Some('a') => 7,
                    Some('e') => 27,
                    Some('n') => b'\n',
                    Some('r') => b'\r',
                    Some('t') => b'\t',
                    Some('v') => 11,
                    other => {
                        return Err(Failure::new(format!(
                            "Error: Invalid escape specifier '\\{}'.",
                            other.map(String::from).unwrap_or_default()
                        )))
                    }
                };
                text.push(byte);
            }
            c => {
                let mut buf = [0u8; 4];
                text.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// Days since 1970-01-01 to a (year, month, day) civil date (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn write_formatted(pieces: &[Piece], p: &Publish, id: Option<u16>, out: &mut Vec<u8>) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.extend_from_slice(t),
            Piece::Field(f) => {
                let props = &p.properties;
                let text = match f {
                    't' => p.topic.as_str().to_owned(),
                    'p' => {
                        out.extend_from_slice(&p.payload);
                        continue;
                    }
                    'q' => qos_digit(p.qos_pid.qos()).to_string(),
                    'r' => u8::from(p.retain).to_string(),
                    'l' => p.payload.len().to_string(),
                    'm' => id.unwrap_or(0).to_string(),
                    'x' => p.payload.iter().map(|b| format!("{b:02x}")).collect(),
                    'X' => p.payload.iter().map(|b| format!("{b:02X}")).collect(),
                    'U' => format!("{}.{:09}", now.as_secs(), now.subsec_nanos()),
                    'I' => {
                        let secs = now.as_secs() as i64;
                        let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
                        let s = secs.rem_euclid(86_400);
                        format!(
                            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}+0000",
                            s / 3600,
                            s / 60 % 60,
                            s % 60
                        )
                    }
                    'C' => props
                        .content_type
                        .as_ref()
                        .map(|c| c.as_str().to_owned())
                        .unwrap_or_default(),
                    'D' => {
                        if let Some(d) = &props.correlation_data {
                            out.extend_from_slice(d);
                        }
                        continue;
                    }
                    'E' => props
                        .message_expiry_interval
                        .map(|e| e.to_string())
                        .unwrap_or_default(),
                    'F' => props
                        .payload_format
                        .map(|f| (f as u8).to_string())
                        .unwrap_or_default(),
                    'R' => props
                        .response_topic
                        .as_ref()
                        .map(|t| t.as_str().to_owned())
                        .unwrap_or_default(),
                    'S' => props
                        .subscription_identifiers
                        .iter()
                        .map(|s| s.get().to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    'P' => props
                        .user_properties
                        .iter()
                        .map(|u| format!("{}:{}", u.name.as_str(), u.value.as_str()))
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => String::new(),
                };
                out.extend_from_slice(text.as_bytes());
            }
        }
    }
}

/// Whether `topic` matches `filter` (MQTT's matching, section 4.7).
fn matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A round trip to the broker: an UNSUBSCRIBE of a filter never subscribed. The broker
/// answers in order, so every PUBREL it sent before the UNSUBACK has been answered (PUBCOMP)
/// once it arrives: `-C` finishes the QoS 2 exchanges before DISCONNECT.
async fn round_trip(client: &Client) {
    if let Ok(filter) = TopicFilter::new(&format!("$mqtt-sub/flush/{}", std::process::id())) {
        let _ = client.unsubscribe(UnsubscribeRequest::new(filter)).await;
    }
}

async fn run(args: &Args) -> Result<(), Failure> {
    let format = args.format.as_deref().map(parse_format).transpose()?;
    let properties = args.conn.properties()?;
    let filter_out = args.filter_out.clone();
    let mut request: Option<SubscribeRequest> = None;
    let mut topics = args.topics.clone();
    topics.extend(args.conn.url_topic()?);
    if topics.is_empty() && args.unsubscribe.is_empty() {
        return Err(Failure::new(
            "Error: Invalid URL for -L argument specified - topic missing.",
        ));
    }
    for topic in &topics {
        let filter = TopicFilter::new(topic).map_err(|e| {
            Failure::new(format!("Error: Invalid subscription topic '{topic}': {e}"))
        })?;
        let options = SubscriptionOptions::new(args.conn.qos);
        request = Some(match request {
            None => SubscribeRequest::new(filter, args.conn.qos),
            Some(r) => r.and(filter, options),
        });
    }
    if let Some(request) = &mut request {
        properties.apply_subscribe(&mut request.properties)?;
    }
    let mut unsubscribe: Option<UnsubscribeRequest> = None;
    for topic in &args.unsubscribe {
        let filter = TopicFilter::new(topic).map_err(|e| {
            Failure::new(format!("Error: Invalid unsubscribe topic '{topic}': {e}"))
        })?;
        unsubscribe = Some(match unsubscribe {
            None => UnsubscribeRequest::new(filter),
            Some(mut r) => {
                r.filters.push(filter);
                r
            }
        });
    }
    if let Some(u) = &mut unsubscribe {
        properties.apply_unsubscribe(&mut u.properties)?;
    }
    let disconnect = properties.disconnect()?;
    let options = args.conn.options("mqtt-sub", &properties)?;
    // mosquitto_sub's reconnect: a second between attempts, forever.
    let policy = ReconnectPolicy {
        min_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(1),
        jitter: 0.0,
        ..ReconnectPolicy::default()
    };
    let (client, mut events, label) = args.conn.connect_with(options, Some(policy)).await?;
    let finish = |client: Client| {
        let disconnect = disconnect.clone();
        let label = label.clone();
        async move {
            args.conn.debug(&label, "sending DISCONNECT");
            client
                .disconnect_with(disconnect)
                .await
                .map_err(|e| Failure::new(format!("Error: {e}")))
        }
    };
    if let Some(request) = request {
        for topic in &topics {
            args.conn.debug(
                &label,
                &format!(
                    "sending SUBSCRIBE (Topic: {topic}, QoS: {})",
                    qos_digit(args.conn.qos)
                ),
            );
        }
        let suback = match client.subscribe(request).await {
            Ok(suback) => suback,
            Err(e) => {
                // Refused locally (for example a feature the broker said it lacks): the
                // broker is still told we are leaving.
                let _ = finish(client).await;
                return Err(Failure::new(format!("Error: {e}")));
            }
        };
        args.conn.debug(&label, "received SUBACK");
        if suback.reason_codes.iter().all(|c| c.is_error()) {
            let _ = finish(client).await;
            return Err(Failure::new("All subscription requests were denied."));
        }
        if suback.reason_codes.iter().any(|c| c.is_error()) && !args.conn.quiet {
            eprintln!("Warning: Some subscription requests were denied.");
        }
    }
    if let Some(u) = unsubscribe {
        args.conn.debug(&label, "sending UNSUBSCRIBE");
        if let Err(e) = client.unsubscribe(u).await {
            let _ = finish(client).await;
            return Err(Failure::new(format!("Error: {e}")));
        }
        args.conn.debug(&label, "received UNSUBACK");
    }
    if args.exit_after_subscribe || topics.is_empty() {
        return finish(client).await;
    }
    let deadline = args
        .timeout
        .map(|secs| tokio::time::Instant::now() + Duration::from_secs(secs));
    let mut received = 0u64;
    let mut qos2_pending = false;
    let stdout = std::io::stdout();
    let mut line = Vec::new();
    loop {
        if args.count.is_some_and(|n| received >= n) {
            break;
        }
        let event = match deadline {
            Some(at) => match tokio::time::timeout_at(at, events.recv()).await {
                Ok(event) => event,
                Err(_) => {
                    let _ = finish(client).await;
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
                let qos = publish.qos_pid.qos();
                args.conn.debug(
                    &label,
                    &format!(
                        "received PUBLISH (d{}, q{}, r{}, '{}', ... ({} bytes))",
                        u8::from(publish.dup),
                        qos_digit(qos),
                        u8::from(publish.retain),
                        publish.topic.as_str(),
                        publish.payload.len()
                    ),
                );
                qos2_pending |= qos == QoS::ExactlyOnce;
                if args.retained_only && !publish.retain {
                    break;
                }
                let filtered = filter_out
                    .iter()
                    .any(|f| matches(f, publish.topic.as_str()));
                if args.remove_retained && publish.retain && !filtered {
                    let mut clear = Message::new(publish.topic.clone(), QoS::AtLeastOnce, "");
                    clear.retain = true;
                    let _ = client.publish(clear).await;
                }
                if filtered || (args.no_retained && publish.retain) {
                    continue;
                }
                received += 1;
                line.clear();
                if let Some(pieces) = &format {
                    let id = publish.qos_pid.packet_id().map(|id| id.get());
                    write_formatted(pieces, &publish, id, &mut line);
                } else {
                    if args.verbose {
                        line.extend_from_slice(publish.topic.as_str().as_bytes());
                        line.push(b' ');
                        if publish.payload.is_empty() {
                            line.extend_from_slice(b"(null)");
                        }
                    }
                    line.extend_from_slice(&publish.payload);
                }
                if !args.no_newline {
                    line.push(b'\n');
                }
                let mut out = stdout.lock();
                if out.write_all(&line).and_then(|()| out.flush()).is_err() {
                    // The reader went away (a closed pipe): stop quietly, as a filter does.
                    break;
                }
            }
            Some(Event::Closed {
                reason, resumable, ..
            }) => {
                if !resumable {
                    return Err(Failure::new(format!("Error: connection lost: {reason}")));
                }
                args.conn
                    .debug(&label, &format!("connection lost ({reason}), reconnecting"));
            }
            Some(Event::Connecting { .. }) => args.conn.debug(&label, "sending CONNECT"),
            Some(Event::Connected(connack)) => args.conn.debug(
                &label,
                &format!("received CONNACK ({})", connack.reason_code.as_u8()),
            ),
            Some(Event::ConnectFailed {
                error: Error::ConnectionRefused(code),
                ..
            }) => {
                return Err(Failure::new(format!(
                    "Connection error: Connection Refused: {}",
                    code.description()
                )));
            }
            Some(_) => {}
            None => return Err(Failure::new("Error: connection lost")),
        }
    }
    if qos2_pending {
        round_trip(&client).await;
    }
    finish(client).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let pieces = parse_format("%t|%p|%q|%r|%l|%x|%%\\t").unwrap();
        let p = Publish::new(
            mqtt_streaming_proto::TopicName::new("a/b").unwrap(),
            mqtt_streaming_proto::QosPid::AtMostOnce,
            "hi",
        );
        let mut out = Vec::new();
        write_formatted(&pieces, &p, None, &mut out);
        assert_eq!(out, b"a/b|hi|0|0|2|6869|%\t");
        assert!(parse_format("%j").is_err());
        assert!(parse_format("\\q").is_err());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn filter_matching() {
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("a/+/c", "a/b/c"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("#", "$SYS/x"));
    }
}
