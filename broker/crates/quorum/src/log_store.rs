//! The durable Raft log and vote (openraft's `RaftLogStorage`), in the quorum directory:
//!
//! - `raft.log`: CRC-framed entries ([`crate::frame`]), each a JSON [`LogFrame`]. An append is
//!   written and fsynced before openraft is told it is durable. The file may start with a
//!   `Purged` frame naming the last entry dropped behind a snapshot. Open replays the file:
//!   a damaged frame with nothing valid after it is a torn tail (an append never acknowledged)
//!   and is cut off; a damaged frame followed by a valid one, or entries that do not follow
//!   each other, refuse to open ([`Error::Corrupt`]). Truncation (a follower dropping a
//!   conflicting suffix) cuts the file; purging rewrites it (tmp + fsync + rename).
//! - `vote.json`: the last vote, written atomically and durably before it is acknowledged.
//! - `committed.json`: the last committed log id, a hint so a restart re-applies committed
//!   entries before a leader is known; written atomically but not fsynced (losing it only
//!   delays re-applying until the next commit).
//!
//! Entries live in memory too (the log behind the last snapshot is purged, so it stays small):
//! reads never touch the disk, and disk work runs on blocking threads.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogId, RaftLogReader, StorageIOError};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::frame;
use crate::types::{C, Entry, LogId, StorageError, Vote};
use crate::{Error, Result};

const LOG_FILE: &str = "raft.log";
const VOTE_FILE: &str = "vote.json";
const COMMITTED_FILE: &str = "committed.json";

/// One frame of `raft.log`.
#[derive(Debug, Serialize, Deserialize)]
enum LogFrame {
    /// Every entry up to and including this id was dropped (it is in a snapshot).
    Purged(LogId),
    Entry(Entry),
}

/// What readers see: kept in memory, never locked across disk I/O.
#[derive(Debug, Default)]
struct Mem {
    entries: BTreeMap<u64, Entry>,
    purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

/// The log file and where each entry starts in it; used only on blocking threads.
#[derive(Debug)]
struct Disk {
    path: PathBuf,
    file: File,
    len: u64,
    positions: BTreeMap<u64, u64>,
}

/// The Raft log store; clones share the same log (a clone is also the log reader).
#[derive(Debug, Clone)]
pub(crate) struct LogStore {
    dir: PathBuf,
    mem: Arc<RwLock<Mem>>,
    disk: Arc<Mutex<Disk>>,
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<LogStore> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let path = dir.join(LOG_FILE);
        let io = io_error(&path);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(&io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(&io)?;
        if bytes.is_empty() {
            // A new (or empty) log: make its directory entry durable before the first append.
            frame::sync_dir(&path).map_err(&io)?;
        }

        let mut mem = Mem::default();
        let mut positions = BTreeMap::new();
        let corrupt = |detail: String| Error::Corrupt {
            path: path.clone(),
            detail,
        };
        let mut pos = 0usize;
        while let Some((body, next)) = frame::frame_at(&bytes, pos) {
            let Ok(decoded) = serde_json::from_slice::<LogFrame>(body) else {
                break;
            };
            match decoded {
                LogFrame::Purged(id) if pos == 0 => mem.purged = Some(id),
                LogFrame::Purged(_) => {
                    return Err(corrupt(format!("purge marker at byte {pos} is not the first frame")));
                }
                LogFrame::Entry(entry) => {
                    let index = entry.log_id.index;
                    let expected = match mem.entries.last_key_value() {
                        Some((last, _)) => last + 1,
                        None => mem.purged.map_or(0, |p| p.index + 1),
                    };
                    if index != expected {
                        return Err(corrupt(format!(
                            "entry at byte {pos} has index {index}, expected {expected}"
                        )));
                    }
                    positions.insert(index, pos as u64);
                    mem.entries.insert(index, entry);
                }
            }
            pos = next;
        }
        if pos < bytes.len() {
            if let Some(next_valid) = (pos + 1..bytes.len()).find(|&at| frame::frame_at(&bytes, at).is_some()) {
                return Err(corrupt(format!(
                    "damaged entry at byte {pos} with a valid entry after it (at byte {next_valid}); refusing to \
                     truncate committed raft log entries: restore the directory from a backup, or remove this node's \
                     quorum directory so it is rebuilt from the other voters"
                )));
            }
            tracing::warn!(path = %path.display(), valid_bytes = pos, file_bytes = bytes.len(), "truncating torn raft log tail");
            file.set_len(pos as u64).map_err(&io)?;
            file.sync_all().map_err(&io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(&io)?;

        let vote_path = dir.join(VOTE_FILE);
        match std::fs::read(&vote_path) {
            Ok(bytes) => {
                mem.vote = Some(serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                    path: vote_path.clone(),
                    detail: format!("unreadable vote: {e}"),
                })?);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&vote_path)(e)),
        }
        // The committed hint: never wrong when present (only ids openraft committed are
        // written), possibly stale or missing; an unreadable one is ignored.
        let committed_path = dir.join(COMMITTED_FILE);
        if let Ok(bytes) = std::fs::read(&committed_path) {
            match serde_json::from_slice::<Option<LogId>>(&bytes) {
                Ok(committed) => {
                    let last = mem.entries.keys().next_back().copied().or(mem.purged.map(|p| p.index));
                    // Never beyond what the log holds (a hint written after a truncation).
                    mem.committed = committed.filter(|c| last.is_some_and(|l| c.index <= l));
                }
                Err(error) => {
                    tracing::warn!(path = %committed_path.display(), %error, "ignoring unreadable committed hint")
                }
            }
        }
        for stale in [VOTE_FILE, COMMITTED_FILE, LOG_FILE] {
            let _ = std::fs::remove_file(dir.join(stale).with_extension("tmp"));
        }
        Ok(LogStore {
            dir: dir.to_path_buf(),
            mem: Arc::new(RwLock::new(mem)),
            disk: Arc::new(Mutex::new(Disk {
                path: dir.join(LOG_FILE),
                file,
                len: pos as u64,
                positions,
            })),
        })
    }

    /// Index of the last entry, or of the last purged one if the log is empty.
    pub(crate) fn last_index(&self) -> Option<u64> {
        let mem = self.mem.read();
        mem.entries.keys().next_back().copied().or(mem.purged.map(|p| p.index))
    }

    /// Appends `entries` durably (written and fsynced), then makes them readable.
    async fn write_entries(&self, entries: Vec<Entry>) -> io::Result<()> {
        let mut frames = Vec::with_capacity(entries.len());
        for entry in &entries {
            let body = serde_json::to_vec(&LogFrame::Entry(entry.clone())).map_err(io::Error::other)?;
            frames.push((entry.log_id.index, body));
        }
        self.with_disk(move |disk| disk.append(&frames)).await?;
        let mut mem = self.mem.write();
        for entry in entries {
            mem.entries.insert(entry.log_id.index, entry);
        }
        Ok(())
    }

    /// Runs `f` on the log file on a blocking thread.
    async fn with_disk<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Disk) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let disk = self.disk.clone();
        tokio::task::spawn_blocking(move || f(&mut disk.lock()))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(format!("raft log task failed: {e}"))))
    }
}

impl Disk {
    fn append(&mut self, frames: &[(u64, Vec<u8>)]) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut positions = Vec::with_capacity(frames.len());
        for (index, body) in frames {
            positions.push((*index, self.len + buf.len() as u64));
            frame::encode(body, &mut buf);
        }
        let written = self.file.write_all(&buf).and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            // Never leave a partial frame before later ones.
            if let Err(cut) = self.file.set_len(self.len) {
                tracing::error!(path = %self.path.display(), error = %cut, "cannot cut a failed raft log append");
            }
            return Err(error);
        }
        self.len += buf.len() as u64;
        self.positions.extend(positions);
        Ok(())
    }

    /// Drops every entry from `index` on.
    fn truncate(&mut self, index: u64) -> io::Result<()> {
        let Some(&pos) = self.positions.get(&index) else {
            return Ok(());
        };
        self.file.set_len(pos)?;
        self.file.sync_all()?;
        self.len = pos;
        self.positions.split_off(&index);
        Ok(())
    }

    /// Drops every entry up to `purged` (inclusive): the file is rewritten as a purge marker
    /// followed by the bytes of the entries kept.
    fn purge(&mut self, purged: LogId) -> io::Result<()> {
        let kept_from = self.positions.range(purged.index + 1..).next().map(|(_, &p)| p);
        let mut marker = Vec::new();
        frame::encode(
            &serde_json::to_vec(&LogFrame::Purged(purged)).map_err(io::Error::other)?,
            &mut marker,
        );
        let mut tail = Vec::new();
        if let Some(from) = kept_from {
            self.file.seek(SeekFrom::Start(from))?;
            (&self.file).take(self.len - from).read_to_end(&mut tail)?;
        }
        let tmp = self.path.with_extension("tmp");
        {
            let mut out = File::create(&tmp)?;
            out.write_all(&marker)?;
            out.write_all(&tail)?;
            out.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        frame::sync_dir(&self.path)?;
        self.file = OpenOptions::new().read(true).append(true).open(&self.path)?;
        let base = marker.len() as u64;
        let from = kept_from.unwrap_or(self.len);
        self.positions = self
            .positions
            .split_off(&(purged.index + 1))
            .into_iter()
            .map(|(i, p)| (i, base + (p - from)))
            .collect();
        self.len = base + tail.len() as u64;
        Ok(())
    }
}

impl RaftLogReader<C> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<Entry>, StorageError> {
        Ok(self.mem.read().entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> std::result::Result<LogState<C>, StorageError> {
        let mem = self.mem.read();
        let last = mem.entries.values().next_back().map(|e| *e.get_log_id()).or(mem.purged);
        Ok(LogState {
            last_purged_log_id: mem.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> std::result::Result<(), StorageError> {
        let path = self.dir.join(VOTE_FILE);
        let bytes = serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        // Serialised with log writes: the disk lock is held while the vote is written.
        self.with_disk(move |_| frame::write_atomic(&path, &bytes))
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        self.mem.write().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> std::result::Result<Option<Vote>, StorageError> {
        Ok(self.mem.read().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> std::result::Result<(), StorageError> {
        let path = self.dir.join(COMMITTED_FILE);
        let bytes = serde_json::to_vec(&committed).map_err(|e| StorageIOError::write(&e))?;
        self.with_disk(move |_| {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, &path)
        })
        .await
        .map_err(|e| StorageIOError::write(&e))?;
        self.mem.write().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> std::result::Result<Option<LogId>, StorageError> {
        Ok(self.mem.read().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> std::result::Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        match self.write_entries(entries.into_iter().collect()).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                let message = error.to_string();
                callback.log_io_completed(Err(error));
                Err(StorageIOError::write_logs(&io::Error::other(message)).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> std::result::Result<(), StorageError> {
        let index = log_id.index;
        self.with_disk(move |disk| disk.truncate(index))
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.mem.write().entries.split_off(&index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> std::result::Result<(), StorageError> {
        if self.mem.read().purged.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        self.with_disk(move |disk| disk.purge(log_id))
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        let mut mem = self.mem.write();
        mem.purged = Some(log_id);
        mem.entries = mem.entries.split_off(&(log_id.index + 1));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    async fn append(store: &mut LogStore, entries: Vec<Entry>) {
        store.write_entries(entries).await.expect("append");
    }

    #[tokio::test]
    async fn raft_log_survives_reopen_truncate_and_purge() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut store = LogStore::open(dir.path()).expect("opens");
            append(&mut store, (0..10).map(|i| entry(1, i)).collect()).await;
            store
                .truncate(LogId::new(CommittedLeaderId::new(1, 1), 8))
                .await
                .expect("truncate");
            append(&mut store, vec![entry(2, 8)]).await;
            store
                .purge(LogId::new(CommittedLeaderId::new(1, 1), 4))
                .await
                .expect("purge");
            append(&mut store, vec![entry(2, 9)]).await;
            store.save_vote(&Vote::new(2, 1)).await.expect("vote");
        }
        let mut store = LogStore::open(dir.path()).expect("reopens");
        let state = store.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(4));
        assert_eq!(state.last_log_id, Some(LogId::new(CommittedLeaderId::new(2, 1), 9)));
        let entries = store.try_get_log_entries(0..100).await.expect("read");
        assert_eq!(
            entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            (5..10).collect::<Vec<_>>()
        );
        assert_eq!(entries[3].log_id.leader_id.term, 2);
        assert_eq!(store.read_vote().await.expect("vote"), Some(Vote::new(2, 1)));
        // Purging everything leaves only the marker; appends continue after it.
        store
            .purge(LogId::new(CommittedLeaderId::new(2, 1), 9))
            .await
            .expect("purge");
        append(&mut store, vec![entry(3, 10)]).await;
        drop(store);
        let mut store = LogStore::open(dir.path()).expect("reopens");
        let entries = store.try_get_log_entries(0..100).await.expect("read");
        assert_eq!(entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), vec![10]);
    }

    #[tokio::test]
    async fn raft_log_torn_tail_is_cut_but_damage_before_valid_entries_refuses_to_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(LOG_FILE);
        {
            let mut store = LogStore::open(dir.path()).expect("opens");
            append(&mut store, (0..3).map(|i| entry(1, i)).collect()).await;
        }
        let original = std::fs::read(&path).expect("read");
        // A torn tail: half of a fourth frame.
        let mut torn = original.clone();
        let mut extra = Vec::new();
        frame::encode(
            &serde_json::to_vec(&LogFrame::Entry(entry(1, 3))).expect("json"),
            &mut extra,
        );
        torn.extend_from_slice(&extra[..extra.len() / 2]);
        std::fs::write(&path, &torn).expect("write");
        let mut store = LogStore::open(dir.path()).expect("a torn tail is cut");
        assert_eq!(store.try_get_log_entries(0..).await.expect("read").len(), 3);
        assert_eq!(std::fs::read(&path).expect("read"), original);
        drop(store);
        // Damage in the first frame with two valid frames after it.
        let mut damaged = original.clone();
        damaged[frame::HEADER_LEN + 3] ^= 0x55;
        std::fs::write(&path, &damaged).expect("write");
        let err = LogStore::open(dir.path()).expect_err("committed entries are damaged");
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("valid entry after it"), "{err}");
        assert_eq!(std::fs::read(&path).expect("read"), damaged, "nothing was cut");
    }
}

/// openraft's storage conformance suite against the durable log store and the state machine.
#[cfg(test)]
mod suite {
    use openraft::testing::{StoreBuilder, Suite};

    use super::LogStore;
    use crate::state_machine::StateMachine;
    use crate::types::{C, StorageError};

    struct Builder;

    impl StoreBuilder<C, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().expect("tempdir");
            let log = LogStore::open(&dir.path().join("raft")).expect("log opens");
            let (sm, _) = StateMachine::open(&dir.path().join("raft")).expect("state machine opens");
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn openraft_storage_suite_passes() {
        Suite::test_all(Builder).expect("storage suite");
    }
}
