//! Symbolization of stack addresses: kernel addresses through `/proc/kallsyms`, user
//! addresses through `/proc/PID/maps` and the ELF symbol tables (`.symtab`, `.dynsym`) of the
//! mapped files (read through `/proc/PID/root`, so containers work). Rust names are demangled.
//! No DWARF: inlined functions are attributed to the function they were inlined into, and
//! stripped binaries give `[module+0xoffset]` frames.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};

/// Sorted symbols of one ELF file (or of the kernel).
#[derive(Debug, Default)]
pub struct SymbolTable {
    /// (address, size, name), sorted by address.
    syms: Vec<(u64, u64, String)>,
    /// PT_LOAD segments: (file offset, file size, virtual address).
    segs: Vec<(u64, u64, u64)>,
}

impl SymbolTable {
    /// Reads the ELF symbol tables of `data`; `None` if it is not an object file.
    pub fn from_elf(data: &[u8]) -> Option<SymbolTable> {
        let f = object::File::parse(data).ok()?;
        let mut syms: Vec<(u64, u64, String)> = f
            .symbols()
            .chain(f.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
            .filter_map(|s| Some((s.address(), s.size(), demangle(s.name().ok()?))))
            .collect();
        syms.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        syms.dedup_by_key(|s| s.0);
        let segs = f
            .segments()
            .map(|s| {
                let (off, size) = s.file_range();
                (off, size, s.address())
            })
            .collect();
        Some(SymbolTable { syms, segs })
    }

    /// `/proc/kallsyms` (addresses are zero without privileges: the table is then empty).
    pub fn kernel() -> SymbolTable {
        let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        let mut syms: Vec<(u64, u64, String)> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let ty = it.next()?;
                let name = it.next()?;
                (addr != 0 && matches!(ty, "t" | "T" | "w" | "W")).then(|| (addr, 0, name.to_string()))
            })
            .collect();
        syms.sort_by_key(|s| s.0);
        SymbolTable { syms, segs: Vec::new() }
    }

    /// Virtual address of file offset `off` (through the PT_LOAD segments).
    pub fn file_offset_to_vaddr(&self, off: u64) -> Option<u64> {
        self.segs.iter().find(|(o, sz, _)| off >= *o && off < o + sz).map(|(o, _, va)| off - o + va)
    }

    /// The symbol covering `addr` (with sized symbols, `addr` must fall inside it).
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        let i = self.syms.partition_point(|s| s.0 <= addr);
        let (start, size, name) = self.syms.get(i.checked_sub(1)?)?;
        if *size != 0 && addr >= start.saturating_add(*size) {
            return None;
        }
        Some(name)
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.syms.len()
    }

    /// True without symbols.
    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }
}

fn demangle(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

#[derive(Debug, Clone)]
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    path: String,
}

/// Symbolizes addresses of processes and of the kernel; caches files by path.
#[derive(Default)]
pub struct Symbolizer {
    kernel: Option<SymbolTable>,
    maps: HashMap<u32, Vec<Mapping>>,
    files: HashMap<(u32, String), Option<Arc<SymbolTable>>>,
}

impl Symbolizer {
    /// An empty symbolizer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The kernel function at `addr`.
    pub fn kernel(&mut self, addr: u64) -> String {
        let k = self.kernel.get_or_insert_with(SymbolTable::kernel);
        k.lookup(addr).map_or_else(|| format!("[kernel+{addr:#x}]"), |s| format!("{s}_[k]"))
    }

    /// The function at user address `addr` of process `pid` (read its maps while it lives).
    pub fn user(&mut self, pid: u32, addr: u64) -> String {
        let maps = self.maps.entry(pid).or_insert_with(|| read_maps(pid));
        let Some(m) = maps.iter().find(|m| addr >= m.start && addr < m.end).cloned() else {
            return format!("[unknown+{addr:#x}]");
        };
        let file_off = addr - m.start + m.offset;
        let key = (pid, m.path.clone());
        let table = self
            .files
            .entry(key)
            .or_insert_with(|| {
                let rooted = PathBuf::from(format!("/proc/{pid}/root{}", m.path));
                let data = std::fs::read(&rooted).or_else(|_| std::fs::read(&m.path)).ok()?;
                SymbolTable::from_elf(&data).map(Arc::new)
            })
            .clone();
        let module = m.path.rsplit('/').next().unwrap_or(&m.path).to_string();
        if let Some(t) = table
            && let Some(name) = t.file_offset_to_vaddr(file_off).and_then(|va| t.lookup(va))
        {
            return name.to_string();
        }
        format!("[{module}+{file_off:#x}]")
    }
}

fn read_maps(pid: u32) -> Vec<Mapping> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let range = it.next()?;
            let perms = it.next()?;
            let offset = u64::from_str_radix(it.next()?, 16).ok()?;
            let _dev = it.next()?;
            let _inode = it.next()?;
            let path = it.collect::<Vec<_>>().join(" ");
            if !perms.contains('x') || !path.starts_with('/') {
                return None;
            }
            let (s, e) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(s, 16).ok()?,
                end: u64::from_str_radix(e, 16).ok()?,
                offset,
                path,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn marker_function_for_symbolizer_test() -> u64 {
        std::hint::black_box(42)
    }

    #[test]
    fn own_function_is_found() {
        let addr = marker_function_for_symbolizer_test as *const () as usize as u64;
        assert_eq!(marker_function_for_symbolizer_test(), 42);
        let mut s = Symbolizer::new();
        let name = s.user(std::process::id(), addr);
        assert!(name.contains("marker_function_for_symbolizer_test"), "{name}");
        let bad = s.user(std::process::id(), 8);
        assert!(bad.starts_with("[unknown"), "{bad}");
        assert!(SymbolTable::from_elf(b"not an elf").is_none());
    }
}
