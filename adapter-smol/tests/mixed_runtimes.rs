//! Mixed runtimes interoperate: a smol client against a tokio server flow and a tokio broker,
//! and a tokio client against a smol server flow and a smol broker, each runtime on its own
//! thread, over loopback TCP.

use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::Duration;

use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicFilter, TopicName};
use mqtt_streaming_session::{CloseReason, Initiator, Message, SubscribeRequest};

// The echo server of the quickstarts (written against the shared `ServerConnection`).
use mqtt_streaming_smol as adapter;
#[path = "../examples/common/echo.rs"]
mod echo;

fn options(id: &str) -> mqtt_streaming_smol::ClientOptions {
    let mut connect = Connect::new(ProtocolVersion::V5, MqttString::new(id).unwrap());
    connect.keep_alive = 10;
    mqtt_streaming_smol::ClientOptions::new(connect)
}

/// Subscribes, publishes at QoS 0, 1 and 2 and checks that each resolves with Success and
/// comes back once, in order; then disconnects. The same code drives either client, since
/// `Client` is the engine's one `ClientOn` on each runtime and `ClientEvents` the same type in
/// every adapter.
async fn exercise<R: mqtt_streaming_smol::engine::Runtime>(
    client: mqtt_streaming_smol::engine::ClientOn<R>,
    mut events: mqtt_streaming_smol::ClientEvents,
) {
    let suback = client
        .subscribe(SubscribeRequest::new(
            TopicFilter::new("mix/#").unwrap(),
            QoS::ExactlyOnce,
        ))
        .await
        .unwrap();
    assert_eq!(
        suback.reason_codes,
        [mqtt_streaming_proto::ReasonCode::granted(QoS::ExactlyOnce)]
    );
    let levels = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    for (n, qos) in levels.into_iter().enumerate() {
        let message = Message::new(TopicName::new("mix/t").unwrap(), qos, format!("m{n}"));
        assert!(client.publish(message).await.unwrap().is_success());
    }
    for (n, qos) in levels.into_iter().enumerate() {
        loop {
            match events.recv().await.expect("events ended") {
                mqtt_streaming_smol::Event::Message { publish, .. } => {
                    assert_eq!(publish.qos_pid.qos(), qos);
                    assert_eq!(publish.payload, format!("m{n}").as_bytes());
                    break;
                }
                mqtt_streaming_smol::Event::Closed { reason, .. } => panic!("closed: {reason:?}"),
                _ => {}
            }
        }
    }
    client.disconnect().await.unwrap();
    loop {
        if let mqtt_streaming_smol::Event::Closed {
            initiator, reason, ..
        } = events.recv().await.expect("Closed comes last")
        {
            assert_eq!(initiator, Initiator::Application);
            assert_eq!(
                reason,
                CloseReason::Disconnect(mqtt_streaming_proto::ReasonCode::Success)
            );
            break;
        }
    }
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn smol_client_against_tokio_server() {
    let (addr_tx, addr_rx) = std_mpsc::channel::<SocketAddr>();
    let server = thread::spawn(move || {
        tokio_runtime().block_on(async {
            let server = mqtt_streaming_tokio::Server::bind(
                "127.0.0.1:0",
                mqtt_streaming_tokio::ServerOptions::default(),
            )
            .await
            .unwrap();
            addr_tx.send(server.local_addr().unwrap()).unwrap();
            let conn = server.accept().await.unwrap();
            echo::echo(conn).await.unwrap();
            server.shutdown().await;
        });
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    smol::block_on(async {
        let (client, events) = mqtt_streaming_smol::connect_tcp(addr, options("smol-client"))
            .await
            .unwrap();
        exercise(client, events).await;
    });
    server.join().expect("the tokio server ran to its end");
}

#[test]
fn tokio_client_against_smol_server() {
    let (addr_tx, addr_rx) = std_mpsc::channel::<SocketAddr>();
    let server = thread::spawn(move || {
        smol::block_on(async {
            let server = mqtt_streaming_smol::Server::bind(
                "127.0.0.1:0",
                mqtt_streaming_smol::ServerOptions::default(),
            )
            .await
            .unwrap();
            addr_tx.send(server.local_addr().unwrap()).unwrap();
            let conn = server.accept().await.unwrap();
            echo::echo(conn).await.unwrap();
            server.shutdown().await;
        });
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    tokio_runtime().block_on(async {
        let (client, events) = mqtt_streaming_tokio::connect_tcp(addr, options("tokio-client"))
            .await
            .unwrap();
        exercise(client, events).await;
    });
    server.join().expect("the smol server ran to its end");
}

/// A broker on one runtime, a client on the other: the client subscribes through the broker to
/// its own topic, so `exercise` sees every message come back through the broker's routing.
#[test]
fn smol_client_against_tokio_broker() {
    let (addr_tx, addr_rx) = std_mpsc::channel::<SocketAddr>();
    let (stop_tx, stop_rx) = std_mpsc::channel::<()>();
    let broker = thread::spawn(move || {
        tokio_runtime().block_on(async {
            let broker = mqtt_streaming_tokio::BrokerServer::bind(
                "127.0.0.1:0",
                mqtt_streaming_session::broker::BrokerConfig::default(),
            )
            .await
            .unwrap();
            addr_tx.send(broker.local_addr().unwrap()).unwrap();
            let handle = broker.spawn();
            tokio::task::spawn_blocking(move || stop_rx.recv().ok())
                .await
                .unwrap();
            let stats = handle.stats().await.unwrap();
            handle.shutdown().await;
            stats
        })
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    smol::block_on(async {
        let (client, events) = mqtt_streaming_smol::connect_tcp(addr, options("smol-client"))
            .await
            .unwrap();
        exercise(client, events).await;
    });
    stop_tx.send(()).unwrap();
    let stats = broker.join().expect("the tokio broker ran to its end");
    assert_eq!(
        stats.messages_in, 3,
        "QoS 0, 1 and 2 routed by the tokio broker"
    );
}

#[test]
fn tokio_client_against_smol_broker() {
    let (addr_tx, addr_rx) = std_mpsc::channel::<SocketAddr>();
    let (stop_tx, stop_rx) = std_mpsc::channel::<()>();
    let broker = thread::spawn(move || {
        smol::block_on(async {
            let broker = mqtt_streaming_smol::BrokerServer::bind(
                "127.0.0.1:0",
                mqtt_streaming_session::broker::BrokerConfig::default(),
            )
            .await
            .unwrap();
            addr_tx.send(broker.local_addr().unwrap()).unwrap();
            let handle = broker.spawn();
            smol::unblock(move || stop_rx.recv().ok()).await;
            let stats = handle.stats().await.unwrap();
            handle.shutdown().await;
            stats
        })
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    tokio_runtime().block_on(async {
        let (client, events) = mqtt_streaming_tokio::connect_tcp(addr, options("tokio-client"))
            .await
            .unwrap();
        exercise(client, events).await;
    });
    stop_tx.send(()).unwrap();
    let stats = broker.join().expect("the smol broker ran to its end");
    assert_eq!(
        stats.messages_in, 3,
        "QoS 0, 1 and 2 routed by the smol broker"
    );
}
