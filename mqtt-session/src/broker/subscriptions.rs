//! The subscription index: a trie over topic levels, so matching a topic costs time in the
//! number of its levels and of the matching subscriptions, not in the number of subscriptions
//! held ([MQTT-4.7]).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;

use mqtt_streaming_proto::{QoS, SubscriptionId, SubscriptionOptions, TopicFilter};

use super::small_map::SmallMap;

/// A session's key in the broker (stable for the session's life, across connections).
pub(crate) type SessionKey = u64;

/// One subscription's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sub {
    pub(crate) options: SubscriptionOptions,
    pub(crate) id: Option<SubscriptionId>,
}

/// The members of one shared subscription (`$share/{group}/{filter}`), served round robin.
#[derive(Debug)]
struct SharedGroup {
    /// The whole `$share/...` filter, to name the group when a message must move.
    filter: TopicFilter,
    members: BTreeMap<SessionKey, Sub>,
    /// The member after which the next message goes (a `Cell`: matching walks the index
    /// through shared references).
    last: Cell<Option<SessionKey>>,
}

#[derive(Debug, Default)]
struct Subscribers {
    direct: SmallMap<SessionKey, Sub>,
    shared: BTreeMap<Box<str>, SharedGroup>,
}

/// The subscribers of one filter. Most filters have one, non-shared: it is kept in the node
/// (16 bytes, as the box of a set would be with the tag in `Sub`'s niche), so that such a
/// filter costs no allocation for its subscriber set (a 48-byte box and a 16-byte vector).
#[derive(Debug, Default)]
enum NodeSubscribers {
    #[default]
    None,
    One(SessionKey, Sub),
    Many(Box<Subscribers>),
}

impl NodeSubscribers {
    fn is_none(&self) -> bool {
        matches!(self, Self::None)
    }

    /// Adds or replaces a non-shared subscription; returns whether it existed.
    fn insert_direct(&mut self, session: SessionKey, sub: Sub) -> bool {
        match self {
            Self::None => {
                *self = Self::One(session, sub);
                false
            }
            Self::One(key, existing) if *key == session => {
                *existing = sub;
                true
            }
            Self::One(..) => {
                self.make_many().direct.insert(session, sub);
                false
            }
            Self::Many(set) => set.direct.insert(session, sub).is_some(),
        }
    }

    /// The set, moving a single subscriber into one first.
    fn make_many(&mut self) -> &mut Subscribers {
        if !matches!(self, Self::Many(_)) {
            let mut set = Box::<Subscribers>::default();
            if let Self::One(key, sub) = core::mem::take(self) {
                set.direct.insert(key, sub);
            }
            *self = Self::Many(set);
        }
        match self {
            Self::Many(set) => set,
            _ => unreachable!("made a set above"),
        }
    }

    /// Removes `session`'s subscription (in shared group `group`, if any); returns whether
    /// it existed. A set left with one non-shared subscriber goes back into the node.
    fn remove(&mut self, session: SessionKey, group: Option<&str>) -> bool {
        match self {
            Self::None => false,
            Self::One(key, _) => {
                if group.is_some() || *key != session {
                    return false;
                }
                *self = Self::None;
                true
            }
            Self::Many(set) => {
                if !remove_member(set, session, group) {
                    return false;
                }
                let single = if set.shared.is_empty() && set.direct.len() <= 1 {
                    Some(set.direct.iter().next().map(|(k, s)| (*k, *s)))
                } else {
                    None
                };
                match single {
                    Some(None) => *self = Self::None,
                    Some(Some((key, sub))) => *self = Self::One(key, sub),
                    None => {}
                }
                true
            }
        }
    }

    fn shared_group(&self, name: &str) -> Option<&SharedGroup> {
        match self {
            Self::Many(set) => set.shared.get(name),
            _ => None,
        }
    }
}

/// One topic level: 40 bytes plus its children. The wildcards are children like any other
/// level, named `+` and `#` (no topic level can be either, [MQTT-4.7.1-1]); the subscribers
/// of the `#` child are the filters that end in `#` at this level. A single non-shared
/// subscriber is kept in the node, larger sets are boxed.
///
/// No `Debug` (the index prints a summary) and a `Drop` that dismantles the subtree with a
/// work-list: a client decides how deep the tree is, so no walk over it may recurse.
#[derive(Default)]
struct Node {
    children: SmallMap<Box<str>, Node>,
    /// Filters that end exactly here.
    subscribers: NodeSubscribers,
}

/// The name of the single-level wildcard's child.
const SINGLE: &str = "+";
/// The name of the multi-level wildcard's child.
const MULTI: &str = "#";

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subscribers.is_none()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        // Each node taken off the list is dropped with no children left, so this never
        // nests more than one level.
        let mut work: Vec<Node> = Vec::new();
        work.extend(self.children.take_all().into_iter().map(|(_, n)| n));
        while let Some(mut node) = work.pop() {
            if !node.children.is_empty() {
                work.extend(node.children.take_all().into_iter().map(|(_, n)| n));
            }
        }
    }
}

/// What one session receives for one PUBLISH after its overlapping subscriptions are merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// The highest QoS granted by any matching subscription.
    pub(crate) qos: QoS,
    /// Keep the RETAIN flag (some matching subscription asked for Retain As Published).
    pub(crate) retain_as_published: bool,
    /// Subscription identifiers of the matching subscriptions ([MQTT-3.3.4-4]).
    pub(crate) subscription_ids: Vec<SubscriptionId>,
}

impl Delivery {
    fn merge(&mut self, sub: &Sub) {
        self.qos = self.qos.max(sub.options.qos);
        self.retain_as_published |= sub.options.retain_as_published;
        if let Some(id) = sub.id {
            if !self.subscription_ids.contains(&id) {
                self.subscription_ids.push(id);
            }
        }
    }

    /// The delivery of one subscription.
    fn of(sub: &Sub) -> Self {
        Self {
            qos: sub.options.qos,
            retain_as_published: sub.options.retain_as_published,
            subscription_ids: sub.id.into_iter().collect(),
        }
    }

    /// Merges the delivery of a later matching subscription of the same session.
    fn absorb(&mut self, later: &mut Delivery) {
        self.qos = self.qos.max(later.qos);
        self.retain_as_published |= later.retain_as_published;
        for id in later.subscription_ids.drain(..) {
            if !self.subscription_ids.contains(&id) {
                self.subscription_ids.push(id);
            }
        }
    }
}

/// The result of matching a topic.
#[derive(Debug, Default)]
pub(crate) struct Matches {
    /// Non-shared subscriptions, merged per session, in the order of the session keys.
    pub(crate) direct: Vec<(SessionKey, Delivery)>,
    /// One member per matching shared subscription, with that subscription's filter.
    pub(crate) shared: Vec<(SessionKey, Delivery, TopicFilter)>,
    /// How many entries `direct` had last time: the room reserved for the next match, in one
    /// allocation (lists longer than [`KEPT_MATCHES`] are freed after each match).
    last: usize,
}

/// Entries whose room the lists of [`Matches`] keep from one match to the next (one set per
/// broker: under 1 KB, within what `broker_churn` lets a broker keep after a round); longer
/// lists are freed after their match.
const KEPT_MATCHES: usize = 16;

impl Matches {
    /// Empties the lists, remembering their size for the next match; keeps their room up to
    /// [`KEPT_MATCHES`] entries (a message with a subscriber or two otherwise allocated its
    /// list anew each time).
    pub(crate) fn clear(&mut self) {
        if !self.direct.is_empty() {
            self.last = self.direct.len();
        }
        if self.direct.capacity() > KEPT_MATCHES {
            self.direct = Vec::new();
        } else {
            self.direct.clear();
        }
        if self.shared.capacity() > KEPT_MATCHES {
            self.shared = Vec::new();
        } else {
            self.shared.clear();
        }
    }
}

/// The work-list of a match: a stack that holds its first [`WorkList::INLINE`] entries in
/// place and spills to the heap beyond (a topic matched against few wildcards never
/// allocates; the list stays bounded by the topic's levels, two entries per level at most).
struct WorkList<'a> {
    inline: [Option<(&'a Node, usize)>; WorkList::INLINE],
    len: usize,
    spill: Vec<(&'a Node, usize)>,
}

impl<'a> WorkList<'a> {
    const INLINE: usize = 8;

    fn new(first: (&'a Node, usize)) -> Self {
        let mut list = Self {
            inline: [None; Self::INLINE],
            len: 0,
            spill: Vec::new(),
        };
        list.push(first);
        list
    }

    fn push(&mut self, entry: (&'a Node, usize)) {
        // In place only while nothing spilled, so that pops stay last in, first out.
        if self.len < Self::INLINE && self.spill.is_empty() {
            self.inline[self.len] = Some(entry);
            self.len += 1;
        } else {
            self.spill.push(entry);
        }
    }

    fn pop(&mut self) -> Option<(&'a Node, usize)> {
        if let Some(entry) = self.spill.pop() {
            return Some(entry);
        }
        self.len = self.len.checked_sub(1)?;
        self.inline[self.len].take()
    }
}

/// All subscriptions of a broker.
///
/// Every walk over the trie (insert, remove, match, group lookup, drop) is a loop over the
/// levels or over an explicit work-list, never a recursion: the depth is the client's choice.
/// The index also keeps the weight of all subscriptions (see
/// [`BrokerConfig::subscription_weight`](super::BrokerConfig::subscription_weight)), which the
/// broker holds within its budget; each session's is in its record.
#[derive(Default)]
pub(crate) struct SubscriptionIndex {
    root: Node,
    count: usize,
    /// Trie nodes below the root.
    nodes: usize,
    /// Sum of the weights of all subscriptions.
    weight: usize,
}

impl fmt::Debug for SubscriptionIndex {
    /// A summary: the trie itself can be as deep as a client makes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionIndex")
            .field("subscriptions", &self.count)
            .field("nodes", &self.nodes)
            .field("weight", &self.weight)
            .finish()
    }
}

impl SubscriptionIndex {
    /// Number of subscriptions held.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// The weight of all subscriptions held.
    pub(crate) fn weight(&self) -> usize {
        self.weight
    }

    /// Adds or replaces `session`'s subscription to `filter`. Returns whether it existed.
    pub(crate) fn insert(&mut self, session: SessionKey, filter: &TopicFilter, sub: Sub) -> bool {
        let mut node = &mut self.root;
        for level in filter.filter().split('/') {
            if !node.children.contains_key(level) {
                self.nodes += 1;
            }
            node = node
                .children
                .get_or_insert_with(Box::from(level), Node::default);
        }
        let existed = match filter.share_name() {
            Some(group) => node
                .subscribers
                .make_many()
                .shared
                .entry(Box::from(group))
                .or_insert_with(|| SharedGroup {
                    filter: filter.clone(),
                    members: BTreeMap::new(),
                    last: Cell::new(None),
                })
                .members
                .insert(session, sub)
                .is_some(),
            None => node.subscribers.insert_direct(session, sub),
        };
        if !existed {
            self.count += 1;
            let weight = subscription_weight(filter);
            self.weight += weight;
        }
        existed
    }

    /// Removes `session`'s subscription to `filter`, and the nodes it leaves empty. Returns
    /// whether it existed.
    pub(crate) fn remove(&mut self, session: SessionKey, filter: &TopicFilter) -> bool {
        let group = filter.share_name();
        // Down to the filter's node.
        let mut node = &mut self.root;
        for level in filter.filter().split('/') {
            match node.children.get_mut(level) {
                Some(child) => node = child,
                None => return false,
            }
        }
        if !node.subscribers.remove(session, group) {
            return false;
        }
        let emptied = node.is_empty();
        self.count -= 1;
        let weight = subscription_weight(filter);
        self.weight -= weight;
        if emptied {
            self.prune(filter.filter());
        }
        true
    }

    /// Cuts off the chain of nodes along `filter` that holds nothing but the path to its
    /// (now empty) last node: below the deepest node on the path that keeps subscribers or
    /// another child.
    fn prune(&mut self, filter: &str) {
        let mut keep = 0;
        let mut depth = 0;
        let mut node = &self.root;
        for level in filter.split('/') {
            if depth > 0 && (!node.subscribers.is_none() || node.children.len() > 1) {
                keep = depth;
            }
            match node.children.get(level) {
                Some(child) => node = child,
                None => return,
            }
            depth += 1;
        }
        let mut node = &mut self.root;
        let mut levels = filter.split('/');
        for _ in 0..keep {
            let Some(child) = levels.next().and_then(|l| node.children.get_mut(l)) else {
                return;
            };
            node = child;
        }
        if let Some(level) = levels.next() {
            // Dropped without recursion (see `Node`'s `Drop`).
            if node.children.remove(level).is_some() {
                self.nodes -= depth - keep;
            }
        }
    }

    /// Every session that receives a PUBLISH to `topic` from `publisher`, with its merged
    /// delivery; and for each matching shared subscription, one member chosen round robin.
    /// The subscriptions matching `topic`, into `out` (cleared first; its room is reused
    /// from one message to the next).
    pub(crate) fn matches_into(
        &self,
        topic: &str,
        publisher: Option<SessionKey>,
        out: &mut Matches,
    ) {
        out.clear();
        out.direct.reserve(out.last);
        let mut sets = 0usize;
        self.collect(topic, |subscribers| {
            sets += 1;
            let subscribers = match subscribers {
                NodeSubscribers::None => return,
                NodeSubscribers::One(session, sub) => {
                    // No Local: not back to the publisher ([MQTT-3.8.3-3] in 5.0).
                    if !(sub.options.no_local && Some(*session) == publisher) {
                        out.direct.push((*session, Delivery::of(sub)));
                    }
                    return;
                }
                NodeSubscribers::Many(set) => set,
            };
            for (session, sub) in subscribers.direct.iter() {
                // No Local: not back to the publisher ([MQTT-3.8.3-3] in 5.0).
                if sub.options.no_local && Some(*session) == publisher {
                    continue;
                }
                out.direct.push((*session, Delivery::of(sub)));
            }
            for group in subscribers.shared.values() {
                if let Some((session, sub)) = next_member(group) {
                    let mut delivery = Delivery::default();
                    delivery.merge(&sub);
                    out.shared.push((session, delivery, group.filter.clone()));
                }
            }
        });
        // One set comes in key order already; overlapping filters of one session are merged
        // (a stable sort keeps the walk's order of their identifiers).
        if sets > 1 {
            if !out.direct.is_sorted_by_key(|(key, _)| *key) {
                out.direct.sort_by_key(|(key, _)| *key);
            }
            out.direct.dedup_by(|later, earlier| {
                let same = later.0 == earlier.0;
                if same {
                    earlier.1.absorb(&mut later.1);
                }
                same
            });
        }
    }

    /// Hands every subscriber set whose filter matches `topic` to `out`, walking the trie
    /// with a work-list of (node, where its next level starts): each `+` child is a second branch to
    /// follow. A topic starting with `$` is not matched by a leading wildcard
    /// ([MQTT-4.7.2-1]). The sets come in the order of a depth-first walk that takes `#`,
    /// then the end of the topic, then `+`, then the literal level.
    fn collect<'a>(&'a self, topic: &str, mut out: impl FnMut(&'a NodeSubscribers)) {
        let dollar = topic.starts_with('$');
        // Each entry: a node and where in `topic` the next level starts (past the end once
        // every level is consumed). No list of the levels is built.
        let mut work = WorkList::new((&self.root, 0));
        while let Some((node, at)) = work.pop() {
            let leading = at == 0 && dollar;
            if !leading {
                // `#` also matches the parent level itself ([MQTT-4.7.1-2] example
                // "sport/#").
                if let Some(multi) = node.children.get_low(MULTI) {
                    if !multi.subscribers.is_none() {
                        out(&multi.subscribers);
                    }
                }
            }
            let Some(rest) = topic.get(at..) else {
                if !node.subscribers.is_none() {
                    out(&node.subscribers);
                }
                continue;
            };
            let end = rest.find('/').unwrap_or(rest.len());
            let (level, next) = (&rest[..end], at + end + 1);
            // Pushed in reverse: `+` is taken first.
            if let Some(child) = node.children.get(level) {
                work.push((child, next));
            }
            if !leading {
                if let Some(single) = node.children.get_low(SINGLE) {
                    work.push((single, next));
                }
            }
        }
    }

    /// The members of the shared subscription `filter` other than `except`, in round-robin
    /// order (starting after the last one served), to re-route a message its member could
    /// not take: each is tried once.
    pub(crate) fn shared_rotation(
        &self,
        filter: &TopicFilter,
        except: SessionKey,
    ) -> Vec<SessionKey> {
        let Some(group) = self.group(filter) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(group.members.len());
        let (after, upto) = match group.last.get() {
            Some(last) => (
                group.members.range(last.saturating_add(1)..),
                group.members.range(..=last),
            ),
            None => (group.members.range(..), group.members.range(..0)),
        };
        out.extend(after.chain(upto).map(|(k, _)| *k).filter(|k| *k != except));
        out
    }

    /// Records that `member` of the shared subscription `filter` was served last.
    pub(crate) fn shared_served(&self, filter: &TopicFilter, member: SessionKey) {
        if let Some(group) = self.group(filter) {
            group.last.set(Some(member));
        }
    }

    fn group(&self, filter: &TopicFilter) -> Option<&SharedGroup> {
        let group_name = filter.share_name()?;
        let mut node = &self.root;
        for level in filter.filter().split('/') {
            node = node.children.get(level)?;
        }
        node.subscribers.shared_group(group_name)
    }
}

fn remove_member(subscribers: &mut Subscribers, session: SessionKey, group: Option<&str>) -> bool {
    match group {
        None => subscribers.direct.remove(&session).is_some(),
        Some(name) => {
            let Some(g) = subscribers.shared.get_mut(name) else {
                return false;
            };
            let removed = g.members.remove(&session).is_some();
            if g.members.is_empty() {
                subscribers.shared.remove(name);
            }
            removed
        }
    }
}

/// What one subscription to `filter` counts against the budgets: see
/// [`BrokerConfig::subscription_weight`](super::BrokerConfig::subscription_weight).
pub(crate) fn subscription_weight(filter: &TopicFilter) -> usize {
    let levels = filter.filter().bytes().filter(|&b| b == b'/').count() + 1;
    SUBSCRIPTION_COST + 2 * filter.len() + levels * LEVEL_COST
}

/// An upper bound of the heap a trie level costs, beyond its name: the entry in its parent's
/// map (a `(Box<str>, Node)` of 56 bytes, in a vector of exactly its size or, past 8
/// children, a B-tree whose nodes are at least 5/11 full: at most 2.2 entries' room and the
/// nodes' own headers and edges per entry), and what the allocator rounds up.
pub(crate) const LEVEL_COST: usize = 160;

/// An upper bound of the heap one subscription costs beyond its levels and filter bytes: the
/// session's own entry for it (filter and options, in a map like the trie's), the subscriber
/// set of its node (boxed when first used), its entry there (direct, or a shared group with
/// its name and member map), the owned filter's shared header, and the session's weight
/// entry.
pub(crate) const SUBSCRIPTION_COST: usize = 512;

/// The next member of a shared group, round robin.
fn next_member(group: &SharedGroup) -> Option<(SessionKey, Sub)> {
    let next = match group.last.get() {
        Some(last) => group
            .members
            .range(last.saturating_add(1)..)
            .next()
            .or_else(|| group.members.iter().next()),
        None => group.members.iter().next(),
    }
    .map(|(k, s)| (*k, *s))?;
    group.last.set(Some(next.0));
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `LEVEL_COST` and the budgets' documented bound assume these sizes.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_level_costs_what_level_cost_assumes() {
        // A single subscriber lives in the node, in the 16 bytes a boxed set takes.
        assert_eq!(core::mem::size_of::<NodeSubscribers>(), 16);
        assert_eq!(core::mem::size_of::<Node>(), 40);
        assert_eq!(core::mem::size_of::<(Box<str>, Node)>(), 56);
        // A B-tree leaf of such entries, at its minimum fill of 5 of 11, holds 2.2 entries'
        // room per entry plus its header: still within the cost.
        const { assert!(11 * 56 + 16 <= 5 * LEVEL_COST) };
    }

    fn sub(qos: QoS) -> Sub {
        Sub {
            options: SubscriptionOptions::new(qos),
            id: None,
        }
    }

    fn matched(index: &SubscriptionIndex, topic: &str) -> Vec<(SessionKey, QoS)> {
        let mut out = Matches::default();
        index.matches_into(topic, None, &mut out);
        out.direct.iter().map(|(k, d)| (*k, d.qos)).collect()
    }

    /// A filter's single subscriber lives in its node; a second one (or a shared one) moves
    /// both into a boxed set, and removals move the last one back. Matching sees the same
    /// subscribers either way, and an emptied filter leaves no node behind.
    #[test]
    fn a_single_subscriber_moves_between_node_and_set() {
        let f = TopicFilter::new("a/+").unwrap();
        let mut index = SubscriptionIndex::default();
        assert!(!index.insert(7, &f, sub(QoS::AtMostOnce)));
        assert!(
            index.insert(7, &f, sub(QoS::AtLeastOnce)),
            "replaced in place"
        );
        let node = |index: &SubscriptionIndex| {
            let a = index.root.children.get("a").unwrap();
            matches!(
                a.children.get("+").unwrap().subscribers,
                NodeSubscribers::One(7, _)
            )
        };
        assert!(node(&index));
        assert_eq!(matched(&index, "a/b"), [(7, QoS::AtLeastOnce)]);
        assert!(!index.insert(3, &f, sub(QoS::ExactlyOnce)));
        assert!(!node(&index));
        assert_eq!(
            matched(&index, "a/b"),
            [(3, QoS::ExactlyOnce), (7, QoS::AtLeastOnce)]
        );
        let shared = TopicFilter::new("$share/g/a/+").unwrap();
        assert!(!index.insert(9, &shared, sub(QoS::AtMostOnce)));
        assert!(index.remove(3, &f));
        assert!(!index.remove(3, &f));
        assert!(!node(&index), "still a set: the shared group is in it");
        assert!(index.remove(9, &shared));
        assert!(node(&index), "back in the node");
        assert!(!index.remove(7, &shared), "not a member of a group");
        assert_eq!(matched(&index, "a/b"), [(7, QoS::AtLeastOnce)]);
        assert!(index.remove(7, &f));
        assert_eq!(index.len(), 0);
        assert_eq!(index.nodes, 0);
        assert_eq!(index.weight(), 0);
        assert!(matched(&index, "a/b").is_empty());
    }

    #[test]
    fn weight_of_a_filter() {
        let f = TopicFilter::new("sensors/+/temp").unwrap();
        assert_eq!(subscription_weight(&f), 512 + 2 * 14 + 3 * 160);
        // A shared subscription's levels are its filter's; its bytes are all of it.
        let f = TopicFilter::new("$share/g/a/b").unwrap();
        assert_eq!(subscription_weight(&f), 512 + 2 * 12 + 2 * 160);
    }

    #[test]
    fn matching_agrees_with_topic_matches_past_the_inline_work_list() {
        // [MQTT-4.7.1-2], [MQTT-4.7.1-3], [MQTT-4.7.2-1]: the trie walk (its work-list held in
        // place for 8 entries, then spilled) finds exactly the filters `topic_matches` accepts,
        // for topics deep enough to spill, with empty levels and `$` topics.
        let plus12 = alloc::vec!["+"; 12].join("/");
        let filters = [
            plus12.as_str(),
            "+/+/+/+/+/+/+/+/+/+/+/#",
            "a/+/c/#",
            "#",
            "+/#",
            "+",
            "a/b/c/d/e/f/g/h/i/j/k/l",
            "a/",
            "+/",
            "/+",
            "$SYS/#",
            "$SYS/+",
        ];
        let mut index = SubscriptionIndex::default();
        for (key, f) in filters.iter().enumerate() {
            let sub = Sub {
                options: SubscriptionOptions::new(QoS::AtMostOnce),
                id: None,
            };
            index.insert(key as SessionKey + 1, &TopicFilter::new(f).unwrap(), sub);
        }
        let deep = "a/b/c/d/e/f/g/h/i/j/k/l";
        for topic in [
            deep, "a/b/c", "a/", "/", "a", "x/y", "$SYS/x", "$SYS", "a//c/d",
        ] {
            let mut matches = Matches::default();
            index.matches_into(topic, None, &mut matches);
            let mut got: Vec<SessionKey> = matches.direct.iter().map(|(k, _)| *k).collect();
            got.sort_unstable();
            let want: Vec<SessionKey> = (1..=filters.len() as SessionKey)
                .filter(|k| mqtt_streaming_proto::topic_matches(filters[*k as usize - 1], topic))
                .collect();
            assert_eq!(got, want, "{topic}");
        }
    }
}
