//! The key and value formats of records in `__consumer_offsets`, byte-compatible with Kafka's own
//! (`OffsetCommitKey` v1, `OffsetCommitValue` v3, `GroupMetadataKey` v2, `GroupMetadataValue` v3,
//! and for KIP-848 groups `ConsumerGroupMetadata` (3), `ConsumerGroupMemberMetadata` (5) and
//! `ConsumerGroupCurrentMemberAssignment` (8), whose values are flexible-version encodings), so
//! Kafka's tooling can read the topic and a tombstone (null value) deletes a key.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A record key in `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordKey {
    /// A committed offset of one partition for one group.
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    /// A classic group's membership and assignment.
    Group { group: String },
    /// A KIP-848 consumer group's epoch.
    ConsumerGroup { group: String },
    /// A KIP-848 member's metadata (subscription, client, timeouts).
    ConsumerMember { group: String, member: String },
    /// A KIP-848 member's epochs and current assignment.
    ConsumerAssignment { group: String, member: String },
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// One member of a classic group as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A classic group's state as stored after each completed rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

/// A KIP-848 group's epoch as stored (`ConsumerGroupMetadataValue` v0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupValue {
    pub epoch: i32,
}

/// A KIP-848 member's metadata as stored (`ConsumerGroupMemberMetadataValue` v0).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerMemberValue {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
    /// Set for a member that speaks the classic protocol in a consumer group (tagged field 0,
    /// `ClassicMemberMetadata`).
    pub classic: Option<ClassicMemberMetadata>,
}

/// A classic member's session timeout and JoinGroup protocols, kept in a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClassicMemberMetadata {
    pub session_timeout_ms: i32,
    /// (protocol name, subscription metadata) as the member sent them.
    pub protocols: Vec<(String, Bytes)>,
}

/// Partitions of one topic, by topic id.
pub type TopicIdPartitions = (uuid::Uuid, Vec<i32>);

/// A KIP-848 member's epochs and assignment as stored (`ConsumerGroupCurrentMemberAssignmentValue`
/// v0). `state` uses Kafka's `MemberState` values (0 stable, 1 unrevoked, 2 unreleased partitions).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerAssignmentValue {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: i8,
    pub assigned_partitions: Vec<TopicIdPartitions>,
    pub partitions_pending_revocation: Vec<TopicIdPartitions>,
}

/// Why a stored record could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record is truncated")]
    Truncated,
    #[error("unknown key version {0}")]
    UnknownKeyVersion(i16),
    #[error("unknown value version {0} for {1}")]
    UnknownValueVersion(i16, &'static str),
    #[error("string is not utf-8")]
    NotUtf8,
    #[error("varint is too long")]
    BadVarint,
}

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;
const CONSUMER_GROUP_KEY_VERSION: i16 = 3;
const CONSUMER_MEMBER_KEY_VERSION: i16 = 5;
const CONSUMER_ASSIGNMENT_KEY_VERSION: i16 = 8;
/// The one (flexible) value version of every KIP-848 record.
const CONSUMER_VALUE_VERSION: i16 = 0;

impl RecordKey {
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. }
            | RecordKey::Group { group }
            | RecordKey::ConsumerGroup { group }
            | RecordKey::ConsumerMember { group, .. }
            | RecordKey::ConsumerAssignment { group, .. } => group,
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => {
                buf.put_i16(OFFSET_KEY_VERSION);
                put_str(&mut buf, group);
                put_str(&mut buf, topic);
                buf.put_i32(*partition);
            }
            RecordKey::Group { group } => {
                buf.put_i16(GROUP_KEY_VERSION);
                put_str(&mut buf, group);
            }
            RecordKey::ConsumerGroup { group } => {
                buf.put_i16(CONSUMER_GROUP_KEY_VERSION);
                put_str(&mut buf, group);
            }
            RecordKey::ConsumerMember { group, member } => {
                buf.put_i16(CONSUMER_MEMBER_KEY_VERSION);
                put_str(&mut buf, group);
                put_str(&mut buf, member);
            }
            RecordKey::ConsumerAssignment { group, member } => {
                buf.put_i16(CONSUMER_ASSIGNMENT_KEY_VERSION);
                put_str(&mut buf, group);
                put_str(&mut buf, member);
            }
        }
        buf.freeze()
    }

    /// Decodes a key; `Ok(None)` for key versions Kafka uses for records this broker does not
    /// write (KIP-848 target assignments and partition metadata, which are recomputed on load;
    /// share and streams groups).
    pub fn decode(mut buf: &[u8]) -> Result<Option<RecordKey>, RecordError> {
        let version = get_i16(&mut buf)?;
        match version {
            0 | 1 => Ok(Some(RecordKey::Offset {
                group: get_str(&mut buf)?,
                topic: get_str(&mut buf)?,
                partition: get_i32(&mut buf)?,
            })),
            2 => Ok(Some(RecordKey::Group {
                group: get_str(&mut buf)?,
            })),
            CONSUMER_GROUP_KEY_VERSION => Ok(Some(RecordKey::ConsumerGroup {
                group: get_str(&mut buf)?,
            })),
            CONSUMER_MEMBER_KEY_VERSION => Ok(Some(RecordKey::ConsumerMember {
                group: get_str(&mut buf)?,
                member: get_str(&mut buf)?,
            })),
            CONSUMER_ASSIGNMENT_KEY_VERSION => Ok(Some(RecordKey::ConsumerAssignment {
                group: get_str(&mut buf)?,
                member: get_str(&mut buf)?,
            })),
            v if (4..=32).contains(&v) => Ok(None),
            v => Err(RecordError::UnknownKeyVersion(v)),
        }
    }
}

impl OffsetValue {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(OFFSET_VALUE_VERSION);
        buf.put_i64(self.offset);
        buf.put_i32(self.leader_epoch);
        put_str(&mut buf, &self.metadata);
        buf.put_i64(self.commit_timestamp_ms);
        buf.freeze()
    }

    pub fn decode(mut buf: &[u8]) -> Result<OffsetValue, RecordError> {
        let version = get_i16(&mut buf)?;
        let offset = get_i64(&mut buf)?;
        let leader_epoch = if version >= 3 { get_i32(&mut buf)? } else { -1 };
        let metadata = get_str(&mut buf)?;
        let commit_timestamp_ms = get_i64(&mut buf)?;
        match version {
            0..=3 => Ok(OffsetValue {
                offset,
                leader_epoch,
                metadata,
                commit_timestamp_ms,
            }),
            v => Err(RecordError::UnknownValueVersion(v, "offset commit")),
        }
    }
}

impl GroupValue {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(GROUP_VALUE_VERSION);
        put_str(&mut buf, &self.protocol_type);
        buf.put_i32(self.generation);
        put_nullable_str(&mut buf, self.protocol.as_deref());
        put_nullable_str(&mut buf, self.leader.as_deref());
        buf.put_i64(self.state_timestamp_ms);
        buf.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_str(&mut buf, &m.member_id);
            put_nullable_str(&mut buf, m.group_instance_id.as_deref());
            put_str(&mut buf, &m.client_id);
            put_str(&mut buf, &m.client_host);
            buf.put_i32(m.rebalance_timeout_ms);
            buf.put_i32(m.session_timeout_ms);
            put_bytes(&mut buf, &m.subscription);
            put_bytes(&mut buf, &m.assignment);
        }
        buf.freeze()
    }

    pub fn decode(mut buf: &[u8]) -> Result<GroupValue, RecordError> {
        let version = get_i16(&mut buf)?;
        if !(0..=3).contains(&version) {
            return Err(RecordError::UnknownValueVersion(version, "group metadata"));
        }
        let protocol_type = get_str(&mut buf)?;
        let generation = get_i32(&mut buf)?;
        let protocol = get_nullable_str(&mut buf)?;
        let leader = get_nullable_str(&mut buf)?;
        let state_timestamp_ms = if version >= 2 { get_i64(&mut buf)? } else { -1 };
        let count = get_i32(&mut buf)?.max(0);
        let mut members = Vec::new();
        for _ in 0..count {
            let member_id = get_str(&mut buf)?;
            let group_instance_id = if version >= 3 {
                get_nullable_str(&mut buf)?
            } else {
                None
            };
            let client_id = get_str(&mut buf)?;
            let client_host = get_str(&mut buf)?;
            let rebalance_timeout_ms = if version >= 1 { get_i32(&mut buf)? } else { -1 };
            let session_timeout_ms = get_i32(&mut buf)?;
            let subscription = get_bytes(&mut buf)?;
            let assignment = get_bytes(&mut buf)?;
            members.push(MemberValue {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                subscription,
                assignment,
            });
        }
        Ok(GroupValue {
            protocol_type,
            generation,
            protocol,
            leader,
            state_timestamp_ms,
            members,
        })
    }
}

impl ConsumerGroupValue {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(CONSUMER_VALUE_VERSION);
        buf.put_i32(self.epoch);
        put_uvarint(&mut buf, 0); // no tagged fields
        buf.freeze()
    }

    pub fn decode(mut buf: &[u8]) -> Result<ConsumerGroupValue, RecordError> {
        check_flexible_version(&mut buf, "consumer group metadata")?;
        let epoch = get_i32(&mut buf)?;
        skip_tagged_fields(&mut buf)?;
        Ok(ConsumerGroupValue { epoch })
    }
}

impl ConsumerMemberValue {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(CONSUMER_VALUE_VERSION);
        put_compact_str(&mut buf, self.instance_id.as_deref());
        put_compact_str(&mut buf, self.rack_id.as_deref());
        put_compact_str(&mut buf, Some(&self.client_id));
        put_compact_str(&mut buf, Some(&self.client_host));
        put_uvarint(&mut buf, self.subscribed_topic_names.len() as u64 + 1);
        for topic in &self.subscribed_topic_names {
            put_compact_str(&mut buf, Some(topic));
        }
        put_compact_str(&mut buf, self.subscribed_topic_regex.as_deref());
        buf.put_i32(self.rebalance_timeout_ms);
        put_compact_str(&mut buf, self.server_assignor.as_deref());
        match &self.classic {
            None => put_uvarint(&mut buf, 0),
            Some(classic) => {
                // One tagged field: tag 0, its size, then the nullable struct (presence byte 1).
                let mut field = BytesMut::new();
                put_uvarint(&mut field, 1);
                field.put_i32(classic.session_timeout_ms);
                put_uvarint(&mut field, classic.protocols.len() as u64 + 1);
                for (name, metadata) in &classic.protocols {
                    put_compact_str(&mut field, Some(name));
                    put_uvarint(&mut field, metadata.len() as u64 + 1);
                    field.put_slice(metadata);
                    put_uvarint(&mut field, 0);
                }
                put_uvarint(&mut field, 0);
                put_uvarint(&mut buf, 1);
                put_uvarint(&mut buf, 0);
                put_uvarint(&mut buf, field.len() as u64);
                buf.put_slice(&field);
            }
        }
        buf.freeze()
    }

    pub fn decode(mut buf: &[u8]) -> Result<ConsumerMemberValue, RecordError> {
        check_flexible_version(&mut buf, "consumer group member metadata")?;
        let instance_id = get_compact_str(&mut buf)?;
        let rack_id = get_compact_str(&mut buf)?;
        let client_id = get_compact_str(&mut buf)?.unwrap_or_default();
        let client_host = get_compact_str(&mut buf)?.unwrap_or_default();
        let count = get_compact_len(&mut buf)?.unwrap_or(0);
        let mut subscribed_topic_names = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            subscribed_topic_names.push(get_compact_str(&mut buf)?.unwrap_or_default());
        }
        let subscribed_topic_regex = get_compact_str(&mut buf)?;
        let rebalance_timeout_ms = get_i32(&mut buf)?;
        let server_assignor = get_compact_str(&mut buf)?;
        // Tag 0 (ClassicMemberMetadata) is only written for classic members of a consumer group.
        let mut classic = None;
        let count = get_uvarint(&mut buf)?;
        for _ in 0..count {
            let tag = get_uvarint(&mut buf)?;
            let size = get_uvarint(&mut buf)? as usize;
            need(buf, size)?;
            let (field, rest) = buf.split_at(size);
            buf = rest;
            if tag == 0 {
                classic = decode_classic_metadata(field)?;
            }
        }
        Ok(ConsumerMemberValue {
            instance_id,
            rack_id,
            client_id,
            client_host,
            subscribed_topic_names,
            subscribed_topic_regex,
            rebalance_timeout_ms,
            server_assignor,
            classic,
        })
    }
}

/// The `ClassicMemberMetadata` nullable struct of a tagged field.
fn decode_classic_metadata(mut buf: &[u8]) -> Result<Option<ClassicMemberMetadata>, RecordError> {
    if get_uvarint(&mut buf)? == 0 {
        return Ok(None);
    }
    let session_timeout_ms = get_i32(&mut buf)?;
    let count = get_compact_len(&mut buf)?.unwrap_or(0);
    let mut protocols = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = get_compact_str(&mut buf)?.unwrap_or_default();
        let len = get_compact_len(&mut buf)?.unwrap_or(0);
        need(buf, len)?;
        let metadata = Bytes::copy_from_slice(&buf[..len]);
        buf.advance(len);
        skip_tagged_fields(&mut buf)?;
        protocols.push((name, metadata));
    }
    skip_tagged_fields(&mut buf)?;
    Ok(Some(ClassicMemberMetadata {
        session_timeout_ms,
        protocols,
    }))
}

impl ConsumerAssignmentValue {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(CONSUMER_VALUE_VERSION);
        buf.put_i32(self.member_epoch);
        buf.put_i32(self.previous_member_epoch);
        buf.put_i8(self.state);
        put_topic_partitions(&mut buf, &self.assigned_partitions);
        put_topic_partitions(&mut buf, &self.partitions_pending_revocation);
        put_uvarint(&mut buf, 0);
        buf.freeze()
    }

    pub fn decode(mut buf: &[u8]) -> Result<ConsumerAssignmentValue, RecordError> {
        check_flexible_version(&mut buf, "consumer group member assignment")?;
        let member_epoch = get_i32(&mut buf)?;
        let previous_member_epoch = get_i32(&mut buf)?;
        need(buf, 1)?;
        let state = buf.get_i8();
        let assigned_partitions = get_topic_partitions(&mut buf)?;
        let partitions_pending_revocation = get_topic_partitions(&mut buf)?;
        skip_tagged_fields(&mut buf)?;
        Ok(ConsumerAssignmentValue {
            member_epoch,
            previous_member_epoch,
            state,
            assigned_partitions,
            partitions_pending_revocation,
        })
    }
}

fn check_flexible_version(buf: &mut &[u8], what: &'static str) -> Result<(), RecordError> {
    match get_i16(buf)? {
        CONSUMER_VALUE_VERSION => Ok(()),
        v => Err(RecordError::UnknownValueVersion(v, what)),
    }
}

fn put_topic_partitions(buf: &mut BytesMut, topics: &[TopicIdPartitions]) {
    put_uvarint(buf, topics.len() as u64 + 1);
    for (id, partitions) in topics {
        buf.put_slice(id.as_bytes());
        put_uvarint(buf, partitions.len() as u64 + 1);
        for p in partitions {
            buf.put_i32(*p);
        }
        put_uvarint(buf, 0);
    }
}

fn get_topic_partitions(buf: &mut &[u8]) -> Result<Vec<TopicIdPartitions>, RecordError> {
    let count = get_compact_len(buf)?.unwrap_or(0);
    let mut out = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        need(buf, 16)?;
        let id = uuid::Uuid::from_slice(&buf[..16]).map_err(|_| RecordError::Truncated)?;
        buf.advance(16);
        let n = get_compact_len(buf)?.unwrap_or(0);
        let mut partitions = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            partitions.push(get_i32(buf)?);
        }
        skip_tagged_fields(buf)?;
        out.push((id, partitions));
    }
    Ok(out)
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn get_uvarint(buf: &mut &[u8]) -> Result<u64, RecordError> {
    let mut v = 0u64;
    for shift in (0..35).step_by(7) {
        need(buf, 1)?;
        let b = buf.get_u8();
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(RecordError::BadVarint)
}

/// A compact length (`n + 1`, 0 = null).
fn get_compact_len(buf: &mut &[u8]) -> Result<Option<usize>, RecordError> {
    let n = get_uvarint(buf)?;
    Ok((n > 0).then(|| (n - 1) as usize))
}

fn put_compact_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            put_uvarint(buf, s.len() as u64 + 1);
            buf.put_slice(s.as_bytes());
        }
        None => put_uvarint(buf, 0),
    }
}

fn get_compact_str(buf: &mut &[u8]) -> Result<Option<String>, RecordError> {
    let Some(len) = get_compact_len(buf)? else {
        return Ok(None);
    };
    need(buf, len)?;
    let s = std::str::from_utf8(&buf[..len])
        .map_err(|_| RecordError::NotUtf8)?
        .to_string();
    buf.advance(len);
    Ok(Some(s))
}

fn skip_tagged_fields(buf: &mut &[u8]) -> Result<(), RecordError> {
    let count = get_uvarint(buf)?;
    for _ in 0..count {
        let _tag = get_uvarint(buf)?;
        let size = get_uvarint(buf)? as usize;
        need(buf, size)?;
        buf.advance(size);
    }
    Ok(())
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

fn put_nullable_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

fn need(buf: &[u8], n: usize) -> Result<(), RecordError> {
    if buf.len() < n {
        Err(RecordError::Truncated)
    } else {
        Ok(())
    }
}

fn get_i16(buf: &mut &[u8]) -> Result<i16, RecordError> {
    need(buf, 2)?;
    Ok(buf.get_i16())
}

fn get_i32(buf: &mut &[u8]) -> Result<i32, RecordError> {
    need(buf, 4)?;
    Ok(buf.get_i32())
}

fn get_i64(buf: &mut &[u8]) -> Result<i64, RecordError> {
    need(buf, 8)?;
    Ok(buf.get_i64())
}

fn get_nullable_str(buf: &mut &[u8]) -> Result<Option<String>, RecordError> {
    let len = get_i16(buf)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    need(buf, len)?;
    let s = std::str::from_utf8(&buf[..len])
        .map_err(|_| RecordError::NotUtf8)?
        .to_string();
    buf.advance(len);
    Ok(Some(s))
}

fn get_str(buf: &mut &[u8]) -> Result<String, RecordError> {
    Ok(get_nullable_str(buf)?.unwrap_or_default())
}

fn get_bytes(buf: &mut &[u8]) -> Result<Bytes, RecordError> {
    let len = get_i32(buf)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    let len = len as usize;
    need(buf, len)?;
    let b = Bytes::copy_from_slice(&buf[..len]);
    buf.advance(len);
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for key in [
            RecordKey::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 7,
            },
            RecordKey::Group { group: "grp".into() },
            RecordKey::ConsumerGroup { group: "cg".into() },
            RecordKey::ConsumerMember {
                group: "cg".into(),
                member: "m".into(),
            },
            RecordKey::ConsumerAssignment {
                group: "cg".into(),
                member: "m".into(),
            },
        ] {
            assert_eq!(RecordKey::decode(&key.encode()), Ok(Some(key)));
        }
    }

    #[test]
    fn offset_key_matches_kafka_bytes() {
        // OffsetCommitKey v1: version, group, topic, partition (all big-endian, int16 lengths).
        let key = RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 1,
        };
        assert_eq!(&key.encode()[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 1]);
    }

    #[test]
    fn values_round_trip() {
        let offset = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp_ms: 1000,
        };
        assert_eq!(OffsetValue::decode(&offset.encode()), Ok(offset));
        let group = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp_ms: 9,
            members: vec![MemberValue {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(GroupValue::decode(&group.encode()), Ok(group));
    }

    #[test]
    fn consumer_group_values_round_trip_and_match_kafka_bytes() {
        let epoch = ConsumerGroupValue { epoch: 7 };
        // Version 0, epoch, empty tagged-field section.
        assert_eq!(&epoch.encode()[..], &[0, 0, 0, 0, 0, 7, 0]);
        assert_eq!(ConsumerGroupValue::decode(&epoch.encode()), Ok(epoch));
        let member = ConsumerMemberValue {
            instance_id: None,
            rack_id: Some("r".into()),
            client_id: "c".into(),
            client_host: "/h".into(),
            subscribed_topic_names: vec!["t".into()],
            subscribed_topic_regex: None,
            rebalance_timeout_ms: 1,
            server_assignor: Some("uniform".into()),
            classic: None,
        };
        let bytes = member.encode();
        // Compact strings are length + 1 (0 = null); the topic array is count + 1.
        assert_eq!(&bytes[..13], &[0, 0, 0, 2, b'r', 2, b'c', 3, b'/', b'h', 2, 2, b't']);
        assert_eq!(ConsumerMemberValue::decode(&bytes), Ok(member));
        let id = uuid::Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let assignment = ConsumerAssignmentValue {
            member_epoch: 4,
            previous_member_epoch: 3,
            state: 1,
            assigned_partitions: vec![(id, vec![0, 2])],
            partitions_pending_revocation: vec![(id, vec![1])],
        };
        let bytes = assignment.encode();
        assert_eq!(&bytes[..12], &[0, 0, 0, 0, 0, 4, 0, 0, 0, 3, 1, 2]);
        assert_eq!(ConsumerAssignmentValue::decode(&bytes), Ok(assignment));
        for n in 0..bytes.len() {
            assert!(ConsumerAssignmentValue::decode(&bytes[..n]).is_err());
        }
    }

    #[test]
    fn classic_member_metadata_is_tagged_field_zero() {
        let member = ConsumerMemberValue {
            client_id: "c".into(),
            client_host: "h".into(),
            rebalance_timeout_ms: 5,
            classic: Some(ClassicMemberMetadata {
                session_timeout_ms: 45_000,
                protocols: vec![("range".into(), Bytes::from_static(b"\x00\x01"))],
            }),
            ..ConsumerMemberValue::default()
        };
        let bytes = member.encode();
        // ... server assignor null, then one tagged field: tag 0, size 17, presence 1,
        // session timeout, one protocol ("range", 2 bytes, no tags), no tags.
        let tail: &[u8] = &[
            0, 1, 0, 17, 1, 0, 0, 0xaf, 0xc8, 2, 6, b'r', b'a', b'n', b'g', b'e', 3, 0, 1, 0, 0,
        ];
        assert_eq!(&bytes[bytes.len() - tail.len()..], tail);
        assert_eq!(ConsumerMemberValue::decode(&bytes), Ok(member));
    }

    #[test]
    fn unknown_tagged_fields_are_skipped() {
        let mut bytes = BytesMut::from(&ConsumerGroupValue { epoch: 1 }.encode()[..6]);
        // One tagged field: tag 0, three bytes.
        bytes.put_slice(&[1, 0, 3, 9, 9, 9]);
        assert_eq!(ConsumerGroupValue::decode(&bytes), Ok(ConsumerGroupValue { epoch: 1 }));
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let bytes = OffsetValue {
            offset: 1,
            leader_epoch: 0,
            metadata: "abc".into(),
            commit_timestamp_ms: 0,
        }
        .encode();
        for n in 0..bytes.len() {
            assert!(OffsetValue::decode(&bytes[..n]).is_err());
        }
        assert_eq!(RecordKey::decode(&[0, 99]), Err(RecordError::UnknownKeyVersion(99)));
    }
}
