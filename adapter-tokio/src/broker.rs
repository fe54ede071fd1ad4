//! Layer 8 (with `client` and `server`): [`BrokerServerOn`] (`BrokerServer` in each adapter):
//! the broker core of `mqtt-streaming-session` served over listeners and any transport. A real MQTT
//! broker in a few lines, with graceful shutdown. Imports the layers below: `runtime`,
//! `transport`, `net`.
//!
//! The core ([`mqtt_streaming_session::broker::Broker`]) holds every protocol decision: sessions,
//! routing, retained messages, wills, takeover, limits. This module only moves bytes and time
//! in and out of it:
//!
//! - one task owns the `Broker` state machine and is the only one that touches it;
//! - each connection has one task that reads and writes: it sends what it reads to the broker
//!   task over one shared bounded channel, and writes what the broker task leaves in the
//!   connection's outbox (one lock, the flags of the connection's flow control and the task's
//!   waker); everything one drain of the broker produced for a connection leaves in one write;
//! - the broker task's timer is the core's `poll_timeout`.
//!
//! The broker runs on any [`Runtime`] (spawn, timer, clock) and accepts from any [`Listener`]:
//! [`BrokerServerOn`] is the runtime-generic server, and each adapter names it for its own
//! runtime (`mqtt_streaming_tokio::BrokerServer` is `BrokerServerOn<TokioRuntime>`). What is
//! runtime-specific besides the [`Runtime`] trait is the [`NetRuntime`] trait (the runtime's
//! TCP listener), [`Bind`] (binding it to an address) and [`Adapt`] (the runtime's transports
//! as the engine's [`Transport`](crate::transport::Transport)); tokio's implementations are in
//! this crate's tokio glue, smol's and async-std's in their adapters.
//!
//! # Memory
//!
//! Input is bounded by the shared channel (each message at most one read of 16 KiB) and by
//! the core: a connection is read only while [`Broker::wants_read`] says so (a publisher held
//! back by full subscribers, a connection waiting for the partial-packet budget), and what was
//! read and not consumed waits in the connection's buffer until
//! [`BrokerEvent::ReadResumed`] (one more read at most: ≤ 16 KiB beyond the packet the core
//! is working on).
//!
//! Output is bounded per connection: while more than
//! [`BrokerOptions::pause_reading_above`] bytes wait to be written to a client, the core is
//! told ([`Broker::pause_transmit`]) and keeps the bytes in the client's session, whose
//! `max_transmit_buffer` and `max_queued` limits then hold back the publishers that feed it
//! (see the core's overload policy in [`BrokerConfig`]). The client is still read, so that
//! its acknowledgements free its window (a client that stops reading until it can write would
//! otherwise wait for the broker while the broker waits for it), but only while the core
//! wants input: its answers wait in the session, and once they take a quarter more than
//! `max_transmit_buffer` the core reads nothing more from that client (it cannot make the
//! broker answer it faster than it reads). So a subscriber that reads slowly slows its
//! publishers down and loses nothing; one that does not read at all is disconnected by the
//! core after `stalled_subscriber_timeout` if publishers wait for it.
//! Per connection the driver holds at most `pause_reading_above` plus one drain of the core
//! (its `max_transmit_buffer` plus one packet); [`BrokerOptions::max_output_buffer`] is only a
//! safety net above that.
//!
//! An idle connection holds no read or write buffer: its task waits for the transport's
//! readiness before it reserves room (2 KiB, growing to 16 KiB while reads fill it), and drops
//! each output buffer once written.
//!
//! A connection idle for [`BrokerOptions::park_idle_after`] (one second by default) holds no
//! task either: it is parked. Its task ends, its socket leaves the runtime's reactor for one
//! watcher shared by every parked connection (the runtime's
//! [`IdleLot`](crate::engine::IdleLot)), and its entry in the broker task keeps only the
//! transport. Input on the socket, output for it (a delivery, a PINGRESP, a DISCONNECT) or its
//! close gives it a task again. The keep-alive and every other deadline stay in the core, so
//! a parked connection times out as any other. Parking needs a transport that can leave its
//! reactor ([`Transport::park`](crate::engine::Transport::park): TCP on Unix with tokio, smol
//! or async-std); the others keep their task. [`BrokerHandleOn::parked_connections`] counts
//! the parked ones.

use std::collections::HashMap;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use mqtt_streaming_session::broker::{
    AllowAll, Broker, BrokerConfig, BrokerEvent, BrokerHooks, BrokerStats, ConnectionId,
};
use mqtt_streaming_session::{Instant, Message};
use tokio::sync::{mpsc, oneshot};

use crate::net::{Accepted, Adapt, Bind, Listener, NetRuntime};
#[cfg(unix)]
use crate::runtime::IdleLot;
use crate::runtime::{sleep, timeout, Clock, Runtime, Timer};
use crate::transport::{self, write_all, BoxTransport};

/// The most bytes asked for in one read of a connection (reads grow to it while they fill
/// the room they are given).
const READ_CHUNK: usize = 16 * 1024;
/// The fewest bytes asked for in one read.
const MIN_READ: usize = 2 * 1024;
/// Capacity of the channel from all connection tasks to the broker task, and of the command
/// channel.
const INPUT_CAPACITY: usize = 256;
/// Inputs handled before the broker is drained (one write per connection per drain).
const INPUT_BATCH: usize = 64;

/// Options of a [`BrokerServerOn`]: the core's limits, plus the driver's buffers.
#[derive(Clone, Debug)]
pub struct BrokerOptions {
    /// The broker core's limits (connections, sessions, queues, packet sizes...).
    pub config: BrokerConfig,
    /// While more bytes than this wait to be written to a client, the core keeps its further
    /// output (holding back the publishers that feed it, and reading the client only while
    /// its answers fit in the session's transmit buffer).
    pub pause_reading_above: usize,
    /// A safety net: a client with more bytes than this waiting to be written to it is
    /// disconnected as a slow consumer (as a transport loss: its will is published, a
    /// persistent session kept). The default is above what the core can hand over while
    /// transmission is paused (`pause_reading_above` + the session's `max_transmit_buffer` +
    /// one packet), so it does not trigger unless those limits are raised past it.
    pub max_output_buffer: usize,
    /// How long a closing connection may take to write its last bytes.
    pub linger: Duration,
    /// Capacity of the [`BrokerServerOn::notices`] channel; notices beyond it are dropped.
    pub notice_capacity: usize,
    /// A connection without traffic for this long (between one and two times it) is parked:
    /// its task ends and its socket leaves the runtime's reactor for one watcher shared by
    /// all parked connections, until the client sends something or the broker has something
    /// for it (a delivery, a keep-alive timeout, the shutdown); then it gets a task again. An
    /// idle connection then costs the adapter about 50 bytes instead of about 800 (its task,
    /// its reactor registration, its outbox). `None`: never.
    ///
    /// Waking a parked connection costs a few system calls and a task spawn, about as much
    /// as handling one packet, at most once per this interval per connection. Where it
    /// applies: plain TCP on Unix with a runtime that has an idle-socket watcher (tokio, smol,
    /// async-std); TLS, WebSocket and other runtimes keep every connection's task. The default
    /// is one second.
    pub park_idle_after: Option<Duration>,
    /// Where and how retained messages and persistent sessions are stored, to survive a
    /// restart and a crash (feature `persistence`; see [`crate::persistence`]). `None` (the
    /// default): nothing is stored.
    ///
    /// [`serve`](BrokerServerOn::serve) opens the store and rebuilds the broker from it
    /// before it serves anyone (reading the whole store on the calling task), and fails if it
    /// cannot (`spawn` then stops at once: use `serve` to see the error).
    #[cfg(feature = "persistence")]
    pub persistence: Option<crate::persistence::PersistenceOptions>,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self::from(BrokerConfig::default())
    }
}

impl From<BrokerConfig> for BrokerOptions {
    fn from(config: BrokerConfig) -> Self {
        let pause_reading_above = 256 * 1024;
        // One drain of the core for a paused connection: its session's transmit buffer plus
        // one packet of the largest size a client may send us (what it forwards), and acks.
        let max_output_buffer = pause_reading_above
            + config.server.max_transmit_buffer
            + config.server.max_packet_size as usize
            + 64 * 1024;
        Self {
            config,
            pause_reading_above,
            max_output_buffer,
            linger: Duration::from_secs(5),
            notice_capacity: 1024,
            park_idle_after: Some(Duration::from_secs(1)),
            #[cfg(feature = "persistence")]
            persistence: None,
        }
    }
}

/// Something that happened to a connection of the broker, for logs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerNotice {
    /// A transport was accepted (before its CONNECT).
    Opened {
        /// The connection.
        connection: ConnectionId,
        /// The peer's address, for TCP connections.
        peer: Option<SocketAddr>,
    },
    /// A transport was refused at once: `max_connections` connections are open, and
    /// `max_refusing_connections` more that answer their CONNECT with 0x97 Quota exceeded.
    Refused {
        /// The peer's address, for TCP connections.
        peer: Option<SocketAddr>,
    },
    /// The core's event (a client connected, or a connection closes), with the peer's address.
    Event {
        /// The peer's address, for TCP connections.
        peer: Option<SocketAddr>,
        /// The event.
        event: BrokerEvent,
    },
    /// A client was disconnected because more than `max_output_buffer` bytes waited to be
    /// written to it (the safety net; the core's limits normally hold its output back first).
    SlowConsumer {
        /// The connection.
        connection: ConnectionId,
    },
    /// The persistence store failed (feature `persistence`): the broker shuts down without
    /// sending the answers that waited for it.
    StoreFailed {
        /// The store's error.
        error: String,
    },
}

impl fmt::Display for BrokerNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peer = |p: &Option<SocketAddr>| p.map_or_else(|| "-".to_owned(), |a| a.to_string());
        match self {
            Self::Opened {
                connection,
                peer: p,
            } => {
                write!(f, "#{} new connection from {}", connection.get(), peer(p))
            }
            Self::Refused { peer: p } => {
                write!(f, "refused connection from {} (too many)", peer(p))
            }
            Self::Event { peer: p, event } => match event {
                BrokerEvent::Connected {
                    connection,
                    client_id,
                    version,
                    session_present,
                } => write!(
                    f,
                    "#{} {} connected as {:?} ({:?}, session present: {})",
                    connection.get(),
                    peer(p),
                    client_id.as_str(),
                    version,
                    session_present
                ),
                BrokerEvent::Close {
                    connection,
                    client_id,
                    reason,
                } => write!(
                    f,
                    "#{} {} {:?} closed: {}",
                    connection.get(),
                    peer(p),
                    client_id.as_str(),
                    reason
                ),
                BrokerEvent::ReadResumed { connection } => {
                    write!(f, "#{} read resumed", connection.get())
                }
            },
            Self::SlowConsumer { connection } => {
                write!(f, "#{} disconnected as a slow consumer", connection.get())
            }
            Self::StoreFailed { error } => write!(f, "persistence failed: {error}"),
        }
    }
}

/// The receiving end of [`BrokerServerOn::notices`]. Notices that do not fit are dropped, so
/// a log that is not read never slows the broker down.
#[derive(Debug)]
pub struct BrokerNotices {
    rx: mpsc::Receiver<BrokerNotice>,
}

impl BrokerNotices {
    /// The next notice; `None` once the broker has stopped.
    ///
    /// Cancel safe: no notice is lost when the future is dropped.
    pub async fn recv(&mut self) -> Option<BrokerNotice> {
        self.rx.recv().await
    }
}

/// What a [`BrokerHandleOn`] asks the broker task to do.
enum Command {
    Serve(Box<Accepted>),
    Publish(Box<Message>),
    Stats(oneshot::Sender<BrokerStats>),
    Parked(oneshot::Sender<usize>),
    Shutdown(oneshot::Sender<()>),
}

/// An MQTT broker on the runtime `R`: the `mqtt-streaming-session` broker core served over a listener
/// (optional) and any transports handed to it with [`BrokerHandleOn::serve_transport`].
///
/// Each adapter names it for its runtime: `mqtt_streaming_tokio::BrokerServer`,
/// `mqtt_streaming_smol::BrokerServer`, `mqtt_streaming_async_std::BrokerServer` (same methods, each with
/// its runtime's address, listener and transport types).
pub struct BrokerServerOn<R: Runtime, H: BrokerHooks + Send + 'static = AllowAll> {
    runtime: R,
    options: BrokerOptions,
    hooks: H,
    listener: Option<Box<dyn Listener>>,
    commands: mpsc::Receiver<Command>,
    handle: BrokerHandleOn<R>,
    notices: Option<mpsc::Sender<BrokerNotice>>,
}

impl<R: Runtime, H: BrokerHooks + Send + 'static> fmt::Debug for BrokerServerOn<R, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerServer")
            .field("local_addr", &self.local_addr().ok())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<R: NetRuntime> BrokerServerOn<R, AllowAll> {
    /// A broker listening on `addr` (TCP, TCP_NODELAY on each connection), letting everyone
    /// in. Nothing is served until [`serve`](Self::serve) or [`spawn`](Self::spawn).
    pub async fn bind<A>(addr: A, options: impl Into<BrokerOptions>) -> io::Result<Self>
    where
        R: Bind<A>,
    {
        let listener = R::bind(addr).await?;
        Ok(Self::from_listener(listener, options))
    }

    /// A broker with a TCP listener of your own.
    pub fn from_listener(listener: R::TcpListener, options: impl Into<BrokerOptions>) -> Self {
        Self::new(options).with_listener(R::listener(listener))
    }

    /// A broker without a listener: it serves the transports given to
    /// [`BrokerHandleOn::serve_transport`].
    pub fn new(options: impl Into<BrokerOptions>) -> Self {
        Self::new_on(R::default(), options)
    }
}

impl<R: Runtime> BrokerServerOn<R, AllowAll> {
    /// A broker without a listener whose tasks run on `runtime`.
    pub fn new_on(runtime: R, options: impl Into<BrokerOptions>) -> Self {
        let (tx, rx) = mpsc::channel(INPUT_CAPACITY);
        Self {
            runtime,
            options: options.into(),
            hooks: AllowAll,
            listener: None,
            commands: rx,
            handle: BrokerHandleOn {
                commands: tx,
                local_addr: None,
                runtime: PhantomData,
            },
            notices: None,
        }
    }
}

impl<R: Runtime, H: BrokerHooks + Send + 'static> BrokerServerOn<R, H> {
    /// The same broker with the application's policy (authentication, publish and subscribe
    /// authorization).
    pub fn with_hooks<H2: BrokerHooks + Send + 'static>(self, hooks: H2) -> BrokerServerOn<R, H2> {
        BrokerServerOn {
            runtime: self.runtime,
            options: self.options,
            hooks,
            listener: self.listener,
            commands: self.commands,
            handle: self.handle,
            notices: self.notices,
        }
    }

    /// The same broker accepting from `listener` (any [`Listener`]) instead of its own.
    pub fn with_listener(mut self, listener: Box<dyn Listener>) -> Self {
        self.listener = Some(listener);
        self
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.listener {
            Some(listener) => listener.local_addr(),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "this broker has no listener",
            )),
        }
    }

    /// A handle to the running broker: serve more transports, publish, read the counters, shut
    /// down. Take it before [`serve`](Self::serve).
    pub fn handle(&self) -> BrokerHandleOn<R> {
        let mut handle = self.handle.clone();
        handle.local_addr = self.local_addr().ok();
        handle
    }

    /// A channel of [`BrokerNotice`]s (connections opened, clients connected, connections
    /// closed) for logging. Notices that do not fit are dropped.
    pub fn notices(&mut self) -> BrokerNotices {
        let (tx, rx) = mpsc::channel(self.options.notice_capacity.max(1));
        self.notices = Some(tx);
        BrokerNotices { rx }
    }

    /// Spawns [`serve`](Self::serve) on the runtime and returns a handle to it.
    pub fn spawn(self) -> BrokerHandleOn<R> {
        let handle = self.handle();
        let runtime = self.runtime.clone();
        runtime.spawn(async move {
            let _ = self.serve().await;
        });
        handle
    }

    /// Runs the broker until [`BrokerHandleOn::shutdown`] is called and every connection is
    /// closed.
    ///
    /// Cancel safety: dropping the future stops the broker at once: each connection writes
    /// what it was already given (within the linger time) and closes, without a DISCONNECT;
    /// sessions and retained messages are lost.
    pub async fn serve(self) -> io::Result<()> {
        let Self {
            runtime,
            options,
            hooks,
            listener,
            commands,
            handle: _,
            notices,
        } = self;
        #[allow(unused_mut)]
        let mut config = options.config.clone();
        #[cfg(feature = "persistence")]
        let opened = match &options.persistence {
            Some(p) => {
                config.persistence = true;
                Some((crate::persistence::open(&p.dir)?, p.durability))
            }
            None => None,
        };
        #[allow(unused_mut)]
        let mut broker = Broker::with_hooks(config, hooks);
        let clock = Clock::of::<R>();
        #[cfg(feature = "persistence")]
        let persist = match opened {
            Some(((db, snapshot), durability)) => {
                let now = clock.now();
                let wall = crate::persistence::unix_millis();
                broker.restore(now, snapshot, wall);
                let store = crate::persistence::StoreHandle::spawn(db, durability)?;
                Some(Persist {
                    store,
                    sync: durability == crate::persistence::Durability::Sync,
                    clock_at_zero: wall.saturating_sub(now.as_millis()),
                    sent: 0,
                    durable: 0,
                    staged: Vec::new(),
                    held: std::collections::VecDeque::new(),
                    held_bytes: 0,
                    ops: Vec::new(),
                    failed: false,
                })
            }
            None => None,
        };
        let (inputs_tx, inputs_rx) = mpsc::channel(INPUT_CAPACITY);
        #[cfg(unix)]
        let parking = Parking {
            lot: None,
            after: options.park_idle_after,
            woken: Vec::new(),
            sweep_timer: runtime.timer(),
            sweep_armed: false,
            runtime: runtime.clone(),
            inputs: inputs_tx.clone(),
            linger: options.linger,
            pause_above: options.pause_reading_above,
        };
        let task = BrokerTask {
            broker,
            #[cfg(feature = "persistence")]
            persist,
            clock,
            runtime,
            options,
            listener,
            commands: Some(commands),
            inputs_tx,
            inputs: inputs_rx,
            connections: HashMap::new(),
            partial: HashMap::new(),
            #[cfg(unix)]
            parking,
            out: BytesMut::with_capacity(READ_CHUNK),
            notices,
            closing: Vec::new(),
            shutdown_replies: Vec::new(),
            shutting_down: false,
        };
        task.run().await;
        Ok(())
    }
}

/// A cheap, cloneable handle to a running [`BrokerServerOn`] (`BrokerHandle` in each
/// adapter).
pub struct BrokerHandleOn<R> {
    commands: mpsc::Sender<Command>,
    local_addr: Option<SocketAddr>,
    runtime: PhantomData<fn() -> R>,
}

impl<R> Clone for BrokerHandleOn<R> {
    fn clone(&self) -> Self {
        Self {
            commands: self.commands.clone(),
            local_addr: self.local_addr,
            runtime: PhantomData,
        }
    }
}

impl<R> fmt::Debug for BrokerHandleOn<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerHandle")
            .field("local_addr", &self.local_addr)
            .field("stopped", &self.commands.is_closed())
            .finish()
    }
}

impl<R: Runtime> BrokerHandleOn<R> {
    /// The address of the broker's listener, if it has one.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Serves one more connection over any transport (TLS, WebSocket, Unix socket, in-memory
    /// duplex...). Fails with [`io::ErrorKind::NotConnected`] when the broker has stopped (the
    /// transport is then dropped).
    ///
    /// Cancel safety: dropping the future before it resolves drops the transport.
    pub async fn serve_transport<Io>(&self, transport: Io) -> io::Result<()>
    where
        R: Adapt<Io>,
    {
        let accepted = Accepted::of(Box::new(R::adapt(transport)), None);
        self.commands
            .send(Command::Serve(Box::new(accepted)))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::NotConnected, "the broker has stopped"))
    }

    /// Publishes `message` from the broker itself (retained when `message.retain`), as if a
    /// client had published it. Returns `false` when the broker has stopped.
    pub async fn publish(&self, message: Message) -> bool {
        self.commands
            .send(Command::Publish(Box::new(message)))
            .await
            .is_ok()
    }

    /// The broker's counters; `None` when the broker has stopped.
    pub async fn stats(&self) -> Option<BrokerStats> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Stats(tx)).await.ok()?;
        rx.await.ok()
    }

    /// How many connections are parked now ([`BrokerOptions::park_idle_after`]): idle, with
    /// no task; `None` when the broker has stopped.
    pub async fn parked_connections(&self) -> Option<usize> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Parked(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Shuts the broker down gracefully: stops accepting, tells every client (MQTT 5 clients
    /// get DISCONNECT 0x8B Server shutting down), writes out what each connection still has,
    /// closes every transport (each within the linger time) and resolves once the broker has
    /// stopped. Resolves at once when it already has.
    ///
    /// Cancel safety: once the request is handed over (first poll), the shutdown proceeds
    /// even if the future is dropped.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Whether the broker has stopped.
    pub fn is_stopped(&self) -> bool {
        self.commands.is_closed()
    }
}

/// What the connection tasks tell the broker task.
enum Input {
    Read(ConnectionId, BytesMut),
    /// The transport ended or failed while reading (the task goes on writing until the
    /// broker closes the connection).
    Lost(ConnectionId),
    /// The connection's task has ended (after the close, or when a write failed).
    Done(ConnectionId),
    /// The task brought the connection's pending output under `pause_reading_above` after
    /// the core was told to stop handing it bytes.
    Writable(ConnectionId),
    /// The connection was asked to park and was idle: its task has ended and hands over its
    /// state (see [`BrokerTask::park`]).
    #[cfg(unix)]
    Park(ConnectionId, Box<Link>),
}

/// What the broker task and a connection's task share: the bytes for the connection, its
/// flow-control flags and the task's waker, behind one lock that either side holds for a few
/// instructions at a time.
#[derive(Debug, Default)]
struct Outbox(Mutex<OutboxState>);

#[derive(Debug, Default)]
struct OutboxState {
    /// Bytes for the connection its task has not taken yet.
    buf: BytesMut,
    /// Bytes handed to the connection and not yet written (taken or not).
    pending: usize,
    /// The connection task's waker while it waits; taken by whoever wakes it.
    waker: Option<Waker>,
    /// The broker closed the connection: write what is left and close the transport.
    close: bool,
    /// The core does not want input from this connection for now (`Broker::wants_read`).
    input_paused: bool,
    /// The core was told not to hand out bytes for this connection (`pause_transmit`); the
    /// task reports `Writable` when it has written enough.
    transmit_paused: bool,
    /// Traffic since the last sweep for idle connections ([`Outbox::sweep`]).
    active: bool,
    /// A sweep found the connection idle: its task parks it if it still is.
    park_asked: bool,
    /// The transport cannot be parked (TLS, WebSocket...): sweeps leave it alone.
    never_park: bool,
}

impl OutboxState {
    /// The waker to call once the lock is released.
    fn wake(&mut self) -> Option<Waker> {
        self.waker.take()
    }

    /// Nothing to write, nothing held back either way, not closing: the connection's task
    /// may end while it waits for input.
    fn idle(&self) -> bool {
        self.buf.is_empty()
            && self.pending == 0
            && !self.close
            && !self.input_paused
            && !self.transmit_paused
    }
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, OutboxState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands `bytes` to the connection; returns the bytes now pending.
    fn push(&self, bytes: &[u8]) -> usize {
        let mut state = self.lock();
        state.buf.extend_from_slice(bytes);
        state.pending += bytes.len();
        state.active = true;
        let pending = state.pending;
        let waker = state.wake();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        pending
    }

    /// Counts `n` bytes that wait for the store as pending (feature `persistence`), so
    /// that the connection's output limits see them; returns the pending count.
    #[cfg(feature = "persistence")]
    fn hold(&self, n: usize) -> usize {
        let mut state = self.lock();
        state.pending += n;
        state.pending
    }

    /// Hands the connection bytes already counted by [`hold`](Self::hold).
    #[cfg(feature = "persistence")]
    fn push_held(&self, bytes: BytesMut) {
        let mut state = self.lock();
        if state.buf.is_empty() {
            state.buf = bytes;
        } else {
            state.buf.extend_from_slice(&bytes);
        }
        let waker = state.wake();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Bytes counted by [`hold`](Self::hold) that will never be sent (the store failed).
    #[cfg(feature = "persistence")]
    fn unhold(&self, n: usize) {
        let mut state = self.lock();
        state.pending = state.pending.saturating_sub(n);
    }

    /// The broker closed the connection.
    fn close(&self) {
        let mut state = self.lock();
        state.close = true;
        let waker = state.wake();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether the connection's pending output is above `pause_above`; if so the task
    /// reports `Writable` once it is not (the caller tells the core to pause).
    fn pause_transmit(&self, pause_above: usize) -> bool {
        let mut state = self.lock();
        if state.pending > pause_above {
            state.transmit_paused = true;
            return true;
        }
        false
    }

    /// The core wants no input from the connection until `resume_input`; the task stops
    /// after the read it is in.
    fn pause_input(&self) {
        self.lock().input_paused = true;
    }

    /// The core wants input again.
    fn resume_input(&self) {
        let mut state = self.lock();
        state.input_paused = false;
        let waker = state.wake();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// One sweep for idle connections: a connection with traffic since the last sweep is
    /// left alone (and its mark cleared); one without, and idle, is asked to park (its task
    /// is woken to hand itself over). Returns whether the connection may still be asked at a
    /// later sweep.
    #[cfg(unix)]
    fn sweep(&self) -> bool {
        let mut state = self.lock();
        if state.never_park {
            return false;
        }
        if std::mem::take(&mut state.active) || state.park_asked || !state.idle() {
            return true;
        }
        state.park_asked = true;
        let waker = state.wake();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Sweeps leave the connection alone from now on.
    #[cfg(unix)]
    fn never_park(&self) {
        self.lock().never_park = true;
    }

    /// Whether the connection is still idle (checked again by the broker task when the
    /// connection hands itself over).
    #[cfg(unix)]
    fn idle(&self) -> bool {
        self.lock().idle()
    }

    /// Everything not taken yet (the close path). The buffer goes with the bytes.
    fn take(&self) -> BytesMut {
        std::mem::take(&mut self.lock().buf)
    }
}

struct Connection {
    io: ConnectionIo,
    peer: Peer,
}

/// A connection's peer address as the broker task keeps it for its notices: 16 bytes where
/// an `Option<SocketAddr>` takes 32 (an IPv6 address is boxed), in every connection's entry.
enum Peer {
    Unknown,
    V4(std::net::SocketAddrV4),
    V6(Box<std::net::SocketAddrV6>),
}

impl Peer {
    fn new(addr: Option<SocketAddr>) -> Self {
        match addr {
            None => Self::Unknown,
            Some(SocketAddr::V4(addr)) => Self::V4(addr),
            Some(SocketAddr::V6(addr)) => Self::V6(Box::new(addr)),
        }
    }

    fn get(&self) -> Option<SocketAddr> {
        match self {
            Self::Unknown => None,
            Self::V4(addr) => Some(SocketAddr::V4(*addr)),
            Self::V6(addr) => Some(SocketAddr::V6(**addr)),
        }
    }
}

/// Where a connection's transport is: with its task, or parked.
enum ConnectionIo {
    /// The connection's task has the transport; they share the outbox.
    Active(Arc<Outbox>),
    /// Idle: no task; the transport's socket is watched by the broker's [`IdleLot`] (see
    /// [`BrokerOptions::park_idle_after`]).
    #[cfg(unix)]
    Parked(BoxTransport),
}

impl Connection {
    /// The outbox of an active connection.
    fn outbox(&self) -> Option<&Arc<Outbox>> {
        match &self.io {
            ConnectionIo::Active(outbox) => Some(outbox),
            #[cfg(unix)]
            ConnectionIo::Parked(_) => None,
        }
    }
}

/// Entries of room [`BrokerTask::partial`] keeps once it is empty again.
const PARTIAL_ROOM_KEPT: usize = 1024;

/// The one task that owns the broker core.
struct BrokerTask<R: Runtime, H: BrokerHooks> {
    broker: Broker<H>,
    clock: Clock,
    runtime: R,
    options: BrokerOptions,
    listener: Option<Box<dyn Listener>>,
    commands: Option<mpsc::Receiver<Command>>,
    inputs_tx: mpsc::Sender<Input>,
    inputs: mpsc::Receiver<Input>,
    connections: HashMap<ConnectionId, Connection>,
    /// Bytes read that do not make a whole packet yet, of the connections that have any: kept
    /// apart so that an idle connection's entry in `connections` holds no buffer.
    partial: HashMap<ConnectionId, BytesMut>,
    /// Idle connections parked without a task ([`BrokerOptions::park_idle_after`]).
    #[cfg(unix)]
    parking: Parking<R>,
    /// The broker's output, one connection at a time; reused.
    out: BytesMut,
    notices: Option<mpsc::Sender<BrokerNotice>>,
    /// Connections told to close whose tasks are still finishing.
    closing: Vec<ConnectionId>,
    shutdown_replies: Vec<oneshot::Sender<()>>,
    shutting_down: bool,
    #[cfg(feature = "persistence")]
    persist: Option<Persist>,
}

enum Step {
    Accepted(io::Result<Accepted>),
    Command(Option<Command>),
    Input(Input),
    Timeout,
    #[cfg(feature = "persistence")]
    Store(Option<crate::persistence::FromStore>),
    /// Time to look for idle connections.
    #[cfg(unix)]
    Sweep,
    /// Parked connections have input (their tokens in `woken`).
    #[cfg(unix)]
    Woken,
}

/// Output waiting for the store (feature `persistence`, durable mode).
#[cfg(feature = "persistence")]
enum Held {
    Bytes(Arc<Outbox>, BytesMut),
    Close(Arc<Outbox>),
}

#[cfg(feature = "persistence")]
impl Held {
    fn release(self) {
        match self {
            Self::Bytes(outbox, bytes) => outbox.push_held(bytes),
            Self::Close(outbox) => outbox.close(),
        }
    }

    /// The store failed: the bytes are never sent, the connection still closes.
    fn drop_bytes(self) {
        match self {
            Self::Bytes(outbox, bytes) => {
                outbox.unhold(bytes.len());
            }
            Self::Close(outbox) => outbox.close(),
        }
    }
}

/// Output held beyond which the broker stops taking input until the store catches up.
#[cfg(feature = "persistence")]
const MAX_HELD_BYTES: usize = 64 * 1024 * 1024;

/// The broker task's side of persistence (feature `persistence`).
#[cfg(feature = "persistence")]
struct Persist {
    store: crate::persistence::StoreHandle,
    /// Durable mode: output waits for the store.
    sync: bool,
    /// UNIX milliseconds at the core's `Instant::ZERO`.
    clock_at_zero: u64,
    /// The last batch sent to the store, and the last it made durable.
    sent: u64,
    durable: u64,
    /// This turn's output (durable mode).
    staged: Vec<Held>,
    /// Output waiting for the batch it is tagged with.
    held: std::collections::VecDeque<(u64, Held)>,
    held_bytes: usize,
    /// Reused buffer of the turn's store operations.
    ops: Vec<mqtt_streaming_session::broker::StoreOp>,
    failed: bool,
}

impl<R: Runtime, H: BrokerHooks> BrokerTask<R, H> {
    async fn run(mut self) {
        #[cfg(unix)]
        if self.parking.after.is_some() {
            self.parking.lot = self.runtime.idle_lot();
        }
        let mut timer = self.runtime.timer();
        let mut armed: Option<Instant> = None;
        loop {
            if self.shutting_down && self.connections.is_empty() && self.closing.is_empty() {
                break;
            }
            let next = self.broker.poll_timeout();
            if next != armed {
                armed = next;
                if let Some(at) = next {
                    timer.reset(self.clock.deadline(at));
                }
            }
            let step = poll_fn(|cx| self.poll_step(cx, &mut timer, armed.is_some())).await;
            let now = self.clock.now();
            match step {
                Step::Accepted(Ok(accepted)) => self.open(now, accepted),
                Step::Accepted(Err(_)) => {
                    // Out of file descriptors, or a connection reset before accept: wait a
                    // little instead of spinning.
                    sleep(&self.runtime, Duration::from_millis(50)).await;
                }
                Step::Command(Some(command)) => self.command(now, command),
                Step::Command(None) => self.commands = None,
                Step::Input(input) => {
                    self.input(now, input);
                    for _ in 1..INPUT_BATCH {
                        match self.inputs.try_recv() {
                            Ok(input) => self.input(now, input),
                            Err(_) => break,
                        }
                    }
                }
                Step::Timeout => {
                    // Timers never fire early; the max only guards the ms rounding.
                    let at = armed.take().unwrap_or(now);
                    self.broker.handle_timeout(now.max(at));
                }
                #[cfg(feature = "persistence")]
                Step::Store(report) => self.stored(now, report),
                #[cfg(unix)]
                Step::Sweep => self.sweep(),
                #[cfg(unix)]
                Step::Woken => self.wake_parked(),
            }
            self.drain(now);
            #[cfg(feature = "persistence")]
            self.persist_turn();
            if self.partial.is_empty() && self.partial.capacity() > PARTIAL_ROOM_KEPT {
                // A burst of connections with partial packets is over: its room goes back.
                self.partial = HashMap::new();
            }
        }
        #[cfg(feature = "persistence")]
        self.persist_close().await;
        // Stopped before anyone is told: `is_stopped` holds once `shutdown` resolves.
        self.commands = None;
        for reply in self.shutdown_replies.drain(..) {
            let _ = reply.send(());
        }
    }

    /// Waits for the first of: a command, an input from a connection, the timer, a new TCP
    /// connection (in that order of priority).
    fn poll_step(&mut self, cx: &mut Context<'_>, timer: &mut R::Timer, armed: bool) -> Poll<Step> {
        #[cfg(feature = "persistence")]
        if let Some(p) = &mut self.persist {
            if let Poll::Ready(report) = p.store.rx.poll_recv(cx) {
                return Poll::Ready(Step::Store(report));
            }
            if p.held_bytes > MAX_HELD_BYTES {
                // The store is behind: no input until it catches up.
                return Poll::Pending;
            }
        }
        if let Some(commands) = &mut self.commands {
            if let Poll::Ready(command) = commands.poll_recv(cx) {
                return Poll::Ready(Step::Command(command));
            }
        }
        if let Poll::Ready(Some(input)) = self.inputs.poll_recv(cx) {
            return Poll::Ready(Step::Input(input));
        }
        if armed && timer.poll_expired(cx).is_ready() {
            return Poll::Ready(Step::Timeout);
        }
        #[cfg(unix)]
        {
            let parking = &mut self.parking;
            if parking.sweep_armed && parking.sweep_timer.poll_expired(cx).is_ready() {
                parking.sweep_armed = false;
                return Poll::Ready(Step::Sweep);
            }
            if let Some(lot) = &mut parking.lot {
                if lot.poll_woken(cx, &mut parking.woken).is_ready() {
                    return Poll::Ready(Step::Woken);
                }
            }
        }
        if let Some(listener) = &mut self.listener {
            if let Poll::Ready(accepted) = listener.poll_accept(cx) {
                return Poll::Ready(Step::Accepted(accepted));
            }
        }
        Poll::Pending
    }

    fn notice(&self, notice: BrokerNotice) {
        if let Some(tx) = &self.notices {
            let _ = tx.try_send(notice);
        }
    }

    fn open(&mut self, now: Instant, accepted: Accepted) {
        if self.shutting_down {
            return;
        }
        let (io, peer) = accepted.into_transport();
        let Ok(id) = self.broker.open(now) else {
            self.notice(BrokerNotice::Refused { peer });
            return;
        };
        self.notice(BrokerNotice::Opened {
            connection: id,
            peer,
        });
        let outbox = Arc::new(Outbox::default());
        self.runtime.spawn(connection_task(
            self.runtime.clone(),
            id,
            Link::new(io, outbox.clone(), self.options.pause_reading_above),
            self.inputs_tx.clone(),
            self.options.linger,
        ));
        self.connections.insert(
            id,
            Connection {
                io: ConnectionIo::Active(outbox),
                peer: Peer::new(peer),
            },
        );
        #[cfg(unix)]
        self.parking.arm();
    }

    fn command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Serve(accepted) => self.open(now, *accepted),
            Command::Publish(message) => self.broker.publish(now, *message),
            Command::Stats(reply) => {
                let _ = reply.send(self.broker.stats());
            }
            Command::Parked(reply) => {
                let parked = self
                    .connections
                    .values()
                    .filter(|conn| conn.outbox().is_none())
                    .count();
                let _ = reply.send(parked);
            }
            Command::Shutdown(reply) => {
                self.shutdown_replies.push(reply);
                if !self.shutting_down {
                    self.shutting_down = true;
                    self.listener = None;
                    self.broker.shutdown(now);
                    self.drain(now);
                    // A connection the core could not ask to go (no CONNECT yet) goes as if
                    // its transport was lost.
                    let rest: Vec<ConnectionId> = self.connections.keys().copied().collect();
                    for id in rest {
                        self.broker.handle_closed(now, id);
                    }
                }
            }
        }
    }

    fn input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Read(id, chunk) => {
                if !self.connections.contains_key(&id) {
                    return;
                }
                let buf = match self.partial.remove(&id) {
                    Some(mut kept) => {
                        kept.unsplit(chunk);
                        kept
                    }
                    None => chunk,
                };
                self.feed_bytes(now, id, buf);
            }
            Input::Lost(id) => self.broker.handle_closed(now, id),
            Input::Writable(id) => self.broker.resume_transmit(id),
            #[cfg(unix)]
            Input::Park(id, link) => self.park(id, *link),
            Input::Done(id) => {
                if self.connections.contains_key(&id) {
                    // A write failed before the core closed the connection. The close is
                    // drained now, before the connection leaves `closing`: its task has
                    // already ended and will not report again.
                    self.broker.handle_closed(now, id);
                    self.drain(now);
                }
                self.closing.retain(|c| *c != id);
            }
        }
    }

    /// Gives the core what connection `id` has read and not consumed; pauses its reading
    /// while the core wants no input from it.
    fn feed(&mut self, now: Instant, id: ConnectionId) {
        if !self.connections.contains_key(&id) {
            return;
        }
        let buf = self.partial.remove(&id).unwrap_or_default();
        self.feed_bytes(now, id, buf);
    }

    /// [`feed`](Self::feed) with the bytes in hand: what the core leaves of them is kept in
    /// `partial` until the connection's next read.
    fn feed_bytes(&mut self, now: Instant, id: ConnectionId, mut buf: BytesMut) {
        self.broker.handle_read(now, id, &mut buf);
        let wants = self.broker.wants_read(id);
        if let Some(conn) = self.connections.get(&id) {
            if !buf.is_empty() {
                self.partial.insert(id, buf);
            }
            // An empty `buf` is dropped: no view of the chunk is kept, so the connection task
            // reuses (or, idle, frees) it.
            if let (false, Some(outbox)) = (wants, conn.outbox()) {
                // Until `ReadResumed`; the task stops reading after the read it is in.
                outbox.pause_input();
            }
        }
    }

    /// The drain rule: every connection's bytes, then the events; connections the core wants
    /// input from again are fed what they hold, and the rule applies again.
    fn drain(&mut self, now: Instant) {
        loop {
            let resumed = self.drain_once(now);
            if resumed.is_empty() {
                return;
            }
            for id in resumed {
                if let Some(outbox) = self.connections.get(&id).and_then(Connection::outbox) {
                    outbox.resume_input();
                }
                self.feed(now, id);
            }
        }
    }

    fn drain_once(&mut self, now: Instant) -> Vec<ConnectionId> {
        let mut slow = Vec::new();
        let mut resumed = Vec::new();
        while let Some(id) = self.broker.poll_transmit(now, &mut self.out) {
            if let Some(conn) = self.connections.get_mut(&id) {
                #[cfg(unix)]
                self.parking.wake(id, conn);
                let Some(outbox) = conn.outbox() else {
                    self.out.clear();
                    continue;
                };
                #[cfg(feature = "persistence")]
                let pending = match &mut self.persist {
                    // Durable mode: decided at the end of the turn (`persist_turn`).
                    Some(p) if p.sync => {
                        let bytes = self.out.split();
                        p.held_bytes += bytes.len();
                        let pending = outbox.hold(bytes.len());
                        p.staged.push(Held::Bytes(outbox.clone(), bytes));
                        pending
                    }
                    _ => outbox.push(&self.out),
                };
                #[cfg(not(feature = "persistence"))]
                let pending = outbox.push(&self.out);
                if pending > self.options.max_output_buffer {
                    slow.push(id);
                } else if pending > self.options.pause_reading_above
                    // (Unless the task caught up in between.)
                    && outbox.pause_transmit(self.options.pause_reading_above)
                {
                    // The core keeps the rest until the task catches up (`Writable`).
                    self.broker.pause_transmit(id);
                }
            }
            self.out.clear();
        }
        while let Some(event) = self.broker.poll_event() {
            let peer = match &event {
                BrokerEvent::Connected { connection, .. }
                | BrokerEvent::Close { connection, .. } => {
                    self.connections.get(connection).and_then(|c| c.peer.get())
                }
                BrokerEvent::ReadResumed { connection } => {
                    resumed.push(*connection);
                    continue;
                }
            };
            if let BrokerEvent::Close { connection, .. } = &event {
                self.partial.remove(connection);
                if let Some(mut conn) = self.connections.remove(connection) {
                    // A parked connection gets its task back to write its last bytes and
                    // close within the linger time.
                    #[cfg(unix)]
                    self.parking.wake(*connection, &mut conn);
                    if let Some(outbox) = conn.outbox() {
                        #[cfg(feature = "persistence")]
                        match &mut self.persist {
                            Some(p) if p.sync => p.staged.push(Held::Close(outbox.clone())),
                            _ => outbox.close(),
                        }
                        #[cfg(not(feature = "persistence"))]
                        outbox.close();
                    }
                    self.closing.push(*connection);
                }
            }
            self.notice(BrokerNotice::Event { peer, event });
        }
        for id in slow {
            if self.connections.contains_key(&id) {
                self.notice(BrokerNotice::SlowConsumer { connection: id });
                self.broker.handle_closed(now, id);
                resumed.extend(self.drain_once(now));
            }
        }
        resumed
    }
}

/// The broker task's side of parking idle connections ([`BrokerOptions::park_idle_after`]):
/// the runtime's [`IdleLot`] that watches parked sockets, the sweep timer, and what a woken
/// connection's new task needs.
///
/// How a connection parks: every `after`, a sweep asks each active connection without
/// traffic since the previous sweep, and idle (nothing to write, nothing held back), to park
/// ([`Outbox::sweep`]); its task, if it is still idle, ends and hands its [`Link`] to the
/// broker task ([`Input::Park`]), which checks once more (output may have come meanwhile),
/// takes the socket out of the runtime's reactor ([`Transport::park`]) and gives it to the
/// lot. The connection's entry then holds the transport alone: no task, no outbox. Input on
/// the socket (the lot reports it), output for it or its close gives it a task again
/// ([`wake`](Self::wake)).
///
/// [`Transport::park`]: crate::transport::Transport::park
#[cfg(unix)]
struct Parking<R: Runtime> {
    lot: Option<Box<dyn IdleLot>>,
    after: Option<Duration>,
    /// Tokens of parked connections with input, from the lot; reused.
    woken: Vec<u64>,
    sweep_timer: R::Timer,
    sweep_armed: bool,
    runtime: R,
    inputs: mpsc::Sender<Input>,
    linger: Duration,
    pause_above: usize,
}

#[cfg(unix)]
impl<R: Runtime> Parking<R> {
    /// Arms the sweep timer if it is not (and parking is on).
    fn arm(&mut self) {
        if self.sweep_armed || self.lot.is_none() {
            return;
        }
        if let Some(after) = self.after {
            self.sweep_timer.reset(R::now().saturating_add(after));
            self.sweep_armed = true;
        }
    }

    /// Gives parked connection `id` a task again (with a new outbox); a no-op for an active
    /// one.
    fn wake(&mut self, id: ConnectionId, conn: &mut Connection) {
        if !matches!(conn.io, ConnectionIo::Parked(_)) {
            return;
        }
        let outbox = Arc::new(Outbox::default());
        let ConnectionIo::Parked(mut io) =
            std::mem::replace(&mut conn.io, ConnectionIo::Active(outbox.clone()))
        else {
            return;
        };
        // On an error the transport is broken: the task's first read fails and reports the
        // loss, as for any connection.
        if let (Ok(fd), Some(lot)) = (io.unpark(), &mut self.lot) {
            lot.unwatch(fd);
        }
        self.runtime.spawn(connection_task(
            self.runtime.clone(),
            id,
            Link::new(io, outbox, self.pause_above),
            self.inputs.clone(),
            self.linger,
        ));
        self.arm();
    }
}

#[cfg(unix)]
impl<R: Runtime, H: BrokerHooks> BrokerTask<R, H> {
    /// Asks the active connections idle since the last sweep to park; sweeps again later
    /// while any connection may still be asked.
    fn sweep(&mut self) {
        if self.shutting_down {
            return;
        }
        let mut again = false;
        for conn in self.connections.values() {
            if let Some(outbox) = conn.outbox() {
                again |= outbox.sweep();
            }
        }
        if again {
            self.parking.arm();
        }
    }

    /// Connection `id`'s task ended to park it: parks the transport if the connection is
    /// still open and idle and the transport can be parked; otherwise the connection gets its
    /// task back, as it was.
    fn park(&mut self, id: ConnectionId, mut link: Link) {
        if let (Some(conn), Some(lot), false) = (
            self.connections.get_mut(&id),
            &mut self.parking.lot,
            self.shutting_down,
        ) {
            let same = conn
                .outbox()
                .is_some_and(|outbox| Arc::ptr_eq(outbox, &link.outbox));
            if same && link.outbox.idle() {
                match link.io.park() {
                    Some(fd) => {
                        if lot.watch(id.into_raw(), fd).is_ok() {
                            conn.io = ConnectionIo::Parked(link.io);
                            return;
                        }
                        // Not watched: the connection keeps its task (if the socket cannot
                        // go back to the reactor either, its reads fail and report the loss).
                        let _ = link.io.unpark();
                    }
                    None => link.outbox.never_park(),
                }
            }
        }
        self.runtime.spawn(connection_task(
            self.runtime.clone(),
            id,
            link,
            self.inputs_tx.clone(),
            self.options.linger,
        ));
    }

    /// Gives the parked connections with input their tasks again.
    fn wake_parked(&mut self) {
        let mut woken = std::mem::take(&mut self.parking.woken);
        for token in woken.drain(..) {
            let Some(id) = ConnectionId::from_raw(token) else {
                continue;
            };
            if let Some(conn) = self.connections.get_mut(&id) {
                self.parking.wake(id, conn);
            }
        }
        self.parking.woken = woken;
    }
}

#[cfg(feature = "persistence")]
impl<R: Runtime, H: BrokerHooks> BrokerTask<R, H> {
    /// The end of a turn: its changes go to the store as one batch; in durable mode its
    /// output waits for that batch (and every one before it) to be durable.
    fn persist_turn(&mut self) {
        let Some(p) = &mut self.persist else {
            return;
        };
        while let Some(change) = self.broker.poll_change() {
            change.ops(p.clock_at_zero, &mut p.ops);
        }
        if !p.ops.is_empty() {
            p.sent += 1;
            let ops = std::mem::take(&mut p.ops);
            p.store
                .send(crate::persistence::ToStore::Batch(p.sent, ops));
        }
        if p.failed {
            for held in p.staged.drain(..) {
                held.drop_bytes();
            }
            p.held_bytes = 0;
        } else if p.sent > p.durable {
            let tag = p.sent;
            p.held.extend(p.staged.drain(..).map(|h| (tag, h)));
        } else {
            for held in p.staged.drain(..) {
                held.release();
            }
            p.held_bytes = 0;
        }
    }

    /// A report of the store thread.
    fn stored(&mut self, now: Instant, report: Option<crate::persistence::FromStore>) {
        let Some(p) = &mut self.persist else {
            return;
        };
        match report {
            Some(crate::persistence::FromStore::Durable(n)) => {
                p.durable = p.durable.max(n);
                while p.held.front().is_some_and(|(tag, _)| *tag <= p.durable) {
                    if let Some((_, held)) = p.held.pop_front() {
                        if let Held::Bytes(_, bytes) = &held {
                            p.held_bytes = p.held_bytes.saturating_sub(bytes.len());
                        }
                        held.release();
                    }
                }
            }
            Some(crate::persistence::FromStore::Closed) => {}
            failed => {
                let error = match failed {
                    Some(crate::persistence::FromStore::Failed(e)) => e,
                    _ => "the store thread stopped".to_owned(),
                };
                p.failed = true;
                for (_, held) in p.held.drain(..) {
                    held.drop_bytes();
                }
                p.held_bytes = 0;
                self.notice(BrokerNotice::StoreFailed { error });
                if !self.shutting_down {
                    self.shutting_down = true;
                    self.listener = None;
                    self.broker.shutdown(now);
                    self.drain(now);
                    let rest: Vec<ConnectionId> = self.connections.keys().copied().collect();
                    for id in rest {
                        self.broker.handle_closed(now, id);
                    }
                }
            }
        }
    }

    /// The broker stopped: what is pending is committed, and the store closed, before
    /// `serve` returns (so a new broker can open it at once).
    async fn persist_close(&mut self) {
        let Some(mut p) = self.persist.take() else {
            return;
        };
        if !p.failed {
            let last = p.sent + 1;
            p.store.send(crate::persistence::ToStore::Flush(last));
        }
        p.store.close();
        while let Some(report) = p.store.rx.recv().await {
            match report {
                crate::persistence::FromStore::Durable(_) => {}
                crate::persistence::FromStore::Failed(error) => {
                    self.notice(BrokerNotice::StoreFailed { error });
                }
                crate::persistence::FromStore::Closed => break,
            }
        }
    }
}

impl<R: Runtime, H: BrokerHooks> Drop for BrokerTask<R, H> {
    fn drop(&mut self) {
        // Stopped (or dropped): no connection outlives the broker.
        for (_, conn) in self.connections.drain() {
            // (A parked connection's socket closes with it.)
            if let Some(outbox) = conn.outbox() {
                outbox.close();
            }
        }
    }
}

/// What a connection's task does next (see [`Link::poll_turn`]).
enum Turn {
    /// Bytes read, for the broker task.
    Read(BytesMut),
    /// The transport ended or failed while reading.
    Lost,
    /// Pending output fell to `pause_reading_above` after the core was paused.
    Writable,
    /// The broker closed the connection.
    Close,
    /// Writing failed.
    Broken,
    /// Asked to park, and idle: the task ends and hands the connection to the broker task.
    #[cfg(unix)]
    Park,
}

/// A connection task's state: its transport, the outbox it shares with the broker task, the
/// bytes it is writing and its read buffer.
struct Link {
    io: BoxTransport,
    outbox: Arc<Outbox>,
    /// The output taken from the outbox, not yet written.
    out: BytesMut,
    /// Bytes taken with `out` and not yet reported written (that is, until `out` is written
    /// and flushed); 0 when nothing is being written.
    batch: usize,
    read_buf: BytesMut,
    /// Room the next read reserves (between [`MIN_READ`] and [`READ_CHUNK`]).
    want: usize,
    /// [`BrokerOptions::pause_reading_above`].
    pause_above: usize,
    /// Cleared once the transport ended or failed on a read, or the broker task is gone.
    reading: bool,
}

impl Link {
    fn new(io: BoxTransport, outbox: Arc<Outbox>, pause_above: usize) -> Self {
        Self {
            io,
            outbox,
            out: BytesMut::new(),
            batch: 0,
            read_buf: BytesMut::new(),
            want: MIN_READ,
            pause_above,
            reading: true,
        }
    }

    /// Writes what the broker task left in the outbox, everything waiting in one write, and
    /// reads while the connection may; ready with the first thing the loop must act on.
    ///
    /// Memory: an idle connection holds no buffer. The output buffer goes once written; the
    /// read waits for the transport's readiness
    /// ([`Transport::poll_read_ready`](crate::transport::Transport)) and reserves room only
    /// when bytes are there, growing (to [`READ_CHUNK`]) while reads fill it and shrinking
    /// (to [`MIN_READ`]) when they do not. A transport without readiness holds a buffer of
    /// the current size while it waits.
    fn poll_turn(&mut self, cx: &mut Context<'_>) -> Poll<Turn> {
        loop {
            let mut state = self.outbox.lock();
            if state.close {
                return Poll::Ready(Turn::Close);
            }
            #[cfg(unix)]
            if std::mem::take(&mut state.park_asked)
                && self.batch == 0
                && self.reading
                && state.idle()
            {
                return Poll::Ready(Turn::Park);
            }
            // Polled again: woken by input, output or a change of the flow control, which
            // the next sweep for idle connections must not take for idleness.
            state.active = true;
            if self.batch == 0 && !state.buf.is_empty() {
                self.out = std::mem::take(&mut state.buf);
                self.batch = self.out.len();
            }
            // Read on while output waits: the core bounds what input may make it answer
            // (`wants_read`, through `input_paused`), and a client that stops reading until it
            // can write must still get its acknowledgements read, or each side waits for the
            // other.
            let read = self.reading && !state.input_paused;
            // Registered before anything is polled: a push after this wakes the task.
            if !state
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                state.waker = Some(cx.waker().clone());
            }
            drop(state);
            if self.batch > 0 {
                match self.poll_write(cx) {
                    Poll::Ready(Ok(())) => {
                        let n = std::mem::take(&mut self.batch);
                        // Written: an idle connection keeps no output buffer.
                        self.out = BytesMut::new();
                        let mut state = self.outbox.lock();
                        state.pending -= n;
                        if state.pending <= self.pause_above && state.transmit_paused {
                            state.transmit_paused = false;
                            return Poll::Ready(Turn::Writable);
                        }
                        // More output may have come, and reading may resume.
                        continue;
                    }
                    Poll::Ready(Err(())) => return Poll::Ready(Turn::Broken),
                    Poll::Pending => {}
                }
            }
            if !read {
                self.read_buf = BytesMut::new();
                return Poll::Pending;
            }
            return self.poll_read(cx);
        }
    }

    /// Writes `out`, then flushes (a transport that buffers, a WebSocket's frames, sends only
    /// then; a no-op on TCP).
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        while !self.out.is_empty() {
            match self.io.poll_write(cx, &self.out) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(Err(())),
                Poll::Ready(Ok(n)) => self.out.advance(n),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.io.poll_flush(cx).map(|r| r.map_err(|_| ()))
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Turn> {
        match self.io.poll_read_ready(cx) {
            Poll::Pending => {
                // Idle: give the buffer back (the broker task dropped its view of the previous
                // chunk once it consumed it).
                self.read_buf = BytesMut::new();
                return Poll::Pending;
            }
            Poll::Ready(Err(_)) => return Poll::Ready(Turn::Lost),
            Poll::Ready(Ok(())) => {}
        }
        if self.read_buf.capacity() - self.read_buf.len() < self.want {
            // Reclaims the allocation in place once the broker dropped earlier chunks.
            self.read_buf.reserve(self.want);
        }
        match self.io.poll_read(cx, &mut self.read_buf) {
            Poll::Ready(Ok(0) | Err(_)) => Poll::Ready(Turn::Lost),
            Poll::Ready(Ok(n)) => {
                self.want = if self.read_buf.len() == self.read_buf.capacity() {
                    (self.want * 2).min(READ_CHUNK)
                } else if n < self.want / 4 {
                    (self.want / 2).max(MIN_READ)
                } else {
                    self.want
                };
                Poll::Ready(Turn::Read(self.read_buf.split()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// The broker closed the connection: what is left, then the transport's end, within the
    /// linger time. Boxed (see [`send_boxed`]).
    fn finish<'a, R: Runtime>(
        &'a mut self,
        runtime: &'a R,
        linger: Duration,
    ) -> Pin<Box<impl Future<Output = ()> + 'a>> {
        let out = std::mem::take(&mut self.out);
        let finish = async move {
            write_all(&mut *self.io, &out).await?;
            let rest = self.outbox.take();
            write_all(&mut *self.io, &rest).await?;
            transport::close(&mut *self.io).await
        };
        Box::pin(async move {
            let _ = timeout(runtime, linger, finish).await;
        })
    }
}

/// A connection's one task: reads the transport and hands what it read to the broker task,
/// writes what the broker task leaves in the outbox; pauses reading while the connection's
/// output waits to be written or the core wants no input from it. On close it writes the
/// rest and shuts the transport down within the linger time, then reports `Done`.
///
/// What is rare is boxed (the close with its timer, a send to a full channel), so that it
/// takes no room in the task's state for the connection's whole life.
// Not an `async fn` (the lint's suggestion): see the comment in the body.
#[allow(clippy::manual_async_fn)]
fn connection_task<R: Runtime>(
    runtime: R,
    id: ConnectionId,
    mut link: Link,
    inputs: mpsc::Sender<Input>,
    linger: Duration,
) -> impl Future<Output = ()> + Send {
    // An `async` block rather than an `async fn`: the block uses `link` where it was captured,
    // where an `async fn` would move its argument into a second place in its state.
    async move {
        loop {
            let input = match poll_fn(|cx| link.poll_turn(cx)).await {
                Turn::Read(chunk) => Input::Read(id, chunk),
                Turn::Lost => {
                    link.reading = false;
                    Input::Lost(id)
                }
                Turn::Writable => Input::Writable(id),
                Turn::Broken => break,
                #[cfg(unix)]
                Turn::Park => {
                    // The rest of the connection's life until it has traffic again is the
                    // broker task's (which may also give it straight back).
                    if let Ok(Some(park)) = try_input(&inputs, Input::Park(id, Box::new(link))) {
                        let _ = send_boxed(&inputs, park).await;
                    }
                    return;
                }
                Turn::Close => {
                    let _ = link.finish(&runtime, linger).await;
                    break;
                }
            };
            let full = match try_input(&inputs, input) {
                Ok(full) => full,
                Err(()) => {
                    // The broker task is gone; its end closes the connection.
                    link.reading = false;
                    None
                }
            };
            if let Some(input) = full {
                // A full channel (rare): the wait is boxed, so that it takes no room in the
                // task's state.
                if send_boxed(&inputs, input).await.is_err() {
                    link.reading = false;
                }
            }
        }
        drop(link);
        if let Ok(Some(done)) = try_input(&inputs, Input::Done(id)) {
            let _ = send_boxed(&inputs, done).await;
        }
    }
}

/// The wait for room in the channel to the broker task, boxed. Built in a plain function: a
/// future boxed where it is awaited (`Box::pin(f).await`) still takes room in the awaiting
/// future's state, as a temporary that lives until the await ends.
fn send_boxed(
    inputs: &mpsc::Sender<Input>,
    input: Input,
) -> Pin<Box<impl Future<Output = Result<(), mpsc::error::SendError<Input>>> + '_>> {
    Box::pin(inputs.send(input))
}

/// Sends to the broker task if the channel has room; gives `input` back if it is full, and
/// fails if the broker task is gone.
fn try_input(inputs: &mpsc::Sender<Input>, input: Input) -> Result<Option<Input>, ()> {
    match inputs.try_send(input) {
        Ok(()) => Ok(None),
        Err(mpsc::error::TrySendError::Full(input)) => Ok(Some(input)),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
    }
}

#[cfg(all(test, feature = "tokio-runtime"))]
mod tests {
    use super::*;

    /// A transport that never has anything: only the futures' sizes are looked at.
    struct Idle;

    impl crate::transport::Transport for Idle {
        fn poll_read(&mut self, _: &mut Context<'_>, _: &mut BytesMut) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
        fn poll_write(&mut self, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
        fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
        fn poll_close(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    /// A waker that counts its wakes.
    #[cfg(unix)]
    struct CountWakes(std::sync::atomic::AtomicUsize);

    #[cfg(unix)]
    impl std::task::Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The sweep for idle connections: traffic since the last sweep spares a connection once;
    /// an idle one without traffic is asked to park (its task woken, once); output waiting or
    /// reading paused keeps it active; a transport that cannot park is never asked again.
    #[cfg(unix)]
    #[test]
    fn a_sweep_asks_only_connections_idle_since_the_last_one() {
        let wakes = Arc::new(CountWakes(Default::default()));
        let woken = || wakes.0.load(std::sync::atomic::Ordering::SeqCst);
        let outbox = Outbox::default();
        let register = || outbox.lock().waker = Some(Waker::from(wakes.clone()));
        register();
        outbox.lock().active = true;
        assert!(outbox.sweep(), "sweeps go on");
        assert!(!outbox.lock().park_asked, "traffic since the last sweep");
        assert_eq!(woken(), 0);
        assert!(outbox.sweep());
        assert!(outbox.lock().park_asked, "idle since the last sweep");
        assert_eq!(woken(), 1, "its task is woken to park");
        register();
        assert!(outbox.sweep());
        assert_eq!(woken(), 1, "asked once");

        // Output waiting, or reading paused: not idle, not asked.
        let busy = Outbox::default();
        busy.push(b"x");
        busy.lock().active = false;
        assert!(busy.sweep());
        assert!(!busy.lock().park_asked);
        let paused = Outbox::default();
        paused.pause_input();
        assert!(paused.sweep());
        assert!(!paused.lock().park_asked);

        // A transport that cannot park: left alone from then on.
        let never = Outbox::default();
        never.never_park();
        assert!(!never.sweep(), "no more sweeps needed for it");
        assert!(!never.lock().park_asked);
    }

    /// Every open connection has an entry in the broker task's map, a parked one nothing
    /// else of the adapter's (issue 12: mosquitto's ~1 KB per idle connection in all is the
    /// goal): the key and the entry take 40 bytes (56 with the peer as an
    /// `Option<SocketAddr>`).
    #[test]
    fn a_connection_entry_takes_40_bytes() {
        assert_eq!(std::mem::size_of::<Peer>(), 16);
        assert_eq!(std::mem::size_of::<(ConnectionId, Connection)>(), 40);
        let v6: SocketAddr = "[::1]:1883".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        for addr in [None, Some(v4), Some(v6)] {
            assert_eq!(Peer::new(addr).get(), addr);
        }
    }

    /// Every open connection keeps one task that reads and writes; its future's state is
    /// part of the memory an idle connection costs (issue 12: mosquitto's ~1 KB per idle
    /// connection in all is the goal). Rarely used parts (the close with its timer, a send to
    /// a full channel) are boxed so that they do not take room in every connection's task.
    #[test]
    fn connection_task_futures_stay_small() {
        let mut broker = Broker::new(BrokerConfig::default());
        let id = broker
            .open(Instant::from_millis(0))
            .expect("room for a connection");
        let (tx, _rx) = mpsc::channel(1);
        let task = connection_task(
            crate::TokioRuntime,
            id,
            Link::new(Box::new(Idle), Arc::new(Outbox::default()), 0),
            tx,
            Duration::ZERO,
        );
        let size = std::mem::size_of_val(&task);
        println!("connection task future: {size} bytes");
        // 256 bytes, of which the task's `Link` is 120. Before: a reader task of 368 bytes and
        // a writer task of 376, each with its own task header.
        assert!(size <= 256, "connection task future {size} bytes");
    }
}
