//! TLS, mutual TLS, WebSocket, WebSocket over TLS and Unix sockets on tokio: our client and
//! our broker (and the server flow) over each, loopback only, certificates made at test time.

mod fault_proxy;
mod interop_support;
mod pki;

use std::time::Duration;

use interop_support::*;
use mqtt_streaming_proto::{ConnAckProperties, ProtocolVersion, QoS, ReasonCode};
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_session::SubscribeRequest;
use mqtt_streaming_tokio::engine::{Dial, Listeners, Transport};
use mqtt_streaming_tokio::{
    connect_url, connect_url_with, listen_url, BrokerHandle, BrokerServer, ConnectionEvent,
    Endpoint, Error, ListenOptions, MosquittoTlsFlags, Server, ServerOptions, TlsClient,
    TlsClientOptions, TlsServerOptions, TokioRuntime, TransportOptions,
};
use pki::Pki;

const LIMIT: Duration = Duration::from_secs(30);

/// A broker on TCP, TLS, WebSocket, WebSocket over TLS and a Unix socket at once, and the
/// URLs to reach it by each.
struct Broker {
    handle: BrokerHandle,
    urls: Vec<String>,
    _dir: tempdir::TempDir,
}

async fn broker(tls: TlsServerOptions) -> Broker {
    let dir = tempdir::TempDir::new("transports");
    let options = ListenOptions::new().tls(tls.build().unwrap());
    let unix = format!("unix://{}", dir.path().join("broker.sock").display());
    let mut listeners = Vec::new();
    let mut urls = Vec::new();
    for url in [
        "mqtt://127.0.0.1:0",
        "mqtts://127.0.0.1:0",
        "ws://127.0.0.1:0/mqtt",
        "wss://127.0.0.1:0/mqtt",
        unix.as_str(),
    ] {
        let listener = listen_url(url, &options).await.unwrap();
        let mut endpoint = Endpoint::parse(url).unwrap();
        if let Ok(addr) = listener.local_addr() {
            assert!(addr.ip().is_loopback());
            endpoint.port = addr.port();
        }
        urls.push(endpoint.to_string());
        listeners.push(listener);
    }
    let handle = BrokerServer::new(BrokerConfig::default())
        .with_listener(Box::new(Listeners::new(listeners)))
        .spawn();
    Broker {
        handle,
        urls,
        _dir: dir,
    }
}

fn server_tls(pki: &Pki) -> TlsServerOptions {
    TlsServerOptions::new(pki.server_cert.as_bytes(), pki.server_key.as_bytes()).unwrap()
}

fn client_tls(pki: &Pki) -> TlsClientOptions {
    TlsClientOptions::new()
        .add_ca_pem(pki.ca.as_bytes())
        .unwrap()
}

fn transport(tls: TlsClient) -> TransportOptions {
    TransportOptions::new()
        .tls(tls)
        .connect_timeout(Duration::from_secs(10))
}

/// Subscribes and publishes QoS 0, 1 and 2 over `url` (a 200 KB payload among them: many TLS
/// records, one WebSocket message), each message received once, in order.
async fn round_trip(url: &str, transport: &TransportOptions, id: &str) {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let (client, mut events) = connect_url_with(url, transport, options(version, id, false))
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
        let big = vec![0xA5u8; 200_000];
        let payloads = [b"zero".to_vec(), b"one".to_vec(), big];
        for (qos, payload) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .zip(payloads.iter())
        {
            let outcome = client
                .publish(message(&format!("{id}/x"), qos, payload.clone()))
                .await
                .unwrap();
            assert_eq!(outcome.reason_code, ReasonCode::Success);
        }
        for payload in &payloads {
            let (publish, _) = next_message(&mut events).await;
            assert_eq!(&publish.payload[..], &payload[..], "{url}");
        }
        no_message(&mut events, Duration::from_millis(50)).await;
        client.disconnect().await.unwrap();
    }
}

async fn bounded<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("the test took too long")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_and_broker_over_tls() {
    bounded(async {
        let pki = pki::pki();
        let broker = broker(server_tls(&pki)).await;
        let tls = transport(client_tls(&pki).build().unwrap());
        round_trip(&broker.urls[1], &tls, "tls").await;
        assert!(broker.urls[1].starts_with("mqtts://127.0.0.1:"));
        broker.handle.shutdown().await;
    })
    .await;
}

/// The transports `connect_url` dials take the read low-water mark the client raises to read
/// acknowledgements in batches: TCP and, on Linux, TLS (through the record framing); a
/// WebSocket reads every byte at once.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialed_tcp_and_tls_take_the_read_low_water_mark_websocket_does_not() {
    bounded(async {
        let pki = pki::pki();
        let broker = broker(server_tls(&pki)).await;
        let tls = transport(client_tls(&pki).build().unwrap());
        for (url, supported) in broker.urls[..3].iter().zip([true, true, false]) {
            let endpoint = Endpoint::parse(url).unwrap();
            let mut dialed = TokioRuntime::dial(&endpoint, &tls).await.unwrap();
            assert_eq!(dialed.set_read_low_water(64), supported, "{url}");
            assert_eq!(dialed.set_read_low_water(1), supported, "{url}");
        }
        broker.handle.shutdown().await;
    })
    .await;
}

/// A client that publishes to its own subscription with a deep window and large payloads,
/// over TCP and over TLS: every acknowledgement arrives, and so does every delivery, in order
/// [MQTT-4.6.0-2] [MQTT-4.6.0-3]. Over TLS the acknowledgements are read in batches (on Linux
/// the socket's low-water mark follows the records, which payloads up to 40 KB cut across
/// reads). Regression (session 9): the client stopped reading while its publishes waited to
/// be written, and the broker stopped reading it while deliveries filled its transmit buffer:
/// each waited for the other, for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_publishing_to_its_own_subscription_gets_every_ack_and_delivery() {
    bounded(async {
        let pki = pki::pki();
        let broker = broker(server_tls(&pki)).await;
        let tls = transport(client_tls(&pki).build().unwrap());
        for url in &broker.urls[..2] {
            let options = options(ProtocolVersion::V5, "loop", false);
            let (client, mut events) = connect_url_with(url, &tls, options).await.unwrap();
            client
                .subscribe(SubscribeRequest::new(filter("loop/#"), QoS::AtLeastOnce))
                .await
                .unwrap();
            fn size(i: usize) -> usize {
                [4, 300, 1_500, 40_000][i % 4] + i % 7
            }
            // Deliveries are read as they come: unread events would hold input back.
            let receiving = tokio::spawn(async move {
                for i in 0..2_000 {
                    let (publish, _) = next_message(&mut events).await;
                    assert_eq!(publish.payload.len(), size(i), "message {i} in order");
                    assert_eq!(publish.payload[0], (i % 251) as u8);
                }
            });
            let mut receipts = Vec::new();
            for i in 0..2_000 {
                let payload = vec![(i % 251) as u8; size(i)];
                let publish = message("loop/t", QoS::AtLeastOnce, payload);
                receipts.push(client.begin_publish(publish).await.unwrap());
            }
            for receipt in receipts {
                assert_eq!(
                    receipt.await.unwrap().reason_code,
                    ReasonCode::Success,
                    "{url}"
                );
            }
            receiving.await.unwrap();
            client.disconnect().await.unwrap();
        }
        broker.handle.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_and_broker_over_websocket_and_websocket_tls() {
    bounded(async {
        let pki = pki::pki();
        let broker = broker(server_tls(&pki)).await;
        let tls = transport(client_tls(&pki).build().unwrap());
        assert!(broker.urls[2].starts_with("ws://") && broker.urls[2].ends_with("/mqtt"));
        round_trip(&broker.urls[2], &tls, "ws").await;
        assert!(broker.urls[3].starts_with("wss://"));
        round_trip(&broker.urls[3], &tls, "wss").await;
        broker.handle.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_and_broker_over_a_unix_socket() {
    bounded(async {
        let pki = pki::pki();
        let broker = broker(server_tls(&pki)).await;
        assert!(broker.urls[4].starts_with("unix:///"));
        round_trip(&broker.urls[4], &TransportOptions::new(), "unix").await;
        // connect_url: no options needed for a plain transport.
        let (client, _events) =
            connect_url(&broker.urls[4], options(ProtocolVersion::V5, "u2", false))
                .await
                .unwrap();
        client.disconnect().await.unwrap();
        broker.handle.shutdown().await;
    })
    .await;
}

/// One broker, five transports: a subscriber on each receives what publishers on every other
/// transport sent (the broker routes across listeners).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_into_one_broker() {
    bounded(async {
        let pki = pki::pki();
        let broker = broker(server_tls(&pki)).await;
        let tls = transport(client_tls(&pki).build().unwrap());
        let mut subscribers = Vec::new();
        for (i, url) in broker.urls.iter().enumerate() {
            let (client, events) = connect_url_with(
                url,
                &tls,
                options(ProtocolVersion::V5, &format!("s{i}"), false),
            )
            .await
            .unwrap();
            client
                .subscribe(SubscribeRequest::new(filter("all/#"), QoS::AtLeastOnce))
                .await
                .unwrap();
            subscribers.push((client, events));
        }
        for (i, url) in broker.urls.iter().enumerate() {
            let (client, _events) = connect_url_with(
                url,
                &tls,
                options(ProtocolVersion::V3_1_1, &format!("p{i}"), false),
            )
            .await
            .unwrap();
            let outcome = client
                .publish(message(&format!("all/{i}"), QoS::AtLeastOnce, url.clone()))
                .await
                .unwrap();
            assert_eq!(outcome.reason_code, ReasonCode::Success);
            client.disconnect().await.unwrap();
        }
        for (_, events) in &mut subscribers {
            for (i, url) in broker.urls.iter().enumerate() {
                let (publish, _) = next_message(events).await;
                assert_eq!(publish.topic.as_str(), format!("all/{i}"));
                assert_eq!(&publish.payload[..], url.as_bytes());
            }
        }
        broker.handle.shutdown().await;
    })
    .await;
}

/// Mutual TLS: a client with a certificate from the trusted CA gets in; one without a
/// certificate, or with one from another CA, does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_a_trusted_client_certificate() {
    bounded(async {
        let pki = pki::pki();
        let tls = server_tls(&pki)
            .require_client_cert(pki.ca.as_bytes())
            .unwrap();
        let broker = broker(tls).await;
        let with_cert = transport(
            client_tls(&pki)
                .client_cert_pem(pki.client_cert.as_bytes(), pki.client_key.as_bytes())
                .unwrap()
                .build()
                .unwrap(),
        );
        round_trip(&broker.urls[1], &with_cert, "mtls").await;
        round_trip(&broker.urls[3], &with_cert, "mwss").await;

        let without = transport(client_tls(&pki).build().unwrap());
        let rogue = transport(
            client_tls(&pki)
                .client_cert_pem(
                    pki.rogue_client_cert.as_bytes(),
                    pki.rogue_client_key.as_bytes(),
                )
                .unwrap()
                .build()
                .unwrap(),
        );
        for (name, refused) in [
            ("no certificate", &without),
            ("untrusted certificate", &rogue),
        ] {
            for url in [&broker.urls[1], &broker.urls[3]] {
                let result =
                    connect_url_with(url, refused, options(ProtocolVersion::V5, "nocert", false))
                        .await;
                assert!(result.is_err(), "{name} over {url}: let in");
            }
        }
        // Nothing stays connected (the refused handshakes were dropped).
        let mut open = usize::MAX;
        for _ in 0..100 {
            open = broker.handle.stats().await.unwrap().connections;
            if open == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(open, 0);
        broker.handle.shutdown().await;
    })
    .await;
}

/// The server's certificate must name the host (or the configured server name): another name
/// is refused, as is a certificate from a CA the client does not trust;
/// `danger_skip_hostname_verification` lets the wrong name through but not the wrong CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_host_name_and_untrusted_ca_are_refused() {
    bounded(async {
        let pki = pki::pki();
        let broker = broker(server_tls(&pki)).await;
        let url = &broker.urls[1];
        let wrong_name = transport(
            client_tls(&pki)
                .server_name("wrong.example")
                .build()
                .unwrap(),
        );
        let error = connect_url_with(url, &wrong_name, options(ProtocolVersion::V5, "w", false))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Io(_)), "{error:?}");
        assert!(format!("{error}").contains("not valid for name"), "{error}");
        let error = connect_url_with(
            &broker.urls[3],
            &wrong_name,
            options(ProtocolVersion::V5, "w", false),
        )
        .await
        .unwrap_err();
        assert!(format!("{error}").contains("not valid for name"), "{error}");

        // SNI and verification against the name given, connecting by IP address.
        let by_name = transport(client_tls(&pki).server_name("localhost").build().unwrap());
        round_trip(url, &by_name, "sni").await;

        let untrusted = TlsClientOptions::new()
            .add_ca_pem(pki.other_ca.as_bytes())
            .unwrap();
        let error = connect_url_with(
            url,
            &transport(untrusted.build().unwrap()),
            options(ProtocolVersion::V5, "u", false),
        )
        .await
        .unwrap_err();
        assert!(format!("{error}").contains("UnknownIssuer"), "{error}");

        let insecure = client_tls(&pki)
            .server_name("wrong.example")
            .danger_skip_hostname_verification();
        round_trip(url, &transport(insecure.build().unwrap()), "insecure").await;
        let insecure_untrusted = TlsClientOptions::new()
            .add_ca_pem(pki.other_ca.as_bytes())
            .unwrap()
            .danger_skip_hostname_verification();
        let error = connect_url_with(
            url,
            &transport(insecure_untrusted.build().unwrap()),
            options(ProtocolVersion::V5, "u", false),
        )
        .await
        .unwrap_err();
        assert!(format!("{error}").contains("UnknownIssuer"), "{error}");
        broker.handle.shutdown().await;
    })
    .await;
}

/// ALPN: a server that speaks only `mqtt` accepts a client offering it and refuses one that
/// offers another protocol only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_is_negotiated() {
    bounded(async {
        let pki = pki::pki();
        let broker = broker(server_tls(&pki).alpn(["mqtt"])).await;
        let good = transport(client_tls(&pki).alpn(["x-other", "mqtt"]).build().unwrap());
        round_trip(&broker.urls[1], &good, "alpn").await;
        let bad = transport(client_tls(&pki).alpn(["x-other"]).build().unwrap());
        let error = connect_url_with(
            &broker.urls[1],
            &bad,
            options(ProtocolVersion::V5, "a", false),
        )
        .await
        .unwrap_err();
        assert!(
            format!("{error}").contains("NoApplicationProtocol"),
            "{error}"
        );
        broker.handle.shutdown().await;
    })
    .await;
}

/// A client that connects to a TLS or WebSocket listener and says nothing is dropped after
/// the handshake timeout, and holds up no other client meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_holds_up_no_handshake() {
    bounded(async {
        let pki = pki::pki();
        let options_ = ListenOptions::new()
            .tls(server_tls(&pki).build().unwrap())
            .handshake_timeout(Duration::from_millis(300));
        let listener = listen_url("wss://127.0.0.1:0", &options_).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = BrokerServer::new(BrokerConfig::default())
            .with_listener(listener)
            .spawn();
        let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let url = format!("wss://127.0.0.1:{port}/");
        let tls = transport(client_tls(&pki).build().unwrap());
        round_trip(&url, &tls, "busy").await;
        // The silent one is closed once its handshake time is up.
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
        )
        .await
        .expect("the silent connection was not closed");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        handle.shutdown().await;
    })
    .await;
}

/// The server flow (our own server, not the broker) over WebSocket+TLS and a Unix socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_flow_over_wss_and_unix() {
    bounded(async {
        let pki = pki::pki();
        let dir = tempdir::TempDir::new("server-flow");
        let listen_options = ListenOptions::new().tls(server_tls(&pki).build().unwrap());
        let wss = listen_url("wss://127.0.0.1:0/", &listen_options)
            .await
            .unwrap();
        let port = wss.local_addr().unwrap().port();
        let unix_url = format!("unix://{}", dir.path().join("s.sock").display());
        let unix = listen_url(&unix_url, &listen_options).await.unwrap();
        let server = Server::with_listener(
            TokioRuntime,
            Box::new(Listeners::new([wss, unix])),
            ServerOptions::default(),
        );
        let serving = tokio::spawn(async move {
            for _ in 0..2 {
                let mut conn = server.accept().await.unwrap();
                match conn.events().recv().await {
                    Some(ConnectionEvent::Connect(_)) => conn
                        .accept(ConnAckProperties::default(), None)
                        .await
                        .unwrap(),
                    other => panic!("{other:?}"),
                }
                tokio::spawn(async move { while conn.events().recv().await.is_some() {} });
            }
            server
        });
        let tls = transport(client_tls(&pki).build().unwrap());
        for url in [format!("wss://localhost:{port}/"), unix_url.clone()] {
            let (client, _events) =
                connect_url_with(&url, &tls, options(ProtocolVersion::V5, "flow", false))
                    .await
                    .unwrap_or_else(|e| panic!("{url}: {e}"));
            client.disconnect().await.unwrap();
        }
        serving.await.unwrap().shutdown().await;
    })
    .await;
}

/// A URL whose scheme is unknown, or a TLS listener without a certificate, is an error, not a
/// plain TCP fallback.
#[tokio::test]
async fn misconfigurations_are_errors() {
    let error = connect_url(
        "http://127.0.0.1:1",
        options(ProtocolVersion::V5, "x", false),
    )
    .await
    .unwrap_err();
    assert!(format!("{error}").contains("unknown scheme"), "{error}");
    let error = listen_url("mqtts://127.0.0.1:0", &ListenOptions::new())
        .await
        .err()
        .unwrap();
    assert!(format!("{error}").contains("ListenOptions::tls"), "{error}");
    assert!(TlsClientOptions::new().build().is_err(), "no roots");
}

/// mosquitto's client TLS flags mean what they mean to mosquitto_pub: `--cafile` trusts a CA,
/// `--cert`/`--key` present a client certificate (mutual TLS), `--insecure` skips only the
/// host-name check, `--tls-version` takes `tlsv1.2`/`tlsv1.3`; `--cert` without `--key` and an
/// unknown version are errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_tls_flags() {
    bounded(async {
        let pki = pki::pki();
        let dir = tempdir::TempDir::new("flags");
        for (name, pem) in [
            ("ca.pem", &pki.ca),
            ("client.pem", &pki.client_cert),
            ("client.key", &pki.client_key),
        ] {
            std::fs::write(dir.path().join(name), pem).unwrap();
        }
        let broker = broker(
            server_tls(&pki)
                .require_client_cert(pki.ca.as_bytes())
                .unwrap(),
        )
        .await;
        let url = &broker.urls[1];
        let flags = MosquittoTlsFlags {
            cafile: Some(dir.path().join("ca.pem")),
            cert: Some(dir.path().join("client.pem")),
            key: Some(dir.path().join("client.key")),
            tls_version: Some("tlsv1.3".into()),
            alpn: Some("mqtt".into()),
            ..Default::default()
        };
        let tls = TlsClientOptions::from_mosquitto_flags(&flags).unwrap();
        round_trip(url, &transport(tls.build().unwrap()), "flags").await;

        let wrong = TlsClientOptions::from_mosquitto_flags(&flags)
            .unwrap()
            .server_name("wrong.example");
        let connecting = connect_url_with(
            url,
            &transport(wrong.build().unwrap()),
            options(ProtocolVersion::V5, "f", false),
        )
        .await;
        assert!(
            connecting.is_err(),
            "a wrong host name let in without --insecure"
        );
        let insecure = MosquittoTlsFlags {
            insecure: true,
            ..flags.clone()
        };
        let tls = TlsClientOptions::from_mosquitto_flags(&insecure)
            .unwrap()
            .server_name("wrong.example");
        round_trip(url, &transport(tls.build().unwrap()), "flags-insecure").await;

        let capath = MosquittoTlsFlags {
            cafile: None,
            capath: Some(dir.path().to_owned()),
            ..flags.clone()
        };
        round_trip(
            url,
            &transport(
                TlsClientOptions::from_mosquitto_flags(&capath)
                    .unwrap()
                    .build()
                    .unwrap(),
            ),
            "flags-capath",
        )
        .await;

        let no_key = MosquittoTlsFlags {
            key: None,
            ..flags.clone()
        };
        assert!(TlsClientOptions::from_mosquitto_flags(&no_key).is_err());
        let old = MosquittoTlsFlags {
            tls_version: Some("tlsv1.1".into()),
            ..flags.clone()
        };
        assert!(TlsClientOptions::from_mosquitto_flags(&old).is_err());
        broker.handle.shutdown().await;
    })
    .await;
}

/// `connect_url_reconnecting_with` over TLS through a proxy that cuts the connection at random
/// byte offsets of the client's stream (inside TLS records as often as not) and drops every
/// connection at once now and then: each reconnect dials the URL again (a new TCP connection
/// and a new TLS handshake), the broker keeps the session, and no QoS 1 message is lost either
/// way (every publish resolves with Success, the client receives every message it published
/// to its own subscription at least once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_client_over_tls_loses_no_qos1_message_through_cuts() {
    use mqtt_streaming_tokio::{connect_url_reconnecting_with, Event, ReconnectPolicy};
    use std::collections::BTreeSet;

    tokio::time::timeout(Duration::from_secs(90), async {
        let pki = pki::pki();
        let broker = broker(server_tls(&pki)).await;
        let tls_url = Endpoint::parse(&broker.urls[1]).unwrap();
        let proxy = fault_proxy::FaultProxy::start(
            format!("127.0.0.1:{}", tls_url.port).parse().unwrap(),
            (800, 3_000),
            0x7e57_c0de,
        )
        .await;
        let url = format!("mqtts://127.0.0.1:{}", proxy.addr.port());
        let policy = ReconnectPolicy {
            min_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(5),
            ..ReconnectPolicy::default()
        };
        let mut opts = options(ProtocolVersion::V5, "tls-reconnect", true);
        opts.session.connack_timeout = Duration::from_secs(5);
        opts.session.receive_maximum = 16;
        opts.session.max_inflight = 16;
        let tls = transport(client_tls(&pki).build().unwrap());
        let (client, mut events) = connect_url_reconnecting_with(&url, &tls, opts, policy)
            .await
            .unwrap();
        client
            .subscribe(SubscribeRequest::new(filter("tlsrc/#"), QoS::AtLeastOnce))
            .await
            .unwrap();
        proxy.set_faults(true);

        const N: u32 = 1_000;
        let received = tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            let mut connected = 0usize;
            while seen.len() < N as usize {
                match events.recv().await {
                    Some(Event::Message { publish, .. }) => {
                        let seq = u32::from_be_bytes(publish.payload[..4].try_into().unwrap());
                        seen.insert(seq);
                    }
                    Some(Event::Connected(_)) => connected += 1,
                    Some(_) => {}
                    None => break,
                }
            }
            (seen, connected)
        });
        let mut receipts = Vec::new();
        for seq in 0..N {
            if seq % 250 == 125 {
                proxy.cut_all();
            }
            let receipt = client
                .begin_publish(message(
                    "tlsrc/x",
                    QoS::AtLeastOnce,
                    seq.to_be_bytes().to_vec(),
                ))
                .await
                .unwrap();
            receipts.push(receipt);
        }
        for receipt in receipts {
            let outcome = receipt.await.unwrap();
            assert_eq!(outcome.reason_code, ReasonCode::Success);
        }
        let (seen, connected) = received.await.unwrap();
        assert_eq!(seen.len(), N as usize, "QoS 1 messages lost");
        assert_eq!(seen.iter().next_back(), Some(&(N - 1)));
        // Reconnected over TLS several times (each a new handshake through the proxy).
        assert!(proxy.cuts() >= 3, "only {} random cuts", proxy.cuts());
        assert!(connected >= 3, "only {connected} reconnects seen");
        assert!(proxy.connections() >= 4);
        proxy.set_faults(false);
        client.disconnect().await.unwrap();
        broker.handle.shutdown().await;
    })
    .await
    .expect("the test took too long");
}
