//! Helpers of the broker and interop tests: a mosquitto of our own on a free port (stopped by
//! PID on drop), a TCP proxy whose connections can be cut, our client's options and event
//! helpers, and the example programs' paths.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqtt_streaming_proto::{
    Connect, MqttString, ProtocolVersion, Publish, QoS, TopicFilter, TopicName,
};
use mqtt_streaming_session::{CloseReason, InboundId, Initiator, Message};
use mqtt_streaming_tokio::{ClientEvents, ClientOptions, Event};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(10);

// The runtime-free part (mosquitto started and stopped by PID, its config in a temp dir), also
// included by the smol and async-std interop tests.
mod mosquitto;
#[allow(unused_imports)] // not every including test starts a mosquitto
pub use mosquitto::*;
// A subscribing program watched until its SUBACK (runtime-free too).
mod subscriber;
#[allow(unused_imports)] // not every including test watches a subscriber
pub use subscriber::{mosquitto_sub, WatchedSubscriber};

pub fn topic(name: &str) -> TopicName {
    TopicName::new(name).unwrap()
}

pub fn filter(name: &str) -> TopicFilter {
    TopicFilter::new(name).unwrap()
}

pub fn message(name: &str, qos: QoS, payload: impl Into<bytes::Bytes>) -> Message {
    Message::new(topic(name), qos, payload)
}

/// Client options: keep alive 30 s, clean start unless `persistent` (then, in 5.0, a session
/// expiry of an hour).
pub fn options(version: ProtocolVersion, id: &str, persistent: bool) -> ClientOptions {
    let mut connect = Connect::new(version, MqttString::new(id).unwrap());
    connect.keep_alive = 30;
    connect.clean_start = !persistent;
    if persistent && version.is_v5() {
        connect.properties.session_expiry_interval = Some(3600);
    }
    ClientOptions::new(connect)
}

/// The next application message, within [`WAIT`].
pub async fn next_message(events: &mut ClientEvents) -> (Publish, Option<InboundId>) {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Some(Event::Message { publish, ack }) => return (publish, ack),
                Some(Event::Closed { reason, .. }) => panic!("closed while waiting: {reason}"),
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    })
    .await
    .expect("no message in time")
}

/// No application message arrives within `wait`.
pub async fn no_message(events: &mut ClientEvents, wait: Duration) {
    let got = tokio::time::timeout(wait, async {
        loop {
            match events.recv().await {
                Some(Event::Message { publish, .. }) => return Some(publish),
                Some(Event::Closed { .. }) | None => return None,
                Some(_) => {}
            }
        }
    })
    .await;
    if let Ok(Some(publish)) = got {
        panic!("unexpected message {publish:?}");
    }
}

/// The `Closed` event, within [`WAIT`].
pub async fn next_closed(events: &mut ClientEvents) -> (Initiator, CloseReason) {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Some(Event::Closed {
                    initiator, reason, ..
                }) => return (initiator, reason),
                Some(_) => {}
                None => panic!("events ended without Closed"),
            }
        }
    })
    .await
    .expect("not closed in time")
}

/// A TCP proxy on 127.0.0.1 to `upstream`; [`cut`](Self::cut) drops every connection it
/// carries at once (both sides see the transport end, without a DISCONNECT).
pub struct Proxy {
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let held = links.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                held.lock().unwrap().push(tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }));
            }
        });
        Self {
            addr,
            accept,
            links,
        }
    }

    /// Drops every connection carried so far.
    pub fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
