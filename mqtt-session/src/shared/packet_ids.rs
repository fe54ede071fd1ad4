//! Packet identifier allocation: all 65,535 values are used in turn, and a value is never handed
//! out while it is still in flight.

use mqtt_streaming_proto::PacketId;

/// Hands out packet identifiers in increasing order (wrapping from 65,535 to 1), skipping the
/// ones the owner reports as in use.
#[derive(Clone, Debug)]
pub(crate) struct PacketIdAllocator {
    next: PacketId,
}

impl Default for PacketIdAllocator {
    fn default() -> Self {
        Self {
            next: PacketId::MIN,
        }
    }
}

impl PacketIdAllocator {
    /// Starts at `next` (used when restoring a snapshot).
    pub(crate) fn starting_at(next: PacketId) -> Self {
        Self { next }
    }

    /// The identifier the next allocation tries first.
    pub(crate) fn peek(&self) -> PacketId {
        self.next
    }

    /// The next free identifier, or `None` when all 65,535 are in use (`in_use_count` says how
    /// many are, so a full table is detected without a scan).
    pub(crate) fn allocate(
        &mut self,
        in_use_count: usize,
        in_use: impl Fn(PacketId) -> bool,
    ) -> Option<PacketId> {
        if in_use_count >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            let id = self.next;
            self.next = id.next();
            if !in_use(id) {
                return Some(id);
            }
        }
    }

    /// Back to 1, for a new session.
    pub(crate) fn reset(&mut self) {
        self.next = PacketId::MIN;
    }
}
