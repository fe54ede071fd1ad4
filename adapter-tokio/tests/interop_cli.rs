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

/// mqtt-sub reconnects by itself as mosquitto_sub does: its connection cut, it connects again,
/// subscribes again (the broker dropped its clean session) and goes on printing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto (run by .ci/run)"]
async fn mqtt_sub_reconnects_like_mosquitto_sub() {
    use std::io::BufRead;

    let broker = Mosquitto::start("").await;
    let proxy = Proxy::start(broker.addr).await;
    let retained = |payload: &str| {
        let status = Command::new("mosquitto_pub")
            .args([
                "-p",
                &broker.port.to_string(),
                "-t",
                "rc/x",
                "-r",
                "-q",
                "1",
            ])
            .args(["-m", payload])
            .status()
            .unwrap();
        assert!(status.success());
    };
    retained("one");
    let mut child = Command::new(ours("mqtt-sub"))
        .args(["-h", "127.0.0.1", "-p", &proxy.addr.port().to_string()])
        .args(["-t", "rc/x", "-q", "1", "-C", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the retained message");
    assert_eq!(first, "one");
    // The link is lost; while mqtt-sub waits to reconnect, a new retained message.
    proxy.cut();
    retained("two");
    let second = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("printed after reconnecting");
    assert_eq!(second, "two");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// The flags of issue 14, against mosquitto and compared with mosquitto's tools: `-F` (the
/// supported specifiers print the same bytes), `-T`, `--retained-only`, `--remove-retained`,
/// `-U` with `-c`, `-E`, `-l`, `-D` user properties, `--will-*`, a refused CONNACK's exit
/// code (5 in 3.1.1, 135 in MQTT 5) and `--quiet`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto (run by .ci/run)"]
async fn issue14_flags_match_mosquitto_tools() {
    let broker = Mosquitto::start("").await;
    let port = broker.port;
    for args in [
        vec!["-t", "f/a", "-m", "one", "-r", "-q", "1"],
        vec!["-t", "f/b", "-m", "two", "-r"],
        vec!["-t", "f/skip", "-m", "three", "-r"],
    ] {
        assert!(run(theirs("mosquitto_pub"), port, &args, None)
            .status
            .success());
    }
    for flags in [
        vec![
            "-t",
            "f/#",
            "-T",
            "f/skip",
            "-C",
            "2",
            "-F",
            "%t|%p|%q|%r|%l|%x|%X|%%|\\t",
        ],
        vec!["-t", "f/+", "-T", "f/skip", "-C", "2", "-F", "%t %p", "-N"],
        vec!["-t", "f/#", "--retained-only", "-W", "2", "-v"],
    ] {
        let expected = run(theirs("mosquitto_sub"), port, &flags, None);
        let got = run(ours("mqtt-sub"), port, &flags, None);
        assert_eq!(
            got.status.code(),
            expected.status.code(),
            "{flags:?}: {got:?}"
        );
        let (mut e, mut g) = (expected.stdout.clone(), got.stdout.clone());
        e.sort_unstable();
        g.sort_unstable();
        assert_eq!(g, e, "{flags:?}: {got:?} vs {expected:?}");
    }

    // -l: one message per line of stdin, read back in order.
    let sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "lines",
            "-C",
            "3",
            "-W",
            "5",
        ])
        .args(["-F", "[%p]"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = run(
        ours("mqtt-pub"),
        port,
        &["-t", "lines", "-l", "-q", "1"],
        Some(b"a\nb b\n\n"),
    );
    assert!(out.status.success(), "{out:?}");
    let out = tokio::task::spawn_blocking(move || sub.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[a]\n[b b]\n[]\n");

    // -D publish user-property, read back with mosquitto_sub -F %P (MQTT 5).
    let sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-V",
            "5",
            "-t",
            "props",
        ])
        .args(["-C", "1", "-W", "5", "-F", "%P"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = run(
        ours("mqtt-pub"),
        port,
        &[
            "-V",
            "5",
            "-t",
            "props",
            "-m",
            "x",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let out = tokio::task::spawn_blocking(move || sub.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "k:v\n");

    // --remove-retained clears what it reads (f/skip kept by -T), then -E exits at once.
    let out = run(
        ours("mqtt-sub"),
        port,
        &["-t", "f/#", "-T", "f/skip", "--remove-retained", "-C", "2"],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let out = run(
        theirs("mosquitto_sub"),
        port,
        &["-t", "f/#", "-W", "1", "-v"],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "f/skip three\n");
    let out = run(ours("mqtt-sub"), port, &["-t", "f/#", "-E"], None);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");

    // -c and -U: a persistent subscription, removed again by -U.
    let persistent = ["-c", "-i", "cli-persistent", "-q", "1"];
    let mut args = persistent.to_vec();
    args.extend(["-t", "gone/x", "-E"]);
    assert!(run(ours("mqtt-sub"), port, &args, None).status.success());
    let mut args = persistent.to_vec();
    args.extend(["-U", "gone/x", "-E"]);
    assert!(run(ours("mqtt-sub"), port, &args, None).status.success());
    assert!(run(
        theirs("mosquitto_pub"),
        port,
        &["-t", "gone/x", "-m", "m", "-q", "1"],
        None
    )
    .status
    .success());
    let mut args = persistent.to_vec();
    args.extend(["-t", "other", "-W", "1"]);
    let out = run(ours("mqtt-sub"), port, &args, None);
    assert_eq!(out.status.code(), Some(27), "nothing queued: {out:?}");

    // --will-*: the broker publishes the will when the client is killed.
    let watch = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "wills/cli",
            "-C",
            "1",
        ])
        .args(["-W", "10", "-v"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut victim = Command::new(ours("mqtt-sub"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "nothing",
            "-k",
            "5",
        ])
        .args([
            "--will-topic",
            "wills/cli",
            "--will-payload",
            "bye",
            "--will-qos",
            "1",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    victim.kill().unwrap();
    victim.wait().unwrap();
    let out = tokio::task::spawn_blocking(move || watch.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "wills/cli bye\n");

    // A refused CONNACK: mosquitto's exit codes, and --quiet prints nothing.
    let strict = Mosquitto::start_with_anonymous(false).await;
    for (version, code) in [("311", 5), ("5", 135)] {
        let args = ["-V", version, "-t", "x", "-m", "y"];
        let expected = run(theirs("mosquitto_pub"), strict.port, &args, None);
        let got = run(ours("mqtt-pub"), strict.port, &args, None);
        assert_eq!(expected.status.code(), Some(code), "{expected:?}");
        assert_eq!(got.status.code(), Some(code), "{got:?}");
        let args = ["-V", version, "-t", "x", "--quiet", "-W", "1"];
        let got = run(ours("mqtt-sub"), strict.port, &args, None);
        assert_eq!(got.status.code(), Some(code), "{got:?}");
        assert!(got.stderr.is_empty(), "{got:?}");
    }
}
