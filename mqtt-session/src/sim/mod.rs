//! Deterministic simulation: sessions joined by a seeded network with a manual clock.
//!
//! Enabled by the `sim` feature; used by this crate's tests, the fuzz targets and the
//! adapters' tests. Nothing here reads a clock or touches a socket: a run is a pure function
//! of its seed, so a failing property test or fuzz input replays exactly.
//!
//! - [`NetworkConfig`] and [`Duplex`]: a byte pipe in each direction that delays, fragments
//!   and can be cut, keeping TCP's in-order delivery.
//! - [`Pair`]: one [`ClientSession`](crate::ClientSession) and a succession of
//!   [`ServerSession`](crate::ServerSession)s (one per connection) with a minimal server policy
//!   (accept every CONNECT, resume the stored session, grant subscriptions) and a log of every
//!   event on both sides.
//! - [`BrokerNet`]: a [`Broker`](crate::broker::Broker) core and many client sessions.

mod broker_net;
pub mod fuzz;
pub mod fuzz_broker;
mod input;
mod network;
mod pair;

pub use broker_net::{BrokerNet, SimClient};
pub use network::{Duplex, NetworkConfig, Pipe};
pub use pair::{Pair, PairEvent};
