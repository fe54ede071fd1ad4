//! Real clients against our broker (`BrokerServer`): mosquitto_pub / mosquitto_sub processes
//! and the paho-mqtt Python client, MQTT 3.1.1 and 5.0. `#[ignore]`d: `.ci/run` installs
//! them and runs these with `-- --ignored`.

mod interop_support;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use interop_support::*;
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_tokio::{BrokerHandle, BrokerServer};

async fn start() -> (u16, BrokerHandle) {
    let broker = BrokerServer::bind("127.0.0.1:0", BrokerConfig::default())
        .await
        .unwrap();
    let port = broker.local_addr().unwrap().port();
    (port, broker.spawn())
}

/// Waits until every earlier client has gone, so that a subscription count read next is not
/// about to drop (a killed client's clean session ends a moment after its process).
async fn quiet(broker: &BrokerHandle) {
    let started = std::time::Instant::now();
    while broker.stats().await.unwrap().connections > 0 {
        assert!(started.elapsed() < WAIT, "earlier clients still connected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the broker holds at least `n` subscriptions.
async fn subscriptions(broker: &BrokerHandle, n: usize) {
    let started = std::time::Instant::now();
    while broker.stats().await.unwrap().subscriptions < n {
        assert!(started.elapsed() < WAIT, "subscriptions not made in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn publish(port: u16, version: &str, args: &[&str]) {
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version])
        .args(args)
        .status()
        .expect("mosquitto_pub is installed (.ci/run installs it)");
    assert!(status.success(), "mosquitto_pub {args:?}");
}

fn sub_command(port: u16, version: &str, args: &[&str]) -> Command {
    let mut command = Command::new("mosquitto_sub");
    command
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

async fn finish(child: std::process::Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

/// mosquitto_sub and mosquitto_pub through our broker, for both versions: wildcards (`+` and
/// `#`, [MQTT-4.7.1-2] / [MQTT-4.7.1-3]), retained messages with a later subscriber, a
/// persistent session (`-c`) collecting QoS 1 messages published while it was away, and a
/// will published when mosquitto_sub is killed. Stock clients need no extension of ours:
/// [MQTT-7.0.0-2] (3.1.1)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto-clients (run by .ci/run)"]
async fn mosquitto_clients_against_our_broker() {
    let (port, broker) = start().await;
    for version in ["311", "5"] {
        // Wildcards.
        quiet(&broker).await;
        let base = broker.stats().await.unwrap().subscriptions;
        let sub = sub_command(
            port,
            version,
            &[
                "-t", "wild/+/x", "-t", "deep/#", "-v", "-C", "3", "-W", "10",
            ],
        )
        .spawn()
        .unwrap();
        subscriptions(&broker, base + 2).await;
        publish(port, version, &["-t", "wild/a/x", "-m", "1"]);
        publish(port, version, &["-t", "wild/a/y", "-m", "no"]);
        publish(
            port,
            version,
            &["-t", "deep/er/still", "-m", "2", "-q", "1"],
        );
        publish(port, version, &["-t", "wild/b/x", "-m", "3", "-q", "2"]);
        let out = finish(sub).await;
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "wild/a/x 1\ndeep/er/still 2\nwild/b/x 3\n"
        );

        // Retained.
        publish(
            port,
            version,
            &["-t", &format!("ret/{version}"), "-r", "-m", "kept"],
        );
        let retained_topic = format!("ret/{version}");
        let out = sub_command(
            port,
            version,
            &["-t", &retained_topic, "-v", "-C", "1", "-W", "5"],
        )
        .output()
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("ret/{version} kept\n")
        );

        // Persistent session with queued messages ([MQTT-3.1.2-5] in 3.1.1).
        let id = format!("persist-{version}");
        let out = sub_command(
            port,
            version,
            &["-c", "-i", &id, "-q", "1", "-t", "queue/t", "-W", "1"],
        )
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(27), "timed out, as asked: {out:?}");
        for n in 1..=3 {
            publish(
                port,
                version,
                &["-t", "queue/t", "-q", "1", "-m", &format!("q{n}")],
            );
        }
        let out = sub_command(
            port,
            version,
            &[
                "-c", "-i", &id, "-q", "1", "-t", "queue/t", "-C", "3", "-W", "5",
            ],
        )
        .output()
        .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "q1\nq2\nq3\n");

        // Will: a mosquitto_sub with a will, killed.
        quiet(&broker).await;
        let base = broker.stats().await.unwrap().subscriptions;
        let watcher = sub_command(
            port,
            version,
            &["-t", "wills/#", "-v", "-C", "1", "-W", "10"],
        )
        .spawn()
        .unwrap();
        subscriptions(&broker, base + 1).await;
        let mut doomed = sub_command(
            port,
            version,
            &[
                "-t",
                "anything",
                "--will-topic",
                "wills/sub",
                "--will-payload",
                "gone",
            ],
        )
        .spawn()
        .unwrap();
        subscriptions(&broker, base + 2).await;
        doomed.kill().unwrap();
        let _ = doomed.wait();
        let out = finish(watcher).await;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "wills/sub gone\n");
    }
    broker.shutdown().await;
}

const PAHO_SCRIPT: &str = r#"
import sys, time, threading
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

port = int(sys.argv[1])
v5 = sys.argv[2] == "5"
proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
tag = sys.argv[2]

def client(cid, clean=True):
    kwargs = dict(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cid, protocol=proto)
    if not v5:
        kwargs["clean_session"] = clean
    c = mqtt.Client(**kwargs)
    c.got = []
    c.closed = []
    c.lock = threading.Lock()
    def on_message(cl, userdata, msg):
        with c.lock:
            c.got.append((msg.topic, msg.payload.decode(), msg.qos, msg.retain))
    def on_disconnect(cl, userdata, flags, rc, props=None):
        c.closed.append(rc)
    c.subacked = set()
    def on_subscribe(cl, userdata, mid, rcs, props=None):
        c.subacked.add(mid)
    c.on_message = on_message
    c.on_disconnect = on_disconnect
    c.on_subscribe = on_subscribe
    return c

def connect(c, clean=True):
    if v5:
        from paho.mqtt.properties import Properties
        from paho.mqtt.packettypes import PacketTypes
        p = Properties(PacketTypes.CONNECT)
        if not clean:
            p.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", port, keepalive=30, clean_start=clean, properties=p)
    else:
        c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()

def wait(pred, what, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.01)
    raise SystemExit("timeout: " + what)

def subscribe(c, topic, qos):
    r, mid = c.subscribe(topic, qos)
    assert r == 0
    wait(lambda: mid in c.subacked, "SUBACK for " + topic)

# QoS 2 exactly once, 200 messages.
sub = client("paho-sub-" + tag); connect(sub)
subscribe(sub, "p/q2", 2)
pub = client("paho-pub-" + tag); connect(pub)
infos = [pub.publish("p/q2", str(i), qos=2) for i in range(200)]
for info in infos:
    info.wait_for_publish(10)
wait(lambda: len(sub.got) >= 200, "qos2")
time.sleep(0.3)
payloads = sorted(int(p) for (_, p, _, _) in sub.got)
assert payloads == list(range(200)), "qos2 exactly once"
assert all(q == 2 for (_, _, q, _) in sub.got)
print("OK qos2-exactly-once")

# Wildcards and retained.
pub.publish("p/ret/a", "r", qos=1, retain=True).wait_for_publish(10)
late = client("paho-late-" + tag); connect(late)
subscribe(late, "p/+/a", 1)
wait(lambda: len(late.got) >= 1, "retained")
assert late.got[0] == ("p/ret/a", "r", 1, True), late.got
print("OK retained-wildcard")

# Persistent session with queued messages.
dur = client("paho-dur-" + tag, clean=False); connect(dur, clean=False)
subscribe(dur, "p/dur", 1)
dur.disconnect(); dur.loop_stop()
for i in range(5):
    pub.publish("p/dur", "d%d" % i, qos=1).wait_for_publish(10)
dur2 = client("paho-dur-" + tag, clean=False)
connect(dur2, clean=False)
wait(lambda: len(dur2.got) >= 5, "queued")
assert [p for (_, p, _, _) in dur2.got] == ["d%d" % i for i in range(5)], dur2.got
print("OK persistent-queued")

# Takeover: a second connection with the same id closes the first.
a = client("paho-twin-" + tag); connect(a)
wait(lambda: a.is_connected(), "twin a")
b = client("paho-twin-" + tag); connect(b)
wait(lambda: len(a.closed) >= 1, "takeover")
if v5:
    assert a.closed[0] == 0x8E, a.closed
a.loop_stop()
print("OK takeover")

# Will on abrupt close (the socket closed without DISCONNECT).
watch = client("paho-watch-" + tag); connect(watch)
subscribe(watch, "p/will", 1)
w = client("paho-will-" + tag)
w.will_set("p/will", "gone", qos=1)
connect(w)
wait(lambda: w.is_connected(), "will client")
w.loop_stop()
w.socket().close()
wait(lambda: len(watch.got) >= 1, "will")
assert watch.got[0][:2] == ("p/will", "gone")
print("OK will")

# Shared subscriptions (MQTT 5): each message to exactly one member.
if v5:
    m1 = client("paho-m1"); connect(m1); subscribe(m1, "$share/g/p/shared", 1)
    m2 = client("paho-m2"); connect(m2); subscribe(m2, "$share/g/p/shared", 1)
    for i in range(40):
        pub.publish("p/shared", str(i), qos=1).wait_for_publish(10)
    wait(lambda: len(m1.got) + len(m2.got) >= 40, "shared")
    time.sleep(0.3)
    all_ = sorted(int(p) for (_, p, _, _) in m1.got + m2.got)
    assert all_ == list(range(40)), "shared: each once"
    assert m1.got and m2.got, "shared: both members served"
    print("OK shared %d/%d" % (len(m1.got), len(m2.got)))
print("DONE")
"#;

/// The paho-mqtt Python client against our broker, for 3.1.1 and 5.0: QoS 2 exactly once
/// (200 messages, [MQTT-4.3.3-2] in 3.1.1), wildcards and retained ([MQTT-3.3.1-6] in
/// 3.1.1), a persistent session's queued messages in order, takeover (0x8E in 5.0,
/// [MQTT-3.1.4-3]), a will on an abrupt close, and shared subscriptions (5.0: every message
/// to exactly one member).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs paho-mqtt (run by .ci/run)"]
async fn paho_against_our_broker() {
    let (port, broker) = start().await;
    let dir = tempdir::TempDir::new("paho");
    let script = dir.path().join("paho_check.py");
    std::fs::write(&script, PAHO_SCRIPT).unwrap();
    for version in ["311", "5"] {
        let script = script.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("python3")
                .arg(&script)
                .arg(port.to_string())
                .arg(version)
                .output()
                .expect("python3 is installed")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("DONE"),
            "paho {version}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("paho {version}:\n{stdout}");
    }
    broker.shutdown().await;
}
