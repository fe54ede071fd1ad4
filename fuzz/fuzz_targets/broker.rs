//! The broker core with several fuzzed connections: arbitrary bytes and valid packets from each,
//! opens, losses and clock steps. The checks live in `mqtt_session::sim::fuzz::check_broker`,
//! shared with the corpus replay test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mqtt_session::sim::fuzz::check_broker(data));
