//! A minimal encoder of the pprof format (`perftools.profiles.Profile`, protobuf wire format,
//! uncompressed: `go tool pprof` and other readers accept it as is). One location and one
//! function per distinct frame name; no addresses, lines or mappings.
use std::collections::HashMap;

use super::profiler::Sample;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, 0);
    varint(out, v);
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn packed(out: &mut Vec<u8>, field: u32, vs: &[u64]) {
    let mut b = Vec::new();
    for v in vs {
        varint(&mut b, *v);
    }
    bytes(out, field, &b);
}

struct Strings {
    table: Vec<String>,
    idx: HashMap<String, u64>,
}

impl Strings {
    fn id(&mut self, s: &str) -> u64 {
        if let Some(i) = self.idx.get(s) {
            return *i;
        }
        let i = self.table.len() as u64;
        self.table.push(s.to_string());
        self.idx.insert(s.to_string(), i);
        i
    }
}

/// Encodes `samples` (frames root first, as in [`Sample`]) as a pprof profile with one value
/// of type `sample_type` in `unit` (e.g. `samples`/`count` or `off_cpu`/`nanoseconds`). The
/// process name becomes the root frame. `period_ns` is the sampling period (0 if none).
pub fn encode(samples: &[Sample], sample_type: &str, unit: &str, period_ns: u64, duration_ns: u64) -> Vec<u8> {
    let mut st = Strings { table: vec![String::new()], idx: HashMap::from([(String::new(), 0)]) };
    let mut out = Vec::new();
    // sample_type
    let (t, u) = (st.id(sample_type), st.id(unit));
    let mut vt = Vec::new();
    uint(&mut vt, 1, t);
    uint(&mut vt, 2, u);
    bytes(&mut out, 1, &vt);
    // one location + function per frame name
    let mut loc_of: HashMap<String, u64> = HashMap::new();
    let mut funcs: Vec<(u64, u64)> = Vec::new();
    for s in samples {
        let mut locs = Vec::with_capacity(s.frames.len() + 1);
        let names = std::iter::once(&s.comm).chain(s.frames.iter());
        for name in names {
            let next = loc_of.len() as u64 + 1;
            let id = *loc_of.entry(name.clone()).or_insert_with(|| {
                funcs.push((next, 0));
                next
            });
            if let Some(f) = funcs.get_mut((id - 1) as usize)
                && f.1 == 0
            {
                f.1 = st.id(name);
            }
            locs.push(id);
        }
        locs.reverse(); // leaf first
        let mut sm = Vec::new();
        packed(&mut sm, 1, &locs);
        packed(&mut sm, 2, &[s.value]);
        bytes(&mut out, 2, &sm);
    }
    for (id, name) in &funcs {
        let mut line = Vec::new();
        uint(&mut line, 1, *id);
        let mut loc = Vec::new();
        uint(&mut loc, 1, *id);
        bytes(&mut loc, 4, &line);
        bytes(&mut out, 4, &loc);
        let mut f = Vec::new();
        uint(&mut f, 1, *id);
        uint(&mut f, 2, *name);
        uint(&mut f, 3, *name);
        bytes(&mut out, 5, &f);
    }
    let (pt, pu) = (st.id("cpu"), st.id("nanoseconds"));
    for s in &st.table {
        bytes(&mut out, 6, s.as_bytes());
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    uint(&mut out, 9, now);
    uint(&mut out, 10, duration_ns);
    let mut p = Vec::new();
    uint(&mut p, 1, pt);
    uint(&mut p, 2, pu);
    bytes(&mut out, 11, &p);
    uint(&mut out, 12, period_ns);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protoc_decodes_the_profile() {
        let samples = vec![
            Sample { pid: 1, tid: 1, comm: "burn".into(), frames: vec!["main".into(), "hot".into()], value: 90 },
            Sample { pid: 1, tid: 1, comm: "burn".into(), frames: vec!["main".into(), "cold".into()], value: 10 },
        ];
        let pb = encode(&samples, "samples", "count", 10_101_010, 1_000_000_000);
        let child = std::process::Command::new("protoc")
            .arg("--decode_raw")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("SKIP protoc_decodes_the_profile: protoc not installed");
            return;
        };
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&pb).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        // string table, samples (location ids leaf first, then the value), 4 locations
        for s in ["6: \"burn\"", "6: \"hot\"", "6: \"cold\"", "6: \"samples\"", "12: 10101010"] {
            assert!(text.contains(s), "{s} missing in\n{text}");
        }
        assert_eq!(text.matches("\n4 {").count() + usize::from(text.starts_with("4 {")), 4, "{text}");
        assert_eq!(text.matches("\n2 {").count(), 2, "{text}");
    }
}
