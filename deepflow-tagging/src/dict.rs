//! SmartEncoding dictionaries: string ↔ u32 per tag kind, persisted and versioned.
//!
//! Every resource kind ([`ResourceKind`]) has its own dictionary from a unique *key* (e.g.
//! `prod/default/web-7d4b9c-x2x1z` for a pod: cluster/namespace/name) to a dense id starting at 1
//! (0 means unknown). Each entry also has a display *name* (`web-7d4b9c-x2x1z`). Ids are never
//! reused or reassigned: a deleted pod keeps its id so that old rows still resolve to its name.
//!
//! The set has a version that grows by one at every [`DictionarySet::commit`] that follows a
//! change. The agent (or controller) is the single writer; the store loads the same file
//! read-only and reloads it when the version on disk is newer ([`DictionarySet::load_if_newer`]).
//!
//! # File format (version 1)
//! UTF-8 text, one record per line, fields separated by TAB, with `\\`, `\t`, `\n`, `\r`
//! escaped as backslash sequences:
//! ```text
//! deepflow-dict 1
//! version <u64>
//! count <number of entry lines>
//! <kind> <id> <key> <name>        (name empty = same as key; ids per kind are 1, 2, 3, ...)
//! ...
//! end <FNV-1a 64 of every byte before this line, 16 hex digits>
//! ```
//! Files are written to a temporary file in the same directory, fsynced, renamed over the old
//! file, and the directory is fsynced: a crash leaves either the old or the new file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use hashbrown::HashMap;

use crate::error::{Result, TaggingError};
use crate::model::ResourceKind;

const MAGIC: &str = "deepflow-dict";
const FORMAT_VERSION: u32 = 1;

/// One kind's dictionary.
#[derive(Debug, Clone, Default)]
pub struct Dictionary {
    by_key: HashMap<Box<str>, u32>,
    /// (key, name) by id - 1. An empty name means "same as key".
    entries: Vec<(Box<str>, Box<str>)>,
}

impl Dictionary {
    /// The id of `key`, if interned.
    pub fn id(&self, key: &str) -> Option<u32> {
        self.by_key.get(key).copied()
    }

    /// The key of `id`.
    pub fn key(&self, id: u32) -> Option<&str> {
        self.entries.get((id as usize).checked_sub(1)?).map(|(k, _)| &**k)
    }

    /// The display name of `id`.
    pub fn name(&self, id: u32) -> Option<&str> {
        self.entries.get((id as usize).checked_sub(1)?).map(|(k, n)| if n.is_empty() { &**k } else { &**n })
    }

    /// Number of entries (the largest id).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `(id, key, name)` for every entry, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str, &str)> {
        self.entries.iter().enumerate().map(|(i, (k, n))| (i as u32 + 1, &**k, if n.is_empty() { &**k } else { &**n }))
    }
}

/// All dictionaries, with a version. See the [module docs](self) for the file format.
#[derive(Debug, Clone, Default)]
pub struct DictionarySet {
    dicts: [Dictionary; ResourceKind::ALL.len()],
    version: u64,
    dirty: bool,
}

impl DictionarySet {
    /// An empty set at version 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The dictionary of one kind.
    #[allow(clippy::indexing_slicing)] // the array has one slot per ResourceKind
    pub fn dict(&self, kind: ResourceKind) -> &Dictionary {
        &self.dicts[kind.index()]
    }

    #[allow(clippy::indexing_slicing)] // the array has one slot per ResourceKind
    fn dict_mut(&mut self, kind: ResourceKind) -> &mut Dictionary {
        &mut self.dicts[kind.index()]
    }

    /// The id of `key` in `kind`, assigning the next id when new. When the key exists with a
    /// different display name, the name is updated (ids never change).
    pub fn intern(&mut self, kind: ResourceKind, key: &str, name: &str) -> Result<u32> {
        let d = self.dict_mut(kind);
        let stored_name: Box<str> = if name == key { Box::from("") } else { Box::from(name) };
        if let Some(&id) = d.by_key.get(key) {
            if let Some(e) = d.entries.get_mut(id as usize - 1)
                && e.1 != stored_name
            {
                e.1 = stored_name;
                self.dirty = true;
            }
            return Ok(id);
        }
        let id = u32::try_from(d.entries.len() + 1)
            .ok()
            .filter(|&i| i != u32::MAX)
            .ok_or(TaggingError::DictionaryFull { kind: kind.name() })?;
        d.entries.push((Box::from(key), stored_name));
        d.by_key.insert(Box::from(key), id);
        self.dirty = true;
        Ok(id)
    }

    /// The id of `key` in `kind`, without interning.
    pub fn id(&self, kind: ResourceKind, key: &str) -> Option<u32> {
        self.dict(kind).id(key)
    }

    /// The display name of an id.
    pub fn name(&self, kind: ResourceKind, id: u32) -> Option<&str> {
        self.dict(kind).name(id)
    }

    /// The current version: the number of committed changes.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// True when entries were added or renamed since the last commit.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Bumps the version if anything changed since the last commit; returns the version.
    pub fn commit(&mut self) -> u64 {
        if self.dirty {
            self.version += 1;
            self.dirty = false;
        }
        self.version
    }

    /// Commits, then writes the set to `path` atomically (temp file + fsync + rename + directory
    /// fsync).
    pub fn save(&mut self, path: &Path) -> Result<()> {
        self.commit();
        let bytes = self.encode();
        write_atomic(path, &bytes)
    }

    /// Serializes the set (the file contents).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(64 + self.dicts.iter().map(|d| d.len() * 48).sum::<usize>());
        let count: usize = self.dicts.iter().map(Dictionary::len).sum();
        out.push_str(&format!("{MAGIC} {FORMAT_VERSION}\nversion {}\ncount {count}\n", self.version));
        for kind in ResourceKind::ALL {
            for (i, (k, n)) in self.dict(kind).entries.iter().enumerate() {
                out.push_str(kind.name());
                out.push('\t');
                out.push_str(&(i + 1).to_string());
                out.push('\t');
                escape_into(&mut out, k);
                out.push('\t');
                escape_into(&mut out, n);
                out.push('\n');
            }
        }
        let sum = fnv1a(out.as_bytes());
        out.push_str(&format!("end {sum:016x}\n"));
        out.into_bytes()
    }

    /// Loads a set written by [`DictionarySet::save`]. Corrupt, truncated or unknown-version files
    /// are an error naming the file and line.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = fs::read(path).map_err(|source| TaggingError::Io { path: path.to_path_buf(), source })?;
        Self::decode(&bytes).map_err(|reason| TaggingError::Dictionary { path: path.to_path_buf(), reason })
    }

    /// Loads `path`, or returns an empty set when the file does not exist.
    pub fn open_or_new(path: &Path) -> Result<Self> {
        match fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::new()),
            _ => Self::load(path),
        }
    }

    /// For readers (the store): reloads from `path` when the file's version is newer than this
    /// set's. Returns true when reloaded. On error the current contents stay.
    pub fn load_if_newer(&mut self, path: &Path) -> Result<bool> {
        let other = Self::load(path)?;
        if other.version > self.version {
            *self = other;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Parses file contents.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
        let end_pos = text.rfind("\nend ").ok_or("truncated: no end line")? + 1;
        let (body, trailer) = text.split_at(end_pos);
        let want = trailer.strip_prefix("end ").and_then(|t| t.strip_suffix('\n')).ok_or("truncated end line")?;
        let got = format!("{:016x}", fnv1a(body.as_bytes()));
        if want != got {
            return Err(format!("checksum mismatch (file says {want}, contents hash to {got}): corrupt file"));
        }
        let mut lines = body.lines().enumerate();
        let mut next = |what: &str| lines.next().map(|(_, l)| l).ok_or_else(|| format!("missing {what} line"));
        let header = next("header")?;
        let fv = header
            .strip_prefix(MAGIC)
            .and_then(|r| r.trim().parse::<u32>().ok())
            .ok_or_else(|| format!("not a dictionary file (header {header:?})"))?;
        if fv != FORMAT_VERSION {
            return Err(format!("unknown format version {fv} (this build reads {FORMAT_VERSION})"));
        }
        let version =
            next("version")?.strip_prefix("version ").and_then(|v| v.parse::<u64>().ok()).ok_or("bad version line")?;
        let count =
            next("count")?.strip_prefix("count ").and_then(|v| v.parse::<usize>().ok()).ok_or("bad count line")?;
        let mut set = DictionarySet { version, ..Default::default() };
        let mut n = 0usize;
        for (lineno, line) in body.lines().enumerate().skip(3) {
            let bad = |why: &str| format!("line {}: {why}", lineno + 1);
            let mut f = line.split('\t');
            let (Some(kind), Some(id), Some(key), Some(name), None) =
                (f.next(), f.next(), f.next(), f.next(), f.next())
            else {
                return Err(bad("expected 4 tab-separated fields"));
            };
            let kind = ResourceKind::from_name(kind).ok_or_else(|| bad(&format!("unknown kind {kind:?}")))?;
            let id: u32 = id.parse().map_err(|_| bad(&format!("bad id {id:?}")))?;
            let d = set.dict_mut(kind);
            if id as usize != d.entries.len() + 1 {
                return Err(bad(&format!("{kind} id {id} out of sequence (expected {})", d.entries.len() + 1)));
            }
            let key = unescape(key).map_err(|e| bad(&e))?;
            let name = unescape(name).map_err(|e| bad(&e))?;
            if d.by_key.insert(Box::from(key.as_str()), id).is_some() {
                return Err(bad(&format!("duplicate {kind} key {key:?}")));
            }
            d.entries.push((key.into_boxed_str(), name.into_boxed_str()));
            n += 1;
        }
        if n != count {
            return Err(format!("count says {count} entries, found {n}"));
        }
        Ok(set)
    }
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

fn unescape(s: &str) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('\\') => out.push('\\'),
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                other => return Err(format!("bad escape \\{}", other.map(String::from).unwrap_or_default())),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename,
/// then fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |p: &Path| {
        let p: PathBuf = p.to_path_buf();
        move |source| TaggingError::Io { path: p, source }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "dict".into());
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    {
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io(path)(e));
    }
    // Make the rename durable; not every platform lets a directory be opened, so this is best
    // effort there.
    if let Ok(d) = fs::File::open(&dir) {
        d.sync_all().map_err(io(&dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_escapes() {
        let mut d = DictionarySet::new();
        assert_eq!(d.intern(ResourceKind::Pod, "c/ns/a", "a").unwrap(), 1);
        assert_eq!(d.intern(ResourceKind::Pod, "c/ns/b", "b").unwrap(), 2);
        assert_eq!(d.intern(ResourceKind::Pod, "c/ns/a", "a").unwrap(), 1);
        assert_eq!(d.intern(ResourceKind::Region, "r1", "r1").unwrap(), 1);
        let weird = "multi\nline\tvalue with \\ backslash {\"json\": true}";
        let v = d.intern(ResourceKind::LabelValue, weird, weird).unwrap();
        assert_eq!(d.commit(), 1);
        assert_eq!(d.commit(), 1, "no change, no new version");
        let bytes = d.encode();
        let e = DictionarySet::decode(&bytes).unwrap();
        assert_eq!(e.version(), 1);
        assert_eq!(e.name(ResourceKind::Pod, 2), Some("b"));
        assert_eq!(e.dict(ResourceKind::Pod).key(2), Some("c/ns/b"));
        assert_eq!(e.name(ResourceKind::LabelValue, v), Some(weird));
        assert_eq!(e.name(ResourceKind::Pod, 0), None);
        assert_eq!(e.name(ResourceKind::Pod, 3), None);
    }

    #[test]
    fn corrupt_files_are_rejected() {
        let mut d = DictionarySet::new();
        d.intern(ResourceKind::Host, "h1", "h1").unwrap();
        d.commit();
        let good = d.encode();
        // truncated at every offset: never accepted
        for cut in 0..good.len() - 1 {
            assert!(DictionarySet::decode(&good[..cut]).is_err(), "accepted truncation at {cut}");
        }
        // one flipped byte
        let mut bad = good.clone();
        bad[20] ^= 1;
        assert!(DictionarySet::decode(&bad).unwrap_err().contains("checksum"));
        // unknown format version (with a valid checksum)
        let text = String::from_utf8(good).unwrap().replace("deepflow-dict 1", "deepflow-dict 9");
        let body = &text[..text.rfind("\nend ").unwrap() + 1];
        let refixed = format!("{body}end {:016x}\n", fnv1a(body.as_bytes()));
        assert!(DictionarySet::decode(refixed.as_bytes()).unwrap_err().contains("unknown format version 9"));
    }
}
