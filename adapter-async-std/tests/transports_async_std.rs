//! TLS, mutual TLS, WebSocket over TLS and a Unix socket on async-std: our client and our
//! broker over each (futures-rustls, async-tungstenite's core, async-io's Unix sockets).

#[path = "../../adapter-tokio/tests/pki/mod.rs"]
mod pki;

use std::time::Duration;

use mqtt_streaming_async_std::engine::Listeners;
use mqtt_streaming_async_std::{
    connect_url_with, listen_url, BrokerServer, ClientOptions, Endpoint, Event, ListenOptions,
    TlsClientOptions, TlsServerOptions, TransportOptions,
};
use mqtt_streaming_proto::{
    Connect, MqttString, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName,
};
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_session::{Message, SubscribeRequest};

fn options(id: &str) -> ClientOptions {
    let connect = Connect::new(ProtocolVersion::V3_1_1, MqttString::new(id).unwrap());
    ClientOptions::new(connect)
}

#[test]
fn tls_mutual_tls_wss_and_unix_on_async_std() {
    async_std::task::block_on(async_std::future::timeout(Duration::from_secs(30), async {
        let pki = pki::pki();
        let dir = std::env::temp_dir().join(format!("async-std-transports-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tls = TlsServerOptions::new(pki.server_cert.as_bytes(), pki.server_key.as_bytes())
            .unwrap()
            .require_client_cert(pki.ca.as_bytes())
            .unwrap();
        let listen = ListenOptions::new().tls(tls.build().unwrap());
        let unix = format!("unix://{}", dir.join("b.sock").display());
        let mut listeners = Vec::new();
        let mut urls = Vec::new();
        for url in ["mqtts://127.0.0.1:0", "wss://127.0.0.1:0/", unix.as_str()] {
            let listener = listen_url(url, &listen).await.unwrap();
            let mut endpoint = Endpoint::parse(url).unwrap();
            if let Ok(addr) = listener.local_addr() {
                endpoint.port = addr.port();
            }
            urls.push(endpoint.to_string());
            listeners.push(listener);
        }
        let broker = BrokerServer::new(BrokerConfig::default())
            .with_listener(Box::new(Listeners::new(listeners)))
            .spawn();
        let client_tls = TlsClientOptions::new()
            .add_ca_pem(pki.ca.as_bytes())
            .unwrap();
        let with_cert = TransportOptions::new().tls(
            TlsClientOptions::new()
                .add_ca_pem(pki.ca.as_bytes())
                .unwrap()
                .client_cert_pem(pki.client_cert.as_bytes(), pki.client_key.as_bytes())
                .unwrap()
                .build()
                .unwrap(),
        );
        for (i, url) in urls.iter().enumerate() {
            let (client, mut events) = connect_url_with(url, &with_cert, options(&format!("c{i}")))
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            let filter = TopicFilter::new(&format!("t{i}")).unwrap();
            client
                .subscribe(SubscribeRequest::new(filter, QoS::AtLeastOnce))
                .await
                .unwrap();
            let topic = TopicName::new(&format!("t{i}")).unwrap();
            let outcome = client
                .publish(Message::new(topic, QoS::AtLeastOnce, url.clone()))
                .await
                .unwrap();
            assert_eq!(outcome.reason_code, ReasonCode::Success);
            loop {
                match events.recv().await.expect("events ended") {
                    Event::Message { publish, .. } => {
                        assert_eq!(&publish.payload[..], url.as_bytes());
                        break;
                    }
                    Event::Closed { reason, .. } => panic!("{url}: closed: {reason}"),
                    _ => {}
                }
            }
            client.disconnect().await.unwrap();
        }
        // Mutual TLS: no client certificate, no connection.
        let without = TransportOptions::new().tls(client_tls.build().unwrap());
        for url in &urls[..2] {
            assert!(
                connect_url_with(url, &without, options("none"))
                    .await
                    .is_err(),
                "{url}"
            );
        }
        broker.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }))
    .expect("the test took too long");
}
