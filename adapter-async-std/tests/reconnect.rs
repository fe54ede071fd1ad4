//! A client that reconnects by itself on async-std (`connect_tcp_reconnecting`): the server
//! drops the first connection; the driver connects again by itself, and a publish awaited
//! while the link is down resolves with the new connection's PUBACK. The server is
//! mqtt-streaming-tokio's server flow, on a tokio runtime of its own thread.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use mqtt_streaming_async_std::{connect_tcp_reconnecting, ClientOptions, Event, ReconnectPolicy};
use mqtt_streaming_proto::{
    ConnAckProperties, Connect, MqttString, ProtocolVersion, QoS, TopicName,
};
use mqtt_streaming_session::Message;
use mqtt_streaming_tokio::{ConnectionEvent, Server, ServerOptions};

/// A server that accepts every CONNECT, drops its first connection at once and reports the
/// payloads published on later ones.
fn server(payloads: mpsc::Sender<Vec<u8>>) -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let server = Server::bind("127.0.0.1:0", ServerOptions::default())
                .await
                .unwrap();
            tx.send(server.local_addr().unwrap()).unwrap();
            for round in 0..2 {
                let mut conn = server.accept().await.unwrap();
                while let Some(event) = conn.events().recv().await {
                    match event {
                        ConnectionEvent::Connect(_) => {
                            conn.accept(ConnAckProperties::default(), None)
                                .await
                                .unwrap();
                            if round == 0 {
                                break; // dropping the connection closes it
                            }
                        }
                        ConnectionEvent::Message { publish, .. } => {
                            let _ = payloads.send(publish.payload.to_vec());
                        }
                        ConnectionEvent::Closed { .. } => break,
                        _ => {}
                    }
                }
            }
        });
    });
    rx.recv().unwrap()
}

#[test]
fn async_std_client_reconnects_by_itself() {
    let (payloads_tx, payloads) = mpsc::channel();
    let addr = server(payloads_tx);
    async_std::task::block_on(async {
        let connect = Connect::new(ProtocolVersion::V5, MqttString::new("as-auto").unwrap());
        let policy = ReconnectPolicy {
            min_delay: Duration::from_millis(10),
            ..ReconnectPolicy::default()
        };
        let (client, mut events) =
            connect_tcp_reconnecting(addr, ClientOptions::new(connect), policy)
                .await
                .unwrap();
        let mut states = Vec::new();
        let outcome = async_std::future::timeout(Duration::from_secs(10), async {
            loop {
                match events.recv().await.unwrap() {
                    Event::Closed { resumable, .. } => {
                        assert!(resumable);
                        break;
                    }
                    _ => continue,
                }
            }
            // Awaited while the link is down, from this task alone.
            let topic = TopicName::new("as/t").unwrap();
            client
                .publish(Message::new(topic, QoS::AtLeastOnce, "after"))
                .await
        })
        .await
        .expect("bounded in time")
        .unwrap();
        assert!(outcome.is_success());
        while let Some(event) = events.try_recv() {
            match event {
                Event::Reconnecting { attempt, .. } => {
                    states.push(format!("reconnecting {attempt}"))
                }
                Event::Connected(_) => states.push("connected".to_owned()),
                _ => {}
            }
        }
        assert_eq!(states, ["reconnecting 1", "connected"]);
        assert_eq!(
            payloads.recv_timeout(Duration::from_secs(5)).unwrap(),
            b"after"
        );
        client.disconnect().await.unwrap();
    });
}
