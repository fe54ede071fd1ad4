//! [`SmallMap`]: an ordered map that costs what it holds.
//!
//! Most maps in the broker hold one or two entries per client (a session's subscriptions, the
//! children of a trie node under a client-specific topic level, the subscribers of a filter
//! only one client uses). A `BTreeMap` allocates a node for eleven entries as soon as it holds
//! one (several hundred bytes for the broker's entries); a `Vec` grown by `push` reserves four.
//! `SmallMap` keeps up to [`FEW`] entries in a sorted vector of exactly their size and
//! switches to a `BTreeMap` beyond that, so large maps (a level with 100,000 children, a filter
//! with 100,000 subscribers) keep logarithmic inserts and lookups.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::borrow::Borrow;

/// Entries kept in the sorted vector before switching to a `BTreeMap`.
const FEW: usize = 8;

#[derive(Debug)]
pub(crate) enum SmallMap<K, V> {
    Few(Vec<(K, V)>),
    /// Boxed: the enum is then the size of the `Vec` (24 bytes, its capacity's niche holds
    /// the tag) instead of 32, in every record and trie node that holds one.
    #[allow(clippy::box_collection)] // the box is what makes the enum small
    Many(Box<BTreeMap<K, V>>),
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl<K: Ord, V> SmallMap<K, V> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Few(v) => v.len(),
            Self::Many(m) => m.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self {
            Self::Few(v) => find(v, key).ok().map(|i| &v[i].1),
            Self::Many(m) => m.get(key),
        }
    }

    /// [`get`](Self::get) for a key that sorts before most keys (a trie level's `#` and `+`
    /// children): when the smallest key sorts after `key`, the answer is `None` without a
    /// search (a level with 100,000 literal children is asked for its wildcards per message).
    pub(crate) fn get_low<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let first = match self {
            Self::Few(v) => v.first().map(|(k, _)| k),
            Self::Many(m) => m.first_key_value().map(|(k, _)| k),
        }?;
        if first.borrow() > key {
            return None;
        }
        self.get(key)
    }

    pub(crate) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self {
            Self::Few(v) => match find(v, key) {
                Ok(i) => Some(&mut v[i].1),
                Err(_) => None,
            },
            Self::Many(m) => m.get_mut(key),
        }
    }

    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Inserts or replaces; returns the previous value.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self {
            Self::Few(v) => match find(v, &key) {
                Ok(i) => Some(core::mem::replace(&mut v[i].1, value)),
                Err(i) if v.len() < FEW => {
                    // Grow by exactly one entry: a map of one holds one.
                    v.reserve_exact(1);
                    v.insert(i, (key, value));
                    None
                }
                Err(_) => {
                    let mut m: BTreeMap<K, V> = core::mem::take(v).into_iter().collect();
                    m.insert(key, value);
                    *self = Self::Many(Box::new(m));
                    None
                }
            },
            Self::Many(m) => m.insert(key, value),
        }
    }

    /// The value of `key`, inserting `make()` first when absent.
    pub(crate) fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if let Self::Few(v) = self {
            if v.len() >= FEW && find(v, &key).is_err() {
                let m: BTreeMap<K, V> = core::mem::take(v).into_iter().collect();
                *self = Self::Many(Box::new(m));
            }
        }
        match self {
            Self::Few(v) => {
                let i = match find(v, &key) {
                    Ok(i) => i,
                    Err(i) => {
                        v.reserve_exact(1);
                        v.insert(i, (key, make()));
                        i
                    }
                };
                &mut v[i].1
            }
            Self::Many(m) => m.entry(key).or_insert_with(make),
        }
    }

    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self {
            Self::Few(v) => {
                let i = find(v, key).ok()?;
                let (_, value) = v.remove(i);
                if v.is_empty() {
                    // Give the allocation back: an emptied map costs nothing.
                    *v = Vec::new();
                } else {
                    v.shrink_to_fit();
                }
                Some(value)
            }
            Self::Many(m) => {
                let value = m.remove(key)?;
                if m.len() <= FEW / 2 {
                    let mut v = Vec::with_capacity(m.len());
                    v.extend(core::mem::take(&mut **m));
                    *self = Self::Few(v);
                }
                Some(value)
            }
        }
    }

    /// Entries in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        let (few, many) = match self {
            Self::Few(v) => (Some(v.iter().map(|(k, v)| (k, v))), None),
            Self::Many(m) => (None, Some(m.iter())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }

    /// Keys in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    /// Empties the map, handing its entries out in key order.
    pub(crate) fn take_all(&mut self) -> Vec<(K, V)> {
        match core::mem::take(self) {
            Self::Few(v) => v,
            Self::Many(m) => (*m).into_iter().collect(),
        }
    }
}

fn find<K: Borrow<Q>, V, Q: Ord + ?Sized>(v: &[(K, V)], key: &Q) -> Result<usize, usize> {
    v.binary_search_by(|(k, _)| k.borrow().cmp(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_an_ordered_map_across_the_switch() {
        let mut map: SmallMap<u32, u32> = SmallMap::default();
        let mut model = BTreeMap::new();
        // Insert in a scrambled order, past the switch, then remove back below it.
        for i in 0..40u32 {
            let k = (i * 17) % 40;
            assert_eq!(map.insert(k, i), model.insert(k, i));
            assert_eq!(map.insert(k, i + 100), model.insert(k, i + 100));
        }
        assert!(matches!(map, SmallMap::Many(_)));
        for k in (0..40u32).step_by(3) {
            assert_eq!(map.remove(&k), model.remove(&k));
            assert_eq!(map.remove(&k), None);
        }
        for k in 0..40u32 {
            assert_eq!(map.get(&k), model.get(&k));
        }
        let pairs: Vec<_> = map.iter().map(|(k, v)| (*k, *v)).collect();
        let expected: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(pairs, expected);
        let keys: Vec<u32> = model.keys().copied().collect();
        for k in keys {
            map.remove(&k);
        }
        assert!(map.is_empty());
        assert!(matches!(&map, SmallMap::Few(v) if v.capacity() == 0));
        *map.get_or_insert_with(5, || 1) += 1;
        assert_eq!(map.get(&5), Some(&2));
        assert_eq!(map.take_all(), alloc::vec![(5, 2)]);
    }

    #[test]
    fn get_low_answers_as_get_for_every_key_in_both_forms() {
        // Trie levels: `#` and `+` sort before letters and digits, but not before every key
        // (an empty level, a space), so a smallest key at or below the one asked for still
        // searches.
        for n in [3usize, 50] {
            let mut map: SmallMap<Box<str>, usize> = SmallMap::default();
            for i in 0..n {
                map.insert(alloc::format!("k{i}").into(), i);
            }
            assert_eq!(matches!(map, SmallMap::Many(_)), n > FEW);
            for key in ["#", "+", "", "k1", "zz"] {
                assert_eq!(map.get_low(key), map.get(key), "{key:?} of {n}");
            }
            assert_eq!(map.get_low("#"), None);
            map.insert("".into(), 100);
            map.insert("#".into(), 101);
            map.insert("+".into(), 102);
            for key in ["#", "+", "", "k1", "zz"] {
                assert_eq!(map.get_low(key), map.get(key), "{key:?} of {n}");
            }
            assert_eq!(map.get_low("#"), Some(&101));
            assert_eq!(map.get_low("+"), Some(&102));
        }
        let empty: SmallMap<Box<str>, usize> = SmallMap::default();
        assert_eq!(empty.get_low("#"), None);
    }

    #[test]
    fn is_the_size_of_a_vec() {
        // Records and trie nodes each hold one: the tag lives in the `Vec`'s niche.
        assert_eq!(
            core::mem::size_of::<SmallMap<u64, u64>>(),
            core::mem::size_of::<Vec<(u64, u64)>>()
        );
    }
}
