//! Helpers shared by the database parsers (MySQL, PostgreSQL, Redis, MongoDB, Memcached):
//! statement text capture (lossy UTF-8, length cap with a `...` mark, optional literal
//! obfuscation), SQL endpoint derivation (L7_FIELDS.md "MySQL" endpoint rules), and trace
//! context carried in SQL comments.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use crate::config::L7Config;
use crate::l7::L7Message;
use crate::trace::{TraceConfig, TraceExtractor};

// ---------------------------------------------------------------------------------------------
// constants

/// Marks text cut by [`StmtOptions::max_len`].
pub const TRUNCATED: &str = "...";

/// SQL dialect, for the few lexical differences that matter to obfuscation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `"..."` is a string literal, `#` starts a comment, `` ` `` quotes identifiers.
    MySql,
    /// `"..."` is an identifier, `$tag$...$tag$` and `E'...'` are strings, `$1` a parameter.
    Postgres,
}

/// What the database parsers take from [`L7Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StmtOptions {
    /// Replace literals with `?`.
    pub obfuscate: bool,
    /// Maximum captured text length in bytes (0 = no cap).
    pub max_len: usize,
}

impl StmtOptions {
    /// The options configured in `cfg`.
    pub fn from_config(cfg: &L7Config) -> Self {
        StmtOptions { obfuscate: cfg.db_obfuscation, max_len: cfg.max_statement_length }
    }

    /// Lossy UTF-8 text of `b`, capped.
    pub fn text(&self, b: &[u8]) -> String {
        let cap = if self.max_len == 0 { b.len() } else { self.max_len.saturating_add(4).min(b.len()) };
        cap_string(String::from_utf8_lossy(b.get(..cap).unwrap_or(b)).into_owned(), self.max_len)
    }

    /// SQL text of `b` (obfuscated if configured), capped. `complete` = false when `b` is only
    /// a prefix of the statement (the rest was not captured): the result is then marked.
    pub fn sql(&self, b: &[u8], dialect: Dialect, complete: bool) -> String {
        let s = String::from_utf8_lossy(b);
        let s = if self.obfuscate { obfuscate(&s, dialect) } else { s.into_owned() };
        let mut s = cap_string(s, self.max_len);
        if !complete && !s.ends_with(TRUNCATED) {
            s.push_str(TRUNCATED);
        }
        s
    }
}

/// Cuts `s` to at most `max` bytes (on a char boundary) and appends [`TRUNCATED`] when cut.
pub fn cap_string(mut s: String, max: usize) -> String {
    if max == 0 || s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(TRUNCATED);
    s
}

// ---------------------------------------------------------------------------------------------
// obfuscation

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// Replaces string, numeric and hex literals of `sql` with `?`. Comments, identifiers
/// (`` `x` `` in MySQL, `"x"` in PostgreSQL), keywords and PostgreSQL parameters (`$1`) are
/// kept.
///
/// ```
/// use deepflow_protocols::l7::sql::{obfuscate, Dialect};
/// assert_eq!(obfuscate("SELECT * FROM t WHERE a = 'x''y' AND b IN (1, 2.5e3, 0xFF)", Dialect::MySql),
///            "SELECT * FROM t WHERE a = ? AND b IN (?, ?, ?)");
/// assert_eq!(obfuscate("select \"Col1\" from t2 where x = $1 and y = $$it's$$", Dialect::Postgres),
///            "select \"Col1\" from t2 where x = $1 and y = ?");
/// ```
pub fn obfuscate(sql: &str, dialect: Dialect) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0usize;
    let at = |k: usize| chars.get(k).copied();
    let mut prev: Option<char> = None; // last char copied verbatim (for identifier context)
    while let Some(c) = at(i) {
        // comments are copied verbatim (they may carry trace context)
        if c == '/' && at(i + 1) == Some('*') {
            let mut j = i + 2;
            while j < chars.len() && !(at(j) == Some('*') && at(j + 1) == Some('/')) {
                j += 1;
            }
            let end = (j + 2).min(chars.len());
            out.extend(chars.get(i..end).unwrap_or_default());
            i = end;
            prev = Some('/');
            continue;
        }
        if (c == '-' && at(i + 1) == Some('-')) || (c == '#' && dialect == Dialect::MySql) {
            let mut j = i;
            while j < chars.len() && at(j) != Some('\n') {
                j += 1;
            }
            out.extend(chars.get(i..j).unwrap_or_default());
            i = j;
            prev = Some(' ');
            continue;
        }
        let ident_ctx = prev.is_some_and(is_ident);
        // quoted things
        let quote_ident = match dialect {
            Dialect::MySql => c == '`',
            Dialect::Postgres => c == '"',
        };
        if quote_ident {
            let j = skip_quoted(&chars, i, c, false);
            out.extend(chars.get(i..j).unwrap_or_default());
            i = j;
            prev = Some('x');
            continue;
        }
        let is_string_quote = c == '\'' || (c == '"' && dialect == Dialect::MySql);
        if is_string_quote {
            // a one-letter prefix (X'..', B'..', N'..', E'..') was already copied: take it back
            let prefix = prev
                .filter(|p| matches!(p, 'x' | 'X' | 'b' | 'B' | 'n' | 'N' | 'e' | 'E'))
                .filter(|_| !out.chars().rev().nth(1).is_some_and(is_ident));
            let backslash = dialect == Dialect::MySql || matches!(prefix, Some('e' | 'E'));
            if prefix.is_some() {
                out.pop();
            }
            i = skip_quoted(&chars, i, c, backslash);
            out.push('?');
            prev = Some('?');
            continue;
        }
        if c == '$' && dialect == Dialect::Postgres && !ident_ctx {
            // $1 parameter, or $tag$ ... $tag$ dollar-quoted string
            if at(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                let mut j = i + 1;
                while at(j).is_some_and(|d| d.is_ascii_digit()) {
                    j += 1;
                }
                out.extend(chars.get(i..j).unwrap_or_default());
                i = j;
                prev = Some('1');
                continue;
            }
            let mut j = i + 1;
            while at(j).is_some_and(|d| d.is_alphanumeric() || d == '_') {
                j += 1;
            }
            if at(j) == Some('$') {
                let tag: Vec<char> = chars.get(i..=j).unwrap_or_default().to_vec();
                let mut k = j + 1;
                let end = loop {
                    if k >= chars.len() {
                        break chars.len();
                    }
                    if chars.get(k..k + tag.len()) == Some(&tag[..]) {
                        break k + tag.len();
                    }
                    k += 1;
                };
                out.push('?');
                i = end;
                prev = Some('?');
                continue;
            }
        }
        if c.is_ascii_digit() && !ident_ctx {
            let mut j = i;
            if c == '0' && matches!(at(i + 1), Some('x' | 'X' | 'b' | 'B')) {
                j = i + 2;
                while at(j).is_some_and(|d| d.is_ascii_hexdigit()) {
                    j += 1;
                }
            } else {
                while at(j).is_some_and(|d| d.is_ascii_digit() || d == '.') {
                    j += 1;
                }
                if matches!(at(j), Some('e' | 'E'))
                    && (at(j + 1).is_some_and(|d| d.is_ascii_digit())
                        || (matches!(at(j + 1), Some('+' | '-')) && at(j + 2).is_some_and(|d| d.is_ascii_digit())))
                {
                    j += 2;
                    while at(j).is_some_and(|d| d.is_ascii_digit()) {
                        j += 1;
                    }
                }
            }
            out.push('?');
            i = j;
            prev = Some('?');
            continue;
        }
        if c == '.' && at(i + 1).is_some_and(|d| d.is_ascii_digit()) && !ident_ctx && prev != Some('?') {
            let mut j = i + 1;
            while at(j).is_some_and(|d| d.is_ascii_digit()) {
                j += 1;
            }
            out.push('?');
            i = j;
            prev = Some('?');
            continue;
        }
        out.push(c);
        prev = Some(c);
        i += 1;
    }
    out
}

/// Index just past the quoted run starting at `i` (quote char `q`, doubled quote escapes it;
/// backslash escapes when `backslash`). Unterminated runs extend to the end.
fn skip_quoted(chars: &[char], i: usize, q: char, backslash: bool) -> usize {
    let mut j = i + 1;
    while let Some(&c) = chars.get(j) {
        if backslash && c == '\\' {
            j += 2;
            continue;
        }
        if c == q {
            if chars.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    chars.len()
}

// ---------------------------------------------------------------------------------------------
// endpoint

/// Drops leading whitespace and `/* ... */` comments.
fn skip_leading_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        match s.strip_prefix("/*") {
            Some(rest) => match rest.find("*/") {
                Some(e) => s = rest.get(e + 2..).unwrap_or_default(),
                None => return "",
            },
            None => return s,
        }
    }
}

/// First word of the statement (after leading comments), for `row_effect` decisions.
pub fn first_word(sql: &str) -> &str {
    let s = skip_leading_comments(sql);
    let end = s.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(s.len());
    s.get(..end).unwrap_or_default()
}

/// A table-name token: up to whitespace or `,;()`, backticks stripped.
fn table_word(s: &str) -> Option<String> {
    let s = s.trim_start();
    let end = s.find(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')')).unwrap_or(s.len());
    let w: String = s.get(..end)?.chars().filter(|c| *c != '`').collect();
    (!w.is_empty()).then_some(w)
}

/// Byte offsets just past each whole-word, case-insensitive occurrence of `kw` in `s`.
fn keyword_ends<'a>(s: &'a str, kw: &'a str) -> impl Iterator<Item = usize> + 'a {
    let b = s.as_bytes();
    let k = kw.len();
    (0..b.len().saturating_sub(k - 1)).filter_map(move |i| {
        let w = b.get(i..i + k)?;
        let before_ok = i == 0 || b.get(i - 1).is_some_and(|c| !c.is_ascii_alphanumeric() && *c != b'_');
        let after_ok = b.get(i + k).is_none_or(|c| !c.is_ascii_alphanumeric() && *c != b'_');
        (before_ok && after_ok && w.eq_ignore_ascii_case(kw.as_bytes())).then_some(i + k)
    })
}

/// Endpoint derived from a SQL statement (L7_FIELDS.md "MySQL"): `SELECT <word after last
/// FROM>`, `INSERT <word after INTO>`, `UPDATE <table>`, `DELETE <word after FROM>`,
/// `ALTER|CREATE|DROP <word after TABLE>` (skipping `IF [NOT] EXISTS`); `None` otherwise.
///
/// ```
/// use deepflow_protocols::l7::sql::endpoint;
/// assert_eq!(endpoint("/* app */ select a from `db`.`users` where id=1").as_deref(), Some("SELECT db.users"));
/// assert_eq!(endpoint("insert into t1 (a) values (1)").as_deref(), Some("INSERT t1"));
/// assert_eq!(endpoint("CREATE TABLE IF NOT EXISTS x (a int)").as_deref(), Some("CREATE x"));
/// assert_eq!(endpoint("SET NAMES utf8"), None);
/// ```
pub fn endpoint(sql: &str) -> Option<String> {
    let s = skip_leading_comments(sql);
    let verb = first_word(s).to_ascii_uppercase();
    let after = |kw: &str, last: bool| {
        let mut it = keyword_ends(s, kw);
        let pos = if last { it.last() } else { it.next() };
        pos.and_then(|p| table_word(s.get(p..).unwrap_or_default()))
    };
    let table = match verb.as_str() {
        "SELECT" => after("FROM", true),
        "INSERT" => after("INTO", false),
        "UPDATE" => table_word(s.get(6..).unwrap_or_default()),
        "DELETE" => after("FROM", false),
        "ALTER" | "CREATE" | "DROP" => {
            let p = keyword_ends(s, "TABLE").next()?;
            let mut rest = s.get(p..).unwrap_or_default().trim_start();
            for kw in ["IF", "NOT", "EXISTS"] {
                if first_word(rest).eq_ignore_ascii_case(kw) {
                    rest = rest.get(kw.len()..).unwrap_or_default().trim_start();
                }
            }
            table_word(rest)
        }
        _ => None,
    }?;
    Some(format!("{verb} {table}"))
}

// ---------------------------------------------------------------------------------------------
// trace context in comments

/// Decodes trace context from key/value pairs inside SQL comments (`/* */`, `#` (MySQL),
/// `--`): pairs are `k=v`/`k: v`/`k v`, separated by `,` or whitespace; values may be quoted.
pub fn trace_from_comments(sql: &str, cfg: &TraceConfig, msg: &mut L7Message) {
    if !sql.contains("/*") && !sql.contains("--") && !sql.contains('#') {
        return;
    }
    let mut ex = TraceExtractor::new(cfg);
    let mut rest = sql;
    while !rest.is_empty() {
        let starts = [rest.find("/*"), rest.find("--"), rest.find('#')];
        let Some(start) = starts.iter().flatten().min().copied() else { break };
        let tail = rest.get(start..).unwrap_or_default();
        let (body, next) = if tail.starts_with("/*") {
            let b = tail.get(2..).unwrap_or_default();
            match b.find("*/") {
                Some(e) => (b.get(..e).unwrap_or_default(), b.get(e + 2..).unwrap_or_default()),
                None => (b, ""),
            }
        } else {
            let skip = if tail.starts_with('#') { 1 } else { 2 };
            let b = tail.get(skip..).unwrap_or_default();
            match b.find('\n') {
                Some(e) => (b.get(..e).unwrap_or_default(), b.get(e..).unwrap_or_default()),
                None => (b, ""),
            }
        };
        comment_pairs(body, &mut ex, msg);
        rest = next;
    }
}

fn comment_pairs(body: &str, ex: &mut TraceExtractor<'_>, msg: &mut L7Message) {
    let unq = |v: &str| v.trim().trim_matches(|c| c == '\'' || c == '"').to_string();
    let toks: Vec<&str> = body.split(|c: char| c == ',' || c.is_whitespace()).filter(|t| !t.is_empty()).collect();
    let mut i = 0;
    while let Some(t) = toks.get(i) {
        if let Some((k, v)) = t.split_once('=') {
            ex.header(k.trim(), &unq(v), msg);
            i += 1;
        } else if let Some(k) = t.strip_suffix(':') {
            if let Some(v) = toks.get(i + 1) {
                ex.header(k, &unq(v), msg);
            }
            i += 2;
        } else if let Some((k, v)) = t.split_once(':') {
            ex.header(k, &unq(v), msg);
            i += 1;
        } else {
            if let Some(v) = toks.get(i + 1)
                && ex.header(t, &unq(v), msg)
            {
                i += 1;
            }
            i += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// little-endian / big-endian readers shared by the binary protocols

/// `u16` little-endian at `off`.
pub(crate) fn le16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
/// 3-byte little-endian at `off`.
pub(crate) fn le24(b: &[u8], off: usize) -> Option<usize> {
    let s = b.get(off..off + 3)?;
    Some(usize::from(*s.first()?) | usize::from(*s.get(1)?) << 8 | usize::from(*s.get(2)?) << 16)
}
/// `u32` little-endian at `off`.
pub(crate) fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
/// `u64` little-endian at `off`.
pub(crate) fn le64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}
/// `u16` big-endian at `off`.
pub(crate) fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
/// `u32` big-endian at `off`.
pub(crate) fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// Bytes up to (not including) the first NUL at or after `off`, and the offset after the NUL.
pub(crate) fn cstr(b: &[u8], off: usize) -> Option<(&[u8], usize)> {
    let s = b.get(off..)?;
    let n = memchr::memchr(0, s)?;
    Some((s.get(..n)?, off + n + 1))
}

// ---------------------------------------------------------------------------------------------
// shared test harness for the database parsers

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic, dead_code)]
pub(crate) mod testutil {
    use std::net::{IpAddr, Ipv4Addr};

    use deepflow_core::record::L7FlowLog;
    use deepflow_core::{Direction, FlowInfo};

    use crate::{EmitMode, L7Config, L7Counters, L7Engine, L7FlowState};

    pub const C: Direction = Direction::ClientToServer;
    pub const S: Direction = Direction::ServerToClient;

    pub fn flow(port: u16) -> FlowInfo {
        FlowInfo {
            flow_id: 9,
            protocol: 6,
            client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            server_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            client_port: 40000,
            server_port: port,
            tunnel: Default::default(),
            start_time_us: 0,
        }
    }

    /// Runs segments (one timestamp each, 1 ms apart) through an engine; then ends the flow.
    pub fn run_cfg(cfg: L7Config, port: u16, segs: &[(Direction, Vec<u8>)]) -> (Vec<L7FlowLog>, L7Counters) {
        let f = flow(port);
        let mut e = L7Engine::new(cfg);
        let mut st = L7FlowState::default();
        let mut out = Vec::new();
        for (i, (d, b)) in segs.iter().enumerate() {
            e.on_payload(&mut st, &f, *d, 1_000_000 + i as u64 * 1000, b, &mut out);
        }
        e.on_flow_end(&mut st, &f, 1_000_000 + segs.len() as u64 * 1000, &mut out);
        (out, e.counters().clone())
    }

    pub fn run(port: u16, segs: &[(Direction, Vec<u8>)]) -> Vec<L7FlowLog> {
        run_cfg(L7Config::default(), port, segs).0
    }

    pub fn messages(port: u16, segs: &[(Direction, Vec<u8>)]) -> Vec<L7FlowLog> {
        run_cfg(L7Config { emit: EmitMode::Messages, ..L7Config::default() }, port, segs).0
    }

    fn run_chunks(cfg: &L7Config, port: u16, segs: &[(usize, Direction, Vec<u8>)]) -> Vec<L7FlowLog> {
        let f = flow(port);
        let mut e = L7Engine::new(cfg.clone());
        let mut st = L7FlowState::default();
        let mut out = Vec::new();
        let mut last = 0;
        for (i, d, b) in segs {
            last = *i;
            e.on_payload(&mut st, &f, *d, 1_000_000 + *i as u64 * 1000, b, &mut out);
        }
        e.on_flow_end(&mut st, &f, 1_000_000 + (last as u64 + 1) * 1000, &mut out);
        out
    }

    /// Splitting every segment at every offset (and byte-at-a-time) gives the same rows.
    pub fn assert_split_invariant(cfg: L7Config, port: u16, segs: &[(Direction, Vec<u8>)]) {
        let base_in: Vec<_> = segs.iter().enumerate().map(|(i, (d, b))| (i, *d, b.clone())).collect();
        let base = run_chunks(&cfg, port, &base_in);
        assert!(!base.is_empty(), "no rows");
        for (i, (d, b)) in segs.iter().enumerate() {
            for k in 1..b.len() {
                let mut v: Vec<_> = base_in.clone();
                v.remove(i);
                v.insert(i, (i, *d, b[k..].to_vec()));
                v.insert(i, (i, *d, b[..k].to_vec()));
                assert_eq!(run_chunks(&cfg, port, &v), base, "segment {i} split at {k}");
            }
        }
        let bytes: Vec<_> = base_in.iter().flat_map(|(i, d, b)| b.iter().map(move |x| (*i, *d, vec![*x]))).collect();
        assert_eq!(run_chunks(&cfg, port, &bytes), base, "byte at a time");
    }

    /// Truncating the conversation at every offset never panics.
    pub fn assert_truncation_safe(port: u16, segs: &[(Direction, Vec<u8>)]) {
        for i in 0..segs.len() {
            for k in 0..segs[i].1.len() {
                let mut v = segs[..i].to_vec();
                v.push((segs[i].0, segs[i].1[..k].to_vec()));
                let _ = run(port, &v);
            }
        }
    }

    pub struct XorShift(pub u64);
    impl XorShift {
        pub fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        pub fn below(&mut self, n: usize) -> usize {
            if n == 0 { 0 } else { (self.next() % n as u64) as usize }
        }
    }

    fn mutate(rng: &mut XorShift, b: &mut Vec<u8>) {
        const INTERESTING: &[u8] =
            &[0, 1, 2, 3, 0x7f, 0x80, 0xfe, 0xff, b'\r', b'\n', b'$', b'*', b'-', b'0', b'9', b' '];
        for _ in 0..1 + rng.below(4) {
            match rng.below(6) {
                0 if !b.is_empty() => {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
                1 if !b.is_empty() => {
                    let i = rng.below(b.len());
                    b[i] = INTERESTING[rng.below(INTERESTING.len())];
                }
                2 => {
                    let i = rng.below(b.len() + 1);
                    b.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
                }
                3 if !b.is_empty() => {
                    let i = rng.below(b.len());
                    let l = 1 + rng.below(8.min(b.len() - i));
                    b.drain(i..i + l);
                }
                4 if !b.is_empty() => {
                    let i = rng.below(b.len());
                    let l = 1 + rng.below(16.min(b.len() - i));
                    let chunk = b[i..i + l].to_vec();
                    let at = rng.below(b.len() + 1);
                    b.splice(at..at, chunk);
                }
                _ if !b.is_empty() => {
                    let i = rng.below(b.len());
                    b.truncate(i.max(1));
                }
                _ => b.push(rng.next() as u8),
            }
        }
    }

    /// `iters` mutated, randomly re-chunked variants of the seed conversations (with gaps now
    /// and then) through one engine: must not panic; rows must serialize.
    pub fn fuzz(port: u16, seeds: &[Vec<(Direction, Vec<u8>)>], iters: usize, seed: u64) -> L7Counters {
        let f = flow(port);
        let mut rng = XorShift(seed);
        let cfg = L7Config { max_buffered_bytes: 4096, max_statement_length: 200, ..L7Config::default() };
        let mut e = L7Engine::new(cfg);
        let mut out = Vec::new();
        for _ in 0..iters {
            let base = &seeds[rng.below(seeds.len())];
            let mut st = L7FlowState::default();
            let mut ts = 1_000_000u64;
            for (d, b) in base {
                ts += 1 + rng.below(1000) as u64;
                let mut b = b.clone();
                if rng.below(3) != 0 {
                    mutate(&mut rng, &mut b);
                }
                if rng.below(30) == 0 {
                    e.on_gap(&mut st, &f, *d, ts, rng.below(100) as u64);
                }
                let mut rest = &b[..];
                while !rest.is_empty() {
                    let n = 1 + rng.below(rest.len());
                    e.on_payload(&mut st, &f, *d, ts, &rest[..n], &mut out);
                    rest = &rest[n..];
                }
            }
            e.on_flow_end(&mut st, &f, ts + 1, &mut out);
            for r in out.drain(..) {
                serde_json::to_string(&r).unwrap();
            }
        }
        e.counters().clone()
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::l7::MessageKind;
    use deepflow_core::record::L7Protocol;

    #[test]
    fn obfuscation_mysql() {
        let o = |s| obfuscate(s, Dialect::MySql);
        assert_eq!(
            o("SELECT a1, t2.b FROM t3 WHERE x=-12 AND y=\"str\" AND z=X'0A' AND w=.5"),
            "SELECT a1, t2.b FROM t3 WHERE x=-? AND y=? AND z=? AND w=?"
        );
        assert_eq!(
            o("insert into t values ('a\\'b', 'c''d', 1e5, 0x1f, b'01')"),
            "insert into t values (?, ?, ?, ?, ?)"
        );
        assert_eq!(o("select 1 /* id=5 'x' */ # 7\n, `col 1` from t"), "select ? /* id=5 'x' */ # 7\n, `col 1` from t");
        assert_eq!(o("select 'unterminated"), "select ?");
        assert_eq!(o("select n'x', ex'y'"), "select ?, ex?");
    }

    #[test]
    fn obfuscation_postgres() {
        let o = |s| obfuscate(s, Dialect::Postgres);
        assert_eq!(
            o("SELECT \"a1\" FROM t WHERE b = E'x\\'y' AND c = $tag$ 1 $ 'q' $tag$ AND d = $2::int"),
            "SELECT \"a1\" FROM t WHERE b = ? AND c = ? AND d = $2::int"
        );
        assert_eq!(o("select 3.14, 'it''s', x'ff' -- 'c' 1\n"), "select ?, ?, ? -- 'c' 1\n");
    }

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("SELECT * FROM a WHERE id IN (SELECT id FROM b)").as_deref(), Some("SELECT b"));
        assert_eq!(endpoint("select x from t1,t2").as_deref(), Some("SELECT t1"));
        assert_eq!(endpoint("SELECT 1"), None);
        assert_eq!(endpoint("UPDATE `shop`.`items` SET a=1").as_deref(), Some("UPDATE shop.items"));
        assert_eq!(endpoint("delete low_priority from t where a").as_deref(), Some("DELETE t"));
        assert_eq!(endpoint("DROP TABLE IF EXISTS old;").as_deref(), Some("DROP old"));
        assert_eq!(endpoint("ALTER TABLE t ADD c int").as_deref(), Some("ALTER t"));
        assert_eq!(endpoint("CREATE INDEX i ON t (a)"), None);
        assert_eq!(endpoint("select fromage from tab").as_deref(), Some("SELECT tab"));
        assert_eq!(endpoint("/* unterminated"), None);
        assert_eq!(first_word(" /* c */ insert into"), "insert");
    }

    #[test]
    fn caps() {
        let o = StmtOptions { obfuscate: false, max_len: 5 };
        assert_eq!(o.text(b"abcdefgh"), "abcde...");
        assert_eq!(o.text("ééé".as_bytes()), "éé...");
        assert_eq!(o.sql(b"abc", Dialect::MySql, false), "abc...");
        assert_eq!(cap_string("abc".into(), 0), "abc");
    }

    #[test]
    fn comment_trace() {
        let cfg = TraceConfig::default();
        let mut m = L7Message::new(L7Protocol::MySql, MessageKind::Request);
        trace_from_comments(
            "SELECT 1 /*traceparent='00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',x=y*/",
            &cfg,
            &mut m,
        );
        assert_eq!(m.trace.trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!(m.trace.span_id.as_deref(), Some("b7ad6b7169203331"));
        let mut m = L7Message::new(L7Protocol::MySql, MessageKind::Request);
        trace_from_comments("SELECT 1 -- uber-trace-id: abc:def:123:1\n", &cfg, &mut m);
        assert_eq!(m.trace.trace_id.as_deref(), Some("abc"));
        let mut m = L7Message::new(L7Protocol::MySql, MessageKind::Request);
        trace_from_comments("SELECT 1 # b3 80f198ee56343ba8-e457b5a2e4d86bd1-1", &cfg, &mut m);
        assert_eq!(m.trace.span_id.as_deref(), Some("e457b5a2e4d86bd1"));
    }
}
