// Shared by the l7_* benches (included with `#[path]`): feeds conversations through the
// L7 engine in MSS-sized chunks.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use deepflow_core::{Direction, FlowInfo};
use deepflow_protocols::{L7Config, L7Engine, L7FlowState};

pub fn flow(proto: u8, port: u16) -> FlowInfo {
    FlowInfo {
        flow_id: 1,
        protocol: proto,
        client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        server_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        client_port: 40000,
        server_port: port,
        tunnel: Default::default(),
        start_time_us: 0,
    }
}

/// Runs the (dir, bytes) segments through a fresh flow, TCP segments cut at `mss`; returns rows.
pub fn feed(engine: &mut L7Engine, f: &FlowInfo, segs: &[(Direction, Vec<u8>)], mss: usize) -> usize {
    let mut st = L7FlowState::default();
    let mut out = Vec::with_capacity(1024);
    let mut ts = 1_000_000u64;
    for (dir, b) in segs {
        ts += 10;
        if f.protocol == 17 {
            engine.on_payload(&mut st, f, *dir, ts, b, &mut out);
        } else {
            for c in b.chunks(mss) {
                engine.on_payload(&mut st, f, *dir, ts, c, &mut out);
            }
        }
    }
    engine.on_flow_end(&mut st, f, ts + 1, &mut out);
    out.len()
}

pub fn engine() -> L7Engine {
    L7Engine::new(L7Config::default())
}
