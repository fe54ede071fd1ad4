//! The subscription index: a trie over topic levels, so matching a topic costs time in the
//! number of its levels and of the matching subscriptions, not in the number of subscriptions
//! held ([MQTT-4.7]).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use mqtt_proto::{QoS, SubscriptionId, SubscriptionOptions, TopicFilter};

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
    /// The member after which the next message goes.
    last: Option<SessionKey>,
}

#[derive(Debug, Default)]
struct Subscribers {
    direct: SmallMap<SessionKey, Sub>,
    shared: BTreeMap<Box<str>, SharedGroup>,
}

impl Subscribers {
    fn is_empty(&self) -> bool {
        self.direct.is_empty() && self.shared.is_empty()
    }
}

/// One topic level. Subscriber sets are boxed and absent when empty, so an inner node costs
/// 56 bytes plus its children.
#[derive(Debug, Default)]
struct Node {
    children: SmallMap<Box<str>, Node>,
    /// `+` at this level.
    single: Option<Box<Node>>,
    /// Filters that end in `#` here.
    multi: Option<Box<Subscribers>>,
    /// Filters that end exactly here.
    exact: Option<Box<Subscribers>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.single.is_none()
            && self.multi.is_none()
            && self.exact.is_none()
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
}

/// The result of matching a topic.
#[derive(Debug, Default)]
pub(crate) struct Matches {
    /// Non-shared subscriptions, merged per session.
    pub(crate) direct: BTreeMap<SessionKey, Delivery>,
    /// One member per matching shared subscription, with that subscription's filter.
    pub(crate) shared: Vec<(SessionKey, Delivery, TopicFilter)>,
}

/// All subscriptions of a broker.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionIndex {
    root: Node,
    count: usize,
}

impl SubscriptionIndex {
    /// Number of subscriptions held.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Adds or replaces `session`'s subscription to `filter`. Returns whether it existed.
    pub(crate) fn insert(&mut self, session: SessionKey, filter: &TopicFilter, sub: Sub) -> bool {
        let (node, is_multi) = node_for(&mut self.root, filter.filter());
        let subscribers = if is_multi {
            node.multi.get_or_insert_with(Box::default)
        } else {
            node.exact.get_or_insert_with(Box::default)
        };
        let existed = match filter.share_name() {
            Some(group) => subscribers
                .shared
                .entry(Box::from(group))
                .or_insert_with(|| SharedGroup {
                    filter: filter.clone(),
                    members: BTreeMap::new(),
                    last: None,
                })
                .members
                .insert(session, sub)
                .is_some(),
            None => subscribers.direct.insert(session, sub).is_some(),
        };
        if !existed {
            self.count += 1;
        }
        existed
    }

    /// Removes `session`'s subscription to `filter`. Returns whether it existed.
    pub(crate) fn remove(&mut self, session: SessionKey, filter: &TopicFilter) -> bool {
        let levels: Vec<&str> = filter.filter().split('/').collect();
        let removed = remove_in(&mut self.root, &levels, session, filter.share_name());
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// Every session that receives a PUBLISH to `topic` from `publisher`, with its merged
    /// delivery; and for each matching shared subscription, one member chosen round robin.
    pub(crate) fn matches(&mut self, topic: &str, publisher: Option<SessionKey>) -> Matches {
        let levels: Vec<&str> = topic.split('/').collect();
        let dollar = topic.starts_with('$');
        let mut out = Matches::default();
        collect(&mut self.root, &levels, 0, dollar, &mut |subscribers| {
            for (session, sub) in subscribers.direct.iter() {
                // No Local: not back to the publisher ([MQTT-3.8.3-3] in 5.0).
                if sub.options.no_local && Some(*session) == publisher {
                    continue;
                }
                out.direct.entry(*session).or_default().merge(sub);
            }
            for group in subscribers.shared.values_mut() {
                if let Some((session, sub)) = next_member(group) {
                    let mut delivery = Delivery::default();
                    delivery.merge(&sub);
                    out.shared.push((session, delivery, group.filter.clone()));
                }
            }
        });
        out
    }

    /// Another member of the shared subscription `filter` than `except`, round robin, to
    /// re-route a message a leaving member could not take.
    pub(crate) fn shared_member(
        &mut self,
        filter: &TopicFilter,
        except: SessionKey,
    ) -> Option<(SessionKey, Sub)> {
        let group = self.group_mut(filter)?;
        for _ in 0..group.members.len() {
            let (session, sub) = next_member(group)?;
            if session != except {
                return Some((session, sub));
            }
        }
        None
    }

    /// Members of the shared subscription `filter`.
    pub(crate) fn shared_group_len(&mut self, filter: &TopicFilter) -> usize {
        self.group_mut(filter).map_or(0, |g| g.members.len())
    }

    fn group_mut(&mut self, filter: &TopicFilter) -> Option<&mut SharedGroup> {
        let group_name = filter.share_name()?;
        let levels: Vec<&str> = filter.filter().split('/').collect();
        let mut node = &mut self.root;
        let mut multi = false;
        for (i, level) in levels.iter().enumerate() {
            match *level {
                "#" if i + 1 == levels.len() => multi = true,
                "+" => node = node.single.as_deref_mut()?,
                other => node = node.children.get_mut(other)?,
            }
        }
        let subscribers = if multi {
            node.multi.as_deref_mut()?
        } else {
            node.exact.as_deref_mut()?
        };
        subscribers.shared.get_mut(group_name)
    }
}

/// The node a filter ends at, creating the path; `true` when the filter ends in `#`.
fn node_for<'a>(root: &'a mut Node, filter: &str) -> (&'a mut Node, bool) {
    let levels: Vec<&str> = filter.split('/').collect();
    let mut node = root;
    for (i, level) in levels.iter().enumerate() {
        match *level {
            "#" if i + 1 == levels.len() => return (node, true),
            "+" => node = node.single.get_or_insert_with(Box::default),
            other => {
                node = node
                    .children
                    .get_or_insert_with(Box::from(other), Node::default)
            }
        }
    }
    (node, false)
}

fn remove_in(node: &mut Node, levels: &[&str], session: SessionKey, group: Option<&str>) -> bool {
    let Some((level, rest)) = levels.split_first() else {
        return remove_from(&mut node.exact, session, group);
    };
    match *level {
        "#" if rest.is_empty() => remove_from(&mut node.multi, session, group),
        "+" => {
            let Some(child) = node.single.as_deref_mut() else {
                return false;
            };
            let removed = remove_in(child, rest, session, group);
            if child.is_empty() {
                node.single = None;
            }
            removed
        }
        other => {
            let Some(child) = node.children.get_mut(other) else {
                return false;
            };
            let removed = remove_in(child, rest, session, group);
            if child.is_empty() {
                node.children.remove(other);
            }
            removed
        }
    }
}

/// Removes from a subscriber set, dropping the set when it empties.
fn remove_from(
    slot: &mut Option<Box<Subscribers>>,
    session: SessionKey,
    group: Option<&str>,
) -> bool {
    let Some(subscribers) = slot.as_deref_mut() else {
        return false;
    };
    let removed = remove_member(subscribers, session, group);
    if subscribers.is_empty() {
        *slot = None;
    }
    removed
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

/// Walks the trie along `levels`, handing every matching subscriber set to `out`. A topic
/// starting with `$` is not matched by a leading wildcard ([MQTT-4.7.2-1]).
fn collect(
    node: &mut Node,
    levels: &[&str],
    i: usize,
    dollar: bool,
    out: &mut impl FnMut(&mut Subscribers),
) {
    let leading = i == 0 && dollar;
    if !leading {
        if let Some(multi) = node.multi.as_deref_mut() {
            // `#` also matches the parent level itself ([MQTT-4.7.1-2] example "sport/#").
            out(multi);
        }
    }
    if i == levels.len() {
        if let Some(exact) = node.exact.as_deref_mut() {
            out(exact);
        }
        return;
    }
    if !leading {
        if let Some(single) = node.single.as_deref_mut() {
            collect(single, levels, i + 1, dollar, out);
        }
    }
    if let Some(child) = node.children.get_mut(levels[i]) {
        collect(child, levels, i + 1, dollar, out);
    }
}

/// The next member of a shared group, round robin.
fn next_member(group: &mut SharedGroup) -> Option<(SessionKey, Sub)> {
    let next = match group.last {
        Some(last) => group
            .members
            .range(last + 1..)
            .next()
            .or_else(|| group.members.iter().next()),
        None => group.members.iter().next(),
    }
    .map(|(k, s)| (*k, *s))?;
    group.last = Some(next.0);
    Some(next)
}
