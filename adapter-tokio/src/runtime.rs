//! Layer 2: what a runtime gives the engine (spawn, a resettable timer, a clock), and the one
//! [`Clock`] that turns the runtime's time into the sessions' millisecond
//! [`Instant`](mqtt_streaming_session::Instant). Imports nothing from the crate.
//!
//! A runtime gives the driver three things and nothing more:
//! - a clock: [`Runtime::now`], the time since a process-wide epoch of the runtime's choice
//!   (one per runtime type, so that a session detached from one connection keeps meaningful
//!   times on the next);
//! - a resettable [`Timer`] for the session's earliest deadline;
//! - [`Runtime::spawn`] for the connection's task.
//!
//! and, optionally, an [`IdleLot`] ([`Runtime::idle_lot`]): one watcher for the sockets of a
//! broker's idle connections, so that those need neither a task nor a registration of their
//! own while they are idle.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use mqtt_streaming_session::Instant;

/// An async runtime (executor, clock and timer) that connections' drivers run on.
///
/// Implemented by `mqtt_streaming_tokio::TokioRuntime` (feature `tokio-runtime`, on by default), by
/// `mqtt_streaming_smol::SmolRuntime` and by `mqtt_streaming_async_std::AsyncStdRuntime`.
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

    /// A watcher for the sockets of a broker's idle connections (Unix), for
    /// `BrokerOptions::park_idle_after`; `None` (the default): this runtime parks none, and
    /// every connection keeps its task. Called once per broker, from the broker's task.
    #[cfg(unix)]
    fn idle_lot(&self) -> Option<Box<dyn IdleLot>> {
        None
    }
}

/// One watcher for many parked sockets: a broker's idle connections, whose tasks have ended and
/// whose sockets left the runtime's reactor
/// ([`Transport::park`](crate::transport::Transport::park)) until they have input again or the
/// broker has output for them. Where a connection's task and its registration with the
/// reactor cost several hundred bytes, a parked socket costs the watcher nothing in the
/// process (the kernel keeps the interest).
///
/// `mqtt_streaming_tokio::TokioRuntime` provides one (an epoll or kqueue set of its own, whose
/// descriptor is registered once with tokio's reactor), and so do the futures-io runtimes
/// (`mqtt_streaming_smol::AsyncIoIdleLot`, with async-io's reactor).
#[cfg(unix)]
pub trait IdleLot: Send + 'static {
    /// Watches `fd` for input (or its end, or an error) and reports it under `token`, once.
    fn watch(&mut self, token: u64, fd: std::os::fd::RawFd) -> std::io::Result<()>;

    /// Stops watching `fd` (before or after it was reported).
    fn unwatch(&mut self, fd: std::os::fd::RawFd);

    /// Appends to `woken` the tokens of watched sockets that have input since the last call;
    /// `Ready` when it appended any, `Pending` (the context's waker registered) otherwise. A
    /// token may be reported after its socket was unwatched; the caller ignores those.
    fn poll_woken(&mut self, cx: &mut Context<'_>, woken: &mut Vec<u64>) -> Poll<()>;
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

/// The one clock of the engine (connections and broker alike): a runtime's time as the
/// sessions' [`Instant`], whole milliseconds since the runtime's process-wide epoch (rounded
/// down), so that a session detached from one connection keeps meaningful times (message
/// expiry) on the next.
///
/// A plain function pointer, so that runtime-free types (a detached session) can keep the
/// clock of the runtime they came from.
///
/// Deadlines go the other way exactly: [`deadline`](Self::deadline)`(at)` is the runtime time
/// of millisecond `at`, and once a timer set there has fired, [`now`](Self::now) reads at
/// least `at` (timers never fire early, and rounding down a time past `at` ms gives `at`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    now: fn() -> Duration,
}

impl Clock {
    /// The clock of the runtime `R`.
    pub(crate) fn of<R: Runtime>() -> Self {
        Self { now: R::now }
    }

    /// The current time, in whole milliseconds since the runtime's epoch.
    pub(crate) fn now(&self) -> Instant {
        let ms = (self.now)().as_millis();
        Instant::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// The runtime time (for [`Timer::reset`]) at which the sessions' time reaches `at`.
    pub(crate) fn deadline(&self, at: Instant) -> Duration {
        Duration::from_millis(at.as_millis())
    }

    /// The runtime time `duration` from now (for [`Timer::reset`]).
    pub(crate) fn after(&self, duration: Duration) -> Duration {
        (self.now)().saturating_add(duration)
    }
}

/// Waits `duration` on the runtime's timer.
pub(crate) async fn sleep<R: Runtime>(runtime: &R, duration: Duration) {
    let mut timer = runtime.timer();
    timer.reset(Clock::of::<R>().after(duration));
    poll_fn(|cx| timer.poll_expired(cx)).await;
}

/// `future`'s output, or `None` when `duration` passes first (on the runtime's timer).
pub(crate) async fn timeout<R: Runtime, T>(
    runtime: &R,
    duration: Duration,
    future: impl Future<Output = T>,
) -> Option<T> {
    let mut timer = runtime.timer();
    timer.reset(Clock::of::<R>().after(duration));
    let mut future = pin!(future);
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        timer.poll_expired(cx).map(|()| None)
    })
    .await
}
