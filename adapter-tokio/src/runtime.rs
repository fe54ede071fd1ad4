//! The runtime abstraction the drive loop is generic over, and the entry points that take a
//! runtime: how `adapter-smol` and `adapter-async-std` (or your own executor) run the very
//! same driver as this crate.
//!
//! A runtime gives the driver three things and nothing more:
//! - a clock: [`Runtime::now`], the time since a process-wide epoch of the runtime's choice
//!   (one per runtime type, so that a session detached from one connection keeps meaningful
//!   times on the next);
//! - a resettable [`Timer`] for the session's earliest deadline;
//! - [`Runtime::spawn`] for the connection's task.
//!
//! Transports are tokio's [`AsyncRead`](tokio::io::AsyncRead) +
//! [`AsyncWrite`](tokio::io::AsyncWrite) traits (see [`Transport`]). Those traits, the
//! `io-util` helpers and the `sync` channels this crate uses are plain data structures and
//! wakers: they need no tokio runtime, no reactor and no timer, so the engine runs under any
//! executor. A `futures-io` stream becomes a [`Transport`] with
//! `tokio_util::compat::FuturesAsyncReadCompatExt::compat`, which is what the smol and
//! async-std adapters do.
//!
//! The handles ([`Client`], [`ServerConnection`], ...) talk to the driver over channels and
//! carry no runtime type: only the spawned driver knows its runtime.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::client::{connect_with, Client, ClientEvents, ClientOptions};
use crate::driver::Transport;
use crate::error::Error;
use crate::server::{spawn_connection, ServerConnection, ServerOptions};

/// The runtime-generic broker server and what a runtime supplies for it (its TCP listener, its
/// address type, its transports); each adapter names `BrokerServerOn<ItsRuntime>`
/// `BrokerServer`.
pub use crate::broker::{
    Accepted, Adapt, Bind, BrokerHandleOn, BrokerServerOn, Listener, NetRuntime,
};

/// An async runtime (executor, clock and timer) that connections' drivers run on.
///
/// Implemented by [`TokioRuntime`] here (feature `tokio-runtime`, on by default), by
/// `adapter_smol::SmolRuntime` and by `adapter_async_std::AsyncStdRuntime`.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// The runtime's timer.
    type Timer: Timer;

    /// The current time, as the time elapsed since the runtime's process-wide epoch. Must be
    /// monotonic; the same clock as [`Timer::reset`]'s deadlines.
    fn now() -> Duration;

    /// A timer that is not armed (it never expires until reset).
    fn timer(&self) -> Self::Timer;

    /// Runs `future` to completion in the background.
    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static;
}

/// A resettable one-shot timer on a [`Runtime`]'s clock.
pub trait Timer: Send + Unpin + 'static {
    /// Arms the timer to expire at `deadline` (time since the runtime's epoch, as
    /// [`Runtime::now`]); replaces any earlier deadline.
    fn reset(&mut self, deadline: Duration);

    /// Ready once the deadline has passed (and stays ready until reset). Registers the
    /// context's waker while pending.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// [`connect`](crate::connect) on the given runtime: sends the CONNECT over `transport`,
/// spawns the driver with `runtime` and waits for the CONNACK. Same errors and cancel safety.
pub async fn connect_on<R: Runtime, Io: Transport>(
    runtime: R,
    transport: Io,
    options: ClientOptions,
) -> Result<(Client, ClientEvents), Error> {
    connect_with(runtime, transport, options).await
}

/// [`serve_connection`](crate::serve_connection) on the given runtime.
pub fn serve_connection_on<R: Runtime, Io: Transport>(
    runtime: R,
    transport: Io,
    options: impl Into<ServerOptions>,
) -> ServerConnection {
    spawn_connection(&runtime, transport, &options.into(), None, None)
}

/// The connections of one server (one listener) on a runtime, for graceful shutdown: what a
/// `Server` type is made of besides its listener. Each adapter's `Server` accepts from its own
/// listener and hands the stream to [`serve`](Self::serve).
pub struct ServerGroup<R> {
    runtime: R,
    options: ServerOptions,
    signal: watch::Sender<bool>,
    /// Held by every connection's driver; `done` ends when the last one finishes.
    live: mpsc::Sender<()>,
    done: mpsc::Receiver<()>,
}

impl<R> fmt::Debug for ServerGroup<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerGroup")
            .field("options", &self.options)
            .field("shutting_down", &*self.signal.borrow())
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> ServerGroup<R> {
    /// An empty group whose connections run on `runtime` with `options`.
    pub fn new(runtime: R, options: impl Into<ServerOptions>) -> Self {
        let (signal, _) = watch::channel(false);
        let (live, done) = mpsc::channel(1);
        Self {
            runtime,
            options: options.into(),
            signal,
            live,
            done,
        }
    }

    /// Serves one connection as part of the group (its driver is spawned on the runtime).
    pub fn serve<Io: Transport>(
        &self,
        transport: Io,
        peer_addr: Option<SocketAddr>,
    ) -> ServerConnection {
        spawn_connection(
            &self.runtime,
            transport,
            &self.options,
            Some((self.signal.subscribe(), self.live.clone())),
            peer_addr,
        )
    }

    /// Closes every connection of the group (MQTT 5 clients get DISCONNECT 0x8B Server
    /// shutting down; a CONNECT still waiting for an answer gets CONNACK 0x88 Server
    /// unavailable) and waits until every connection's transport is closed.
    ///
    /// Cancel safety: dropping the future after its first poll leaves the connections
    /// closing in the background.
    pub async fn shutdown(self) {
        let Self {
            signal,
            live,
            mut done,
            ..
        } = self;
        signal.send_replace(true);
        drop(live);
        // Only closes when the last driver drops its sender.
        let _ = done.recv().await;
    }
}

#[cfg(feature = "tokio-runtime")]
pub use tokio_rt::{TokioRuntime, TokioTimer};

#[cfg(feature = "tokio-runtime")]
mod tokio_rt {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::OnceLock;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use tokio::time::{Instant, Sleep};

    use super::{Runtime, Timer};

    /// The tokio runtime: `tokio::spawn` on the current runtime, tokio's timer and tokio's
    /// clock (so tests with a paused clock run the drivers faster than real time).
    #[derive(Clone, Copy, Debug, Default)]
    pub struct TokioRuntime;

    /// [`TokioRuntime`]'s timer: a boxed `tokio::time::Sleep`, reset in place.
    #[derive(Debug)]
    pub struct TokioTimer {
        sleep: Pin<Box<Sleep>>,
    }

    static EPOCH: OnceLock<Instant> = OnceLock::new();

    fn epoch() -> Instant {
        *EPOCH.get_or_init(|| {
            // Set back a little, so that a runtime with a paused clock created just before the
            // epoch was taken still reads times after it.
            let now = Instant::now();
            [3600, 60, 1]
                .into_iter()
                .find_map(|secs| now.checked_sub(Duration::from_secs(secs)))
                .unwrap_or(now)
        })
    }

    fn far_future() -> Instant {
        Instant::now() + Duration::from_secs(86_400 * 365)
    }

    impl Runtime for TokioRuntime {
        type Timer = TokioTimer;

        fn now() -> Duration {
            Instant::now().saturating_duration_since(epoch())
        }

        fn timer(&self) -> TokioTimer {
            TokioTimer {
                sleep: Box::pin(tokio::time::sleep_until(far_future())),
            }
        }

        fn spawn<F>(&self, future: F)
        where
            F: Future<Output = ()> + Send + 'static,
        {
            tokio::spawn(future);
        }
    }

    impl Timer for TokioTimer {
        fn reset(&mut self, deadline: Duration) {
            let at = epoch().checked_add(deadline).unwrap_or_else(far_future);
            self.sleep.as_mut().reset(at);
        }

        fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
            self.sleep.as_mut().poll(cx)
        }
    }
}
