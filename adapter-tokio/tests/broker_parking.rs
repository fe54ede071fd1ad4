//! Idle broker connections parked without a task (`BrokerOptions::park_idle_after`): they
//! park once idle, and input, output, keep-alive timeouts and the shutdown all reach them as
//! they reach an active connection.

mod interop_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use interop_support::*;
use mqtt_streaming_proto::{
    Connect, Decoder, MqttString, Packet, PacketType, ProtocolVersion, QoS, ReasonCode,
};
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_session::SubscribeRequest;
use mqtt_streaming_tokio::{connect, connect_tcp, BrokerHandle, BrokerOptions, BrokerServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short, so that the tests do not wait long for a sweep.
const PARK_AFTER: Duration = Duration::from_millis(50);

async fn start(park_idle_after: Option<Duration>) -> (SocketAddr, BrokerHandle) {
    let mut options = BrokerOptions::from(BrokerConfig::default());
    options.park_idle_after = park_idle_after;
    let broker = BrokerServer::bind("127.0.0.1:0", options).await.unwrap();
    let addr = broker.local_addr().unwrap();
    (addr, broker.spawn())
}

/// Waits until exactly `n` connections are parked.
async fn parked(broker: &BrokerHandle, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = broker.parked_connections().await.unwrap();
        if now == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{now} connections parked, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A raw MQTT client over TCP: writes packets, reads whole packets.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
    version: ProtocolVersion,
}

impl Raw {
    async fn connect(addr: SocketAddr, version: ProtocolVersion, keep_alive: u16) -> Self {
        let mut raw = Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            decoder: Decoder::new(version),
            version,
        };
        let mut connect = Connect::new(version, MqttString::new("raw").unwrap());
        connect.keep_alive = keep_alive;
        raw.send(Packet::from(connect)).await;
        let connack = raw.read().await.expect("CONNACK");
        assert_eq!(connack.packet_type(), PacketType::ConnAck);
        raw
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next packet; `None` once the broker closed the connection.
    async fn read(&mut self) -> Option<Packet> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(packet);
            }
            let n =
                tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("the broker answers or closes in time")
                    .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }
}

/// Two idle clients park; a publish wakes the publisher (input) and the subscriber (output),
/// the message arrives and is acknowledged, both park again, and a second round works the
/// same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_park_and_wake_for_input_and_deliveries() {
    let (addr, broker) = start(Some(PARK_AFTER)).await;
    let (sub, mut sub_events) = connect_tcp(addr, options(ProtocolVersion::V5, "sub", false))
        .await
        .unwrap();
    let suback = sub
        .subscribe(SubscribeRequest::new(filter("park/#"), QoS::AtLeastOnce))
        .await
        .unwrap();
    assert_eq!(suback.reason_codes, [ReasonCode::GrantedQoS1]);
    let (publisher, _pub_events) =
        connect_tcp(addr, options(ProtocolVersion::V3_1_1, "pub", false))
            .await
            .unwrap();
    for round in 0..2 {
        parked(&broker, 2).await;
        let outcome = publisher
            .publish(message("park/a", QoS::AtLeastOnce, format!("m{round}")))
            .await
            .unwrap();
        assert_eq!(outcome.reason_code, ReasonCode::Success);
        let (publish, _) = next_message(&mut sub_events).await;
        assert_eq!(&publish.payload[..], format!("m{round}").as_bytes());
        assert_eq!(publish.qos_pid.qos(), QoS::AtLeastOnce);
    }
    parked(&broker, 2).await;
    sub.disconnect().await.unwrap();
    publisher.disconnect().await.unwrap();
    parked(&broker, 0).await;
    broker.shutdown().await;
}

/// [MQTT-3.12.4-1] A parked client's PINGREQ wakes it and is answered with PINGRESP; once it
/// falls silent it parks again, and the broker still closes it after one and a half keep
/// alives without a packet ([MQTT-3.1.2-24]): the timer runs in the core, not in the task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_client_is_answered_and_closed_after_its_keep_alive() {
    let (addr, broker) = start(Some(PARK_AFTER)).await;
    let mut raw = Raw::connect(addr, ProtocolVersion::V3_1_1, 1).await;
    parked(&broker, 1).await;
    raw.send(Packet::PingReq).await;
    let pingresp = raw.read().await.expect("PINGRESP");
    assert_eq!(pingresp.packet_type(), PacketType::PingResp);
    let last_packet = Instant::now();
    parked(&broker, 1).await;
    assert_eq!(raw.read().await, None, "closed, with nothing else sent");
    let silent = last_packet.elapsed();
    assert!(
        silent >= Duration::from_millis(1400) && silent < Duration::from_secs(5),
        "closed after {silent:?} of silence (keep alive 1 s)"
    );
    parked(&broker, 0).await;
    broker.shutdown().await;
}

/// The shutdown reaches parked clients: an MQTT 5 client gets DISCONNECT 0x8B Server shutting
/// down, then the connection's end ([MQTT-3.14.2-1]: a reason code from the table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_parked_clients() {
    let (addr, broker) = start(Some(PARK_AFTER)).await;
    let mut raw = Raw::connect(addr, ProtocolVersion::V5, 60).await;
    parked(&broker, 1).await;
    let shutdown = tokio::spawn({
        let broker = broker.clone();
        async move { broker.shutdown().await }
    });
    match raw.read().await {
        Some(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.reason_code, ReasonCode::ServerShuttingDown)
        }
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    assert_eq!(raw.read().await, None);
    shutdown.await.unwrap();
    assert!(broker.is_stopped());
}

/// With parking off, and for a transport that cannot be parked (an in-memory pipe, as TLS or
/// WebSocket), every connection keeps its task through many sweeps and still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_cannot_park_keep_their_tasks() {
    for park in [None, Some(PARK_AFTER)] {
        let (addr, broker) = start(park).await;
        let (sub, mut sub_events) = match park {
            // Parking off: plain TCP.
            None => connect_tcp(addr, options(ProtocolVersion::V5, "sub", false))
                .await
                .unwrap(),
            // Parking on: a transport that cannot park.
            Some(_) => {
                let (client_io, broker_io) = tokio::io::duplex(64 * 1024);
                broker.serve_transport(broker_io).await.unwrap();
                connect(client_io, options(ProtocolVersion::V5, "sub", false))
                    .await
                    .unwrap()
            }
        };
        sub.subscribe(SubscribeRequest::new(filter("keep/#"), QoS::AtMostOnce))
            .await
            .unwrap();
        tokio::time::sleep(PARK_AFTER * 8).await;
        assert_eq!(broker.parked_connections().await, Some(0), "park: {park:?}");
        assert!(
            broker
                .publish(message("keep/a", QoS::AtMostOnce, "x"))
                .await
        );
        let (publish, _) = next_message(&mut sub_events).await;
        assert_eq!(&publish.payload[..], b"x");
        sub.disconnect().await.unwrap();
        broker.shutdown().await;
    }
}
