//! The on-disk framing shared by the Raft log and the snapshot file: `u32 length | u32 crc32c |
//! body` (big endian), as the local metadata log (`fjord_metadata::MetadataLog`), plus the
//! durable small-file write (tmp + fsync + rename + directory fsync).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

pub(crate) const HEADER_LEN: usize = 8;
/// Bound on one frame so a corrupt length can never make a scan allocate gigabytes.
pub(crate) const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

/// Appends one frame holding `body` to `out`.
pub(crate) fn encode(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
    out.extend_from_slice(body);
}

/// The body of the intact frame starting at `pos` and the position after it, or `None` if no
/// intact frame starts there. `plausible` rejects cheaply before the CRC (a JSON body starts
/// with `{`), which keeps the scan for a valid frame after a damaged one linear in practice.
pub(crate) fn frame_at(bytes: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let header = bytes.get(pos..pos.checked_add(HEADER_LEN)?)?;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_FRAME_BYTES {
        return None;
    }
    let start = pos + HEADER_LEN;
    let body = bytes.get(start..start.checked_add(len)?)?;
    if !body.starts_with(b"{") || crc32c::crc32c(body) != crc {
        return None;
    }
    Some((body, start + len))
}

/// Writes `bytes` to `path` durably and atomically: a temporary file is written and fsynced,
/// renamed over `path`, and the directory is fsynced so the rename survives a crash.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// Fsyncs the directory holding `path` (makes a create, rename or delete in it durable).
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    File::open(dir)?.sync_all()
}
