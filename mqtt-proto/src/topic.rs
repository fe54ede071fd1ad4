//! Topic names (where a message is published) and topic filters (what a subscription matches),
//! section 4.7 of both standards.

use core::fmt;

use bytes::Bytes;

use crate::string::{check_utf8, StringError};

/// Why a string is not a valid topic name or topic filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    /// The string itself is invalid.
    String(StringError),
    /// Topic names and filters are at least one character long ([MQTT-4.7.3-1]).
    Empty,
    /// A topic name contains `+` or `#` ([MQTT-3.3.2-2], [MQTT-4.7.0-1]).
    WildcardInName,
    /// `#` is not the last character of the filter, or does not fill its level
    /// ([MQTT-4.7.1-2]).
    MisplacedMultiLevelWildcard,
    /// `+` does not fill its whole level ([MQTT-4.7.1-3]).
    MisplacedSingleLevelWildcard,
    /// A `$share/` filter without a valid share name and filter ([MQTT-4.8.2-1],
    /// [MQTT-4.8.2-2]).
    InvalidSharedSubscription,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(e) => fmt::Display::fmt(e, f),
            Self::Empty => f.write_str("topic is empty"),
            Self::WildcardInName => f.write_str("topic name contains a wildcard"),
            Self::MisplacedMultiLevelWildcard => {
                f.write_str("'#' must be the last level of a topic filter and fill it")
            }
            Self::MisplacedSingleLevelWildcard => {
                f.write_str("'+' must fill a whole level of a topic filter")
            }
            Self::InvalidSharedSubscription => {
                f.write_str("'$share/' must be followed by a share name, '/' and a filter")
            }
        }
    }
}

impl core::error::Error for TopicError {}

impl From<StringError> for TopicError {
    fn from(e: StringError) -> Self {
        Self::String(e)
    }
}

/// Validates a topic name: a non-empty string without wildcards. Returns it as `&str`.
///
/// Shared by every path that accepts a topic name: [`TopicName`]'s constructors, the owned
/// decoder and the borrowed one.
#[inline]
pub(crate) fn check_name(bytes: &[u8]) -> Result<&str, TopicError> {
    // Fast path: non-empty, short enough for a length prefix, well-formed UTF-8 (the standard
    // library checks ASCII a word at a time), then one pass for U+0000, `+` and `#`. Anything
    // else takes the full check, which also picks the error.
    if !bytes.is_empty() && bytes.len() <= crate::wire::FIELD_MAX {
        if let Ok(s) = core::str::from_utf8(bytes) {
            if !bytes.iter().any(|&b| b == 0 || b == b'+' || b == b'#') {
                return Ok(s);
            }
        }
    }
    check_name_full(bytes)
}

/// [`check_name`] for every input.
#[cold]
fn check_name_full(bytes: &[u8]) -> Result<&str, TopicError> {
    if bytes.is_empty() {
        return Err(TopicError::Empty);
    }
    if bytes.iter().any(|&b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInName);
    }
    Ok(check_utf8(bytes)?)
}

/// The topic name of a PUBLISH as decoded: [`check_name`], except that the empty name is
/// accepted here and checked against the Topic Alias by the caller.
#[inline(always)]
pub(crate) fn check_publish_topic(bytes: &[u8]) -> Result<&str, TopicError> {
    if bytes.is_empty() {
        Ok("")
    } else {
        check_name(bytes)
    }
}

/// Validates the levels of a (non-shared) filter.
fn check_filter_levels(bytes: &[u8]) -> Result<(), TopicError> {
    if bytes.is_empty() {
        return Err(TopicError::Empty);
    }
    let mut levels = bytes.split(|&b| b == b'/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if level.contains(&b'#') && (level != b"#" || !last) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        if level.contains(&b'+') && level != b"+" {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
}

/// The prefix of a shared subscription filter (section 4.8.2 of 5.0).
const SHARE_PREFIX: &[u8] = b"$share/";

/// Splits `$share/{name}/{filter}` into name and filter, validating both.
fn split_shared(bytes: &[u8]) -> Result<Option<(usize, usize)>, TopicError> {
    let Some(rest) = bytes.strip_prefix(SHARE_PREFIX) else {
        return Ok(None);
    };
    let name_len = rest
        .iter()
        .position(|&b| b == b'/')
        .ok_or(TopicError::InvalidSharedSubscription)?;
    let name = &rest[..name_len];
    if name.is_empty() || name.iter().any(|&b| b == b'+' || b == b'#') {
        return Err(TopicError::InvalidSharedSubscription);
    }
    let filter = &rest[name_len + 1..];
    if filter.is_empty() {
        return Err(TopicError::InvalidSharedSubscription);
    }
    check_filter_levels(filter)?;
    Ok(Some((SHARE_PREFIX.len(), name_len)))
}

/// A topic name: the topic a PUBLISH is sent to. Non-empty, no wildcards, valid MQTT UTF-8.
///
/// The one exception is the empty name of an MQTT 5 PUBLISH that relies on a Topic Alias; the
/// decoder produces it only together with an alias, and [`TopicName::empty`] makes one
/// explicitly for that purpose.
///
/// ```
/// use mqtt_streaming_proto::TopicName;
/// assert!(TopicName::new("sensors/kitchen/temp").is_ok());
/// assert!(TopicName::new("sensors/+/temp").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Bytes);

impl TopicName {
    /// Validates `name` and copies it.
    pub fn new(name: &str) -> Result<Self, TopicError> {
        check_name(name.as_bytes())?;
        Ok(Self(Bytes::copy_from_slice(name.as_bytes())))
    }

    /// A topic name from a `'static` literal, without copying.
    pub fn from_static(name: &'static str) -> Result<Self, TopicError> {
        check_name(name.as_bytes())?;
        Ok(Self(Bytes::from_static(name.as_bytes())))
    }

    /// Validates `bytes` and wraps them without copying.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, TopicError> {
        check_name(&bytes)?;
        Ok(Self(bytes))
    }

    /// The empty topic name, valid only in an MQTT 5 PUBLISH that carries a Topic Alias.
    pub const fn empty() -> Self {
        Self(Bytes::new())
    }

    /// Wraps bytes that [`check_publish_topic`] has accepted (the decoder's entry: the empty
    /// name is checked against the Topic Alias by the caller).
    #[inline(always)]
    pub(crate) const fn from_validated(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// The topic as a string.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The shared buffer behind the name.
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether this is the empty, alias-only name.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the topic starts with `$` (server-specific topics that a leading wildcard does
    /// not match, [MQTT-4.7.2-1]).
    pub fn is_dollar(&self) -> bool {
        self.0.first() == Some(&b'$')
    }

    /// The levels of the topic, split at `/`.
    pub fn levels(&self) -> impl Iterator<Item = &str> {
        self.as_str().split('/')
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for TopicName {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// A topic filter: what a subscription matches. May contain `+` (one level) and `#` (all
/// remaining levels), each filling a whole level; may be a shared subscription
/// `$share/{ShareName}/{filter}`.
///
/// ```
/// use mqtt_streaming_proto::{TopicFilter, TopicName};
/// let filter = TopicFilter::new("sensors/+/temp").unwrap();
/// assert!(filter.matches(&TopicName::new("sensors/kitchen/temp").unwrap()));
/// assert!(TopicFilter::new("sensors/#/temp").is_err());
/// let shared = TopicFilter::new("$share/workers/jobs/#").unwrap();
/// assert_eq!(shared.share_name(), Some("workers"));
/// assert_eq!(shared.filter(), "jobs/#");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter {
    bytes: Bytes,
    /// For a shared subscription: length of the share name (it starts after `$share/`).
    share_name_len: u16,
}

impl TopicFilter {
    /// Validates `filter` and copies it.
    pub fn new(filter: &str) -> Result<Self, TopicError> {
        Self::try_from_bytes(Bytes::copy_from_slice(filter.as_bytes()))
    }

    /// Validates `bytes` and wraps them without copying.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, TopicError> {
        check_utf8(&bytes)?;
        let share_name_len = match split_shared(&bytes)? {
            Some((_, name_len)) => name_len as u16,
            None => {
                check_filter_levels(&bytes)?;
                0
            }
        };
        Ok(Self {
            bytes,
            share_name_len,
        })
    }

    /// An owned, compact copy: the filter's bytes in an allocation of their own, so the copy
    /// does not keep the buffer it was decoded from alive.
    pub fn to_owned_compact(&self) -> Self {
        Self {
            bytes: Bytes::copy_from_slice(&self.bytes),
            share_name_len: self.share_name_len,
        }
    }

    /// The whole filter as written, including any `$share/{name}/` prefix.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes).unwrap_or_default()
    }

    /// The encoded bytes of the whole filter.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Length in bytes of the whole filter.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a filter is never empty. Present for symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The share name of a shared subscription (`$share/{name}/...`), if this is one.
    pub fn share_name(&self) -> Option<&str> {
        if self.share_name_len == 0 {
            return None;
        }
        let start = SHARE_PREFIX.len();
        self.as_str()
            .get(start..start + self.share_name_len as usize)
    }

    /// Whether this is a shared subscription.
    pub fn is_shared(&self) -> bool {
        self.share_name_len != 0
    }

    /// The filter that topics are matched against: without the `$share/{name}/` prefix.
    pub fn filter(&self) -> &str {
        if self.share_name_len == 0 {
            self.as_str()
        } else {
            let start = SHARE_PREFIX.len() + self.share_name_len as usize + 1;
            self.as_str().get(start..).unwrap_or_default()
        }
    }

    /// Whether the filter contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.filter().bytes().any(|b| b == b'+' || b == b'#')
    }

    /// Whether `topic` matches this filter, per section 4.7 (a `$` topic is not matched by a
    /// filter starting with a wildcard, [MQTT-4.7.2-1]).
    pub fn matches(&self, topic: &TopicName) -> bool {
        topic_matches(self.filter(), topic.as_str())
    }
}

/// Whether `topic` matches `filter` (both already validated).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for filter_level in filter.split('/') {
        if filter_level == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(level) if filter_level == "+" || filter_level == level => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for TopicFilter {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl From<TopicName> for TopicFilter {
    /// Every non-empty topic name is a filter that matches exactly itself.
    fn from(name: TopicName) -> Self {
        Self::try_from_bytes(name.0).unwrap_or_else(|_| Self {
            bytes: Bytes::from_static(b"#"),
            share_name_len: 0,
        })
    }
}

#[cfg(feature = "arbitrary")]
mod arbitrary_impls {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;
    use arbitrary::{Arbitrary, Result, Unstructured};

    const LEVELS: &[&str] = &["a", "b", "sensor", "ß", "日本", "$SYS", "x y", ""];

    fn level(u: &mut Unstructured<'_>) -> Result<String> {
        if u.ratio(1, 4)? {
            let s: &str = u.arbitrary()?;
            Ok(s.chars()
                .filter(|c| !matches!(c, '\0' | '/' | '+' | '#'))
                .take(16)
                .collect())
        } else {
            Ok(String::from(*u.choose(LEVELS)?))
        }
    }

    impl<'a> Arbitrary<'a> for TopicName {
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            let n = u.int_in_range(1..=5)?;
            let levels: Vec<String> = (0..n).map(|_| level(u)).collect::<Result<_>>()?;
            let name = levels.join("/");
            TopicName::new(if name.is_empty() { "t" } else { &name })
                .map_err(|_| arbitrary::Error::IncorrectFormat)
        }
    }

    impl<'a> Arbitrary<'a> for TopicFilter {
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            let n = u.int_in_range(1..=5)?;
            let mut levels: Vec<String> = Vec::new();
            for i in 0..n {
                let choice = u.int_in_range(0..=5)?;
                levels.push(match choice {
                    0 => String::from("+"),
                    1 if i == n - 1 => String::from("#"),
                    _ => level(u)?,
                });
            }
            let mut filter = levels.join("/");
            if filter.is_empty() {
                filter.push('#');
            }
            if u.ratio(1, 8)? {
                filter = alloc::format!("$share/g{}/{}", u.int_in_range(0..=3u8)?, filter);
            }
            TopicFilter::new(&filter).map_err(|_| arbitrary::Error::IncorrectFormat)
        }
    }
}
