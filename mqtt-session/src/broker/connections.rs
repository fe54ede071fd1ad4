//! [`Connections`]: the broker's open connections in a slab, found by id in constant time.
//!
//! A [`ConnectionId`] carries the connection's sequence number (its creation order, which
//! every ordered set of ids keeps) in its high 32 bits and its slot in the slab in the low 32.
//! Looking a connection up is an index and a comparison of the whole id (a stale id, whose
//! slot now holds a later connection, finds nothing); a B-tree over a few thousand
//! connections took a dozen comparisons and as many cache misses, several times per delivery.
//! Free slots are reused last-freed first; the slab holds one 16-byte slot per connection open
//! at its peak (at most `max_connections` plus the refused ones), and gives its room back when
//! the last connection closes.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::num::NonZeroU64;

use super::ConnectionId;

impl ConnectionId {
    /// The id of the connection numbered `seq` (from 1) in `slot`.
    fn from_parts(seq: u64, slot: u32) -> Self {
        // 1..=u32::MAX: wraps after 2^32 - 1 connections (a stale id still finds nothing
        // unless a connection with the same number holds the same slot).
        let number = (seq.saturating_sub(1) % u64::from(u32::MAX)) + 1;
        let id = (number << 32) | u64::from(slot);
        Self(NonZeroU64::new(id).unwrap_or(NonZeroU64::MIN))
    }

    fn slot(self) -> usize {
        (self.0.get() & u64::from(u32::MAX)) as usize
    }

    /// The whole id as a number, for a driver that must pass it through something that only
    /// carries integers (a readiness poller's token); [`from_raw`](Self::from_raw) gives the
    /// id back.
    pub fn into_raw(self) -> u64 {
        self.0.get()
    }

    /// The id [`into_raw`](Self::into_raw) gave `raw` for; `None` for 0, which no id has. A
    /// number that was never an id names no connection: the broker finds nothing by it.
    pub fn from_raw(raw: u64) -> Option<Self> {
        NonZeroU64::new(raw).map(Self)
    }
}

/// The open connections, by [`ConnectionId`].
#[derive(Debug)]
pub(super) struct Connections<V> {
    slots: Vec<Option<(ConnectionId, Box<V>)>>,
    /// Free slots, the last freed last.
    free: Vec<u32>,
    len: usize,
}

impl<V> Default for Connections<V> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<V> Connections<V> {
    /// The id the next [`insert`](Self::insert) takes for the connection numbered `seq`.
    pub(super) fn vacant_id(&self, seq: NonZeroU64) -> ConnectionId {
        let slot = match self.free.last() {
            Some(&slot) => slot,
            None => u32::try_from(self.slots.len()).unwrap_or(u32::MAX),
        };
        ConnectionId::from_parts(seq.get(), slot)
    }

    /// Inserts the connection `id`, which [`vacant_id`](Self::vacant_id) gave.
    pub(super) fn insert(&mut self, id: ConnectionId, value: Box<V>) {
        let slot = id.slot();
        if self.free.last().is_some_and(|&s| s as usize == slot) {
            self.free.pop();
            self.slots[slot] = Some((id, value));
        } else {
            debug_assert_eq!(slot, self.slots.len(), "an id vacant_id gave");
            self.slots.push(Some((id, value)));
        }
        self.len += 1;
    }

    pub(super) fn get(&self, id: &ConnectionId) -> Option<&V> {
        match self.slots.get(id.slot()) {
            Some(Some((held, value))) if held == id => Some(value),
            _ => None,
        }
    }

    pub(super) fn get_mut(&mut self, id: &ConnectionId) -> Option<&mut V> {
        match self.slots.get_mut(id.slot()) {
            Some(Some((held, value))) if held == id => Some(value),
            _ => None,
        }
    }

    pub(super) fn contains_key(&self, id: &ConnectionId) -> bool {
        self.get(id).is_some()
    }

    pub(super) fn remove(&mut self, id: &ConnectionId) -> Option<Box<V>> {
        let slot = id.slot();
        match self.slots.get(slot) {
            Some(Some((held, _))) if held == id => {}
            _ => return None,
        }
        let (_, value) = self.slots[slot].take()?;
        self.len -= 1;
        if self.len == 0 {
            // The last one: the room of the peak goes back.
            self.slots = Vec::new();
            self.free = Vec::new();
        } else {
            self.free.push(slot as u32);
        }
        Some(value)
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Every open connection's id, oldest first.
    pub(super) fn ids(&self) -> Vec<ConnectionId> {
        let mut ids: Vec<ConnectionId> = self.slots.iter().flatten().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: u64) -> NonZeroU64 {
        NonZeroU64::new(n).unwrap()
    }

    #[test]
    fn finds_each_connection_and_no_stale_id_reuses_a_slot() {
        let mut c: Connections<u32> = Connections::default();
        let a = c.vacant_id(seq(1));
        c.insert(a, Box::new(10));
        let b = c.vacant_id(seq(2));
        c.insert(b, Box::new(20));
        assert_eq!((c.get(&a), c.get(&b), c.len()), (Some(&10), Some(&20), 2));
        assert!(a < b, "ids keep the creation order");
        assert_eq!(
            (a.get(), b.get()),
            (1, 2),
            "get() is the connection's number"
        );
        assert_eq!(c.remove(&a).as_deref(), Some(&10));
        assert_eq!(c.remove(&a), None);
        // The freed slot is reused by a later connection; the stale id finds nothing.
        let d = c.vacant_id(seq(3));
        c.insert(d, Box::new(30));
        assert_eq!(d.slot(), a.slot());
        assert!(b < d);
        assert_eq!((c.get(&a), c.get(&d)), (None, Some(&30)));
        assert!(!c.contains_key(&a));
        *c.get_mut(&d).unwrap() += 1;
        assert_eq!(c.ids(), [b, d]);
        assert_eq!(c.get(&d), Some(&31));
        // The last one out gives the room back.
        c.remove(&b);
        c.remove(&d);
        assert_eq!(c.len(), 0);
        assert_eq!((c.slots.capacity(), c.free.capacity()), (0, 0));
    }

    #[test]
    fn connection_numbers_wrap_without_reaching_zero() {
        let last = ConnectionId::from_parts(u64::from(u32::MAX), 7);
        let wrapped = ConnectionId::from_parts(u64::from(u32::MAX) + 1, 7);
        assert_eq!((last.get(), wrapped.get()), (u64::from(u32::MAX), 1));
        assert_eq!((last.slot(), wrapped.slot()), (7, 7));
        assert_ne!(last, wrapped);
    }

    #[test]
    fn a_raw_id_comes_back_as_the_same_id() {
        let id = ConnectionId::from_parts(5, 3);
        assert_eq!(ConnectionId::from_raw(id.into_raw()), Some(id));
        assert_eq!(ConnectionId::from_raw(0), None);
        let other = ConnectionId::from_parts(6, 3);
        assert_ne!(ConnectionId::from_raw(other.into_raw()), Some(id));
    }
}
