//! Arrow schemas of the stored tables, defined once together with the code that fills them.
//!
//! Each table is a list of [`Column`]s: a DeepFlow column name, an Arrow type, a one-line doc, and
//! a typed getter that reads the value from the record. [`Record::schema`] and
//! [`Record::to_batch`] are both derived from that list, so the schema and the builder cannot
//! drift apart. The column docs are also stored as Arrow field metadata (`doc`).
//!
//! Type conventions:
//! - times are `Timestamp(Microsecond, "UTC")` (metrics windows too: the `time` column holds the
//!   window start);
//! - IP addresses are strings (`Utf8`, canonical `std::net::IpAddr` text) so that every engine
//!   can filter them without a UDF; Parquet dictionary-encodes them per column chunk;
//! - enums are their lowercase DeepFlow names (`l7_protocol`, `type`, `response_status`), and
//!   `close_type` is DeepFlow's numeric code;
//! - absent values (`Option::None` in the record) are nulls;
//! - universal tags are `UInt32` ids, `<tag>_id_0` (client) and `<tag>_id_1` (server), with 0 for
//!   unknown; names come from the dictionaries at query time ([`crate::query`]). Tables whose
//!   rows describe one resource (`log`, `profile`: the emitting application) carry one set
//!   without suffix, `<tag>_id` (`pod_id`, `service_id`, ...), like DeepFlow's `application_log`
//!   and `profile` tables; those columns are nullable in the schema so that files written before
//!   they existed still read (null = unknown), and are never null in new files.
//!
//! | table | record | partitioned by | tag columns |
//! |---|---|---|---|
//! | `l4_flow_log` | [`L4FlowLog`] | `start_time` | `_0` and `_1` |
//! | `l7_flow_log` | [`L7FlowLog`] | `start_time` | `_0` and `_1` |
//! | `network` | [`NetworkMetrics`] | `time` | `_0` and `_1` |
//! | `application` | [`ApplicationMetrics`] | `time` | `_1` (server) only |
//! | `log` | [`LogRecord`] | `time` | one set, no suffix |
//! | `profile` | [`ProfileSample`] | `time` | one set, no suffix |

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Int32Builder, ListBuilder, StringBuilder, TimestampMicrosecondArray, UInt8Array,
    UInt16Array, UInt32Array, UInt32Builder, UInt64Array, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use deepflow_core::record::{
    ApplicationMetrics, L4FlowLog, L7FlowLog, LogRecord, LogType, NetworkMetrics, ProfileSample,
};
use deepflow_tagging::{TAG_COLUMNS, TAG_COLUMNS_0, TAG_COLUMNS_1, TaggedRow, UniversalTags};

/// The stored tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `l4_flow_log`: one row per flow (or per report period of a long flow).
    L4FlowLog,
    /// `l7_flow_log`: one row per request/response session (or message).
    L7FlowLog,
    /// `network`: network metrics per (ip_0, ip_1, server_port, protocol) and 1 s / 1 min window.
    Network,
    /// `application`: RED metrics per (ip_1, server_port, l7_protocol, endpoint) and window.
    Application,
    /// `log`: application log records (OpenTelemetry logs).
    Log,
    /// `profile`: continuous-profiling stacks and values (Pyroscope ingest).
    Profile,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 6] =
        [Table::L4FlowLog, Table::L7FlowLog, Table::Network, Table::Application, Table::Log, Table::Profile];

    /// The table name (also the `table=<name>` directory).
    pub const fn name(self) -> &'static str {
        match self {
            Table::L4FlowLog => "l4_flow_log",
            Table::L7FlowLog => "l7_flow_log",
            Table::Network => "network",
            Table::Application => "application",
            Table::Log => "log",
            Table::Profile => "profile",
        }
    }

    /// The inverse of [`Table::name`].
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The Arrow schema of the table.
    pub fn schema(self) -> SchemaRef {
        match self {
            Table::L4FlowLog => L4FlowLog::schema(),
            Table::L7FlowLog => L7FlowLog::schema(),
            Table::Network => NetworkMetrics::schema(),
            Table::Application => ApplicationMetrics::schema(),
            Table::Log => LogRecord::schema(),
            Table::Profile => ProfileSample::schema(),
        }
    }

    /// Which tag sides the table carries (`[client, server]`).
    pub const fn tag_sides(self) -> [bool; 2] {
        match self {
            Table::Application => [false, true],
            Table::Log | Table::Profile => [false, false],
            _ => [true, true],
        }
    }

    /// True when the table carries one set of tag ids without side suffix (`pod_id`,
    /// `service_id`, ...: the resource the row is about), taken from [`TaggedRow::tags_0`].
    pub const fn row_tags(self) -> bool {
        matches!(self, Table::Log | Table::Profile)
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a column's value is read from a record `R`.
pub enum Getter<R> {
    /// Microseconds since the epoch -> `Timestamp(µs, UTC)`, not null.
    TimeUs(fn(&R) -> u64),
    /// Seconds since the epoch -> `Timestamp(µs, UTC)`, not null.
    TimeSecs(fn(&R) -> u64),
    /// `UInt8`, not null.
    U8(fn(&R) -> u8),
    /// `UInt16`, not null.
    U16(fn(&R) -> u16),
    /// `UInt32`, not null.
    U32(fn(&R) -> u32),
    /// `UInt64`, not null.
    U64(fn(&R) -> u64),
    /// `UInt32`, nullable.
    OptU32(fn(&R) -> Option<u32>),
    /// `UInt64`, nullable.
    OptU64(fn(&R) -> Option<u64>),
    /// `Int32`, nullable.
    OptI32(fn(&R) -> Option<i32>),
    /// `Boolean`, not null.
    Bool(fn(&R) -> bool),
    /// `Utf8`, not null.
    Str(fn(&R) -> &str),
    /// `Utf8`, nullable.
    OptStr(fn(&R) -> Option<&str>),
    /// An IP address as `Utf8`, nullable.
    Ip(fn(&R) -> Option<IpAddr>),
    /// `List<Utf8>`, not null (empty list when absent).
    StrList(fn(&R) -> &[String]),
    /// `List<UInt32>`, not null.
    U32List(fn(&R) -> &[u32]),
    /// A universal tag id (`UInt32`, not null, 0 = unknown): side (0 client, 1 server) and the
    /// index in [`UniversalTags::to_array`] order.
    Tag(u8, usize),
    /// The row's own tag id (tables with [`Table::row_tags`]): `UInt32`, nullable in the schema
    /// (older files lack the column), 0 = unknown; read from [`TaggedRow::tags_0`] at the index
    /// in [`UniversalTags::to_array`] order.
    RowTag(usize),
}

/// One column: name, getter (which fixes the Arrow type) and doc.
pub struct Column<R> {
    /// DeepFlow column name.
    pub name: &'static str,
    /// What the column holds.
    pub doc: &'static str,
    /// How to read it.
    pub get: Getter<R>,
}

impl<R> Column<R> {
    /// The Arrow type of the column.
    pub fn data_type(&self) -> DataType {
        match self.get {
            Getter::TimeUs(_) | Getter::TimeSecs(_) => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Getter::U8(_) => DataType::UInt8,
            Getter::U16(_) => DataType::UInt16,
            Getter::U32(_) | Getter::OptU32(_) | Getter::Tag(..) | Getter::RowTag(_) => DataType::UInt32,
            Getter::U64(_) | Getter::OptU64(_) => DataType::UInt64,
            Getter::OptI32(_) => DataType::Int32,
            Getter::Bool(_) => DataType::Boolean,
            Getter::Str(_) | Getter::OptStr(_) | Getter::Ip(_) => DataType::Utf8,
            Getter::StrList(_) => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            Getter::U32List(_) => DataType::List(Arc::new(Field::new("item", DataType::UInt32, true))),
        }
    }

    /// True when the column may hold nulls.
    pub fn nullable(&self) -> bool {
        matches!(
            self.get,
            Getter::OptU32(_)
                | Getter::OptU64(_)
                | Getter::OptI32(_)
                | Getter::OptStr(_)
                | Getter::Ip(_)
                | Getter::RowTag(_)
        )
    }

    /// The Arrow field, with the doc as `doc` metadata.
    pub fn field(&self) -> Field {
        Field::new(self.name, self.data_type(), self.nullable())
            .with_metadata([("doc".to_string(), self.doc.to_string())].into_iter().collect())
    }

    /// An empty builder for `n` values of this column.
    fn builder(&self, n: usize) -> ColumnBuilder {
        match self.get {
            Getter::TimeUs(_) | Getter::TimeSecs(_) => ColumnBuilder::Time(Vec::with_capacity(n)),
            Getter::U8(_) => ColumnBuilder::U8(Vec::with_capacity(n)),
            Getter::U16(_) => ColumnBuilder::U16(Vec::with_capacity(n)),
            Getter::U32(_) | Getter::Tag(..) | Getter::RowTag(_) => ColumnBuilder::U32(Vec::with_capacity(n)),
            Getter::U64(_) => ColumnBuilder::U64(Vec::with_capacity(n)),
            Getter::OptU32(_) => ColumnBuilder::OptU32(UInt32Builder::with_capacity(n)),
            Getter::OptU64(_) => ColumnBuilder::OptU64(UInt64Builder::with_capacity(n)),
            Getter::OptI32(_) => ColumnBuilder::OptI32(Int32Builder::with_capacity(n)),
            Getter::Bool(_) => ColumnBuilder::Bool(BooleanBuilder::with_capacity(n)),
            Getter::Str(_) => ColumnBuilder::Str(StringBuilder::with_capacity(n, n * 8)),
            Getter::OptStr(_) => ColumnBuilder::Str(StringBuilder::with_capacity(n, n * 16)),
            Getter::Ip(_) => ColumnBuilder::Str(StringBuilder::with_capacity(n, n * 14)),
            Getter::StrList(_) => ColumnBuilder::StrList(ListBuilder::with_capacity(StringBuilder::new(), n)),
            Getter::U32List(_) => ColumnBuilder::U32List(ListBuilder::with_capacity(UInt32Builder::new(), n)),
        }
    }

    /// Appends the column's values of `rows` to `b` (made by [`Column::builder`]).
    fn append(&self, b: &mut ColumnBuilder, rows: &[TaggedRow<R>]) {
        match (&self.get, b) {
            (Getter::TimeUs(f), ColumnBuilder::Time(v)) => v.extend(rows.iter().map(|r| f(&r.row) as i64)),
            (Getter::TimeSecs(f), ColumnBuilder::Time(v)) => {
                v.extend(rows.iter().map(|r| (f(&r.row) as i64).saturating_mul(1_000_000)));
            }
            (Getter::U8(f), ColumnBuilder::U8(v)) => v.extend(rows.iter().map(|r| f(&r.row))),
            (Getter::U16(f), ColumnBuilder::U16(v)) => v.extend(rows.iter().map(|r| f(&r.row))),
            (Getter::U32(f), ColumnBuilder::U32(v)) => v.extend(rows.iter().map(|r| f(&r.row))),
            (Getter::U64(f), ColumnBuilder::U64(v)) => v.extend(rows.iter().map(|r| f(&r.row))),
            (Getter::OptU32(f), ColumnBuilder::OptU32(b)) => rows.iter().for_each(|r| b.append_option(f(&r.row))),
            (Getter::OptU64(f), ColumnBuilder::OptU64(b)) => rows.iter().for_each(|r| b.append_option(f(&r.row))),
            (Getter::OptI32(f), ColumnBuilder::OptI32(b)) => rows.iter().for_each(|r| b.append_option(f(&r.row))),
            (Getter::Bool(f), ColumnBuilder::Bool(b)) => rows.iter().for_each(|r| b.append_value(f(&r.row))),
            (Getter::Str(f), ColumnBuilder::Str(b)) => rows.iter().for_each(|r| b.append_value(f(&r.row))),
            (Getter::OptStr(f), ColumnBuilder::Str(b)) => rows.iter().for_each(|r| b.append_option(f(&r.row))),
            (Getter::Ip(f), ColumnBuilder::Str(b)) => {
                for r in rows {
                    match f(&r.row) {
                        Some(ip) => append_ip(b, ip),
                        None => b.append_null(),
                    }
                }
            }
            (Getter::StrList(f), ColumnBuilder::StrList(b)) => {
                for r in rows {
                    for s in f(&r.row) {
                        b.values().append_value(s);
                    }
                    b.append(true);
                }
            }
            (Getter::U32List(f), ColumnBuilder::U32List(b)) => {
                for r in rows {
                    b.values().append_slice(f(&r.row));
                    b.append(true);
                }
            }
            (Getter::Tag(side, i), ColumnBuilder::U32(v)) => {
                let get = UniversalTags::getter(*i);
                if *side == 0 {
                    v.extend(rows.iter().map(|r| get(&r.tags_0)));
                } else {
                    v.extend(rows.iter().map(|r| get(&r.tags_1)));
                }
            }
            (Getter::RowTag(i), ColumnBuilder::U32(v)) => {
                let get = UniversalTags::getter(*i);
                v.extend(rows.iter().map(|r| get(&r.tags_0)));
            }
            // builders come from `Column::builder` of the same column; a mismatch would leave the
            // column short and `RecordBatch::try_new` would reject the batch
            _ => {}
        }
    }
}

/// A column under construction (see [`Record::to_batch`]).
enum ColumnBuilder {
    Time(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    OptU32(UInt32Builder),
    OptU64(UInt64Builder),
    OptI32(Int32Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
    StrList(ListBuilder<StringBuilder>),
    U32List(ListBuilder<UInt32Builder>),
}

impl ColumnBuilder {
    fn finish(self) -> ArrayRef {
        match self {
            ColumnBuilder::Time(v) => Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC")),
            ColumnBuilder::U8(v) => Arc::new(UInt8Array::from(v)),
            ColumnBuilder::U16(v) => Arc::new(UInt16Array::from(v)),
            ColumnBuilder::U32(v) => Arc::new(UInt32Array::from(v)),
            ColumnBuilder::U64(v) => Arc::new(UInt64Array::from(v)),
            ColumnBuilder::OptU32(mut b) => Arc::new(b.finish()),
            ColumnBuilder::OptU64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::OptI32(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Str(mut b) => Arc::new(b.finish()),
            ColumnBuilder::StrList(mut b) => Arc::new(b.finish()),
            ColumnBuilder::U32List(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Appends the canonical text of `ip` (`std::net::IpAddr`'s `Display`), IPv4 without the
/// formatting machinery.
fn append_ip(b: &mut StringBuilder, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut buf = [0u8; 15];
            let mut n = 0;
            let mut put = |d: u8| {
                if let Some(slot) = buf.get_mut(n) {
                    *slot = d;
                    n += 1;
                }
            };
            for (k, &o) in v4.octets().iter().enumerate() {
                if k > 0 {
                    put(b'.');
                }
                if o >= 100 {
                    put(b'0' + o / 100);
                }
                if o >= 10 {
                    put(b'0' + o / 10 % 10);
                }
                put(b'0' + o % 10);
            }
            b.append_value(std::str::from_utf8(buf.get(..n).unwrap_or(&[])).unwrap_or_default());
        }
        IpAddr::V6(_) => {
            let _ = write!(b, "{ip}");
            b.append_value("");
        }
    }
}

/// A record type the store can write: its table, its columns, and its partitioning time.
pub trait Record: Sized + Send + 'static {
    /// The table the record goes to.
    const TABLE: Table;

    /// The columns, in schema order.
    fn columns() -> &'static [Column<Self>];

    /// The time that picks the row's hourly partition, microseconds since the epoch.
    fn partition_time_us(&self) -> u64;

    /// A rough in-memory size, for the writer's byte-based flush policy.
    fn approx_size(&self) -> usize {
        std::mem::size_of::<Self>() + 2 * std::mem::size_of::<UniversalTags>()
    }

    /// The Arrow schema (cached).
    fn schema() -> SchemaRef;

    /// Builds one batch from tagged rows: blocks of rows small enough to stay in cache, each
    /// appended column by column (one pass over all rows per column would read every row from
    /// memory once per column).
    fn to_batch(rows: &[TaggedRow<Self>]) -> Result<RecordBatch, ArrowError> {
        const BLOCK: usize = 256;
        let columns = Self::columns();
        let mut builders: Vec<ColumnBuilder> = columns.iter().map(|c| c.builder(rows.len())).collect();
        for block in rows.chunks(BLOCK) {
            for (c, b) in columns.iter().zip(builders.iter_mut()) {
                c.append(b, block);
            }
        }
        RecordBatch::try_new(Self::schema(), builders.into_iter().map(ColumnBuilder::finish).collect())
    }
}

fn schema_of<R>(cols: &[Column<R>]) -> SchemaRef {
    Arc::new(Schema::new(cols.iter().map(Column::field).collect::<Vec<_>>()))
}

const TAG_DOCS: [&str; 12] = [
    "region id (dictionary `region`), 0 = unknown",
    "availability zone id (dictionary `az`), 0 = unknown",
    "host id (dictionary `host`), 0 = unknown",
    "VPC id (dictionary `l3_epc`), 0 = unknown",
    "subnet id (dictionary `subnet`), 0 = unknown",
    "Kubernetes cluster id (dictionary `pod_cluster`), 0 = unknown",
    "namespace id (dictionary `pod_ns`), 0 = unknown",
    "node id (dictionary `pod_node`), 0 = unknown",
    "workload id (dictionary `pod_group`), 0 = unknown",
    "pod id (dictionary `pod`), 0 = unknown",
    "service id (dictionary `service`), 0 = unknown",
    "process id (dictionary `gprocess`), 0 = unknown",
];

fn tag_columns<R>(sides: [bool; 2]) -> Vec<Column<R>> {
    let mut v = Vec::new();
    for (side, names) in [(0u8, &TAG_COLUMNS_0), (1u8, &TAG_COLUMNS_1)] {
        if !sides[side as usize] {
            continue;
        }
        for (i, name) in names.iter().enumerate() {
            v.push(Column { name, doc: TAG_DOCS.get(i).copied().unwrap_or(""), get: Getter::Tag(side, i) });
        }
    }
    v
}

/// The suffix-less tag id columns of one-resource tables (`pod_id`, `service_id`, ...).
fn row_tag_columns<R>() -> Vec<Column<R>> {
    TAG_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, name)| Column { name, doc: TAG_DOCS.get(i).copied().unwrap_or(""), get: Getter::RowTag(i) })
        .collect()
}

macro_rules! col {
    ($name:literal, $kind:ident, $doc:literal, |$r:ident| $e:expr) => {
        Column::<R> { name: $name, doc: $doc, get: Getter::$kind(|$r: &R| $e) }
    };
}

static L4_COLUMNS: LazyLock<Vec<Column<L4FlowLog>>> = LazyLock::new(|| {
    type R = L4FlowLog;
    let mut v: Vec<Column<R>> = vec![
        col!("flow_id", U64, "flow id, unique per agent run", |r| r.flow_id),
        col!("start_time", TimeUs, "first packet of the flow (or report period)", |r| r.start_time),
        col!("end_time", TimeUs, "last packet of the flow (or report period)", |r| r.end_time),
        col!("duration", U64, "end_time - start_time, µs", |r| r.duration),
        col!("ip_0", Ip, "client IP (text)", |r| r.ip_0),
        col!("ip_1", Ip, "server IP (text)", |r| r.ip_1),
        col!("client_port", U16, "client port", |r| r.client_port),
        col!("server_port", U16, "server port", |r| r.server_port),
        col!("protocol", Str, "`TCP`, `UDP`, `ICMP`, ...", |r| r.protocol),
        col!("tunnel_type", Str, "outer tunnel (`vxlan`, `gre`, ...) or empty", |r| r.tunnel_type),
        col!("tunnel_id", U32, "tunnel id (VNI, GRE key), 0 = none", |r| r.tunnel_id),
        col!("vlan", U16, "VLAN id, 0 = none", |r| r.vlan),
        col!("packet_tx", U64, "packets client -> server", |r| r.packet_tx),
        col!("packet_rx", U64, "packets server -> client", |r| r.packet_rx),
        col!("byte_tx", U64, "bytes client -> server (frames)", |r| r.byte_tx),
        col!("byte_rx", U64, "bytes server -> client (frames)", |r| r.byte_rx),
        col!("l3_byte_tx", U64, "IP payload bytes client -> server", |r| r.l3_byte_tx),
        col!("l3_byte_rx", U64, "IP payload bytes server -> client", |r| r.l3_byte_rx),
        col!("l4_byte_tx", U64, "L4 payload bytes client -> server", |r| r.l4_byte_tx),
        col!("l4_byte_rx", U64, "L4 payload bytes server -> client", |r| r.l4_byte_rx),
        col!("rtt", U64, "handshake round trip, µs (0 = not measured)", |r| r.rtt),
        col!("rtt_client", U64, "probe to client RTT, µs", |r| r.rtt_client),
        col!("rtt_server", U64, "probe to server RTT, µs", |r| r.rtt_server),
        col!("srt", U64, "system response time (average), µs", |r| r.srt),
        col!("srt_max", U64, "largest system response time, µs", |r| r.srt_max),
        col!("srt_count", U32, "samples in srt", |r| r.srt_count),
        col!("art", U64, "application response time (average), µs", |r| r.art),
        col!("art_max", U64, "largest application response time, µs", |r| r.art_max),
        col!("art_count", U32, "samples in art", |r| r.art_count),
        col!("cit", U64, "client idle time (average), µs", |r| r.cit),
        col!("cit_count", U32, "samples in cit", |r| r.cit_count),
        col!("retrans_tx", U32, "retransmissions client -> server", |r| r.retrans_tx),
        col!("retrans_rx", U32, "retransmissions server -> client", |r| r.retrans_rx),
        col!("zero_win_tx", U32, "zero windows client -> server", |r| r.zero_win_tx),
        col!("zero_win_rx", U32, "zero windows server -> client", |r| r.zero_win_rx),
        col!("syn_count", U32, "SYNs", |r| r.syn_count),
        col!("synack_count", U32, "SYN-ACKs", |r| r.synack_count),
        col!("retrans_syn", U32, "retransmitted SYNs", |r| r.retrans_syn),
        col!("retrans_synack", U32, "retransmitted SYN-ACKs", |r| r.retrans_synack),
        col!("fin_count", U32, "FINs", |r| r.fin_count),
        col!("rst_count", U32, "RSTs", |r| r.rst_count),
        col!("ooo_tx", U32, "out-of-order segments client -> server", |r| r.ooo_tx),
        col!("ooo_rx", U32, "out-of-order segments server -> client", |r| r.ooo_rx),
        col!("gap_tx", U64, "bytes lost to reassembly holes client -> server", |r| r.gap_tx),
        col!("gap_rx", U64, "bytes lost to reassembly holes server -> client", |r| r.gap_rx),
        col!("close_type", U8, "DeepFlow close code (1 normal, 2 server RST, 3 timeout, ...)", |r| r.close_type.code()),
        col!("close_type_name", Str, "name of close_type", |r| r.close_type_name),
        col!("l7_protocol", Str, "application protocol once detected, empty otherwise", |r| r.l7_protocol),
        col!("is_new_flow", Bool, "the flow started in this record (SYN seen)", |r| r.is_new_flow),
    ];
    v.extend(tag_columns([true, true]));
    v
});

fn log_type_name(t: LogType) -> &'static str {
    match t {
        LogType::Request => "request",
        LogType::Response => "response",
        LogType::Session => "session",
    }
}

static L7_COLUMNS: LazyLock<Vec<Column<L7FlowLog>>> = LazyLock::new(|| {
    type R = L7FlowLog;
    let mut v: Vec<Column<R>> = vec![
        col!("start_time", TimeUs, "request start (response start for response-only rows)", |r| r.start_time),
        col!("end_time", TimeUs, "response end (request end for request-only rows)", |r| r.end_time),
        col!("rrt", OptU64, "response time, µs; null without a request/response pair", |r| r.rrt),
        col!("flow_id", U64, "the flow of the row (joins l4_flow_log.flow_id)", |r| r.flow_id),
        col!("ip_0", Ip, "client IP (text)", |r| Some(r.ip_0)),
        col!("ip_1", Ip, "server IP (text)", |r| Some(r.ip_1)),
        col!("client_port", U16, "client port", |r| r.client_port),
        col!("server_port", U16, "server port", |r| r.server_port),
        col!("protocol", Str, "`TCP` or `UDP`", |r| r.protocol),
        col!("tap_side", Str, "observation point (`c`, `s`, `local`, `rest`, ...)", |r| r.tap_side),
        col!("signal_source", Str, "`packet`, `ebpf`, `otel`, ...", |r| r.signal_source),
        col!("l7_protocol", Str, "lowercase protocol name (`http`, `grpc`, `dns`, ...)", |r| r.l7_protocol.name()),
        col!("version", OptStr, "protocol version", |r| r.version.as_deref()),
        col!("type", Str, "`request`, `response` or `session`", |r| log_type_name(r.log_type)),
        col!("request_type", OptStr, "method / command / opcode", |r| r.request_type.as_deref()),
        col!("request_domain", OptStr, "host / authority / database / topic", |r| r.request_domain.as_deref()),
        col!("request_resource", OptStr, "path / query / key / SQL", |r| r.request_resource.as_deref()),
        col!("endpoint", OptStr, "aggregation key for RED metrics", |r| r.endpoint.as_deref()),
        col!("request_id", OptU32, "stream / transaction / correlation id", |r| r.request_id),
        col!("response_status", Str, "`ok`, `client_error`, `server_error`, `timeout`, `unknown`", |r| r
            .response_status
            .name()),
        col!("response_code", OptI32, "status code / rcode / error code", |r| r.response_code),
        col!("response_exception", OptStr, "error text", |r| r.response_exception.as_deref()),
        col!("response_result", OptStr, "result summary (e.g. DNS answers)", |r| r.response_result.as_deref()),
        col!("request_length", OptU64, "request size announced by the protocol", |r| r.request_length),
        col!("response_length", OptU64, "response size announced by the protocol", |r| r.response_length),
        col!("trace_id", OptStr, "distributed-tracing trace id", |r| r.trace_id.as_deref()),
        col!("span_id", OptStr, "span id", |r| r.span_id.as_deref()),
        col!("parent_span_id", OptStr, "parent span id", |r| r.parent_span_id.as_deref()),
        col!("x_request_id_0", OptStr, "request-side X-Request-ID", |r| r.x_request_id_0.as_deref()),
        col!("x_request_id_1", OptStr, "response-side X-Request-ID", |r| r.x_request_id_1.as_deref()),
        col!("http_proxy_client", OptStr, "original client from X-Forwarded-For", |r| r.http_proxy_client.as_deref()),
        col!("process_id_0", OptU32, "client process id (eBPF rows)", |r| r.process_id_0),
        col!("process_id_1", OptU32, "server process id (eBPF rows)", |r| r.process_id_1),
        col!("process_kname_0", OptStr, "client process kernel name, `comm` (eBPF rows)", |r| r
            .process_kname_0
            .as_deref()),
        col!("process_kname_1", OptStr, "server process kernel name, `comm` (eBPF rows)", |r| r
            .process_kname_1
            .as_deref()),
        col!("syscall_trace_id_request", OptU64, "eBPF thread correlation id of the request", |r| r
            .syscall_trace_id_request),
        col!("syscall_trace_id_response", OptU64, "eBPF thread correlation id of the response", |r| r
            .syscall_trace_id_response),
        col!("attribute_names", StrList, "names of extra attributes", |r| &r.attribute_names),
        col!("attribute_values", StrList, "values of extra attributes (parallel to names)", |r| &r.attribute_values),
    ];
    v.extend(tag_columns([true, true]));
    v
});

static NETWORK_COLUMNS: LazyLock<Vec<Column<NetworkMetrics>>> = LazyLock::new(|| {
    type R = NetworkMetrics;
    let mut v: Vec<Column<R>> = vec![
        col!("time", TimeSecs, "window start", |r| r.time),
        col!("interval", U32, "window length, seconds (1 or 60)", |r| r.interval),
        col!("ip_0", Ip, "client IP (text)", |r| r.ip_0),
        col!("ip_1", Ip, "server IP (text)", |r| r.ip_1),
        col!("server_port", U16, "server port", |r| r.server_port),
        col!("protocol", Str, "`TCP`, `UDP`, ...", |r| r.protocol),
        col!("flow", U64, "flows active in the window", |r| r.flow),
        col!("new_flow", U64, "flows started in the window", |r| r.new_flow),
        col!("closed_flow", U64, "flows ended in the window", |r| r.closed_flow),
        col!("packet_tx", U64, "packets client -> server", |r| r.packet_tx),
        col!("packet_rx", U64, "packets server -> client", |r| r.packet_rx),
        col!("byte_tx", U64, "bytes client -> server", |r| r.byte_tx),
        col!("byte_rx", U64, "bytes server -> client", |r| r.byte_rx),
        col!("rtt_sum", U64, "sum of handshake RTTs, µs", |r| r.rtt_sum),
        col!("rtt_count", U64, "RTT samples", |r| r.rtt_count),
        col!("rtt_max", U64, "largest RTT, µs", |r| r.rtt_max),
        col!("srt_sum", U64, "sum of system response times, µs", |r| r.srt_sum),
        col!("srt_count", U64, "srt samples", |r| r.srt_count),
        col!("srt_max", U64, "largest srt, µs", |r| r.srt_max),
        col!("art_sum", U64, "sum of application response times, µs", |r| r.art_sum),
        col!("art_count", U64, "art samples", |r| r.art_count),
        col!("art_max", U64, "largest art, µs", |r| r.art_max),
        col!("retrans_tx", U64, "retransmissions client -> server", |r| r.retrans_tx),
        col!("retrans_rx", U64, "retransmissions server -> client", |r| r.retrans_rx),
        col!("zero_win_tx", U64, "zero windows client -> server", |r| r.zero_win_tx),
        col!("zero_win_rx", U64, "zero windows server -> client", |r| r.zero_win_rx),
        col!("tcp_establish_fail", U64, "connection establishment failures", |r| r.tcp_establish_fail),
        col!("client_establish_fail", U64, "establishment failures blamed on the client", |r| r.client_establish_fail),
        col!("server_establish_fail", U64, "establishment failures blamed on the server", |r| r.server_establish_fail),
        col!("tcp_transfer_fail", U64, "failures after establishment", |r| r.tcp_transfer_fail),
        col!("tcp_rst_fail", U64, "resets", |r| r.tcp_rst_fail),
        col!("tcp_timeout", U64, "transfer timeouts", |r| r.tcp_timeout),
    ];
    v.extend(tag_columns([true, true]));
    v
});

static APPLICATION_COLUMNS: LazyLock<Vec<Column<ApplicationMetrics>>> = LazyLock::new(|| {
    type R = ApplicationMetrics;
    let mut v: Vec<Column<R>> = vec![
        col!("time", TimeSecs, "window start", |r| r.time),
        col!("interval", U32, "window length, seconds (1 or 60)", |r| r.interval),
        col!("ip_1", Ip, "server IP (text)", |r| Some(r.ip_1)),
        col!("server_port", U16, "server port", |r| r.server_port),
        col!("l7_protocol", Str, "lowercase protocol name", |r| r.l7_protocol.name()),
        col!("endpoint", Str, "endpoint (or `other` past the cardinality cap)", |r| r.endpoint.as_str()),
        col!("request", U64, "requests", |r| r.request),
        col!("response", U64, "responses", |r| r.response),
        col!("client_error", U64, "responses with status client_error", |r| r.client_error),
        col!("server_error", U64, "responses with status server_error", |r| r.server_error),
        col!("timeout", U64, "requests that timed out", |r| r.timeout),
        col!("rrt_sum", U64, "sum of response times, µs", |r| r.rrt_sum),
        col!("rrt_count", U64, "response times summed", |r| r.rrt_count),
        col!("rrt_max", U64, "largest response time, µs", |r| r.rrt_max),
        col!(
            "rrt_histogram",
            U32List,
            "log-bucket histogram counts (4 buckets per power of 2, µs; empty = none)",
            |r| &r.rrt_histogram.buckets
        ),
        col!("rrt_p50", OptU64, "median response time, µs", |r| r.rrt_p50),
        col!("rrt_p90", OptU64, "90th percentile response time, µs", |r| r.rrt_p90),
        col!("rrt_p99", OptU64, "99th percentile response time, µs", |r| r.rrt_p99),
    ];
    v.extend(tag_columns([false, true]));
    v
});

static LOG_COLUMNS: LazyLock<Vec<Column<LogRecord>>> = LazyLock::new(|| {
    type R = LogRecord;
    let mut v: Vec<Column<R>> = vec![
        col!("time", TimeUs, "when the event happened (observed time when the source gave none)", |r| r.time),
        col!("observed_time", TimeUs, "when the record was observed by the collector (0 = unknown)", |r| r
            .observed_time),
        col!("severity_number", U8, "OpenTelemetry severity number (9 INFO, 13 WARN, 17 ERROR; 0 unspecified)", |r| r
            .severity_number),
        col!("severity_text", Str, "severity text (`INFO`, `WARN`, ...)", |r| r.severity_text.as_str()),
        col!("body", Str, "log body (non-string bodies as JSON)", |r| r.body.as_str()),
        col!("trace_id", OptStr, "trace id (lowercase hex) of the span the record was emitted in", |r| r
            .trace_id
            .as_deref()),
        col!("span_id", OptStr, "span id (lowercase hex)", |r| r.span_id.as_deref()),
        col!("service_name", OptStr, "`service.name` resource attribute", |r| r.service_name.as_deref()),
        col!("signal_source", Str, "`otel`, ...", |r| r.signal_source),
        col!("attribute_names", StrList, "names of the other record and resource attributes", |r| &r.attribute_names),
        col!("attribute_values", StrList, "values of the attributes (parallel to names)", |r| &r.attribute_values),
    ];
    v.extend(row_tag_columns());
    v
});

static PROFILE_COLUMNS: LazyLock<Vec<Column<ProfileSample>>> = LazyLock::new(|| {
    type R = ProfileSample;
    let mut v: Vec<Column<R>> = vec![
        col!("time", TimeUs, "start of the profiling window", |r| r.time),
        col!("duration", U64, "window length, µs (0 = unknown)", |r| r.duration),
        col!("app_service", Str, "profiled application", |r| r.app_service.as_str()),
        col!("profile_type", Str, "`cpu`, `wall`, `alloc_space`, `inuse_objects`, ...", |r| r.profile_type.as_str()),
        col!("unit", Str, "unit of value: `samples`, `nanoseconds`, `bytes`, `objects`, ...", |r| r.unit.as_str()),
        col!("stack", Str, "frames root first joined by `;` (GROUP BY stack = a flame graph)", |r| r.stack.as_str()),
        col!("value", U64, "total of the stack in the window, in unit", |r| r.value),
        col!("sample_rate", U32, "sampling rate, Hz (0 = unknown)", |r| r.sample_rate),
        col!("spy_name", Str, "profiler (`pyspy`, `gospy`, ...)", |r| r.spy_name.as_str()),
        col!("signal_source", Str, "`pyroscope`, ...", |r| r.signal_source),
        col!("label_names", StrList, "label names (sorted)", |r| &r.label_names),
        col!("label_values", StrList, "label values (parallel to names)", |r| &r.label_values),
    ];
    v.extend(row_tag_columns());
    v
});

fn opt_len(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, String::len)
}

impl Record for L4FlowLog {
    const TABLE: Table = Table::L4FlowLog;
    fn columns() -> &'static [Column<Self>] {
        &L4_COLUMNS
    }
    fn partition_time_us(&self) -> u64 {
        self.start_time
    }
    fn schema() -> SchemaRef {
        static S: LazyLock<SchemaRef> = LazyLock::new(|| schema_of(&L4_COLUMNS));
        S.clone()
    }
}

impl Record for L7FlowLog {
    const TABLE: Table = Table::L7FlowLog;
    fn columns() -> &'static [Column<Self>] {
        &L7_COLUMNS
    }
    fn partition_time_us(&self) -> u64 {
        self.start_time
    }
    fn approx_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + 96
            + opt_len(&self.version)
            + opt_len(&self.request_type)
            + opt_len(&self.request_domain)
            + opt_len(&self.request_resource)
            + opt_len(&self.endpoint)
            + opt_len(&self.response_exception)
            + opt_len(&self.response_result)
            + opt_len(&self.trace_id)
            + opt_len(&self.span_id)
            + opt_len(&self.parent_span_id)
            + opt_len(&self.x_request_id_0)
            + opt_len(&self.x_request_id_1)
            + opt_len(&self.http_proxy_client)
            + opt_len(&self.process_kname_0)
            + opt_len(&self.process_kname_1)
            + self.attribute_names.iter().chain(&self.attribute_values).map(|s| s.len() + 24).sum::<usize>()
    }
    fn schema() -> SchemaRef {
        static S: LazyLock<SchemaRef> = LazyLock::new(|| schema_of(&L7_COLUMNS));
        S.clone()
    }
}

impl Record for NetworkMetrics {
    const TABLE: Table = Table::Network;
    fn columns() -> &'static [Column<Self>] {
        &NETWORK_COLUMNS
    }
    fn partition_time_us(&self) -> u64 {
        self.time.saturating_mul(1_000_000)
    }
    fn schema() -> SchemaRef {
        static S: LazyLock<SchemaRef> = LazyLock::new(|| schema_of(&NETWORK_COLUMNS));
        S.clone()
    }
}

impl Record for ApplicationMetrics {
    const TABLE: Table = Table::Application;
    fn columns() -> &'static [Column<Self>] {
        &APPLICATION_COLUMNS
    }
    fn partition_time_us(&self) -> u64 {
        self.time.saturating_mul(1_000_000)
    }
    fn approx_size(&self) -> usize {
        std::mem::size_of::<Self>() + 96 + self.endpoint.len() + self.rrt_histogram.buckets.len() * 4
    }
    fn schema() -> SchemaRef {
        static S: LazyLock<SchemaRef> = LazyLock::new(|| schema_of(&APPLICATION_COLUMNS));
        S.clone()
    }
}

impl Record for LogRecord {
    const TABLE: Table = Table::Log;
    fn columns() -> &'static [Column<Self>] {
        &LOG_COLUMNS
    }
    fn partition_time_us(&self) -> u64 {
        self.time
    }
    fn approx_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.severity_text.len()
            + self.body.len()
            + opt_len(&self.trace_id)
            + opt_len(&self.span_id)
            + opt_len(&self.service_name)
            + self.attribute_names.iter().chain(&self.attribute_values).map(|s| s.len() + 24).sum::<usize>()
    }
    fn schema() -> SchemaRef {
        static S: LazyLock<SchemaRef> = LazyLock::new(|| schema_of(&LOG_COLUMNS));
        S.clone()
    }
}

impl Record for ProfileSample {
    const TABLE: Table = Table::Profile;
    fn columns() -> &'static [Column<Self>] {
        &PROFILE_COLUMNS
    }
    fn partition_time_us(&self) -> u64 {
        self.time
    }
    fn approx_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.app_service.len()
            + self.profile_type.len()
            + self.unit.len()
            + self.stack.len()
            + self.spy_name.len()
            + self.label_names.iter().chain(&self.label_values).map(|s| s.len() + 24).sum::<usize>()
    }
    fn schema() -> SchemaRef {
        static S: LazyLock<SchemaRef> = LazyLock::new(|| schema_of(&PROFILE_COLUMNS));
        S.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Array;

    #[test]
    fn ip_text_is_display() {
        let ips: Vec<IpAddr> = [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "1.22.133.4",
            "192.168.10.99",
            "100.10.1.0",
            "::",
            "::1",
            "fe80::1:2",
            "::ffff:10.1.2.3",
            "2001:db8::8a2e:370:7334",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let mut b = StringBuilder::new();
        for ip in &ips {
            append_ip(&mut b, *ip);
        }
        b.append_null();
        let a = b.finish();
        for (i, ip) in ips.iter().enumerate() {
            assert_eq!(a.value(i), ip.to_string());
        }
        assert!(a.is_null(ips.len()));
        // every IPv4 octet value, in each position
        let mut b = StringBuilder::new();
        for o in 0..=255u8 {
            append_ip(&mut b, IpAddr::from([o, 255 - o, o / 3, o % 7]));
        }
        let a = b.finish();
        for o in 0..=255u8 {
            assert_eq!(a.value(usize::from(o)), IpAddr::from([o, 255 - o, o / 3, o % 7]).to_string());
        }
    }
}
