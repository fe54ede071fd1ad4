//! Input: bytes are fed to a session one packet at a time (so the broker reacts between
//! packets), partial packets reserve their size from a broker-wide budget and must complete
//! within a deadline, and [`Broker::wants_read`] says which connections take input.

use bytes::BytesMut;
use mqtt_streaming_proto::{Disconnect, PacketType, ReasonCode};

use super::{Broker, BrokerHooks, Connection, ConnectionId};
use crate::server::ServerState;
use crate::shared::session_core::read_limit;
use crate::time::Instant;

/// The most acknowledgements given to a session at once (their events wait in its queue
/// until the broker handles them after the last).
const MAX_ACKS_PER_FEED: usize = 32;

/// PUBACK, PUBREC, PUBREL and PUBCOMP: packets that complete or advance a QoS 1/2 flow and
/// route nothing.
fn is_acknowledgement(packet_type: PacketType) -> bool {
    matches!(
        packet_type,
        PacketType::PubAck | PacketType::PubRec | PacketType::PubRel | PacketType::PubComp
    )
}

/// The incomplete packet at the front of a connection's unread bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Partial {
    /// The packet's size from its fixed header (at least what has arrived of it; a packet is
    /// at most 256 MiB and 5 bytes, `PROTOCOL_MAX_PACKET_SIZE`).
    size: u32,
    /// Whether `size` is reserved from `max_partial_bytes_total`; until then the connection
    /// is not read.
    reserved: bool,
    /// When it must be complete, if `reserved` (16 bytes in all, where an
    /// `Option<Instant>` and a `usize` took 32 in every connection).
    deadline: Instant,
}

impl Partial {
    fn new(size: usize, deadline: Option<Instant>) -> Self {
        Self {
            size: u32::try_from(size).unwrap_or(u32::MAX),
            reserved: deadline.is_some(),
            deadline: deadline.unwrap_or(Instant::ZERO),
        }
    }

    fn size(self) -> usize {
        self.size as usize
    }

    /// When it must be complete (once reserved).
    pub(super) fn deadline(self) -> Option<Instant> {
        self.reserved.then_some(self.deadline)
    }
}

impl<H: BrokerHooks> Broker<H> {
    /// `handle_read`: whole packets one at a time while the connection may be read, then the
    /// bookkeeping of what is left.
    ///
    /// The reader's own events are handled after each packet, so each PUBLISH is routed
    /// before the next is decoded ([MQTT-4.6.0-6]); the other connections its packets touched
    /// (the subscribers of a fan-out) are queued meanwhile and drained once, after the read,
    /// rather than after each packet: a read of K PUBLISHes to N subscribers costs N drains,
    /// not K × N. Nothing the driver sees changes, as it sees nothing before `handle_read`
    /// returns.
    pub(super) fn read_packets(&mut self, now: Instant, id: ConnectionId, buf: &mut BytesMut) {
        self.now = now;
        let outer = core::mem::replace(&mut self.settling, true);
        self.read_loop(now, id, buf);
        // Once per read, not per packet: its empty queues' room goes back (a queue emptied
        // after each packet was allocated again by the next one) and its bookkeeping is
        // refreshed (the loop checks `conn_wants_read` itself before each packet).
        self.tidy(id);
        self.settling = outer;
        self.run(now);
    }

    /// [`read_packets`](Self::read_packets) with every drain but the reader's queued.
    fn read_loop(&mut self, now: Instant, id: ConnectionId, buf: &mut BytesMut) {
        loop {
            let Some(conn) = self.connections.get(&id) else {
                return;
            };
            if !self.conn_wants_read(conn) {
                // Recorded (for `ReadResumed`) by the refresh.
                self.refresh(id);
                return;
            }
            let admitted = conn.session.state() == ServerState::Connected;
            match self.peek.peek_header(buf) {
                Ok(None) if buf.is_empty() => {
                    self.complete_partial(id);
                    break;
                }
                Ok(None) => {
                    // Not even the fixed header yet: at most a few bytes.
                    self.note_partial(now, id, buf.len());
                    break;
                }
                Ok(Some(header))
                    if !admitted
                        && header.packet_size() > self.config.max_connect_packet_size as usize =>
                {
                    // Not buffered: a client not admitted yet gets no large buffer.
                    self.stats.partial_packets_refused += 1;
                    self.close_connection(now, id, ReasonCode::PacketTooLarge);
                    break;
                }
                Ok(Some(header)) if header.packet_size() > buf.len() => {
                    let size = header.packet_size();
                    // The session refuses a size beyond its Maximum Packet Size from the
                    // header; otherwise it takes nothing yet.
                    self.feed(now, id, buf);
                    if self.connections.get(&id).is_some_and(|c| !c.closed) {
                        self.note_partial(now, id, size);
                    }
                    break;
                }
                Ok(Some(header)) => {
                    self.complete_partial(id);
                    let mut size = header.packet_size();
                    if admitted && is_acknowledgement(header.packet_type) {
                        size = self.acknowledgements_ahead(buf, size);
                    }
                    let mut packet = buf.split_to(size);
                    let consumed = self.feed_packet(now, id, &mut packet);
                    if !packet.is_empty() {
                        // Not taken (the session waits for something): put it back in front.
                        packet.unsplit(core::mem::take(buf));
                        *buf = packet;
                    }
                    if consumed == 0 {
                        break;
                    }
                }
                Err(_) => {
                    // A bad fixed header: the session reports it.
                    self.feed(now, id, buf);
                    break;
                }
            }
        }
        if self
            .connections
            .get(&id)
            .is_some_and(|c| c.partial.is_some())
        {
            // The partial packet's deadline.
            self.refresh(id);
        }
        // Connections a completed packet gave the budget to: in the caller's `run`.
    }

    /// The size of the run of whole acknowledgements at the front of `buf`, the first of
    /// which is `first` bytes long: at most [`MAX_ACKS_PER_FEED`] of them.
    ///
    /// Acknowledgements (PUBACK, PUBREC, PUBREL, PUBCOMP) route nothing, so consecutive ones
    /// are given to the session together and their events handled after the last, where each
    /// PUBLISH goes alone (it is routed before the next packet is decoded). The session still
    /// takes them one at a time and stops where it would stop for one (`wants_read`); what it
    /// leaves goes back to the front of the caller's buffer.
    fn acknowledgements_ahead(&self, buf: &BytesMut, first: usize) -> usize {
        let mut size = first;
        for _ in 1..MAX_ACKS_PER_FEED {
            match self.peek.peek_header(&buf[size..]) {
                Ok(Some(next))
                    if is_acknowledgement(next.packet_type)
                        && next.packet_size() <= buf.len() - size =>
                {
                    size += next.packet_size();
                }
                _ => break,
            }
        }
        size
    }

    /// Gives `buf` to connection `id`'s session and handles what it reports; returns how many
    /// bytes it consumed.
    fn feed(&mut self, now: Instant, id: ConnectionId, buf: &mut BytesMut) -> usize {
        // Its events now, not queued: its next packet waits for this one's routing (see
        // `read_packets`); then the bookkeeping.
        let consumed = self.feed_packet(now, id, buf);
        self.tidy(id);
        consumed
    }

    /// [`feed`](Self::feed) for a whole packet of a read: its events are handled now, the
    /// connection's bookkeeping once after the read ([`read_packets`](Self::read_packets)).
    fn feed_packet(&mut self, now: Instant, id: ConnectionId, packet: &mut BytesMut) -> usize {
        let Some(conn) = self.connections.get_mut(&id) else {
            return 0;
        };
        let before = packet.len();
        conn.session.handle_read(now, packet);
        let consumed = before - packet.len();
        self.stats.bytes_in += consumed as u64;
        self.drain_events(now, id);
        consumed
    }

    /// Whether `conn` takes input now (see [`Broker::wants_read`]).
    pub(super) fn conn_wants_read(&self, conn: &Connection) -> bool {
        if conn.closed || conn.partial.is_some_and(|p| !p.reserved) {
            return false;
        }
        // The session itself stops while its answers wait to be sent: past the room for
        // answers above a transmit buffer its deliveries filled (see `read_limit`).
        if conn.session.transmit_len() >= read_limit(self.config.server.max_transmit_buffer) {
            return false;
        }
        let Some(key) = conn.key() else {
            return true;
        };
        if !self.parked.contains_key(&key) {
            return true;
        }
        if self.parked_bytes > self.config.max_parked_bytes {
            return false;
        }
        // An MQTT 3.1.x client does not know our Receive Maximum: one more QoS 1/2 message
        // would be a protocol error, so it is not read while it is at the limit.
        conn.session.version().is_v5()
            || conn.session.inbound_unfinished()
                < usize::from(self.config.server.receive_maximum.max(1))
    }

    /// Connection `id` left an incomplete packet of `size` bytes: reserve it (or queue for
    /// the budget) and start its deadline.
    fn note_partial(&mut self, now: Instant, id: ConnectionId, size: usize) {
        let Some(conn) = self.connections.get(&id) else {
            return;
        };
        // Still the same packet arriving; or a new size once its fixed header is complete
        // (the deadline runs from its first byte).
        let mut started = None;
        if let Some(p) = conn.partial {
            if p.size() == size {
                return;
            }
            started = p.deadline();
            self.complete_partial(id);
        }
        let budget = self.config.max_partial_bytes_total;
        let reserved = self.partial_total == 0 || self.partial_total + size <= budget;
        let deadline =
            reserved.then(|| started.unwrap_or(now + self.config.partial_packet_timeout));
        let partial = Partial::new(size, deadline);
        if reserved {
            self.partial_total += partial.size();
        } else {
            self.budget_queue.push_back(id);
        }
        if let Some(conn) = self.connections.get_mut(&id) {
            conn.partial = Some(partial);
        }
    }

    /// Connection `id`'s partial packet is complete (or gone): its reservation goes back, and
    /// connections waiting for the budget get it in order.
    pub(super) fn complete_partial(&mut self, id: ConnectionId) {
        let partial = self
            .connections
            .get_mut(&id)
            .and_then(|conn| conn.partial.take());
        self.release(id, partial);
    }

    /// Gives back the reservation of connection `id`'s `partial` (taken out of it, or of a
    /// connection that is gone).
    pub(super) fn release(&mut self, id: ConnectionId, partial: Option<Partial>) {
        let Some(partial) = partial else {
            return;
        };
        if !partial.reserved {
            self.budget_queue.retain(|c| *c != id);
            return;
        }
        self.partial_total -= partial.size();
        let now = self.now;
        while let Some(&next) = self.budget_queue.front() {
            let Some(size) = self
                .connections
                .get(&next)
                .and_then(|c| c.partial)
                .map(Partial::size)
            else {
                self.budget_queue.pop_front();
                continue;
            };
            if self.partial_total != 0
                && self.partial_total + size > self.config.max_partial_bytes_total
            {
                break;
            }
            self.budget_queue.pop_front();
            self.partial_total += size;
            let deadline = now + self.config.partial_packet_timeout;
            if let Some(conn) = self.connections.get_mut(&next) {
                conn.partial = Some(Partial::new(size, Some(deadline)));
            }
            // Its `refresh` tells the driver (ReadResumed) and arms the deadline.
            self.unsettle(next);
        }
    }

    /// Closes connection `id` when its partial packet is past its deadline.
    pub(super) fn check_partial_deadline(&mut self, now: Instant, id: ConnectionId) {
        let due = self
            .connections
            .get(&id)
            .and_then(|c| c.partial)
            .and_then(Partial::deadline)
            .is_some_and(|d| d <= now);
        if due {
            self.stats.partial_packets_refused += 1;
            self.complete_partial(id);
            self.close_connection(now, id, ReasonCode::QuotaExceeded);
        }
    }

    /// Closes connection `id` from the broker's side: MQTT 5 clients that were admitted get
    /// DISCONNECT `code`.
    pub(super) fn close_connection(&mut self, now: Instant, id: ConnectionId, code: ReasonCode) {
        if let Some(conn) = self.connections.get_mut(&id) {
            let result = conn.session.disconnect(now, Disconnect::new(code));
            self.checked(now, id, result);
            self.settle(now, id);
        }
    }
}
