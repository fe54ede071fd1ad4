//! A client session driven by arbitrary server bytes, valid server packets, commands, clock
//! steps and connection losses: no panic, only valid packets emitted, every token back at most
//! once, bounded queues. The checks live in `mqtt_streaming_session::sim::fuzz::check_client_session`,
//! shared with the corpus replay test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mqtt_streaming_session::sim::fuzz::check_client_session(data));
