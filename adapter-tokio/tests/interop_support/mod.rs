//! Helpers of the broker and interop tests: a mosquitto of our own on a free port (stopped by
//! PID on drop), a TCP proxy whose connections can be cut, our client's options and event
//! helpers, and the example programs' paths.

#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adapter_tokio::{ClientEvents, ClientOptions, Event};
use mqtt_proto::{Connect, MqttString, ProtocolVersion, Publish, QoS, TopicFilter, TopicName};
use mqtt_session::{CloseReason, InboundId, Initiator, Message};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(10);

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

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A mosquitto broker of our own: its own config in a temp dir, 127.0.0.1 and a free port,
/// killed by PID on drop.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    pub addr: SocketAddr,
    _dir: tempdir::TempDir,
}

/// The mosquitto binary: in PATH, or Debian's /usr/sbin.
pub fn mosquitto_binary() -> PathBuf {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("mosquitto");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("/usr/sbin/mosquitto")
}

impl Mosquitto {
    /// Starts mosquitto with `extra` config lines and waits until it accepts connections.
    pub async fn start(extra: &str) -> Self {
        Self::start_config(true, extra).await
    }

    /// A mosquitto that refuses anonymous clients (CONNACK "not authorised").
    pub async fn start_with_anonymous(allow: bool) -> Self {
        Self::start_config(allow, "").await
    }

    async fn start_config(allow_anonymous: bool, extra: &str) -> Self {
        let dir = tempdir::TempDir::new("mosquitto");
        let port = free_port();
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous {allow_anonymous}\npersistence false\n{extra}\n"
            ),
        )
        .unwrap();
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed (.ci/run installs it)");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let started = std::time::Instant::now();
        while TcpStream::connect(addr).await.is_err() {
            assert!(started.elapsed() < WAIT, "mosquitto did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            child,
            port,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory, removed on drop (no dependency for so little).
pub mod tempdir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(prefix: &str) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "{prefix}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
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
