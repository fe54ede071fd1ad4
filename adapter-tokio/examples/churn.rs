//! `churn`: rounds of connect-and-close against an MQTT broker on this machine, printing the
//! broker process's resident memory (Linux: `VmRSS` of `/proc/PID/status`) after each round,
//! and its peak (`VmHWM`) at the end.
//! The measurement behind BENCHMARKS.md, "Connection churn":
//!
//! ```text
//! cargo run --release -p mqtt-streaming-tokio --features cli --bin mqtt-broker -- -p 18830 &
//! cargo run --release -p mqtt-streaming-tokio --example churn -- -p 18830 --pid $!
//! ```
//!
//! Each round opens `-n` TCP connections, sends a CONNECT on each and reads its CONNACK, then
//! closes them: all open at once and then all closed (`--mode all`, the default), or one at a
//! time (`--mode one`). Bounded: `--rounds` x `-n` connections, each read waiting at most 10 s.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::ExitCode;
use std::thread::sleep;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use clap::{Parser, ValueEnum};
use mqtt_streaming_proto::{Connect, Disconnect, MqttString, Packet, ProtocolVersion, ReasonCode};

/// Rounds of connect-and-close against a broker on 127.0.0.1, with its RSS after each round.
#[derive(Parser, Debug)]
#[command(name = "churn")]
struct Args {
    /// The broker's port on 127.0.0.1.
    #[arg(short = 'p', long = "port")]
    port: u16,
    /// The broker's process id, to read its resident memory.
    #[arg(long = "pid")]
    pid: Option<u32>,
    /// Connections per round.
    #[arg(short = 'n', default_value_t = 10_000)]
    connections: usize,
    /// Rounds.
    #[arg(long = "rounds", default_value_t = 6)]
    rounds: usize,
    /// All connections open at once, or one at a time.
    #[arg(long = "mode", value_enum, default_value_t = Mode::All)]
    mode: Mode,
    /// MQTT 5.0 instead of 3.1.1.
    #[arg(long = "v5")]
    v5: bool,
    /// Persistent sessions (Clean Start off; MQTT 5: Session Expiry Interval one hour), the
    /// same client identifiers every round.
    #[arg(long = "persistent")]
    persistent: bool,
    /// Send DISCONNECT before closing (otherwise the TCP connection just closes).
    #[arg(long = "disconnect")]
    disconnect: bool,
    /// Seconds to wait after each round before reading the RSS.
    #[arg(long = "settle", default_value_t = 2.0)]
    settle: f64,
    /// Seconds to wait after the last round before reading the RSS once more.
    #[arg(long = "idle", default_value_t = 0.0)]
    idle: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    All,
    One,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut line = vec![rss(args.pid)];
    println!("before: RSS {}", line[0]);
    for round in 1..=args.rounds {
        let start = Instant::now();
        if let Err(e) = run_round(&args) {
            eprintln!("error in round {round}: {e}");
            return ExitCode::FAILURE;
        }
        let took = start.elapsed();
        sleep(Duration::from_secs_f64(args.settle));
        line.push(rss(args.pid));
        println!(
            "round {round}: {} connections in {:.1} s, RSS {}",
            args.connections,
            took.as_secs_f64(),
            line[round]
        );
    }
    println!("RSS (MiB) per round: {}", line.join(" -> "));
    println!("peak RSS: {}", status_mib(args.pid, "VmHWM:"));
    if args.idle > 0.0 {
        sleep(Duration::from_secs_f64(args.idle));
        println!("after {} s idle: RSS {}", args.idle, rss(args.pid));
    }
    ExitCode::SUCCESS
}

fn run_round(args: &Args) -> std::io::Result<()> {
    match args.mode {
        Mode::One => {
            for i in 0..args.connections {
                let stream = open(args, i)?;
                close(args, stream)?;
            }
        }
        Mode::All => {
            let mut streams = Vec::with_capacity(args.connections);
            for i in 0..args.connections {
                streams.push(open(args, i)?);
            }
            for stream in streams {
                close(args, stream)?;
            }
        }
    }
    Ok(())
}

fn version(args: &Args) -> ProtocolVersion {
    if args.v5 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    }
}

/// Connects client `i` and waits for its CONNACK.
fn open(args: &Args, i: usize) -> std::io::Result<TcpStream> {
    let version = version(args);
    let client_id = MqttString::new(&format!("churn-{i}")).expect("a valid client id");
    let mut connect = Connect::new(version, client_id);
    connect.keep_alive = 60;
    connect.clean_start = !args.persistent;
    if args.persistent && args.v5 {
        connect.properties.session_expiry_interval = Some(3600);
    }
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, args.port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(&encode(Packet::from(connect), version))?;
    // CONNACK: type 0x20, then a one-byte Remaining Length (every CONNACK here is short).
    let mut header = [0u8; 2];
    stream.read_exact(&mut header)?;
    if header[0] != 0x20 || header[1] > 127 {
        return Err(std::io::Error::other(format!(
            "not a CONNACK: {header:02x?}"
        )));
    }
    let mut body = vec![0u8; usize::from(header[1])];
    stream.read_exact(&mut body)?;
    if body.get(1) != Some(&0) {
        return Err(std::io::Error::other(format!("refused: {body:02x?}")));
    }
    Ok(stream)
}

fn close(args: &Args, mut stream: TcpStream) -> std::io::Result<()> {
    if args.disconnect {
        let disconnect = Disconnect::new(ReasonCode::Success);
        stream.write_all(&encode(Packet::from(disconnect), version(args)))?;
    }
    drop(stream);
    Ok(())
}

fn encode(packet: Packet, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    packet.encode(version, &mut buf).expect("encodable");
    buf
}

/// The resident memory of process `pid` in MiB, from `/proc/PID/status` (Linux).
fn rss(pid: Option<u32>) -> String {
    status_mib(pid, "VmRSS:")
}

/// A field of `/proc/PID/status` in MiB.
fn status_mib(pid: Option<u32>, field: &str) -> String {
    let Some(pid) = pid else {
        return "n/a (no --pid)".to_owned();
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or_else(|| "n/a".to_owned(), |kb| format!("{}", kb / 1024))
}
