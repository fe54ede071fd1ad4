//! The broker core against hostile and well-behaved clients, many at once: deep topics and
//! filters, `$share` groups of thousands, wills, expiries, AUTH, aliases, shutdown. The driver
//! and its reference model live in `mqtt_streaming_session::sim::fuzz_broker` (shared with the corpus
//! replay test). Each input runs on a thread of `STACK_SIZE` (512 KiB), and the heap it holds
//! is bounded by `heap_budget`, counted by `stats_alloc` around the system allocator.
#![no_main]

use std::alloc::System;

use libfuzzer_sys::fuzz_target;
use mqtt_streaming_session::sim::fuzz_broker::{check_broker_with_heap, STACK_SIZE};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes the process holds now (libFuzzer's own C++ allocations are not counted).
/// `bytes_allocated` and `bytes_deallocated` already count what reallocations grew and shrank;
/// `bytes_reallocated` repeats it, so it is not added (adding it counted every growth twice and
/// failed inputs that fan one large message out to many subscribers).
fn heap() -> usize {
    let s = GLOBAL.stats();
    s.bytes_allocated.saturating_sub(s.bytes_deallocated)
}

fuzz_target!(|data: &[u8]| {
    let data = data.to_vec();
    std::thread::Builder::new()
        .stack_size(STACK_SIZE)
        .spawn(move || check_broker_with_heap(&data, &heap))
        .expect("spawn the input's thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
});
