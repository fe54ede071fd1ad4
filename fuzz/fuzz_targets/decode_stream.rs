//! Arbitrary packets encoded into one stream and fed in arbitrary fragments: the same sequence as decoding it whole, equal to the normalised packets.
//! The checks live in `mqtt_streaming_proto::fuzz_checks::check_decode_stream`, shared with the corpus replay test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mqtt_streaming_proto::fuzz_checks::check_decode_stream(data));
