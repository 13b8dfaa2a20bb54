//! Decode/validate fuzz target: a bounded in-process mutation loop over Produce frames captured
//! from a real client (librdkafka, one per codec, `tests/data/produce-frames/`, made by
//! `tests/data/capture_produce_frames.py`), through the protocol decoder (`decode_request`) and
//! the storage validator (batch headers, `records::validate_records`, the record scanner, the
//! timestamp lookup and the materialising decoder). Nothing may panic, and every decompression
//! stays under its cap.
//!
//! CI runs a fixed number of cases (a few seconds). A longer run:
//! `FJORD_FUZZ_CASES=1000000 cargo test --release -p fjord-broker --test fuzz_records -- --nocapture`
//! (`FJORD_FUZZ_SEED` picks another deterministic sequence, `FJORD_FUZZ_DUMP=<file>` keeps the
//! last mutated frame for reproducing an abort).

use std::ops::ControlFlow;
use std::path::Path;

use bytes::Bytes;
use fjord_protocol::decode_request;
use fjord_protocol::kafka_protocol::messages::RequestKind;
use fjord_storage::batch::{BATCH_HEADER_LEN, BatchHeader, validate_produce_batches};
use fjord_storage::records::{
    AppendOrigin, RecordChecks, RecordIter, decompress_bounded, first_record_at_or_after, scan_records,
    validate_records,
};

/// The broker's allocator, so allocation behaviour (a huge up-front reservation for a lying
/// array length is only reserved, not touched) is the broker's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const DEFAULT_CASES: u64 = 10_000;
/// Decompression cap for the fuzzed batches: small, so bombs are cheap to refuse.
const LIMIT: usize = 1 << 20;

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

fn frames() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/produce-frames");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).expect("read frame"))
        })
        .collect();
    out.sort();
    assert_eq!(out.len(), 5, "one captured frame per codec in {}", dir.display());
    out
}

/// The records of every partition of a Produce frame (None if it does not decode as one).
fn produce_records(frame: &[u8]) -> Option<Vec<Bytes>> {
    let decoded = decode_request(Bytes::copy_from_slice(frame)).ok()?;
    let RequestKind::Produce(p) = decoded.body else {
        return None;
    };
    Some(
        p.topic_data
            .into_iter()
            .flat_map(|t| t.partition_data)
            .filter_map(|p| p.records)
            .collect(),
    )
}

fn checks(compacted: bool) -> RecordChecks {
    RecordChecks {
        origin: AppendOrigin::Client,
        max_decompressed_bytes: LIMIT,
        require_keys: compacted,
        create_time: true,
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: i64::MAX,
        now_ms: 1_700_000_000_000,
    }
}

/// Runs a records payload through everything that reads batches. Returns whether the payload
/// was accepted as produce input.
fn exercise(records: &[u8], compacted: bool) -> bool {
    let Ok(validated) = validate_produce_batches(records, 1 << 20) else {
        return false;
    };
    let mut accepted = true;
    for b in &validated.batches {
        let bytes = &records[b.range.clone()];
        let h = &b.header;
        if validate_records(h, bytes, &checks(compacted)).is_ok() {
            // An accepted batch holds exactly its declared records, at offset deltas 0..n.
            let mut deltas = Vec::new();
            let n = scan_records(h, bytes, LIMIT, |r| {
                deltas.push(r.offset_delta);
                Ok(ControlFlow::Continue(()))
            })
            .expect("an accepted batch scans");
            assert_eq!(n as i32, h.record_count);
            assert!(deltas.iter().enumerate().all(|(i, d)| *d == i as i32));
            let data = decompress_bounded(h.compression(), &bytes[BATCH_HEADER_LEN..], LIMIT)
                .expect("an accepted batch decompresses");
            assert!(data.len() <= LIMIT);
            let parsed = RecordIter::new(&data).collect::<Result<Vec<_>, _>>().expect("parses");
            assert_eq!(parsed.len() as i32, h.record_count);
        } else {
            accepted = false;
            // Readers of stored data must cope with whatever got past the headers.
            let _ = scan_records(h, bytes, LIMIT, |_| Ok(ControlFlow::Continue(())));
            if let Ok(data) = decompress_bounded(h.compression(), &bytes[BATCH_HEADER_LEN..], LIMIT) {
                assert!(data.len() <= LIMIT);
                for r in RecordIter::new(&data) {
                    if r.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = first_record_at_or_after(h, bytes, h.base_timestamp.saturating_add(3), 0, LIMIT);
    }
    accepted
}

fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    const INTERESTING: [i32; 8] = [0, 1, -1, 2, 0x7f, i32::MAX, i32::MIN, 0x7fff_fffe];
    for _ in 0..1 + rng.below(6) {
        if data.is_empty() {
            data.push(rng.next() as u8);
            continue;
        }
        let at = rng.below(data.len());
        match rng.below(8) {
            0 => data[at] ^= 1 << rng.below(8),
            1 => data[at] = rng.next() as u8,
            2 => {
                let v = INTERESTING[rng.below(INTERESTING.len())].to_be_bytes();
                let end = (at + 4).min(data.len());
                data[at..end].copy_from_slice(&v[..end - at]);
            }
            3 => data.truncate(at),
            4 => {
                let len = rng.below(16).min(data.len() - at);
                let chunk: Vec<u8> = data[at..at + len].to_vec();
                let to = rng.below(data.len());
                data.splice(to..to, chunk);
            }
            5 => {
                let len = rng.below(8).min(data.len() - at);
                data.drain(at..at + len);
            }
            6 => {
                let bytes: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            _ => data[at] = [0x00, 0xff, 0x80, 0x7f][rng.below(4)],
        }
    }
}

/// Makes a mutated batch pass the header checks again (length and CRC), so the mutation reaches
/// the record-level code.
fn fix_up(batch: &mut [u8]) {
    if batch.len() < BATCH_HEADER_LEN {
        return;
    }
    let len = (batch.len() - 12) as i32;
    batch[8..12].copy_from_slice(&len.to_be_bytes());
    batch[16] = 2;
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn fuzz_decode_validate() {
    let cases: u64 = std::env::var("FJORD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let seed: u64 = std::env::var("FJORD_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_f10d);
    // FJORD_FUZZ_DUMP=<file>: each mutated frame is written there before it is decoded, so
    // after an abort (an allocation failure cannot be caught) the file holds the culprit.
    let dump = std::env::var("FJORD_FUZZ_DUMP").ok();
    let frames = frames();
    // The captured frames are real produce input: every codec decodes and validates.
    let batches: Vec<(String, Vec<u8>)> = frames
        .iter()
        .map(|(name, frame)| {
            let records = produce_records(frame).unwrap_or_else(|| panic!("{name} is a Produce frame"));
            assert!(exercise(&records[0], true), "{name}: the captured batch must validate");
            assert!(BatchHeader::parse(&records[0]).is_ok());
            (name.clone(), records[0].to_vec())
        })
        .collect();
    let mut rng = Rng(seed | 1);
    let (mut decoded, mut accepted) = (0u64, 0u64);
    for case in 0..cases {
        if case % 3 == 0 {
            // The whole frame through the protocol decoder, then its records.
            let (_, frame) = &frames[rng.below(frames.len())];
            let mut f = frame.clone();
            mutate(&mut rng, &mut f);
            if let Some(path) = &dump {
                std::fs::write(path, &f).expect("dump the frame");
            }
            if let Some(records) = produce_records(&f) {
                decoded += 1;
                for r in records {
                    accepted += u64::from(exercise(&r, case % 2 == 0));
                }
            }
        } else {
            // The batch alone, length and CRC fixed up so records-level code sees the mutation.
            let (_, batch) = &batches[rng.below(batches.len())];
            let mut b = batch.clone();
            mutate(&mut rng, &mut b);
            if rng.below(4) != 0 {
                fix_up(&mut b);
            }
            accepted += u64::from(exercise(&b, case % 2 == 0));
        }
    }
    println!("fuzz: {cases} cases (seed {seed}), {decoded} mutated frames decoded, {accepted} payloads accepted");
}
