//! `mqtt-broker`'s tokio workers give their jemalloc thread cache back before they sleep.
//!
//! jemalloc keeps, per thread, a cache of freed and pre-fetched objects of each size class
//! (up to 200 small ones, and a refill takes a batch). It trims a cache only as its thread
//! allocates, so a worker that falls asleep after a burst (a thousand connections opening,
//! then going idle and parking) keeps its cache for as long as it sleeps, and the slabs the
//! cached objects sit in stay resident: about 0.55 MB for the two workers of the broker
//! measured with 1,000 idle connections, half a kilobyte per connection (BENCHMARKS.md,
//! "Thread caches returned when workers sleep, session 8").
//!
//! A worker about to park therefore flushes its cache, unless it flushed less than
//! [`AT_MOST_EVERY`] ago: a loaded broker's workers park thousands of times a second, and
//! flushing at each of them cost up to a third of the throughput of the pairs rows (the
//! cache then refills after every wake-up). A sleeping worker keeps at most what it cached in
//! its last 10 ms of work.
//!
//! `unsafe`: `mallctl` is jemalloc's C interface and no safe crate offers the flush.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The least time between two flushes of one worker's cache.
pub(crate) const AT_MOST_EVERY: Duration = Duration::from_millis(10);

/// For `tokio::runtime::Builder::on_thread_park`: flushes the calling worker's thread cache
/// if it has not done so in the last [`AT_MOST_EVERY`].
pub(crate) fn on_worker_park() {
    thread_local!(static LAST_FLUSH: Cell<Option<Instant>> = const { Cell::new(None) });
    let now = Instant::now();
    if LAST_FLUSH.with(|last| {
        let due = flush_due(last.get(), now);
        if due {
            last.set(Some(now));
        }
        due
    }) {
        flush_thread_cache();
    }
}

/// Whether a worker that last flushed at `last` (`None`: never) flushes at `now`.
fn flush_due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|at| now.saturating_duration_since(at) >= AT_MOST_EVERY)
}

/// Returns the calling thread's cached objects to their arenas (`thread.tcache.flush`).
/// Does nothing where the cache is off (`MALLOC_CONF=tcache:false`): jemalloc then answers
/// `EFAULT`, which is ignored.
#[cfg(not(target_env = "msvc"))]
fn flush_thread_cache() {
    // SAFETY: `thread.tcache.flush` neither reads nor writes a value: every pointer is null
    // and the length 0, as its contract requires; the name is a NUL-terminated literal.
    let _ = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"thread.tcache.flush".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
}

/// The system's allocator on MSVC: nothing to flush.
#[cfg(target_env = "msvc")]
fn flush_thread_cache() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_flushes_at_its_first_park_then_at_most_every_10_ms() {
        let t0 = Instant::now();
        assert!(flush_due(None, t0));
        assert!(!flush_due(Some(t0), t0));
        assert!(!flush_due(Some(t0), t0 + Duration::from_millis(9)));
        assert!(flush_due(Some(t0), t0 + AT_MOST_EVERY));
        assert!(flush_due(Some(t0), t0 + Duration::from_secs(5)));
    }

    #[test]
    fn on_worker_park_keeps_allocation_working_after_a_flush() {
        // The flush must leave the thread's allocator usable: objects allocated before it
        // are intact and freed after it, and new ones come.
        let before: Vec<Box<[u8; 200]>> = (0..300).map(|i| Box::new([i as u8; 200])).collect();
        on_worker_park();
        on_worker_park();
        let after: Vec<Vec<u8>> = (0..300).map(|i| vec![i as u8; 5000]).collect();
        assert!(before.iter().enumerate().all(|(i, b)| b[199] == i as u8));
        assert!(after.iter().enumerate().all(|(i, v)| v[4999] == i as u8));
    }
}
