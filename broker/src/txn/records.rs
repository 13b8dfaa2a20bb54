//! Kafka's `__transaction_state` record formats (TransactionLogKey v0 and TransactionLogValue v0,
//! as written by Kafka's TransactionLog) and the record batches the coordinator writes: its own
//! state records and the commit/abort markers (control batches: key = version i16 0, type i16
//! 0 abort / 1 commit; value = version i16 0, coordinator epoch i32).

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fjord_protocol::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::{TxnMetadata, TxnState};

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

/// Kafka's TransactionLogKey: version i16, transactional id (string).
pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + transactional_id.len());
    buf.put_i16(KEY_VERSION);
    buf.put_i16(transactional_id.len() as i16);
    buf.put_slice(transactional_id.as_bytes());
    buf.freeze()
}

/// The transactional id of a TransactionLogKey (None for a key of another version).
pub fn decode_key(mut buf: &[u8]) -> Option<String> {
    if buf.len() < 4 || buf.get_i16() != KEY_VERSION {
        return None;
    }
    let len = buf.get_i16();
    if len < 0 || buf.len() < len as usize {
        return None;
    }
    String::from_utf8(buf[..len as usize].to_vec()).ok()
}

/// Kafka's TransactionLogValue v0: producer id i64, producer epoch i16, timeout i32, state i8,
/// partitions [topic string, [partition i32]], last update i64, start i64.
pub fn encode_value(m: &TxnMetadata) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(VALUE_VERSION);
    buf.put_i64(m.producer_id);
    buf.put_i16(m.producer_epoch);
    buf.put_i32(m.timeout_ms);
    buf.put_i8(m.state as i8);
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in &m.partitions {
        match topics.last_mut() {
            Some((t, ps)) if *t == topic.as_str() => ps.push(*partition),
            _ => topics.push((topic.as_str(), vec![*partition])),
        }
    }
    buf.put_i32(topics.len() as i32);
    for (topic, partitions) in topics {
        buf.put_i16(topic.len() as i16);
        buf.put_slice(topic.as_bytes());
        buf.put_i32(partitions.len() as i32);
        for p in partitions {
            buf.put_i32(p);
        }
    }
    buf.put_i64(m.last_update_ms);
    buf.put_i64(m.start_ms);
    buf.freeze()
}

/// Decodes a TransactionLogValue (v0, or v1 whose extra fields are tagged and ignored).
pub fn decode_value(mut buf: &[u8]) -> Result<TxnMetadata, String> {
    let short = || "transaction state value is truncated".to_string();
    let need = |buf: &[u8], n: usize| if buf.len() < n { Err(short()) } else { Ok(()) };
    need(buf, 2)?;
    let version = buf.get_i16();
    if version != 0 {
        return Err(format!("unsupported transaction state value version {version}"));
    }
    need(buf, 8 + 2 + 4 + 1 + 4)?;
    let producer_id = buf.get_i64();
    let producer_epoch = buf.get_i16();
    let timeout_ms = buf.get_i32();
    let state = TxnState::from_i8(buf.get_i8()).ok_or("unknown transaction state")?;
    let topics = buf.get_i32();
    let mut partitions = BTreeSet::new();
    for _ in 0..topics.max(0) {
        need(buf, 2)?;
        let len = buf.get_i16().max(0) as usize;
        need(buf, len + 4)?;
        let topic = String::from_utf8(buf[..len].to_vec()).map_err(|e| e.to_string())?;
        buf.advance(len);
        let n = buf.get_i32().max(0) as usize;
        need(buf, n * 4)?;
        for _ in 0..n {
            partitions.insert((topic.clone(), buf.get_i32()));
        }
    }
    need(buf, 16)?;
    let last_update_ms = buf.get_i64();
    let start_ms = buf.get_i64();
    Ok(TxnMetadata {
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        start_ms,
        last_update_ms,
        pending: false,
    })
}

/// One uncompressed batch of plain records (key, value), without a producer.
pub fn encode_batch(records: &[(Bytes, Option<Bytes>)], now_ms: i64) -> Result<Bytes, String> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: now_ms,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    encode(&records)
}

/// A transaction marker of `producer_id`/`epoch`: one control record in a transactional
/// control batch, as Kafka's `EndTransactionMarker`.
pub fn encode_marker(
    producer_id: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    now_ms: i64,
) -> Result<Bytes, String> {
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(i16::from(commit));
    let mut value = BytesMut::with_capacity(6);
    value.put_i16(0);
    value.put_i32(coordinator_epoch);
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch: epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
    };
    encode(&[record])
}

/// Records in one transactional batch of `producer_id`/`epoch` without sequence numbers (the
/// group coordinator's transactional offset commits, as Kafka writes them).
pub fn encode_transactional(
    producer_id: i64,
    epoch: i16,
    records: &[(Bytes, Option<Bytes>)],
    now_ms: i64,
) -> Result<Bytes, String> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: now_ms,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    encode(&records)
}

fn encode(records: &[Record]) -> Result<Bytes, String> {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_value_round_trip() {
        let key = encode_key("my-txn");
        assert_eq!(&key[..], &[0, 0, 0, 6, b'm', b'y', b'-', b't', b'x', b'n']);
        assert_eq!(decode_key(&key).as_deref(), Some("my-txn"));
        let m = TxnMetadata {
            producer_id: 1000,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: [("a".to_string(), 0), ("a".to_string(), 2), ("b".to_string(), 1)]
                .into_iter()
                .collect(),
            start_ms: 5,
            last_update_ms: 9,
            pending: false,
        };
        let value = encode_value(&m);
        assert_eq!(decode_value(&value).expect("decodes"), m);
        assert!(decode_value(&value[..value.len() - 1]).is_err());
    }

    #[test]
    fn markers_are_control_batches_the_storage_layer_recognises() {
        let batch = encode_marker(7, 2, true, 0, 1).expect("encodes");
        let h = fjord_storage::batch::BatchHeader::parse(&batch).expect("header");
        assert!(h.is_control() && h.is_transactional());
        assert_eq!((h.producer_id, h.producer_epoch), (7, 2));
        assert_eq!(
            fjord_storage::control_type_of(&batch),
            Some(fjord_storage::ControlType::Commit)
        );
        let abort = encode_marker(7, 2, false, 0, 1).expect("encodes");
        assert_eq!(
            fjord_storage::control_type_of(&abort),
            Some(fjord_storage::ControlType::Abort)
        );
    }
}
