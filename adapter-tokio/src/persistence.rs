//! The broker's store (feature `persistence`): the change records of the broker core
//! ([`Broker::poll_change`](mqtt_streaming_session::broker::Broker::poll_change)) written to an
//! embedded key-value store by a thread of its own, with group commits.
//!
//! # The store: redb
//!
//! [redb](https://docs.rs/redb) is a pure-Rust, ACID, copy-on-write B-tree in one file: a
//! commit writes the changed pages elsewhere, then switches the root with a checksummed
//! header and `fsync`s, so a crash (`kill -9`, power loss) at any point leaves the last
//! committed transaction, never a torn one, and opening needs no log replay. It has no
//! dependencies and no background threads, and its cost is per transaction, not per key:
//! which is what group commits need. (An LSM store such as fjall writes small updates more
//! cheaply per key but brings compaction threads and more code for a data set this small: a
//! broker's durable state is its sessions' unfinished messages, not a history.)
//!
//! # What is durable when
//!
//! - [`Durability::Sync`] (the default): the records of each turn of the broker loop are
//!   one transaction, committed (`fsync`) by the store thread while the loop goes on; turns
//!   that end while a commit runs are grouped into the next one. Everything the broker wrote
//!   to any client after a change (PUBACK, PUBREC and PUBCOMP to publishers, PUBLISH and
//!   PUBREL to subscribers, CONNACK with Session Present, SUBACK) is held back until the
//!   transaction with that change is durable. So a publisher that got PUBACK or PUBREC has
//!   its message in the store, in every persistent session it was routed to; a subscriber
//!   that got a QoS 2 PUBLISH has its packet identifier stored, and after a restart gets it
//!   again only as a DUP with that identifier, which it does not deliver twice. Cost: one
//!   commit of latency on every answer while records are being written, and one `fsync` per
//!   group, not per message.
//! - [`Durability::Autosave`]: mosquitto's `autosave_interval`. Records are gathered (a
//!   message queued and acknowledged within the interval never reaches the disk) and
//!   committed every interval, and on shutdown; nothing is held back. A crash loses what
//!   changed since the last save: acknowledged messages included.
//!
//! Clean sessions and QoS 0 messages are not stored. Messages held back from a publisher while
//! a subscriber is full are not acknowledged yet, so their publisher sends them again after a
//! restart; a held-back QoS 2 message that was routed is stored wherever it was routed, with
//! its publisher's packet identifier, so that re-send is answered with PUBREC and not delivered
//! again (exactly once across the crash). The core's `broker::persistence` docs ("Held-back
//! messages") give the reasoning and what a restore rebuilds.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mqtt_streaming_session::broker::{Snapshot, StoreOp};
use redb::ReadableTable;
use tokio::sync::mpsc;

/// The one table of the store: byte keys and values as the core lays them out.
const TABLE: redb::TableDefinition<'static, &'static [u8], &'static [u8]> =
    redb::TableDefinition::new("mqtt-streaming");

/// The store's file in the persistence directory.
pub const STORE_FILE: &str = "mqtt-streaming.redb";

/// When the broker's changes become durable (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Every change is committed before any client sees its effect (group commits).
    Sync,
    /// Changes are committed every interval and on shutdown (mosquitto's
    /// `autosave_interval`); a crash loses what changed since the last save.
    Autosave(Duration),
}

/// Where and how the broker persists its retained messages and persistent sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistenceOptions {
    /// The directory of the store (mosquitto's `persistence_location`); created if missing.
    /// The store is the file [`STORE_FILE`] in it.
    pub dir: PathBuf,
    /// When changes become durable.
    pub durability: Durability,
}

impl PersistenceOptions {
    /// Durable acknowledgements ([`Durability::Sync`]) in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            durability: Durability::Sync,
        }
    }

    /// The same, saving every `interval` instead (mosquitto's `autosave_interval`).
    pub fn autosave(mut self, interval: Duration) -> Self {
        self.durability = Durability::Autosave(interval);
        self
    }
}

fn store_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("persistence store: {e}"))
}

/// Milliseconds of UNIX time: the durable clock of the records.
pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Opens (or creates) the store in `dir` and reads it.
pub(crate) fn open(dir: &Path) -> io::Result<(redb::Database, Snapshot)> {
    std::fs::create_dir_all(dir)?;
    let db = redb::Database::create(dir.join(STORE_FILE)).map_err(store_error)?;
    let read = db.begin_read().map_err(store_error)?;
    let snapshot = match read.open_table(TABLE) {
        Ok(table) => {
            let mut pairs = Vec::new();
            for entry in table.iter().map_err(store_error)? {
                let (k, v) = entry.map_err(store_error)?;
                pairs.push((k.value().to_vec(), v.value().to_vec()));
            }
            Snapshot::load(pairs).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        }
        Err(redb::TableError::TableDoesNotExist(_)) => Snapshot::default(),
        Err(e) => return Err(store_error(e)),
    };
    drop(read);
    Ok((db, snapshot))
}

/// Store operations not committed yet, merged: the last write of a key wins, a prefix
/// deletion drops the writes before it, and a key inserted and deleted before the commit is
/// forgotten (so a message queued and acknowledged within an autosave interval costs
/// nothing, and what waits stays bounded by what is really pending).
#[derive(Default)]
struct Pending {
    prefixes: Vec<Vec<u8>>,
    /// The value (`None`: delete), and whether the key is new since the last commit.
    keys: BTreeMap<Vec<u8>, (Option<Vec<u8>>, bool)>,
}

impl Pending {
    fn apply(&mut self, op: StoreOp) {
        match op {
            StoreOp::Put(k, v) => {
                let new = self.keys.get(&k).is_some_and(|(_, new)| *new);
                self.keys.insert(k, (Some(v), new));
            }
            StoreOp::Insert(k, v) => {
                self.keys.insert(k, (Some(v), true));
            }
            StoreOp::Delete(k) => {
                if self.keys.get(&k).is_some_and(|(_, new)| *new) {
                    self.keys.remove(&k);
                } else {
                    self.keys.insert(k, (None, false));
                }
            }
            StoreOp::DeletePrefix(p) => {
                self.keys.retain(|k, _| !k.starts_with(&p));
                self.prefixes.push(p);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.prefixes.is_empty() && self.keys.is_empty()
    }

    /// One transaction: the prefix deletions, then the keys.
    fn commit(&mut self, db: &redb::Database) -> Result<(), String> {
        let mut tx = db.begin_write().map_err(|e| e.to_string())?;
        tx.set_durability(redb::Durability::Immediate);
        {
            let mut table = tx.open_table(TABLE).map_err(|e| e.to_string())?;
            let (k, v) = Snapshot::version_record();
            table
                .insert(k.as_slice(), v.as_slice())
                .map_err(|e| e.to_string())?;
            for prefix in self.prefixes.drain(..) {
                let doomed: Vec<Vec<u8>> = table
                    .range(prefix.as_slice()..)
                    .map_err(|e| e.to_string())?
                    .map_while(|entry| {
                        let key = entry.ok()?.0.value().to_vec();
                        key.starts_with(&prefix).then_some(key)
                    })
                    .collect();
                for key in doomed {
                    table.remove(key.as_slice()).map_err(|e| e.to_string())?;
                }
            }
            for (key, (value, _)) in std::mem::take(&mut self.keys) {
                match value {
                    Some(value) => table.insert(key.as_slice(), value.as_slice()).map(drop),
                    None => table.remove(key.as_slice()).map(drop),
                }
                .map_err(|e| e.to_string())?;
            }
        }
        tx.commit().map_err(|e| e.to_string())
    }
}

/// What the broker task tells the store thread.
pub(crate) enum ToStore {
    /// The operations of one turn, numbered.
    Batch(u64, Vec<StoreOp>),
    /// Commit what is pending now (shutdown), then report.
    Flush(u64),
}

/// What the store thread tells the broker task.
#[derive(Debug)]
pub(crate) enum FromStore {
    /// Every batch up to this number is durable.
    Durable(u64),
    /// A commit failed: nothing more will be durable.
    Failed(String),
    /// The thread has stopped and closed the store (after the broker task let go of it).
    Closed,
}

/// The broker task's end of the store thread.
pub(crate) struct StoreHandle {
    tx: Option<std_mpsc::Sender<ToStore>>,
    pub(crate) rx: mpsc::UnboundedReceiver<FromStore>,
}

impl StoreHandle {
    /// Starts the store thread over `db`.
    pub(crate) fn spawn(db: redb::Database, durability: Durability) -> io::Result<Self> {
        let (tx, to_store) = std_mpsc::channel();
        let (from_store, rx) = mpsc::unbounded_channel();
        thread::Builder::new()
            .name("mqtt-store".into())
            .spawn(move || {
                store_thread(&db, durability, &to_store, &from_store);
                // The file is closed before anyone is told: a new broker can open it then.
                drop(db);
                let _ = from_store.send(FromStore::Closed);
            })?;
        Ok(Self { tx: Some(tx), rx })
    }

    pub(crate) fn send(&self, message: ToStore) {
        // A stopped thread has reported `Failed`; nothing else to do.
        if let Some(tx) = &self.tx {
            let _ = tx.send(message);
        }
    }

    /// Lets the thread go: it commits what is pending, closes the store and reports
    /// [`FromStore::Closed`].
    pub(crate) fn close(&mut self) {
        self.tx = None;
    }
}

fn store_thread(
    db: &redb::Database,
    durability: Durability,
    to_store: &std_mpsc::Receiver<ToStore>,
    from_store: &mpsc::UnboundedSender<FromStore>,
) {
    let mut pending = Pending::default();
    let mut last = 0u64;
    let interval = match durability {
        Durability::Sync => None,
        Durability::Autosave(every) => Some(every.max(Duration::from_millis(1))),
    };
    let mut next_save = interval.map(|every| std::time::Instant::now() + every);
    loop {
        // Sync: wait for a batch, then take every batch already waiting (the group).
        // Autosave: take batches until the interval is over.
        let first = match next_save {
            None => to_store.recv().map_err(|_| true),
            Some(at) => {
                let wait = at.saturating_duration_since(std::time::Instant::now());
                match to_store.recv_timeout(wait) {
                    Ok(message) => Ok(message),
                    Err(std_mpsc::RecvTimeoutError::Timeout) => Err(false),
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(true),
                }
            }
        };
        let mut flush = None;
        let mut stop = false;
        let mut take = |message: ToStore, pending: &mut Pending| match message {
            ToStore::Batch(n, ops) => {
                last = last.max(n);
                for op in ops {
                    pending.apply(op);
                }
            }
            ToStore::Flush(n) => {
                last = last.max(n);
                flush = Some(n);
            }
        };
        match first {
            Ok(message) => take(message, &mut pending),
            Err(disconnected) => stop = disconnected,
        }
        while let Ok(message) = to_store.try_recv() {
            take(message, &mut pending);
        }
        let due = match next_save {
            None => true,
            Some(at) => stop || flush.is_some() || std::time::Instant::now() >= at,
        };
        if !due {
            continue;
        }
        if !pending.is_empty() {
            if let Err(e) = pending.commit(db) {
                let _ = from_store.send(FromStore::Failed(e));
                return;
            }
        }
        if let Some(every) = interval {
            next_save = Some(std::time::Instant::now() + every);
        }
        if from_store.send(FromStore::Durable(last)).is_err() || stop {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op_put(k: &[u8]) -> StoreOp {
        StoreOp::Put(k.to_vec(), b"v".to_vec())
    }

    #[test]
    fn a_message_inserted_and_deleted_before_the_commit_leaves_nothing() {
        let mut p = Pending::default();
        p.apply(StoreOp::Insert(b"m1".to_vec(), b"v".to_vec()));
        p.apply(StoreOp::Delete(b"m1".to_vec()));
        assert!(
            p.is_empty(),
            "nothing to write for a message done before the save"
        );
        // A key that may exist on disk: the deletion stays.
        p.apply(op_put(b"h"));
        p.apply(StoreOp::Delete(b"h".to_vec()));
        assert_eq!(p.keys.get(b"h".as_slice()), Some(&(None, false)));
        // A prefix deletion drops the writes under it and is kept for the disk.
        p.apply(op_put(b"S1a"));
        p.apply(StoreOp::DeletePrefix(b"S1".to_vec()));
        p.apply(op_put(b"S1b"));
        assert_eq!(p.prefixes, [b"S1".to_vec()]);
        assert!(!p.keys.contains_key(b"S1a".as_slice()));
        assert!(p.keys.contains_key(b"S1b".as_slice()));
    }

    #[test]
    fn commit_applies_prefix_deletions_before_the_keys() {
        let dir = std::env::temp_dir().join(format!(
            "mqtt-streaming-pending-{}-{}",
            std::process::id(),
            unix_millis()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let db = redb::Database::create(dir.join(STORE_FILE)).unwrap();
        let mut p = Pending::default();
        p.apply(op_put(b"S1a"));
        p.apply(op_put(b"S2a"));
        p.commit(&db).unwrap();
        p.apply(StoreOp::DeletePrefix(b"S1".to_vec()));
        p.apply(op_put(b"S1b"));
        p.commit(&db).unwrap();
        let read = db.begin_read().unwrap();
        let table = read.open_table(TABLE).unwrap();
        let keys: Vec<Vec<u8>> = table
            .iter()
            .unwrap()
            .map(|e| e.unwrap().0.value().to_vec())
            .collect();
        assert_eq!(keys, [b"S1b".to_vec(), b"S2a".to_vec(), b"V".to_vec()]);
        drop(table);
        drop(read);
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
