//! TLS, mutual TLS, WebSocket, WebSocket over TLS and Unix sockets on smol (futures-rustls,
//! async-tungstenite's core, async-io's Unix sockets): our client and our broker over each,
//! and the WebSocket binding's framing rules seen from a raw WebSocket peer.

#[path = "../../adapter-tokio/tests/pki/mod.rs"]
mod pki;

use std::future::Future;
use std::time::Duration;

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::StreamExt;
use mqtt_streaming_proto::{
    Connect, MqttString, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName,
};
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_session::{Message, SubscribeRequest};
use mqtt_streaming_smol::engine::Listeners;
use mqtt_streaming_smol::{
    connect_url_with, listen_url, BrokerHandle, BrokerServer, ClientEvents, ClientOptions,
    Endpoint, Event, ListenOptions, TlsClientOptions, TlsServerOptions, TransportOptions,
};

fn bounded<T>(future: impl Future<Output = T>) -> T {
    smol::block_on(smol::future::or(future, async {
        smol::Timer::after(Duration::from_secs(30)).await;
        panic!("the test took too long")
    }))
}

fn options(id: &str) -> ClientOptions {
    let mut connect = Connect::new(ProtocolVersion::V5, MqttString::new(id).unwrap());
    connect.keep_alive = 30;
    ClientOptions::new(connect)
}

async fn next_payload(events: &mut ClientEvents) -> Vec<u8> {
    loop {
        match events.recv().await {
            Some(Event::Message { publish, .. }) => return publish.payload.to_vec(),
            Some(Event::Closed { reason, .. }) => panic!("closed: {reason}"),
            Some(_) => {}
            None => panic!("events ended"),
        }
    }
}

struct Broker {
    handle: BrokerHandle,
    urls: Vec<String>,
    dir: std::path::PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn broker(tls: TlsServerOptions) -> Broker {
    let dir = std::env::temp_dir().join(format!(
        "smol-transports-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let options = ListenOptions::new().tls(tls.build().unwrap());
    let unix = format!("unix://{}", dir.join("b.sock").display());
    let mut listeners = Vec::new();
    let mut urls = Vec::new();
    for url in [
        "mqtts://127.0.0.1:0",
        "ws://127.0.0.1:0/mqtt",
        "wss://127.0.0.1:0/mqtt",
        unix.as_str(),
    ] {
        let listener = listen_url(url, &options).await.unwrap();
        let mut endpoint = Endpoint::parse(url).unwrap();
        if let Ok(addr) = listener.local_addr() {
            endpoint.port = addr.port();
        }
        urls.push(endpoint.to_string());
        listeners.push(listener);
    }
    let handle = BrokerServer::new(BrokerConfig::default())
        .with_listener(Box::new(Listeners::new(listeners)))
        .spawn();
    Broker { handle, urls, dir }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn server_tls(pki: &pki::Pki) -> TlsServerOptions {
    TlsServerOptions::new(pki.server_cert.as_bytes(), pki.server_key.as_bytes()).unwrap()
}

fn client_tls(pki: &pki::Pki) -> TlsClientOptions {
    TlsClientOptions::new()
        .add_ca_pem(pki.ca.as_bytes())
        .unwrap()
}

async fn round_trip(url: &str, transport: &TransportOptions, id: &str) {
    let (client, mut events) = connect_url_with(url, transport, options(id))
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    client
        .subscribe(SubscribeRequest::new(
            TopicFilter::new(&format!("{id}/#")).unwrap(),
            QoS::ExactlyOnce,
        ))
        .await
        .unwrap();
    let big = vec![7u8; 150_000];
    for (qos, payload) in [
        (QoS::AtLeastOnce, b"one".to_vec()),
        (QoS::ExactlyOnce, big.clone()),
    ] {
        let topic = TopicName::new(&format!("{id}/x")).unwrap();
        let outcome = client
            .publish(Message::new(topic, qos, payload))
            .await
            .unwrap();
        assert_eq!(outcome.reason_code, ReasonCode::Success);
    }
    assert_eq!(next_payload(&mut events).await, b"one");
    assert_eq!(next_payload(&mut events).await, big, "{url}");
    client.disconnect().await.unwrap();
}

#[test]
fn our_client_and_broker_over_every_transport_on_smol() {
    bounded(async {
        let pki = pki::pki();
        let broker = broker(server_tls(&pki)).await;
        let tls = TransportOptions::new().tls(client_tls(&pki).build().unwrap());
        for (i, url) in broker.urls.iter().enumerate() {
            round_trip(url, &tls, &format!("t{i}")).await;
        }
        broker.handle.shutdown().await;
    });
}

#[test]
fn mutual_tls_and_host_names_on_smol() {
    bounded(async {
        let pki = pki::pki();
        let broker = broker(
            server_tls(&pki)
                .require_client_cert(pki.ca.as_bytes())
                .unwrap(),
        )
        .await;
        let with_cert = TransportOptions::new().tls(
            client_tls(&pki)
                .client_cert_pem(pki.client_cert.as_bytes(), pki.client_key.as_bytes())
                .unwrap()
                .build()
                .unwrap(),
        );
        round_trip(&broker.urls[0], &with_cert, "m").await;
        round_trip(&broker.urls[2], &with_cert, "mw").await;
        let without = TransportOptions::new().tls(client_tls(&pki).build().unwrap());
        for url in [&broker.urls[0], &broker.urls[2]] {
            assert!(
                connect_url_with(url, &without, options("no"))
                    .await
                    .is_err(),
                "{url}"
            );
        }
        let wrong = TransportOptions::new().tls(
            client_tls(&pki)
                .client_cert_pem(pki.client_cert.as_bytes(), pki.client_key.as_bytes())
                .unwrap()
                .server_name("wrong.example")
                .build()
                .unwrap(),
        );
        let error = connect_url_with(&broker.urls[0], &wrong, options("w"))
            .await
            .unwrap_err();
        assert!(format!("{error}").contains("not valid for name"), "{error}");
        // Nothing stays connected (the refused handshakes were dropped).
        let mut open = usize::MAX;
        for _ in 0..100 {
            open = broker.handle.stats().await.unwrap().connections;
            if open == 0 {
                break;
            }
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        assert_eq!(open, 0);
        broker.handle.shutdown().await;
    });
}

/// The WebSocket binding seen from a raw WebSocket client: the subprotocol `mqtt` is answered
/// ([MQTT-6.0.0-4]); a CONNECT split across two binary frames and a SUBSCRIBE and a PUBLISH in
/// one frame are read as the packets they are ([MQTT-6.0.0-2]); a text frame closes the
/// connection ([MQTT-6.0.0-1]); a client offering only another subprotocol is refused.
#[test]
fn websocket_framing_mqtt_6_0_0() {
    bounded(async {
        let broker = broker(server_tls(&pki::pki())).await;
        let url = broker.urls[1].clone();
        let endpoint = Endpoint::parse(&url).unwrap();
        let raw = |protocol: &'static str| {
            let url = url.clone();
            let authority = endpoint.authority();
            async move {
                let stream = smol::net::TcpStream::connect(authority).await.unwrap();
                let mut request = url.into_client_request().unwrap();
                request
                    .headers_mut()
                    .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
                async_tungstenite::client_async(request, stream).await
            }
        };
        let (mut ws, response) = raw("mqtt").await.unwrap();
        assert_eq!(response.headers()["Sec-WebSocket-Protocol"], "mqtt");
        // CONNECT (3.1.1, client id "raw"), split after 7 bytes.
        let connect: &[u8] = &[
            0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 3, b'r', b'a', b'w',
        ];
        ws.send(WsMessage::binary(connect[..7].to_vec()))
            .await
            .unwrap();
        ws.send(WsMessage::binary(connect[7..].to_vec()))
            .await
            .unwrap();
        // SUBSCRIBE a (QoS 0) and PUBLISH a "hi" (QoS 0), one frame.
        let two: &[u8] = &[
            0x82, 6, 0, 1, 0, 1, b'a', 0, 0x30, 5, 0, 1, b'a', b'h', b'i',
        ];
        ws.send(WsMessage::binary(two.to_vec())).await.unwrap();
        let expected: &[u8] = &[
            0x20, 2, 0, 0, // CONNACK
            0x90, 3, 0, 1, 0, // SUBACK
            0x30, 5, 0, 1, b'a', b'h', b'i', // the PUBLISH back
        ];
        let mut got = Vec::new();
        while got.len() < expected.len() {
            match ws.next().await {
                Some(Ok(WsMessage::Binary(data))) => got.extend_from_slice(&data),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, expected);
        // A text frame: the broker closes the connection.
        ws.send(WsMessage::text("not mqtt")).await.unwrap();
        match ws.next().await {
            None | Some(Ok(WsMessage::Close(_))) | Some(Err(_)) => {}
            Some(Ok(other)) => panic!("after a text frame: {other:?}"),
        }
        // Only another subprotocol offered: refused.
        assert!(raw("not-mqtt").await.is_err());
        broker.handle.shutdown().await;
    });
}

/// Our WebSocket client seen from a raw WebSocket server: it offers the subprotocol `mqtt`
/// ([MQTT-6.0.0-3]) and sends its CONNECT in a binary frame ([MQTT-6.0.0-1]); a server that
/// answers without the subprotocol is refused ([MQTT-6.0.0-4]).
#[test]
fn websocket_client_mqtt_6_0_0_3() {
    use async_tungstenite::tungstenite::handshake::server::{Request, Response};
    bounded(async {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = smol::spawn(async move {
            let mut offered = Vec::new();
            for answer in [true, false] {
                let (stream, _) = listener.accept().await.unwrap();
                let seen = &mut offered;
                let callback = move |request: &Request, mut response: Response| {
                    let protocols = request
                        .headers()
                        .get("Sec-WebSocket-Protocol")
                        .map(|v| v.to_str().unwrap().to_owned());
                    seen.push(protocols);
                    if answer {
                        response
                            .headers_mut()
                            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
                    }
                    Ok(response)
                };
                let Ok(mut ws) = async_tungstenite::accept_hdr_async(stream, callback).await else {
                    continue;
                };
                if answer {
                    match ws.next().await {
                        Some(Ok(WsMessage::Binary(data))) => {
                            assert_eq!(data[0], 0x10, "a CONNECT first")
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
            offered
        });
        let url = format!("ws://127.0.0.1:{port}/mqtt");
        let transport = TransportOptions::new().connect_timeout(Duration::from_secs(5));
        let mut short = options("ws-client");
        short.connect.keep_alive = 5;
        // The server reads the CONNECT and hangs up without a CONNACK: the connect fails, after
        // the server saw what it needed.
        assert!(connect_url_with(&url, &transport, short.clone())
            .await
            .is_err());
        // No subprotocol in the answer: refused during the handshake.
        let error = connect_url_with(&url, &transport, short).await.unwrap_err();
        assert!(
            format!("{error}").to_lowercase().contains("subprotocol"),
            "{error}"
        );
        let offered = server.await;
        assert_eq!(offered, [Some("mqtt".to_owned()), Some("mqtt".to_owned())]);
    });
}

/// `connect_url_reconnecting_with` on smol, over TLS, through a broker restart (its listener
/// closed, a new broker without the old session bound on the same port): the client dials the
/// URL again (a new TLS handshake), subscribes again since the session was lost, and the QoS 1
/// message published while the broker was down is acknowledged and delivered once the
/// re-subscription is in.
#[test]
fn reconnecting_client_over_tls_through_a_broker_restart_on_smol() {
    use mqtt_streaming_smol::{connect_url_reconnecting_with, ReconnectPolicy};

    bounded(async {
        let pki = pki::pki();
        let listen = ListenOptions::new().tls(server_tls(&pki).build().unwrap());
        let start = |port: u16| {
            let listen = listen.clone();
            async move {
                let url = format!("mqtts://127.0.0.1:{port}");
                let listener = loop {
                    match listen_url(&url, &listen).await {
                        Ok(listener) => break listener,
                        Err(_) => smol::Timer::after(Duration::from_millis(20)).await,
                    };
                };
                let port = listener.local_addr().unwrap().port();
                let handle = BrokerServer::new(BrokerConfig::default())
                    .with_listener(listener)
                    .spawn();
                (handle, port)
            }
        };
        let (first, port) = start(0).await;
        let tls = TransportOptions::new().tls(client_tls(&pki).build().unwrap());
        let policy = ReconnectPolicy {
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            ..ReconnectPolicy::default()
        };
        let mut opts = options("smol-rc");
        opts.connect.clean_start = false;
        opts.connect.properties.session_expiry_interval = Some(3600);
        let url = format!("mqtts://127.0.0.1:{port}");
        let (client, mut events) = connect_url_reconnecting_with(&url, &tls, opts, policy)
            .await
            .unwrap();
        client
            .subscribe(SubscribeRequest::new(
                TopicFilter::new("rc/#").unwrap(),
                QoS::AtLeastOnce,
            ))
            .await
            .unwrap();
        let message = |payload: &'static str| {
            Message::new(TopicName::new("rc/x").unwrap(), QoS::AtLeastOnce, payload)
        };
        client.publish(message("before")).await.unwrap();
        assert_eq!(next_payload(&mut events).await, b"before");

        first.shutdown().await;
        let receipt = client.begin_publish(message("while down")).await.unwrap();
        let (second, again) = start(port).await;
        assert_eq!(again, port);
        let outcome = receipt.await.unwrap();
        assert_eq!(outcome.reason_code, ReasonCode::Success);
        // Lost, reconnected (a new TLS handshake) to a broker without the session.
        let mut reconnected = false;
        let payload = loop {
            match events.recv().await {
                Some(Event::Message { publish, .. }) => break publish.payload.to_vec(),
                Some(Event::Closed { resumable, .. }) => assert!(resumable),
                Some(Event::Connected(connack)) => {
                    assert!(!connack.session_present);
                    reconnected = true;
                }
                Some(_) => {}
                None => panic!("events ended"),
            }
        };
        assert!(reconnected);
        assert_eq!(payload, b"while down");
        client.disconnect().await.unwrap();
        second.shutdown().await;
    });
}
