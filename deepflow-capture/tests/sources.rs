//! The pcap/pcapng readers against tshark on every committed fixture: same number of frames,
//! and the same timestamp, wire length and captured length for each. Skips (with a message)
//! when tshark is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use deepflow_capture::source::{CaptureError, Next, PacketSource, from_reader_with_buffer, open_file};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(&dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    v.retain(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("pcap" | "pcapng")));
    v.sort();
    v
}

fn have_tshark() -> bool {
    Command::new("tshark").arg("-v").output().map(|o| o.status.success()).unwrap_or(false)
}

/// (timestamp µs, wire length, captured length) of every frame.
type Frame = (u64, u32, usize);

fn read(src: &mut dyn PacketSource) -> Result<Vec<Frame>, CaptureError> {
    let mut out = Vec::new();
    loop {
        match src.next_packet()? {
            Next::Packet(p) => out.push((p.timestamp_us, p.wire_len, p.data.len())),
            Next::Idle => {}
            Next::End => return Ok(out),
        }
    }
}

/// "1700000000.123456789" → microseconds (truncated, as the readers do).
fn epoch_us(s: &str) -> u64 {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut digits: String = frac.chars().take(6).collect();
    while digits.len() < 6 {
        digits.push('0');
    }
    secs.parse::<u64>().unwrap() * 1_000_000 + digits.parse::<u64>().unwrap()
}

fn tshark_frames(path: &Path) -> Vec<Frame> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-T", "fields", "-e", "frame.time_epoch", "-e", "frame.len", "-e", "frame.cap_len"])
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (epoch_us(f[0]), f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect()
}

#[test]
fn fixtures_match_tshark() {
    let files = fixtures();
    if files.is_empty() {
        eprintln!("skipping: no fixtures in tests/fixtures");
        return;
    }
    if !have_tshark() {
        eprintln!("skipping: tshark is not installed (scripts/install-deps.sh test installs it)");
        return;
    }
    let mut kinds = (0, 0);
    for path in &files {
        let mut src = open_file(path).unwrap_or_else(|e| panic!("{e}"));
        let ours = read(&mut src).unwrap_or_else(|e| panic!("{e}"));
        let theirs = tshark_frames(path);
        assert_eq!(ours.len(), theirs.len(), "{}: frame count", path.display());
        assert!(!ours.is_empty(), "{}", path.display());
        assert_eq!(ours[0].0, theirs[0].0, "{}: first timestamp", path.display());
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(a, b, "{}: frame {} (timestamp µs, wire length, captured length)", path.display(), i + 1);
        }
        let s = src.stats();
        assert_eq!((s.truncated_at, s.unsupported_link), (None, 0), "{}", path.display());
        assert_eq!(s.offset, std::fs::metadata(path).unwrap().len(), "{}: consumed the whole file", path.display());
        if path.extension().is_some_and(|e| e == "pcapng") {
            kinds.1 += 1;
        } else {
            kinds.0 += 1;
        }
    }
    eprintln!("{} pcap and {} pcapng fixtures agree with tshark", kinds.0, kinds.1);
}

/// Every fixture cut at every byte offset (past its file header): no panic, and exactly the
/// frames before the cut, with `truncated_at` set when the cut falls inside a record.
#[test]
fn fixtures_truncated_everywhere() {
    for path in fixtures() {
        let bytes = std::fs::read(&path).unwrap();
        if bytes.len() > 12 * 1024 {
            continue;
        }
        let mut full_src = open_file(&path).unwrap();
        let full = read(&mut full_src).unwrap();
        let mut prev = 0;
        for cut in 0..=bytes.len() {
            let mut src = match from_reader_with_buffer(&bytes[..cut], &path, 256) {
                Ok(s) => s,
                Err(CaptureError::NotCapture { .. } | CaptureError::Corrupt { .. }) => continue,
                Err(e) => panic!("{}: cut {cut}: {e}", path.display()),
            };
            let got = read(&mut src).unwrap_or_else(|e| panic!("{}: cut {cut}: {e}", path.display()));
            assert_eq!(got[..], full[..got.len()], "{}: cut {cut}", path.display());
            assert!(got.len() >= prev, "{}: cut {cut}: fewer frames than a shorter cut", path.display());
            prev = got.len();
            let s = src.stats();
            if cut == bytes.len() {
                assert_eq!((got.len(), s.truncated_at), (full.len(), None), "{}", path.display());
            } else if let Some(at) = s.truncated_at {
                assert!(at < cut as u64, "{}: cut {cut}: truncated_at {at}", path.display());
            }
        }
    }
}
