//! MySQL / MariaDB client/server protocol (`mysql`).
//!
//! Packets are `3-byte length | seq id | payload`; a 0xffffff length continues in the next
//! packet. The parser follows the connection phase (server greeting, login request, auth
//! exchange, SSL request → the flow is handed to the TLS parser so the handshake is still recorded;
//! compression negotiated → the login row gets attribute `compression=zlib` and the rest of
//! the flow is skipped: compressed packets are recognized, not decoded) and the
//! command phase: every command starts a packet with seq id 0 (other client packets are auth
//! or LOCAL INFILE data and are skipped), the server answers with OK / ERR / EOF or a result
//! set (column count, column definitions, [EOF], rows, EOF/OK terminator, possibly more result
//! sets) which is consumed packet by packet without buffering it.
//!
//! Fields (L7_FIELDS.md "MySQL"): `version` = greeting protocol version (carried on every row),
//! `request_type` = command name, `request_resource` = SQL (capped, optionally obfuscated) or
//! `Login username: U db: D`, `endpoint` derived from the SQL, `request_id` = statement id,
//! `response_code`/`response_exception` from ERR, attribute `row_effect` for INSERT/UPDATE/
//! DELETE. Beyond L7_FIELDS.md: `response_result` = affected rows (OK) or rows returned
//! (result set); `request_domain` = the login database (updated by COM_INIT_DB);
//! COM_STMT_EXECUTE shows the prepared SQL and its bound parameters as attribute `parameters`;
//! login rows carry attribute `server_version`.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use deepflow_core::record::{L7Protocol, ResponseStatus};
use deepflow_core::{Direction, FlowInfo};

use super::sql::{self, Dialect, StmtOptions, le16, le24, le32, le64};
use super::{L7Message, L7Parser, MessageKind, ParseCtx, ParseOutcome, Probe};
use crate::config::L7Config;
use crate::error::ParseErrorKind;
use crate::trace::TraceConfig;

// ---------------------------------------------------------------------------------------------
// constants

const HEADER: usize = 4;
const MAX_PAYLOAD: usize = 0xff_ffff;

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_FIELD_LIST: u8 = 0x04;
const COM_STATISTICS: u8 = 0x09;
const COM_CHANGE_USER: u8 = 0x11;
const COM_BINLOG_DUMP: u8 = 0x12;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_STMT_CLOSE: u8 = 0x19;
const COM_STMT_RESET: u8 = 0x1a;
const COM_STMT_FETCH: u8 = 0x1c;
const COM_BINLOG_DUMP_GTID: u8 = 0x1e;

const COMMAND_NAMES: [&str; 32] = [
    "COM_SLEEP",
    "COM_QUIT",
    "COM_INIT_DB",
    "COM_QUERY",
    "COM_FIELD_LIST",
    "COM_CREATE_DB",
    "COM_DROP_DB",
    "COM_REFRESH",
    "COM_SHUTDOWN",
    "COM_STATISTICS",
    "COM_PROCESS_INFO",
    "COM_CONNECT",
    "COM_PROCESS_KILL",
    "COM_DEBUG",
    "COM_PING",
    "COM_TIME",
    "COM_DELAYED_INSERT",
    "COM_CHANGE_USER",
    "COM_BINLOG_DUMP",
    "COM_TABLE_DUMP",
    "COM_CONNECT_OUT",
    "COM_REGISTER_SLAVE",
    "COM_STMT_PREPARE",
    "COM_STMT_EXECUTE",
    "COM_STMT_SEND_LONG_DATA",
    "COM_STMT_CLOSE",
    "COM_STMT_RESET",
    "COM_SET_OPTION",
    "COM_STMT_FETCH",
    "COM_DAEMON",
    "COM_BINLOG_DUMP_GTID",
    "COM_RESET_CONNECTION",
];

const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
const CLIENT_COMPRESS: u32 = 0x20;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_SSL: u32 = 0x800;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH_LENENC: u32 = 0x20_0000;
const CLIENT_DEPRECATE_EOF: u32 = 0x100_0000;
const CLIENT_QUERY_ATTRIBUTES: u32 = 0x800_0000;
const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;

/// Prepared statements remembered per flow.
const MAX_STATEMENTS: usize = 256;
/// Bound parameters rendered per execution.
const MAX_PARAMS: usize = 64;

/// Name of a command byte.
pub fn command_name(cmd: u8) -> Option<&'static str> {
    COMMAND_NAMES.get(usize::from(cmd)).copied()
}

/// Length-encoded integer at `off`: (value, offset after).
fn lenenc(b: &[u8], off: usize) -> Option<(u64, usize)> {
    match *b.get(off)? {
        v @ 0..=0xfa => Some((u64::from(v), off + 1)),
        0xfc => Some((u64::from(le16(b, off + 1)?), off + 3)),
        0xfd => Some((le24(b, off + 1)? as u64, off + 4)),
        0xfe => Some((le64(b, off + 1)?, off + 9)),
        _ => None,
    }
}

/// Length-encoded string at `off`: (bytes, offset after).
fn lenenc_str(b: &[u8], off: usize) -> Option<(&[u8], usize)> {
    let (n, o) = lenenc(b, off)?;
    let n = usize::try_from(n).ok()?;
    Some((b.get(o..o.checked_add(n)?)?, o + n))
}

// ---------------------------------------------------------------------------------------------
// probe

/// Packet header at the start of `data`: (payload length, seq id).
fn header(data: &[u8]) -> Option<(usize, u8)> {
    Some((le24(data, 0)?, *data.get(3)?))
}

/// Does `data` start with a server greeting (server → client) or a command (client → server)?
pub fn probe_start(data: &[u8], dir: Direction) -> Probe {
    let Some((len, seq)) = header(data) else { return Probe::NeedMore };
    if len == 0 || seq != 0 {
        return Probe::NotThis;
    }
    let Some(&first) = data.get(HEADER) else { return Probe::NeedMore };
    let payload = data.get(HEADER..).unwrap_or_default();
    match dir {
        Direction::ServerToClient => {
            if first != 10 && first != 9 {
                return Probe::NotThis;
            }
            if !(20..=1024).contains(&len) {
                return Probe::NotThis;
            }
            let ver = payload.get(1..).unwrap_or_default();
            match memchr::memchr(0, ver) {
                Some(n) if n > 0 && ver.get(..n).is_some_and(|v| v.iter().all(|c| c.is_ascii_graphic())) => {
                    if ver.first().is_some_and(u8::is_ascii_digit) { Probe::Match } else { Probe::NotThis }
                }
                Some(_) => Probe::NotThis,
                None if ver.len() < 64 && ver.iter().all(|c| c.is_ascii_graphic()) && payload.len() < len => {
                    Probe::NeedMore
                }
                None => Probe::NotThis,
            }
        }
        Direction::ClientToServer => {
            if data.len() > HEADER + len && data.len() < HEADER + len + HEADER {
                return Probe::NotThis;
            }
            match first {
                COM_QUERY | COM_STMT_PREPARE | COM_INIT_DB => {
                    let text = payload.get(1..len.min(payload.len()).min(32)).unwrap_or_default();
                    if len < 2 || !text.iter().all(|c| c.is_ascii_graphic() || c.is_ascii_whitespace() || *c >= 0x80) {
                        Probe::NotThis
                    } else if payload.len() < len.min(32) {
                        Probe::NeedMore
                    } else {
                        Probe::Match
                    }
                }
                0x0e | COM_QUIT if len == 1 => Probe::Match,
                COM_STMT_EXECUTE | COM_STMT_CLOSE if (5..=MAX_PAYLOAD).contains(&len) && data.len() == HEADER + len => {
                    Probe::Match
                }
                _ => Probe::NotThis,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// parser state

/// What the server's next response answers.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Login request / COM_CHANGE_USER: auth switch and more-data packets precede OK/ERR.
    Login { compress: bool },
    /// A result set, OK or ERR. `dml` = the statement's first word is INSERT/UPDATE/DELETE.
    Query { dml: bool },
    /// COM_STMT_PREPARE: PREPARE_OK carries the statement id.
    Prepare { sql: String },
    /// COM_FIELD_LIST: column definitions until EOF.
    FieldList,
    /// COM_STATISTICS: one string packet.
    Stats,
    /// COM_STMT_FETCH: rows until EOF.
    Fetch,
}

/// Where we are inside a multi-packet response.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Resp {
    /// At the first packet of a response.
    Start,
    /// Column definitions of a result set.
    Cols { left: u64 },
    /// The EOF after the column definitions.
    ColsEof,
    /// Rows until the EOF/OK terminator.
    Rows,
    /// LOCAL INFILE sent; waiting for the final OK/ERR.
    Infile,
    /// Definitions after PREPARE_OK (skipped).
    Defs { left: u64 },
}

#[derive(Debug, Clone, Default)]
struct Stmt {
    sql: String,
    params: u16,
    types: Vec<(u8, bool)>,
}

/// The MySQL parser.
pub struct MysqlParser {
    opts: StmtOptions,
    trace: Arc<TraceConfig>,
    partial_limit: usize,
    version: Option<String>,
    server_version: Option<String>,
    server_caps: u32,
    client_caps: u32,
    database: Option<String>,
    /// The greeting was seen; the next client packet (seq 1) is the login request.
    await_login: bool,
    done: bool,
    /// The client sent an SSLRequest: the rest of the flow is TLS (handed to the TLS parser).
    tls_switch: bool,
    skip: [usize; 2],
    resync: [bool; 2],
    pending: VecDeque<Expect>,
    resp: Resp,
    rows: u64,
    stmts: HashMap<u32, Stmt>,
}

impl MysqlParser {
    /// A prototype configured from `cfg`.
    pub fn new(cfg: &L7Config) -> Self {
        MysqlParser {
            opts: StmtOptions::from_config(cfg),
            trace: Arc::new(cfg.trace.clone()),
            partial_limit: (cfg.max_buffered_bytes / 2).clamp(64, 16 * 1024),
            version: None,
            server_version: None,
            server_caps: 0,
            client_caps: 0,
            database: None,
            await_login: false,
            done: false,
            tls_switch: false,
            skip: [0; 2],
            resync: [false; 2],
            pending: VecDeque::new(),
            resp: Resp::Start,
            rows: 0,
            stmts: HashMap::new(),
        }
    }

    fn deprecate_eof(&self) -> Option<bool> {
        (self.server_caps != 0 && self.client_caps != 0)
            .then_some(self.server_caps & self.client_caps & CLIENT_DEPRECATE_EOF != 0)
    }

    fn msg(&self, kind: MessageKind) -> L7Message {
        let mut m = L7Message::new(L7Protocol::MySql, kind);
        m.version.clone_from(&self.version);
        m
    }

    // -----------------------------------------------------------------------------------------
    // client side

    fn client_packet(&mut self, seq: u8, p: &[u8], complete: bool) -> Result<Option<L7Message>, ParseErrorKind> {
        if self.await_login && seq == 1 {
            self.await_login = false;
            return self.login(p, false);
        }
        if seq != 0 {
            return Ok(None); // auth data, LOCAL INFILE content, continuation packets
        }
        self.await_login = false;
        let (&cmd, body) = p.split_first().ok_or(ParseErrorKind::Malformed)?;
        let name = command_name(cmd).ok_or(ParseErrorKind::Malformed)?;
        let mut kind = MessageKind::Request;
        let mut m = self.msg(kind);
        m.request_type = Some(name.to_string());
        m.request_domain.clone_from(&self.database);
        let mut expect = Some(Expect::Query { dml: false });
        match cmd {
            COM_QUERY | COM_STMT_PREPARE => {
                let sql = self.opts.sql(body, Dialect::MySql, complete);
                let raw = String::from_utf8_lossy(body.get(..body.len().min(512)).unwrap_or_default()).into_owned();
                sql::trace_from_comments(&String::from_utf8_lossy(body), &self.trace, &mut m);
                m.endpoint = sql::endpoint(&raw);
                expect = Some(if cmd == COM_QUERY {
                    Expect::Query { dml: is_dml(&raw) }
                } else {
                    Expect::Prepare { sql: sql.clone() }
                });
                m.request_resource = Some(sql);
            }
            COM_INIT_DB => {
                let db = self.opts.text(body);
                self.database = Some(db.clone());
                m.request_domain = Some(db.clone());
                m.request_resource = Some(db);
            }
            COM_FIELD_LIST => {
                let table = sql::cstr(body, 0).map_or(body, |(t, _)| t);
                m.request_resource = Some(self.opts.text(table));
                expect = Some(Expect::FieldList);
            }
            COM_STATISTICS => expect = Some(Expect::Stats),
            COM_CHANGE_USER => {
                let mut login = self.login_fields(body, true).unwrap_or_default();
                login.version.clone_from(&self.version);
                login.request_type = Some(name.to_string());
                login.kind = Some(MessageKind::Request);
                self.pending.push_back(Expect::Login { compress: false });
                return Ok(Some(login));
            }
            COM_STMT_EXECUTE | COM_STMT_CLOSE | COM_STMT_RESET | COM_STMT_FETCH | COM_STMT_SEND_LONG_DATA => {
                let id = le32(body, 0).ok_or(ParseErrorKind::Malformed)?;
                m.request_id = Some(id);
                if let Some(st) = self.stmts.get(&id) {
                    m.request_resource = Some(st.sql.clone());
                    m.endpoint = sql::endpoint(&st.sql);
                    if cmd == COM_STMT_EXECUTE {
                        expect = Some(Expect::Query { dml: is_dml(&st.sql) });
                    }
                }
                match cmd {
                    COM_STMT_EXECUTE if !self.opts.obfuscate => {
                        if let Some(params) = self.execute_params(id, body) {
                            m.attr("parameters", params);
                        }
                    }
                    COM_STMT_CLOSE => {
                        self.stmts.remove(&id);
                        kind = MessageKind::OneWay;
                    }
                    COM_STMT_SEND_LONG_DATA => kind = MessageKind::OneWay,
                    COM_STMT_FETCH => expect = Some(Expect::Fetch),
                    _ => {}
                }
            }
            COM_QUIT => kind = MessageKind::OneWay,
            COM_BINLOG_DUMP | COM_BINLOG_DUMP_GTID => {
                // replication stream: nothing request/response-like follows
                kind = MessageKind::OneWay;
                self.done = true;
            }
            _ => {}
        }
        if kind == MessageKind::OneWay {
            m.kind = Some(kind);
            m.response_status = Some(ResponseStatus::Ok);
        } else if let Some(e) = expect {
            self.pending.push_back(e);
        }
        Ok(Some(m))
    }

    /// Login request (HandshakeResponse) or SSL request.
    fn login(&mut self, p: &[u8], _change_user: bool) -> Result<Option<L7Message>, ParseErrorKind> {
        let caps = if p.len() >= 4 { le32(p, 0).unwrap_or(0) } else { u32::from(le16(p, 0).unwrap_or(0)) };
        self.client_caps = caps | 1; // non-zero marks "seen"
        if caps & CLIENT_PROTOCOL_41 != 0 && p.len() == 32 && caps & CLIENT_SSL != 0 {
            // SSL request: everything after is TLS (see `upgrade`)
            self.done = true;
            self.tls_switch = true;
            return Ok(None);
        }
        let mut m = self.login_fields(p, false).ok_or(ParseErrorKind::Malformed)?;
        m.version.clone_from(&self.version);
        if let Some(v) = &self.server_version {
            m.attr("server_version", v.clone());
        }
        let compress = self.server_caps & caps & CLIENT_COMPRESS != 0;
        self.pending.push_back(Expect::Login { compress });
        Ok(Some(m))
    }

    /// User and database of a HandshakeResponse41/320 or COM_CHANGE_USER body.
    fn login_fields(&mut self, p: &[u8], change_user: bool) -> Option<L7Message> {
        let caps = if change_user { self.client_caps } else { le32(p, 0).unwrap_or(0) };
        let (user, db) = if change_user {
            let (user, o) = sql::cstr(p, 0)?;
            let n = usize::from(*p.get(o)?);
            let db = sql::cstr(p, o + 1 + n).map(|(d, _)| d);
            (user, db)
        } else if caps & CLIENT_PROTOCOL_41 != 0 {
            let (user, mut o) = sql::cstr(p, 32)?;
            if caps & CLIENT_PLUGIN_AUTH_LENENC != 0 {
                o = lenenc_str(p, o)?.1;
            } else if caps & CLIENT_SECURE_CONNECTION != 0 {
                o = o + 1 + usize::from(*p.get(o)?);
            } else {
                o = sql::cstr(p, o)?.1;
            }
            let db = if caps & CLIENT_CONNECT_WITH_DB != 0 { sql::cstr(p, o).map(|(d, _)| d) } else { None };
            (user, db)
        } else {
            let (user, _) = sql::cstr(p, 5)?;
            (user, None)
        };
        let user = String::from_utf8_lossy(user).into_owned();
        let db = db.filter(|d| !d.is_empty()).map(|d| String::from_utf8_lossy(d).into_owned());
        let mut m = L7Message::new(L7Protocol::MySql, MessageKind::Request);
        m.request_resource = Some(match &db {
            Some(d) => format!("Login username: {user} db: {d}"),
            None => format!("Login username: {user}"),
        });
        m.endpoint.clone_from(&m.request_resource);
        if db.is_some() {
            self.database.clone_from(&db);
        }
        m.request_domain = db;
        Some(m)
    }

    /// Bound parameters of COM_STMT_EXECUTE joined with ` , `.
    fn execute_params(&mut self, id: u32, body: &[u8]) -> Option<String> {
        let attrs = self.client_caps & CLIENT_QUERY_ATTRIBUTES != 0;
        let st = self.stmts.get_mut(&id)?;
        let flags = *body.get(4)?;
        let mut n = usize::from(st.params);
        let mut o = 9;
        if attrs && (n > 0 || flags & 0x08 != 0) {
            let (c, o2) = lenenc(body, o)?;
            n = usize::try_from(c).ok()?;
            o = o2;
        }
        if n == 0 {
            return None;
        }
        let nulls = body.get(o..o + n.div_ceil(8))?.to_vec();
        o += n.div_ceil(8);
        let bound = *body.get(o)?;
        o += 1;
        if bound == 1 {
            let mut types = Vec::with_capacity(n.min(MAX_PARAMS * 4));
            for _ in 0..n {
                let t = *body.get(o)?;
                let unsigned = body.get(o + 1)? & 0x80 != 0;
                o += 2;
                if attrs {
                    o = lenenc_str(body, o)?.1;
                }
                types.push((t, unsigned));
            }
            st.types = types;
        }
        if st.types.len() != n {
            return None;
        }
        let mut out: Vec<String> = Vec::new();
        for (i, (t, unsigned)) in st.types.iter().enumerate() {
            if i >= MAX_PARAMS {
                out.push(sql::TRUNCATED.to_string());
                break;
            }
            if nulls.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0) {
                out.push("NULL".to_string());
                continue;
            }
            let (v, o2) = binary_value(body, o, *t, *unsigned)?;
            out.push(v);
            o = o2;
        }
        Some(self.opts.text(out.join(" , ").as_bytes()))
    }

    // -----------------------------------------------------------------------------------------
    // server side

    fn server_packet(&mut self, seq: u8, p: &[u8]) -> Result<Option<L7Message>, ParseErrorKind> {
        let first = p.first().copied();
        if self.resp == Resp::Start && seq == 0 && matches!(first, Some(9 | 10)) {
            self.greeting(p)?;
            return Ok(None);
        }
        let expect = self.pending.front().cloned().unwrap_or(Expect::Query { dml: false });
        match self.resp {
            Resp::Start => match (&expect, first) {
                (_, Some(0xff)) => return Ok(Some(self.finish_err(p))),
                (Expect::Login { compress }, Some(0x00)) => {
                    let compress = *compress;
                    let mut m = self.finish_ok(p, false, false);
                    if compress {
                        // compressed protocol from here on: recognized, not decoded
                        m.attr("compression", "zlib");
                        self.done = true;
                    }
                    return Ok(Some(m));
                }
                (Expect::Login { .. }, _) => return Ok(None), // auth switch / more data
                (Expect::Stats, _) => {
                    let mut m = self.finish(ResponseStatus::Ok);
                    m.response_result = Some(self.opts.text(p));
                    return Ok(Some(m));
                }
                (Expect::Prepare { sql }, Some(0x00)) if p.len() >= 12 => {
                    let id = le32(p, 1).ok_or(ParseErrorKind::Malformed)?;
                    let cols = le16(p, 5).unwrap_or(0);
                    let params = le16(p, 7).unwrap_or(0);
                    if self.stmts.len() >= MAX_STATEMENTS {
                        self.stmts.clear();
                    }
                    self.stmts.insert(id, Stmt { sql: sql.clone(), params, types: Vec::new() });
                    let eofs = if self.deprecate_eof() == Some(true) {
                        0
                    } else {
                        u64::from(params > 0) + u64::from(cols > 0)
                    };
                    let left = u64::from(cols) + u64::from(params) + eofs;
                    let mut m = self.finish(ResponseStatus::Ok);
                    m.request_id = Some(id);
                    if left > 0 {
                        self.resp = Resp::Defs { left };
                    }
                    return Ok(Some(m));
                }
                (Expect::FieldList | Expect::Fetch, _) => {
                    self.rows = 0;
                    self.resp = Resp::Rows;
                }
                (_, Some(0x00)) if p.len() >= 3 => {
                    let dml = matches!(expect, Expect::Query { dml: true });
                    return Ok(self.ok_packet(p, dml));
                }
                (_, Some(0xfe)) if p.len() < 9 => return Ok(Some(self.finish_ok(p, false, true))),
                (_, Some(0xfb)) => {
                    self.resp = Resp::Infile;
                    return Ok(None);
                }
                (_, Some(_)) => {
                    let (cols, _) = lenenc(p, 0).ok_or(ParseErrorKind::Malformed)?;
                    if cols == 0 {
                        return Err(ParseErrorKind::Malformed);
                    }
                    self.resp = Resp::Cols { left: cols };
                    return Ok(None);
                }
                (_, None) => return Err(ParseErrorKind::Malformed),
            },
            Resp::Infile => {
                return match first {
                    Some(0xff) => Ok(Some(self.finish_err(p))),
                    _ => Ok(self.ok_packet(p, matches!(expect, Expect::Query { dml: true }))),
                };
            }
            Resp::Defs { left } => {
                self.resp = if left > 1 { Resp::Defs { left: left - 1 } } else { Resp::Start };
                return Ok(None);
            }
            Resp::Cols { left } => {
                if first == Some(0xff) {
                    return Ok(Some(self.finish_err(p)));
                }
                // ColsEof also accepts a missing EOF (CLIENT_DEPRECATE_EOF): an EOF is exactly 5
                // bytes, a deprecate-EOF terminator (OK with 0xfe) at least 7
                self.resp = if left > 1 { Resp::Cols { left: left - 1 } } else { Resp::ColsEof };
                return Ok(None);
            }
            Resp::ColsEof => {
                self.resp = Resp::Rows;
                if first == Some(0xfe) && p.len() == 5 {
                    return Ok(None);
                }
                // no EOF after the definitions: CLIENT_DEPRECATE_EOF
            }
            Resp::Rows => {}
        }
        // Resp::Rows
        match first {
            Some(0xff) => Ok(Some(self.finish_err(p))),
            Some(0xfe) if p.len() < MAX_PAYLOAD => {
                let status = if p.len() == 5 {
                    le16(p, 3).unwrap_or(0)
                } else {
                    lenenc(p, 1).and_then(|(_, o)| lenenc(p, o)).and_then(|(_, o)| le16(p, o)).unwrap_or(0)
                };
                if status & SERVER_MORE_RESULTS_EXISTS != 0 {
                    self.resp = Resp::Start;
                    return Ok(None);
                }
                let rows = self.rows;
                let mut m = self.finish(ResponseStatus::Ok);
                m.response_result = Some(rows.to_string());
                Ok(Some(m))
            }
            _ => {
                self.rows += 1;
                Ok(None)
            }
        }
    }

    fn greeting(&mut self, p: &[u8]) -> Result<(), ParseErrorKind> {
        let proto = *p.first().ok_or(ParseErrorKind::Malformed)?;
        let (ver, o) = sql::cstr(p, 1).ok_or(ParseErrorKind::Malformed)?;
        self.version = Some(proto.to_string());
        self.server_version = Some(String::from_utf8_lossy(ver).into_owned());
        // connection id (4), auth data (8), filler (1), caps low (2), charset, status (2), caps high (2)
        let lo = le16(p, o + 13).unwrap_or(0);
        let hi = le16(p, o + 18).unwrap_or(0);
        self.server_caps = (u32::from(hi) << 16 | u32::from(lo)) | 1;
        self.await_login = true;
        self.pending.clear();
        Ok(())
    }

    /// OK packet ending a response (or continuing a multi-result response).
    fn ok_packet(&mut self, p: &[u8], dml: bool) -> Option<L7Message> {
        let status = lenenc(p, 1).and_then(|(_, o)| lenenc(p, o)).and_then(|(_, o)| le16(p, o)).unwrap_or(0);
        if status & SERVER_MORE_RESULTS_EXISTS != 0 {
            self.resp = Resp::Start;
            self.rows = self.rows.saturating_add(lenenc(p, 1).map_or(0, |(n, _)| n));
            return None;
        }
        Some(self.finish_ok(p, dml, false))
    }

    fn finish_ok(&mut self, p: &[u8], dml: bool, eof: bool) -> L7Message {
        let before = self.rows;
        let mut m = self.finish(ResponseStatus::Ok);
        if !eof && let Some((affected, _)) = lenenc(p, 1) {
            let n = affected.saturating_add(before);
            m.response_result = Some(n.to_string());
            if dml {
                m.attr("row_effect", n.to_string());
            }
        }
        m
    }

    fn finish_err(&mut self, p: &[u8]) -> L7Message {
        let code = le16(p, 1).unwrap_or(0);
        let msg_off = if p.get(3) == Some(&b'#') { 9 } else { 3 };
        let mut m = self.finish(if (2000..3000).contains(&code) {
            ResponseStatus::ClientError
        } else {
            ResponseStatus::ServerError
        });
        m.response_code = Some(i32::from(code));
        m.response_exception = Some(self.opts.text(p.get(msg_off..).unwrap_or_default()));
        if msg_off == 9 {
            m.attr("sql_state", String::from_utf8_lossy(p.get(4..9).unwrap_or_default()).into_owned());
        }
        m
    }

    /// Ends the current response: pops its expectation and resets the response state.
    fn finish(&mut self, status: ResponseStatus) -> L7Message {
        self.pending.pop_front();
        self.resp = Resp::Start;
        self.rows = 0;
        let mut m = self.msg(MessageKind::Response);
        m.response_status = Some(status);
        m
    }

    /// Is `data` a plausible packet start after a gap?
    fn plausible(&self, data: &[u8], dir: Direction) -> bool {
        let Some((len, seq)) = header(data) else { return false };
        if len == 0 || len == MAX_PAYLOAD {
            return false;
        }
        let ends = data.len() == HEADER + len || header(data.get(HEADER + len..).unwrap_or_default()).is_some();
        let first = data.get(HEADER).copied().unwrap_or(0xff);
        ends && match dir {
            Direction::ClientToServer => seq == 0 && command_name(first).is_some(),
            Direction::ServerToClient => seq == 1,
        }
    }
}

fn is_dml(sql: &str) -> bool {
    let w = sql::first_word(sql);
    ["INSERT", "UPDATE", "DELETE", "REPLACE"].iter().any(|k| w.eq_ignore_ascii_case(k))
}

/// One binary-protocol value of type `t` at `o`: (text, offset after).
fn binary_value(b: &[u8], o: usize, t: u8, unsigned: bool) -> Option<(String, usize)> {
    let fixed = |n: usize| b.get(o..o + n);
    Some(match t {
        1 => {
            let v = *b.get(o)?;
            (if unsigned { v.to_string() } else { (v as i8).to_string() }, o + 1)
        }
        2 | 13 => {
            let v = le16(b, o)?;
            (if unsigned { v.to_string() } else { (v as i16).to_string() }, o + 2)
        }
        3 | 9 => {
            let v = le32(b, o)?;
            (if unsigned { v.to_string() } else { (v as i32).to_string() }, o + 4)
        }
        8 => {
            let v = le64(b, o)?;
            (if unsigned { v.to_string() } else { (v as i64).to_string() }, o + 8)
        }
        4 => (f32::from_le_bytes(fixed(4)?.try_into().ok()?).to_string(), o + 4),
        5 => (f64::from_le_bytes(fixed(8)?.try_into().ok()?).to_string(), o + 8),
        6 => ("NULL".to_string(), o),
        7 | 10 | 12 => {
            let n = usize::from(*b.get(o)?);
            let d = b.get(o + 1..o + 1 + n)?;
            let g = |i: usize| d.get(i).copied().unwrap_or(0);
            let year = le16(d, 0).unwrap_or(0);
            let s = match n {
                0 => "0000-00-00".to_string(),
                4 => format!("{year:04}-{:02}-{:02}", g(2), g(3)),
                _ => format!("{year:04}-{:02}-{:02} {:02}:{:02}:{:02}", g(2), g(3), g(4), g(5), g(6)),
            };
            (s, o + 1 + n)
        }
        11 => {
            let n = usize::from(*b.get(o)?);
            let d = b.get(o + 1..o + 1 + n)?;
            let g = |i: usize| d.get(i).copied().unwrap_or(0);
            let days = le32(d, 1).unwrap_or(0);
            let sign = if g(0) == 1 { "-" } else { "" };
            (format!("{sign}{}:{:02}:{:02}", u64::from(days) * 24 + u64::from(g(5)), g(6), g(7)), o + 1 + n)
        }
        _ => {
            let (s, o2) = lenenc_str(b, o)?;
            let cut = s.get(..s.len().min(256)).unwrap_or(s);
            (format!("'{}'", String::from_utf8_lossy(cut)), o2)
        }
    })
}

impl L7Parser for MysqlParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::MySql
    }

    fn port_hint(&self, port: u16) -> bool {
        port == 3306
    }

    fn probe(&self, data: &[u8], dir: Direction, _flow: &FlowInfo) -> Probe {
        probe_start(data, dir)
    }

    fn new_flow(&self) -> Box<dyn L7Parser> {
        let mut p = MysqlParser::new(&L7Config::default());
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
        if self.resync.get(d).copied().unwrap_or(false) {
            if data.len() < HEADER + 1 {
                return ParseOutcome::NeedMore(HEADER + 1 - data.len());
            }
            if !self.plausible(data, ctx.dir) {
                return ParseOutcome::Skip(data.len());
            }
            if let Some(r) = self.resync.get_mut(d) {
                *r = false;
            }
        }
        let Some((len, seq)) = header(data) else { return ParseOutcome::NeedMore(HEADER - data.len()) };
        // rows and column definitions are skipped without buffering them
        let skippable = ctx.dir == Direction::ServerToClient
            && matches!(self.resp, Resp::Cols { .. } | Resp::Rows | Resp::Defs { .. })
            && data.get(HEADER).is_some_and(|b| *b != 0xfe && *b != 0xff);
        let want = if skippable { 1 } else { len.min(self.partial_limit) };
        if data.len() < HEADER + want {
            return ParseOutcome::NeedMore(HEADER + want - data.len());
        }
        let avail = (data.len() - HEADER).min(len);
        let payload = data.get(HEADER..HEADER + avail).unwrap_or_default();
        let complete = avail == len && len < MAX_PAYLOAD;
        if let Some(s) = self.skip.get_mut(d) {
            *s = len - avail;
        }
        let consumed = HEADER + avail;
        let res = match ctx.dir {
            Direction::ClientToServer => self.client_packet(seq, payload, complete),
            Direction::ServerToClient => self.server_packet(seq, payload),
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
        if dir == Direction::ServerToClient && self.resp != Resp::Start {
            self.resp = Resp::Start;
            self.rows = 0;
            self.pending.pop_front();
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }

    /// After an SSLRequest the connection continues as TLS: the TLS parser takes over, so the
    /// handshake (version, SNI, ALPN, alerts) is still recorded for the flow.
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

    fn pkt(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        v.push(seq);
        v.extend_from_slice(payload);
        v
    }

    fn greeting(caps: u32) -> Vec<u8> {
        let mut p = vec![10];
        p.extend_from_slice(b"8.0.36\0");
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(b"abcdefgh\0");
        p.extend_from_slice(&(caps as u16).to_le_bytes());
        p.push(255);
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
        p.push(21);
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(b"ijklmnopqrst\0mysql_native_password\0");
        pkt(0, &p)
    }

    const CAPS: u32 =
        CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_CONNECT_WITH_DB | CLIENT_PLUGIN_AUTH_LENENC;

    fn login(caps: u32, user: &str, db: Option<&str>) -> Vec<u8> {
        let caps = if db.is_none() { caps & !CLIENT_CONNECT_WITH_DB } else { caps };
        let mut p = caps.to_le_bytes().to_vec();
        p.extend_from_slice(&(1u32 << 24).to_le_bytes());
        p.push(33);
        p.extend_from_slice(&[0; 23]);
        if caps & CLIENT_SSL != 0 && user.is_empty() {
            return pkt(1, &p);
        }
        p.extend_from_slice(user.as_bytes());
        p.push(0);
        p.push(20);
        p.extend_from_slice(&[7; 20]);
        if let Some(db) = db {
            p.extend_from_slice(db.as_bytes());
            p.push(0);
        }
        p.extend_from_slice(b"mysql_native_password\0");
        pkt(1, &p)
    }

    fn ok(seq: u8, affected: u8, status: u16) -> Vec<u8> {
        let mut p = vec![0, affected, 0];
        p.extend_from_slice(&status.to_le_bytes());
        p.extend_from_slice(&[0, 0]);
        pkt(seq, &p)
    }

    fn err(seq: u8, code: u16, state: &str, msg: &str) -> Vec<u8> {
        let mut p = vec![0xff];
        p.extend_from_slice(&code.to_le_bytes());
        p.push(b'#');
        p.extend_from_slice(state.as_bytes());
        p.extend_from_slice(msg.as_bytes());
        pkt(seq, &p)
    }

    fn eof(seq: u8, status: u16) -> Vec<u8> {
        let mut p = vec![0xfe, 0, 0];
        p.extend_from_slice(&status.to_le_bytes());
        pkt(seq, &p)
    }

    fn query(sql: &str) -> Vec<u8> {
        let mut p = vec![COM_QUERY];
        p.extend_from_slice(sql.as_bytes());
        pkt(0, &p)
    }

    /// Result set with `cols` columns and `rows` text rows, EOF-style.
    fn result_set(cols: u8, rows: usize, more: bool) -> Vec<u8> {
        let mut v = pkt(1, &[cols]);
        let mut seq = 2;
        for i in 0..cols {
            let mut def = b"\x03def\x04test\x01t\x01t".to_vec();
            def.push(1);
            def.push(b'a' + i);
            def.extend_from_slice(b"\x01a\x0c\x21\x00\xff\x00\x00\x00\xfd\x00\x00\x00\x00\x00");
            v.extend(pkt(seq, &def));
            seq += 1;
        }
        v.extend(eof(seq, 0));
        seq += 1;
        for r in 0..rows {
            let mut row = Vec::new();
            for _ in 0..cols {
                let s = format!("v{r}");
                row.push(s.len() as u8);
                row.extend_from_slice(s.as_bytes());
            }
            v.extend(pkt(seq, &row));
            seq = seq.wrapping_add(1);
        }
        v.extend(eof(seq, if more { SERVER_MORE_RESULTS_EXISTS } else { 0 }));
        v
    }

    fn conversation() -> Vec<(Direction, Vec<u8>)> {
        let mut prep = vec![COM_STMT_PREPARE];
        prep.extend_from_slice(b"SELECT name FROM users WHERE id = ? AND tag = ?");
        let mut prep_ok = vec![0];
        prep_ok.extend_from_slice(&5u32.to_le_bytes());
        prep_ok.extend_from_slice(&1u16.to_le_bytes());
        prep_ok.extend_from_slice(&2u16.to_le_bytes());
        prep_ok.extend_from_slice(&[0, 0, 0]);
        let mut prep_resp = pkt(1, &prep_ok);
        for s in 2..4 {
            prep_resp
                .extend(pkt(s, b"\x03def\x00\x00\x00\x01?\x00\x0c\x3f\x00\x00\x00\x00\x00\x08\x80\x00\x00\x00\x00"));
        }
        prep_resp.extend(eof(4, 0));
        prep_resp.extend(pkt(
            5,
            b"\x03def\x04test\x01u\x01u\x04name\x04name\x0c\x21\x00\xff\x00\x00\x00\xfd\x00\x00\x00\x00\x00",
        ));
        prep_resp.extend(eof(6, 0));
        let mut exec = vec![COM_STMT_EXECUTE];
        exec.extend_from_slice(&5u32.to_le_bytes());
        exec.extend_from_slice(&[0, 1, 0, 0, 0]);
        exec.push(0); // null bitmap
        exec.push(1); // new params bound
        exec.extend_from_slice(&[8, 0x80, 0xfd, 0]);
        exec.extend_from_slice(&42u64.to_le_bytes());
        exec.extend_from_slice(b"\x03red");
        let mut bin_rs = pkt(1, &[1]);
        bin_rs.extend(pkt(
            2,
            b"\x03def\x04test\x01u\x01u\x04name\x04name\x0c\x21\x00\xff\x00\x00\x00\xfd\x00\x00\x00\x00\x00",
        ));
        bin_rs.extend(eof(3, 0));
        bin_rs.extend(pkt(4, b"\x00\x00\x03bob"));
        bin_rs.extend(eof(5, 0));
        let mut close = vec![COM_STMT_CLOSE];
        close.extend_from_slice(&5u32.to_le_bytes());
        vec![
            (S, greeting(CAPS)),
            (C, login(CAPS, "root", Some("shop"))),
            (S, pkt(2, b"\x01\x03")), // caching_sha2 fast auth
            (S, ok(3, 0, 2)),
            (
                C,
                query(
                    "/* traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 */ SELECT * FROM `items` WHERE id > 10",
                ),
            ),
            (S, result_set(2, 3, false)),
            (C, query("UPDATE items SET n = n + 1 WHERE id = 3")),
            (S, ok(1, 2, 2)),
            (C, query("SELECT * FROM nope")),
            (S, err(1, 1146, "42S02", "Table 'shop.nope' doesn't exist")),
            (C, pkt(0, &prep)),
            (S, prep_resp),
            (C, pkt(0, &exec)),
            (S, bin_rs),
            (C, pkt(0, &close)),
            (C, pkt(0, b"\x02other")),
            (S, ok(1, 0, 2)),
            (C, pkt(0, &[0x0e])),
            (S, ok(1, 0, 2)),
            (C, pkt(0, &[COM_QUIT])),
        ]
    }

    #[test]
    fn full_conversation() {
        let rows = run(3306, &conversation());
        let rt: Vec<_> = rows.iter().map(|r| r.request_type.clone().unwrap_or_default()).collect();
        assert_eq!(
            rt,
            [
                "",
                "COM_QUERY",
                "COM_QUERY",
                "COM_QUERY",
                "COM_STMT_PREPARE",
                "COM_STMT_EXECUTE",
                "COM_STMT_CLOSE",
                "COM_INIT_DB",
                "COM_PING",
                "COM_QUIT"
            ]
        );
        let login = &rows[0];
        assert_eq!(login.request_resource.as_deref(), Some("Login username: root db: shop"));
        assert_eq!(login.request_domain.as_deref(), Some("shop"));
        assert_eq!(login.version.as_deref(), Some("10"));
        assert_eq!(login.response_status, ResponseStatus::Ok);
        assert!(login.attribute_values.contains(&"8.0.36".to_string()));
        let sel = &rows[1];
        assert_eq!(sel.endpoint.as_deref(), Some("SELECT items"));
        assert_eq!(sel.response_result.as_deref(), Some("3"));
        assert_eq!(sel.trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!(sel.request_domain.as_deref(), Some("shop"));
        let upd = &rows[2];
        assert_eq!(upd.endpoint.as_deref(), Some("UPDATE items"));
        assert_eq!(upd.response_result.as_deref(), Some("2"));
        assert_eq!(upd.attribute_names, ["row_effect"]);
        let e = &rows[3];
        assert_eq!(e.response_code, Some(1146));
        assert_eq!(e.response_status, ResponseStatus::ServerError);
        assert_eq!(e.response_exception.as_deref(), Some("Table 'shop.nope' doesn't exist"));
        assert_eq!(rows[4].request_id, Some(5));
        let ex = &rows[5];
        assert_eq!(ex.request_id, Some(5));
        assert_eq!(ex.request_resource.as_deref(), Some("SELECT name FROM users WHERE id = ? AND tag = ?"));
        assert_eq!(ex.attribute_values, ["42 , 'red'"]);
        assert_eq!(ex.response_result.as_deref(), Some("1"));
        assert_eq!(rows[6].log_type, LogType::Session);
        assert_eq!(rows[7].request_domain.as_deref(), Some("other"));
        assert_eq!(rows[9].response_status, ResponseStatus::Ok);
        assert!(rows.iter().all(|r| r.response_status != ResponseStatus::Timeout));
    }

    #[test]
    fn split_and_truncation() {
        assert_split_invariant(L7Config::default(), 3306, &conversation());
        assert_truncation_safe(3306, &conversation());
    }

    #[test]
    fn multi_results_and_deprecate_eof() {
        let caps = CAPS | CLIENT_DEPRECATE_EOF;
        // deprecate-EOF result set: count, 1 def, 2 rows, OK(0xfe) terminator
        let mut rs = pkt(1, &[1]);
        rs.extend(pkt(2, b"\x03def\x00\x00\x00\x01a\x00\x0c\x21\x00\xff\x00\x00\x00\xfd\x00\x00\x00\x00\x00"));
        rs.extend(pkt(3, b"\x011"));
        rs.extend(pkt(4, b"\x012"));
        rs.extend(pkt(5, b"\xfe\x00\x00\x02\x00\x00\x00"));
        let mut multi = result_set(1, 1, true);
        multi.extend(ok(9, 4, 0));
        let rows = run(
            3306,
            &[
                (S, greeting(caps)),
                (C, login(caps, "u", None)),
                (S, ok(2, 0, 2)),
                (C, query("select a from t")),
                (S, rs),
                (C, query("call p()")),
                (S, multi),
            ],
        );
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].request_resource.as_deref(), Some("Login username: u"));
        assert_eq!(rows[1].response_result.as_deref(), Some("2"));
        assert_eq!(rows[2].response_result.as_deref(), Some("5"));
    }

    #[test]
    fn ssl_and_compression_stop_parsing() {
        let rows = run(
            3306,
            &[
                (S, greeting(CAPS | CLIENT_SSL)),
                (C, login(CAPS | CLIENT_SSL, "", None)),
                (C, vec![0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5]),
            ],
        );
        assert!(rows.is_empty());
        let caps = CAPS | CLIENT_COMPRESS;
        let rows = run(
            3306,
            &[
                (S, greeting(caps)),
                (C, login(caps, "z", None)),
                (S, ok(2, 0, 2)),
                (C, vec![9, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6]),
            ],
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].request_resource.as_deref(), Some("Login username: z"));
    }

    #[test]
    fn midstream_and_large_rows() {
        // no handshake; a 200 kB row is skipped without buffering
        let mut rs = pkt(1, &[1]);
        rs.extend(pkt(2, b"\x03def\x00\x00\x00\x01a\x00\x0c\x21\x00\xff\x00\x00\x00\xfd\x00\x00\x00\x00\x00"));
        rs.extend(eof(3, 0));
        let mut big = vec![0xfd];
        big.extend_from_slice(&[0x40, 0x0d, 0x03]);
        big.extend(std::iter::repeat_n(b'x', 200_000));
        rs.extend(pkt(4, &big));
        rs.extend(eof(5, 0));
        let segs: Vec<_> =
            std::iter::once((C, query("SELECT blob FROM b"))).chain(rs.chunks(1460).map(|c| (S, c.to_vec()))).collect();
        let (rows, counters) = run_cfg(L7Config::default(), 3306, &segs);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].response_result.as_deref(), Some("1"));
        assert_eq!(counters.oversize, 0);
        // a huge query is captured as a marked prefix
        let long = format!("INSERT INTO t VALUES {}", "(1),".repeat(50_000));
        let cfg = L7Config { max_statement_length: 100, ..L7Config::default() };
        let segs: Vec<_> = query(&long).chunks(1460).map(|c| (C, c.to_vec())).chain([(S, ok(1, 1, 2))]).collect();
        let (rows, _) = run_cfg(cfg, 3306, &segs);
        assert_eq!(rows.len(), 1);
        assert!(rows[0].request_resource.as_deref().unwrap().ends_with("..."));
        assert_eq!(rows[0].endpoint.as_deref(), Some("INSERT t"));
        assert_eq!(rows[0].response_status, ResponseStatus::Ok);
    }

    #[test]
    fn obfuscation_and_client_error() {
        let cfg = L7Config { db_obfuscation: true, ..L7Config::default() };
        let (rows, _) = run_cfg(
            cfg,
            3306,
            &[
                (C, query("SELECT * FROM t WHERE a = 'secret' AND b = 42")),
                (S, err(1, 2013, "HY000", "Lost connection")),
            ],
        );
        assert_eq!(rows[0].request_resource.as_deref(), Some("SELECT * FROM t WHERE a = ? AND b = ?"));
        assert_eq!(rows[0].response_status, ResponseStatus::ClientError);
    }

    #[test]
    fn gap_resync() {
        let f = flow(3306);
        let mut e = crate::L7Engine::new(L7Config::default());
        let mut st = crate::L7FlowState::default();
        let mut out = Vec::new();
        e.on_payload(&mut st, &f, C, 1, &query("SELECT 1"), &mut out);
        e.on_payload(&mut st, &f, S, 2, &result_set(1, 2, false)[..20], &mut out);
        e.on_gap(&mut st, &f, S, 3, 100);
        e.on_payload(&mut st, &f, S, 3, b"garbage bytes", &mut out);
        e.on_payload(&mut st, &f, C, 4, &query("SELECT 2"), &mut out);
        e.on_payload(&mut st, &f, S, 5, &ok(1, 0, 2), &mut out);
        e.on_flow_end(&mut st, &f, 6, &mut out);
        assert!(
            out.iter()
                .any(|r| r.request_resource.as_deref() == Some("SELECT 2") || r.response_status == ResponseStatus::Ok)
        );
    }

    #[test]
    fn fuzz_50k() {
        let mut seeds = vec![conversation()];
        seeds.push(vec![(C, query("select 1")), (S, result_set(3, 5, true)), (S, ok(9, 1, 0))]);
        fuzz(3306, &seeds, 50_000, 0x5eed_3306);
    }
}
