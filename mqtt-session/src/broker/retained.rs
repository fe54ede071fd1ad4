//! The retained message store ([MQTT-3.3.1-5] to [MQTT-3.3.1-11] in 3.1.1; section 3.3.1.3 of
//! 5.0): one message per topic, replaced by the next retained PUBLISH, deleted by an empty one.
//!
//! Messages are indexed by topic level in a trie, so a SUBSCRIBE finds what its filter matches
//! without looking at anything else: the cost is the filter's levels plus the nodes its
//! wildcards reach, never the size of the store. The trie's nodes live in one vector and point
//! at each other by index, and every walk over it is a loop with an explicit stack: a topic of
//! thousands of levels costs no native stack (neither when walked, nor dropped, nor printed).
//!
//! A walk is resumable ([`RetainedCursor`]): it stops after a bounded number of nodes or
//! messages and continues later from where it stopped, even if the store changed in between,
//! so a filter matching 100,000 messages is delivered in bounded turns.

use alloc::boxed::Box;
use alloc::collections::btree_map;
use alloc::vec::Vec;
use core::mem::size_of;
use core::ops::Bound;

use mqtt_streaming_proto::{TopicFilter, TopicName};

use super::small_map::SmallMap;
use crate::message::Message;
use crate::time::Instant;

/// Why a retained message was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StoreFull;

/// What one level of the trie costs beyond its name: the node, its entry in its parent's map,
/// and the allocator's share of the name (counted against `max_retained_bytes`).
const NODE_COST: usize = size_of::<Node>() + size_of::<(Box<str>, u32)>() + 16;

#[derive(Debug)]
struct Retained {
    message: Message,
    stored_at: Instant,
    /// When it was stored, in store operations: a cursor skips messages stored after it
    /// started (their subscriber got them live).
    seq: u64,
    /// What it is charged against `max_retained_bytes`.
    cost: usize,
}

#[derive(Debug, Default)]
struct Node {
    children: SmallMap<Box<str>, u32>,
    retained: Option<Box<Retained>>,
}

/// Retained messages by topic, bounded in count and in bytes.
#[derive(Debug)]
pub(crate) struct RetainedStore {
    /// The trie; index 0 is the root (the empty path), unused slots are in `free`.
    nodes: Vec<Node>,
    free: Vec<u32>,
    len: usize,
    bytes: usize,
    max: usize,
    max_bytes: usize,
    seq: u64,
}

/// Where a walk over the retained messages matching one filter stands: the filter, the
/// position (the last level taken at each depth), and the store's sequence number when the
/// walk began. It owns its bytes and survives any change of the store.
#[derive(Debug)]
pub(crate) struct RetainedCursor {
    filter: TopicFilter,
    /// The level last taken by each open frame of the walk, root first.
    path: Vec<Box<str>>,
    /// Whether the node at the end of `path` is open with nothing taken from it yet.
    fresh_top: bool,
    /// The walk has finished.
    done: bool,
    snapshot: u64,
}

impl RetainedCursor {
    /// Whether every matching message has been produced.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The filter walked.
    pub(crate) fn filter(&self) -> &TopicFilter {
        &self.filter
    }
}

/// The bounds of one turn of a walk.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    /// Messages to produce at most.
    pub(crate) messages: usize,
    /// Nodes to visit at most.
    pub(crate) visits: usize,
}

/// The children of a node still to be taken by a walk frame.
enum Kids<'a> {
    Few(core::slice::Iter<'a, (Box<str>, u32)>),
    Many(btree_map::Range<'a, Box<str>, u32>),
    One(Option<(&'a str, u32)>),
}

impl<'a> Iterator for Kids<'a> {
    type Item = (&'a str, u32);
    fn next(&mut self) -> Option<(&'a str, u32)> {
        match self {
            Self::Few(it) => it.next().map(|(k, v)| (&**k, *v)),
            Self::Many(it) => it.next().map(|(k, v)| (&**k, *v)),
            Self::One(one) => one.take(),
        }
    }
}

/// One open node of a walk: its depth, the children left, the level last taken.
struct Frame<'a> {
    depth: usize,
    kids: Kids<'a>,
    last: Option<&'a str>,
}

impl RetainedStore {
    pub(crate) fn new(max: usize, max_bytes: usize) -> Self {
        Self {
            nodes: alloc::vec![Node::default()],
            free: Vec::new(),
            len: 0,
            bytes: 0,
            max,
            max_bytes,
            seq: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes charged against `max_retained_bytes`.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Stores, replaces or (for an empty payload) deletes the retained message of a topic.
    /// The message is kept as given: it must own its bytes ([`Message::to_owned_compact`]).
    ///
    /// Refused when the topic is new and the store holds `max` messages, or when storing it
    /// would take the store beyond `max_bytes`; a refused replacement deletes the message it
    /// would have replaced, so that no outdated value is served.
    pub(crate) fn store(&mut self, now: Instant, message: &Message) -> Result<(), StoreFull> {
        if message.payload.is_empty() {
            self.remove(&message.topic);
            return Ok(());
        }
        // How much of the path exists already.
        let mut node = 0u32;
        let mut levels = message.topic.levels();
        let mut new_levels = 0usize;
        let mut new_bytes = 0usize;
        for level in levels.by_ref() {
            match self.nodes[node as usize].children.get(level) {
                Some(&child) => node = child,
                None => {
                    new_levels = 1;
                    new_bytes = NODE_COST + level.len();
                    break;
                }
            }
        }
        for level in levels {
            new_levels += 1;
            new_bytes += NODE_COST + level.len();
        }
        let old_cost = match new_levels {
            0 => self.nodes[node as usize].retained.as_ref().map(|r| r.cost),
            _ => None,
        };
        let cost = message_cost(message);
        let over_count = old_cost.is_none() && self.len >= self.max;
        let over_bytes = self.bytes - old_cost.unwrap_or(0) + new_bytes + cost > self.max_bytes;
        if over_count || over_bytes {
            if old_cost.is_some() {
                self.remove(&message.topic);
            }
            return Err(StoreFull);
        }
        let node = self.path_for(&message.topic);
        self.bytes += new_bytes;
        let mut stored = message.clone();
        stored.properties.topic_alias = None;
        stored.properties.subscription_identifiers.clear();
        self.seq += 1;
        let retained = Box::new(Retained {
            message: stored,
            stored_at: now,
            seq: self.seq,
            cost,
        });
        match self.nodes[node as usize].retained.replace(retained) {
            Some(old) => self.bytes -= old.cost,
            None => self.len += 1,
        }
        self.bytes += cost;
        Ok(())
    }

    /// The node of `topic`, creating the missing levels.
    fn path_for(&mut self, topic: &TopicName) -> u32 {
        let mut node = 0u32;
        for level in topic.levels() {
            node = match self.nodes[node as usize].children.get(level) {
                Some(&child) => child,
                None => {
                    let child = self.alloc_node();
                    self.nodes[node as usize]
                        .children
                        .insert(Box::from(level), child);
                    child
                }
            };
        }
        node
    }

    fn alloc_node(&mut self) -> u32 {
        match self.free.pop() {
            Some(i) => i,
            None => {
                self.nodes.push(Node::default());
                // The store is bounded in bytes well below 4 billion nodes.
                u32::try_from(self.nodes.len() - 1).unwrap_or(u32::MAX)
            }
        }
    }

    /// Deletes the retained message of `topic`, and the levels that lead only to it.
    pub(crate) fn remove(&mut self, topic: &TopicName) {
        let mut path: Vec<(u32, &str)> = Vec::new();
        let mut node = 0u32;
        for level in topic.levels() {
            match self.nodes[node as usize].children.get(level) {
                Some(&child) => {
                    path.push((node, level));
                    node = child;
                }
                None => return,
            }
        }
        let Some(old) = self.nodes[node as usize].retained.take() else {
            return;
        };
        self.len -= 1;
        self.bytes -= old.cost;
        // Prune bottom-up while a node holds nothing.
        while let Some((parent, level)) = path.pop() {
            let n = &self.nodes[node as usize];
            if n.retained.is_some() || !n.children.is_empty() {
                break;
            }
            self.nodes[node as usize] = Node::default();
            self.free.push(node);
            self.nodes[parent as usize].children.remove(level);
            self.bytes -= NODE_COST + level.len();
            node = parent;
        }
        if self.len == 0 {
            // Everything is gone: give the arena back.
            self.nodes = alloc::vec![Node::default()];
            self.free = Vec::new();
        }
    }

    /// Starts a walk over the messages that match `filter` now. `filter` must own its bytes.
    pub(crate) fn cursor(&self, filter: TopicFilter) -> RetainedCursor {
        RetainedCursor {
            filter,
            path: Vec::new(),
            fresh_top: true,
            done: false,
            snapshot: self.seq,
        }
    }

    /// Continues `cursor` for one turn: appends to `out` the matching messages (with their
    /// remaining Message Expiry Interval), at most `budget.messages` of them, visiting at most
    /// `budget.visits` nodes. Expired messages met on the way are deleted ([MQTT-3.3.2-5] in
    /// 5.0). Returns the nodes visited.
    pub(crate) fn walk(
        &mut self,
        now: Instant,
        cursor: &mut RetainedCursor,
        budget: Budget,
        out: &mut Vec<Message>,
    ) -> usize {
        if cursor.done {
            return 0;
        }
        let mut expired: Vec<TopicName> = Vec::new();
        let visits = self.walk_turn(now, cursor, budget, out, &mut expired);
        for topic in expired {
            self.remove(&topic);
        }
        visits
    }

    fn walk_turn(
        &self,
        now: Instant,
        cursor: &mut RetainedCursor,
        budget: Budget,
        out: &mut Vec<Message>,
        expired: &mut Vec<TopicName>,
    ) -> usize {
        let filter = cursor.filter.filter();
        let levels: Vec<&str> = filter.split('/').collect();
        let hash = levels.last() == Some(&"#");
        // Levels before any `#`.
        let exact = levels.len() - usize::from(hash);
        // [MQTT-4.7.2-1]: a filter starting with a wildcard does not match `$` topics.
        let skip_dollar = matches!(levels.first(), Some(&"+") | Some(&"#"));
        let kids = |node: u32, depth: usize, after: Option<&str>| -> Kids<'_> {
            let children = &self.nodes[node as usize].children;
            if depth < exact && levels[depth] != "+" {
                let level = levels[depth];
                let one = match after {
                    Some(after) if after >= level => None,
                    _ => children.get(level).map(|&c| (level, c)),
                };
                return Kids::One(one);
            }
            match (children, after) {
                (SmallMap::Few(v), None) => Kids::Few(v.iter()),
                (SmallMap::Few(v), Some(after)) => {
                    let start = v.partition_point(|(k, _)| &**k <= after);
                    Kids::Few(v[start..].iter())
                }
                (SmallMap::Many(m), None) => Kids::Many(m.range::<str, _>(..)),
                (SmallMap::Many(m), Some(after)) => {
                    Kids::Many(m.range::<str, _>((Bound::Excluded(after), Bound::Unbounded)))
                }
            }
        };
        // Nodes visited: rebuilding the position, then walking on. Only the walk counts against
        // the budget, so that every turn makes progress.
        let mut visits = 0usize;
        let mut steps = 0usize;
        // Rebuild the open frames from the saved position.
        let mut stack: Vec<Frame<'_>> = Vec::new();
        let mut node = 0u32;
        let mut missing = false;
        for (depth, level) in cursor.path.iter().enumerate() {
            stack.push(Frame {
                depth,
                kids: kids(node, depth, Some(level)),
                last: Some(level),
            });
            visits += 1;
            match self.nodes[node as usize].children.get(&**level) {
                Some(&child) => node = child,
                None => {
                    // Deleted since: the frames below it went with it.
                    missing = true;
                    break;
                }
            }
        }
        if cursor.fresh_top && !missing {
            let depth = stack.len();
            stack.push(Frame {
                depth,
                kids: kids(node, depth, None),
                last: None,
            });
        }
        let mut produced = 0usize;
        let mut stopped = false;
        while let Some(frame) = stack.last_mut() {
            if produced >= budget.messages || steps >= budget.visits {
                stopped = true;
                break;
            }
            let depth = frame.depth;
            let Some((level, child)) = frame.kids.next() else {
                stack.pop();
                continue;
            };
            frame.last = Some(level);
            visits += 1;
            steps += 1;
            if depth == 0 && skip_dollar && level.starts_with('$') {
                continue;
            }
            // Whether the child's own message matches, and whether its children can.
            let (emit, open) = if depth >= exact {
                (true, true)
            } else if depth + 1 == exact {
                (true, hash)
            } else {
                (false, true)
            };
            if emit {
                if let Some(r) = &self.nodes[child as usize].retained {
                    if r.seq <= cursor.snapshot {
                        match remaining(now, r) {
                            Some(message) => {
                                out.push(message);
                                produced += 1;
                            }
                            None => expired.push(r.message.topic.clone()),
                        }
                    }
                }
            }
            if open && !self.nodes[child as usize].children.is_empty() {
                stack.push(Frame {
                    depth: depth + 1,
                    kids: kids(child, depth + 1, None),
                    last: None,
                });
            }
        }
        if !stopped {
            cursor.done = true;
            cursor.path = Vec::new();
            return visits;
        }
        // Save the position: the level last taken by each frame; the top one may have
        // taken none yet.
        let mut path = Vec::with_capacity(stack.len());
        let mut fresh_top = false;
        for frame in &stack {
            match frame.last {
                Some(level) => path.push(Box::from(level)),
                None => fresh_top = true,
            }
        }
        cursor.path = path;
        cursor.fresh_top = fresh_top;
        visits
    }
}

/// The message with its remaining Message Expiry Interval, or `None` once expired.
fn remaining(now: Instant, retained: &Retained) -> Option<Message> {
    let mut message = retained.message.clone();
    if let Some(interval) = message.properties.message_expiry_interval {
        let waited = u32::try_from((now - retained.stored_at).as_secs()).unwrap_or(u32::MAX);
        if waited >= interval {
            return None;
        }
        message.properties.message_expiry_interval = Some(interval - waited);
    }
    Some(message)
}

/// What a stored message is charged: its bytes and the structures that hold them.
fn message_cost(message: &Message) -> usize {
    let p = &message.properties;
    size_of::<Retained>()
        + message.topic.len()
        + message.payload.len()
        + p.response_topic.as_ref().map_or(0, TopicName::len)
        + p.correlation_data.as_ref().map_or(0, |b| b.len())
        + p.content_type.as_ref().map_or(0, |s| s.len())
        + p.user_properties
            .iter()
            .map(|u| size_of::<mqtt_streaming_proto::UserProperty>() + u.name.len() + u.value.len())
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use alloc::collections::BTreeMap;
    use alloc::string::String;
    use alloc::vec;

    use mqtt_streaming_proto::QoS;
    use proptest::prelude::*;

    use super::*;

    fn t0() -> Instant {
        Instant::from_millis(0)
    }

    fn message(topic: &str, payload: &str) -> Message {
        Message::new(
            TopicName::new(topic).unwrap(),
            QoS::AtMostOnce,
            String::from(payload),
        )
        .retained()
    }

    fn everything() -> Budget {
        Budget {
            messages: usize::MAX,
            visits: usize::MAX,
        }
    }

    /// Every match, walked in turns of the given budget; with the total nodes visited.
    fn all(store: &mut RetainedStore, filter: &str, budget: Budget) -> (Vec<String>, usize) {
        let mut cursor = store.cursor(TopicFilter::new(filter).unwrap());
        let mut out = Vec::new();
        let mut visits = 0;
        let mut turns = 0;
        while !cursor.is_done() {
            visits += store.walk(t0(), &mut cursor, budget, &mut out);
            turns += 1;
            assert!(turns < 100_000, "the walk makes progress");
        }
        let mut topics: Vec<String> = out.iter().map(|m| String::from(m.topic.as_str())).collect();
        topics.sort();
        (topics, visits)
    }

    /// The linear scan the index replaces: the reference.
    fn reference(model: &BTreeMap<String, String>, filter: &str) -> Vec<String> {
        let filter = TopicFilter::new(filter).unwrap();
        model
            .keys()
            .filter(|t| filter.matches(&TopicName::new(t).unwrap()))
            .cloned()
            .collect()
    }

    fn topic_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "", "$s", "c"]);
        prop::collection::vec(level, 1..5)
            .prop_map(|l| l.join("/"))
            .prop_filter("a topic name is not empty", |t| !t.is_empty())
    }

    fn filter_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "", "$s", "+"]);
        (prop::collection::vec(level, 1..5), any::<bool>())
            .prop_map(|(mut l, hash)| {
                if hash {
                    l.push("#");
                }
                l.join("/")
            })
            .prop_filter("a filter is not empty", |f| !f.is_empty())
    }

    proptest! {
        /// The indexed lookup, walked in turns of any size, finds exactly what the linear
        /// scan with `TopicFilter::matches` finds (including [MQTT-4.7.2-1] for `$` topics),
        /// after any sequence of stores and deletes.
        #[test]
        fn indexed_lookup_equals_the_linear_scan(
            ops in prop::collection::vec((topic_strategy(), any::<bool>()), 0..40),
            filters in prop::collection::vec(filter_strategy(), 1..8),
            messages in 1usize..4,
            visits in 1usize..6,
        ) {
            let mut store = RetainedStore::new(usize::MAX, usize::MAX);
            let mut model = BTreeMap::new();
            for (topic, delete) in &ops {
                let payload = if *delete { "" } else { "p" };
                store.store(t0(), &message(topic, payload)).unwrap();
                if *delete {
                    model.remove(topic);
                } else {
                    model.insert(topic.clone(), String::from(payload));
                }
            }
            prop_assert_eq!(store.len(), model.len());
            for filter in &filters {
                let budget = Budget { messages, visits };
                prop_assert_eq!(all(&mut store, filter, budget).0, reference(&model, filter));
                prop_assert_eq!(all(&mut store, filter, everything()).0, reference(&model, filter));
            }
            // Deleting everything leaves an empty trie and nothing charged.
            for topic in model.keys() {
                store.remove(&TopicName::new(topic).unwrap());
            }
            prop_assert_eq!(store.len(), 0);
            prop_assert_eq!(store.bytes(), 0);
            prop_assert_eq!(store.nodes.len(), 1);
        }
    }

    #[test]
    fn subscribe_cost_does_not_grow_with_the_store() {
        // 100,000 retained messages; a filter that matches one visits its levels only.
        let mut store = RetainedStore::new(usize::MAX, usize::MAX);
        for i in 0..100_000 {
            store
                .store(t0(), &message(&alloc::format!("devices/{i}/state"), "on"))
                .unwrap();
        }
        let (found, visits) = all(&mut store, "devices/4242/state", everything());
        assert_eq!(found, vec![String::from("devices/4242/state")]);
        assert!(
            visits <= 3,
            "{visits} nodes visited for a three-level filter"
        );
        // A `+` level visits what it matches, no more: the children of `devices/4242`.
        let (found, visits) = all(&mut store, "devices/4242/+", everything());
        assert_eq!(found.len(), 1);
        assert!(visits <= 3, "{visits}");
        // A filter matching nothing costs nothing more.
        let (found, visits) = all(&mut store, "other/+/state", everything());
        assert!(found.is_empty());
        assert_eq!(visits, 0);
    }

    #[test]
    fn a_turn_is_bounded_and_resumes_where_it_stopped() {
        let mut store = RetainedStore::new(usize::MAX, usize::MAX);
        for i in 0..1000 {
            store
                .store(t0(), &message(&alloc::format!("s/{i:04}"), "x"))
                .unwrap();
        }
        let mut cursor = store.cursor(TopicFilter::new("s/#").unwrap());
        let mut out = Vec::new();
        let budget = Budget {
            messages: 10,
            visits: 1000,
        };
        let visits = store.walk(t0(), &mut cursor, budget, &mut out);
        assert_eq!(out.len(), 10);
        assert!(visits <= 12, "{visits}");
        assert!(!cursor.is_done());
        // Changes in between: a delete before the position, one after, a new topic.
        store.remove(&TopicName::new("s/0005").unwrap());
        store.remove(&TopicName::new("s/0500").unwrap());
        store.store(t0(), &message("s/0600x", "new")).unwrap();
        while !cursor.is_done() {
            store.walk(t0(), &mut cursor, budget, &mut out);
        }
        let topics: Vec<&str> = out.iter().map(|m| m.topic.as_str()).collect();
        // Each message once, in order; the deleted one not at all; the one stored after the
        // walk began not either (its subscriber got it live).
        assert_eq!(topics.len(), 999);
        assert!(topics.windows(2).all(|w| w[0] < w[1]));
        assert!(!topics.contains(&"s/0500"));
        assert!(!topics.contains(&"s/0600x"));
    }

    #[test]
    fn a_topic_of_30_000_levels_is_walked_and_dropped_without_recursion() {
        let deep: String = vec!["a"; 30_000].join("/");
        let mut store = RetainedStore::new(usize::MAX, usize::MAX);
        store.store(t0(), &message(&deep, "x")).unwrap();
        let (found, _) = all(&mut store, "#", everything());
        assert_eq!(found.len(), 1);
        let (found, _) = all(&mut store, &alloc::format!("{deep}/#"), everything());
        assert_eq!(found.len(), 1);
        let _ = alloc::format!("{store:?}");
        store.remove(&TopicName::new(&deep).unwrap());
        assert_eq!(store.bytes(), 0);
        store.store(t0(), &message(&deep, "x")).unwrap();
        drop(store);
    }

    #[test]
    fn leading_wildcards_do_not_match_dollar_topics_mqtt_4_7_2_1() {
        // [MQTT-4.7.2-1]: a filter starting with a wildcard does not match a topic starting
        // with `$`; a filter naming the `$` level does.
        let mut store = RetainedStore::new(usize::MAX, usize::MAX);
        for t in ["$SYS/uptime", "$SYS/a/b", "sys/uptime", "$", "a/$x"] {
            store.store(t0(), &message(t, "x")).unwrap();
        }
        let all_of = |store: &mut RetainedStore, f| all(store, f, everything()).0;
        assert_eq!(all_of(&mut store, "#"), ["a/$x", "sys/uptime"]);
        assert_eq!(all_of(&mut store, "+/uptime"), ["sys/uptime"]);
        assert_eq!(all_of(&mut store, "+"), Vec::<String>::new());
        assert_eq!(all_of(&mut store, "$SYS/#"), ["$SYS/a/b", "$SYS/uptime"]);
        assert_eq!(all_of(&mut store, "$SYS/+"), ["$SYS/uptime"]);
        assert_eq!(all_of(&mut store, "$"), ["$"]);
        assert_eq!(all_of(&mut store, "a/+"), ["a/$x"]);
    }

    #[test]
    fn expired_messages_are_deleted_and_the_rest_get_their_remaining_interval() {
        // [MQTT-3.3.2-5], [MQTT-3.3.2-6] (5.0).
        let mut store = RetainedStore::new(usize::MAX, usize::MAX);
        let mut short = message("e/short", "x");
        short.properties.message_expiry_interval = Some(10);
        let mut long = message("e/long", "x");
        long.properties.message_expiry_interval = Some(100);
        store.store(t0(), &short).unwrap();
        store.store(t0(), &long).unwrap();
        let later = Instant::from_millis(30_000);
        let mut cursor = store.cursor(TopicFilter::new("e/+").unwrap());
        let mut out = Vec::new();
        store.walk(later, &mut cursor, everything(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].topic.as_str(), "e/long");
        assert_eq!(out[0].properties.message_expiry_interval, Some(70));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn limits_on_count_and_bytes() {
        let mut store = RetainedStore::new(2, usize::MAX);
        store.store(t0(), &message("a", "1")).unwrap();
        store.store(t0(), &message("b", "1")).unwrap();
        assert_eq!(store.store(t0(), &message("c", "1")), Err(StoreFull));
        // Replacing is not a new message.
        store.store(t0(), &message("a", "2")).unwrap();
        assert_eq!(store.len(), 2);

        let one = NODE_COST + 1 + message_cost(&message("a", "1"));
        let mut store = RetainedStore::new(usize::MAX, 2 * one);
        store.store(t0(), &message("a", "1")).unwrap();
        store.store(t0(), &message("b", "1")).unwrap();
        assert_eq!(store.bytes(), 2 * one);
        assert_eq!(store.store(t0(), &message("c", "1")), Err(StoreFull));
        // A deep topic is charged per level.
        assert_eq!(store.store(t0(), &message("a/b/c", "1")), Err(StoreFull));
        // A replacement that would not fit deletes the outdated message.
        assert_eq!(store.store(t0(), &message("a", "bigger")), Err(StoreFull));
        assert_eq!(store.len(), 1);
        store.store(t0(), &message("c", "1")).unwrap();
        assert_eq!(store.len(), 2);
    }
}
