//! PostgreSQL frontend/backend protocol v3 (`postgresql`).
//!
//! Messages are `tag | 4-byte big-endian length (including itself) | body`, except the
//! client's first message (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest) which has
//! no tag, and the server's one-byte answer to SSLRequest/GSSENCRequest (`S` → TLS: the flow is
//! handed to the TLS parser, so the handshake is still recorded; `G` → GSSAPI encryption, the
//! parser stops; `N` → plain startup follows).
//!
//! Rows: one per StartupMessage (`Login username: U db: D`), per simple query `Q`, per
//! extended-protocol batch ending with Sync (`P` when the batch parses a statement, else `E`;
//! the statement text comes from the Parse of the executed portal's statement, named or
//! unnamed, possibly sent in an earlier batch), per function call `F`; Terminate `X` and
//! NotificationResponse `A` are one-way rows. The server side accumulates everything up to
//! ReadyForQuery `Z` (so multi-statement queries, COPY in/out and errors inside a pipelined
//! batch all end where the server says it is ready again); the startup exchange also ends at
//! a FATAL ErrorResponse. DataRow and CopyData bodies are skipped without buffering.
//!
//! Fields (L7_FIELDS.md "PostgreSQL"): `request_type` = tag letter, `request_resource` = SQL
//! (capped, optionally obfuscated), `response_result` = SQLSTATE of an ErrorResponse or else
//! the last CommandComplete tag (`SELECT 3`, `INSERT 0 1`), `response_exception` = condition
//! name of the SQLSTATE, attribute `row_effect` = CommandComplete row count. Beyond
//! L7_FIELDS.md: attribute `error_message` = the ErrorResponse `M` field; `request_domain` =
//! database of the StartupMessage (carried on later rows).
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::sql::{self, Dialect, StmtOptions, be32};
use super::{L7Message, L7Parser, MessageKind, ParseCtx, ParseOutcome, Probe};
use crate::config::L7Config;
use crate::error::ParseErrorKind;
use crate::trace::TraceConfig;

// ---------------------------------------------------------------------------------------------
// constants

const PROTOCOL_3: u32 = 196_608;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// Largest message accepted (the server's own limit for most messages is 1 GB).
const MAX_MESSAGE: usize = 1 << 30;
/// Rows emitted without consuming input for Executes skipped after an error (the engine
/// stops a parser after 8 zero-length messages in a row).
const MAX_ABORTED_ROWS: usize = 6;
/// Prepared statements / portals remembered per flow.
const MAX_STATEMENTS: usize = 256;

/// SQLSTATE → condition name (PostgreSQL `errcodes.txt`, the codes seen in practice).
const CONDITIONS: &[(&str, &str)] = &[
    ("02000", "no_data"),
    ("03000", "sql_statement_not_yet_complete"),
    ("08000", "connection_exception"),
    ("08001", "sqlclient_unable_to_establish_sqlconnection"),
    ("08003", "connection_does_not_exist"),
    ("08004", "sqlserver_rejected_establishment_of_sqlconnection"),
    ("08006", "connection_failure"),
    ("08007", "transaction_resolution_unknown"),
    ("08P01", "protocol_violation"),
    ("09000", "triggered_action_exception"),
    ("0A000", "feature_not_supported"),
    ("0B000", "invalid_transaction_initiation"),
    ("0F000", "locator_exception"),
    ("0F001", "invalid_locator_specification"),
    ("0L000", "invalid_grantor"),
    ("0LP01", "invalid_grant_operation"),
    ("0P000", "invalid_role_specification"),
    ("0Z000", "diagnostics_exception"),
    ("20000", "case_not_found"),
    ("21000", "cardinality_violation"),
    ("22000", "data_exception"),
    ("22001", "string_data_right_truncation"),
    ("22003", "numeric_value_out_of_range"),
    ("22004", "null_value_not_allowed"),
    ("22005", "error_in_assignment"),
    ("22007", "invalid_datetime_format"),
    ("22008", "datetime_field_overflow"),
    ("22009", "invalid_time_zone_displacement_value"),
    ("22011", "substring_error"),
    ("22012", "division_by_zero"),
    ("22018", "invalid_character_value_for_cast"),
    ("22019", "invalid_escape_character"),
    ("22021", "character_not_in_repertoire"),
    ("22023", "invalid_parameter_value"),
    ("22025", "invalid_escape_sequence"),
    ("22026", "string_data_length_mismatch"),
    ("22027", "trim_error"),
    ("2201E", "invalid_argument_for_logarithm"),
    ("2201W", "invalid_row_count_in_limit_clause"),
    ("2201X", "invalid_row_count_in_result_offset_clause"),
    ("2202E", "array_subscript_error"),
    ("22030", "duplicate_json_object_key_value"),
    ("22032", "invalid_json_text"),
    ("22P01", "floating_point_exception"),
    ("22P02", "invalid_text_representation"),
    ("22P03", "invalid_binary_representation"),
    ("22P04", "bad_copy_file_format"),
    ("22P05", "untranslatable_character"),
    ("23000", "integrity_constraint_violation"),
    ("23001", "restrict_violation"),
    ("23502", "not_null_violation"),
    ("23503", "foreign_key_violation"),
    ("23505", "unique_violation"),
    ("23514", "check_violation"),
    ("23P01", "exclusion_violation"),
    ("24000", "invalid_cursor_state"),
    ("25000", "invalid_transaction_state"),
    ("25001", "active_sql_transaction"),
    ("25006", "read_only_sql_transaction"),
    ("25P01", "no_active_sql_transaction"),
    ("25P02", "in_failed_sql_transaction"),
    ("25P03", "idle_in_transaction_session_timeout"),
    ("26000", "invalid_sql_statement_name"),
    ("27000", "triggered_data_change_violation"),
    ("28000", "invalid_authorization_specification"),
    ("28P01", "invalid_password"),
    ("2B000", "dependent_privilege_descriptors_still_exist"),
    ("2BP01", "dependent_objects_still_exist"),
    ("2D000", "invalid_transaction_termination"),
    ("2F000", "sql_routine_exception"),
    ("34000", "invalid_cursor_name"),
    ("38000", "external_routine_exception"),
    ("39000", "external_routine_invocation_exception"),
    ("3B000", "savepoint_exception"),
    ("3B001", "invalid_savepoint_specification"),
    ("3D000", "invalid_catalog_name"),
    ("3F000", "invalid_schema_name"),
    ("40000", "transaction_rollback"),
    ("40001", "serialization_failure"),
    ("40002", "transaction_integrity_constraint_violation"),
    ("40003", "statement_completion_unknown"),
    ("40P01", "deadlock_detected"),
    ("42000", "syntax_error_or_access_rule_violation"),
    ("42501", "insufficient_privilege"),
    ("42601", "syntax_error"),
    ("42602", "invalid_name"),
    ("42611", "invalid_column_definition"),
    ("42622", "name_too_long"),
    ("42701", "duplicate_column"),
    ("42702", "ambiguous_column"),
    ("42703", "undefined_column"),
    ("42704", "undefined_object"),
    ("42710", "duplicate_object"),
    ("42712", "duplicate_alias"),
    ("42723", "duplicate_function"),
    ("42725", "ambiguous_function"),
    ("42803", "grouping_error"),
    ("42804", "datatype_mismatch"),
    ("42809", "wrong_object_type"),
    ("42830", "invalid_foreign_key"),
    ("42846", "cannot_coerce"),
    ("42883", "undefined_function"),
    ("428C9", "generated_always"),
    ("42939", "reserved_name"),
    ("42P01", "undefined_table"),
    ("42P02", "undefined_parameter"),
    ("42P03", "duplicate_cursor"),
    ("42P04", "duplicate_database"),
    ("42P05", "duplicate_prepared_statement"),
    ("42P06", "duplicate_schema"),
    ("42P07", "duplicate_table"),
    ("42P08", "ambiguous_parameter"),
    ("42P09", "ambiguous_alias"),
    ("42P10", "invalid_column_reference"),
    ("42P11", "invalid_cursor_definition"),
    ("42P12", "invalid_database_definition"),
    ("42P13", "invalid_function_definition"),
    ("42P14", "invalid_prepared_statement_definition"),
    ("42P15", "invalid_schema_definition"),
    ("42P16", "invalid_table_definition"),
    ("42P17", "invalid_object_definition"),
    ("42P18", "indeterminate_datatype"),
    ("42P19", "invalid_recursion"),
    ("42P20", "windowing_error"),
    ("42P21", "collation_mismatch"),
    ("42P22", "indeterminate_collation"),
    ("44000", "with_check_option_violation"),
    ("53000", "insufficient_resources"),
    ("53100", "disk_full"),
    ("53200", "out_of_memory"),
    ("53300", "too_many_connections"),
    ("53400", "configuration_limit_exceeded"),
    ("54000", "program_limit_exceeded"),
    ("54001", "statement_too_complex"),
    ("54011", "too_many_columns"),
    ("54023", "too_many_arguments"),
    ("55000", "object_not_in_prerequisite_state"),
    ("55006", "object_in_use"),
    ("55P02", "cant_change_runtime_param"),
    ("55P03", "lock_not_available"),
    ("57000", "operator_intervention"),
    ("57014", "query_canceled"),
    ("57P01", "admin_shutdown"),
    ("57P02", "crash_shutdown"),
    ("57P03", "cannot_connect_now"),
    ("57P04", "database_dropped"),
    ("57P05", "idle_session_timeout"),
    ("58000", "system_error"),
    ("58030", "io_error"),
    ("58P01", "undefined_file"),
    ("58P02", "duplicate_file"),
    ("72000", "snapshot_too_old"),
    ("F0000", "config_file_error"),
    ("F0001", "lock_file_exists"),
    ("HV000", "fdw_error"),
    ("P0000", "plpgsql_error"),
    ("P0001", "raise_exception"),
    ("P0002", "no_data_found"),
    ("P0003", "too_many_rows"),
    ("P0004", "assert_failure"),
    ("XX000", "internal_error"),
    ("XX001", "data_corrupted"),
    ("XX002", "index_corrupted"),
];

const CLIENT_CLASSES: &[&str] =
    &["03", "0A", "0B", "0F", "0L", "0P", "20", "22", "23", "26", "2F", "34", "3D", "3F", "42"];
const SERVER_CLASSES: &[&str] = &[
    "08", "09", "0Z", "21", "24", "25", "27", "28", "2B", "2D", "38", "39", "3B", "40", "44", "53", "54", "55", "57",
    "58", "72", "F0", "HV", "P0", "XX",
];

/// Condition name of a SQLSTATE: exact entry, else the class's `xx000` entry, else the code.
pub fn condition_name(code: &str) -> String {
    if let Some((_, n)) = CONDITIONS.iter().find(|(c, _)| *c == code) {
        return (*n).to_string();
    }
    let class = code.get(..2).unwrap_or_default();
    CONDITIONS
        .iter()
        .find(|(c, _)| c.get(..2) == Some(class) && c.get(2..) == Some("000"))
        .map_or_else(|| code.to_string(), |(_, n)| (*n).to_string())
}

/// Status of a SQLSTATE (L7_FIELDS.md class table).
pub fn sqlstate_status(code: &str) -> ResponseStatus {
    if matches!(code, "40001" | "40003" | "40P01") {
        return ResponseStatus::ClientError;
    }
    let class = code.get(..2).unwrap_or_default();
    if CLIENT_CLASSES.contains(&class) {
        ResponseStatus::ClientError
    } else if SERVER_CLASSES.contains(&class) {
        ResponseStatus::ServerError
    } else {
        ResponseStatus::Unknown
    }
}

/// Row count of a CommandComplete tag (INSERT: 3rd word; DELETE/UPDATE/SELECT/MERGE/MOVE/
/// FETCH/COPY: 2nd).
pub fn tag_rows(tag: &str) -> Option<u64> {
    let mut w = tag.split_ascii_whitespace();
    let verb = w.next()?;
    let n = match verb {
        "INSERT" => w.nth(1),
        "DELETE" | "UPDATE" | "SELECT" | "MERGE" | "MOVE" | "FETCH" | "COPY" => w.next(),
        _ => None,
    }?;
    n.parse().ok()
}

/// Inserts into a map that is cleared when it reaches [`MAX_STATEMENTS`] entries.
fn bounded_insert<V>(map: &mut HashMap<Vec<u8>, V>, k: Vec<u8>, v: V) {
    if map.len() >= MAX_STATEMENTS && !map.contains_key(&k) {
        map.clear();
    }
    map.insert(k, v);
}

// ---------------------------------------------------------------------------------------------
// probe

/// Does `data` start like a PostgreSQL client (startup packet, SSLRequest, or a `Q`/`P`
/// message) or server (authentication request) stream?
pub fn probe_start(data: &[u8], dir: Direction) -> Probe {
    let Some(&first) = data.first() else { return Probe::NeedMore };
    if dir == Direction::ClientToServer && first == 0 {
        let (Some(len), Some(code)) = (be32(data, 0), be32(data, 4)) else { return Probe::NeedMore };
        let len = len as usize;
        return match code {
            SSL_REQUEST | GSSENC_REQUEST if len == 8 => Probe::Match,
            CANCEL_REQUEST if len == 16 => Probe::Match,
            PROTOCOL_3 if (9..=10_000).contains(&len) => {
                if data.len() >= len && data.get(len - 1) != Some(&0) {
                    Probe::NotThis
                } else {
                    Probe::Match
                }
            }
            _ => Probe::NotThis,
        };
    }
    let Some(len) = be32(data, 1) else { return Probe::NeedMore };
    let len = len as usize;
    match (dir, first) {
        (Direction::ClientToServer, b'Q' | b'P') => {
            if !(5..=MAX_MESSAGE).contains(&len) {
                return Probe::NotThis;
            }
            let body = data.get(5..(len + 1).min(data.len())).unwrap_or_default();
            if !body.iter().take(64).all(|c| *c == 0 || c.is_ascii_graphic() || c.is_ascii_whitespace() || *c >= 0x80) {
                return Probe::NotThis;
            }
            match data.get(len) {
                Some(0) => Probe::Match,
                Some(_) => Probe::NotThis,
                None if data.len() < 64 => Probe::NeedMore,
                None => Probe::Match,
            }
        }
        (Direction::ServerToClient, b'R') => match be32(data, 5) {
            Some(0..=12) if (8..=2048).contains(&len) => Probe::Match,
            None => Probe::NeedMore,
            _ => Probe::NotThis,
        },
        _ => Probe::NotThis,
    }
}

// ---------------------------------------------------------------------------------------------
// parser

/// What a `Z` (or, during startup, an ErrorResponse) ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// StartupMessage: ends at `Z` or at a (FATAL) ErrorResponse.
    Startup,
    /// Simple query / function call: ends at `Z`.
    Query,
    /// Execute: ends at CommandComplete, EmptyQueryResponse, PortalSuspended or ErrorResponse.
    Exec,
    /// Sync of a batch that parsed statements without executing any (a `P` row): ends at `Z`.
    SyncRow,
    /// Any other Sync: its `Z` produces no row.
    Silent,
}

/// Server messages accumulated since the last `Z`.
#[derive(Debug, Default)]
struct Acc {
    any: bool,
    tag: Option<String>,
    rows: Option<u64>,
    error: Option<(String, String)>,
}

/// Client messages since the last Sync.
#[derive(Debug, Default)]
struct Batch {
    parsed: Option<String>,
    parsed_names: Vec<Vec<u8>>,
    executed: bool,
}

/// The PostgreSQL parser.
pub struct PostgresParser {
    opts: StmtOptions,
    trace: Arc<TraceConfig>,
    partial_limit: usize,
    database: Option<String>,
    await_ssl_answer: bool,
    done: bool,
    /// The server accepted an SSLRequest (`S`).
    tls_switch: bool,
    skip: [usize; 2],
    resync: [bool; 2],
    pending: VecDeque<Expect>,
    acc: Acc,
    batch: Batch,
    /// Executes of a batch skipped by the server after an error: (count, status) of the
    /// responses still to emit for them.
    aborted: (usize, ResponseStatus),
    statements: HashMap<Vec<u8>, String>,
    portals: HashMap<Vec<u8>, Vec<u8>>,
}

impl PostgresParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        PostgresParser {
            opts: StmtOptions::from_config(cfg),
            trace: Arc::new(cfg.trace.clone()),
            partial_limit: (cfg.max_buffered_bytes / 2).clamp(64, 16 * 1024),
            database: None,
            await_ssl_answer: false,
            done: false,
            tls_switch: false,
            skip: [0; 2],
            resync: [false; 2],
            pending: VecDeque::new(),
            acc: Acc::default(),
            batch: Batch::default(),
            aborted: (0, ResponseStatus::Unknown),
            statements: HashMap::new(),
            portals: HashMap::new(),
        }
    }

    fn msg(&self, kind: MessageKind, tag: u8) -> L7Message {
        let mut m = L7Message::new(L7Protocol::PostgreSql, kind);
        m.request_type = Some(char::from(tag).to_string());
        m.request_domain.clone_from(&self.database);
        m
    }

    fn sql_msg(&self, tag: u8, q: &[u8], complete: bool) -> L7Message {
        let mut m = self.msg(MessageKind::Request, tag);
        m.request_resource = Some(self.opts.sql(q, Dialect::Postgres, complete));
        sql::trace_from_comments(&String::from_utf8_lossy(q), &self.trace, &mut m);
        m
    }

    /// A row for a statement remembered from Parse (a `...` suffix marks a captured prefix).
    fn stmt_msg(&self, tag: u8, text: &str) -> L7Message {
        match text.strip_suffix(sql::TRUNCATED) {
            Some(t) => self.sql_msg(tag, t.as_bytes(), false),
            None => self.sql_msg(tag, text.as_bytes(), true),
        }
    }

    /// One untagged client message (startup family).
    fn untagged(&mut self, body: &[u8]) -> Result<Option<L7Message>, ParseErrorKind> {
        let code = be32(body, 0).ok_or(ParseErrorKind::Malformed)?;
        match code {
            SSL_REQUEST | GSSENC_REQUEST => {
                self.await_ssl_answer = true;
                Ok(None)
            }
            CANCEL_REQUEST => {
                let mut m = L7Message::new(L7Protocol::PostgreSql, MessageKind::OneWay);
                m.request_resource = Some("CancelRequest".to_string());
                m.response_status = Some(ResponseStatus::Ok);
                self.done = true;
                Ok(Some(m))
            }
            c if c >> 16 == 3 => {
                let mut user = None;
                let mut db = None;
                let mut o = 4;
                while let Some((k, o2)) = sql::cstr(body, o) {
                    if k.is_empty() {
                        break;
                    }
                    let Some((v, o3)) = sql::cstr(body, o2) else { break };
                    match k {
                        b"user" => user = Some(String::from_utf8_lossy(v).into_owned()),
                        b"database" => db = Some(String::from_utf8_lossy(v).into_owned()),
                        _ => {}
                    }
                    o = o3;
                }
                let user = user.unwrap_or_default();
                // PostgreSQL defaults the database to the user name
                let db = db.filter(|d| !d.is_empty()).unwrap_or_else(|| user.clone());
                self.database = Some(db.clone());
                let mut m = L7Message::new(L7Protocol::PostgreSql, MessageKind::Request);
                m.request_resource = Some(format!("Login username: {user} db: {db}"));
                m.request_domain = Some(db);
                self.pending.push_back(Expect::Startup);
                Ok(Some(m))
            }
            _ => Err(ParseErrorKind::Malformed),
        }
    }

    fn client(&mut self, tag: u8, body: &[u8], complete: bool) -> Result<Option<L7Message>, ParseErrorKind> {
        match tag {
            b'Q' => {
                let q = sql::cstr(body, 0).map_or(body, |(q, _)| q);
                let m = self.sql_msg(tag, q, complete);
                self.pending.push_back(Expect::Query);
                Ok(Some(m))
            }
            b'P' => {
                let (name, o) = sql::cstr(body, 0).ok_or(ParseErrorKind::Malformed)?;
                let (q, complete) = match sql::cstr(body, o) {
                    Some((q, _)) => (q, complete),
                    None => (body.get(o..).unwrap_or_default(), false),
                };
                let mut text = String::from_utf8_lossy(q).into_owned();
                if !complete {
                    text.push_str(sql::TRUNCATED);
                }
                bounded_insert(&mut self.statements, name.to_vec(), text.clone());
                if self.batch.parsed_names.len() < 64 {
                    self.batch.parsed_names.push(name.to_vec());
                }
                self.batch.parsed.get_or_insert(text);
                Ok(None)
            }
            b'B' => {
                let (portal, o) = sql::cstr(body, 0).ok_or(ParseErrorKind::Malformed)?;
                let (stmt, _) = sql::cstr(body, o).ok_or(ParseErrorKind::Malformed)?;
                bounded_insert(&mut self.portals, portal.to_vec(), stmt.to_vec());
                Ok(None)
            }
            b'E' => {
                let (portal, _) = sql::cstr(body, 0).ok_or(ParseErrorKind::Malformed)?;
                let stmt = self.portals.get(portal).cloned().unwrap_or_default();
                let text = self.statements.get(&stmt).cloned().unwrap_or_default();
                // `P` when this batch parsed the statement (DeepFlow's per-packet view), else `E`
                let tag = if self.batch.parsed_names.contains(&stmt) { b'P' } else { b'E' };
                self.batch.executed = true;
                self.pending.push_back(Expect::Exec);
                Ok(Some(self.stmt_msg(tag, &text)))
            }
            b'S' => {
                let batch = std::mem::take(&mut self.batch);
                match batch.parsed {
                    Some(text) if !batch.executed => {
                        self.pending.push_back(Expect::SyncRow);
                        Ok(Some(self.stmt_msg(b'P', &text)))
                    }
                    _ => {
                        self.pending.push_back(Expect::Silent);
                        Ok(None)
                    }
                }
            }
            b'F' => {
                self.pending.push_back(Expect::Query);
                Ok(Some(self.msg(MessageKind::Request, tag)))
            }
            b'X' => {
                let mut m = self.msg(MessageKind::OneWay, tag);
                m.response_status = Some(ResponseStatus::Ok);
                Ok(Some(m))
            }
            b'C' => {
                // Close statement/portal
                let kind = body.first().copied();
                if let Some((name, _)) = sql::cstr(body, 1) {
                    match kind {
                        Some(b'S') => self.statements.remove(name).map(|_| ()),
                        _ => self.portals.remove(name).map(|_| ()),
                    };
                }
                Ok(None)
            }
            b'D' | b'H' | b'd' | b'c' | b'f' | b'p' => Ok(None),
            _ => Err(ParseErrorKind::Malformed),
        }
    }

    fn server(&mut self, tag: u8, body: &[u8]) -> Result<Option<L7Message>, ParseErrorKind> {
        let front = self.pending.front().copied();
        match tag {
            b'Z' => {
                // a Sync answer also ends Executes the server never answered
                while self.pending.front() == Some(&Expect::Exec) {
                    self.pending.pop_front();
                    self.aborted.0 += 1;
                }
                return Ok(self.finish());
            }
            b'C' | b'I' | b's' => {
                if tag == b'C' {
                    let t = sql::cstr(body, 0).map_or(body, |(t, _)| t);
                    let t = String::from_utf8_lossy(t).into_owned();
                    if let Some(n) = tag_rows(&t) {
                        self.acc.rows = Some(self.acc.rows.unwrap_or(0).saturating_add(n));
                    }
                    self.acc.tag = Some(t);
                }
                if front == Some(Expect::Exec) {
                    self.acc.any = true;
                    return Ok(self.finish());
                }
            }
            b'E' => {
                let mut code = String::new();
                let mut message = String::new();
                let mut o = 0;
                while let Some(&f) = body.get(o) {
                    if f == 0 {
                        break;
                    }
                    let Some((v, o2)) = sql::cstr(body, o + 1) else { break };
                    match f {
                        b'C' => code = String::from_utf8_lossy(v).into_owned(),
                        b'M' => message = self.opts.text(v),
                        _ => {}
                    }
                    o = o2;
                }
                if self.acc.error.is_none() {
                    self.acc.error = Some((code, message));
                }
                if matches!(front, Some(Expect::Startup | Expect::Exec)) {
                    self.acc.any = true;
                    let m = self.finish();
                    // the server skips the rest of the batch up to Sync
                    while self.pending.front() == Some(&Expect::Exec) {
                        self.pending.pop_front();
                        self.aborted.0 += 1;
                    }
                    if let Some(st) = m.as_ref().and_then(|m| m.response_status) {
                        self.aborted.1 = st;
                    }
                    return Ok(m);
                }
            }
            b'A' => {
                let mut m = self.msg(MessageKind::OneWay, tag);
                m.request_domain = None;
                if let Some((ch, o)) = sql::cstr(body, 4) {
                    m.request_resource = Some(self.opts.text(ch));
                    if let Some((payload, _)) = sql::cstr(body, o) {
                        m.attr("payload", self.opts.text(payload));
                    }
                }
                m.response_status = Some(ResponseStatus::Ok);
                return Ok(Some(m));
            }
            b'R' | b'S' | b'K' | b'T' | b'D' | b'1' | b'2' | b'3' | b'n' | b't' | b'G' | b'H' | b'W' | b'd' | b'c'
            | b'N' | b'V' | b'v' => {}
            _ => return Err(ParseErrorKind::Malformed),
        }
        if !matches!(tag, b'N' | b'S') {
            self.acc.any = true;
        }
        Ok(None)
    }

    /// Response of an Execute the server skipped after an earlier error of its batch.
    fn aborted_response(&mut self) -> L7Message {
        self.aborted.0 -= 1;
        let mut m = L7Message::new(L7Protocol::PostgreSql, MessageKind::Response);
        m.response_status = Some(self.aborted.1);
        m.response_exception = Some("not executed: an earlier statement of the batch failed".to_string());
        m
    }

    /// Ends the response unit.
    fn finish(&mut self) -> Option<L7Message> {
        let acc = std::mem::take(&mut self.acc);
        let expect = self.pending.pop_front();
        if expect == Some(Expect::Silent) || (expect.is_none() && !acc.any) {
            return None;
        }
        let mut m = L7Message::new(L7Protocol::PostgreSql, MessageKind::Response);
        match acc.error {
            Some((code, message)) => {
                m.response_status = Some(sqlstate_status(&code));
                m.response_exception = Some(condition_name(&code));
                m.response_result = Some(code);
                if !message.is_empty() {
                    m.attr("error_message", message);
                }
            }
            None => {
                m.response_status = Some(ResponseStatus::Ok);
                m.response_result = acc.tag;
                if let Some(n) = acc.rows {
                    m.attr("row_effect", n.to_string());
                }
            }
        }
        Some(m)
    }

    fn plausible(data: &[u8], dir: Direction) -> bool {
        let (Some(&tag), Some(len)) = (data.first(), be32(data, 1)) else { return false };
        let len = len as usize;
        let ok_tag = match dir {
            Direction::ClientToServer => b"QPBEDSHCXFdcfp".contains(&tag),
            Direction::ServerToClient => b"ZCETDIRSKN123ntsGHWdcAVv".contains(&tag),
        };
        ok_tag && (4..=MAX_MESSAGE).contains(&len) && (data.len() == len + 1 || data.len() > len + 5)
    }
}

impl L7Parser for PostgresParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::PostgreSql
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 5432
    }

    fn probe(&self, data: &[u8], dir: Direction, _flow: &FlowInfo) -> Probe {
        probe_start(data, dir)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        let mut p = PostgresParser::new(&L7Config::default());
        p.opts = self.opts;
        p.trace = Arc::clone(&self.trace);
        p.partial_limit = self.partial_limit;
        Box::new(p)
    }

    fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome {
        let d = ctx.dir.index();
        if self.done {
            return ParseOutcome::Skip(data.len().max(1));
        }
        if let Some(s) = self.skip.get_mut(d)
            && *s > 0
        {
            let n = (*s).min(data.len());
            *s -= n;
            return ParseOutcome::Skip(n.max(1));
        }
        if ctx.dir == Direction::ServerToClient && self.aborted.0 > 0 {
            // one row per skipped Execute, without consuming input (the engine tolerates a
            // few zero-length messages in a row; more than that are folded into the error)
            if self.aborted.0 > MAX_ABORTED_ROWS {
                self.aborted.0 = MAX_ABORTED_ROWS;
            }
            return ParseOutcome::message(self.aborted_response(), 0);
        }
        let Some(&first) = data.first() else { return ParseOutcome::NeedMore(1) };
        if ctx.dir == Direction::ServerToClient && self.await_ssl_answer {
            self.await_ssl_answer = false;
            match first {
                b'S' | b'G' => {
                    // `S`: TLS follows (handed to the TLS parser, see `upgrade`); `G`: GSSAPI
                    // encryption, nothing more to parse
                    self.done = true;
                    self.tls_switch = first == b'S';
                    return ParseOutcome::Skip(1);
                }
                b'N' => return ParseOutcome::Skip(1),
                _ => {}
            }
        }
        if self.resync.get(d).copied().unwrap_or(false) {
            if data.len() < 5 {
                return ParseOutcome::NeedMore(5 - data.len());
            }
            if !Self::plausible(data, ctx.dir) {
                return ParseOutcome::Skip(data.len());
            }
            if let Some(r) = self.resync.get_mut(d) {
                *r = false;
            }
        }
        // untagged startup-family message
        if ctx.dir == Direction::ClientToServer && first == 0 {
            let Some(len) = be32(data, 0) else { return ParseOutcome::NeedMore(4 - data.len()) };
            let len = len as usize;
            if !(8..=10_000).contains(&len) {
                return ParseOutcome::Error(ParseErrorKind::Malformed);
            }
            let Some(body) = data.get(4..len) else { return ParseOutcome::NeedMore(len - data.len()) };
            return match self.untagged(body) {
                Ok(Some(m)) => ParseOutcome::message(m, len),
                Ok(None) => ParseOutcome::Skip(len),
                Err(e) => ParseOutcome::Error(e),
            };
        }
        let Some(len) = be32(data, 1) else { return ParseOutcome::NeedMore(5 - data.len()) };
        let len = len as usize;
        if !(4..=MAX_MESSAGE).contains(&len) {
            return ParseOutcome::Error(ParseErrorKind::Malformed);
        }
        let body_len = len - 4;
        // row data and COPY data are skipped without buffering
        let skippable = matches!(first, b'D' | b'd') || (ctx.dir == Direction::ClientToServer && first == b'p');
        let want = if skippable { 0 } else { body_len.min(self.partial_limit) };
        if data.len() < 5 + want {
            return ParseOutcome::NeedMore(5 + want - data.len());
        }
        let avail = (data.len() - 5).min(body_len);
        let body = data.get(5..5 + avail).unwrap_or_default();
        if let Some(s) = self.skip.get_mut(d) {
            *s = body_len - avail;
        }
        let consumed = 5 + avail;
        let res = match ctx.dir {
            Direction::ClientToServer => self.client(first, body, avail == body_len),
            Direction::ServerToClient => self.server(first, body),
        };
        match res {
            Ok(Some(m)) => ParseOutcome::message(m, consumed),
            Ok(None) => ParseOutcome::Skip(consumed),
            Err(e) => {
                if let Some(s) = self.skip.get_mut(d) {
                    *s = 0;
                }
                ParseOutcome::Error(e)
            }
        }
    }

    fn on_gap(&mut self, dir: Direction) {
        let d = dir.index();
        if let Some(s) = self.skip.get_mut(d) {
            *s = 0;
        }
        if let Some(r) = self.resync.get_mut(d) {
            *r = true;
        }
        match dir {
            Direction::ClientToServer => self.batch = Batch::default(),
            Direction::ServerToClient => {
                self.acc = Acc::default();
                self.aborted.0 = 0;
            }
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }

    /// After `S` the connection continues as TLS: the TLS parser takes over the flow.
    fn upgrade(&mut self, cfg: &L7Config) -> Option<Box<dyn L7Parser>> {
        if !std::mem::take(&mut self.tls_switch) || !cfg.is_enabled(L7Protocol::Tls) {
            return None;
        }
        Some(Box::new(super::tls::TlsParser::new(cfg)))
    }
}

// ---------------------------------------------------------------------------------------------
// tests

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::l7::sql::testutil::*;
    use deepflow_core::record::LogType;

    fn m(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }
    fn cs(parts: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in parts {
            v.extend_from_slice(p.as_bytes());
            v.push(0);
        }
        v
    }
    fn startup(user: &str, db: &str) -> Vec<u8> {
        let mut b = PROTOCOL_3.to_be_bytes().to_vec();
        b.extend(cs(&["user", user, "database", db, "application_name", "psql", ""]));
        let mut v = ((b.len() + 4) as u32).to_be_bytes().to_vec();
        v.extend(b);
        v
    }
    fn auth(code: u32, extra: &[u8]) -> Vec<u8> {
        let mut b = code.to_be_bytes().to_vec();
        b.extend_from_slice(extra);
        m(b'R', &b)
    }
    fn ready() -> Vec<u8> {
        m(b'Z', b"I")
    }
    fn error(code: &str, msg: &str) -> Vec<u8> {
        let mut b = b"SERROR\0VERROR\0".to_vec();
        b.push(b'C');
        b.extend(cs(&[code]));
        b.push(b'M');
        b.extend(cs(&[msg, ""]));
        m(b'E', &b)
    }
    fn rows(n: usize) -> Vec<u8> {
        let mut v = m(b'T', b"\x00\x01id\0\x00\x00\x40\x01\x00\x01\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00");
        for i in 0..n {
            let s = i.to_string();
            let mut b = vec![0, 1];
            b.extend_from_slice(&(s.len() as u32).to_be_bytes());
            b.extend_from_slice(s.as_bytes());
            v.extend(m(b'D', &b));
        }
        v.extend(m(b'C', &cs(&[&format!("SELECT {n}")])));
        v
    }

    fn conversation() -> Vec<(Direction, Vec<u8>)> {
        let ssl = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f].to_vec();
        let mut login_ok = auth(0, b"");
        login_ok.extend(m(b'S', &cs(&["server_version", "16.2"])));
        login_ok.extend(m(b'K', &[0, 0, 0, 7, 0, 0, 0, 9]));
        login_ok.extend(ready());
        let mut q_resp = rows(3);
        q_resp.extend(ready());
        let mut multi = m(b'C', &cs(&["INSERT 0 2"]));
        multi.extend(error("42P01", "relation \"nope\" does not exist"));
        multi.extend(ready());
        // pipelined extended: named statement prepared once, executed twice; unnamed errors
        let mut ext = m(b'P', &{
            let mut b = cs(&["s1", "SELECT id FROM users WHERE id = $1"]);
            b.extend_from_slice(&[0, 0]);
            b
        });
        let bind = |portal: &str, stmt: &str| {
            let mut b = cs(&[portal, stmt]);
            b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, b'7', 0, 0]);
            m(b'B', &b)
        };
        ext.extend(bind("", "s1"));
        ext.extend(m(b'D', b"P\0"));
        ext.extend(m(b'E', &[0, 0, 0, 0, 0]));
        ext.extend(m(b'S', b""));
        ext.extend(bind("", "s1"));
        ext.extend(m(b'E', &[0, 0, 0, 0, 0]));
        ext.extend(m(b'S', b""));
        let mut bad = cs(&["", "SELEC 1"]);
        bad.extend_from_slice(&[0, 0]);
        ext.extend(m(b'P', &bad));
        ext.extend(bind("", ""));
        ext.extend(m(b'E', &[0, 0, 0, 0, 0]));
        ext.extend(m(b'S', b""));
        let mut ext_resp = m(b'1', b"");
        ext_resp.extend(m(b'2', b""));
        ext_resp.extend(rows(1));
        ext_resp.extend(ready());
        ext_resp.extend(m(b'2', b""));
        ext_resp.extend(rows(1));
        ext_resp.extend(ready());
        ext_resp.extend(error("42601", "syntax error at or near \"SELEC\""));
        ext_resp.extend(ready());
        let copy_resp = m(b'G', &[0, 0, 0]);
        let mut copy_done = m(b'C', &cs(&["COPY 2"]));
        copy_done.extend(ready());
        let mut notify = m(b'A', &{
            let mut b = 5u32.to_be_bytes().to_vec();
            b.extend(cs(&["jobs", "hello"]));
            b
        });
        notify.extend(m(b'N', &cs(&["SNOTICE", "Mnote", ""])));
        vec![
            (C, ssl),
            (S, b"N".to_vec()),
            (C, startup("alice", "shop")),
            (S, auth(5, b"salt")),
            (C, m(b'p', b"md5abcdef\0")),
            (S, login_ok),
            (
                C,
                m(
                    b'Q',
                    &cs(&[
                        "/* traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 */ SELECT id FROM t",
                    ]),
                ),
            ),
            (S, q_resp),
            (C, m(b'Q', &cs(&["INSERT INTO t VALUES (1),(2); SELECT * FROM nope"]))),
            (S, multi),
            (C, ext),
            (S, ext_resp),
            (C, m(b'Q', &cs(&["COPY t FROM STDIN"]))),
            (S, copy_resp),
            (C, [m(b'd', b"1\n2\n"), m(b'c', b"")].concat()),
            (S, copy_done),
            (S, notify),
            (C, m(b'X', b"")),
        ]
    }

    #[test]
    fn full_conversation() {
        let rows = run(5432, &conversation());
        let t: Vec<_> = rows.iter().map(|r| r.request_type.clone().unwrap_or_default()).collect();
        assert_eq!(t, ["", "Q", "Q", "P", "E", "P", "Q", "A", "X"]);
        assert_eq!(rows[0].request_resource.as_deref(), Some("Login username: alice db: shop"));
        assert_eq!(rows[0].request_domain.as_deref(), Some("shop"));
        assert_eq!(rows[0].response_status, ResponseStatus::Ok);
        assert_eq!(rows[1].response_result.as_deref(), Some("SELECT 3"));
        assert_eq!(rows[1].attribute_values, ["3"]);
        assert_eq!(rows[1].trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!(rows[2].response_result.as_deref(), Some("42P01"));
        assert_eq!(rows[2].response_exception.as_deref(), Some("undefined_table"));
        assert_eq!(rows[2].response_status, ResponseStatus::ClientError);
        assert_eq!(rows[3].request_resource.as_deref(), Some("SELECT id FROM users WHERE id = $1"));
        assert_eq!(rows[4].request_resource.as_deref(), Some("SELECT id FROM users WHERE id = $1"));
        assert_eq!(rows[4].response_result.as_deref(), Some("SELECT 1"));
        assert_eq!(rows[5].request_resource.as_deref(), Some("SELEC 1"));
        assert_eq!(rows[5].response_exception.as_deref(), Some("syntax_error"));
        assert_eq!(rows[6].response_result.as_deref(), Some("COPY 2"));
        assert_eq!(rows[7].request_resource.as_deref(), Some("jobs"));
        assert_eq!(rows[7].log_type, LogType::Session);
        assert!(rows.iter().all(|r| r.response_status != ResponseStatus::Timeout));
    }

    #[test]
    fn split_and_truncation() {
        assert_split_invariant(L7Config::default(), 5432, &conversation());
        assert_truncation_safe(5432, &conversation());
    }

    #[test]
    fn ssl_accepted_and_auth_failure() {
        let rows = run(
            5432,
            &[(C, vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]), (S, b"S".to_vec()), (C, vec![0x16, 3, 1, 0, 1, 0])],
        );
        assert!(rows.is_empty());
        let rows = run(5432, &[(C, startup("bob", "")), (S, error("28P01", "password authentication failed"))]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].request_domain.as_deref(), Some("bob"));
        assert_eq!(rows[0].response_status, ResponseStatus::ServerError);
        assert_eq!(rows[0].response_exception.as_deref(), Some("invalid_password"));
    }

    #[test]
    fn big_rows_and_obfuscation() {
        let mut b = vec![0, 1];
        b.extend_from_slice(&300_000u32.to_be_bytes());
        b.extend(std::iter::repeat_n(b'x', 300_000));
        let mut resp = m(b'D', &b);
        resp.extend(m(b'C', &cs(&["SELECT 1"])));
        resp.extend(ready());
        let cfg = L7Config { db_obfuscation: true, ..L7Config::default() };
        let segs: Vec<_> = std::iter::once((C, m(b'Q', &cs(&["SELECT * FROM t WHERE s = 'pw' AND n = 3"]))))
            .chain(resp.chunks(1448).map(|c| (S, c.to_vec())))
            .collect();
        let (rows, counters) = run_cfg(cfg, 5432, &segs);
        assert_eq!(counters.oversize, 0);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].request_resource.as_deref(), Some("SELECT * FROM t WHERE s = ? AND n = ?"));
        assert_eq!(rows[0].response_result.as_deref(), Some("SELECT 1"));
    }

    #[test]
    fn pipelined_batch_with_error() {
        let exec = |sql: &str| {
            let mut p = cs(&["", sql]);
            p.extend_from_slice(&[0, 0]);
            let mut v = m(b'P', &p);
            v.extend(m(b'B', &[0, 0, 0, 0, 0, 0, 0, 0]));
            v.extend(m(b'E', &[0, 0, 0, 0, 0]));
            v
        };
        let mut req = exec("SELECT 1");
        req.extend(exec("SELECT 1/0"));
        req.extend(exec("SELECT 3"));
        req.extend(exec("SELECT 4"));
        req.extend(m(b'S', b""));
        let mut resp = [m(b'1', b""), m(b'2', b""), rows(1)].concat();
        resp.extend(m(b'1', b""));
        resp.extend(m(b'2', b""));
        resp.extend(error("22012", "division by zero"));
        let segs =
            vec![(C, req), (S, resp), (S, ready()), (C, m(b'Q', &cs(&["SELECT 5"]))), (S, [rows(1), ready()].concat())];
        let rows = run(5432, &segs);
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.request_resource.clone().unwrap(), r.response_status, r.response_result.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("SELECT 1".to_string(), ResponseStatus::Ok, Some("SELECT 1".to_string())),
                ("SELECT 1/0".to_string(), ResponseStatus::ClientError, Some("22012".to_string())),
                ("SELECT 3".to_string(), ResponseStatus::ClientError, None),
                ("SELECT 4".to_string(), ResponseStatus::ClientError, None),
                ("SELECT 5".to_string(), ResponseStatus::Ok, Some("SELECT 1".to_string())),
            ]
        );
        assert_split_invariant(L7Config::default(), 5432, &segs);
    }

    #[test]
    fn tables() {
        assert_eq!(tag_rows("INSERT 0 5"), Some(5));
        assert_eq!(tag_rows("UPDATE 2"), Some(2));
        assert_eq!(tag_rows("CREATE TABLE"), None);
        assert_eq!(sqlstate_status("40P01"), ResponseStatus::ClientError);
        assert_eq!(sqlstate_status("40002"), ResponseStatus::ServerError);
        assert_eq!(sqlstate_status("ZZ123"), ResponseStatus::Unknown);
        assert_eq!(condition_name("42999"), "syntax_error_or_access_rule_violation");
        assert_eq!(condition_name("ZZ123"), "ZZ123");
    }

    #[test]
    fn fuzz_50k() {
        let seeds = vec![conversation(), vec![(C, m(b'Q', &cs(&["select 1"]))), (S, [rows(2), ready()].concat())]];
        fuzz(5432, &seeds, 50_000, 0x5eed_5432);
    }
}
