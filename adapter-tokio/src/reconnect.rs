//! Layer 6b: what a client that reconnects by itself needs below the driver: the
//! [`ReconnectPolicy`] (exponential backoff with jitter) and the connector, a function that
//! opens a new transport on the runtime (with the backoff's pause before it). Imports
//! `runtime` and `transport`.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::runtime::{sleep, timeout, Runtime};
use crate::transport::BoxTransport;

/// When and how often a client reconnects by itself after losing its connection (opt-in: the
/// `connect_reconnecting` and `connect_tcp_reconnecting` entry points of each adapter, or
/// [`connect_reconnecting_on`](crate::engine::connect_reconnecting_on)).
///
/// Attempt `n` (from 1) waits `min(max_delay, min_delay * factor^(n-1))`, less a random share
/// of up to `jitter` of it (so that many clients cut off at once do not come back at once),
/// then opens a transport (within `connect_timeout`) and sends CONNECT (Clean Start 0: only the
/// first connection may start clean). The count starts again after each CONNACK.
#[derive(Clone, Debug, PartialEq)]
pub struct ReconnectPolicy {
    /// The pause before the first attempt after a loss. Default 100 ms.
    pub min_delay: Duration,
    /// The longest pause between attempts. Default 30 s.
    pub max_delay: Duration,
    /// How much the pause grows per failed attempt (at least 1). Default 2.
    pub factor: f64,
    /// The share of each pause taken off at random, from 0 (none) to 1 (anything down to
    /// zero). Default 0.5.
    pub jitter: f64,
    /// Give up after this many failed attempts in a row (the driver then ends and waiting
    /// operations fail with `Error::Closed`); `None` (the default): never give up.
    pub max_attempts: Option<u32>,
    /// How long opening the transport (TCP connect, TLS handshake...) may take. The CONNACK
    /// has its own timeout, [`ClientConfig::connack_timeout`](mqtt_streaming_session::ClientConfig::connack_timeout).
    /// Default 10 s.
    pub connect_timeout: Duration,
    /// When the server has lost the session (CONNACK Session Present 0), subscribe again to
    /// every filter the client held, and only once every SUBACK is in let the queued publishes
    /// go. Default `true`.
    pub resubscribe: bool,
    /// When the server has lost the session, publish again the QoS 1 and 2 messages it had not
    /// acknowledged, ahead of the queue (sets
    /// [`ClientConfig::requeue_on_session_loss`](mqtt_streaming_session::ClientConfig::requeue_on_session_loss)).
    /// With `false` they fail with `Error::Abandoned` (`SessionLost`). Default `true`.
    pub republish: bool,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            factor: 2.0,
            jitter: 0.5,
            max_attempts: None,
            connect_timeout: Duration::from_secs(10),
            resubscribe: true,
            republish: true,
        }
    }
}

impl ReconnectPolicy {
    /// The pause before attempt `attempt` (from 1), `random` in `[0, 1)` drawing the jitter.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let factor = if self.factor.is_finite() {
            self.factor.max(1.0)
        } else {
            1.0
        };
        let max = self.max_delay.max(self.min_delay).as_secs_f64();
        let base = (self.min_delay.as_secs_f64() * factor.powi(exponent)).min(max);
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let delay = base * (1.0 - jitter * random.clamp(0.0, 1.0));
        Duration::try_from_secs_f64(delay.max(0.0)).unwrap_or(self.max_delay)
    }
}

/// A boxed future.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Opens a new transport: the connector given to `connect_reconnecting`, on its runtime.
pub(crate) type Connector = Arc<dyn Fn() -> BoxFuture<io::Result<BoxTransport>> + Send + Sync>;

/// The runtime's timer as a boxed pause (for the backoff).
pub(crate) type Sleeper = Arc<dyn Fn(Duration) -> BoxFuture<()> + Send + Sync>;

/// `connect` bounded by `limit`, on `runtime`'s timer.
pub(crate) fn bounded_connector<R: Runtime>(
    runtime: R,
    limit: Duration,
    connect: impl Fn() -> BoxFuture<io::Result<BoxTransport>> + Send + Sync + 'static,
) -> Connector {
    Arc::new(move || {
        let runtime = runtime.clone();
        let connecting = connect();
        Box::pin(async move {
            match timeout(&runtime, limit, connecting).await {
                Some(result) => result,
                None => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "timed out opening the transport",
                )),
            }
        })
    })
}

/// `runtime`'s timer as a [`Sleeper`].
pub(crate) fn sleeper<R: Runtime>(runtime: R) -> Sleeper {
    Arc::new(move |duration| {
        let runtime = runtime.clone();
        Box::pin(async move { sleep(&runtime, duration).await })
    })
}

/// A small random number generator for the jitter (xorshift, seeded from the process's
/// random hasher keys): no dependency, no cryptographic claim.
#[derive(Debug)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new() -> Self {
        let seed = RandomState::new().hash_one(0x6d71_7474_u64);
        Self(seed | 1)
    }

    /// The next number in `[0, 1)`.
    pub(crate) fn next(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_by_factor_up_to_max_and_jitter_only_shortens() {
        let policy = ReconnectPolicy {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            factor: 2.0,
            jitter: 0.5,
            ..ReconnectPolicy::default()
        };
        assert_eq!(policy.delay(1, 0.0), Duration::from_millis(100));
        assert_eq!(policy.delay(2, 0.0), Duration::from_millis(200));
        assert_eq!(policy.delay(4, 0.0), Duration::from_millis(800));
        assert_eq!(policy.delay(5, 0.0), Duration::from_secs(1));
        assert_eq!(policy.delay(u32::MAX, 0.0), Duration::from_secs(1));
        // Half off at most.
        assert_eq!(policy.delay(1, 0.999_999_9).as_millis(), 50);
        let mut jitter = Jitter::new();
        for _ in 0..1000 {
            let r = jitter.next();
            assert!((0.0..1.0).contains(&r));
        }
    }
}
