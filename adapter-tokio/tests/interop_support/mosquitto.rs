//! A mosquitto broker of our own for the interop tests, with no async runtime of its own (so
//! the tests of every adapter include it): its config in a temp dir, 127.0.0.1 and a free port,
//! stopped by PID on drop.

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long mosquitto may take to start listening.
const START_WAIT: Duration = Duration::from_secs(10);

/// A free TCP port on 127.0.0.1 for a server the test starts as another process, chosen
/// below the kernel's ephemeral range.
///
/// The port is only checked free (bound then released), so something else could take it
/// before the server binds it. Inside the ephemeral range something else often does: every
/// `bind(0)` of a concurrent test and every outgoing connection's source port come from
/// there (a CI run once had mosquitto lose its port that way, and the test's client reached
/// another listener). Below the range only a server that names the port explicitly can race
/// for it; the start is random, so two tests rarely even try the same port.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    const LOWEST: u16 = 10_000;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|&start| start > LOWEST + 1_000)
        .unwrap_or(32_768);
    let span = ephemeral_start - LOWEST;
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let first = (random % u64::from(span)) as u16;
    (0..span)
        .map(|i| LOWEST + (first + i) % span)
        .find(|&port| StdListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port below the ephemeral range")
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
        let mut child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed (.ci/run installs it)");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // Polled with blocking connects: a few short waits, whatever the runtime.
        let started = std::time::Instant::now();
        while StdStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(started.elapsed() < START_WAIT, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "mosquitto exited: port {port} answered, but not by this mosquitto"
        );
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
