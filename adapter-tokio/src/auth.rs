//! Authentication and authorisation from files in mosquitto's formats (feature
//! `broker-config`; layer 11 of this crate): [`PasswordFile`] (what `mosquitto_passwd` writes), [`AclFile`]
//! (mosquitto's `acl_file`) and [`FileAuth`], the broker hooks that use them. Imports no other
//! layer of this crate.
//!
//! # Password files
//!
//! One `username:hash` entry a line; blank lines and lines starting with `#` are skipped. The
//! hashes mosquitto 2 writes are accepted:
//!
//! - `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512 of the password with SALT, ITERATIONS
//!   rounds (mosquitto_passwd 2.0 uses 101, later versions 1,000), 64 bytes;
//! - `$6$SALT$HASH`: SHA-512 of the password followed by SALT (mosquitto 1.x);
//!
//! SALT and HASH in standard base64. A plain-text password is refused (mosquitto 2 refuses it
//! too; `mosquitto_passwd -U FILE` hashes a file in place), and so is any other scheme (such as
//! mosquitto 2.1's `$8$` argon2id), each with its line number. [`password_entry`] makes a
//! `$7$` entry (the `mqtt-passwd` program writes them).
//!
//! Hashing runs on the broker's task when a client connects: with the iteration counts
//! mosquitto_passwd writes it takes well under a millisecond, but a file with a very high count
//! slows every CONNECT down by as much.
//!
//! # ACL files
//!
//! mosquitto's format, one rule a line (blank lines and lines starting with `#` skipped):
//!
//! ```text
//! # Rules before the first `user` line apply to clients without a user name.
//! topic read $SYS/#
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secret/#
//! # `pattern` rules apply to every client: %c is its client id, %u its user name.
//! pattern write sensors/%u/data
//! pattern read inbox/%c/#
//! ```
//!
//! `topic` and `pattern` take an access (`read`, `write`, `readwrite`, `deny`; omitted, it is
//! `readwrite`) and a topic filter (the rest of the line; it may contain spaces when the access
//! is given). A client's rules are those of its user name (none for a user name the file does
//! not name; the anonymous rules for a client without one), then the patterns. `deny` rules
//! are checked first; then access is granted by the first rule that matches and allows it;
//! otherwise it is refused. A topic starting with `$` matches only rules starting with `$`. A
//! client whose client id or user name contains `+` or `#` is refused everything when the file
//! has patterns (it could otherwise reach other clients' topics through them).
//!
//! - PUBLISH (and a will) needs `write` on the topic name; refused, MQTT 5 gets PUBACK/PUBREC
//!   0x87 and the message is dropped.
//! - SUBSCRIBE needs `read` on every topic the filter can match: a rule whose filter covers the
//!   subscription's (`topic read a/#` covers `a/+/b`, `topic read a/+` does not cover `a/#`),
//!   and no `deny` rule covering it. Refused, the SUBACK says 0x87 Not authorized (MQTT 5) or
//!   0x80 Failure (3.1.1).
//! - Every message delivered needs `read` on its topic, for the subscriber it goes to, as in
//!   mosquitto: a `deny` rule inside a readable subtree (`topic read a/#`, `topic deny
//!   a/secret`) lets a subscription to `a/#` through but holds back its `a/secret` messages
//!   (and retained messages, offline queues, shared subscriptions alike: a member of a shared
//!   subscription that may not read a message is passed over for another; see
//!   [`BrokerHooks::authorize_delivery`]). The check allocates nothing; its cost grows with
//!   the client's own rules plus the patterns.
//!
//! Where this differs from mosquitto: mosquitto lets every SUBSCRIBE through and relies on the
//! check on delivery; this broker also refuses a subscription whose
//! filter reaches beyond the client's `read` rules (`#` with only `topic read a/#`), so the
//! client learns it from its SUBACK instead of receiving nothing.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use mqtt_streaming_proto::{Connect, ReasonCode, TopicFilter, TopicName};
use mqtt_streaming_session::broker::{AuthDecision, BrokerHooks, ClientInfo};
use sha2::{Digest, Sha512};

/// Iterations of the entries [`password_entry`] makes (mosquitto_passwd's current default).
pub const DEFAULT_ITERATIONS: u32 = 1_000;
/// The most PBKDF2 iterations a password file may ask for: each CONNECT pays for them.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// A line of a password or ACL file that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    /// The line (from 1); 0 when the file itself could not be read.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl FileError {
    fn new(line: usize, message: impl Into<String>) -> Self {
        Self {
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for FileError {}

fn read_file(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path)
        .map_err(|e| FileError::new(0, format!("cannot read {}: {e}", path.display())))
}

/// The lines worth reading: number (from 1) and text without its line end; blank lines and
/// `#` comments skipped.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#')
        })
}

#[derive(Clone, PartialEq, Eq)]
enum Hash {
    /// `$6$`: SHA-512(password || salt).
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

impl Hash {
    fn parse(text: &str) -> Result<Self, String> {
        let decode = |what: &str, s: &str| {
            BASE64
                .decode(s)
                .map_err(|e| format!("the {what} is not base64: {e}"))
        };
        let parts: Vec<&str> = text.split('$').collect();
        match parts.as_slice() {
            ["", "6", salt, hash] => {
                let salt = decode("salt", salt)?;
                let hash = decode("hash", hash)?;
                if hash.len() != 64 {
                    return Err("a $6$ hash has 64 bytes".into());
                }
                Ok(Self::Sha512 { salt, hash })
            }
            ["", "7", iterations, salt, hash] => {
                let iterations: u32 = iterations
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_ITERATIONS).contains(n))
                    .ok_or_else(|| {
                        format!("iterations must be 1 to {MAX_ITERATIONS}, not {iterations:?}")
                    })?;
                let salt = decode("salt", salt)?;
                let hash = decode("hash", hash)?;
                if hash.len() != 64 {
                    return Err("a $7$ hash has 64 bytes".into());
                }
                Ok(Self::Pbkdf2 {
                    iterations,
                    salt,
                    hash,
                })
            }
            ["", scheme, ..] => Err(format!(
                "unsupported password hash ${scheme}$ (accepted: $6$ and $7$, as mosquitto 2.0 writes)"
            )),
            _ => Err(
                "not a hashed password (mosquitto_passwd -U FILE hashes a plain-text file)".into(),
            ),
        }
    }

    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Sha512 { salt, hash } => {
                let mut digest = Sha512::new();
                digest.update(password);
                digest.update(salt);
                constant_time_eq(&digest.finalize(), hash)
            }
            Self::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => constant_time_eq(&pbkdf2_sha512(password, salt, *iterations), hash),
        }
    }
}

fn pbkdf2_sha512(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 64] {
    let mut out = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
    out
}

/// Equal contents, compared in a time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A password file in mosquitto_passwd's format (see the [module docs](crate::auth)).
#[derive(Clone, Default)]
pub struct PasswordFile {
    entries: HashMap<String, Hash>,
}

impl fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The user names only: the hashes stay out of logs.
        f.debug_struct("PasswordFile")
            .field("users", &self.entries.len())
            .finish()
    }
}

impl PasswordFile {
    /// Reads a password file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, FileError> {
        Self::parse(&read_file(path.as_ref())?)
    }

    /// Parses a password file's text; the first bad line is the error.
    pub fn parse(text: &str) -> Result<Self, FileError> {
        let mut entries = HashMap::new();
        for (number, line) in lines(text) {
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| FileError::new(number, "expected username:hash"))?;
            if user.is_empty() {
                return Err(FileError::new(number, "empty user name"));
            }
            let hash = Hash::parse(hash).map_err(|e| FileError::new(number, e))?;
            if entries.insert(user.to_owned(), hash).is_some() {
                return Err(FileError::new(
                    number,
                    format!("user {user:?} has two entries"),
                ));
            }
        }
        Ok(Self { entries })
    }

    /// Whether `password` is `username`'s. `false` for a user the file does not name.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        self.entries
            .get(username)
            .is_some_and(|hash| hash.verify(password))
    }

    /// Whether the file names `username`.
    pub fn contains(&self, username: &str) -> bool {
        self.entries.contains_key(username)
    }

    /// Entries in the file.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A password-file line for `username` (`username:$7$...`, PBKDF2-HMAC-SHA512 with a fresh
/// 12-byte salt and `iterations` rounds), which mosquitto and [`PasswordFile`] both accept.
/// Fails when the user name cannot be in such a file (empty or with a `:`) or the system has
/// no randomness to give.
pub fn password_entry(username: &str, password: &str, iterations: u32) -> Result<String, String> {
    if username.is_empty() || username.contains(':') || username.contains('\n') {
        return Err("a user name must be non-empty, without ':' or a line break".into());
    }
    if !(1..=MAX_ITERATIONS).contains(&iterations) {
        return Err(format!("iterations must be 1 to {MAX_ITERATIONS}"));
    }
    let mut salt = [0u8; 12];
    getrandom::getrandom(&mut salt).map_err(|e| format!("no random salt: {e}"))?;
    let hash = pbkdf2_sha512(password.as_bytes(), &salt, iterations);
    Ok(format!(
        "{username}:$7${iterations}${}${}",
        BASE64.encode(salt),
        BASE64.encode(hash)
    ))
}

/// Access an ACL rule gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Subscribe (and receive).
    Read,
    /// Publish.
    Write,
    /// Both.
    ReadWrite,
    /// Neither, whatever other rules grant.
    Deny,
}

impl Access {
    fn grants(self, wanted: Access) -> bool {
        matches!(
            (self, wanted),
            (Access::ReadWrite, Access::Read | Access::Write)
                | (Access::Read, Access::Read)
                | (Access::Write, Access::Write)
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    access: Access,
    /// The filter's levels; in patterns `%c` and `%u` levels are substituted.
    levels: Vec<String>,
    /// Whether the filter starts with `$`.
    dollar: bool,
    uses_username: bool,
}

/// An ACL file in mosquitto's format (see the [module docs](crate::auth)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclFile {
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

impl AclFile {
    /// Reads an ACL file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, FileError> {
        Self::parse(&read_file(path.as_ref())?)
    }

    /// Parses an ACL file's text; the first bad line is the error.
    pub fn parse(text: &str) -> Result<Self, FileError> {
        let mut acl = Self::default();
        let mut user: Option<String> = None;
        for (number, line) in lines(text) {
            let line = line.trim();
            let (keyword, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
            let rest = rest.trim();
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(FileError::new(number, "`user` needs a user name"));
                    }
                    acl.users.entry(rest.to_owned()).or_default();
                    user = Some(rest.to_owned());
                }
                "topic" | "pattern" => {
                    let rule = Self::rule(rest, keyword == "pattern")
                        .map_err(|e| FileError::new(number, format!("`{keyword}`: {e}")))?;
                    if keyword == "pattern" {
                        acl.patterns.push(rule);
                    } else if let Some(user) = &user {
                        acl.users.entry(user.clone()).or_default().push(rule);
                    } else {
                        acl.anonymous.push(rule);
                    }
                }
                other => {
                    return Err(FileError::new(
                        number,
                        format!("unknown keyword {other:?} (expected user, topic or pattern)"),
                    ))
                }
            }
        }
        Ok(acl)
    }

    fn rule(rest: &str, pattern: bool) -> Result<Rule, String> {
        let (access, topic) = match rest.split_once([' ', '\t']) {
            Some((word, topic)) => match word {
                "read" => (Access::Read, topic.trim()),
                "write" => (Access::Write, topic.trim()),
                "readwrite" => (Access::ReadWrite, topic.trim()),
                "deny" => (Access::Deny, topic.trim()),
                _ => (Access::ReadWrite, rest),
            },
            None => (Access::ReadWrite, rest),
        };
        if topic.is_empty() {
            return Err("a topic is needed".into());
        }
        TopicFilter::new(topic).map_err(|e| format!("invalid topic {topic:?}: {e}"))?;
        let levels: Vec<String> = topic.split('/').map(str::to_owned).collect();
        Ok(Rule {
            access,
            dollar: topic.starts_with('$'),
            uses_username: pattern && levels.iter().any(|l| l == "%u"),
            levels,
        })
    }

    /// Whether `client` may publish to `topic`.
    pub fn may_publish(&self, client: &ClientInfo<'_>, topic: &str) -> bool {
        self.check(client, topic, Access::Write, matches_topic)
    }

    /// Whether `client` may receive a message published to `topic` (`read` access on the
    /// topic: what mosquitto checks for every message it delivers).
    pub fn may_read(&self, client: &ClientInfo<'_>, topic: &str) -> bool {
        self.check(client, topic, Access::Read, matches_topic)
    }

    /// Whether `client` may subscribe to `filter`: `read` on every topic it can match.
    pub fn may_subscribe(&self, client: &ClientInfo<'_>, filter: &str) -> bool {
        self.check(client, filter, Access::Read, covers)
    }

    /// Allocates nothing: it runs for every message delivered.
    fn check(
        &self,
        client: &ClientInfo<'_>,
        topic: &str,
        wanted: Access,
        matches: for<'a> fn(&mut dyn Iterator<Item = &'a str>, core::str::Split<'a, char>) -> bool,
    ) -> bool {
        let own: &[Rule] = match client.username {
            Some(name) => self.users.get(name).map_or(&[], Vec::as_slice),
            None => &self.anonymous,
        };
        let dollar = topic.starts_with('$');
        if !self.patterns.is_empty() {
            let dangerous = |s: &str| s.contains(['+', '#']);
            if dangerous(client.client_id) || client.username.is_some_and(dangerous) {
                return false;
            }
        }
        // A rule's levels as they apply to this client: a pattern's `%c` and `%u` replaced.
        let applies = |rule: &Rule, pattern: bool| {
            if dollar && !rule.dollar {
                return false;
            }
            if pattern && rule.uses_username && client.username.is_none() {
                return false;
            }
            let mut levels = rule.levels.iter().map(|l| match l.as_str() {
                "%c" if pattern => client.client_id,
                "%u" if pattern => client.username.unwrap_or_default(),
                other => other,
            });
            matches(&mut levels, topic.split('/'))
        };
        // `deny` first, then the first rule that grants; own rules before patterns.
        let rules = || {
            own.iter()
                .map(|r| (r, false))
                .chain(self.patterns.iter().map(|r| (r, true)))
        };
        if rules().any(|(r, p)| r.access == Access::Deny && applies(r, p)) {
            return false;
        }
        rules().any(|(r, p)| r.access.grants(wanted) && applies(r, p))
    }
}

/// Whether the topic name `topic` matches the filter `rule` (MQTT's matching, 4.7).
fn matches_topic<'a>(
    rule: &mut dyn Iterator<Item = &'a str>,
    mut topic: core::str::Split<'a, char>,
) -> bool {
    loop {
        match (rule.next(), topic.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(r), Some(t)) if r == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic the filter `sub` matches is matched by the filter `rule`.
fn covers<'a>(
    rule: &mut dyn Iterator<Item = &'a str>,
    mut sub: core::str::Split<'a, char>,
) -> bool {
    loop {
        match (rule.next(), sub.next()) {
            (Some("#"), _) => return true,
            (_, Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(_), Some("+")) => return false,
            (Some(r), Some(s)) if r == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Broker hooks from a password file and an ACL file, as mosquitto's `password_file`,
/// `acl_file` and `allow_anonymous`.
///
/// - A CONNECT without a user name is let in only when `allow_anonymous` (CONNACK 0x87 Not
///   authorized / 3.1.1 return code 5 otherwise).
/// - With a password file, a user name must be in it with the right password (0x86 Bad User
///   Name or Password / return code 4 otherwise). Without one, a user name is taken as given
///   when `allow_anonymous`, and refused (0x87) when not.
/// - With an ACL file, publishes, subscriptions and every delivery are checked against it (see
///   the [module docs](crate::auth); a shared subscription `$share/NAME/FILTER` as `FILTER`);
///   without one, everything is allowed.
#[derive(Clone, Debug)]
pub struct FileAuth {
    passwords: Option<PasswordFile>,
    acl: Option<AclFile>,
    allow_anonymous: bool,
    subscription_denied: ReasonCode,
}

impl FileAuth {
    /// Hooks from a password file (`None`: no passwords), an ACL file (`None`: no ACL) and
    /// whether clients without a user name may connect.
    pub fn new(
        passwords: Option<PasswordFile>,
        acl: Option<AclFile>,
        allow_anonymous: bool,
    ) -> Self {
        Self {
            passwords,
            acl,
            allow_anonymous,
            subscription_denied: ReasonCode::NotAuthorized,
        }
    }

    /// The same hooks answering a SUBSCRIBE the ACL refuses with `code` in MQTT 5: 0x87 Not
    /// authorized (the default) or 0x80 Unspecified error (what some test suites expect).
    /// MQTT 3.1.1 clients get 0x80 Failure either way.
    pub fn with_subscription_denied(mut self, code: ReasonCode) -> Self {
        self.subscription_denied = code;
        self
    }

    /// The password file.
    pub fn passwords(&self) -> Option<&PasswordFile> {
        self.passwords.as_ref()
    }

    /// The ACL file.
    pub fn acl(&self) -> Option<&AclFile> {
        self.acl.as_ref()
    }
}

impl BrokerHooks for FileAuth {
    fn authenticate(&mut self, connect: &Connect) -> AuthDecision {
        if connect.properties.authentication_method.is_some() {
            return AuthDecision::Reject(ReasonCode::BadAuthenticationMethod);
        }
        match (&connect.username, &self.passwords) {
            (None, _) if self.allow_anonymous => AuthDecision::Accept,
            (None, _) => AuthDecision::Reject(ReasonCode::NotAuthorized),
            (Some(user), Some(passwords)) => {
                let password = connect.password.as_deref().unwrap_or_default();
                if passwords.verify(user.as_str(), password) {
                    AuthDecision::Accept
                } else {
                    AuthDecision::Reject(ReasonCode::BadUserNameOrPassword)
                }
            }
            (Some(_), None) if self.allow_anonymous => AuthDecision::Accept,
            (Some(_), None) => AuthDecision::Reject(ReasonCode::NotAuthorized),
        }
    }

    fn authorize_publish_from(&mut self, client: &ClientInfo<'_>, topic: &TopicName) -> bool {
        self.acl
            .as_ref()
            .is_none_or(|acl| acl.may_publish(client, topic.as_str()))
    }

    fn authorize_subscription(
        &mut self,
        client: &ClientInfo<'_>,
        filter: &TopicFilter,
    ) -> Result<(), ReasonCode> {
        // A shared subscription is checked as the filter it shares.
        match &self.acl {
            Some(acl) if !acl.may_subscribe(client, filter.filter()) => {
                Err(self.subscription_denied)
            }
            _ => Ok(()),
        }
    }

    const CHECKS_DELIVERY: bool = true;

    /// `read` access to the message's topic, for each subscriber (mosquitto's check on
    /// delivery): a subscription to `a/#` does not carry `a/secret` to a client denied it.
    fn authorize_delivery(&mut self, subscriber: &ClientInfo<'_>, topic: &TopicName) -> bool {
        self.acl
            .as_ref()
            .is_none_or(|acl| acl.may_read(subscriber, topic.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by mosquitto_passwd 2.0.11 (`mosquitto_passwd -c -b FILE alice secret`).
    const MOSQUITTO_7: &str = "alice:$7$101$ewyxi37hMwr4Q8XV$IIthBBjGYZzLImp//Y2eU5gAh8cCXRmEVEvMVbGwKOIjjMPOA/4pMtWyJivbgwnEwwlQn0XC66/1uBfrpMk1oA==";

    fn info<'a>(id: &'a str, user: Option<&'a str>) -> ClientInfo<'a> {
        ClientInfo::new(id, user)
    }

    #[test]
    fn accepts_mosquitto_passwd_pbkdf2_entry() {
        let file = PasswordFile::parse(&format!("# users\n\n{MOSQUITTO_7}\n")).unwrap();
        assert!(file.verify("alice", b"secret"));
        assert!(!file.verify("alice", b"Secret"));
        assert!(!file.verify("bob", b"secret"));
        assert_eq!(file.len(), 1);
    }

    #[test]
    fn accepts_salted_sha512_entry() {
        // $6$: SHA-512(password || salt), salt and hash in base64.
        let salt = b"0123456789ab";
        let mut d = Sha512::new();
        d.update(b"pw");
        d.update(salt);
        let line = format!(
            "carol:$6${}${}",
            BASE64.encode(salt),
            BASE64.encode(d.finalize())
        );
        let file = PasswordFile::parse(&line).unwrap();
        assert!(file.verify("carol", b"pw"));
        assert!(!file.verify("carol", b"pw2"));
    }

    #[test]
    fn entries_made_here_verify() {
        let line = password_entry("dave", "s3cret", 101).unwrap();
        assert!(line.starts_with("dave:$7$101$"));
        let file = PasswordFile::parse(&line).unwrap();
        assert!(file.verify("dave", b"s3cret"));
        assert!(!file.verify("dave", b"s3cre"));
        assert!(password_entry("a:b", "x", 101).is_err());
    }

    #[test]
    fn bad_password_lines_are_numbered() {
        let err = PasswordFile::parse("# c\nalice:plaintext\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("not a hashed password"), "{err}");
        let err = PasswordFile::parse(&format!("{MOSQUITTO_7}\nnocolon\n")).unwrap_err();
        assert_eq!(err.line, 2);
        let err = PasswordFile::parse("x:$8$a$b$c").unwrap_err();
        assert!(err.message.contains("$8$"), "{err}");
        let err = PasswordFile::parse("x:$7$0$YWJj$YWJj").unwrap_err();
        assert!(err.message.contains("iterations"), "{err}");
        let err = PasswordFile::parse(&format!("{MOSQUITTO_7}\n{MOSQUITTO_7}")).unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn acl_user_anonymous_and_patterns() {
        let acl = AclFile::parse(
            "# anonymous\ntopic read public/#\n\nuser alice\ntopic alice/#\ntopic deny alice/secret/#\ntopic write in/+\n\
             user bob\ntopic read $SYS/#\npattern write sensors/%u/data\npattern read inbox/%c/#\n",
        )
        .unwrap();
        let anon = info("anon-1", None);
        let alice = info("a1", Some("alice"));
        let bob = info("b1", Some("bob"));
        let eve = info("e1", Some("eve"));
        assert!(acl.may_subscribe(&anon, "public/x"));
        assert!(!acl.may_publish(&anon, "public/x"));
        assert!(!acl.may_subscribe(&alice, "public/x"));
        // `topic alice/#` is readwrite.
        assert!(acl.may_publish(&alice, "alice/x"));
        assert!(acl.may_subscribe(&alice, "alice/+/y"));
        // deny is checked first.
        assert!(!acl.may_publish(&alice, "alice/secret/k"));
        assert!(!acl.may_subscribe(&alice, "alice/secret/#"));
        assert!(acl.may_publish(&alice, "in/1"));
        assert!(!acl.may_subscribe(&alice, "in/1"));
        // patterns: for everyone, %u needs a user name.
        assert!(acl.may_publish(&alice, "sensors/alice/data"));
        assert!(!acl.may_publish(&alice, "sensors/bob/data"));
        assert!(!acl.may_publish(&anon, "sensors//data"));
        assert!(acl.may_subscribe(&eve, "inbox/e1/#"));
        assert!(!acl.may_subscribe(&eve, "inbox/+/#"));
        // `$` topics only match `$` rules.
        assert!(acl.may_subscribe(&bob, "$SYS/broker/uptime"));
        assert!(!acl.may_subscribe(&alice, "$SYS/broker/uptime"));
    }

    #[test]
    fn acl_read_on_delivery_follows_mosquitto() {
        // A message is delivered only if its subscriber has `read` on its topic: `deny` inside
        // a readable subtree, user rules, anonymous rules and %c / %u patterns.
        let acl = AclFile::parse(
            "topic read public/#\nuser alice\ntopic read a/#\ntopic deny a/secret\n\
             topic write w/#\nuser bob\ntopic readwrite a/+/x\n\
             pattern read inbox/%u/#\npattern read dev/%c\n",
        )
        .unwrap();
        let alice = info("a1", Some("alice"));
        let bob = info("b1", Some("bob"));
        let anon = info("n1", None);
        assert!(acl.may_read(&alice, "a/open"));
        assert!(acl.may_read(&alice, "a"), "`a/#` matches its parent level");
        assert!(!acl.may_read(&alice, "a/secret"));
        assert!(
            acl.may_read(&alice, "a/secret/deeper"),
            "deny is `a/secret` only"
        );
        assert!(!acl.may_read(&alice, "w/1"), "write does not grant read");
        assert!(
            !acl.may_read(&alice, "public/x"),
            "anonymous rules are not alice's"
        );
        assert!(acl.may_read(&bob, "a/q/x"));
        assert!(!acl.may_read(&bob, "a/q/y"));
        assert!(acl.may_read(&anon, "public/x"));
        assert!(!acl.may_read(&anon, "a/open"));
        // Patterns: %u needs a user name, %c is the client id.
        assert!(acl.may_read(&alice, "inbox/alice/1"));
        assert!(!acl.may_read(&alice, "inbox/bob/1"));
        assert!(!acl.may_read(&anon, "inbox//1"));
        assert!(acl.may_read(&anon, "dev/n1"));
        assert!(!acl.may_read(&anon, "dev/n2"));
        // `$` topics only match `$` rules.
        let sys = AclFile::parse("topic read #\n").unwrap();
        assert!(!sys.may_read(&anon, "$SYS/broker/uptime"));
        assert!(sys.may_read(&anon, "x/y"));
    }

    #[test]
    fn file_auth_checks_every_delivery() {
        const { assert!(<FileAuth as BrokerHooks>::CHECKS_DELIVERY) };
        let acl = AclFile::parse("user alice\ntopic read a/#\ntopic deny a/secret\n").unwrap();
        let mut auth = FileAuth::new(None, Some(acl), true);
        let alice = ClientInfo::new("a1", Some("alice"));
        let t = |s: &str| TopicName::new(s).unwrap();
        // The subscription is let through; its `a/secret` messages are not delivered.
        assert_eq!(
            auth.authorize_subscription(&alice, &TopicFilter::new("a/#").unwrap()),
            Ok(())
        );
        assert!(auth.authorize_delivery(&alice, &t("a/open")));
        assert!(!auth.authorize_delivery(&alice, &t("a/secret")));
        assert!(!auth.authorize_delivery(&ClientInfo::new("x", None), &t("a/open")));
        // Without an ACL file everything is delivered.
        let mut open = FileAuth::new(None, None, true);
        assert!(open.authorize_delivery(&alice, &t("a/secret")));
    }

    #[test]
    fn acl_subscription_must_be_covered() {
        let acl = AclFile::parse("topic read a/+\ntopic read b/#\n").unwrap();
        let c = info("c", None);
        assert!(acl.may_subscribe(&c, "a/x"));
        assert!(acl.may_subscribe(&c, "a/+"));
        assert!(!acl.may_subscribe(&c, "a/#"));
        assert!(!acl.may_subscribe(&c, "a/x/y"));
        assert!(acl.may_subscribe(&c, "b"));
        assert!(acl.may_subscribe(&c, "b/#"));
        assert!(!acl.may_subscribe(&c, "#"));
    }

    #[test]
    fn acl_refuses_wildcards_in_ids_when_patterns_exist() {
        let acl = AclFile::parse("pattern readwrite c/%c/#\n").unwrap();
        assert!(acl.may_publish(&info("x", None), "c/x/1"));
        assert!(!acl.may_publish(&info("+", None), "c/+/1"));
        assert!(!acl.may_publish(&info("x", Some("u#")), "c/x/1"));
    }

    #[test]
    fn acl_topic_with_spaces_needs_access() {
        let acl = AclFile::parse("topic read a b/c\n").unwrap();
        assert!(acl.may_subscribe(&info("c", None), "a b/c"));
    }

    #[test]
    fn bad_acl_lines_are_numbered() {
        let err = AclFile::parse("user a\n\ntopic\n").unwrap_err();
        assert_eq!(err.line, 3);
        let err = AclFile::parse("user a\nallow x\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("unknown keyword"), "{err}");
        let err = AclFile::parse("topic read a/#/b\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.message.contains("invalid topic"), "{err}");
    }

    #[test]
    fn file_auth_decisions() {
        let passwords = PasswordFile::parse(MOSQUITTO_7).unwrap();
        let mut auth = FileAuth::new(Some(passwords), None, false);
        let connect = |user: Option<&str>, pw: Option<&str>| {
            let mut c = Connect::new(
                mqtt_streaming_proto::ProtocolVersion::V5,
                mqtt_streaming_proto::MqttString::new("c").unwrap(),
            );
            c.username = user.map(|u| mqtt_streaming_proto::MqttString::new(u).unwrap());
            c.password = pw.map(|p| bytes::Bytes::from(p.to_owned()));
            c
        };
        assert_eq!(
            auth.authenticate(&connect(Some("alice"), Some("secret"))),
            AuthDecision::Accept
        );
        assert_eq!(
            auth.authenticate(&connect(Some("alice"), Some("wrong"))),
            AuthDecision::Reject(ReasonCode::BadUserNameOrPassword)
        );
        assert_eq!(
            auth.authenticate(&connect(Some("alice"), None)),
            AuthDecision::Reject(ReasonCode::BadUserNameOrPassword)
        );
        assert_eq!(
            auth.authenticate(&connect(None, None)),
            AuthDecision::Reject(ReasonCode::NotAuthorized)
        );
        let acl = AclFile::parse("topic readwrite a/#\n").unwrap();
        let mut shared = FileAuth::new(None, Some(acl), true);
        let client = ClientInfo::new("c", None);
        let f = |s: &str| TopicFilter::new(s).unwrap();
        assert_eq!(
            shared.authorize_subscription(&client, &f("$share/g/a/x")),
            Ok(())
        );
        assert_eq!(
            shared.authorize_subscription(&client, &f("$share/g/b")),
            Err(ReasonCode::NotAuthorized)
        );
        let mut shared = shared.with_subscription_denied(ReasonCode::UnspecifiedError);
        assert_eq!(
            shared.authorize_subscription(&client, &f("b")),
            Err(ReasonCode::UnspecifiedError)
        );
        let mut open = FileAuth::new(None, None, true);
        assert_eq!(
            open.authenticate(&connect(Some("x"), None)),
            AuthDecision::Accept
        );
    }
}
