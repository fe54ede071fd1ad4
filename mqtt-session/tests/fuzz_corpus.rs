//! Replays the committed cargo-fuzz corpora of the session targets through the same checks the
//! fuzzers run (`mqtt_session::sim::fuzz`), and runs those checks on random inputs, so the
//! targets and their corpora never rot.
#![cfg(feature = "sim")]

use std::fs;
use std::path::PathBuf;

use mqtt_session::sim::fuzz::{check_broker, check_client_session, check_server_session};
use proptest::prelude::*;

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
    for (path, data) in corpus("client_session") {
        eprintln!("{}", path.display());
        check_client_session(&data);
    }
}

#[test]
fn server_session_corpus_replays() {
    for (path, data) in corpus("server_session") {
        eprintln!("{}", path.display());
        check_server_session(&data);
    }
}

#[test]
fn broker_corpus_replays() {
    for (path, data) in corpus("broker") {
        eprintln!("{}", path.display());
        check_broker(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn client_session_survives_random_input(data in prop::collection::vec(any::<u8>(), 0..600)) {
        check_client_session(&data);
    }

    #[test]
    fn server_session_survives_random_input(data in prop::collection::vec(any::<u8>(), 0..600)) {
        check_server_session(&data);
    }

    #[test]
    fn broker_survives_random_input(data in prop::collection::vec(any::<u8>(), 0..600)) {
        check_broker(&data);
    }
}
