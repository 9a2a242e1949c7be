//! Apache Kafka wire protocol (`kafka`).
//!
//! Every message is a 4-byte big-endian size followed by a request header (api key, api
//! version, correlation id, client id; header v2 adds tagged fields for flexible versions) or
//! a response header (correlation id; v1 adds tagged fields, except ApiVersions which always
//! uses v0). Flexible versions use compact strings/arrays (unsigned varint length + 1) and
//! tagged fields. Fields follow L7_FIELDS.md "Kafka": API name → `request_type`, api version →
//! `version`, correlation id → `request_id` (pairing key, also `x_request_id_0/1`), first
//! topic → `request_domain`, `topic-partition` → `endpoint`, `topic-partition:offset` →
//! `request_resource`, error code → `response_code` with the Kafka error name as
//! `response_exception`. The response's API key comes from the remembered request (a bounded
//! map per flow). Produce with `acks=0` is one-way. Trace context comes from the headers of
//! the first record of a Produce record batch (`traceparent`, `sw8`).
//!
//! Messages larger than half of `max_buffered_bytes` are decoded from their first bytes and
//! the rest is skipped, so big Produce/Fetch payloads never stall the flow.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::Arc;

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::{L7Message, L7Parser, MessageKind, Pairing, ParseCtx, ParseOutcome, Probe};
use crate::config::L7Config;
use crate::error::ParseErrorKind;
use crate::trace::{TraceConfig, TraceExtractor};

// ---------------------------------------------------------------------------------------------
// constants

/// Largest message accepted (the broker default `socket.request.max.bytes` is 100 MiB).
const MAX_FRAME: usize = 128 * 1024 * 1024;
/// Requests remembered per flow for decoding their responses.
const MAX_PENDING: usize = 256;
/// Highest API key with a name.
const MAX_API_KEY: i16 = 75;

const PRODUCE: i16 = 0;
const FETCH: i16 = 1;
const LIST_OFFSETS: i16 = 2;
const METADATA: i16 = 3;
const OFFSET_COMMIT: i16 = 8;
const OFFSET_FETCH: i16 = 9;
const FIND_COORDINATOR: i16 = 10;
const JOIN_GROUP: i16 = 11;
const HEARTBEAT: i16 = 12;
const LEAVE_GROUP: i16 = 13;
const SYNC_GROUP: i16 = 14;
const API_VERSIONS: i16 = 18;
const CREATE_TOPICS: i16 = 19;

/// Exception text of responses whose body is not decoded (L7_FIELDS.md).
const NOT_INSPECTED: &str = "Type not yet inspected by DeepFlow";

/// Kafka protocol name of an API key.
pub fn api_name(key: i16) -> Option<&'static str> {
    const NAMES: [&str; 76] = [
        "Produce",
        "Fetch",
        "ListOffsets",
        "Metadata",
        "LeaderAndIsr",
        "StopReplica",
        "UpdateMetadata",
        "ControlledShutdown",
        "OffsetCommit",
        "OffsetFetch",
        "FindCoordinator",
        "JoinGroup",
        "Heartbeat",
        "LeaveGroup",
        "SyncGroup",
        "DescribeGroups",
        "ListGroups",
        "SaslHandshake",
        "ApiVersions",
        "CreateTopics",
        "DeleteTopics",
        "DeleteRecords",
        "InitProducerId",
        "OffsetForLeaderEpoch",
        "AddPartitionsToTxn",
        "AddOffsetsToTxn",
        "EndTxn",
        "WriteTxnMarkers",
        "TxnOffsetCommit",
        "DescribeAcls",
        "CreateAcls",
        "DeleteAcls",
        "DescribeConfigs",
        "AlterConfigs",
        "AlterReplicaLogDirs",
        "DescribeLogDirs",
        "SaslAuthenticate",
        "CreatePartitions",
        "CreateDelegationToken",
        "RenewDelegationToken",
        "ExpireDelegationToken",
        "DescribeDelegationToken",
        "DeleteGroups",
        "ElectLeaders",
        "IncrementalAlterConfigs",
        "AlterPartitionReassignments",
        "ListPartitionReassignments",
        "OffsetDelete",
        "DescribeClientQuotas",
        "AlterClientQuotas",
        "DescribeUserScramCredentials",
        "AlterUserScramCredentials",
        "Vote",
        "BeginQuorumEpoch",
        "EndQuorumEpoch",
        "DescribeQuorum",
        "AlterPartition",
        "UpdateFeatures",
        "Envelope",
        "FetchSnapshot",
        "DescribeCluster",
        "DescribeProducers",
        "BrokerRegistration",
        "BrokerHeartbeat",
        "UnregisterBroker",
        "DescribeTransactions",
        "ListTransactions",
        "AllocateProducerIds",
        "ConsumerGroupHeartbeat",
        "ConsumerGroupDescribe",
        "ControllerRegistration",
        "GetTelemetrySubscriptions",
        "PushTelemetry",
        "AssignReplicasToDirs",
        "ListClientMetricsResources",
        "DescribeTopicPartitions",
    ];
    usize::try_from(key).ok().and_then(|k| NAMES.get(k)).copied()
}

/// First flexible version of an API (compact encodings, tagged fields, header v2/v1);
/// `None` if no version is flexible.
fn first_flexible(key: i16) -> Option<i16> {
    Some(match key {
        0 => 9,
        1 => 12,
        2 => 6,
        3 => 9,
        4 => 4,
        5 => 2,
        6 => 6,
        7 => 3,
        8 => 8,
        9 => 6,
        10 => 3,
        11 => 6,
        12..=14 => 4,
        15 => 5,
        16 => 3,
        17 => return None,
        18 => 3,
        19 => 5,
        20 => 4,
        21 | 22 => 2,
        23 => 4,
        24..=26 => 3,
        27 => 1,
        28 => 3,
        29..=43 => 2,
        44 => 1,
        45 | 46 => 0,
        47 => return None,
        48 | 49 => 1,
        _ => 0,
    })
}

fn is_flexible(key: i16, version: i16) -> bool {
    first_flexible(key).is_some_and(|f| version >= f)
}

/// Name of a Kafka error code (`org.apache.kafka.common.protocol.Errors`).
pub fn error_name(code: i16) -> Option<&'static str> {
    const NAMES: [&str; 120] = [
        "NONE",
        "OFFSET_OUT_OF_RANGE",
        "CORRUPT_MESSAGE",
        "UNKNOWN_TOPIC_OR_PARTITION",
        "INVALID_FETCH_SIZE",
        "LEADER_NOT_AVAILABLE",
        "NOT_LEADER_OR_FOLLOWER",
        "REQUEST_TIMED_OUT",
        "BROKER_NOT_AVAILABLE",
        "REPLICA_NOT_AVAILABLE",
        "MESSAGE_TOO_LARGE",
        "STALE_CONTROLLER_EPOCH",
        "OFFSET_METADATA_TOO_LARGE",
        "NETWORK_EXCEPTION",
        "COORDINATOR_LOAD_IN_PROGRESS",
        "COORDINATOR_NOT_AVAILABLE",
        "NOT_COORDINATOR",
        "INVALID_TOPIC_EXCEPTION",
        "RECORD_LIST_TOO_LARGE",
        "NOT_ENOUGH_REPLICAS",
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        "INVALID_REQUIRED_ACKS",
        "ILLEGAL_GENERATION",
        "INCONSISTENT_GROUP_PROTOCOL",
        "INVALID_GROUP_ID",
        "UNKNOWN_MEMBER_ID",
        "INVALID_SESSION_TIMEOUT",
        "REBALANCE_IN_PROGRESS",
        "INVALID_COMMIT_OFFSET_SIZE",
        "TOPIC_AUTHORIZATION_FAILED",
        "GROUP_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED",
        "INVALID_TIMESTAMP",
        "UNSUPPORTED_SASL_MECHANISM",
        "ILLEGAL_SASL_STATE",
        "UNSUPPORTED_VERSION",
        "TOPIC_ALREADY_EXISTS",
        "INVALID_PARTITIONS",
        "INVALID_REPLICATION_FACTOR",
        "INVALID_REPLICA_ASSIGNMENT",
        "INVALID_CONFIG",
        "NOT_CONTROLLER",
        "INVALID_REQUEST",
        "UNSUPPORTED_FOR_MESSAGE_FORMAT",
        "POLICY_VIOLATION",
        "OUT_OF_ORDER_SEQUENCE_NUMBER",
        "DUPLICATE_SEQUENCE_NUMBER",
        "INVALID_PRODUCER_EPOCH",
        "INVALID_TXN_STATE",
        "INVALID_PRODUCER_ID_MAPPING",
        "INVALID_TRANSACTION_TIMEOUT",
        "CONCURRENT_TRANSACTIONS",
        "TRANSACTION_COORDINATOR_FENCED",
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        "SECURITY_DISABLED",
        "OPERATION_NOT_ATTEMPTED",
        "KAFKA_STORAGE_ERROR",
        "LOG_DIR_NOT_FOUND",
        "SASL_AUTHENTICATION_FAILED",
        "UNKNOWN_PRODUCER_ID",
        "REASSIGNMENT_IN_PROGRESS",
        "DELEGATION_TOKEN_AUTH_DISABLED",
        "DELEGATION_TOKEN_NOT_FOUND",
        "DELEGATION_TOKEN_OWNER_MISMATCH",
        "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED",
        "DELEGATION_TOKEN_AUTHORIZATION_FAILED",
        "DELEGATION_TOKEN_EXPIRED",
        "INVALID_PRINCIPAL_TYPE",
        "NON_EMPTY_GROUP",
        "GROUP_ID_NOT_FOUND",
        "FETCH_SESSION_ID_NOT_FOUND",
        "INVALID_FETCH_SESSION_EPOCH",
        "LISTENER_NOT_FOUND",
        "TOPIC_DELETION_DISABLED",
        "FENCED_LEADER_EPOCH",
        "UNKNOWN_LEADER_EPOCH",
        "UNSUPPORTED_COMPRESSION_TYPE",
        "STALE_BROKER_EPOCH",
        "OFFSET_NOT_AVAILABLE",
        "MEMBER_ID_REQUIRED",
        "PREFERRED_LEADER_NOT_AVAILABLE",
        "GROUP_MAX_SIZE_REACHED",
        "FENCED_INSTANCE_ID",
        "ELIGIBLE_LEADERS_NOT_AVAILABLE",
        "ELECTION_NOT_NEEDED",
        "NO_REASSIGNMENT_IN_PROGRESS",
        "GROUP_SUBSCRIBED_TO_TOPIC",
        "INVALID_RECORD",
        "UNSTABLE_OFFSET_COMMIT",
        "THROTTLING_QUOTA_EXCEEDED",
        "PRODUCER_FENCED",
        "RESOURCE_NOT_FOUND",
        "DUPLICATE_RESOURCE",
        "UNACCEPTABLE_CREDENTIAL",
        "INCONSISTENT_VOTER_SET",
        "INVALID_UPDATE_VERSION",
        "FEATURE_UPDATE_FAILED",
        "PRINCIPAL_DESERIALIZATION_FAILURE",
        "SNAPSHOT_NOT_FOUND",
        "POSITION_OUT_OF_RANGE",
        "UNKNOWN_TOPIC_ID",
        "DUPLICATE_BROKER_REGISTRATION",
        "BROKER_ID_NOT_REGISTERED",
        "INCONSISTENT_TOPIC_ID",
        "INCONSISTENT_CLUSTER_ID",
        "TRANSACTIONAL_ID_NOT_FOUND",
        "FETCH_SESSION_TOPIC_ID_ERROR",
        "INELIGIBLE_REPLICA",
        "NEW_LEADER_ELECTED",
        "OFFSET_MOVED_TO_TIERED_STORAGE",
        "FENCED_MEMBER_EPOCH",
        "UNRELEASED_INSTANCE_ID",
        "UNSUPPORTED_ASSIGNOR",
        "STALE_MEMBER_EPOCH",
        "MISMATCHED_ENDPOINT_TYPE",
        "UNSUPPORTED_ENDPOINT_TYPE",
        "UNKNOWN_CONTROLLER_ID",
        "UNKNOWN_SUBSCRIPTION_ID",
        "TELEMETRY_TOO_LARGE",
        "INVALID_REGISTRATION",
    ];
    if code == -1 {
        return Some("UNKNOWN_SERVER_ERROR");
    }
    usize::try_from(code).ok().and_then(|c| NAMES.get(c)).copied()
}

// ---------------------------------------------------------------------------------------------
// byte reader

/// A bounds-checked cursor over Kafka primitive types. Every read returns `None` past the end.
pub(crate) struct Rd<'a> {
    b: &'a [u8],
    pos: usize,
    /// Compact strings/arrays/bytes and tagged fields.
    flex: bool,
}

impl<'a> Rd<'a> {
    pub(crate) fn new(b: &'a [u8], flex: bool) -> Self {
        Rd { b, pos: 0, flex }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn arr<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn i8(&mut self) -> Option<i8> {
        self.arr::<1>().map(i8::from_be_bytes)
    }
    fn i16(&mut self) -> Option<i16> {
        self.arr().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.arr().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.arr().map(i64::from_be_bytes)
    }
    fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.take(1)?.first()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    /// Zigzag-encoded signed varint (record fields).
    fn varint(&mut self) -> Option<i64> {
        let u = self.uvarint()?;
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    /// Length of a string/bytes/array; `None` inside `Some` for null.
    fn len(&mut self, compact_ok: bool, wide: bool) -> Option<Option<usize>> {
        if self.flex && compact_ok {
            let n = self.uvarint()?;
            return Some(if n == 0 { None } else { Some(usize::try_from(n - 1).ok()?) });
        }
        let n = if wide { i64::from(self.i32()?) } else { i64::from(self.i16()?) };
        Some(if n < 0 { None } else { Some(usize::try_from(n).ok()?) })
    }
    /// A (nullable) string, compact when flexible.
    fn string(&mut self) -> Option<Option<&'a str>> {
        match self.len(true, false)? {
            None => Some(None),
            Some(n) => Some(Some(std::str::from_utf8(self.take(n)?).ok()?)),
        }
    }
    /// A non-compact nullable string (client id in request header v1/v2).
    fn legacy_string(&mut self) -> Option<Option<&'a str>> {
        match self.len(false, false)? {
            None => Some(None),
            Some(n) => Some(Some(std::str::from_utf8(self.take(n)?).ok()?)),
        }
    }
    /// (nullable) bytes, compact when flexible.
    fn bytes(&mut self) -> Option<Option<&'a [u8]>> {
        match self.len(true, true)? {
            None => Some(None),
            Some(n) => Some(Some(self.take(n)?)),
        }
    }
    /// Array element count (null = 0). Counts larger than the remaining bytes are invalid.
    fn array(&mut self) -> Option<usize> {
        let n = self.len(true, true)?.unwrap_or(0);
        (n <= self.b.len().saturating_sub(self.pos)).then_some(n)
    }
    fn tagged(&mut self) -> Option<()> {
        if !self.flex {
            return Some(());
        }
        let n = self.uvarint()?;
        for _ in 0..n {
            self.uvarint()?;
            let sz = usize::try_from(self.uvarint()?).ok()?;
            self.skip(sz)?;
        }
        Some(())
    }
    fn uuid(&mut self) -> Option<String> {
        let u: [u8; 16] = self.arr()?;
        let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
        Some(format!("{}-{}-{}-{}-{}", h.get(0..8)?, h.get(8..12)?, h.get(12..16)?, h.get(16..20)?, h.get(20..32)?))
    }
}

// ---------------------------------------------------------------------------------------------
// decoded request info

/// What is remembered about a request until its response arrives.
#[derive(Debug, Clone, Default)]
struct ReqInfo {
    api_key: i16,
    version: i16,
    topic: Option<String>,
    partition: Option<i32>,
}

impl ReqInfo {
    fn endpoint(&self) -> Option<String> {
        match (&self.topic, self.partition) {
            (Some(t), Some(p)) if p >= 0 => Some(format!("{t}-{p}")),
            _ => None,
        }
    }
}

/// Fields decoded from a request body.
#[derive(Debug, Default)]
struct ReqBody {
    topic: Option<String>,
    partition: Option<i32>,
    offset: Option<i64>,
    group_id: Option<String>,
    acks: Option<i16>,
    headers: Vec<(String, String)>,
}

fn topic_name(r: &mut Rd<'_>, by_id: bool) -> Option<String> {
    if by_id { r.uuid() } else { r.string()?.map(str::to_string) }
}

/// Decodes as much of a request body as is present (every step may stop at a truncation).
fn decode_request(key: i16, v: i16, r: &mut Rd<'_>, out: &mut ReqBody) -> Option<()> {
    match key {
        PRODUCE => {
            if v >= 3 {
                r.string()?;
            }
            out.acks = Some(r.i16()?);
            r.i32()?;
            if r.array()? == 0 {
                return Some(());
            }
            out.topic = topic_name(r, v >= 13);
            if r.array()? == 0 {
                return Some(());
            }
            out.partition = Some(r.i32()?);
            let records = r.bytes()?;
            if let Some(rec) = records {
                decode_record_batch_headers(rec, &mut out.headers);
            }
        }
        FETCH => {
            if v <= 14 {
                r.i32()?; // replica_id
            }
            r.i32()?; // max_wait_ms
            r.i32()?; // min_bytes
            if v >= 3 {
                r.i32()?;
            }
            if v >= 4 {
                r.i8()?;
            }
            if v >= 7 {
                r.i32()?;
                r.i32()?;
            }
            if r.array()? == 0 {
                return Some(());
            }
            out.topic = topic_name(r, v >= 13);
            if r.array()? == 0 {
                return Some(());
            }
            out.partition = Some(r.i32()?);
            if v >= 9 {
                r.i32()?;
            }
            out.offset = Some(r.i64()?);
        }
        LIST_OFFSETS => {
            r.i32()?;
            if v >= 2 {
                r.i8()?;
            }
            if r.array()? == 0 {
                return Some(());
            }
            out.topic = topic_name(r, false);
            if r.array()? == 0 {
                return Some(());
            }
            out.partition = Some(r.i32()?);
        }
        METADATA => {
            if r.array()? == 0 {
                return Some(());
            }
            if v >= 10 {
                let id = r.uuid()?;
                out.topic = r.string()?.map(str::to_string).or(Some(id));
            } else {
                out.topic = topic_name(r, false);
            }
        }
        OFFSET_COMMIT => {
            out.group_id = r.string()?.map(str::to_string);
            if v >= 1 {
                r.i32()?;
                r.string()?;
            }
            if v >= 7 {
                r.string()?;
            }
            if (2..=4).contains(&v) {
                r.i64()?;
            }
            if r.array()? == 0 {
                return Some(());
            }
            out.topic = topic_name(r, false);
            if r.array()? == 0 {
                return Some(());
            }
            out.partition = Some(r.i32()?);
            out.offset = Some(r.i64()?);
        }
        OFFSET_FETCH => {
            if v >= 8 {
                if r.array()? == 0 {
                    return Some(());
                }
                out.group_id = r.string()?.map(str::to_string);
                if v >= 9 {
                    r.string()?;
                    r.i32()?;
                }
            } else {
                out.group_id = r.string()?.map(str::to_string);
            }
            if r.array()? == 0 {
                return Some(());
            }
            out.topic = topic_name(r, false);
            if r.array()? == 0 {
                return Some(());
            }
            out.partition = Some(r.i32()?);
        }
        FIND_COORDINATOR => {
            if v <= 3 {
                let k = r.string()?.map(str::to_string);
                let kt = if v >= 1 { r.i8()? } else { 0 };
                if kt == 0 {
                    out.group_id = k;
                }
            } else {
                let kt = r.i8()?;
                if r.array()? > 0 && kt == 0 {
                    out.group_id = r.string()?.map(str::to_string);
                }
            }
        }
        JOIN_GROUP | HEARTBEAT | LEAVE_GROUP | SYNC_GROUP => {
            out.group_id = r.string()?.map(str::to_string);
        }
        CREATE_TOPICS => {
            if r.array()? == 0 {
                return Some(());
            }
            out.topic = topic_name(r, false);
        }
        _ => {}
    }
    Some(())
}

/// Reads the headers of the first record of a v2 record batch (uncompressed only).
fn decode_record_batch_headers(b: &[u8], out: &mut Vec<(String, String)>) -> Option<()> {
    let mut r = Rd::new(b, false);
    r.i64()?; // base offset
    r.i32()?; // batch length
    r.i32()?; // partition leader epoch
    if r.i8()? != 2 {
        return None; // legacy message sets carry no headers
    }
    r.i32()?; // crc
    let attrs = r.i16()?;
    if attrs & 0x7 != 0 {
        return None; // compressed
    }
    r.skip(4 + 8 + 8 + 8 + 2 + 4)?;
    if r.i32()? <= 0 {
        return None;
    }
    r.varint()?; // record length
    r.i8()?; // attributes
    r.varint()?; // timestamp delta
    r.varint()?; // offset delta
    let kl = r.varint()?;
    if kl > 0 {
        r.skip(usize::try_from(kl).ok()?)?;
    }
    let vl = r.varint()?;
    if vl > 0 {
        r.skip(usize::try_from(vl).ok()?)?;
    }
    let n = r.varint()?;
    for _ in 0..n.clamp(0, 64) {
        let kl = usize::try_from(r.varint()?).ok()?;
        let k = std::str::from_utf8(r.take(kl)?).ok()?;
        let vl = r.varint()?;
        let v = if vl < 0 { "" } else { std::str::from_utf8(r.take(usize::try_from(vl).ok()?)?).unwrap_or("") };
        out.push((k.to_string(), v.to_string()));
    }
    Some(())
}

/// Fields decoded from a response body.
#[derive(Debug, Default)]
struct RespBody {
    error: Option<i16>,
    offset: Option<i64>,
    /// The response body was decoded for this API.
    inspected: bool,
}

fn set_err(out: &mut RespBody, e: i16) {
    if out.error.is_none_or(|c| c == 0) {
        out.error = Some(e);
    }
}

fn decode_response(key: i16, v: i16, r: &mut Rd<'_>, out: &mut RespBody) -> Option<()> {
    out.inspected = true;
    match key {
        PRODUCE => {
            if r.array()? == 0 {
                return Some(());
            }
            topic_name(r, v >= 13)?;
            if r.array()? == 0 {
                return Some(());
            }
            r.i32()?;
            set_err(out, r.i16()?);
            out.offset = Some(r.i64()?);
        }
        FETCH => {
            if v >= 1 {
                r.i32()?;
            }
            if v >= 7 {
                set_err(out, r.i16()?);
                r.i32()?;
            }
            if r.array()? == 0 {
                return Some(());
            }
            topic_name(r, v >= 13)?;
            if r.array()? == 0 {
                return Some(());
            }
            r.i32()?;
            set_err(out, r.i16()?);
        }
        LIST_OFFSETS => {
            if v >= 2 {
                r.i32()?;
            }
            if r.array()? == 0 {
                return Some(());
            }
            topic_name(r, false)?;
            if r.array()? == 0 {
                return Some(());
            }
            r.i32()?;
            set_err(out, r.i16()?);
            if v == 0 {
                if r.array()? > 0 {
                    out.offset = Some(r.i64()?);
                }
            } else {
                r.i64()?;
                out.offset = Some(r.i64()?);
            }
        }
        METADATA => {
            if v >= 3 {
                r.i32()?;
            }
            let brokers = r.array()?;
            for _ in 0..brokers {
                r.i32()?;
                r.string()?;
                r.i32()?;
                if v >= 1 {
                    r.string()?;
                }
                r.tagged()?;
            }
            if v >= 2 {
                r.string()?;
            }
            if v >= 1 {
                r.i32()?;
            }
            if r.array()? == 0 {
                return Some(());
            }
            set_err(out, r.i16()?);
        }
        OFFSET_COMMIT => {
            if v >= 3 {
                r.i32()?;
            }
            if r.array()? == 0 {
                return Some(());
            }
            topic_name(r, false)?;
            if r.array()? == 0 {
                return Some(());
            }
            r.i32()?;
            set_err(out, r.i16()?);
        }
        OFFSET_FETCH => {
            if v >= 3 {
                r.i32()?;
            }
            if v >= 8 {
                if r.array()? == 0 {
                    return Some(());
                }
                r.string()?;
            }
            let topics = r.array()?;
            if topics == 0 {
                if (2..=7).contains(&v) {
                    set_err(out, r.i16()?);
                }
                return Some(());
            }
            topic_name(r, false)?;
            if r.array()? == 0 {
                return Some(());
            }
            r.i32()?;
            out.offset = Some(r.i64()?);
            if v >= 5 {
                r.i32()?;
            }
            r.string()?;
            set_err(out, r.i16()?);
        }
        FIND_COORDINATOR => {
            if v >= 1 {
                r.i32()?;
            }
            if v <= 3 {
                set_err(out, r.i16()?);
            } else {
                if r.array()? == 0 {
                    return Some(());
                }
                r.string()?;
                r.i32()?;
                r.string()?;
                r.i32()?;
                set_err(out, r.i16()?);
            }
        }
        JOIN_GROUP => {
            if v >= 2 {
                r.i32()?;
            }
            set_err(out, r.i16()?);
        }
        HEARTBEAT | LEAVE_GROUP | SYNC_GROUP => {
            if v >= 1 {
                r.i32()?;
            }
            set_err(out, r.i16()?);
        }
        API_VERSIONS => set_err(out, r.i16()?),
        CREATE_TOPICS => {
            if v >= 2 {
                r.i32()?;
            }
            if r.array()? == 0 {
                return Some(());
            }
            r.string()?;
            if v >= 7 {
                r.uuid()?;
            }
            set_err(out, r.i16()?);
        }
        _ => out.inspected = false,
    }
    Some(())
}

// ---------------------------------------------------------------------------------------------
// probe

/// Is `data` the start of a Kafka request?
pub fn probe_request(data: &[u8]) -> Probe {
    if data.len() < 14 {
        return Probe::NeedMore;
    }
    let mut r = Rd::new(data, false);
    let (Some(size), Some(key), Some(ver), Some(corr), Some(cid)) = (r.i32(), r.i16(), r.i16(), r.i32(), r.i16())
    else {
        return Probe::NeedMore;
    };
    let Ok(size) = usize::try_from(size) else { return Probe::NotThis };
    if !(10..=MAX_FRAME).contains(&size) || !(0..=MAX_API_KEY).contains(&key) || !(0..=20).contains(&ver) || corr < 0 {
        return Probe::NotThis;
    }
    if first_flexible(key).is_none() && ver > 5 {
        return Probe::NotThis;
    }
    // client id: null or printable and inside the message
    if cid < -1 || i64::from(cid) > size as i64 - 10 {
        return Probe::NotThis;
    }
    if cid > 0 {
        let end = 14 + cid as usize;
        let printable = data.get(14..end.min(data.len())).is_some_and(|s| s.iter().all(|c| (0x20..0x7f).contains(c)));
        if !printable {
            return Probe::NotThis;
        }
    }
    // a single request per first segment is the norm: more data than announced must be the next request
    if data.len() > size + 4 && data.len() < size + 8 {
        return Probe::NotThis;
    }
    Probe::Match
}

// ---------------------------------------------------------------------------------------------
// parser

/// The Kafka parser.
pub struct KafkaParser {
    trace: Arc<TraceConfig>,
    /// Messages are decoded from a prefix of at most this many bytes; the rest is skipped.
    partial_limit: usize,
    /// Requests awaiting a response: correlation id → request info.
    pending: VecDeque<(i32, ReqInfo)>,
    /// Body bytes still to skip per direction.
    skip: [usize; 2],
}

impl KafkaParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        KafkaParser {
            trace: Arc::new(cfg.trace.clone()),
            partial_limit: (cfg.max_buffered_bytes / 2).max(64),
            pending: VecDeque::new(),
            skip: [0; 2],
        }
    }

    fn request(&mut self, frame: &[u8], total: usize) -> Result<L7Message, ParseErrorKind> {
        let mut r = Rd::new(frame, false);
        let (Some(key), Some(ver), Some(corr)) = (r.i16(), r.i16(), r.i32()) else {
            return Err(ParseErrorKind::Malformed);
        };
        let Some(name) = api_name(key) else { return Err(ParseErrorKind::Malformed) };
        if !(0..=30).contains(&ver) {
            return Err(ParseErrorKind::Malformed);
        }
        let flex = is_flexible(key, ver);
        // header v1: client id; header v2 (flexible): client id + tagged fields.
        // ControlledShutdown v0 alone uses header v0 (no client id).
        if !(key == 7 && ver == 0) {
            r.legacy_string().ok_or(ParseErrorKind::Malformed)?;
        }
        r.flex = flex;
        let mut body = ReqBody::default();
        let body_ok = r.tagged().is_some();
        if body_ok {
            let _ = decode_request(key, ver, &mut r, &mut body);
        }

        let oneway = key == PRODUCE && body.acks == Some(0);
        let kind = if oneway { MessageKind::OneWay } else { MessageKind::Request };
        let mut msg = L7Message::new(L7Protocol::Kafka, kind);
        msg.version = Some(ver.to_string());
        msg.request_type = Some(name.to_string());
        msg.request_id = Some(corr as u32);
        msg.length = Some(total as u64);
        let info = ReqInfo { api_key: key, version: ver, topic: body.topic.clone(), partition: body.partition };
        msg.endpoint = info.endpoint();
        msg.request_domain = body.topic.clone();
        if let (Some(ep), Some(off)) = (&msg.endpoint, body.offset) {
            msg.request_resource = Some(format!("{ep}:{off}"));
        }
        if let Some(g) = body.group_id {
            msg.attr("group_id", g);
        }
        if !body.headers.is_empty() {
            let mut ex = TraceExtractor::new(&self.trace);
            for (k, v) in &body.headers {
                if k.eq_ignore_ascii_case("traceparent") || k.eq_ignore_ascii_case("sw8") {
                    ex.header(k, v, &mut msg);
                }
            }
        }
        msg.trace.x_request_id = Some(corr.to_string());
        if oneway {
            msg.response_status = Some(ResponseStatus::Ok);
        } else {
            if self.pending.len() >= MAX_PENDING {
                self.pending.pop_front();
            }
            self.pending.push_back((corr, info));
        }
        Ok(msg)
    }

    fn response(&mut self, frame: &[u8], total: usize) -> Result<L7Message, ParseErrorKind> {
        let mut r = Rd::new(frame, false);
        let corr = r.i32().ok_or(ParseErrorKind::Malformed)?;
        let mut msg = L7Message::new(L7Protocol::Kafka, MessageKind::Response);
        msg.request_id = Some(corr as u32);
        msg.length = Some(total as u64);
        msg.trace.x_request_id = Some(corr.to_string());
        let Some(idx) = self.pending.iter().position(|(c, _)| *c == corr) else {
            // request not seen (capture started mid-flow): nothing more can be decoded
            return Ok(msg);
        };
        let Some((_, req)) = self.pending.remove(idx) else { return Ok(msg) };
        let flex = is_flexible(req.api_key, req.version);
        if flex && req.api_key != API_VERSIONS {
            r.flex = true;
            if r.tagged().is_none() {
                return Ok(msg);
            }
        }
        r.flex = flex;
        msg.version = Some(req.version.to_string());
        msg.request_type = api_name(req.api_key).map(str::to_string);
        msg.request_domain = req.topic.clone();
        msg.endpoint = req.endpoint();
        let mut body = RespBody::default();
        let _ = decode_response(req.api_key, req.version, &mut r, &mut body);
        if !body.inspected {
            msg.response_code = Some(-2);
            msg.response_exception = Some(NOT_INSPECTED.to_string());
            msg.response_status = Some(ResponseStatus::Ok);
            return Ok(msg);
        }
        if let (Some(ep), Some(off)) = (&msg.endpoint, body.offset)
            && matches!(req.api_key, PRODUCE | LIST_OFFSETS)
        {
            msg.request_resource = Some(format!("{ep}:{off}"));
        }
        if let Some(code) = body.error {
            msg.response_code = Some(i32::from(code));
            if code == 0 {
                msg.response_status = Some(ResponseStatus::Ok);
            } else {
                msg.response_status = Some(ResponseStatus::ServerError);
                msg.response_exception =
                    Some(error_name(code).map_or_else(|| format!("UNKNOWN_ERROR_{code}"), str::to_string));
            }
        }
        Ok(msg)
    }
}

impl L7Parser for KafkaParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Kafka
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 9092
    }

    fn probe(&self, data: &[u8], dir: Direction, _flow: &FlowInfo) -> Probe {
        match dir {
            Direction::ClientToServer => probe_request(data),
            Direction::ServerToClient => Probe::NotThis,
        }
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(KafkaParser {
            trace: Arc::clone(&self.trace),
            partial_limit: self.partial_limit,
            pending: VecDeque::new(),
            skip: [0; 2],
        })
    }

    fn pairing(&self) -> Pairing {
        Pairing::ById
    }

    fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome {
        let d = ctx.dir.index();
        if let Some(skip) = self.skip.get_mut(d)
            && *skip > 0
        {
            let n = (*skip).min(data.len());
            *skip -= n;
            return ParseOutcome::Skip(n);
        }
        let Some(size) = data.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(i32::from_be_bytes) else {
            return ParseOutcome::NeedMore(4 - data.len());
        };
        let min = if ctx.dir == Direction::ClientToServer { 8 } else { 4 };
        let Ok(size) = usize::try_from(size) else { return ParseOutcome::Error(ParseErrorKind::Malformed) };
        if size < min || size > MAX_FRAME {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let total = size + 4;
        let need = total.min(self.partial_limit.max(4 + min));
        if data.len() < need {
            return ParseOutcome::NeedMore(need - data.len());
        }
        let avail = total.min(data.len());
        let frame = data.get(4..avail).unwrap_or_default();
        let res = match ctx.dir {
            Direction::ClientToServer => self.request(frame, total),
            Direction::ServerToClient => self.response(frame, total),
        };
        match res {
            Ok(msg) => {
                if let Some(s) = self.skip.get_mut(d) {
                    *s = total - avail;
                }
                ParseOutcome::message(msg, avail)
            }
            Err(e) => ParseOutcome::Error(e),
        }
    }

    fn on_gap(&mut self, dir: Direction) {
        if let Some(s) = self.skip.get_mut(dir.index()) {
            *s = 0;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// shared test kit for the message-queue parsers

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
pub(crate) mod testkit {
    use std::net::{IpAddr, Ipv4Addr};

    use deepflow_core::record::L7FlowLog;
    use deepflow_core::{Direction, FlowInfo};

    use crate::l7::{L7Parser, ParseCtx, ParseOutcome};
    use crate::{EmitMode, L7Config, L7Counters, L7Engine, L7FlowState};

    pub const C2S: Direction = Direction::ClientToServer;
    pub const S2C: Direction = Direction::ServerToClient;

    pub fn flow(port: u16) -> FlowInfo {
        FlowInfo {
            flow_id: 1,
            protocol: 6,
            client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            client_port: 40000,
            server_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            server_port: port,
            tunnel: Default::default(),
            start_time_us: 0,
        }
    }

    pub fn cfg(name: &str, emit: EmitMode) -> L7Config {
        L7Config { enabled_protocols: vec![name.to_string()], emit, ..L7Config::default() }
    }

    /// Runs `segs` (direction, bytes; each at time 1000·(i+1)) through an engine with only
    /// `make(cfg)` registered, and ends the flow.
    pub fn run_with(
        make: &dyn Fn(&L7Config) -> Box<dyn L7Parser>,
        name: &str,
        port: u16,
        emit: EmitMode,
        segs: &[(Direction, Vec<u8>)],
    ) -> Vec<L7FlowLog> {
        let c = cfg(name, emit);
        let mut engine = L7Engine::new(c.clone());
        engine.register(make(&c));
        let f = flow(port);
        let mut st = L7FlowState::default();
        let mut rows = Vec::new();
        for (i, (dir, bytes)) in segs.iter().enumerate() {
            engine.on_payload(&mut st, &f, *dir, 1000 * (i as u64 + 1), bytes, &mut rows);
        }
        engine.on_flow_end(&mut st, &f, 1_000_000, &mut rows);
        rows
    }

    /// Every segment split at every offset into two chunks gives the same rows.
    pub fn check_splits(
        make: &dyn Fn(&L7Config) -> Box<dyn L7Parser>,
        name: &str,
        port: u16,
        segs: &[(Direction, Vec<u8>)],
    ) {
        for emit in [EmitMode::Sessions, EmitMode::Messages] {
            let want = run_with(make, name, port, emit, segs);
            assert!(!want.is_empty());
            for i in 0..segs.len() {
                let Some((dir, bytes)) = segs.get(i) else { continue };
                for k in 1..bytes.len() {
                    let mut v: Vec<(Direction, Vec<u8>)> = Vec::new();
                    v.extend_from_slice(segs.get(..i).unwrap_or_default());
                    v.push((*dir, bytes[..k].to_vec()));
                    v.push((*dir, bytes[k..].to_vec()));
                    v.extend_from_slice(segs.get(i + 1..).unwrap_or_default());
                    let got = run_with(make, name, port, emit, &v);
                    // chunk timing shifts segment times by one slot: compare without times
                    let strip = |rows: Vec<L7FlowLog>| {
                        rows.into_iter()
                            .map(|mut r| {
                                r.start_time = 0;
                                r.end_time = 0;
                                r.rrt = None;
                                r
                            })
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(strip(got), strip(want.clone()), "segment {i} split at {k}");
                }
            }
        }
    }

    /// Feeds `data` to a fresh per-flow parser like the engine does; returns message count.
    /// Panics if the parser returns an impossible outcome.
    pub fn drive(proto: &dyn L7Parser, dir: Direction, data: &[u8]) -> usize {
        let f = flow(1);
        let mut p = proto.new_flow();
        let mut counters = L7Counters::default();
        let mut off = 0;
        let mut msgs = 0;
        let mut stalls = 0;
        while off < data.len() {
            let mut ctx = ParseCtx { flow: &f, dir, ts_us: 1, datagram: false, counters: &mut counters };
            match p.parse(&data[off..], &mut ctx) {
                ParseOutcome::Message(_, n) => {
                    assert!(n <= data.len() - off);
                    if n == 0 {
                        stalls += 1;
                        assert!(stalls < 16, "stall");
                    }
                    off += n;
                    msgs += 1;
                }
                ParseOutcome::Skip(n) => {
                    assert!(n >= 1 && n <= data.len() - off);
                    off += n;
                }
                ParseOutcome::NeedMore(_) => break,
                ParseOutcome::Error(_) => {
                    p.on_gap(dir);
                    off += 1;
                }
            }
        }
        msgs
    }

    /// Every prefix of the concatenated stream of each direction must parse without panicking.
    pub fn check_truncations(proto: &dyn L7Parser, segs: &[(Direction, Vec<u8>)]) {
        for dir in [C2S, S2C] {
            let all: Vec<u8> = segs.iter().filter(|(d, _)| *d == dir).flat_map(|(_, b)| b.clone()).collect();
            for k in 0..=all.len() {
                drive(proto, dir, &all[..k]);
            }
        }
    }

    /// Fixed-seed xorshift fuzz: `n` mutations of the given streams through `drive` and the engine.
    pub fn fuzz(make: &dyn Fn(&L7Config) -> Box<dyn L7Parser>, name: &str, seeds: &[(Direction, Vec<u8>)], n: usize) {
        let c = cfg(name, EmitMode::Sessions);
        let proto = make(&c);
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut engine = L7Engine::new(c.clone());
        engine.register(make(&c));
        let f = flow(1);
        for i in 0..n {
            let Some((dir, base)) = seeds.get(i % seeds.len()) else { continue };
            let mut v = base.clone();
            let muts = 1 + rnd() % 8;
            for _ in 0..muts {
                if v.is_empty() {
                    v.push(rnd() as u8);
                    continue;
                }
                let at = (rnd() as usize) % v.len();
                match rnd() % 6 {
                    0 => v[at] = rnd() as u8,
                    1 => v[at] ^= 1 << (rnd() % 8),
                    2 => v[at] = [0, 0xff, 0x7f, 0x80, 1][(rnd() % 5) as usize],
                    3 => {
                        v.insert(at, rnd() as u8);
                    }
                    4 => {
                        v.remove(at);
                    }
                    _ => v.truncate(at),
                }
            }
            drive(proto.as_ref(), *dir, &v);
            if i % 16 == 0 {
                let mut st = L7FlowState::default();
                let mut rows = Vec::new();
                for (j, (d, b)) in seeds.iter().enumerate() {
                    let b = if j == i % seeds.len() { &v } else { b };
                    engine.on_payload(&mut st, &f, *d, 10, b, &mut rows);
                }
                engine.on_flow_end(&mut st, &f, 20, &mut rows);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::testkit::*;
    use super::*;
    use crate::EmitMode;
    use deepflow_core::record::L7FlowLog;

    fn make(cfg: &L7Config) -> Box<dyn L7Parser> {
        Box::new(KafkaParser::new(cfg))
    }

    fn run(emit: EmitMode, segs: &[(Direction, Vec<u8>)]) -> Vec<L7FlowLog> {
        run_with(&make, "kafka", 9092, emit, segs)
    }

    // ---- builders ----
    fn s16(s: &str) -> Vec<u8> {
        let mut v = (s.len() as i16).to_be_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    }
    fn cs(s: &str) -> Vec<u8> {
        let mut v = uvar(s.len() as u64 + 1);
        v.extend_from_slice(s.as_bytes());
        v
    }
    fn uvar(mut n: u64) -> Vec<u8> {
        let mut v = Vec::new();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                v.push(b);
                return v;
            }
            v.push(b | 0x80);
        }
    }
    fn zz(n: i64) -> Vec<u8> {
        uvar(((n << 1) ^ (n >> 63)) as u64)
    }
    fn frame(body: Vec<u8>) -> Vec<u8> {
        let mut v = (body.len() as i32).to_be_bytes().to_vec();
        v.extend(body);
        v
    }
    fn req_hdr(key: i16, ver: i16, corr: i32, client: &str, flex: bool) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(key.to_be_bytes());
        v.extend(ver.to_be_bytes());
        v.extend(corr.to_be_bytes());
        v.extend(s16(client));
        if flex {
            v.push(0);
        }
        v
    }
    fn record_batch(headers: &[(&str, &str)]) -> Vec<u8> {
        let mut rec = Vec::new();
        rec.push(0); // attributes
        rec.extend(zz(0)); // ts delta
        rec.extend(zz(0)); // offset delta
        rec.extend(zz(1));
        rec.push(b'k');
        rec.extend(zz(5));
        rec.extend(b"hello");
        rec.extend(zz(headers.len() as i64));
        for (k, v) in headers {
            rec.extend(zz(k.len() as i64));
            rec.extend(k.as_bytes());
            rec.extend(zz(v.len() as i64));
            rec.extend(v.as_bytes());
        }
        let mut recs = zz(rec.len() as i64);
        recs.extend(rec);
        let mut b = Vec::new();
        b.extend(0i64.to_be_bytes());
        let after_len_body_len = 4 + 1 + 4 + 2 + 4 + 8 + 8 + 8 + 2 + 4 + 4 + recs.len();
        b.extend((after_len_body_len as i32).to_be_bytes());
        b.extend(0i32.to_be_bytes()); // leader epoch
        b.push(2); // magic
        b.extend(0u32.to_be_bytes()); // crc
        b.extend(0i16.to_be_bytes()); // attributes
        b.extend(0i32.to_be_bytes());
        b.extend(0i64.to_be_bytes());
        b.extend(0i64.to_be_bytes());
        b.extend((-1i64).to_be_bytes());
        b.extend((-1i16).to_be_bytes());
        b.extend((-1i32).to_be_bytes());
        b.extend(1i32.to_be_bytes());
        b.extend(recs);
        b
    }
    /// Produce v9 (flexible) request.
    fn produce_v9(corr: i32, acks: i16, topic: &str, part: i32, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut v = req_hdr(PRODUCE, 9, corr, "cli", true);
        v.push(0); // null transactional id
        v.extend(acks.to_be_bytes());
        v.extend(30000i32.to_be_bytes());
        v.extend(uvar(2)); // 1 topic
        v.extend(cs(topic));
        v.extend(uvar(2)); // 1 partition
        v.extend(part.to_be_bytes());
        let rb = record_batch(headers);
        v.extend(uvar(rb.len() as u64 + 1));
        v.extend(rb);
        v.push(0); // partition tags
        v.push(0); // topic tags
        v.push(0); // body tags
        frame(v)
    }
    fn produce_v9_resp(corr: i32, topic: &str, part: i32, err: i16, base: i64) -> Vec<u8> {
        let mut v = corr.to_be_bytes().to_vec();
        v.push(0); // header tags
        v.extend(uvar(2));
        v.extend(cs(topic));
        v.extend(uvar(2));
        v.extend(part.to_be_bytes());
        v.extend(err.to_be_bytes());
        v.extend(base.to_be_bytes());
        v.extend((-1i64).to_be_bytes());
        v.extend(0i64.to_be_bytes());
        v.extend(uvar(1)); // record errors
        v.push(0); // error message null
        v.push(0);
        v.push(0);
        v.push(0);
        v.extend(0i32.to_be_bytes());
        v.push(0);
        frame(v)
    }
    /// Fetch v4 (non-flexible) request and response.
    fn fetch_v4(corr: i32, topic: &str, part: i32, off: i64) -> Vec<u8> {
        let mut v = req_hdr(FETCH, 4, corr, "consumer-1", false);
        v.extend((-1i32).to_be_bytes());
        v.extend(500i32.to_be_bytes());
        v.extend(1i32.to_be_bytes());
        v.extend(52428800i32.to_be_bytes());
        v.push(0);
        v.extend(1i32.to_be_bytes());
        v.extend(s16(topic));
        v.extend(1i32.to_be_bytes());
        v.extend(part.to_be_bytes());
        v.extend(off.to_be_bytes());
        v.extend(1048576i32.to_be_bytes());
        frame(v)
    }
    fn fetch_v4_resp(corr: i32, topic: &str, part: i32, err: i16) -> Vec<u8> {
        let mut v = corr.to_be_bytes().to_vec();
        v.extend(0i32.to_be_bytes());
        v.extend(1i32.to_be_bytes());
        v.extend(s16(topic));
        v.extend(1i32.to_be_bytes());
        v.extend(part.to_be_bytes());
        v.extend(err.to_be_bytes());
        v.extend(10i64.to_be_bytes());
        v.extend(10i64.to_be_bytes());
        v.extend(0i32.to_be_bytes()); // aborted txns
        v.extend(0i32.to_be_bytes()); // records
        frame(v)
    }
    fn api_versions_v3(corr: i32) -> Vec<u8> {
        let mut v = req_hdr(API_VERSIONS, 3, corr, "rdkafka", true);
        v.extend(cs("librdkafka"));
        v.extend(cs("2.3.0"));
        v.push(0);
        frame(v)
    }
    fn api_versions_resp(corr: i32, err: i16) -> Vec<u8> {
        // header v0 even for v3
        let mut v = corr.to_be_bytes().to_vec();
        v.extend(err.to_be_bytes());
        v.extend(uvar(2));
        v.extend(0i16.to_be_bytes());
        v.extend(0i16.to_be_bytes());
        v.extend(9i16.to_be_bytes());
        v.push(0);
        v.extend(0i32.to_be_bytes());
        v.push(0);
        frame(v)
    }
    fn join_group_v5(corr: i32, group: &str) -> Vec<u8> {
        let mut v = req_hdr(JOIN_GROUP, 5, corr, "c", false);
        v.extend(s16(group));
        v.extend(10000i32.to_be_bytes());
        v.extend(30000i32.to_be_bytes());
        v.extend(s16(""));
        v.extend((-1i16).to_be_bytes());
        v.extend(s16("consumer"));
        v.extend(0i32.to_be_bytes());
        frame(v)
    }
    fn join_group_v5_resp(corr: i32, err: i16) -> Vec<u8> {
        let mut v = corr.to_be_bytes().to_vec();
        v.extend(0i32.to_be_bytes());
        v.extend(err.to_be_bytes());
        v.extend([0u8; 20]);
        frame(v)
    }
    fn describe_groups(corr: i32) -> Vec<u8> {
        let mut v = req_hdr(15, 0, corr, "c", false);
        v.extend(1i32.to_be_bytes());
        v.extend(s16("g"));
        frame(v)
    }
    fn metadata_v1(corr: i32, topic: &str) -> Vec<u8> {
        let mut v = req_hdr(METADATA, 1, corr, "c", false);
        v.extend(1i32.to_be_bytes());
        v.extend(s16(topic));
        frame(v)
    }
    fn metadata_v1_resp(corr: i32, topic: &str, err: i16) -> Vec<u8> {
        let mut v = corr.to_be_bytes().to_vec();
        v.extend(1i32.to_be_bytes());
        v.extend(1i32.to_be_bytes());
        v.extend(s16("localhost"));
        v.extend(9092i32.to_be_bytes());
        v.extend((-1i16).to_be_bytes());
        v.extend(1i32.to_be_bytes());
        v.extend(1i32.to_be_bytes());
        v.extend(err.to_be_bytes());
        v.extend(s16(topic));
        v.push(0);
        v.extend(0i32.to_be_bytes());
        frame(v)
    }

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn exchange() -> Vec<(Direction, Vec<u8>)> {
        vec![
            (C2S, api_versions_v3(1)),
            (S2C, api_versions_resp(1, 0)),
            (C2S, produce_v9(2, 1, "orders", 3, &[("traceparent", TP)])),
            (S2C, produce_v9_resp(2, "orders", 3, 0, 42)),
            (C2S, fetch_v4(3, "orders", 3, 40)),
            (S2C, fetch_v4_resp(3, "orders", 3, 1)),
            (C2S, [join_group_v5(4, "grp"), metadata_v1(5, "orders")].concat()),
            (S2C, [join_group_v5_resp(4, 27), metadata_v1_resp(5, "orders", 3)].concat()),
            (C2S, describe_groups(6)),
            (S2C, frame([6i32.to_be_bytes().to_vec(), vec![0; 8]].concat())),
            (C2S, produce_v9(7, 0, "logs", 0, &[])),
        ]
    }

    #[test]
    fn sessions() {
        let rows = run(EmitMode::Sessions, &exchange());
        assert_eq!(rows.len(), 7, "{rows:#?}");
        let r = &rows[0];
        assert_eq!(r.request_type.as_deref(), Some("ApiVersions"));
        assert_eq!(r.version.as_deref(), Some("3"));
        assert_eq!(r.response_code, Some(0));
        assert_eq!(r.response_status, ResponseStatus::Ok);
        assert_eq!(r.request_id, Some(1));
        assert_eq!(r.x_request_id_0.as_deref(), Some("1"));
        assert_eq!(r.x_request_id_1.as_deref(), Some("1"));

        let r = &rows[1];
        assert_eq!(r.request_type.as_deref(), Some("Produce"));
        assert_eq!(r.request_domain.as_deref(), Some("orders"));
        assert_eq!(r.endpoint.as_deref(), Some("orders-3"));
        assert_eq!(r.request_resource.as_deref(), Some("orders-3:42"));
        assert_eq!(r.trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!(r.span_id.as_deref(), Some("b7ad6b7169203331"));
        assert_eq!(r.response_status, ResponseStatus::Ok);

        let r = &rows[2];
        assert_eq!(r.request_type.as_deref(), Some("Fetch"));
        assert_eq!(r.request_resource.as_deref(), Some("orders-3:40"));
        assert_eq!(r.response_code, Some(1));
        assert_eq!(r.response_exception.as_deref(), Some("OFFSET_OUT_OF_RANGE"));
        assert_eq!(r.response_status, ResponseStatus::ServerError);

        let r = &rows[3];
        assert_eq!(r.request_type.as_deref(), Some("JoinGroup"));
        assert_eq!(r.response_exception.as_deref(), Some("REBALANCE_IN_PROGRESS"));
        assert_eq!(r.attribute_names, vec!["group_id".to_string()]);
        assert_eq!(r.attribute_values, vec!["grp".to_string()]);

        let r = &rows[4];
        assert_eq!(r.request_type.as_deref(), Some("Metadata"));
        assert_eq!(r.request_domain.as_deref(), Some("orders"));
        assert_eq!(r.response_exception.as_deref(), Some("UNKNOWN_TOPIC_OR_PARTITION"));

        let r = &rows[5];
        assert_eq!(r.request_type.as_deref(), Some("DescribeGroups"));
        assert_eq!(r.response_code, Some(-2));
        assert_eq!(r.response_exception.as_deref(), Some(NOT_INSPECTED));
        assert_eq!(r.response_status, ResponseStatus::Ok);

        // acks=0: one-way, no timeout row
        let r = &rows[6];
        assert_eq!(r.log_type, deepflow_core::record::LogType::Session);
        assert_eq!(r.request_type.as_deref(), Some("Produce"));
        assert_eq!(r.endpoint.as_deref(), Some("logs-0"));
        assert_eq!(r.response_status, ResponseStatus::Ok);
        assert!(rows.iter().all(|r| r.response_status != ResponseStatus::Timeout));
    }

    #[test]
    fn responses_out_of_order_and_unknown() {
        let segs = vec![
            (C2S, [metadata_v1(10, "a"), metadata_v1(11, "b")].concat()),
            (S2C, [metadata_v1_resp(11, "b", 0), metadata_v1_resp(10, "a", 3), metadata_v1_resp(99, "x", 0)].concat()),
        ];
        let rows = run(EmitMode::Sessions, &segs);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].request_domain.as_deref(), Some("b"));
        assert_eq!(rows[0].response_code, Some(0));
        assert_eq!(rows[1].request_domain.as_deref(), Some("a"));
        assert_eq!(rows[1].response_code, Some(3));
        assert_eq!(rows[2].request_id, Some(99));
        assert_eq!(rows[2].log_type, deepflow_core::record::LogType::Response);
    }

    #[test]
    fn big_message_is_skipped_not_stalled() {
        let big = "x".repeat(200_000);
        let mut segs = vec![(C2S, produce_v9(1, 1, "t", 0, &[("sw8", &big)]))];
        segs.push((S2C, produce_v9_resp(1, "t", 0, 0, 5)));
        segs.push((C2S, metadata_v1(2, "t")));
        segs.push((S2C, metadata_v1_resp(2, "t", 0)));
        let rows = run(EmitMode::Sessions, &segs);
        assert_eq!(rows.len(), 2, "{rows:#?}");
        assert_eq!(rows[0].request_resource.as_deref(), Some("t-0:5"));
        assert_eq!(rows[1].request_type.as_deref(), Some("Metadata"));
    }

    #[test]
    fn probe() {
        let f = flow(1);
        let p = KafkaParser::new(&L7Config::default());
        assert_eq!(p.probe(&metadata_v1(1, "t"), C2S, &f), Probe::Match);
        assert_eq!(p.probe(&api_versions_v3(1), C2S, &f), Probe::Match);
        assert_eq!(p.probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", C2S, &f), Probe::NotThis);
        assert_eq!(p.probe(&[0, 0, 0, 20, 0, 3], C2S, &f), Probe::NeedMore);
        assert_eq!(p.probe(&metadata_v1_resp(1, "t", 0), S2C, &f), Probe::NotThis);
    }

    #[test]
    fn error_names() {
        assert_eq!(error_name(-1), Some("UNKNOWN_SERVER_ERROR"));
        assert_eq!(error_name(36), Some("TOPIC_ALREADY_EXISTS"));
        assert_eq!(error_name(119), Some("INVALID_REGISTRATION"));
        assert_eq!(error_name(500), None);
        assert_eq!(api_name(75), Some("DescribeTopicPartitions"));
        assert_eq!(api_name(76), None);
    }

    #[test]
    fn splits() {
        check_splits(&make, "kafka", 9092, &exchange());
    }

    #[test]
    fn truncations() {
        check_truncations(make(&L7Config::default()).as_ref(), &exchange());
    }

    #[test]
    fn fuzz_50k() {
        fuzz(&make, "kafka", &exchange(), 50_000);
    }
}
