//! Arbitrary bytes through every decoder version and size limit: no panic, exact consumption, canonical re-encoding, partial packets never fail.
//! The checks live in `mqtt_streaming_proto::fuzz_checks::check_decode`, shared with the corpus replay test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mqtt_streaming_proto::fuzz_checks::check_decode(data));
