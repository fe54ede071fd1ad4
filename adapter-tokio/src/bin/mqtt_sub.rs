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
use std::time::Duration;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, FixedOffset, Local};

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
    /// message id, %x / %X payload in hex, %C content type, %D correlation data, %E message
    /// expiry interval, %F payload format indicator, %R response topic, %S subscription
    /// identifiers, %P user properties, %j the message as JSON (payload as a string), %J
    /// the same with the payload as JSON, %I ISO-8601 local time, %U Unix time
    /// (seconds.nanoseconds), %% a percent sign; @X the local time as strftime's %X (e.g.
    /// @Y-@m-@dT@H:@M:@S@z; time-zone names print as offsets), @N nanoseconds, @@ an at
    /// sign; \n \t \r \0 \a \e \v \\ escapes. Field widths and flags (%10t, %-5l,
    /// %.2x), %A, %d and %f are not supported. Overrides -v.
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
#[derive(Debug)]
enum Piece {
    /// Bytes printed as they are.
    Text(Vec<u8>),
    /// A `%` field of the message (or `%I`, `%U`: the time it was received).
    Field(char),
    /// `%j` (`escaped`: the payload as a JSON string) or `%J` (the payload as JSON).
    Json { escaped: bool },
    /// `@X`: strftime's `%X` of the local time the message was received.
    Time(Vec<Item<'static>>),
    /// `@N`: the nanoseconds of the current second, 9 digits.
    Nanos,
}

/// The `%` fields known (besides `%%`, `%j`, `%J`).
const FIELDS: &str = "tpqrlmxXUICDEFRSP";

fn parse_format(format: &str) -> Result<Vec<Piece>, Failure> {
    let mut pieces = Vec::new();
    let mut text = Vec::new();
    let mut chars = format.chars();
    // Every piece but text ends the text before it.
    let push = |pieces: &mut Vec<Piece>, text: &mut Vec<u8>, piece: Piece| {
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(text)));
        }
        pieces.push(piece);
    };
    while let Some(c) = chars.next() {
        match c {
            '%' => {
                let Some(f) = chars.next() else {
                    return Err(Failure::new("Error: Incomplete format specifier."));
                };
                match f {
                    '%' => text.push(b'%'),
                    'j' | 'J' => push(&mut pieces, &mut text, Piece::Json { escaped: f == 'j' }),
                    f if FIELDS.contains(f) => push(&mut pieces, &mut text, Piece::Field(f)),
                    f => {
                        return Err(Failure::new(format!(
                            "Error: Invalid or unsupported format specifier '%{f}'."
                        )))
                    }
                }
            }
            // As mosquitto_sub: `@X` is strftime's `%X`, `@N` the nanoseconds, `@@` an `@`.
            // Codes chrono does not know are refused here (mosquitto_sub prints them as they
            // are).
            '@' => match chars.next() {
                None => return Err(Failure::new("Error: Incomplete format specifier.")),
                Some('@') => text.push(b'@'),
                Some('N') => push(&mut pieces, &mut text, Piece::Nanos),
                Some(t) => {
                    let spec = format!("%{t}");
                    let items = StrftimeItems::new(&spec).parse_to_owned().map_err(|_| {
                        Failure::new(format!(
                            "Error: Invalid or unsupported time format specifier '@{t}'."
                        ))
                    })?;
                    push(&mut pieces, &mut text, Piece::Time(items));
                }
            },
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

/// `text` as a JSON string, quoted and escaped.
fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// `json` without the whitespace between its tokens (none inside strings is touched): one
/// line, as mosquitto_sub prints `%J`. A linear scan; `json` is valid JSON.
fn minify_json(json: &[u8], out: &mut Vec<u8>) {
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
}

/// mosquitto_sub's `%j` / `%J` object: `tst` (the local time received, microseconds and
/// UTC offset), `topic`, `qos`, `retain` (0 or 1), `payloadlen`, `mid` (QoS 1 and 2), the
/// MQTT 5 `properties` when the message has any, and `payload`: a JSON string (`%j`; not
/// UTF-8 bytes are replaced) or the payload itself as JSON (`%J`; an error when it is not
/// JSON), `null` when empty.
fn write_json(
    p: &Publish,
    id: Option<u16>,
    now: &DateTime<FixedOffset>,
    escaped: bool,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let payload_json = !escaped && !p.payload.is_empty();
    if payload_json && serde_json::from_slice::<serde_json::Value>(&p.payload).is_err() {
        return Err(format!(
            "Error: Message payload is not valid JSON on topic {}",
            p.topic.as_str()
        ));
    }
    let qos = qos_digit(p.qos_pid.qos());
    let mut json = format!(
        "{{\"tst\":\"{}\",\"topic\":{},\"qos\":{qos},\"retain\":{},\"payloadlen\":{}",
        now.format("%Y-%m-%dT%H:%M:%S%.6f%z"),
        json_string(p.topic.as_str()),
        u8::from(p.retain),
        p.payload.len(),
    );
    if qos > 0 {
        json.push_str(&format!(",\"mid\":{}", id.unwrap_or(0)));
    }
    let props = &p.properties;
    let mut fields: Vec<String> = Vec::new();
    if let Some(f) = props.payload_format {
        fields.push(format!("\"payload-format-indicator\":{}", f as u8));
    }
    if let Some(e) = props.message_expiry_interval {
        fields.push(format!("\"message-expiry-interval\":{e}"));
    }
    if let Some(c) = &props.content_type {
        fields.push(format!("\"content-type\":{}", json_string(c.as_str())));
    }
    if let Some(r) = &props.response_topic {
        fields.push(format!("\"response-topic\":{}", json_string(r.as_str())));
    }
    if let Some(d) = &props.correlation_data {
        let d = String::from_utf8_lossy(d);
        fields.push(format!("\"correlation-data\":{}", json_string(&d)));
    }
    for s in &props.subscription_identifiers {
        fields.push(format!("\"subscription-identifier\":{}", s.get()));
    }
    if !props.user_properties.is_empty() {
        let pairs: Vec<String> = props
            .user_properties
            .iter()
            .map(|u| {
                format!(
                    "{{{}:{}}}",
                    json_string(u.name.as_str()),
                    json_string(u.value.as_str())
                )
            })
            .collect();
        fields.push(format!("\"user-properties\":[{}]", pairs.join(",")));
    }
    if !fields.is_empty() {
        json.push_str(&format!(",\"properties\":{{{}}}", fields.join(",")));
    }
    json.push_str(",\"payload\":");
    out.extend_from_slice(json.as_bytes());
    if p.payload.is_empty() {
        out.extend_from_slice(b"null");
    } else if escaped {
        let text = String::from_utf8_lossy(&p.payload);
        out.extend_from_slice(json_string(&text).as_bytes());
    } else {
        minify_json(&p.payload, out);
    }
    out.push(b'}');
    Ok(())
}

/// Writes the message `p` (packet id `id`) received at `now` as `pieces` say. What could not
/// be written (a `%J` payload that is not JSON) is returned, for stderr; the rest of the
/// line is written all the same, as mosquitto_sub does.
fn write_formatted(
    pieces: &[Piece],
    p: &Publish,
    id: Option<u16>,
    now: &DateTime<FixedOffset>,
    out: &mut Vec<u8>,
) -> Vec<String> {
    let mut errors = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.extend_from_slice(t),
            Piece::Time(items) => {
                out.extend_from_slice(now.format_with_items(items.iter()).to_string().as_bytes())
            }
            Piece::Nanos => {
                out.extend_from_slice(format!("{:09}", now.timestamp_subsec_nanos()).as_bytes())
            }
            Piece::Json { escaped } => {
                if let Err(e) = write_json(p, id, now, *escaped, out) {
                    errors.push(e);
                }
            }
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
                    'U' => format!("{}.{:09}", now.timestamp(), now.timestamp_subsec_nanos()),
                    'I' => now.format("%Y-%m-%dT%H:%M:%S%z").to_string(),
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
    errors
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
                    let now = Local::now().fixed_offset();
                    for error in write_formatted(pieces, &publish, id, &now, &mut line) {
                        eprintln!("{error}");
                    }
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

    /// 2020-05-06T22:12:00.123456789 at UTC+01:00: the fixed time of the format tests.
    fn fixed_time() -> DateTime<FixedOffset> {
        let offset = FixedOffset::east_opt(3600).unwrap();
        DateTime::from_timestamp(1_588_799_520, 123_456_789)
            .unwrap()
            .with_timezone(&offset)
    }

    fn publish(topic: &str, qos: QoS, payload: &'static [u8]) -> Publish {
        let qos_pid = match qos {
            QoS::AtMostOnce => mqtt_streaming_proto::QosPid::AtMostOnce,
            _ => mqtt_streaming_proto::QosPid::AtLeastOnce(
                mqtt_streaming_proto::PacketId::new(7).unwrap(),
            ),
        };
        Publish::new(
            mqtt_streaming_proto::TopicName::new(topic).unwrap(),
            qos_pid,
            bytes::Bytes::from_static(payload),
        )
    }

    fn format(format: &str, p: &Publish) -> (String, Vec<String>) {
        let pieces = parse_format(format).unwrap();
        let mut out = Vec::new();
        let id = p.qos_pid.packet_id().map(|id| id.get());
        let errors = write_formatted(&pieces, p, id, &fixed_time(), &mut out);
        (String::from_utf8(out).unwrap(), errors)
    }

    #[test]
    fn formats() {
        let p = publish("a/b", QoS::AtMostOnce, b"hi");
        assert_eq!(
            format("%t|%p|%q|%r|%l|%x|%%\\t", &p).0,
            "a/b|hi|0|0|2|6869|%\t"
        );
        assert!(parse_format("%A").is_err());
        assert!(parse_format("\\q").is_err());
        assert!(parse_format("%").is_err());
    }

    /// mosquitto_sub's `@` codes are strftime's `%` codes of the local time (here a fixed
    /// time at UTC+01:00), `@N` the nanoseconds, `@@` an `@`; `%I` and `%U` are its ISO 8601
    /// and Unix time helpers.
    #[test]
    fn time_codes() {
        let p = publish("a/b", QoS::AtMostOnce, b"hi");
        assert_eq!(
            format("@Y-@m-@dT@H:@M:@S@z : %t", &p).0,
            "2020-05-06T22:12:00+0100 : a/b"
        );
        assert_eq!(format("@s.@N", &p).0, "1588799520.123456789");
        assert_eq!(format("@@Y is @Y", &p).0, "@Y is 2020");
        assert!(parse_format("@Y@").is_err());
        assert_eq!(
            format("@j @a @b @e|@F|@T", &p).0,
            "127 Wed May  6|2020-05-06|22:12:00"
        );
        assert_eq!(format("%I", &p).0, "2020-05-06T22:12:00+0100");
        assert_eq!(format("@Z", &p).0, "+01:00");
        assert_eq!(format("%U", &p).0, "1588799520.123456789");
        assert!(parse_format("@Q").is_err());
        assert!(parse_format("@-").is_err());
    }

    /// `%j` and `%J`: mosquitto_sub's JSON object (the man page's example), the payload as a
    /// string or as JSON (made one line), `mid` for QoS 1 and 2, `null` for no payload; a
    /// `%J` payload that is not JSON is an error for stderr and the rest is still written.
    #[test]
    fn json_formats() {
        let p = publish("greeting", QoS::AtMostOnce, b"hello \"world\"\n");
        assert_eq!(
            format("%j", &p).0,
            r#"{"tst":"2020-05-06T22:12:00.123456+0100","topic":"greeting","qos":0,"retain":0,"payloadlen":14,"payload":"hello \"world\"\n"}"#
        );
        let mut p = publish(
            "foo",
            QoS::AtLeastOnce,
            b"{ \"temperature\": 27.0,\n \"text\": \"a b\" }",
        );
        p.retain = true;
        assert_eq!(
            format("%J", &p).0,
            r#"{"tst":"2020-05-06T22:12:00.123456+0100","topic":"foo","qos":1,"retain":1,"payloadlen":39,"mid":7,"payload":{"temperature":27.0,"text":"a b"}}"#
        );
        let (out, errors) = format("[%J]", &publish("t", QoS::AtMostOnce, b"not json"));
        assert_eq!(out, "[]");
        assert_eq!(
            errors,
            ["Error: Message payload is not valid JSON on topic t"]
        );
        let out = format("%J", &publish("t", QoS::AtMostOnce, b"")).0;
        assert!(out.ends_with(r#""payloadlen":0,"payload":null}"#), "{out}");
        let mut p = publish("t", QoS::AtMostOnce, b"1");
        p.properties.content_type = Some(mqtt_streaming_proto::MqttString::new("x/y").unwrap());
        p.properties
            .user_properties
            .push(mqtt_streaming_proto::UserProperty {
                name: mqtt_streaming_proto::MqttString::new("k").unwrap(),
                value: mqtt_streaming_proto::MqttString::new("v").unwrap(),
            });
        let out = format("%J", &p).0;
        assert!(
            out.ends_with(
                r#""properties":{"content-type":"x/y","user-properties":[{"k":"v"}]},"payload":1}"#
            ),
            "{out}"
        );
    }

    #[test]
    fn filter_matching() {
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("a/+/c", "a/b/c"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("#", "$SYS/x"));
    }
}
