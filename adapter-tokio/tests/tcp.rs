//! The client against the server flow over loopback TCP (real sockets, real time).

mod support;

use std::time::Duration;

use mqtt_streaming_proto::{ProtocolVersion, QoS, ReasonCode};
use mqtt_streaming_session::{CloseReason, Initiator, SubscribeRequest};
use mqtt_streaming_tokio::{
    connect_tcp, Client, ClientEvents, ClientOptions, Error, Server, ServerOptions,
};
use support::*;

fn options(version: ProtocolVersion, id: &str) -> ClientOptions {
    let mut connect = connect_packet(version, id);
    connect.keep_alive = 10;
    ClientOptions::new(connect)
}

async fn tcp_pair(server: &Server, options: ClientOptions) -> (Client, ClientEvents, Router) {
    let addr = server.local_addr().unwrap();
    let (client, router) = tokio::join!(connect_tcp(addr, options), async {
        let conn = server.accept().await.unwrap();
        assert!(conn.peer_addr().is_some_and(|a| a.ip().is_loopback()));
        spawn_router(conn, Behaviour::default())
    });
    let (client, events) = client.unwrap();
    (client, events, router)
}

/// QoS 0/1/2 both ways over TCP, for both protocol versions: every publish resolves with
/// Success, every message comes back once, in order, at its QoS ([MQTT-3.3.4-1] 3.1.1 and 5.0).
/// Our client and our server each support TCP, an ordered, lossless, two-way byte stream:
/// [MQTT-7.1.1-1] [MQTT-7.1.2-1] (3.1.1)
/// [MQTT-4.2.0-1] (5.0)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_0_1_2_both_ways_over_tcp() {
    let server = Server::bind("127.0.0.1:0", ServerOptions::default())
        .await
        .unwrap();
    for (i, version) in [ProtocolVersion::V3_1_1, ProtocolVersion::V5]
        .into_iter()
        .enumerate()
    {
        let (client, mut events, mut router) =
            tcp_pair(&server, options(version, &format!("tcp-{i}"))).await;
        client
            .subscribe(SubscribeRequest::new(filter("tcp/#"), QoS::ExactlyOnce))
            .await
            .unwrap();
        let levels = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
        for qos in levels {
            let outcome = client.publish(message("tcp/t", qos, "x")).await.unwrap();
            assert_eq!(outcome.reason_code, ReasonCode::Success);
            let (seen, _) = router.next_message().await;
            assert_eq!(seen.qos_pid.qos(), qos, "{version:?}");
        }
        for qos in levels {
            let (publish, _) = next_message(&mut events).await;
            assert_eq!(publish.qos_pid.qos(), qos, "{version:?}");
            assert_eq!(publish.topic.as_str(), "tcp/t");
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(100), next_message(&mut events))
                .await
                .is_err(),
            "each message exactly once"
        );
        client.disconnect().await.unwrap();
        let (initiator, reason, _) = router.closed().await;
        assert_eq!(initiator, Initiator::Peer);
        assert_eq!(reason, CloseReason::Disconnect(ReasonCode::Success));
    }
    server.shutdown().await;
}

/// Many pipelined QoS 1 publishes over TCP all complete, and come back in order, while the
/// application reads its events concurrently (it must: unread events stop the driver reading).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_publishes_over_tcp() {
    const N: u32 = 2000;
    let server = Server::bind("127.0.0.1:0", ServerOptions::default())
        .await
        .unwrap();
    let (client, mut events, _router) =
        tcp_pair(&server, options(ProtocolVersion::V5, "pipe")).await;
    client
        .subscribe(SubscribeRequest::new(filter("p"), QoS::AtLeastOnce))
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        for i in 0..N {
            let (publish, _) = next_message(&mut events).await;
            assert_eq!(&publish.payload[..], i.to_be_bytes());
        }
    });
    let mut receipts = Vec::new();
    for i in 0..N {
        let m = mqtt_streaming_session::Message::new(
            topic("p"),
            QoS::AtLeastOnce,
            i.to_be_bytes().to_vec(),
        );
        receipts.push(client.begin_publish(m).await.unwrap());
    }
    for receipt in receipts {
        assert!(receipt.await.unwrap().is_success());
    }
    reader.await.unwrap();
    client.disconnect().await.unwrap();
    server.shutdown().await;
}

/// Graceful server shutdown: MQTT 5 clients are told 0x8B Server shutting down (3.1.1 clients
/// see the transport close), `shutdown` returns once every connection is closed, and the
/// listener no longer accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_shutdown_is_graceful() {
    let server = Server::bind("127.0.0.1:0", ServerOptions::default())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (v5, mut v5_events, _r1) = tcp_pair(&server, options(ProtocolVersion::V5, "v5")).await;
    let (v3, mut v3_events, _r2) = tcp_pair(&server, options(ProtocolVersion::V3_1_1, "v3")).await;
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown finished");
    let (initiator, reason) = next_closed(&mut v5_events).await;
    assert_eq!(initiator, Initiator::Peer);
    assert_eq!(
        reason,
        CloseReason::Disconnect(ReasonCode::ServerShuttingDown)
    );
    let (initiator, reason) = next_closed(&mut v3_events).await;
    assert_eq!(initiator, Initiator::Transport);
    assert_eq!(reason, CloseReason::TransportClosed);
    assert!(v5.is_closed() && v3.is_closed());
    assert!(matches!(
        v5.publish(message("t", QoS::AtMostOnce, "late")).await,
        Err(Error::Closed(_))
    ));
    // Nobody listens any more.
    assert!(connect_tcp(addr, options(ProtocolVersion::V5, "late"))
        .await
        .is_err());
}

/// A refused CONNACK over TCP: `connect_tcp` fails with the code ([MQTT-3.2.2-7] 5.0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_over_tcp() {
    let server = Server::bind("127.0.0.1:0", ServerOptions::default())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (client, _router) = tokio::join!(
        connect_tcp(addr, options(ProtocolVersion::V5, "nope")),
        async {
            let behaviour = Behaviour {
                reject: Some(ReasonCode::Banned),
                ..Behaviour::default()
            };
            spawn_router(server.accept().await.unwrap(), behaviour)
        }
    );
    assert!(matches!(
        client,
        Err(Error::ConnectionRefused(ReasonCode::Banned))
    ));
    // Nothing listens on port 1 of loopback: an I/O error, not a hang.
    assert!(matches!(
        connect_tcp("127.0.0.1:1", options(ProtocolVersion::V5, "x")).await,
        Err(Error::Io(_))
    ));
}

/// `Server::accept` takes `&self`: two tasks accepting from one server at once both get a
/// connection (they take turns on the listener; neither is left waiting unwoken).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tasks_accept_from_one_server() {
    let server = std::sync::Arc::new(
        Server::bind("127.0.0.1:0", ServerOptions::default())
            .await
            .unwrap(),
    );
    let addr = server.local_addr().unwrap();
    let acceptors: Vec<_> = (0..2)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move { server.accept().await.unwrap().peer_addr() })
        })
        .collect();
    // Both acceptors are waiting before the first connection comes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _first = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _second = tokio::net::TcpStream::connect(addr).await.unwrap();
    for acceptor in acceptors {
        let peer = tokio::time::timeout(Duration::from_secs(5), acceptor)
            .await
            .expect("an acceptor was never woken")
            .unwrap();
        assert!(peer.is_some_and(|a| a.ip().is_loopback()));
    }
}
