//! One partition hosted by this broker: its log behind a mutex, leadership state, and the
//! fetch waiters to wake when the high watermark moves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use fjord_metadata::TopicId;
use fjord_storage::batch::BatchHeader;
use fjord_storage::{ControlType, LeaderEpoch, Log, Offset};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::tiering::RemoteLog;

/// A partition led by this broker (single node: every partition).
#[derive(Debug)]
pub struct Partition {
    pub topic: String,
    pub topic_id: TopicId,
    pub index: i32,
    pub log: Mutex<Log>,
    leader_epoch: Mutex<LeaderEpoch>,
    /// Flush policy of the topic: fsync after this many messages / this many ms.
    pub flush_messages: Mutex<Option<u64>>,
    pub flush_ms: Mutex<Option<u64>>,
    /// Set while the partition sits in the flusher's dirty list.
    pub(crate) dirty: AtomicBool,
    waiters: Mutex<Vec<Weak<Notify>>>,
    /// Tiered-storage state; Some while the topic has remote.storage.enable=true.
    remote: parking_lot::RwLock<Option<Arc<RemoteLog>>>,
}

impl Partition {
    pub fn new(topic: String, topic_id: TopicId, index: i32, log: Log, leader_epoch: LeaderEpoch) -> Partition {
        Partition {
            topic,
            topic_id,
            index,
            log: Mutex::new(log),
            leader_epoch: Mutex::new(leader_epoch),
            flush_messages: Mutex::new(None),
            flush_ms: Mutex::new(None),
            dirty: AtomicBool::new(false),
            waiters: Mutex::new(Vec::new()),
            remote: parking_lot::RwLock::new(None),
        }
    }

    /// The partition's tiered-storage state, if the topic is tiered.
    pub fn remote(&self) -> Option<Arc<RemoteLog>> {
        self.remote.read().clone()
    }

    pub(crate) fn set_remote(&self, remote: Option<Arc<RemoteLog>>) {
        *self.remote.write() = remote;
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        *self.leader_epoch.lock()
    }

    /// (log start offset, high watermark, log end offset) read together.
    pub fn offsets(&self) -> (Offset, Offset, Offset) {
        let log = self.log.lock();
        (log.log_start_offset(), log.high_watermark(), log.log_end_offset())
    }

    /// Registers a fetch waiter; it is woken once, on the next high-watermark move.
    pub fn register_waiter(&self, waiter: &Arc<Notify>) {
        let mut waiters = self.waiters.lock();
        if waiters.len() >= 64 {
            waiters.retain(|w| w.strong_count() > 0);
        }
        waiters.push(Arc::downgrade(waiter));
    }

    /// Wakes every registered fetch waiter.
    pub fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiters.lock());
        for waiter in waiters.iter().filter_map(Weak::upgrade) {
            waiter.notify_one();
        }
    }

    /// True if the partition was clean and is now marked dirty (the caller enqueues it once).
    pub(crate) fn mark_dirty(&self) -> bool {
        !self.dirty.swap(true, Ordering::AcqRel)
    }
}

/// One item of [`scan_records`].
pub enum ScannedRecord<'a> {
    /// A data record and the header of its batch.
    Data {
        header: &'a BatchHeader,
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
    },
    /// A transaction marker (a control batch with a producer id).
    Marker {
        header: &'a BatchHeader,
        control: ControlType,
    },
}

/// Reads every record of a partition from its log start to its high watermark, in offset order
/// (the coordinators' replay of their internal topics).
pub fn scan_records(partition: &Partition, mut visit: impl FnMut(ScannedRecord<'_>)) -> Result<(), String> {
    let (start, hw, _) = partition.offsets();
    // Stored batches decompress within the same cap as everywhere else.
    let limit = partition.log.lock().config().max_decompressed_read_bytes();
    let mut offset = start;
    while offset < hw {
        let plan = partition
            .log
            .lock()
            .read(offset, hw, 8 << 20, true)
            .map_err(|e| e.to_string())?;
        if plan.is_empty() {
            break;
        }
        let bytes = plan.read_bytes().map_err(|e| e.to_string())?;
        let mut next = offset;
        for batch in fjord_storage::batch::scan_batches(&bytes) {
            let batch = batch.map_err(|e| e.to_string())?;
            let h = batch.header;
            next = Offset(h.next_offset());
            if h.is_control() {
                if h.producer_id >= 0
                    && h.base_offset >= offset.0
                    && let Some(control) = fjord_storage::control_type_of(batch.bytes)
                {
                    visit(ScannedRecord::Marker { header: &h, control });
                }
                continue;
            }
            let body = &batch.bytes[fjord_storage::batch::BATCH_HEADER_LEN..];
            let data = fjord_storage::records::decompress_bounded(h.compression(), body, limit)
                .map_err(|e| format!("batch at offset {}: {e}", h.base_offset))?;
            for record in fjord_storage::records::RecordIter::new(&data) {
                let record = record.map_err(|e| format!("batch at offset {}: {e}", h.base_offset))?;
                if h.base_offset + i64::from(record.meta.offset_delta) < offset.0 {
                    continue;
                }
                visit(ScannedRecord::Data {
                    header: &h,
                    key: record.key,
                    value: record.value,
                });
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(())
}
