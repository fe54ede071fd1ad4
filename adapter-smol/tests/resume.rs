//! Session resumption on smol: a resumable client whose transport dies in the middle of a
//! QoS 2 flow resumes its session with `mqtt_streaming_smol::Reconnect` (a futures-io transport) and
//! the publish future that was waiting resolves. The broker is mqtt-streaming-tokio's, on a tokio
//! runtime of its own thread.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use mqtt_streaming_proto::{
    Connect, MqttString, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName,
};
use mqtt_streaming_session::{Initiator, Message, SubscribeRequest};
use mqtt_streaming_smol::{connect_tcp, ClientOptions, Event, Reconnect};
use smol::future::FutureExt;
use smol::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

/// A TCP stream whose input can be held back (reads stay pending) and which can be cut (every
/// read and write fails from then on), as a dying link would.
struct Flaky {
    inner: TcpStream,
    hold: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
    retry: Option<smol::Timer>,
}

fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "cut by the test")
}

impl futures_io::AsyncRead for Flaky {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.cut.load(Ordering::SeqCst) {
            return Poll::Ready(Err(reset()));
        }
        if self.hold.load(Ordering::SeqCst) {
            // Look again every few milliseconds, until cut.
            let timer = self
                .retry
                .get_or_insert_with(|| smol::Timer::after(Duration::from_millis(5)));
            if Pin::new(timer).poll(cx).is_ready() {
                self.retry = None;
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl futures_io::AsyncWrite for Flaky {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.cut.load(Ordering::SeqCst) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

fn broker() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let server = mqtt_streaming_tokio::BrokerServer::bind(
                "127.0.0.1:0",
                mqtt_streaming_tokio::BrokerOptions::default(),
            )
            .await
            .unwrap();
            tx.send(server.local_addr().unwrap()).unwrap();
            let _broker = server.spawn();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

fn options(id: &str, persistent: bool) -> ClientOptions {
    let mut connect = Connect::new(ProtocolVersion::V5, MqttString::new(id).unwrap());
    connect.keep_alive = 30;
    connect.clean_start = !persistent;
    if persistent {
        connect.properties.session_expiry_interval = Some(3600);
    }
    ClientOptions::new(connect).resumable()
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    future
        .or(async {
            smol::Timer::after(WAIT).await;
            panic!("timed out")
        })
        .await
}

/// The PUBREC of a QoS 2 publish never reaches the client before its transport dies; after
/// `reconnect` on a new futures-io transport the session is present, the client re-sends the
/// PUBLISH ([MQTT-4.4.0-1]), the waiting future resolves with Success and the subscriber gets
/// the message exactly once ([MQTT-4.3.3-10] 5.0); a publish made while disconnected follows.
#[test]
fn smol_client_resumes_mid_qos2() {
    let addr = broker();
    smol::block_on(async {
        let (watcher, mut watched) = connect_tcp(addr, options("smol-watch", false))
            .await
            .unwrap();
        let filter = TopicFilter::new("smol/#").unwrap();
        watcher
            .subscribe(SubscribeRequest::new(filter, QoS::ExactlyOnce))
            .await
            .unwrap();

        let hold = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let flaky = Flaky {
            inner: TcpStream::connect(addr).await.unwrap(),
            hold: hold.clone(),
            cut: cut.clone(),
            retry: None,
        };
        let (client, mut events) =
            mqtt_streaming_smol::connect(flaky, options("smol-resumer", true))
                .await
                .unwrap();
        hold.store(true, Ordering::SeqCst);
        let topic = TopicName::new("smol/t").unwrap();
        let receipt = client
            .begin_publish(Message::new(topic.clone(), QoS::ExactlyOnce, "once"))
            .await
            .unwrap();
        // The PUBLISH is out; its PUBREC is held back.
        smol::Timer::after(Duration::from_millis(100)).await;
        cut.store(true, Ordering::SeqCst);
        loop {
            match within(events.recv()).await.expect("events go on") {
                Event::Closed {
                    initiator,
                    resumable,
                    ..
                } => {
                    assert_eq!(initiator, Initiator::Transport);
                    assert!(resumable);
                    break;
                }
                _ => continue,
            }
        }
        let later = client
            .begin_publish(Message::new(topic, QoS::AtLeastOnce, "later"))
            .await
            .unwrap();

        let connack = within(client.reconnect_tcp(addr)).await.unwrap();
        assert!(connack.session_present);
        let outcome = within(receipt).await.unwrap();
        assert_eq!(outcome.reason_code, ReasonCode::Success);
        assert!(within(later).await.unwrap().is_success());

        let mut seen: Vec<Vec<u8>> = Vec::new();
        while !seen.iter().any(|p| p == b"later") {
            if let Event::Message { publish, .. } = within(watched.recv()).await.unwrap() {
                seen.push(publish.payload.to_vec());
            }
        }
        loop {
            let quiet = async {
                smol::Timer::after(Duration::from_millis(300)).await;
                None
            };
            match async { watched.recv().await }.or(quiet).await {
                Some(Event::Message { publish, .. }) => seen.push(publish.payload.to_vec()),
                Some(_) => {}
                None => break,
            }
        }
        let once = seen.iter().filter(|p| p.as_slice() == b"once").count();
        assert_eq!(once, 1, "QoS 2 exactly once: {seen:?}");
        client.disconnect().await.unwrap();
        watcher.disconnect().await.unwrap();
    });
}

/// A client that reconnects by itself on smol (`connect_reconnecting` with a connector that
/// opens futures-io streams): its link cut in the middle of a QoS 2 flow, the driver waits,
/// connects again and resumes the session; the publish awaited across the cut resolves once
/// with Success ([MQTT-4.4.0-1]), the subscriber gets it once, and a publish awaited while
/// the link is down resolves on the new connection.
#[test]
fn smol_client_reconnects_by_itself() {
    let addr = broker();
    smol::block_on(async {
        let (watcher, mut watched) = connect_tcp(addr, options("smol-auto-watch", false))
            .await
            .unwrap();
        let filter = TopicFilter::new("auto/#").unwrap();
        watcher
            .subscribe(SubscribeRequest::new(filter, QoS::ExactlyOnce))
            .await
            .unwrap();

        let hold = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let (h, c) = (hold.clone(), cut.clone());
        let connector = move || {
            let (hold, cut) = (h.clone(), c.clone());
            async move {
                Ok(Flaky {
                    inner: TcpStream::connect(addr).await?,
                    hold,
                    cut,
                    retry: None,
                })
            }
        };
        let policy = mqtt_streaming_smol::ReconnectPolicy {
            min_delay: Duration::from_millis(200),
            ..mqtt_streaming_smol::ReconnectPolicy::default()
        };
        let (client, mut events) = mqtt_streaming_smol::connect_reconnecting(
            connector,
            options("smol-auto", true),
            policy,
        )
        .await
        .unwrap();
        hold.store(true, Ordering::SeqCst);
        let topic = TopicName::new("auto/t").unwrap();
        let receipt = client
            .begin_publish(Message::new(topic.clone(), QoS::ExactlyOnce, "once"))
            .await
            .unwrap();
        smol::Timer::after(Duration::from_millis(100)).await;
        cut.store(true, Ordering::SeqCst);
        loop {
            if let Event::Closed { resumable, .. } = within(events.recv()).await.unwrap() {
                assert!(resumable);
                break;
            }
        }
        // The next connection is a clean link.
        cut.store(false, Ordering::SeqCst);
        hold.store(false, Ordering::SeqCst);
        // Awaited while the link is down, from this task alone.
        let later = within(client.publish(Message::new(topic, QoS::AtLeastOnce, "later")))
            .await
            .unwrap();
        assert!(later.is_success());
        assert_eq!(
            within(receipt).await.unwrap().reason_code,
            ReasonCode::Success
        );
        let mut states = Vec::new();
        while let Some(event) = events.try_recv() {
            match event {
                Event::Reconnecting { attempt, .. } => {
                    states.push(format!("reconnecting {attempt}"))
                }
                Event::Connecting { attempt } => states.push(format!("connecting {attempt}")),
                Event::Connected(connack) => {
                    states.push(format!("connected {}", connack.session_present))
                }
                _ => {}
            }
        }
        assert_eq!(states, ["reconnecting 1", "connecting 1", "connected true"]);
        let mut seen: Vec<Vec<u8>> = Vec::new();
        while !seen.iter().any(|p| p == b"later") {
            if let Event::Message { publish, .. } = within(watched.recv()).await.unwrap() {
                seen.push(publish.payload.to_vec());
            }
        }
        assert_eq!(seen.iter().filter(|p| *p == b"once").count(), 1, "{seen:?}");
        client.disconnect().await.unwrap();
    });
}
