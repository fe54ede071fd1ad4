//! A simulated byte stream: delays, fragmentation, cuts; in-order like TCP.

use alloc::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use rand::rngs::SmallRng;
use rand::RngExt;

use crate::time::Instant;

/// How the simulated network behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Smallest one-way delay in milliseconds.
    pub min_delay_ms: u64,
    /// Largest one-way delay in milliseconds.
    pub max_delay_ms: u64,
    /// Largest chunk a write is cut into (1 delivers byte by byte).
    pub max_chunk: usize,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            min_delay_ms: 1,
            max_delay_ms: 20,
            max_chunk: 64,
        }
    }
}

/// One direction of a connection: chunks with their delivery times, never reordered.
#[derive(Debug, Default)]
pub struct Pipe {
    chunks: VecDeque<(Instant, Bytes)>,
}

impl Pipe {
    /// Sends `bytes` at `now`: cut into random chunks, each delivered after a random delay but
    /// never before the chunk sent ahead of it.
    pub fn send(
        &mut self,
        now: Instant,
        mut bytes: Bytes,
        config: &NetworkConfig,
        rng: &mut SmallRng,
    ) {
        let mut at = self.chunks.back().map_or(now, |(t, _)| *t).max(now);
        while !bytes.is_empty() {
            let n = rng
                .random_range(1..=config.max_chunk.max(1))
                .min(bytes.len());
            let delay = rng
                .random_range(config.min_delay_ms..=config.max_delay_ms.max(config.min_delay_ms));
            at = at.max(now + core::time::Duration::from_millis(delay));
            self.chunks.push_back((at, bytes.split_to(n)));
        }
    }

    /// Moves every chunk due by `now` into `buf`; returns whether anything moved.
    pub fn deliver(&mut self, now: Instant, buf: &mut BytesMut) -> bool {
        let mut moved = false;
        while let Some((at, _)) = self.chunks.front() {
            if *at > now {
                break;
            }
            if let Some((_, chunk)) = self.chunks.pop_front() {
                buf.extend_from_slice(&chunk);
                moved = true;
            }
        }
        moved
    }

    /// When the next chunk is due.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.chunks.front().map(|(t, _)| *t)
    }

    /// Whether nothing is in transit.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// Both directions of one connection, with each end's read buffer.
#[derive(Debug, Default)]
pub struct Duplex {
    /// Client to server.
    pub to_server: Pipe,
    /// Server to client.
    pub to_client: Pipe,
    /// What the client has received and not consumed yet.
    pub client_rx: BytesMut,
    /// What the server has received and not consumed yet.
    pub server_rx: BytesMut,
}

impl Duplex {
    /// Whether no byte is in transit in either direction.
    pub fn is_idle(&self) -> bool {
        self.to_server.is_empty() && self.to_client.is_empty()
    }

    /// The next delivery in either direction.
    pub fn next_delivery(&self) -> Option<Instant> {
        match (
            self.to_server.next_delivery(),
            self.to_client.next_delivery(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
