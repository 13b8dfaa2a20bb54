//! Round trips against the in-memory and local-filesystem stores.

use std::io::Write;
use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::format::tests::batch;
use crate::*;

struct Fixture {
    _dir: tempfile::TempDir,
    store: RemoteStore,
    reader: Arc<RemoteReader>,
    tp: TopicPartition,
    data: Vec<u8>,
    src: SegmentSource,
}

/// 40 batches of 3 records, 10 KiB each, offsets 1000.., timestamps 5000 + i.
fn fixture(url: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = match url {
        Some(u) => RemoteStore::open(&StoreConfig {
            url: u.replace("{dir}", &dir.path().join("bucket").display().to_string()),
            ..StoreConfig::default()
        })
        .expect("store"),
        None => RemoteStore::open(&StoreConfig {
            url: "memory://".into(),
            ..StoreConfig::default()
        })
        .expect("store"),
    };
    let mut data = Vec::new();
    for i in 0..40 {
        data.extend(batch(1000 + 3 * i, 3, (i / 10) as i32, 5000 + i, 10 * 1024));
    }
    let path = dir.path().join("00000000000000001000.log");
    std::fs::File::create(&path)
        .expect("create")
        .write_all(&data)
        .expect("write");
    let file = Arc::new(std::fs::File::open(&path).expect("open"));
    let src = SegmentSource {
        base_offset: 1000,
        next_offset: 1120,
        size: data.len() as u64,
        file,
        path: path.display().to_string(),
        producer_snapshot: bytes::Bytes::from_static(b"producer-state"),
    };
    let reader = RemoteReader::new(store.clone(), dir.path().join("cache"), 64 * 1024).expect("reader");
    Fixture {
        _dir: dir,
        store,
        reader,
        tp: TopicPartition {
            topic_id: uuid::Uuid::new_v4(),
            partition: 3,
        },
        data,
        src,
    }
}

async fn upload_and_commit(f: &Fixture) -> VersionedManifest {
    let limiter = RateLimiter::new(0);
    let seg = f
        .store
        .upload_segment(f.tp, &f.src, 3, 16 * 1024, &limiter)
        .await
        .expect("upload");
    let mut current = f.store.load_manifest(f.tp).await.expect("load");
    assert!(current.version.is_none());
    let mut next = current.manifest.clone();
    next.leader_epoch = 3;
    next.segments.push(seg);
    f.store.commit_manifest(&mut current, next).await.expect("commit");
    current
}

async fn round_trip(f: Fixture) {
    let committed = upload_and_commit(&f).await;
    let loaded = f.store.load_manifest(f.tp).await.expect("load");
    assert_eq!(loaded.manifest, committed.manifest);
    let seg = &loaded.manifest.segments[0];
    assert_eq!((seg.base_offset, seg.last_offset, seg.next_offset), (1000, 1119, 1120));
    assert_eq!(seg.epochs, vec![(0, 1000), (1, 1030), (2, 1060), (3, 1090)]);
    assert_eq!(loaded.manifest.segment_for(1119).map(|s| s.base_offset), Some(1000));
    assert!(loaded.manifest.segment_for(1120).is_none());

    // The producer-state snapshot travels with the segment.
    let snapshot = f.reader.producer_snapshot(f.tp, seg).await.expect("snapshot");
    assert_eq!(&snapshot[..], b"producer-state");
    // From the start, everything: byte-identical to the local segment.
    let all = f.reader.read(f.tp, seg, 1000, usize::MAX, true).await.expect("read");
    assert_eq!(&all[..], &f.data[..]);
    // Mid-batch offset: starts at the batch holding it; max_bytes cuts at whole batches.
    let batch_len = f.data.len() / 40;
    let part = f
        .reader
        .read(f.tp, seg, 1064, 2 * batch_len + 10, false)
        .await
        .expect("read");
    assert_eq!(&part[..], &f.data[21 * batch_len..23 * batch_len]);
    // min_one_batch returns one oversized batch; without it nothing.
    let one = f.reader.read(f.tp, seg, 1000, 10, true).await.expect("read");
    assert_eq!(one.len(), batch_len);
    assert!(
        f.reader
            .read(f.tp, seg, 1000, 10, false)
            .await
            .expect("read")
            .is_empty()
    );
    // Timestamps through the remote index.
    let hit = f
        .reader
        .find_timestamp(f.tp, seg, 5017, 0)
        .await
        .expect("ts")
        .expect("found");
    assert_eq!(hit.header.base_offset, 1000 + 3 * 17);
    assert!(f.reader.find_timestamp(f.tp, seg, 9999, 0).await.expect("ts").is_none());
    // The cache is bounded (64 KiB) and was used.
    let stats = &f.reader.stats;
    assert!(stats.cache_bytes.load(std::sync::atomic::Ordering::Relaxed) <= 64 * 1024 + 16 * 1024);
    assert!(stats.cache_misses.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn segment_round_trip_memory() {
    round_trip(fixture(None)).await;
}

#[tokio::test]
async fn segment_round_trip_file() {
    round_trip(fixture(Some("file://{dir}"))).await;
}

#[tokio::test]
async fn stale_or_racing_manifest_writes_are_refused() {
    let f = fixture(None);
    let mut mine = upload_and_commit(&f).await;
    let mut theirs = f.store.load_manifest(f.tp).await.expect("load");
    let mut next = theirs.manifest.clone();
    next.log_start_offset = 5;
    f.store.commit_manifest(&mut theirs, next).await.expect("commit");
    // `mine` holds the old ETag now.
    let stale = mine.manifest.clone();
    let err = f.store.commit_manifest(&mut mine, stale).await.expect_err("conflict");
    assert!(matches!(err, Error::ManifestConflict { .. }), "{err}");
    // A lower leader epoch is fenced.
    let mut fresh = f.store.load_manifest(f.tp).await.expect("load");
    let mut older = fresh.manifest.clone();
    older.leader_epoch = 1;
    let err = f.store.commit_manifest(&mut fresh, older).await.expect_err("fenced");
    assert!(matches!(err, Error::Fenced { owner: 3, ours: 1, .. }), "{err}");
}

#[tokio::test]
async fn corrupt_or_missing_objects_are_errors_not_panics() {
    let f = fixture(None);
    let m = upload_and_commit(&f).await;
    let seg = m.manifest.segments[0].clone();
    let path = f.store.segment_path(&f.tp, &seg.name);
    let mut bytes = f
        .store
        .inner()
        .get(&path)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes")
        .to_vec();
    bytes[20_000] ^= 0xff;
    f.store.inner().put(&path, PutPayload::from(bytes)).await.expect("put");
    // Chunk 0 is fine, chunk 1 (16..32 KiB) is corrupt.
    let ok = f.reader.read(f.tp, &seg, 1000, 100, true).await;
    assert!(ok.is_ok());
    let err = f
        .reader
        .read(f.tp, &seg, 1000, usize::MAX, true)
        .await
        .expect_err("corrupt");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    f.store.inner().delete(&path).await.expect("delete");
    let reader = RemoteReader::new(f.store.clone(), f._dir.path().join("cache2"), 1 << 20).expect("reader");
    let err = reader.read(f.tp, &seg, 1000, 100, true).await.expect_err("missing");
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn orphans_are_collected_and_retention_runs_in_two_phases() {
    let f = fixture(None);
    let mut m = upload_and_commit(&f).await;
    // An upload that never got committed (crash between PUT and manifest write).
    let orphan = f
        .store
        .upload_segment(f.tp, &f.src, 3, 16 * 1024, &RateLimiter::new(0))
        .await
        .expect("upload");
    let junk = f.store.segments_prefix(&f.tp).join("not-ours.seg");
    f.store
        .inner()
        .put(&junk, PutPayload::from(vec![1u8]))
        .await
        .expect("put");
    assert_eq!(f.store.collect_orphans(&m.manifest).await.expect("gc"), 2);
    let listed = list(&f.store, &f.store.segments_prefix(&f.tp)).await;
    assert_eq!(listed, vec![m.manifest.segments[0].name.clone()]);
    assert_ne!(orphan.name, m.manifest.segments[0].name);

    // Size retention counts local data above the remote end too; like Kafka, a segment goes
    // only if what remains still reaches the limit.
    assert_eq!(retention::plan(&m.manifest, 0, None, Some(1), 0), 0);
    let k = retention::plan(&m.manifest, 0, None, Some(1), 1_000_000);
    assert_eq!(k, 1);
    assert_eq!(retention::plan(&m.manifest, 0, None, Some(u64::MAX >> 1), 0), 0);
    assert_eq!(retention::plan(&m.manifest, 5039 + 100, Some(10), None, 0), 1);
    let one = retention::phase_one(&m.manifest, k);
    assert_eq!(one.log_start_offset, 1120);
    assert!(one.segments.is_empty());
    f.store.commit_manifest(&mut m, one).await.expect("phase one");
    // GC keeps objects listed as deleting.
    assert_eq!(f.store.collect_orphans(&m.manifest).await.expect("gc"), 0);
    let deleting = m.manifest.deleting.clone();
    f.store.delete_segments(f.tp, &deleting).await.expect("delete");
    f.store.delete_segments(f.tp, &deleting).await.expect("idempotent");
    let mut two = m.manifest.clone();
    two.deleting.clear();
    f.store.commit_manifest(&mut m, two).await.expect("phase two");
    assert!(list(&f.store, &f.store.segments_prefix(&f.tp)).await.is_empty());
}

async fn list(store: &RemoteStore, prefix: &Path) -> Vec<String> {
    use futures_util::StreamExt;
    let mut out: Vec<String> = store
        .inner()
        .list(Some(prefix))
        .map(|m| m.expect("list").location.filename().expect("name").to_string())
        .collect()
        .await;
    out.sort();
    out
}
