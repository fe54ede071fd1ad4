//! Idle broker connections parked without a task (`BrokerOptions::park_idle_after`, Unix):
//! they park once idle, and input, output, keep-alive timeouts and the shutdown all reach them
//! as they reach an active connection. Written once for tokio, smol and async-std: each
//! adapter's `tests/runtime_conformance.rs` runs it beside the conformance suite.
//!
//! A test crate includes it with `#[path = "parking/mod.rs"] mod parking;` (or the path from
//! another package) after naming, at its root, the adapter (`use mqtt_streaming_smol as
//! adapter;`) and a module `rt` over its runtime:
//!
//! ```text
//! pub fn block_on<F: Future>(future: F) -> F::Output;
//! pub fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static)
//!     -> Pin<Box<dyn Future<Output = T> + Send>>;
//! pub async fn sleep(duration: Duration);
//! /// Two connected in-memory streams (a transport that cannot park: a Unix socket pair, an
//! /// in-memory pipe).
//! pub fn pair() -> (impl Transport, impl Transport);
//! ```

#![allow(dead_code, unreachable_pub)]

use std::future::{poll_fn, Future};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mqtt_streaming_proto::{
    Connect, Decoder, MqttString, Packet, PacketType, ProtocolVersion, Publish, QoS, ReasonCode,
    TopicFilter, TopicName,
};
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_session::{Message, SubscribeRequest};

use crate::adapter::{
    connect, connect_tcp, BrokerHandle, BrokerOptions, BrokerServer, ClientEvents, ClientOptions,
    Event,
};
use crate::rt;

/// Short, so that the tests do not wait long for a sweep.
const PARK_AFTER: Duration = Duration::from_millis(50);

/// How long a test waits for something that must happen.
const PATIENCE: Duration = Duration::from_secs(10);

/// `future`'s output, or a panic naming `what` when [`PATIENCE`] passes first.
async fn within<F: Future>(what: &str, future: F) -> F::Output {
    let mut future = pin!(future);
    let mut sleep = pin!(rt::sleep(PATIENCE));
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(output);
        }
        if sleep.as_mut().poll(cx).is_ready() {
            panic!("{what}: not in time");
        }
        Poll::Pending
    })
    .await
}

fn options(version: ProtocolVersion, id: &str) -> ClientOptions {
    let mut connect = Connect::new(version, MqttString::new(id).unwrap());
    connect.keep_alive = 10;
    ClientOptions::new(connect)
}

fn filter(name: &str) -> TopicFilter {
    TopicFilter::new(name).unwrap()
}

fn message(name: &str, qos: QoS, payload: impl ToString) -> Message {
    Message::new(
        TopicName::new(name).unwrap(),
        qos,
        payload.to_string().into_bytes(),
    )
}

/// The next `Message` event, skipping others.
async fn next_message(events: &mut ClientEvents) -> Publish {
    loop {
        let event = within("a message", events.recv())
            .await
            .expect("events ended");
        if let Event::Message { publish, .. } = event {
            return publish;
        }
    }
}

async fn start(park_idle_after: Option<Duration>) -> (SocketAddr, BrokerHandle) {
    let mut options = BrokerOptions::from(BrokerConfig::default());
    options.park_idle_after = park_idle_after;
    let broker = BrokerServer::bind("127.0.0.1:0", options).await.unwrap();
    let addr = broker.local_addr().unwrap();
    (addr, broker.spawn())
}

/// Waits until exactly `n` connections are parked.
async fn parked(broker: &BrokerHandle, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = broker.parked_connections().await.unwrap();
        if now == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{now} connections parked, not {n}"
        );
        rt::sleep(Duration::from_millis(10)).await;
    }
}

/// A raw MQTT client over a blocking std socket (no runtime of its own, so the same on every
/// runtime; its reads give up after [`PATIENCE`]): writes packets, reads whole packets.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
    version: ProtocolVersion,
}

impl Raw {
    fn connect(addr: SocketAddr, version: ProtocolVersion, keep_alive: u16) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut raw = Self {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::new(version),
            version,
        };
        let mut connect = Connect::new(version, MqttString::new("raw").unwrap());
        connect.keep_alive = keep_alive;
        raw.send(Packet::from(connect));
        let connack = raw.read().expect("CONNACK");
        assert_eq!(connack.packet_type(), PacketType::ConnAck);
        raw
    }

    fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    /// The next packet; `None` once the broker closed the connection.
    fn read(&mut self) -> Option<Packet> {
        let mut chunk = [0; 4096];
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(packet);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("the broker neither answered nor closed in time: {e}"),
            }
        }
    }
}

/// Two idle clients park; a publish wakes the publisher (input) and the subscriber (output),
/// the message arrives and is acknowledged, both park again, and a second round works the
/// same.
#[test]
fn idle_connections_park_and_wake_for_input_and_deliveries() {
    rt::block_on(async {
        let (addr, broker) = start(Some(PARK_AFTER)).await;
        let (sub, mut sub_events) = connect_tcp(addr, options(ProtocolVersion::V5, "sub"))
            .await
            .unwrap();
        let suback = sub
            .subscribe(SubscribeRequest::new(filter("park/#"), QoS::AtLeastOnce))
            .await
            .unwrap();
        assert_eq!(suback.reason_codes, [ReasonCode::GrantedQoS1]);
        let (publisher, _pub_events) = connect_tcp(addr, options(ProtocolVersion::V3_1_1, "pub"))
            .await
            .unwrap();
        for round in 0..2 {
            parked(&broker, 2).await;
            let outcome = within(
                "PUBACK of a parked publisher",
                publisher.publish(message("park/a", QoS::AtLeastOnce, format!("m{round}"))),
            )
            .await
            .unwrap();
            assert_eq!(outcome.reason_code, ReasonCode::Success);
            let publish = next_message(&mut sub_events).await;
            assert_eq!(&publish.payload[..], format!("m{round}").as_bytes());
            assert_eq!(publish.qos_pid.qos(), QoS::AtLeastOnce);
        }
        parked(&broker, 2).await;
        within("DISCONNECT", sub.disconnect()).await.unwrap();
        within("DISCONNECT", publisher.disconnect()).await.unwrap();
        parked(&broker, 0).await;
        within("the shutdown", broker.shutdown()).await;
    })
}

/// A parked subscriber is woken by the broker's own publish (output alone, no input from any
/// client), many times over: each time it gets the message and parks again.
#[test]
fn a_parked_subscriber_wakes_for_each_delivery() {
    rt::block_on(async {
        let (addr, broker) = start(Some(PARK_AFTER)).await;
        let (sub, mut sub_events) = connect_tcp(addr, options(ProtocolVersion::V5, "sub"))
            .await
            .unwrap();
        sub.subscribe(SubscribeRequest::new(filter("out/#"), QoS::AtMostOnce))
            .await
            .unwrap();
        for round in 0..5 {
            parked(&broker, 1).await;
            assert!(
                broker
                    .publish(message("out/a", QoS::AtMostOnce, format!("d{round}")))
                    .await
            );
            let publish = next_message(&mut sub_events).await;
            assert_eq!(&publish.payload[..], format!("d{round}").as_bytes());
        }
        within("DISCONNECT", sub.disconnect()).await.unwrap();
        parked(&broker, 0).await;
        within("the shutdown", broker.shutdown()).await;
    })
}

/// [MQTT-3.12.4-1] A parked client's PINGREQ wakes it and is answered with PINGRESP; once it
/// falls silent it parks again, and the broker still closes it after one and a half keep
/// alives without a packet ([MQTT-3.1.2-24]): the timer runs in the core, not in the task.
#[test]
fn a_parked_client_is_answered_and_closed_after_its_keep_alive() {
    rt::block_on(async {
        let (addr, broker) = start(Some(PARK_AFTER)).await;
        let mut raw = Raw::connect(addr, ProtocolVersion::V3_1_1, 1);
        parked(&broker, 1).await;
        let last_packet = Instant::now();
        raw.send(Packet::PingReq);
        let pingresp = raw.read().expect("PINGRESP");
        assert_eq!(pingresp.packet_type(), PacketType::PingResp);
        parked(&broker, 1).await;
        assert_eq!(raw.read(), None, "closed, with nothing else sent");
        let silent = last_packet.elapsed();
        // Sent after `last_packet`, the PINGREQ was the broker's last packet from the client.
        assert!(
            silent >= Duration::from_millis(1400),
            "closed after {silent:?} of silence (keep alive 1 s)"
        );
        parked(&broker, 0).await;
        within("the shutdown", broker.shutdown()).await;
    })
}

/// The shutdown reaches parked clients: an MQTT 5 client gets DISCONNECT 0x8B Server shutting
/// down, then the connection's end ([MQTT-3.14.2-1]: a reason code from the table).
#[test]
fn shutdown_tells_parked_clients() {
    rt::block_on(async {
        let (addr, broker) = start(Some(PARK_AFTER)).await;
        let mut raw = Raw::connect(addr, ProtocolVersion::V5, 60);
        parked(&broker, 1).await;
        let shutdown = rt::spawn({
            let broker = broker.clone();
            async move { broker.shutdown().await }
        });
        match raw.read() {
            Some(Packet::Disconnect(disconnect)) => {
                assert_eq!(disconnect.reason_code, ReasonCode::ServerShuttingDown)
            }
            other => panic!("expected DISCONNECT, got {other:?}"),
        }
        assert_eq!(raw.read(), None);
        within("the shutdown", shutdown).await;
        assert!(broker.is_stopped());
    })
}

/// With parking off, and for a transport that cannot be parked (a Unix socket pair, as TLS
/// or WebSocket), every connection keeps its task through many sweeps and still works.
#[test]
fn connections_that_cannot_park_keep_their_tasks() {
    rt::block_on(async {
        for park in [None, Some(PARK_AFTER)] {
            let (addr, broker) = start(park).await;
            let (sub, mut sub_events) = match park {
                // Parking off: plain TCP.
                None => connect_tcp(addr, options(ProtocolVersion::V5, "sub"))
                    .await
                    .unwrap(),
                // Parking on: a transport that cannot park.
                Some(_) => {
                    let (client_io, broker_io) = rt::pair();
                    broker.serve_transport(broker_io).await.unwrap();
                    connect(client_io, options(ProtocolVersion::V5, "sub"))
                        .await
                        .unwrap()
                }
            };
            sub.subscribe(SubscribeRequest::new(filter("keep/#"), QoS::AtMostOnce))
                .await
                .unwrap();
            rt::sleep(PARK_AFTER * 8).await;
            assert_eq!(broker.parked_connections().await, Some(0), "park: {park:?}");
            assert!(
                broker
                    .publish(message("keep/a", QoS::AtMostOnce, "x"))
                    .await
            );
            let publish = next_message(&mut sub_events).await;
            assert_eq!(&publish.payload[..], b"x");
            within("DISCONNECT", sub.disconnect()).await.unwrap();
            within("the shutdown", broker.shutdown()).await;
        }
    })
}
