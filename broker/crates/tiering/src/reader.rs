//! Reading tiered segments: ranged GETs of fixed-size chunks into an on-disk cache with a size
//! cap and LRU eviction, checksum-verified per chunk, with the next chunk prefetched in the
//! background. Object footers and meta sections are kept in memory (small, bounded).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use fjord_storage::batch::BatchHeader;
use object_store::ObjectStoreExt;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::format::{self, FOOTER_LEN, Footer, Meta};
use crate::manifest::SegmentMeta;
use crate::store::{RemoteStore, TopicPartition};

/// Parsed object headers kept in memory.
const MAX_CACHED_METAS: usize = 4096;
/// Most recently used chunks also kept in memory, so consecutive fetches from one chunk do not
/// re-read it from the disk cache each time.
const HOT_CHUNKS: usize = 8;
/// Chunks downloaded ahead of a sequential reader.
const READ_AHEAD: u64 = 2;

/// Counters for /metrics.
#[derive(Debug, Default)]
pub struct ReadStats {
    /// Bytes fetched from the object store.
    pub remote_bytes: AtomicU64,
    /// GET requests for chunks.
    pub remote_gets: AtomicU64,
    /// Total microseconds spent in chunk GETs.
    pub remote_get_micros: AtomicU64,
    /// Chunk lookups served from the cache.
    pub cache_hits: AtomicU64,
    /// Chunk lookups that went to the store.
    pub cache_misses: AtomicU64,
    /// Bytes currently in the cache.
    pub cache_bytes: AtomicU64,
    /// Failed remote reads (missing or corrupt objects, store errors).
    pub read_errors: AtomicU64,
}

#[derive(Debug)]
struct ObjectInfo {
    footer: Footer,
    meta: Meta,
}

#[derive(Debug, Default)]
struct Lru {
    entries: HashMap<String, (u64, u64)>,
    tick: u64,
    total: u64,
}

/// Reads tiered data through the chunk cache.
#[derive(Debug)]
pub struct RemoteReader {
    store: RemoteStore,
    cache_dir: PathBuf,
    cache_max_bytes: u64,
    lru: Mutex<Lru>,
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    objects: Mutex<HashMap<String, Arc<ObjectInfo>>>,
    hot: Mutex<std::collections::VecDeque<(String, Bytes)>>,
    /// Counters.
    pub stats: Arc<ReadStats>,
}

/// What a timestamp lookup found: the first batch whose max timestamp reaches the target.
#[derive(Debug, Clone)]
pub struct TimestampHit {
    /// The whole batch, for record-level lookup by the caller.
    pub batch: Bytes,
    /// Its header.
    pub header: BatchHeader,
}

impl RemoteReader {
    /// A reader caching up to `cache_max_bytes` in `cache_dir` (emptied now: the cache does not
    /// survive restarts).
    pub fn new(store: RemoteStore, cache_dir: PathBuf, cache_max_bytes: u64) -> Result<Arc<RemoteReader>> {
        if cache_dir.exists() {
            std::fs::remove_dir_all(&cache_dir).map_err(Error::io("clear cache", cache_dir.display()))?;
        }
        std::fs::create_dir_all(&cache_dir).map_err(Error::io("create cache", cache_dir.display()))?;
        Ok(Arc::new(RemoteReader {
            store,
            cache_dir,
            cache_max_bytes,
            lru: Mutex::new(Lru::default()),
            inflight: Mutex::new(HashMap::new()),
            objects: Mutex::new(HashMap::new()),
            hot: Mutex::new(std::collections::VecDeque::with_capacity(HOT_CHUNKS)),
            stats: Arc::new(ReadStats::default()),
        }))
    }

    /// Reads whole batches of `seg` starting with the batch that contains `offset`, up to
    /// `max_bytes` (at least one batch if `min_one_batch`), never past the segment's end.
    pub async fn read(
        self: &Arc<Self>,
        tp: TopicPartition,
        seg: &SegmentMeta,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<Bytes> {
        let result = self.read_inner(tp, seg, offset, max_bytes, min_one_batch).await;
        if result.is_err() {
            self.stats.read_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn read_inner(
        self: &Arc<Self>,
        tp: TopicPartition,
        seg: &SegmentMeta,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<Bytes> {
        let info = self.object(tp, seg).await?;
        let start = match info.meta.index.partition_point(|e| e.offset <= offset) {
            0 => 0,
            i => info.meta.index[i - 1].position,
        };
        let mut cursor = ChunkCursor::new(self, tp, seg, &info);
        // Find the batch containing `offset`.
        let mut pos = start;
        loop {
            if pos >= info.footer.data_len {
                return Ok(Bytes::new());
            }
            let h = cursor.header_at(pos).await?;
            if h.last_offset() >= offset {
                break;
            }
            pos += h.total_len() as u64;
        }
        let first = pos;
        let mut end = pos;
        while end < info.footer.data_len {
            let h = cursor.header_at(end).await?;
            let next = end + h.total_len() as u64;
            if next - first > max_bytes as u64 && !(min_one_batch && end == first) {
                break;
            }
            end = next;
        }
        let bytes = cursor.range(first, end).await?;
        cursor.prefetch_after(end);
        Ok(bytes)
    }

    /// The first batch in `seg` at or after offset `from` whose max timestamp is >= `ts`.
    pub async fn find_timestamp(
        self: &Arc<Self>,
        tp: TopicPartition,
        seg: &SegmentMeta,
        ts: i64,
        from: i64,
    ) -> Result<Option<TimestampHit>> {
        let info = self.object(tp, seg).await?;
        let Some(entry) = info
            .meta
            .index
            .iter()
            .enumerate()
            .find(|(i, e)| e.max_timestamp >= ts && info.meta.index.get(i + 1).is_none_or(|n| n.offset > from))
            .map(|(_, e)| *e)
        else {
            return Ok(None);
        };
        let mut cursor = ChunkCursor::new(self, tp, seg, &info);
        let mut pos = entry.position;
        while pos < info.footer.data_len {
            let h = cursor.header_at(pos).await?;
            let next = pos + h.total_len() as u64;
            if h.max_timestamp >= ts && h.last_offset() >= from {
                let batch = cursor.range(pos, next).await?;
                return Ok(Some(TimestampHit { batch, header: h }));
            }
            pos = next;
        }
        Ok(None)
    }

    async fn object(&self, tp: TopicPartition, seg: &SegmentMeta) -> Result<Arc<ObjectInfo>> {
        if let Some(info) = self.objects.lock().get(&seg.name) {
            return Ok(Arc::clone(info));
        }
        let path = self.store.segment_path(&tp, &seg.name);
        if seg.object_bytes < FOOTER_LEN as u64 {
            return Err(Error::corrupt(&path, "object shorter than its footer"));
        }
        let tail = self
            .store
            .inner()
            .get_range(&path, seg.object_bytes - FOOTER_LEN as u64..seg.object_bytes)
            .await
            .map_err(Error::store("get footer", &path))?;
        let footer = Footer::decode(&tail).map_err(|r| Error::corrupt(&path, r))?;
        if footer.data_len != seg.data_bytes
            || footer.base_offset != seg.base_offset
            || footer.data_crc != seg.data_crc32c
            || footer.data_len + footer.meta_len + FOOTER_LEN as u64 != seg.object_bytes
        {
            return Err(Error::corrupt(&path, "footer does not match the manifest entry"));
        }
        let meta_bytes = self
            .store
            .inner()
            .get_range(&path, footer.data_len..footer.data_len + footer.meta_len)
            .await
            .map_err(Error::store("get meta", &path))?;
        if crc32c::crc32c(&meta_bytes) != footer.meta_crc {
            return Err(Error::corrupt(&path, "meta section checksum mismatch"));
        }
        let meta = Meta::decode(&meta_bytes).map_err(|r| Error::corrupt(&path, r))?;
        let chunks = footer.data_len.div_ceil(u64::from(footer.chunk_bytes));
        if meta.chunk_crcs.len() as u64 != chunks {
            return Err(Error::corrupt(&path, "chunk checksum table has the wrong length"));
        }
        let info = Arc::new(ObjectInfo { footer, meta });
        let mut objects = self.objects.lock();
        if objects.len() >= MAX_CACHED_METAS {
            objects.clear();
        }
        objects.insert(seg.name.clone(), Arc::clone(&info));
        Ok(info)
    }

    /// The producer-state snapshot stored with a segment (the log's snapshot at the segment's end
    /// offset; empty if it had none), checksum-verified.
    pub async fn producer_snapshot(&self, tp: TopicPartition, seg: &SegmentMeta) -> Result<bytes::Bytes> {
        Ok(self.object(tp, seg).await?.meta.producer_snapshot.clone())
    }

    /// Forgets a deleted object's cached header (its chunks age out of the LRU).
    pub fn forget(&self, name: &str) {
        self.objects.lock().remove(name);
        self.hot.lock().retain(|(k, _)| !k.starts_with(name));
    }

    fn hot_get(&self, key: &str) -> Option<Bytes> {
        let hot = self.hot.lock();
        hot.iter().find(|(k, _)| k == key).map(|(_, b)| b.clone())
    }

    fn hot_put(&self, key: &str, bytes: &Bytes) {
        let mut hot = self.hot.lock();
        hot.retain(|(k, _)| k != key);
        if hot.len() >= HOT_CHUNKS {
            hot.pop_front();
        }
        hot.push_back((key.to_string(), bytes.clone()));
    }

    /// Returns chunk `index` of an object, from the cache or with one ranged GET.
    async fn chunk(&self, tp: TopicPartition, seg: &SegmentMeta, info: &ObjectInfo, index: u64) -> Result<Bytes> {
        let key = format!("{}.{index}", seg.name);
        let file = self.cache_dir.join(&key);
        if let Some(bytes) = self.hot_get(&key) {
            self.touch(&key);
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(bytes);
        }
        if self.touch(&key)
            && let Ok(bytes) = tokio::fs::read(&file).await
        {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            let bytes = Bytes::from(bytes);
            self.hot_put(&key, &bytes);
            return Ok(bytes);
        }
        let lock = Arc::clone(self.inflight.lock().entry(key.clone()).or_default());
        let _guard = lock.lock().await;
        if self.touch(&key)
            && let Ok(bytes) = tokio::fs::read(&file).await
        {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            self.inflight.lock().remove(&key);
            return Ok(Bytes::from(bytes));
        }
        self.stats.cache_misses.fetch_add(1, Ordering::Relaxed);
        let result = self.download_chunk(tp, seg, info, index, &key, &file).await;
        self.inflight.lock().remove(&key);
        if let Ok(bytes) = &result {
            self.hot_put(&key, bytes);
        }
        result
    }

    async fn download_chunk(
        &self,
        tp: TopicPartition,
        seg: &SegmentMeta,
        info: &ObjectInfo,
        index: u64,
        key: &str,
        file: &std::path::Path,
    ) -> Result<Bytes> {
        let path = self.store.segment_path(&tp, &seg.name);
        let cs = u64::from(info.footer.chunk_bytes);
        let range = index * cs..((index + 1) * cs).min(info.footer.data_len);
        let t0 = Instant::now();
        let bytes = self
            .store
            .inner()
            .get_range(&path, range.clone())
            .await
            .map_err(Error::store("get chunk", &path))?;
        self.stats
            .remote_get_micros
            .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.stats.remote_gets.fetch_add(1, Ordering::Relaxed);
        self.stats.remote_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let expected = info.meta.chunk_crcs[index as usize];
        if bytes.len() as u64 != range.end - range.start || crc32c::crc32c(&bytes) != expected {
            return Err(Error::corrupt(
                &path,
                format!(
                    "chunk {index} (bytes {}..{}) fails its checksum",
                    range.start, range.end
                ),
            ));
        }
        if self.cache_max_bytes > 0 {
            let tmp = self.cache_dir.join(format!("{key}.tmp"));
            let written = match tokio::fs::write(&tmp, &bytes).await {
                Ok(()) => tokio::fs::rename(&tmp, file).await,
                Err(e) => Err(e),
            };
            match written {
                Ok(()) => self.insert(key.to_string(), bytes.len() as u64).await,
                Err(error) => tracing::warn!(file = %file.display(), %error, "cannot write read-cache chunk"),
            }
        }
        Ok(bytes)
    }

    /// Marks a cached chunk as used; false if it is not cached.
    fn touch(&self, key: &str) -> bool {
        let mut lru = self.lru.lock();
        lru.tick += 1;
        let tick = lru.tick;
        match lru.entries.get_mut(key) {
            Some(e) => {
                e.1 = tick;
                true
            }
            None => false,
        }
    }

    async fn insert(&self, key: String, size: u64) {
        let evicted = {
            let mut lru = self.lru.lock();
            lru.tick += 1;
            let tick = lru.tick;
            if let Some(old) = lru.entries.insert(key, (size, tick)) {
                lru.total -= old.0;
            }
            lru.total += size;
            let mut evicted = Vec::new();
            while lru.total > self.cache_max_bytes && lru.entries.len() > 1 {
                let Some(victim) = lru.entries.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone()) else {
                    break;
                };
                if let Some((s, _)) = lru.entries.remove(&victim) {
                    lru.total -= s;
                }
                evicted.push(victim);
            }
            self.stats.cache_bytes.store(lru.total, Ordering::Relaxed);
            evicted
        };
        for victim in evicted {
            let _ = tokio::fs::remove_file(self.cache_dir.join(victim)).await;
        }
    }
}

/// Reads byte ranges of one object's data through its chunks.
struct ChunkCursor<'a> {
    reader: &'a Arc<RemoteReader>,
    tp: TopicPartition,
    seg: &'a SegmentMeta,
    info: &'a Arc<ObjectInfo>,
    current: Option<(u64, Bytes)>,
}

impl<'a> ChunkCursor<'a> {
    fn new(
        reader: &'a Arc<RemoteReader>,
        tp: TopicPartition,
        seg: &'a SegmentMeta,
        info: &'a Arc<ObjectInfo>,
    ) -> ChunkCursor<'a> {
        ChunkCursor {
            reader,
            tp,
            seg,
            info,
            current: None,
        }
    }

    fn chunk_bytes(&self) -> u64 {
        u64::from(self.info.footer.chunk_bytes)
    }

    async fn load(&mut self, index: u64) -> Result<Bytes> {
        if let Some((i, b)) = &self.current
            && *i == index
        {
            return Ok(b.clone());
        }
        let b = self.reader.chunk(self.tp, self.seg, self.info, index).await?;
        self.current = Some((index, b.clone()));
        Ok(b)
    }

    /// Bytes [from, to) of the data section.
    async fn range(&mut self, from: u64, to: u64) -> Result<Bytes> {
        let cs = self.chunk_bytes();
        if to <= from {
            return Ok(Bytes::new());
        }
        let (a, b) = (from / cs, (to - 1) / cs);
        if a == b {
            let chunk = self.load(a).await?;
            return Ok(chunk.slice((from - a * cs) as usize..(to - a * cs) as usize));
        }
        // Later chunks download concurrently while the first is awaited.
        for i in a + 1..=b {
            self.prefetch(i);
        }
        let mut out = BytesMut::with_capacity((to - from) as usize);
        for i in a..=b {
            let chunk = self.load(i).await?;
            let lo = from.max(i * cs) - i * cs;
            let hi = to.min((i + 1) * cs) - i * cs;
            out.extend_from_slice(&chunk[lo as usize..hi as usize]);
        }
        Ok(out.freeze())
    }

    async fn header_at(&mut self, pos: u64) -> Result<BatchHeader> {
        let end = (pos + format::batches_header_len()).min(self.info.footer.data_len);
        let bytes = self.range(pos, end).await?;
        let path = self.reader.store.segment_path(&self.tp, &self.seg.name);
        let h = BatchHeader::parse(&bytes).map_err(|e| Error::corrupt(&path, format!("batch at {pos}: {e}")))?;
        if pos + h.total_len() as u64 > self.info.footer.data_len {
            return Err(Error::corrupt(&path, format!("batch at {pos} runs past the data")));
        }
        Ok(h)
    }

    /// Starts downloading the READ_AHEAD chunks after `pos` in the background (those not cached).
    fn prefetch_after(&self, pos: u64) {
        let next = pos.div_ceil(self.chunk_bytes());
        for i in next..next + READ_AHEAD {
            self.prefetch(i);
        }
    }

    fn prefetch(&self, next: u64) {
        if next * self.chunk_bytes() >= self.info.footer.data_len {
            return;
        }
        let key = format!("{}.{next}", self.seg.name);
        if self.reader.lru.lock().entries.contains_key(&key) || self.reader.inflight.lock().contains_key(&key) {
            return;
        }
        let reader = Arc::clone(self.reader);
        let (tp, seg, info) = (self.tp, self.seg.clone(), Arc::clone(self.info));
        tokio::spawn(async move {
            if let Err(error) = reader.chunk(tp, &seg, &info, next).await {
                tracing::debug!(%error, "read-ahead chunk failed");
            }
        });
    }
}
