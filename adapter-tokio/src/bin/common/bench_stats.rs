//! What the `bench` program measures, independent of the client library driving the load: the
//! stamp each payload carries, the receiving side's loss / duplicate / latency accounting, the
//! process figures read from `/proc` and small statistics helpers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;

/// Bytes of the stamp at the start of every payload: run id (u32), publisher index (u32),
/// sequence number (u64), send time in ns since the run's base instant (u64), little endian.
pub(crate) const STAMP_LEN: usize = 24;

/// Highest sequence number a subscriber tracks per publisher (the seen-set is a bitmap that
/// grows with it: 2^28 bits = 32 MiB at most per publisher and subscriber). Anything above
/// counts as foreign.
const MAX_TRACKED_SEQ: u64 = 1 << 28;

/// Latencies above this (ns) are recorded as this value.
const MAX_LATENCY_NS: u64 = 600 * 1_000_000_000;

/// A payload of `size` bytes (at least [`STAMP_LEN`]) stamped for `publisher`'s message `seq`,
/// sent now. A fresh allocation per message, for every client library alike.
pub(crate) fn payload(size: usize, run: u32, publisher: u32, seq: u64, base: Instant) -> Bytes {
    let mut buf = BytesMut::zeroed(size.max(STAMP_LEN));
    write_stamp(
        &mut buf[..STAMP_LEN],
        run,
        publisher,
        seq,
        nanos_since(base),
    );
    buf.truncate(size.max(STAMP_LEN));
    buf.freeze()
}

/// Nanoseconds from the run's `base` instant to now: a stamp's send time.
pub(crate) fn nanos_since(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

/// Writes the stamp of `publisher`'s message `seq`, sent `sent_ns` after the run's base
/// instant, into `out` ([`STAMP_LEN`] bytes): what [`payload`] starts with, for a payload
/// encoded in place (`--client raw`).
pub(crate) fn write_stamp(out: &mut [u8], run: u32, publisher: u32, seq: u64, sent_ns: u64) {
    out[..4].copy_from_slice(&run.to_le_bytes());
    out[4..8].copy_from_slice(&publisher.to_le_bytes());
    out[8..16].copy_from_slice(&seq.to_le_bytes());
    out[16..24].copy_from_slice(&sent_ns.to_le_bytes());
}

/// The stamp of a received payload, if it has one.
fn read_stamp(payload: &[u8]) -> Option<(u32, u32, u64, u64)> {
    let stamp = payload.get(..STAMP_LEN)?;
    let u32_at = |i: usize| u32::from_le_bytes(stamp[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(stamp[i..i + 8].try_into().expect("8 bytes"));
    Some((u32_at(0), u32_at(4), u64_at(8), u64_at(16)))
}

/// Counters every task of a run updates, read by the progress line and the drain.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Messages handed to the client library.
    pub(crate) sent: AtomicU64,
    /// Messages whose acknowledgement (QoS 1, 2) or write (QoS 0) came back.
    pub(crate) acked: AtomicU64,
    /// Messages received by subscribers, duplicates included.
    pub(crate) received: AtomicU64,
}

/// One subscriber's account of what it received.
pub(crate) struct Tracker {
    run: u32,
    base: Instant,
    /// Per publisher index: a bitmap of the sequence numbers seen.
    seen: Vec<Vec<u64>>,
    /// Distinct stamped messages of this run.
    pub(crate) unique: u64,
    /// Messages received again.
    pub(crate) duplicates: u64,
    /// Messages without this run's stamp, or from an unknown publisher.
    pub(crate) foreign: u64,
    /// End-to-end latency of first receipts, ns.
    pub(crate) latency: Histogram<u64>,
    /// When the last message arrived.
    pub(crate) last_at: Option<Instant>,
    /// Shared with the drain: this subscriber's unique count.
    pub(crate) progress: Arc<AtomicU64>,
    counters: Arc<Counters>,
    /// Received and not yet added to `counters` (added every [`COUNTER_BATCH`] and at
    /// [`Tracker::flush`], so that subscribers do not share a cache line per message).
    unflushed: u64,
}

/// Messages a [`Tracker`] counts before adding them to the shared counters.
const COUNTER_BATCH: u64 = 256;

impl Tracker {
    /// A tracker for `publishers` publishers of run `run`.
    pub(crate) fn new(run: u32, base: Instant, publishers: usize, counters: Arc<Counters>) -> Self {
        Self {
            run,
            base,
            seen: vec![Vec::new(); publishers],
            unique: 0,
            duplicates: 0,
            foreign: 0,
            latency: new_histogram(),
            last_at: None,
            progress: Arc::new(AtomicU64::new(0)),
            counters,
            unflushed: 0,
        }
    }

    /// Adds what was received to the shared counters (the progress line's).
    pub(crate) fn flush(&mut self) {
        self.counters
            .received
            .fetch_add(self.unflushed, Ordering::Relaxed);
        self.unflushed = 0;
    }

    /// Accounts for one payload received at `now` (the raw generator reads the clock once
    /// per read: every payload of one read arrived together).
    pub(crate) fn on_payload_at(&mut self, payload: &[u8], now: Instant) {
        self.unflushed += 1;
        if self.unflushed >= COUNTER_BATCH {
            self.flush();
        }
        let Some((run, publisher, seq, sent_ns)) = read_stamp(payload) else {
            self.foreign += 1;
            return;
        };
        let Some(bitmap) = self.seen.get_mut(publisher as usize) else {
            self.foreign += 1;
            return;
        };
        if run != self.run || seq >= MAX_TRACKED_SEQ {
            self.foreign += 1;
            return;
        }
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if bitmap.len() <= word {
            bitmap.resize(word + 1, 0);
        }
        if bitmap[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return;
        }
        bitmap[word] |= 1 << bit;
        self.unique += 1;
        self.progress.store(self.unique, Ordering::Relaxed);
        self.last_at = Some(now);
        let now_ns = now.saturating_duration_since(self.base).as_nanos() as u64;
        self.latency
            .saturating_record(now_ns.saturating_sub(sent_ns).max(1));
    }
}

/// An empty latency histogram: 1 ns to 10 minutes, 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid histogram bounds")
}

/// Whether `topic` matches the MQTT topic filter `filter` (`+` and `#` wildcards).
pub(crate) fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        if level == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(t) if level == "+" || level == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// CPU seconds (user + system) of process `pid` (`None`: this process), from
/// `/proc/PID/stat` (clock ticks of 1/100 s, Linux's USER_HZ).
pub(crate) fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may contain spaces: count fields after its closing paren.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime), counted from 1; `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Resident memory of process `pid` (`None`: this process), in bytes, from `/proc/PID/status`.
pub(crate) fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` gives them.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The machine, for reports: CPUs available and the CPU model.
pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cpus} CPUs, {model}")
}

/// Median, minimum and maximum of `values` (`None` when empty).
pub(crate) fn spread(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((median, v[0], v[n - 1]))
}

/// `d` in seconds.
pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
