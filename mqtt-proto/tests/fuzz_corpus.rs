//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/<target>/`) through the same checks
//! the fuzz targets run (`mqtt_streaming_proto::fuzz_checks`), so every seed and every input a fuzzing
//! run once crashed on is re-checked by `cargo test`, without cargo-fuzz or a nightly compiler.
#![cfg(feature = "arbitrary")]

use std::fs;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use mqtt_streaming_proto::fuzz_checks;
use mqtt_streaming_proto::{Decoder, ProtocolVersion};

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&path).expect("corpus file"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no corpus file", dir.display());
    files
}

fn replay(target: &str, check: fn(&[u8])) {
    for (name, data) in corpus(target) {
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(
            result.is_ok(),
            "fuzz/corpus/{target}/{name} fails its check"
        );
    }
}

#[test]
fn decode_corpus_passes() {
    replay("decode", fuzz_checks::check_decode);
}

#[test]
fn decode_stream_corpus_passes() {
    replay("decode_stream", fuzz_checks::check_decode_stream);
}

#[test]
fn roundtrip_corpus_passes() {
    replay("roundtrip", fuzz_checks::check_roundtrip);
}

/// The versions a hand-made seed of the decode corpus is valid in, from its name; `None` for
/// a file a fuzzing run produced.
fn seed_versions(name: &str) -> Option<&'static [ProtocolVersion]> {
    const V3: &[ProtocolVersion] = &[ProtocolVersion::V3_1, ProtocolVersion::V3_1_1];
    const V5: &[ProtocolVersion] = &[ProtocolVersion::V5];
    const ALL: &[ProtocolVersion] = &[
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ];
    if name.starts_with("v5_") || name.starts_with("stream_v5") {
        Some(V5)
    } else if name.starts_with("v311_") || name.starts_with("v31_") || name.starts_with("stream_v3")
    {
        Some(V3)
    } else if name.starts_with("crash_") || name.len() == 40 {
        None
    } else {
        Some(ALL)
    }
}

/// The hand-made seeds mean what their names say, so the fuzzer starts from real packets:
/// a valid packet or stream decodes completely, a `fragment_` is a partial packet that asks
/// for more (after any whole packets before it), and a `malformed_` input is refused in every
/// version.
#[test]
fn decode_seeds_are_what_their_names_say() {
    for (name, data) in corpus("decode") {
        let Some(versions) = seed_versions(&name) else {
            continue;
        };
        let malformed = name.starts_with("malformed_");
        let fragment = name.starts_with("fragment_");
        for &version in versions {
            let decoder = Decoder::new(version);
            let mut buf = BytesMut::from(&data[..]);
            let mut count = 0;
            let end = loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(_)) => count += 1,
                    other => break other,
                }
            };
            if malformed {
                assert!(end.is_err(), "{name} decodes in {version}");
            } else {
                assert_eq!(end, Ok(None), "{name} in {version}");
                if fragment {
                    assert!(!buf.is_empty(), "{name} is complete in {version}");
                } else {
                    assert!(
                        buf.is_empty() && count > 0,
                        "{name} incomplete in {version}"
                    );
                }
            }
        }
    }
}
