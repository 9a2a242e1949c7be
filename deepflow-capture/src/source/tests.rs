//! File reader tests over pcap and pcapng images built here, byte by byte.

use super::*;

/// One expected packet: (timestamp µs, wire length, link, interface, data).
type Want = (u64, u32, LinkType, u32, Vec<u8>);

/// A file image and where each of its blocks/records starts and ends.
struct Image {
    bytes: Vec<u8>,
    /// End of the file header (pcap) or of the first section header block (pcapng).
    header_end: usize,
    /// (start, end, packet index it completes) for every block/record after the header.
    blocks: Vec<(usize, usize, Option<usize>)>,
    packets: Vec<Want>,
}

fn put16(v: &mut Vec<u8>, be: bool, x: u16) {
    v.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() });
}
fn put32(v: &mut Vec<u8>, be: bool, x: u32) {
    v.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() });
}

fn frame(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j) as u8).collect()
}

/// A classic pcap with `n` records of varied lengths.
fn pcap_image(be: bool, nanos: bool, dlt: u32, n: usize) -> Image {
    let mut v = Vec::new();
    let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
    put32(&mut v, be, magic);
    put16(&mut v, be, 2);
    put16(&mut v, be, 4);
    put32(&mut v, be, 0);
    put32(&mut v, be, 0);
    put32(&mut v, be, 65535);
    put32(&mut v, be, dlt);
    let header_end = v.len();
    let mut blocks = Vec::new();
    let mut packets = Vec::new();
    for i in 0..n {
        let start = v.len();
        let data = frame(i, [60, 1, 0, 1514, 77][i % 5]);
        let secs = 1_700_000_000 + i as u32;
        let frac = if nanos { 123_456_789 + i as u32 } else { 654_321 - i as u32 };
        let wire = data.len() as u32 + (i as u32 % 2) * 100;
        put32(&mut v, be, secs);
        put32(&mut v, be, frac);
        put32(&mut v, be, data.len() as u32);
        put32(&mut v, be, wire);
        v.extend_from_slice(&data);
        let us = u64::from(secs) * 1_000_000 + u64::from(if nanos { frac / 1000 } else { frac });
        if let Some(link) = LinkType::from_dlt(dlt) {
            packets.push((us, wire, link, 0, data));
            blocks.push((start, v.len(), Some(packets.len() - 1)));
        } else {
            blocks.push((start, v.len(), None));
        }
    }
    Image { bytes: v, header_end, blocks, packets }
}

/// Converts an interface's timestamp units to microseconds.
type TsConv = fn(u64) -> u64;

/// pcapng image builder.
struct Ng {
    img: Image,
    be: bool,
    /// Per interface of the current section: (link, ts → µs).
    ifaces: Vec<(Option<LinkType>, TsConv)>,
    last_ts: u64,
}

impl Ng {
    fn new() -> Ng {
        Ng {
            img: Image { bytes: Vec::new(), header_end: 0, blocks: Vec::new(), packets: Vec::new() },
            be: false,
            ifaces: Vec::new(),
            last_ts: 0,
        }
    }

    fn block(&mut self, btype: [u8; 4], body: &[u8], packet: Option<Want>) {
        let start = self.img.bytes.len();
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let len = body.len() as u32 + 12;
        let be = self.be;
        let v = &mut self.img.bytes;
        v.extend_from_slice(&btype);
        put32(v, be, len);
        v.extend_from_slice(&body);
        put32(v, be, len);
        let idx = packet.map(|p| {
            self.img.packets.push(p);
            self.img.packets.len() - 1
        });
        if start == 0 {
            self.img.header_end = self.img.bytes.len();
        } else {
            self.img.blocks.push((start, self.img.bytes.len(), idx));
        }
    }

    fn btype(&self, t: u32) -> [u8; 4] {
        if self.be { t.to_be_bytes() } else { t.to_le_bytes() }
    }

    fn shb(&mut self, be: bool) {
        self.be = be;
        self.ifaces.clear();
        let mut b = Vec::new();
        put32(&mut b, be, 0x1a2b_3c4d);
        put16(&mut b, be, 1);
        put16(&mut b, be, 0);
        b.extend_from_slice(&u64::MAX.to_le_bytes()); // section length unknown
        // An shb_userappl option, then end of options.
        put16(&mut b, be, 4);
        put16(&mut b, be, 5);
        b.extend_from_slice(b"test\0\0\0\0");
        put16(&mut b, be, 0);
        put16(&mut b, be, 0);
        self.block([0x0a, 0x0d, 0x0d, 0x0a], &b, None);
    }

    fn idb(&mut self, dlt: u16, snaplen: u32, tsresol: Option<u8>, conv: TsConv) {
        let be = self.be;
        let mut b = Vec::new();
        put16(&mut b, be, dlt);
        put16(&mut b, be, 0);
        put32(&mut b, be, snaplen);
        put16(&mut b, be, 2); // if_name
        put16(&mut b, be, 3);
        b.extend_from_slice(b"lo\0\0");
        if let Some(r) = tsresol {
            put16(&mut b, be, 9);
            put16(&mut b, be, 1);
            b.extend_from_slice(&[r, 0, 0, 0]);
        }
        put16(&mut b, be, 0);
        put16(&mut b, be, 0);
        self.ifaces.push((LinkType::from_dlt(u32::from(dlt)), conv));
        let t = self.btype(1);
        self.block(t, &b, None);
    }

    fn epb(&mut self, iface: u32, ts: u64, data: &[u8], wire: u32) {
        let be = self.be;
        let mut b = Vec::new();
        put32(&mut b, be, iface);
        put32(&mut b, be, (ts >> 32) as u32);
        put32(&mut b, be, ts as u32);
        put32(&mut b, be, data.len() as u32);
        put32(&mut b, be, wire);
        b.extend_from_slice(data);
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
        put16(&mut b, be, 1); // opt_comment
        put16(&mut b, be, 2);
        b.extend_from_slice(b"hi\0\0");
        put16(&mut b, be, 0);
        put16(&mut b, be, 0);
        let (link, conv) = self.ifaces[iface as usize];
        let us = conv(ts);
        self.last_ts = us;
        let want = link.map(|l| (us, wire, l, iface, data.to_vec()));
        let t = self.btype(6);
        self.block(t, &b, want);
    }

    fn pb(&mut self, iface: u16, ts: u64, data: &[u8]) {
        let be = self.be;
        let mut b = Vec::new();
        put16(&mut b, be, iface);
        put16(&mut b, be, 0);
        put32(&mut b, be, (ts >> 32) as u32);
        put32(&mut b, be, ts as u32);
        put32(&mut b, be, data.len() as u32);
        put32(&mut b, be, data.len() as u32);
        b.extend_from_slice(data);
        let (link, conv) = self.ifaces[usize::from(iface)];
        let us = conv(ts);
        self.last_ts = us;
        let want = link.map(|l| (us, data.len() as u32, l, u32::from(iface), data.to_vec()));
        let t = self.btype(2);
        self.block(t, &b, want);
    }

    /// A simple packet block; `captured` is what the reader should keep (snaplen applied).
    fn spb(&mut self, data: &[u8], captured: usize) {
        let be = self.be;
        let mut b = Vec::new();
        put32(&mut b, be, data.len() as u32);
        b.extend_from_slice(data);
        let (link, _) = self.ifaces[0];
        let want = link.map(|l| (self.last_ts, data.len() as u32, l, 0, data[..captured].to_vec()));
        let t = self.btype(3);
        self.block(t, &b, want);
    }

    fn other(&mut self, t: u32, body_len: usize) {
        let t = self.btype(t);
        self.block(t, &vec![0x55; body_len], None);
    }
}

fn micros(ts: u64) -> u64 {
    ts
}
fn nanos(ts: u64) -> u64 {
    ts / 1000
}
fn pow2_20(ts: u64) -> u64 {
    ((u128::from(ts) * 1_000_000) >> 20) as u64
}
fn millis(ts: u64) -> u64 {
    ts * 1000
}

/// Two sections (little- then big-endian), every packet block kind, several interfaces and
/// timestamp resolutions, and blocks that must be skipped.
fn pcapng_image() -> Image {
    let mut ng = Ng::new();
    ng.shb(false);
    ng.idb(1, 0, None, micros);
    ng.idb(101, 0, Some(9), nanos);
    ng.idb(276, 0, Some(0x80 | 20), pow2_20);
    ng.idb(147, 0, None, micros); // a USER0 link type: packets skipped
    ng.epb(0, 1_700_000_000_123_456, &frame(0, 60), 60);
    ng.other(4, 20); // name resolution block
    ng.epb(1, 1_700_000_000_123_456_789, &frame(1, 41), 41);
    ng.epb(2, 1_700_000_000u64 << 20 | 12345, &frame(2, 3), 3);
    ng.epb(3, 5, &frame(3, 10), 10);
    ng.other(5, 24); // interface statistics
    ng.spb(&frame(4, 33), 33);
    ng.pb(1, 1_700_000_001_000_000_000, &frame(5, 18));
    ng.other(0x0000_0bad, 8); // custom block
    ng.epb(0, 1_700_000_002_000_000, &[], 0);
    ng.shb(true);
    ng.idb(228, 16, Some(3), millis);
    ng.epb(0, 1_700_000_003_001, &frame(6, 20), 20);
    ng.spb(&frame(7, 30), 16);
    ng.other(10, 4); // decryption secrets
    ng.epb(0, 1_700_000_003_002, &frame(8, 7), 7);
    ng.img
}

fn read_all(bytes: &[u8], buffer: usize) -> (Result<Vec<Want>, CaptureError>, Option<SourceStats>) {
    match from_reader_with_buffer(bytes, "mem", buffer) {
        Ok(mut src) => {
            let got = packets_of(&mut *src);
            (got, Some(src.stats()))
        }
        Err(e) => (Err(e), None),
    }
}

/// Every packet of a file source, up to its end (which must be sticky) or its first error.
fn packets_of(src: &mut dyn PacketSource) -> Result<Vec<Want>, CaptureError> {
    let mut out = Vec::new();
    loop {
        match src.next_packet() {
            Ok(Next::Packet(p)) => out.push((p.timestamp_us, p.wire_len, p.link, p.interface, p.data.to_vec())),
            Ok(Next::Idle) => panic!("files are never idle"),
            Ok(Next::End) => break,
            Err(e) => return Err(e),
        }
    }
    assert!(matches!(src.next_packet(), Ok(Next::End)), "End is sticky");
    Ok(out)
}

#[test]
fn pcap_all_magics() {
    for be in [false, true] {
        for ns in [false, true] {
            for dlt in [1, 101, 276, 113, 0, 228] {
                let img = pcap_image(be, ns, dlt, 7);
                for buffer in [64, 100, DEFAULT_BUFFER_SIZE] {
                    let (got, stats) = read_all(&img.bytes, buffer);
                    assert_eq!(got.unwrap(), img.packets, "be={be} ns={ns} dlt={dlt} buffer={buffer}");
                    let stats = stats.unwrap();
                    assert_eq!(stats.packets, 7);
                    assert_eq!(stats.bytes, img.packets.iter().map(|p| p.4.len() as u64).sum::<u64>());
                    assert_eq!(stats.offset, img.bytes.len() as u64);
                    assert_eq!(stats.truncated_at, None);
                }
            }
        }
    }
}

#[test]
fn pcap_header_fields() {
    let img = pcap_image(true, true, 113, 1);
    let r = PcapReader::new(&img.bytes[..], "x.pcap").unwrap();
    assert_eq!(r.format(), pcap_file::Format { big_endian: true, nanos: true });
    assert_eq!(r.link_type(), Some(LinkType::LinuxSll));
    assert_eq!((r.dlt(), r.snaplen()), (113, 65535));
}

#[test]
fn pcap_unsupported_link_is_skipped_and_counted() {
    let img = pcap_image(false, false, 105, 4);
    let (got, stats) = read_all(&img.bytes, 4096);
    assert!(got.unwrap().is_empty());
    let stats = stats.unwrap();
    assert_eq!((stats.packets, stats.unsupported_link, stats.last_unsupported_dlt), (0, 4, Some(105)));
}

#[test]
fn pcap_absurd_record_length_is_corrupt() {
    let mut img = pcap_image(false, false, 1, 3);
    let second = img.blocks[1].0;
    img.bytes[second + 8..second + 12].copy_from_slice(&(300_000u32).to_le_bytes());
    let (got, stats) = read_all(&img.bytes, 4096);
    match got {
        Err(CaptureError::Corrupt { path, offset, what }) => {
            assert_eq!(path, PathBuf::from("mem"));
            assert_eq!(offset, second as u64);
            assert!(what.contains("300000"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(stats.unwrap().packets, 1, "the record before the damage was returned");
    let e = CaptureError::Corrupt { path: "a.pcap".into(), offset: 40, what: "x".into() };
    assert_eq!(e.to_string(), "a.pcap: corrupt capture at byte offset 40: x");
}

#[test]
fn not_a_capture() {
    for bytes in [&b""[..], b"\xd4\xc3", b"GET / HTTP/1.1\r\n\r\n", &[0u8; 100]] {
        assert!(matches!(read_all(bytes, 4096).0, Err(CaptureError::NotCapture { .. })), "{bytes:?}");
    }
    let e = from_reader(&b"hello world"[..], "x.txt").err().unwrap();
    assert_eq!(e.to_string(), "x.txt: not a pcap or pcapng file");
    let e = open_file(Path::new("/nonexistent/x.pcap")).err().unwrap();
    assert!(matches!(e, CaptureError::Open { .. }), "{e}");
    assert!(e.to_string().starts_with("cannot open /nonexistent/x.pcap: "), "{e}");
}

#[test]
fn pcapng_sections_interfaces_and_blocks() {
    let img = pcapng_image();
    // Sanity of the expectations themselves: links, resolutions, SPB inheritance, snaplen.
    let w = &img.packets;
    assert_eq!(w.len(), 9);
    assert_eq!(w[0].0, 1_700_000_000_123_456);
    assert_eq!(w[1].0, 1_700_000_000_123_456);
    assert_eq!(w[1].2, LinkType::Raw);
    assert_eq!(w[2].0, 1_700_000_000_011_773);
    assert_eq!(w[2].2, LinkType::LinuxSll2);
    assert_eq!((w[3].0, w[3].4.len()), (5, 33), "SPB inherits the previous block's (skipped) timestamp");
    assert_eq!(w[4].0, 1_700_000_001_000_000);
    assert_eq!(w[6].0, 1_700_000_003_001_000);
    assert_eq!(w[6].2, LinkType::Ipv4);
    assert_eq!((w[7].1, w[7].4.len()), (30, 16), "SPB cut to the interface snaplen");
    for buffer in [64, 100, 333, DEFAULT_BUFFER_SIZE] {
        let (got, stats) = read_all(&img.bytes, buffer);
        assert_eq!(got.unwrap(), img.packets, "buffer {buffer}");
        let s = stats.unwrap();
        assert_eq!(s.packets, 9);
        assert_eq!(s.skipped_blocks, 4);
        assert_eq!((s.unsupported_link, s.last_unsupported_dlt), (1, Some(147)));
        assert_eq!((s.sections, s.interfaces), (2, 5));
        assert_eq!(s.truncated_at, None);
        assert_eq!(s.offset, img.bytes.len() as u64);
    }
}

#[test]
fn pcapng_tsoffset_and_reader_accessors() {
    let mut ng = Ng::new();
    ng.shb(false);
    // IDB with if_tsoffset = 1000 s and if_tsresol = 10^-3, written by hand.
    let mut b = Vec::new();
    put16(&mut b, false, 1);
    put16(&mut b, false, 0);
    put32(&mut b, false, 0);
    put16(&mut b, false, 14);
    put16(&mut b, false, 8);
    b.extend_from_slice(&1000i64.to_le_bytes());
    put16(&mut b, false, 9);
    put16(&mut b, false, 1);
    b.extend_from_slice(&[3, 0, 0, 0]);
    ng.ifaces.push((Some(LinkType::Ethernet), millis));
    ng.block(1u32.to_le_bytes(), &b, None);
    ng.epb(0, 7, &[1, 2, 3], 3);
    let mut r = PcapNgReader::new(&ng.img.bytes[..], "t.pcapng").unwrap();
    assert_eq!(r.interface_count(), 0);
    match r.next_packet().unwrap() {
        Next::Packet(p) => assert_eq!(p.timestamp_us, 1000 * 1_000_000 + 7000),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.interface_count(), 1);
    assert_eq!(r.link_type(0), Some(LinkType::Ethernet));
}

#[test]
fn pcapng_unknown_interface_is_corrupt() {
    let mut ng = Ng::new();
    ng.shb(true);
    ng.idb(1, 0, None, micros);
    ng.epb(0, 1, &[1], 1);
    ng.ifaces.push((Some(LinkType::Ethernet), micros)); // the builder believes in interface 1
    ng.epb(1, 2, &[2], 1);
    let bad = ng.img.blocks.last().unwrap().0;
    let (got, stats) = read_all(&ng.img.bytes, 4096);
    match got {
        Err(CaptureError::Corrupt { offset, what, .. }) => {
            assert_eq!(offset, bad as u64);
            assert!(what.contains("interface 1"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(stats.unwrap().packets, 1);
}

#[test]
fn pcapng_bad_lengths_are_corrupt() {
    let img = pcapng_image();
    let (start, _, _) = img.blocks[0];
    for bad_len in [0u32, 8, 13, 30] {
        let mut b = img.bytes.clone();
        b[start + 4..start + 8].copy_from_slice(&bad_len.to_le_bytes());
        assert!(matches!(read_all(&b, 4096).0, Err(CaptureError::Corrupt { .. })), "{bad_len}");
    }
    // An EPB whose captured length runs past its block.
    let epb = img.blocks.iter().find(|b| b.2 == Some(0)).unwrap().0;
    let mut b = img.bytes.clone();
    b[epb + 20..epb + 24].copy_from_slice(&1000u32.to_le_bytes());
    assert!(matches!(read_all(&b, 4096).0, Err(CaptureError::Corrupt { offset, .. }) if offset == epb as u64));
}

/// Cuts `img` at every byte offset: either an error when the cut falls in the file header, or
/// exactly the packets of the whole records before the cut and `truncated_at` at the record
/// the cut fell in.
fn check_every_truncation(img: &Image) {
    for cut in 0..=img.bytes.len() {
        for buffer in [64, 4096] {
            let (got, stats) = read_all(&img.bytes[..cut], buffer);
            if cut < 4 {
                assert!(matches!(got, Err(CaptureError::NotCapture { .. })), "cut {cut}: {got:?}");
                continue;
            }
            if cut < img.header_end {
                assert!(matches!(got, Err(CaptureError::Corrupt { offset: 0, .. })), "cut {cut}: {got:?}");
                continue;
            }
            let got = got.unwrap_or_else(|e| panic!("cut {cut}: {e}"));
            let whole = img.blocks.iter().filter(|b| b.1 <= cut).filter_map(|b| b.2).count();
            assert_eq!(got, img.packets[..whole], "cut {cut}");
            let inside = img.blocks.iter().find(|b| b.0 < cut && cut < b.1).map(|b| b.0 as u64);
            assert_eq!(stats.unwrap().truncated_at, inside, "cut {cut}");
        }
    }
}

#[test]
fn pcap_truncated_at_every_offset() {
    check_every_truncation(&pcap_image(false, true, 1, 5));
    check_every_truncation(&pcap_image(true, false, 101, 3));
}

#[test]
fn pcapng_truncated_at_every_offset() {
    check_every_truncation(&pcapng_image());
}

/// xorshift64*: deterministic mutations without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Reads a (possibly damaged) image to the end; must never panic nor loop forever.
fn survive(bytes: &[u8], buffer: usize) {
    let Ok(mut src) = from_reader_with_buffer(bytes, "fuzz", buffer) else { return };
    for _ in 0..=bytes.len() {
        match src.next_packet() {
            Ok(Next::Packet(p)) => assert!(p.data.len() <= MAX_RECORD_LEN as usize),
            Ok(Next::Idle) => panic!("idle"),
            Ok(Next::End) | Err(_) => return,
        }
    }
    panic!("more packets than bytes");
}

#[test]
fn random_mutations_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let images = [pcap_image(false, false, 1, 6).bytes, pcap_image(true, true, 276, 6).bytes, pcapng_image().bytes];
    for round in 0..3000 {
        let mut b = images[round % images.len()].clone();
        for _ in 0..1 + rng.below(8) {
            let i = rng.below(b.len());
            match rng.below(4) {
                0 => b[i] = rng.next() as u8,
                1 => b[i] ^= 1 << rng.below(8),
                2 => b[i] = [0, 0xff, 0x7f, 0x80][rng.below(4)],
                _ => {
                    let j = (i + 4).min(b.len());
                    b[i..j].copy_from_slice(&[0xff, 0xff, 0xff, 0xff][..j - i]);
                }
            }
        }
        if rng.below(4) == 0 {
            b.truncate(rng.below(b.len() + 1));
        }
        survive(&b, [64, 4096][round % 2]);
    }
}

mod prop {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn arbitrary_bytes_after_a_valid_header(tail in proptest::collection::vec(any::<u8>(), 0..600), ng in any::<bool>()) {
            let mut b = if ng { pcapng_image().bytes[..img_header_end()].to_vec() } else { pcap_image(false, false, 1, 0).bytes };
            b.extend_from_slice(&tail);
            survive(&b, 64);
        }
    }

    fn img_header_end() -> usize {
        pcapng_image().header_end
    }
}

/// `open_file` reads files larger than 4 buffers with a read-ahead thread: the same packets,
/// stats and truncation report as the direct reader, for pcap and pcapng.
#[test]
fn big_files_read_ahead_give_the_same_packets() {
    let dir = std::env::temp_dir().join(format!("df-readahead-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // ~6 MiB of records (lengths 60, 1, 0, 1514, 77 repeating), so blocks end mid-record
    let img = pcap_image(false, false, 1, 16_000);
    let mut ng = pcapng_image().bytes;
    while ng.len() < 5 * DEFAULT_BUFFER_SIZE {
        let one = pcapng_image();
        ng.extend_from_slice(&one.bytes);
    }
    for (name, bytes) in [("a.pcap", img.bytes.clone()), ("b.pcapng", ng)] {
        assert!(bytes.len() > 4 * DEFAULT_BUFFER_SIZE);
        for cut in [0usize, 7] {
            let bytes = bytes.get(..bytes.len() - cut).unwrap();
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            let (want, want_stats) = read_all(bytes, DEFAULT_BUFFER_SIZE);
            let mut src = open_file(&path).unwrap();
            let got = packets_of(&mut *src).unwrap();
            let want = want.unwrap();
            assert!(want.len() > 10_000, "{name}: {}", want.len());
            assert_eq!(got, want, "{name} cut {cut}");
            let (s, w) = (src.stats(), want_stats.unwrap());
            assert_eq!((s.packets, s.bytes, s.offset, s.truncated_at), (w.packets, w.bytes, w.offset, w.truncated_at));
            assert_eq!(s.truncated_at.is_some(), cut > 0, "{name} cut {cut}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
