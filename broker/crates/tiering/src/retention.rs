//! Total (local + remote) retention over the remote part of a partition: which committed
//! segments to drop, oldest first. Deletion then runs in two phases: the manifest moves them to
//! `deleting` and advances the remote log start (phase one), the objects are deleted
//! idempotently, and a second manifest write forgets them (phase two).

use crate::manifest::Manifest;

/// How many of the oldest committed segments total retention removes. `local_bytes_above` is
/// the size of local data above the remote end (it counts towards `retention_bytes`).
pub fn plan(
    manifest: &Manifest,
    now_ms: i64,
    retention_ms: Option<i64>,
    retention_bytes: Option<u64>,
    local_bytes_above: u64,
) -> usize {
    let total = manifest.data_bytes() + local_bytes_above;
    let mut excess = retention_bytes.map(|limit| i128::from(total) - i128::from(limit));
    let mut k = 0;
    for seg in &manifest.segments {
        let by_time = retention_ms.is_some_and(|r| seg.max_timestamp >= 0 && now_ms - seg.max_timestamp > r);
        let by_size = excess.is_some_and(|d| d - i128::from(seg.data_bytes) >= 0);
        let by_start = seg.next_offset <= manifest.log_start_offset;
        if !(by_time || by_size || by_start) {
            break;
        }
        if let Some(d) = excess.as_mut() {
            *d -= i128::from(seg.data_bytes);
        }
        k += 1;
    }
    k
}

/// Phase one: the manifest without its `k` oldest segments, which move to `deleting`, and with
/// the remote log start advanced past them.
pub fn phase_one(manifest: &Manifest, k: usize) -> Manifest {
    let mut next = manifest.clone();
    let doomed: Vec<_> = next.segments.drain(..k.min(next.segments.len())).collect();
    if let Some(last) = doomed.last() {
        next.log_start_offset = next.log_start_offset.max(last.next_offset);
    }
    next.deleting.extend(doomed);
    next
}
