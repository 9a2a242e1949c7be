//! Minimal Hessian 2.0 reader shared by the Dubbo and SOFARPC parsers.
//!
//! It decodes every Hessian 2.0 value form (strings and binaries with chunks, compact ints,
//! longs and doubles, dates, class definitions and objects, typed/untyped and fixed/variable
//! lists and maps, references) without allocating for what is only skipped: binaries are not
//! copied, strings are kept up to [`MAX_STRING`] bytes, list/map/object members up to
//! [`MAX_MEMBERS`]. Recursion is capped at [`MAX_DEPTH`] and every value consumes at least one
//! byte, so the work is linear in the input. Bad or truncated input returns `None`.
//!
//! It also reads the Hessian 2.0 *draft* grammar of Caucho hessian 3.0 that the Node SOFA stack
//! (sofa-hessian-node `v3`, the default of sofa-rpc-node / sofa-bolt-node) still writes: class
//! definitions `O <int len><type chars> <int n> <field names>`, instances `o <int ref>`, lists
//! `V [t <u16 len><type>] [l <i32> | n <u8>] values z`, maps `M [t <type>] entries z`, `v <type
//! ref> <len> values`, refs `R <u32>`, string/binary chunks `s`/`b`. A stream switches to it when
//! its first `O` is followed by a length and a Java type name instead of a class reference.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

/// Nesting limit (lists, maps, objects).
pub const MAX_DEPTH: u8 = 24;
/// Longest string kept (longer ones are cut on a char boundary; the rest is skipped).
pub const MAX_STRING: usize = 4096;
/// Members kept per list/map/object (the rest is skipped).
pub const MAX_MEMBERS: usize = 64;
/// Class definitions kept per stream.
const MAX_CLASSES: usize = 256;

/// A decoded value (only what the RPC parsers look at is kept).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `N`.
    Null,
    /// `T` / `F`.
    Bool(bool),
    /// Any int or long form.
    Int(i64),
    /// Any double form, or a date.
    Number,
    /// A string (possibly cut at [`MAX_STRING`]).
    Str(String),
    /// A binary of this many bytes (not copied).
    Bytes(usize),
    /// A list (first [`MAX_MEMBERS`] items).
    List(Vec<Value>),
    /// A map (first [`MAX_MEMBERS`] entries).
    Map(Vec<(Value, Value)>),
    /// An object: class name and (field name, value) pairs.
    Object(String, Vec<(String, Value)>),
    /// A back reference to an earlier list/map/object.
    Ref(i64),
}

impl Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Looks up `key` in a map with string keys, or a field of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(m) => m.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            Value::Object(_, f) => f.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// (key, value) string pairs of a map (non-string entries skipped).
    pub fn str_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let entries: &[(Value, Value)] = match self {
            Value::Map(m) => m,
            _ => &[],
        };
        entries.iter().filter_map(|(k, v)| Some((k.as_str()?, v.as_str()?)))
    }
}

/// A reader over one Hessian 2.0 stream (class definitions are remembered across values).
pub struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    classes: Vec<(String, Vec<String>)>,
    /// Hessian 2.0 draft grammar (see the module docs).
    draft: bool,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `b`.
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b, pos: 0, classes: Vec::new(), draft: false }
    }

    /// Bytes consumed so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// True when every byte was consumed.
    pub fn at_end(&self) -> bool {
        self.pos >= self.b.len()
    }

    /// The next byte, without consuming it.
    pub fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        Some(self.take(n)?.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
    }

    /// Reads `units` UTF-16 code units of Hessian's UTF-8 (one to three bytes each; a
    /// four-byte sequence counts as two units), appending up to [`MAX_STRING`] bytes to `out`.
    fn chars(&mut self, units: usize, out: &mut Vec<u8>) -> Option<()> {
        let mut left = units;
        while left > 0 {
            let lead = *self.b.get(self.pos)?;
            let (n, u) = match lead {
                0x00..=0x7f => (1, 1),
                0xc0..=0xdf => (2, 1),
                0xe0..=0xef => (3, 1),
                0xf0..=0xf7 => (4, 2),
                _ => return None,
            };
            let s = self.take(n)?;
            if out.len() + n <= MAX_STRING {
                out.extend_from_slice(s);
            }
            left = left.saturating_sub(u);
        }
        Some(())
    }

    /// A string value (any string form), `None` for null or a non-string.
    pub fn string(&mut self) -> Option<String> {
        match self.value()? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An int value (any int/long form).
    pub fn int(&mut self) -> Option<i64> {
        match self.value()? {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    /// Reads one value.
    pub fn value(&mut self) -> Option<Value> {
        self.value_at(0)
    }

    /// An int read inside a value at `depth` (counts against [`MAX_DEPTH`], unlike [`Self::int`]).
    fn int_at(&mut self, depth: u8) -> Option<i64> {
        match self.value_at(depth + 1)? {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    /// A string read inside a value at `depth` (counts against [`MAX_DEPTH`]).
    fn string_at(&mut self, depth: u8) -> Option<String> {
        match self.value_at(depth + 1)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    fn members(&mut self, n: Option<usize>, depth: u8) -> Option<Vec<Value>> {
        let mut v = Vec::new();
        let mut i = 0usize;
        loop {
            match n {
                Some(n) if i >= n => break,
                None if self.peek()? == self.end_tag() => {
                    self.pos += 1;
                    break;
                }
                _ => {}
            }
            let x = self.value_at(depth + 1)?;
            if v.len() < MAX_MEMBERS {
                v.push(x);
            }
            i += 1;
        }
        Some(v)
    }

    fn map(&mut self, depth: u8) -> Option<Value> {
        let mut m = Vec::new();
        loop {
            if self.peek()? == self.end_tag() {
                self.pos += 1;
                return Some(Value::Map(m));
            }
            let k = self.value_at(depth + 1)?;
            let v = self.value_at(depth + 1)?;
            if m.len() < MAX_MEMBERS {
                m.push((k, v));
            }
        }
    }

    fn object(&mut self, idx: i64, depth: u8) -> Option<Value> {
        let (name, fields) = self.classes.get(usize::try_from(idx).ok()?)?.clone();
        let mut out = Vec::new();
        for f in fields {
            let v = self.value_at(depth + 1)?;
            if out.len() < MAX_MEMBERS {
                out.push((f, v));
            }
        }
        Some(Value::Object(name, out))
    }

    /// A list/map type: a type-name string or an int reference to an earlier one.
    fn type_name(&mut self, depth: u8) -> Option<()> {
        match self.value_at(depth + 1)? {
            Value::Str(_) | Value::Int(_) => Some(()),
            _ => None,
        }
    }

    fn chunked(&mut self, first: u8, string: bool) -> Option<Value> {
        let mut tag = first;
        let mut out = Vec::new();
        let mut total = 0usize;
        loop {
            let (len, last) = match (string, tag) {
                (true, 0x52) => (self.be(2)? as usize, false),
                (true, 0x53) => (self.be(2)? as usize, true),
                (true, 0x00..=0x1f) => (usize::from(tag), true),
                (true, 0x30..=0x33) => ((usize::from(tag - 0x30) << 8) | usize::from(self.u8()?), true),
                (false, 0x41) => (self.be(2)? as usize, false),
                (false, 0x42) => (self.be(2)? as usize, true),
                (false, 0x20..=0x2f) => (usize::from(tag - 0x20), true),
                (false, 0x34..=0x37) => ((usize::from(tag - 0x34) << 8) | usize::from(self.u8()?), true),
                _ => return None,
            };
            if string {
                self.chars(len, &mut out)?;
            } else {
                self.take(len)?;
                total += len;
            }
            if last {
                break;
            }
            tag = self.u8()?;
        }
        Some(if string { Value::Str(lossy(out)) } else { Value::Bytes(total) })
    }

    /// End of a variable-length list or map: `Z`, or `z` in the draft grammar.
    fn end_tag(&self) -> u8 {
        if self.draft { b'z' } else { b'Z' }
    }

    /// At an `O` (already consumed) of a stream not yet known to be draft: true if what follows
    /// is a draft class definition (a length, then that many Java type-name bytes) rather than
    /// a reference to a known class. Consumes nothing.
    fn draft_def_follows(&mut self) -> bool {
        // only an int encoding can be the length: looking further (a nested `O`, a list...) would
        // parse the same bytes twice per level, exponential in the nesting (found by cargo-fuzz)
        if !matches!(self.b.get(self.pos), Some(0x38..=0x3f | 0x49 | 0x4c | 0x59 | 0x80..=0xff)) {
            return false;
        }
        let start = self.pos;
        let len = self.int();
        let end = self.pos;
        self.pos = start;
        let Some(len) = len.and_then(|l| usize::try_from(l).ok()) else { return false };
        if len < self.classes.len() || !(1..=1024).contains(&len) {
            return false;
        }
        self.b.get(end..end + len).is_some_and(|name| {
            name.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'$' | b'_' | b'[' | b';'))
        })
    }

    /// Draft-only forms; `None` = not one of them (the 2.0 table applies), `Some(None)` = bad.
    fn draft_value(&mut self, t: u8, depth: u8) -> Option<Option<Value>> {
        let v = match t {
            b'O' => {
                let len = usize::try_from(self.int_at(depth)?).ok()?;
                let mut name = Vec::new();
                self.chars(len, &mut name)?;
                let n = self.int_at(depth)?;
                if !(0..=4096).contains(&n) {
                    return Some(None);
                }
                let mut fields = Vec::new();
                for _ in 0..n {
                    fields.push(self.string_at(depth)?);
                }
                if self.classes.len() < MAX_CLASSES {
                    self.classes.push((lossy(name), fields));
                }
                self.value_at(depth + 1)
            }
            b'o' => {
                let idx = self.int_at(depth)?;
                self.object(idx, depth)
            }
            b'V' | b'M' => {
                if self.peek()? == b't' {
                    self.pos += 1;
                    let n = self.be(2)? as usize;
                    self.take(n)?;
                }
                if t == b'M' {
                    return Some(self.map(depth));
                }
                match self.peek()? {
                    b'l' => {
                        self.pos += 1;
                        self.take(4)?;
                    }
                    b'n' => {
                        self.pos += 1;
                        self.take(1)?;
                    }
                    _ => {}
                }
                self.members(None, depth).map(Value::List)
            }
            b'v' => {
                self.int_at(depth)?;
                let n = usize::try_from(self.int_at(depth)?).ok()?;
                self.members(Some(n), depth).map(Value::List)
            }
            b'R' => Some(Value::Ref(i64::from(self.be(4)? as u32))),
            b's' | b'b' => {
                // non-final chunks, then a final `S` / `B` (or compact) chunk
                let string = t == b's';
                let mut out = Vec::new();
                let mut total = 0usize;
                let mut tag = t;
                while tag == b's' || tag == b'b' {
                    let n = self.be(2)? as usize;
                    if string {
                        self.chars(n, &mut out)?;
                    } else {
                        self.take(n)?;
                        total += n;
                    }
                    tag = self.u8()?;
                }
                match self.chunked(tag, string)? {
                    Value::Str(last) => {
                        out.extend_from_slice(last.as_bytes());
                        out.truncate(MAX_STRING);
                        Some(Value::Str(lossy(out)))
                    }
                    Value::Bytes(n) => Some(Value::Bytes(total + n)),
                    _ => None,
                }
            }
            _ => return None,
        };
        Some(v)
    }

    fn value_at(&mut self, depth: u8) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        let t = self.u8()?;
        if !self.draft && t == b'O' && self.draft_def_follows() {
            self.draft = true;
        }
        if self.draft
            && let Some(v) = self.draft_value(t, depth)
        {
            return v;
        }
        Some(match t {
            0x00..=0x1f | 0x30..=0x33 | 0x52 | 0x53 => self.chunked(t, true)?,
            0x20..=0x2f | 0x34..=0x37 | 0x41 | 0x42 => self.chunked(t, false)?,
            0x38..=0x3f => Value::Int(((i64::from(t) - 0x3c) << 16) | self.be(2)? as i64),
            0x43 => {
                let name = self.string_at(depth)?;
                let n = self.int_at(depth)?;
                if !(0..=4096).contains(&n) {
                    return None;
                }
                let mut fields = Vec::new();
                for _ in 0..n {
                    fields.push(self.string_at(depth)?);
                }
                if self.classes.len() < MAX_CLASSES {
                    self.classes.push((name, fields));
                }
                // a definition is followed by the value that uses it
                return self.value_at(depth + 1);
            }
            0x44 | 0x4a => {
                self.take(8)?;
                Value::Number
            }
            0x4b => {
                self.take(4)?;
                Value::Number
            }
            0x46 => Value::Bool(false),
            0x54 => Value::Bool(true),
            0x4e => Value::Null,
            0x48 => self.map(depth)?,
            0x4d => {
                self.type_name(depth)?;
                self.map(depth)?
            }
            0x49 => Value::Int(i64::from(self.be(4)? as u32 as i32)),
            0x4c => Value::Int(self.be(8)? as i64),
            0x59 => Value::Int(i64::from(self.be(4)? as u32 as i32)),
            0x4f => {
                let idx = self.int_at(depth)?;
                self.object(idx, depth)?
            }
            0x60..=0x6f => self.object(i64::from(t - 0x60), depth)?,
            0x51 => Value::Ref(self.int_at(depth)?),
            0x55 => {
                self.type_name(depth)?;
                Value::List(self.members(None, depth)?)
            }
            0x56 => {
                self.type_name(depth)?;
                let n = usize::try_from(self.int_at(depth)?).ok()?;
                Value::List(self.members(Some(n), depth)?)
            }
            0x57 => Value::List(self.members(None, depth)?),
            0x58 => {
                let n = usize::try_from(self.int_at(depth)?).ok()?;
                Value::List(self.members(Some(n), depth)?)
            }
            0x70..=0x77 => {
                self.type_name(depth)?;
                Value::List(self.members(Some(usize::from(t - 0x70)), depth)?)
            }
            0x78..=0x7f => Value::List(self.members(Some(usize::from(t - 0x78)), depth)?),
            0x5b | 0x5c => Value::Number,
            0x5d => {
                self.take(1)?;
                Value::Number
            }
            0x5e => {
                self.take(2)?;
                Value::Number
            }
            0x5f => {
                self.take(4)?;
                Value::Number
            }
            0x80..=0xbf => Value::Int(i64::from(t) - 0x90),
            0xc0..=0xcf => Value::Int(((i64::from(t) - 0xc8) << 8) | i64::from(self.u8()?)),
            0xd0..=0xd7 => Value::Int(((i64::from(t) - 0xd4) << 16) | self.be(2)? as i64),
            0xd8..=0xef => Value::Int(i64::from(t) - 0xe0),
            0xf0..=0xff => Value::Int(((i64::from(t) - 0xf8) << 8) | i64::from(self.u8()?)),
            _ => return None,
        })
    }
}

fn lossy(v: Vec<u8>) -> String {
    match String::from_utf8(v) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Number of parameters in a JVM method descriptor (`Ljava/lang/String;I[J` → 3).
pub fn descriptor_params(desc: &str) -> Option<usize> {
    let b = desc.as_bytes();
    let mut i = 0;
    let mut n = 0;
    while i < b.len() {
        while b.get(i) == Some(&b'[') {
            i += 1;
        }
        match b.get(i)? {
            b'Z' | b'B' | b'C' | b'D' | b'F' | b'I' | b'J' | b'S' | b'V' => i += 1,
            b'L' => i += b.get(i..)?.iter().position(|&c| c == b';')? + 1,
            _ => return None,
        }
        n += 1;
    }
    Some(n)
}

/// Test helpers: a Hessian 2.0 writer for the forms the parsers meet.
#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
pub(crate) mod write {
    /// A string (compact, medium or final-chunk form; ASCII/BMP only).
    pub fn string(out: &mut Vec<u8>, s: &str) {
        let units = s.encode_utf16().count();
        if units < 32 {
            out.push(units as u8);
        } else if units < 1024 {
            out.push(0x30 + (units >> 8) as u8);
            out.push(units as u8);
        } else {
            out.push(b'S');
            out.extend((units as u16).to_be_bytes());
        }
        out.extend(s.as_bytes());
    }
    /// An int in its compact form.
    pub fn int(out: &mut Vec<u8>, v: i32) {
        match v {
            -16..=47 => out.push((0x90 + v) as u8),
            -2048..=2047 => {
                out.push((0xc8 + (v >> 8)) as u8);
                out.push(v as u8);
            }
            _ => {
                out.push(b'I');
                out.extend(v.to_be_bytes());
            }
        }
    }
    /// An untyped map of strings.
    pub fn map(out: &mut Vec<u8>, kv: &[(&str, &str)]) {
        out.push(b'H');
        for (k, v) in kv {
            string(out, k);
            string(out, v);
        }
        out.push(b'Z');
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn nested_draft_lookahead_is_not_exponential() {
        // cargo-fuzz (sofarpc) found `O O O ...`: each `O` looked ahead by parsing the next value
        // in full and then parsed it again, 2^n work; now the lookahead only reads an int.
        let mut b = vec![b'O'; 4000];
        b.push(0x90);
        let _ = Reader::new(&b).value();
        let mut b = b"O".repeat(2000);
        b.extend(std::iter::repeat_n(0x91, 2000));
        let _ = Reader::new(&b).value();
    }

    #[test]
    fn forms() {
        let mut b = Vec::new();
        write::string(&mut b, "hello");
        write::int(&mut b, 300);
        write::int(&mut b, -5);
        b.extend([b'I', 0, 1, 0, 0]);
        b.extend([0x38 + 4, 0x12, 0x34]); // long 3 bytes
        b.extend([0xe5]); // long 5
        b.extend([0x22, 1, 2]); // binary 2
        b.extend([b'A', 0, 1, 9, b'B', 0, 2, 1, 2]); // chunked binary
        b.extend([b'R', 0, 2, b'a', b'b', 0x01, b'c']); // chunked string "abc"
        b.extend([b'D', 0, 0, 0, 0, 0, 0, 0, 0, 0x5b, 0x5f, 0, 0, 0, 0]);
        b.extend([0x79, b'N']); // fixed untyped list of 1
        b.extend([b'V', 0x04, b'[', b'i', b'n', b't', 0x92, 0x91, 0x92]); // typed fixed list
        b.extend([b'C', 0x03, b'P', b't', b'x', 0x92, 0x01, b'a', 0x01, b'b', 0x60, 0x01, b'x', b'T']);
        b.extend([b'O', 0x90, 0x00, b'F']); // second instance of the class
        b.extend([b'M', 0x01, b'm', 0x01, b'k', 0x95, b'Z', b'Q', 0x90]);
        let mut r = Reader::new(&b);
        assert_eq!(r.value(), Some(Value::Str("hello".into())));
        assert_eq!(r.value(), Some(Value::Int(300)));
        assert_eq!(r.value(), Some(Value::Int(-5)));
        assert_eq!(r.value(), Some(Value::Int(65536)));
        assert_eq!(r.value(), Some(Value::Int(0x1234)));
        assert_eq!(r.value(), Some(Value::Int(5)));
        assert_eq!(r.value(), Some(Value::Bytes(2)));
        assert_eq!(r.value(), Some(Value::Bytes(3)));
        assert_eq!(r.value(), Some(Value::Str("abc".into())));
        assert_eq!(r.value(), Some(Value::Number));
        assert_eq!(r.value(), Some(Value::Number));
        assert_eq!(r.value(), Some(Value::Number));
        assert_eq!(r.value(), Some(Value::List(vec![Value::Null])));
        assert_eq!(r.value(), Some(Value::List(vec![Value::Int(1), Value::Int(2)])));
        let o = r.value().unwrap();
        assert_eq!(o.get("a").and_then(Value::as_str), Some("x"));
        assert_eq!(o.get("b"), Some(&Value::Bool(true)));
        let o = r.value().unwrap();
        assert_eq!(
            o,
            Value::Object("Ptx".into(), vec![("a".into(), Value::Str("".into())), ("b".into(), Value::Bool(false))])
        );
        let m = r.value().unwrap();
        assert_eq!(m.str_pairs().collect::<Vec<_>>(), vec![]);
        assert_eq!(m.get("k"), Some(&Value::Int(5)));
        assert_eq!(r.value(), Some(Value::Ref(0)));
        assert!(r.at_end());
        // every truncation fails cleanly
        for k in 0..b.len() {
            let mut r = Reader::new(&b[..k]);
            while r.value().is_some() {}
        }
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let b = vec![0x57u8; 10_000];
        assert_eq!(Reader::new(&b).value(), None);
    }

    #[test]
    fn descriptors() {
        assert_eq!(descriptor_params(""), Some(0));
        assert_eq!(descriptor_params("Ljava/lang/String;I[J[[Lx;"), Some(4));
        assert_eq!(descriptor_params("Lx"), None);
        assert_eq!(descriptor_params("Q"), None);
    }

    /// The SofaRequest body sofa-rpc-node 2.10 (sofa-hessian-node v3, Hessian 2.0 draft
    /// grammar) sent in tests/fixtures/sofarpc/sofarpc_real.pcap.
    #[test]
    fn draft_grammar_of_sofa_hessian_node() {
        let b: Vec<u8> = (0..HEX.len() / 2).map(|i| u8::from_str_radix(&HEX[2 * i..2 * i + 2], 16).unwrap()).collect();
        let mut r = Reader::new(&b);
        let v = r.value().unwrap();
        let Value::Object(class, _) = &v else { panic!("{v:?}") };
        assert_eq!(class, "com.alipay.sofa.rpc.core.request.SofaRequest");
        assert_eq!(v.get("methodName").and_then(Value::as_str), Some("plus"));
        assert_eq!(v.get("targetServiceUniqueName").and_then(Value::as_str), Some("com.example.rt.CalcService:1.0"));
        assert_eq!(
            v.get("methodArgSigs"),
            Some(&Value::List(vec![Value::Str("int".into()), Value::Str("int".into())]))
        );
        let props = v.get("requestProps").unwrap();
        assert_eq!(props.get("rpc_trace_context.sofaTraceId").and_then(Value::as_str), Some("0a0fe8bd1700000000011"));
        // the two int arguments follow the request object
        assert_eq!(r.value(), Some(Value::Int(1)));
        assert_eq!(r.value(), Some(Value::Int(2)));
        assert!(r.at_end());
        for k in 0..b.len() {
            let mut r = Reader::new(&b[..k]);
            while r.value().is_some() {}
        }
    }
    const HEX: &str = "4fbc636f6d2e616c697061792e736f66612e7270632e636f72652e726571756573742e536f666152657175657374950a6d6574686f644e616d650d6d6574686f64417267536967731774617267657453657276696365556e697175654e616d650d7461726765744170704e616d650c7265717565737450726f70736f9004706c7573567400115b6a6176612e6c616e672e537472696e676e0203696e7403696e747a1e636f6d2e6578616d706c652e72742e43616c63536572766963653a312e304e4d1d7270635f74726163655f636f6e746578742e736f666154726163654964153061306665386264313730303030303030303031311b7270635f74726163655f636f6e746578742e736f6661527063496403302e310b7472616365706172656e7453003730302d30616637363531393136636434336464383434386562323131633830333139632d623761643662373136393230333333312d30317a9192";
}
