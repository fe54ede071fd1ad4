//! Our `mqtt-pub` / `mqtt-sub` programs against mosquitto give the same output and exit codes
//! as mosquitto's own tools for the same flags. `#[ignore]`d: `.ci/run` installs mosquitto and
//! runs these with `-- --ignored`.
//!
//! The programs' binaries are built by cargo for this test (it requires the `cli` feature, see
//! `Cargo.toml`), which gives their paths in `CARGO_BIN_EXE_<name>`.

mod interop_support;
mod pki;

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
            let mut command = mosquitto_sub(port);
            command.args(["-t", &topic, "-v", "-d", "-C", count, "-W", "5"]);
            let sub = WatchedSubscriber::start(command);
            let mut args = vec!["-t", topic.as_str()];
            args.extend(flags.iter().copied());
            let out = run(publisher.clone(), port, &args, *stdin);
            assert!(out.status.success(), "{publisher:?} {args:?}: {out:?}");
            let done = tokio::task::spawn_blocking(move || sub.finish())
                .await
                .unwrap();
            assert_eq!(done.code, Some(0), "{flags:?}: {:?}", done.lines);
            outputs.push(done.messages().join("\n"));
        }
        assert!(!outputs[0].is_empty(), "{flags:?}");
        assert_eq!(outputs[1], outputs[0], "{flags:?}");
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
        // `@@` is an `@` (the other `@` codes are the time), escapes.
        vec![
            "-t",
            "f/+",
            "-T",
            "f/skip",
            "-C",
            "2",
            "-F",
            "@@%t\\e\\0%m|%r\\\\",
        ],
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
    let mut command = mosquitto_sub(port);
    command.args(["-t", "lines", "-d", "-C", "3", "-W", "5", "-F", "[%p]"]);
    let sub = WatchedSubscriber::start(command);
    let out = run(
        ours("mqtt-pub"),
        port,
        &["-t", "lines", "-l", "-q", "1"],
        Some(b"a\nb b\n\n"),
    );
    assert!(out.status.success(), "{out:?}");
    let done = tokio::task::spawn_blocking(move || sub.finish())
        .await
        .unwrap();
    assert_eq!(done.messages(), ["[a]", "[b b]", "[]"], "{:?}", done.lines);

    // -D publish user-property, read back with mosquitto_sub -F %P (MQTT 5).
    let mut command = mosquitto_sub(port);
    command.args([
        "-V", "5", "-t", "props", "-d", "-C", "1", "-W", "5", "-F", "%P",
    ]);
    let sub = WatchedSubscriber::start(command);
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
    let done = tokio::task::spawn_blocking(move || sub.finish())
        .await
        .unwrap();
    assert_eq!(done.messages(), ["k:v"], "{:?}", done.lines);

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
    let mut command = mosquitto_sub(port);
    command.args(["-t", "wills/cli", "-d", "-C", "1", "-W", "10", "-v"]);
    let watch = WatchedSubscriber::start(command);
    let mut victim = Command::new(ours("mqtt-sub"));
    victim
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
        .arg("-d");
    // Killed once its subscription is made, so its CONNECT (with the will) was accepted.
    drop(WatchedSubscriber::start(victim));
    let done = tokio::task::spawn_blocking(move || watch.finish())
        .await
        .unwrap();
    assert_eq!(done.messages(), ["wills/cli bye"], "{:?}", done.lines);

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

/// Runs `program` with exactly `args` (no -h / -p added), with a time limit.
fn run_bare(program: PathBuf, args: &[&str]) -> Output {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("{args:?} did not finish in time");
        }
    }
}

/// The test PKI's files in a temp dir: ca.pem, server.pem, server.key, client.pem,
/// client.key, other-ca.pem.
fn pki_files(dir: &std::path::Path) -> PathBuf {
    let pki = pki::pki();
    for (name, pem) in [
        ("ca.pem", &pki.ca),
        ("server.pem", &pki.server_cert),
        ("server.key", &pki.server_key),
        ("client.pem", &pki.client_cert),
        ("client.key", &pki.client_key),
        ("other-ca.pem", &pki.other_ca),
    ] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
    dir.to_path_buf()
}

/// mosquitto with a second listener on 127.0.0.1: TLS with the test PKI's server
/// certificate. Returns the broker and the TLS port.
async fn mosquitto_tls(pki: &std::path::Path, extra: &str) -> (Mosquitto, u16) {
    let port = free_port();
    let broker = Mosquitto::start(&format!(
        "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n{extra}",
        pki.join("ca.pem").display(),
        pki.join("server.pem").display(),
        pki.join("server.key").display(),
    ))
    .await;
    wait_port(port);
    (broker, port)
}

fn wait_port(port: u16) {
    wait_addr("127.0.0.1", port)
}

fn wait_addr(host: &str, port: u16) {
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect((host, port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "port {port} not open"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Our mqtt-pub and mqtt-sub against mosquitto's TLS listener, with mosquitto's meaning of
/// the TLS flags: `-p PORT --cafile` is TLS; `-L mqtts://user@host:port/topic` takes the topic
/// from the URL; `--insecure` lets a certificate that does not name the host through;
/// `--cert`/`--key` present a client certificate (the listener requires one); a plain
/// connection to the TLS port, an untrusted CA and a wrong host name fail (exit code not 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto (run by .ci/run)"]
async fn pub_and_sub_over_mosquitto_tls_with_cafile_and_url() {
    let dir = tempdir::TempDir::new("cli-tls");
    let pki = pki_files(dir.path());
    let ca = pki.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let (broker, tls) = mosquitto_tls(&pki, "require_certificate false").await;
    let tls = tls.to_string();

    // -p with --cafile: TLS. Retained, then read back over TLS.
    let out = run_bare(
        ours("mqtt-pub"),
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &tls,
            "--cafile",
            ca,
            "-t",
            "tls/a",
            "-m",
            "over tls",
            "-r",
            "-q",
            "1",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_bare(
        ours("mqtt-sub"),
        &[
            "-h",
            "localhost",
            "-p",
            &tls,
            "--cafile",
            ca,
            "-t",
            "tls/#",
            "-v",
            "-C",
            "1",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "tls/a over tls\n");

    // -L mqtts:// with the topic in the path (and a user name, which mosquitto accepts).
    let url = format!("mqtts://someone@127.0.0.1:{tls}/tls/b");
    let out = run_bare(
        ours("mqtt-pub"),
        &["-L", &url, "--cafile", ca, "-m", "url", "-r"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_bare(ours("mqtt-sub"), &["-L", &url, "--cafile", ca, "-C", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "url\n");
    // mosquitto's own subscriber sees what ours published over TLS.
    let out = run_bare(
        theirs("mosquitto_sub"),
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &tls,
            "--cafile",
            ca,
            "-t",
            "tls/b",
            "-C",
            "1",
            "-W",
            "5",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "url\n");

    // Failures: plain MQTT to the TLS port; an untrusted CA; a host name the certificate does
    // not carry (the host is reached as 127.0.0.2... which the certificate does not name, so
    // --insecure is what lets it through).
    let plain = run_bare(
        ours("mqtt-pub"),
        &["-h", "127.0.0.1", "-p", &tls, "-t", "x", "-m", "x"],
    );
    assert!(!plain.status.success());
    let other = pki.join("other-ca.pem");
    let untrusted = run_bare(
        ours("mqtt-pub"),
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &tls,
            "--cafile",
            other.to_str().unwrap(),
            "-t",
            "x",
            "-m",
            "x",
        ],
    );
    assert!(!untrusted.status.success());
    assert!(String::from_utf8_lossy(&untrusted.stderr).contains("Error"));
    drop(broker);

    // A listener bound to every loopback address, reached by a name its certificate lacks.
    let port = free_port();
    let broker = Mosquitto::start(&format!(
        "listener {port} 127.0.0.2\ncafile {ca}\ncertfile {}\nkeyfile {}\nrequire_certificate true",
        pki.join("server.pem").display(),
        pki.join("server.key").display(),
    ))
    .await;
    wait_addr("127.0.0.2", port);
    let port = port.to_string();
    let client_cert = pki.join("client.pem");
    let client_key = pki.join("client.key");
    let cert_args = [
        "--cert",
        client_cert.to_str().unwrap(),
        "--key",
        client_key.to_str().unwrap(),
    ];
    let mut wrong_name = vec![
        "-h",
        "127.0.0.2",
        "-p",
        &port,
        "--cafile",
        ca,
        "-t",
        "x",
        "-m",
        "x",
    ];
    wrong_name.extend(cert_args);
    let refused = run_bare(ours("mqtt-pub"), &wrong_name);
    assert!(
        !refused.status.success(),
        "a wrong host name must be refused"
    );
    wrong_name.push("--insecure");
    let out = run_bare(ours("mqtt-pub"), &wrong_name);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the client certificate, the listener that requires one refuses.
    let no_cert = run_bare(
        ours("mqtt-pub"),
        &[
            "-h",
            "127.0.0.2",
            "-p",
            &port,
            "--cafile",
            ca,
            "--insecure",
            "-t",
            "x",
            "-m",
            "x",
        ],
    );
    assert!(!no_cert.status.success());
    drop(broker);
}

/// Our mqtt-pub and mqtt-sub over `-L ws://` against mosquitto's `protocol websockets`
/// listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto (run by .ci/run)"]
async fn pub_and_sub_over_mosquitto_websockets_with_url() {
    let ws = free_port();
    let _broker = Mosquitto::start(&format!("listener {ws} 127.0.0.1\nprotocol websockets")).await;
    wait_port(ws);
    let url = format!("ws://127.0.0.1:{ws}/mqtt");
    let out = run_bare(
        ours("mqtt-pub"),
        &[
            "-L",
            &url,
            "-t",
            "ws/a",
            "-m",
            "over websocket",
            "-r",
            "-q",
            "2",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_bare(
        ours("mqtt-sub"),
        &["-L", &url, "-t", "ws/#", "-v", "-C", "1", "-q", "1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ws/a over websocket\n"
    );
}

/// mqtt-sub reconnects over TLS as over TCP: a proxy in front of mosquitto's TLS listener
/// cuts the link, mqtt-sub dials again (a new TLS handshake) and prints what was published
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto (run by .ci/run)"]
async fn mqtt_sub_reconnects_over_tls() {
    use std::io::BufRead;

    let dir = tempdir::TempDir::new("cli-tls-rc");
    let pki = pki_files(dir.path());
    let ca = pki.join("ca.pem");
    let ca = ca.to_str().unwrap().to_owned();
    let (_broker, tls) = mosquitto_tls(&pki, "").await;
    let proxy = Proxy::start(([127, 0, 0, 1], tls).into()).await;
    let retained = |payload: &str| {
        let out = run_bare(
            ours("mqtt-pub"),
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &tls.to_string(),
                "--cafile",
                &ca,
                "-t",
                "rc/x",
                "-r",
                "-q",
                "1",
                "-m",
                payload,
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    retained("one");
    let mut child = Command::new(ours("mqtt-sub"))
        .args([
            "-h",
            "localhost",
            "-p",
            &proxy.addr.port().to_string(),
            "--cafile",
            &ca,
        ])
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
    let first = rx.recv_timeout(Duration::from_secs(10));
    if first.is_err() {
        let _ = child.kill();
    }
    assert_eq!(first.expect("the retained message"), "one");
    proxy.cut();
    retained("two");
    let second = rx.recv_timeout(Duration::from_secs(10));
    if second.is_err() {
        let _ = child.kill();
    }
    assert_eq!(second.expect("printed after reconnecting"), "two");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// Our mqtt-pub and mqtt-sub over `-L unix://` against mosquitto's Unix socket listener, and
/// mosquitto's own tools (`--unix`) reading and writing the same retained topic.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto (run by .ci/run)"]
async fn pub_and_sub_over_mosquitto_unix_socket_with_url() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempdir::TempDir::new("cli-unix");
    // mosquitto started as root binds as its own user.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = dir.path().join("m.sock");
    let _broker = Mosquitto::start(&format!("listener 0 {}", socket.display())).await;
    let started = std::time::Instant::now();
    while !socket.exists() {
        assert!(started.elapsed() < Duration::from_secs(10), "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("unix://{}", socket.display());
    let out = run_bare(
        ours("mqtt-pub"),
        &["-L", &url, "-t", "unix/a", "-m", "ours", "-r", "-q", "1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_bare(
        theirs("mosquitto_sub"),
        &[
            "--unix",
            socket.to_str().unwrap(),
            "-t",
            "unix/a",
            "-C",
            "1",
            "-W",
            "5",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ours\n");
    let out = run_bare(
        theirs("mosquitto_pub"),
        &[
            "--unix",
            socket.to_str().unwrap(),
            "-t",
            "unix/b",
            "-m",
            "theirs",
            "-r",
        ],
    );
    assert!(out.status.success());
    let out = run_bare(
        ours("mqtt-sub"),
        &["-L", &url, "-t", "unix/b", "-v", "-C", "1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "unix/b theirs\n");
}

/// `line` with the value of its `"tst":"..."` fields (the time received) emptied.
fn without_timestamps(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find("\"tst\":\"") {
        let value = at + "\"tst\":\"".len();
        out.push_str(&rest[..value]);
        let end = rest[value..].find('"').map_or(rest.len(), |e| value + e);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `-F %j` (the message as JSON, the payload as a string) and the time codes, against
/// mosquitto_sub: the same JSON but for the time received (mosquitto 2.0's `tst` also has a
/// stray `Z` before its offset, which its man page and later versions do not), the same
/// `@` date and the same shape of `%U`, `@N` and `%I`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto (run by .ci/run)"]
async fn sub_json_and_time_formats_match_mosquitto_sub() {
    let broker = Mosquitto::start("").await;
    let port = broker.port;
    for args in [
        vec!["-t", "j/a", "-m", "say \"hi\"\tthere", "-r", "-q", "1"],
        vec!["-t", "j/b", "-m", "two", "-r"],
    ] {
        assert!(run(theirs("mosquitto_pub"), port, &args, None)
            .status
            .success());
    }
    let flags = ["-t", "j/#", "-C", "2", "-W", "5", "-F", "%j"];
    let expected = run(theirs("mosquitto_sub"), port, &flags, None);
    let got = run(ours("mqtt-sub"), port, &flags, None);
    assert!(got.status.success(), "{got:?}");
    let lines = |out: &Output| {
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| without_timestamps(&l.replace("Z+", "+")))
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(lines(&got), lines(&expected), "{got:?} vs {expected:?}");
    assert_eq!(lines(&got).len(), 2);
    // The time codes: the same local date (unless midnight passes between the two runs),
    // and the same shapes.
    let flags = ["-t", "j/b", "-C", "1", "-W", "5", "-F", "@Y-@m-@d|@N|%U|%I"];
    let expected = run(theirs("mosquitto_sub"), port, &flags, None);
    let got = run(ours("mqtt-sub"), port, &flags, None);
    let fields = |out: &Output| {
        String::from_utf8_lossy(&out.stdout)
            .trim_end()
            .split('|')
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let (e, g) = (fields(&expected), fields(&got));
    assert_eq!(g.len(), 4, "{got:?}");
    assert_eq!(g[0], e[0], "{got:?} vs {expected:?}");
    assert!(
        g[1].len() == 9 && g[1].bytes().all(|b| b.is_ascii_digit()),
        "{g:?}"
    );
    let shape = |s: &str| {
        s.bytes()
            .map(|b| if b.is_ascii_digit() { b'9' } else { b })
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&g[2]), shape(&e[2]), "{g:?} vs {e:?}");
    assert_eq!(shape(&g[3]), shape(&e[3]), "{g:?} vs {e:?}");
    assert!(g[3].starts_with(&g[0]), "{g:?}");
}
