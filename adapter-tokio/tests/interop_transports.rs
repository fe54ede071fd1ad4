//! TLS and WebSocket against software nobody here wrote: our client against mosquitto's TLS
//! listeners (with and without client certificates) and its `protocol websockets` listener;
//! the paho-mqtt Python client over TLS, mutual TLS, WebSocket and WebSocket over TLS against
//! our broker. Certificates made at test time; loopback only. `#[ignore]`d: `.ci/run` installs
//! mosquitto and paho-mqtt and runs them with `-- --ignored`.

mod interop_support;
mod pki;

use std::net::{SocketAddr, TcpStream as StdStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use interop_support::*;
use mqtt_streaming_proto::{ProtocolVersion, QoS, ReasonCode};
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_session::SubscribeRequest;
use mqtt_streaming_tokio::engine::Listeners;
use mqtt_streaming_tokio::{
    connect_url_with, listen_url, BrokerServer, ListenOptions, TlsClientOptions, TlsServerOptions,
    TransportOptions,
};

const LIMIT: Duration = Duration::from_secs(60);

fn write_pki(dir: &Path, pki: &pki::Pki) {
    for (name, pem) in [
        ("ca.pem", &pki.ca),
        ("server.pem", &pki.server_cert),
        ("server.key", &pki.server_key),
        ("client.pem", &pki.client_cert),
        ("client.key", &pki.client_key),
    ] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
}

fn wait_listening(port: u16) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let started = std::time::Instant::now();
    while StdStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "port {port} not listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Subscribe, publish QoS 1 and 2 (one of 100 KB) and receive them back through the broker at
/// `url`.
async fn round_trip(url: &str, transport: &TransportOptions, id: &str) {
    let (client, mut events) =
        connect_url_with(url, transport, options(ProtocolVersion::V5, id, false))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    let suback = client
        .subscribe(SubscribeRequest::new(
            filter(&format!("{id}/#")),
            QoS::ExactlyOnce,
        ))
        .await
        .unwrap();
    assert_eq!(suback.reason_codes, [ReasonCode::GrantedQoS2]);
    let payloads = [b"small".to_vec(), vec![0x5Au8; 100_000]];
    for (qos, payload) in [QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .zip(&payloads)
    {
        let outcome = client
            .publish(message(&format!("{id}/m"), qos, payload.clone()))
            .await
            .unwrap();
        assert!(outcome.is_success(), "{url}: {outcome:?}");
    }
    for payload in &payloads {
        let (publish, _) = next_message(&mut events).await;
        assert_eq!(&publish.payload[..], &payload[..], "{url}");
    }
    client.disconnect().await.unwrap();
}

/// Our client against mosquitto over TLS (server certificate verified against our CA, by IP
/// address and by name with SNI), mutual TLS (refused without a client certificate), a wrong
/// host name refused, and its `protocol websockets` listener (and WebSocket over TLS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto (run by .ci/run)"]
async fn our_client_against_mosquitto_tls_and_websockets() {
    let dir = tempdir::TempDir::new("mosquitto-tls");
    let pki = pki::pki();
    write_pki(dir.path(), &pki);
    let d = dir.path().display();
    let [tls, mtls, ws, wss] = [free_port(), free_port(), free_port(), free_port()];
    // libwebsockets binds every address unless told the IPv4 domain (`socket_domain ipv4`),
    // and mosquitto 2.0 wants one non-WebSocket listener besides (the first, plain, one).
    let extra = format!(
        "listener {tls} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
         listener {mtls} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate true\n\
         listener {ws} 127.0.0.1\nsocket_domain ipv4\nprotocol websockets\n\
         listener {wss} 127.0.0.1\nsocket_domain ipv4\nprotocol websockets\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
    );
    let broker = Mosquitto::start(&extra).await;
    for port in [tls, mtls, ws, wss] {
        wait_listening(port);
    }
    tokio::time::timeout(LIMIT, async {
        let ca = || {
            TlsClientOptions::new()
                .add_ca_file(dir.path().join("ca.pem"))
                .unwrap()
        };
        let server_only = TransportOptions::new().tls(ca().build().unwrap());
        round_trip(&format!("mqtts://127.0.0.1:{tls}"), &server_only, "tls").await;
        round_trip(&format!("mqtts://localhost:{tls}"), &server_only, "tls-sni").await;

        let with_cert = TransportOptions::new().tls(
            ca().client_cert_files(dir.path().join("client.pem"), dir.path().join("client.key"))
                .unwrap()
                .build()
                .unwrap(),
        );
        round_trip(&format!("mqtts://127.0.0.1:{mtls}"), &with_cert, "mtls").await;
        let refused = connect_url_with(
            &format!("mqtts://127.0.0.1:{mtls}"),
            &server_only,
            options(ProtocolVersion::V5, "nocert", false),
        )
        .await;
        assert!(
            refused.is_err(),
            "mosquitto let a client without a certificate in"
        );

        let wrong_name =
            TransportOptions::new().tls(ca().server_name("wrong.example").build().unwrap());
        let error = connect_url_with(
            &format!("mqtts://127.0.0.1:{tls}"),
            &wrong_name,
            options(ProtocolVersion::V5, "wrong", false),
        )
        .await
        .unwrap_err();
        assert!(format!("{error}").contains("not valid for name"), "{error}");

        round_trip(&format!("ws://127.0.0.1:{ws}/mqtt"), &server_only, "ws").await;
        round_trip(&format!("wss://127.0.0.1:{wss}/mqtt"), &server_only, "wss").await;
    })
    .await
    .expect("took too long");
    drop(broker);
}

const PAHO_SCRIPT: &str = r#"
import sys, threading, time
import paho.mqtt.client as mqtt

transport, port, ca, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
for version in (mqtt.MQTTv311, mqtt.MQTTv5):
    got = []
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-%s-%d" % (transport, version),
                    protocol=version, transport="websockets" if transport.startswith("ws") else "tcp")
    if transport.startswith("ws"):
        c.ws_set_options(path="/mqtt")
    if transport in ("tls", "wss", "mtls"):
        if transport == "mtls":
            c.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
        else:
            c.tls_set(ca_certs=ca)
    def on_message(client, userdata, msg):
        got.append((msg.topic, msg.payload))
        if len(got) == 3:
            done.set()
    subacked = threading.Event()
    c.on_message = on_message
    c.on_subscribe = lambda client, userdata, mid, rcs, props: subacked.set()
    c.connect("127.0.0.1", port, 30)
    c.loop_start()
    r = c.subscribe("paho/#", 2)
    assert subacked.wait(10), "no SUBACK"
    big = b"x" * 70000
    for qos, payload in ((0, b"zero"), (1, b"one"), (2, big)):
        c.publish("paho/t", payload, qos=qos).wait_for_publish(10)
    assert done.wait(10), "received %d of 3" % len(got)
    assert [p for (_, p) in got] == [b"zero", b"one", big], got[:2]
    c.disconnect()
    c.loop_stop()
    print("OK %s v%d" % (transport, version))
print("DONE")
"#;

/// paho-mqtt (Python) against our broker over TLS, mutual TLS, WebSocket and WebSocket over
/// TLS, MQTT 3.1.1 and 5.0: QoS 0, 1 and 2 (one of 70 KB) published and received back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs paho-mqtt (run by .ci/run)"]
async fn paho_against_our_broker_over_tls_and_websocket() {
    let dir = tempdir::TempDir::new("paho-tls");
    let pki = pki::pki();
    write_pki(dir.path(), &pki);
    let server = |mutual: bool| {
        let tls =
            TlsServerOptions::new(pki.server_cert.as_bytes(), pki.server_key.as_bytes()).unwrap();
        let tls = if mutual {
            tls.require_client_cert(pki.ca.as_bytes()).unwrap()
        } else {
            tls
        };
        ListenOptions::new().tls(tls.build().unwrap())
    };
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    for (name, url, mutual) in [
        ("tls", "mqtts://127.0.0.1:0", false),
        ("mtls", "mqtts://127.0.0.1:0", true),
        ("ws", "ws://127.0.0.1:0/mqtt", false),
        ("wss", "wss://127.0.0.1:0/mqtt", false),
    ] {
        let listener = listen_url(url, &server(mutual)).await.unwrap();
        ports.push((name, listener.local_addr().unwrap().port()));
        listeners.push(listener);
    }
    let broker = BrokerServer::new(BrokerConfig::default())
        .with_listener(Box::new(Listeners::new(listeners)))
        .spawn();
    let script = dir.path().join("paho_tls.py");
    std::fs::write(&script, PAHO_SCRIPT).unwrap();
    for (name, port) in ports {
        let args: Vec<String> = vec![
            script.display().to_string(),
            name.to_owned(),
            port.to_string(),
            dir.path().join("ca.pem").display().to_string(),
            dir.path().join("client.pem").display().to_string(),
            dir.path().join("client.key").display().to_string(),
        ];
        let out = tokio::task::spawn_blocking(move || {
            Command::new("timeout")
                .arg("60")
                .arg("python3")
                .args(&args)
                .output()
                .expect("python3 is installed")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("DONE"),
            "paho over {name}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprint!("{stdout}");
    }
    broker.shutdown().await;
}
