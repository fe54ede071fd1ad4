//! A server session driven by arbitrary client bytes, valid client packets, answers,
//! publishes, clock steps and connection loss. The checks live in
//! `mqtt_streaming_session::sim::fuzz::check_server_session`, shared with the corpus replay test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mqtt_streaming_session::sim::fuzz::check_server_session(data));
