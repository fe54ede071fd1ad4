//! Our `mqtt-pub` / `mqtt-sub` programs against mosquitto give the same output and exit codes
//! as mosquitto's own tools for the same flags. `#[ignore]`d: `.ci/run` installs mosquitto and
//! runs these with `-- --ignored`.
//!
//! The programs' binaries are built by cargo for this test (it requires the `cli` feature, see
//! `Cargo.toml`), which gives their paths in `CARGO_BIN_EXE_<name>`.

mod interop_support;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use interop_support::*;

/// The path of one of our programs.
fn example(name: &str) -> PathBuf {
    let path = PathBuf::from(match name {
        "mqtt-pub" => env!("CARGO_BIN_EXE_mqtt-pub"),
        "mqtt-sub" => env!("CARGO_BIN_EXE_mqtt-sub"),
        other => panic!("no program {other}"),
    });
    assert!(path.is_file(), "{} missing", path.display());
    path
}

fn run(program: PathBuf, port: u16, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(program)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            input.write_all(bytes).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn ours(name: &str) -> PathBuf {
    example(name)
}

fn theirs(name: &str) -> PathBuf {
    PathBuf::from(name)
}

/// For each set of subscriber flags, mosquitto_sub and our mqtt-sub print the same bytes for
/// the same retained messages (including an empty and a binary payload), and exit 0.
#[tokio::test]
#[ignore = "needs mosquitto (run by .ci/run)"]
async fn sub_output_matches_mosquitto_sub() {
    let broker = Mosquitto::start("").await;
    let port = broker.port;
    // Retained messages to read back; published with mosquitto_pub.
    let dir = tempdir::TempDir::new("cli");
    let binary = dir.path().join("bin");
    std::fs::write(&binary, [0u8, 1, 2, 255, b'\n', b'x']).unwrap();
    for args in [
        vec!["-t", "cli/a", "-m", "plain text", "-r"],
        vec!["-t", "cli/b/c", "-m", "ünïcödé", "-r", "-q", "1"],
        vec![
            "-t",
            "cli/bin",
            "-f",
            binary.to_str().unwrap(),
            "-r",
            "-q",
            "2",
        ],
    ] {
        let out = run(theirs("mosquitto_pub"), port, &args, None);
        assert!(out.status.success());
    }
    for flags in [
        vec!["-t", "cli/#", "-C", "3"],
        vec!["-t", "cli/#", "-C", "3", "-v"],
        vec!["-t", "cli/#", "-C", "3", "-N"],
        vec!["-t", "cli/a", "-t", "cli/b/+", "-C", "2", "-v", "-q", "1"],
        vec!["-t", "cli/#", "-C", "3", "-v", "-V", "mqttv5"],
        vec!["-t", "cli/#", "-C", "3", "-V", "31", "-i", "cli-31"],
    ] {
        let mut with_timeout = flags.clone();
        with_timeout.extend(["-W", "5"]);
        let expected = run(theirs("mosquitto_sub"), port, &with_timeout, None);
        let got = run(ours("mqtt-sub"), port, &with_timeout, None);
        assert_eq!(expected.status.code(), Some(0), "{flags:?}: {expected:?}");
        assert_eq!(
            got.status.code(),
            expected.status.code(),
            "{flags:?}: {got:?}"
        );
        // Retained messages may come in any order across topics: compare sorted lines, and
        // the bytes themselves.
        let mut e = expected.stdout.clone();
        let mut g = got.stdout.clone();
        e.sort_unstable();
        g.sort_unstable();
        assert_eq!(
            g,
            e,
            "{flags:?}: {:?} vs {:?}",
            String::from_utf8_lossy(&got.stdout),
            String::from_utf8_lossy(&expected.stdout)
        );
    }
}

/// Messages published by our mqtt-pub read back by mosquitto_sub exactly as those published
/// by mosquitto_pub with the same flags: -m, -n (null message), -f FILE, -s (stdin),
/// --repeat, -r, -q 0/1/2, -V 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto (run by .ci/run)"]
async fn pub_matches_mosquitto_pub() {
    let broker = Mosquitto::start("").await;
    let port = broker.port;
    let dir = tempdir::TempDir::new("cli-pub");
    let file = dir.path().join("payload");
    std::fs::write(&file, b"from a file\nwith two lines").unwrap();
    let cases: Vec<(Vec<&str>, Option<&[u8]>)> = vec![
        (vec!["-m", "hello"], None),
        (vec!["-m", "q1", "-q", "1"], None),
        (vec!["-m", "q2", "-q", "2", "-V", "5"], None),
        (vec!["-n"], None),
        (vec!["-f", file.to_str().unwrap(), "-q", "1"], None),
        (vec!["-s"], Some(b"from stdin")),
        (vec!["-m", "again", "--repeat", "3"], None),
    ];
    for (i, (flags, stdin)) in cases.iter().enumerate() {
        let mut outputs = Vec::new();
        for publisher in [theirs("mosquitto_pub"), ours("mqtt-pub")] {
            let topic = format!("pub/{i}");
            let count = if flags.contains(&"--repeat") {
                "3"
            } else {
                "1"
            };
            let sub = Command::new("mosquitto_sub")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-t",
                    &topic,
                    "-v",
                ])
                .args(["-C", count, "-W", "5"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            // Let the subscription be made.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut args = vec!["-t", topic.as_str()];
            args.extend(flags.iter().copied());
            let out = run(publisher.clone(), port, &args, *stdin);
            assert!(out.status.success(), "{publisher:?} {args:?}: {out:?}");
            let out = tokio::task::spawn_blocking(move || sub.wait_with_output().unwrap())
                .await
                .unwrap();
            outputs.push(out.stdout);
        }
        assert!(!outputs[0].is_empty(), "{flags:?}");
        assert_eq!(
            String::from_utf8_lossy(&outputs[1]),
            String::from_utf8_lossy(&outputs[0]),
            "{flags:?}"
        );
    }
    // Retained: each tool's retained message is read back with RETAIN by a later subscriber.
    for (publisher, topic) in [
        (theirs("mosquitto_pub"), "keep/theirs"),
        (ours("mqtt-pub"), "keep/ours"),
    ] {
        let out = run(publisher, port, &["-t", topic, "-m", "kept", "-r"], None);
        assert!(out.status.success());
    }
    let out = run(
        theirs("mosquitto_sub"),
        port,
        &["-t", "keep/#", "-C", "2", "-W", "3"],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kept\nkept\n");
}

/// Failures: a clear message on stderr and a non-zero exit, as mosquitto's tools: nothing
/// listening, -W timeout (exit 27), -c without -i, an invalid QoS, a refused CONNACK.
#[tokio::test]
#[ignore = "needs mosquitto (run by .ci/run)"]
async fn failures_match_mosquitto_tools() {
    let closed_port = free_port();
    for (tool, ours_) in [("mosquitto_sub", "mqtt-sub"), ("mosquitto_pub", "mqtt-pub")] {
        let expected = run(theirs(tool), closed_port, &["-t", "x", "-m", "y"], None);
        let got = run(ours(ours_), closed_port, &["-t", "x", "-m", "y"], None);
        if tool == "mosquitto_sub" {
            // mosquitto_sub has no -m: both refuse the flag.
            assert_ne!(expected.status.code(), Some(0));
            assert_ne!(got.status.code(), Some(0));
            continue;
        }
        assert_eq!(expected.status.code(), Some(1), "{expected:?}");
        assert_eq!(got.status.code(), Some(1), "{got:?}");
        assert!(String::from_utf8_lossy(&got.stderr).contains("Connection refused"));
    }
    let expected = run(theirs("mosquitto_sub"), closed_port, &["-t", "x"], None);
    let got = run(ours("mqtt-sub"), closed_port, &["-t", "x"], None);
    assert_eq!(expected.status.code(), Some(1));
    assert_eq!(got.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&got.stderr).trim(),
        "Error: Connection refused"
    );

    let broker = Mosquitto::start("").await;
    let port = broker.port;
    for args in [
        vec!["-t", "quiet", "-W", "1"],
        vec!["-t", "x", "-c"],
        vec!["-t", "x", "-q", "3"],
    ] {
        let expected = run(theirs("mosquitto_sub"), port, &args, None);
        let got = run(ours("mqtt-sub"), port, &args, None);
        assert_ne!(expected.status.code(), Some(0), "{args:?}");
        if args.contains(&"-W") {
            assert_eq!(expected.status.code(), Some(27));
            assert_eq!(got.status.code(), Some(27), "{got:?}");
            assert_eq!(String::from_utf8_lossy(&got.stderr).trim(), "Timed out");
        } else {
            assert_ne!(got.status.code(), Some(0), "{args:?}: {got:?}");
            assert!(!got.stderr.is_empty());
        }
    }
    // A refused CONNACK: mosquitto with anonymous access off.
    let strict = Mosquitto::start_with_anonymous(false).await;
    let expected = run(
        theirs("mosquitto_pub"),
        strict.port,
        &["-t", "x", "-m", "y"],
        None,
    );
    let got = run(ours("mqtt-pub"), strict.port, &["-t", "x", "-m", "y"], None);
    assert_ne!(expected.status.code(), Some(0));
    assert_ne!(got.status.code(), Some(0));
    let message = String::from_utf8_lossy(&got.stderr);
    assert!(message.contains("Connection Refused"), "{message}");
}
