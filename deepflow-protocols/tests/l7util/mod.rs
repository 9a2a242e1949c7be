//! Helpers for the parser tests: run conversations through the engine, split them at every
//! offset, truncate them, and mutate them with a fixed-seed xorshift generator.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use deepflow_core::record::L7FlowLog;
use deepflow_core::{Direction, FlowInfo};
use deepflow_protocols::{L7Config, L7Counters, L7Engine, L7FlowState};

pub const C2S: Direction = Direction::ClientToServer;
pub const S2C: Direction = Direction::ServerToClient;

pub fn flow(proto: u8, server_port: u16) -> FlowInfo {
    FlowInfo {
        flow_id: 42,
        protocol: proto,
        client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        server_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        client_port: 40000,
        server_port,
        tunnel: Default::default(),
        start_time_us: 1_000_000,
    }
}

/// One call: direction, payload (`None` = gap of that many bytes).
#[derive(Clone, Debug)]
pub enum Ev {
    Data(Direction, Vec<u8>),
    Gap(Direction, u64),
}

pub fn d(dir: Direction, b: impl AsRef<[u8]>) -> Ev {
    Ev::Data(dir, b.as_ref().to_vec())
}

/// Runs a conversation; segment i is delivered at time 1_000_000 + i * 1000 µs; flow end after.
pub fn run_cfg(cfg: L7Config, f: &FlowInfo, evs: &[Ev]) -> (Vec<L7FlowLog>, L7Counters) {
    let mut e = L7Engine::new(cfg);
    let mut st = L7FlowState::default();
    let mut out = Vec::new();
    let mut ts = 1_000_000;
    for ev in evs {
        ts += 1000;
        match ev {
            Ev::Data(dir, b) => e.on_payload(&mut st, f, *dir, ts, b, &mut out),
            Ev::Gap(dir, n) => e.on_gap(&mut st, f, *dir, ts, *n),
        }
    }
    e.on_flow_end(&mut st, f, ts + 1000, &mut out);
    (out, e.counters().clone())
}

pub fn run(f: &FlowInfo, evs: &[Ev]) -> Vec<L7FlowLog> {
    run_cfg(L7Config::default(), f, evs).0
}

/// Like `run`, but events listed with the same time index share a timestamp: `evs[i].0`.
pub fn run_timed(cfg: L7Config, f: &FlowInfo, evs: &[(u64, Ev)]) -> (Vec<L7FlowLog>, L7Counters) {
    let mut e = L7Engine::new(cfg);
    let mut st = L7FlowState::default();
    let mut out = Vec::new();
    let mut last = 0;
    for (t, ev) in evs {
        last = *t;
        match ev {
            Ev::Data(dir, b) => e.on_payload(&mut st, f, *dir, *t, b, &mut out),
            Ev::Gap(dir, n) => e.on_gap(&mut st, f, *dir, *t, *n),
        }
    }
    e.on_flow_end(&mut st, f, last + 1, &mut out);
    (out, e.counters().clone())
}

/// Splitting any data segment at any offset into two chunks (same timestamp) must give the
/// same rows as the unsplit conversation.
pub fn assert_split_invariant(f: &FlowInfo, evs: &[Ev]) {
    let timed: Vec<(u64, Ev)> = evs.iter().enumerate().map(|(i, e)| (1_000_000 + i as u64 * 1000, e.clone())).collect();
    let (base, _) = run_timed(L7Config::default(), f, &timed);
    assert!(!base.is_empty(), "conversation produced no rows");
    for i in 0..timed.len() {
        let (t, Ev::Data(dir, b)) = &timed[i] else { continue };
        for k in 1..b.len() {
            let mut v = timed[..i].to_vec();
            v.push((*t, Ev::Data(*dir, b[..k].to_vec())));
            v.push((*t, Ev::Data(*dir, b[k..].to_vec())));
            v.extend_from_slice(&timed[i + 1..]);
            let (rows, _) = run_timed(L7Config::default(), f, &v);
            assert_eq!(rows, base, "segment {i} split at {k}");
        }
    }
    // one byte per call, too
    let mut v = Vec::new();
    for (t, e) in &timed {
        match e {
            Ev::Data(dir, b) => v.extend(b.iter().map(|x| (*t, Ev::Data(*dir, vec![*x])))),
            g => v.push((*t, g.clone())),
        }
    }
    let (rows, _) = run_timed(L7Config::default(), f, &v);
    assert_eq!(rows, base, "byte-at-a-time");
}

/// Truncating the conversation at every byte offset never panics.
pub fn assert_truncation_safe(f: &FlowInfo, evs: &[Ev]) {
    for i in 0..evs.len() {
        let Ev::Data(dir, b) = &evs[i] else { continue };
        for k in 0..b.len() {
            let mut v = evs[..i].to_vec();
            v.push(Ev::Data(*dir, b[..k].to_vec()));
            let _ = run(f, &v);
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

/// Mutates one byte string: flips, overwrites with interesting bytes, inserts, deletes,
/// duplicates ranges.
pub fn mutate(rng: &mut XorShift, b: &mut Vec<u8>) {
    const INTERESTING: &[u8] = &[0, 1, 0x7f, 0x80, 0xc0, 0xff, b'\r', b'\n', b':', b' ', b'0', b'9', b'f', b';', 22, 3];
    let n = 1 + rng.below(4);
    for _ in 0..n {
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

/// Runs `iters` mutated variants of the seed conversations, with random re-chunking and the
/// occasional gap; checks that nothing panics and buffers stay bounded.
pub fn fuzz(f: &FlowInfo, seeds: &[Vec<Ev>], iters: usize, seed: u64) -> L7Counters {
    let mut rng = XorShift(seed);
    let cfg = L7Config { max_buffered_bytes: 4096, ..L7Config::default() };
    let mut e = L7Engine::new(cfg);
    let mut total = L7Counters::default();
    let mut out = Vec::new();
    for it in 0..iters {
        let base = &seeds[rng.below(seeds.len())];
        let mut st = L7FlowState::default();
        let mut ts = 1_000_000u64;
        for ev in base {
            ts += 1 + rng.below(5_000_000) as u64;
            match ev {
                Ev::Data(dir, b) => {
                    let mut b = b.clone();
                    if rng.below(3) != 0 {
                        mutate(&mut rng, &mut b);
                    }
                    if rng.below(20) == 0 {
                        e.on_gap(&mut st, f, *dir, ts, rng.below(100) as u64);
                    }
                    // random chunking (TCP) / whole datagrams (UDP)
                    let mut rest = &b[..];
                    while !rest.is_empty() {
                        let n = if f.protocol == 17 { rest.len() } else { 1 + rng.below(rest.len()) };
                        e.on_payload(&mut st, f, *dir, ts, &rest[..n], &mut out);
                        rest = &rest[n..];
                    }
                }
                Ev::Gap(dir, n) => e.on_gap(&mut st, f, *dir, ts, *n),
            }
            if rng.below(10) == 0 {
                e.on_tick(&mut st, f, ts + 40_000_000, &mut out);
            }
        }
        e.on_flow_end(&mut st, f, ts, &mut out);
        for r in &out {
            // rows must serialize
            serde_json::to_string(r).unwrap();
        }
        out.clear();
        if it % 10_000 == 0 {
            total = e.counters().clone();
        }
    }
    let _ = total;
    e.counters().clone()
}
