//! One smol client publishing flat out at QoS 1 to a broker, for measuring the client from
//! outside and from within: its CPU per acknowledged message (`/proc/self/stat`, Linux), with
//! its acknowledgements read in batches (`ClientOptions::batch_acks`, the default) or each as
//! it comes (`--no-batch-acks`). Prints one line: messages acknowledged, per second, and CPU
//! µs per message over the publishing (connecting and disconnecting left out); run it under
//! `perf stat` to count its system calls.
//!
//! ```text
//! cargo run --release -p mqtt-streaming-smol --example publish-flat-out-smol -- \
//!     127.0.0.1:1883 --seconds 5 --window 64 --size 64 [--no-batch-acks]
//! ```

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mqtt_streaming_smol::mqtt_streaming_proto::{
    Connect, MqttString, ProtocolVersion, QoS, TopicName,
};
use mqtt_streaming_smol::mqtt_streaming_session::Message;
use mqtt_streaming_smol::{connect_tcp, ClientOptions};

/// What to run, from the command line.
struct Plan {
    addr: String,
    seconds: u64,
    window: u16,
    size: usize,
    batch_acks: bool,
}

fn parse() -> Result<Plan, String> {
    let mut plan = Plan {
        addr: "127.0.0.1:1883".to_owned(),
        seconds: 5,
        window: 64,
        size: 64,
        batch_acks: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            args.next()
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| format!("{name} takes a number"))
        };
        match arg.as_str() {
            "--seconds" => plan.seconds = number("--seconds")?,
            "--window" => {
                plan.window = u16::try_from(number("--window")?)
                    .map_err(|_| "--window is at most 65535".to_owned())?
            }
            "--size" => plan.size = number("--size")? as usize,
            "--no-batch-acks" => plan.batch_acks = false,
            _ if !arg.starts_with('-') => plan.addr = arg,
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    Ok(plan)
}

/// CPU seconds (user + system) of this process, every thread's, from `/proc/self/stat`
/// (clock ticks of 1/100 s, Linux's USER_HZ); `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces: count fields after its closing paren.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime), counted from 1; the slice starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

async fn run(plan: Plan) -> Result<(), Box<dyn std::error::Error>> {
    let mut connect = Connect::new(ProtocolVersion::V5, MqttString::new("flat-out-smol")?);
    connect.keep_alive = 30;
    let mut options = ClientOptions::new(connect);
    options.session.max_inflight = plan.window;
    options.batch_acks = plan.batch_acks;
    let (client, _events) = connect_tcp(plan.addr.as_str(), options).await?;
    let topic = TopicName::new("bench/flat-out")?;
    let payload = bytes_of(plan.size);

    // Receipts of the publishes handed over and not yet acknowledged: the window and the
    // session's queue behind it stay full.
    let outstanding_limit = usize::from(plan.window) * 2;
    let mut receipts = VecDeque::with_capacity(outstanding_limit + 1);
    let mut acknowledged = 0u64;
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let until = started + Duration::from_secs(plan.seconds);
    while Instant::now() < until {
        let message = Message::new(topic.clone(), QoS::AtLeastOnce, payload.clone());
        receipts.push_back(client.begin_publish(message).await?);
        while receipts.len() > outstanding_limit {
            let receipt = receipts.pop_front().expect("not empty");
            receipt.await?;
            acknowledged += 1;
        }
    }
    for receipt in receipts {
        receipt.await?;
        acknowledged += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    client.disconnect().await?;

    let cpu_per_message = cpu.map_or_else(
        || "n/a".to_owned(),
        |cpu| format!("{:.2}", cpu * 1e6 / acknowledged as f64),
    );
    println!(
        "batch_acks={} acknowledged={acknowledged} per_second={:.0} cpu_us_per_message={cpu_per_message}",
        plan.batch_acks,
        acknowledged as f64 / elapsed,
    );
    Ok(())
}

/// A payload of `size` bytes, shared by every message (cloning it copies nothing).
fn bytes_of(size: usize) -> bytes::Bytes {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

fn main() -> ExitCode {
    let plan = match parse() {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    match smol::block_on(run(plan)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
