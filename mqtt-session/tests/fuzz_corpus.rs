//! Replays the committed cargo-fuzz corpora of the session targets through the same checks the
//! fuzzers run (`mqtt_streaming_session::sim::fuzz`), and runs those checks on random inputs, so the
//! targets and their corpora never rot.
//!
//! The broker's inputs run as the fuzz target runs them: each on a thread of
//! [`STACK_SIZE`] (512 KiB), with the heap it holds bounded by
//! [`heap_budget`](mqtt_streaming_session::sim::fuzz_broker::heap_budget), counted by `stats_alloc`
//! (the workspace forbids the `unsafe` a `GlobalAlloc` needs). Its counters are global, so
//! every test of this binary takes `SERIAL` first and no other test allocates meanwhile.
#![cfg(feature = "sim")]

use std::alloc::System;
use std::fs;
use std::path::PathBuf;
use std::sync::Mutex;

use mqtt_streaming_session::sim::fuzz::{check_client_session, check_server_session};
use mqtt_streaming_session::sim::fuzz_broker::{check_broker_with_heap, STACK_SIZE};
use proptest::prelude::*;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bytes the process holds now. (`bytes_allocated` and `bytes_deallocated` already count what
/// reallocations grew and shrank; `bytes_reallocated` repeats it, so it is not added.)
fn heap() -> usize {
    let s = GLOBAL.stats();
    s.bytes_allocated.saturating_sub(s.bytes_deallocated)
}

/// One broker input as the fuzz target runs it: on a `STACK_SIZE` thread, heap bounded.
fn run_broker(data: &[u8]) {
    let data = data.to_vec();
    std::thread::Builder::new()
        .stack_size(STACK_SIZE)
        .spawn(move || check_broker_with_heap(&data, &heap))
        .unwrap()
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} missing: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
}

#[test]
fn client_session_corpus_replays() {
    let _serial = serial();
    for (path, data) in corpus("client_session") {
        eprintln!("{}", path.display());
        check_client_session(&data);
    }
}

#[test]
fn server_session_corpus_replays() {
    let _serial = serial();
    for (path, data) in corpus("server_session") {
        eprintln!("{}", path.display());
        check_server_session(&data);
    }
}

#[test]
fn broker_corpus_replays() {
    let _serial = serial();
    for (path, data) in corpus("broker") {
        eprintln!("{}", path.display());
        run_broker(&data);
    }
}

/// The heap bound is enforced: a probe that reports 1 GiB held after the start fails the
/// input at its first operation, and a small real input stays within the budget.
#[test]
fn broker_heap_budget_is_checked() {
    let _serial = serial();
    // A probe that reports 1 GiB more after the start than at it.
    let calls = std::cell::Cell::new(0usize);
    let probe = || {
        calls.set(calls.get() + 1);
        if calls.get() == 1 {
            0
        } else {
            1 << 30
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // hooks 0x80 (no drain), config 0; op 0: connect `c0`.
        check_broker_with_heap(&[0x80, 0, 0, 0, 0, 0], &probe)
    }));
    assert!(
        result.is_err(),
        "a heap over the budget must fail the input"
    );
    // And a plain input stays within it.
    run_broker(&[0, 0, 0, 0, 0, 0, 2, 0, 0, 1, 1, 0, 1]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn client_session_survives_random_input(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let _serial = serial();
        check_client_session(&data);
    }

    #[test]
    fn server_session_survives_random_input(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let _serial = serial();
        check_server_session(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random inputs reach 20,000-level filters and 2,000-member shared groups in a few
    /// bytes: before the broker's walks became iterative and its topics bounded, this
    /// overflowed the stack or the heap budget within a few cases.
    #[test]
    fn broker_survives_random_input(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let _serial = serial();
        run_broker(&data);
    }
}
