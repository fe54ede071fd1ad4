//! Keep-alive bookkeeping for both roles ([MQTT-3.1.2-20], [MQTT-3.1.2-22], section 3.1.2.10).

use core::time::Duration;

use crate::time::Instant;

/// A PINGREQ goes out when nothing has been sent *or* nothing has been received for one
/// interval, and the connection is declared dead when nothing at all has been received for one
/// and a half intervals. Counting received traffic separately is what detects a dead server
/// while the application keeps publishing QoS 0: sent traffic alone would never trigger a ping
/// (the defect in Alpakka's client).
///
/// The client uses both deadlines. The server sends no pings and uses only the second: one
/// and a half keep-alive periods with nothing received ([MQTT-3.1.2-24] in 3.1.1,
/// [MQTT-3.1.2-22] in 5.0).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KeepAlive {
    /// The interval in seconds, 0 when off (24 bytes in all, where an `Option<Duration>`
    /// made it 40 in every session).
    interval_secs: u16,
    pub(crate) last_sent: Instant,
    pub(crate) last_received: Instant,
    pub(crate) ping_outstanding: bool,
}

impl KeepAlive {
    /// Starts the timers for an interval of `seconds` (0: off).
    pub(crate) fn start(&mut self, now: Instant, seconds: u16) {
        self.interval_secs = seconds;
        self.last_sent = now;
        self.last_received = now;
        self.ping_outstanding = false;
    }

    /// Stops the timers (no connection).
    pub(crate) fn stop(&mut self) {
        self.interval_secs = 0;
    }

    /// The interval, `None` when off.
    fn interval(&self) -> Option<Duration> {
        (self.interval_secs > 0).then(|| Duration::from_secs(u64::from(self.interval_secs)))
    }

    /// When the next PINGREQ is due.
    pub(crate) fn ping_at(&self) -> Option<Instant> {
        let interval = self.interval()?;
        (!self.ping_outstanding).then(|| self.last_sent.min(self.last_received) + interval)
    }

    /// When the server counts as dead.
    pub(crate) fn dead_at(&self) -> Option<Instant> {
        Some(self.last_received + self.interval()? * 3 / 2)
    }

    /// The earlier of the two deadlines.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match (self.ping_at(), self.dead_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
