//! A fault-injecting TCP proxy on 127.0.0.1 for the reconnect tests: it forwards each
//! connection to an upstream address (which can be changed, to follow a restarted broker) and,
//! while faults are on, cuts it after a random number of bytes from the client (the cut falls
//! at any byte offset of the client's stream, inside a packet as often as not; what the
//! server sends meanwhile passes, so that a server that sends a returning client its whole
//! backlog at once cannot keep every connection from making progress). Random numbers come
//! from a seed, so a failing run can be told apart from another.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

struct State {
    upstream: Mutex<Option<SocketAddr>>,
    faults: AtomicBool,
    cuts: AtomicUsize,
    connections: AtomicUsize,
    rng: Mutex<u64>,
    /// Bytes from the client a connection carries before its cut: uniform in
    /// `budget.0..=budget.1`.
    budget: (usize, usize),
    links: Mutex<Vec<JoinHandle<()>>>,
}

impl State {
    fn draw(&self) -> usize {
        let mut x = self.rng.lock().unwrap();
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        let (lo, hi) = self.budget;
        lo + (*x as usize) % (hi - lo + 1)
    }
}

/// The proxy. Dropping it stops it and drops every connection.
pub struct FaultProxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy to `upstream`, faults off; `budget` bounds the bytes a connection carries once
    /// faults are on, `seed` seeds the offsets.
    pub async fn start(upstream: SocketAddr, budget: (usize, usize), seed: u64) -> Self {
        assert!(budget.0 >= 1 && budget.0 <= budget.1);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            upstream: Mutex::new(Some(upstream)),
            faults: AtomicBool::new(false),
            cuts: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            rng: Mutex::new(seed | 1),
            budget,
            links: Mutex::new(Vec::new()),
        });
        let held = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let upstream = *held.upstream.lock().unwrap();
                // No upstream (the broker is down): the client sees its connection end.
                let Some(upstream) = upstream else { continue };
                let Ok(outbound) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                held.connections.fetch_add(1, Ordering::Relaxed);
                let state = held.clone();
                let link = tokio::spawn(link(state, inbound, outbound));
                let mut links = held.links.lock().unwrap();
                links.retain(|l| !l.is_finished());
                links.push(link);
            }
        });
        Self {
            addr,
            state,
            accept,
        }
    }

    /// Turns the random cuts on or off (connections open meanwhile follow).
    pub fn set_faults(&self, on: bool) {
        self.state.faults.store(on, Ordering::SeqCst);
    }

    /// Where new connections go; `None`: nowhere (they are closed at once).
    pub fn set_upstream(&self, upstream: Option<SocketAddr>) {
        *self.state.upstream.lock().unwrap() = upstream;
    }

    /// Drops every connection carried so far.
    pub fn cut_all(&self) {
        for link in self.state.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Connections cut by a fault so far.
    pub fn cuts(&self) -> usize {
        self.state.cuts.load(Ordering::Relaxed)
    }

    /// Connections carried so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}

/// Forwards both ways until either side ends or the budget is spent; then drops both sockets
/// (each peer sees its connection end, with no DISCONNECT).
async fn link(state: Arc<State>, a: TcpStream, b: TcpStream) {
    let (mut ar, mut aw) = a.into_split();
    let (mut br, mut bw) = b.into_split();
    let mut abuf = vec![0u8; 16 * 1024];
    let mut bbuf = vec![0u8; 16 * 1024];
    let mut passed = 0usize;
    let (mut up, mut down) = (0usize, 0usize);
    let mut first_up: Vec<u8> = Vec::new();
    let mut budget: Option<usize> = None;
    loop {
        if !state.faults.load(Ordering::SeqCst) {
            budget = None;
        } else if budget.is_none() {
            budget = Some(passed + state.draw());
        }
        let (read, forward) = tokio::select! {
            r = ar.read(&mut abuf) => (r, true),
            r = br.read(&mut bbuf) => (r, false),
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let (buf, out) = if forward {
            (&abuf[..n], &mut bw)
        } else {
            (&bbuf[..n], &mut aw)
        };
        let allowed = match budget {
            Some(b) if forward => b.saturating_sub(passed).min(n),
            _ => n,
        };
        if allowed > 0 && out.write_all(&buf[..allowed]).await.is_err() {
            return;
        }
        if forward {
            passed += allowed;
            if first_up.len() < 64 {
                first_up.extend_from_slice(&buf[..allowed.min(64)]);
            }
            up += allowed;
        } else {
            down += allowed;
        }
        if budget.is_some_and(|b| passed >= b) {
            if std::env::var_os("FAULT_PROXY_TRACE").is_some() {
                let who = String::from_utf8_lossy(&first_up[..first_up.len().min(40)])
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect::<String>();
                eprintln!("cut after {up} bytes up, {down} down ({who})");
            }
            state.cuts.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
}
