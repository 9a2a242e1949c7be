// Interprets fuzz input as a conversation: [ctl][len][bytes; len]...; ctl bit 0 = direction,
// bit 1 = gap before, bit 2 = tick. Every call goes through the real engine.
use std::net::{IpAddr, Ipv4Addr};

use deepflow_core::{Direction, FlowInfo};
use deepflow_protocols::{L7Config, L7Engine, L7FlowState};

pub fn run(data: &[u8], proto: u8, port: u16) {
    let f = FlowInfo {
        flow_id: 1,
        protocol: proto,
        client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        server_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        client_port: 40000,
        server_port: port,
        tunnel: Default::default(),
        start_time_us: 0,
    };
    let cfg = L7Config { max_buffered_bytes: 4096, ..L7Config::default() };
    let mut e = L7Engine::new(cfg);
    let mut st = L7FlowState::default();
    let mut out = Vec::new();
    let mut rest = data;
    let mut ts = 1u64;
    while let [ctl, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (chunk, r) = tail.split_at(n);
        rest = r;
        ts += 1000;
        let dir = if ctl & 1 == 0 { Direction::ClientToServer } else { Direction::ServerToClient };
        if ctl & 2 != 0 {
            e.on_gap(&mut st, &f, dir, ts, u64::from(*ctl >> 3));
        }
        e.on_payload(&mut st, &f, dir, ts, chunk, &mut out);
        if ctl & 4 != 0 {
            e.on_tick(&mut st, &f, ts + 60_000_000, &mut out);
        }
    }
    e.on_flow_end(&mut st, &f, ts + 1, &mut out);
}
