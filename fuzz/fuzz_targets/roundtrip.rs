//! Arbitrary packet values encoded for an arbitrary version: encoded_len is exact, a refused packet writes nothing, decoding gives the packet back and re-encodes byte for byte.
//! The checks live in `mqtt_streaming_proto::fuzz_checks::check_roundtrip`, shared with the corpus replay test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mqtt_streaming_proto::fuzz_checks::check_roundtrip(data));
