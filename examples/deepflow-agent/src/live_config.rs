//! The part of the controller's agent config that applies while the agent runs: L7 protocols
//! on/off (new flows no longer probe a protocol switched off, and its rows are no longer
//! emitted) and flow sampling (the flow logs of 1 flow in N, by a hash of the flow id; metrics
//! keep counting every flow). Capture interfaces and WASM plugins need a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use deepflow_core::record::L7Protocol;
use deepflow_core::{Direction, FlowInfo};
use deepflow_protocols::capture::L7Observer;
use deepflow_protocols::{L7Config, L7Message, L7Parser, Pairing, ParseCtx, ParseOutcome, Probe};

use crate::controller::AgentSettings;
use crate::server_cmd::Running;

/// Settings shared by the controller thread (writer) and the capture loop (reader).
#[derive(Default)]
pub struct LiveConfig {
    /// Bit `id` set: protocol with DeepFlow id `id` is off.
    off: [AtomicU64; 4],
    /// Keep 1 flow in N (0 and 1: all).
    sampling: AtomicU32,
    /// L7 rows not emitted because their protocol is off.
    pub l7_rows_off: AtomicU64,
    /// L7 rows not sent because their flow was sampled out.
    pub l7_rows_sampled_out: AtomicU64,
    /// l4_flow_log rows not sent because the flow was sampled out.
    pub flows_sampled_out: AtomicU64,
}

impl LiveConfig {
    /// True unless protocol `p` is switched off.
    pub fn enabled(&self, p: L7Protocol) -> bool {
        let id = p.id() as usize;
        self.off.get(id / 64).is_none_or(|w| w.load(Ordering::Relaxed) & (1 << (id % 64)) == 0)
    }

    /// True when the logs of flow `flow_id` are kept.
    pub fn keep_flow(&self, flow_id: u64) -> bool {
        let n = u64::from(self.sampling.load(Ordering::Relaxed));
        n <= 1 || mix(flow_id).is_multiple_of(n)
    }

    /// Applies config `version`; returns the settings that need a restart, logged with `log`.
    pub fn apply(&self, log: &str, version: u64, cfg: &AgentSettings, running: &Running) -> Vec<String> {
        let mut off = [0u64; 4];
        let mut offs = Vec::new();
        for (name, on) in &cfg.l7_protocols {
            match L7Protocol::from_name(name) {
                Some(p) if !on => {
                    let id = p.id() as usize;
                    if let Some(w) = off.get_mut(id / 64) {
                        *w |= 1 << (id % 64);
                    }
                    offs.push(p.name());
                }
                Some(_) => {}
                None => eprintln!("{log}: config v{version}: unknown L7 protocol {name:?} ignored"),
            }
        }
        for (w, v) in self.off.iter().zip(off) {
            w.store(v, Ordering::Relaxed);
        }
        let n = cfg.flow_sampling.max(1);
        self.sampling.store(n, Ordering::Relaxed);
        let mut restart = Vec::new();
        if let (Some(want), Some(have)) = (&cfg.capture_interfaces, &running.interfaces)
            && want != have
        {
            restart.push(format!("capture_interfaces {want:?} (running {have:?})"));
        }
        if let Some(want) = &cfg.wasm_plugins
            && *want != running.plugins
        {
            restart.push(format!("wasm_plugins {want:?} (running {:?})", running.plugins));
        }
        eprintln!(
            "{log}: config v{version} applied: L7 protocols off: {}; flow sampling 1 in {n}",
            if offs.is_empty() { "none".to_string() } else { offs.join(", ") }
        );
        if !restart.is_empty() {
            eprintln!("{log}: config v{version} needs restart for: {}", restart.join("; "));
        }
        restart
    }

    /// Wraps the parsers of `obs` so that new flows skip protocols switched off.
    pub fn install(self: &Arc<Self>, obs: &mut L7Observer) {
        let live = self.clone();
        obs.engine_mut().map_parsers(move |p| Box::new(Gated { inner: p, live: live.clone() }));
    }
}

/// splitmix64's finalizer: flow ids are often sequential.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A parser prototype whose probe answers "not this" while its protocol is off.
struct Gated {
    inner: Box<dyn L7Parser>,
    live: Arc<LiveConfig>,
}

impl L7Parser for Gated {
    fn protocol(&self) -> L7Protocol {
        self.inner.protocol()
    }
    fn supports_transport(&self, ip_proto: u8) -> bool {
        self.inner.supports_transport(ip_proto)
    }
    fn port_hint(&self, port: u16) -> bool {
        self.inner.port_hint(port)
    }
    fn probe(&self, data: &[u8], dir: Direction, flow: &FlowInfo) -> Probe {
        if self.live.enabled(self.inner.protocol()) { self.inner.probe(data, dir, flow) } else { Probe::NotThis }
    }
    fn new_flow(&self) -> Box<dyn L7Parser> {
        self.inner.new_flow()
    }
    fn pairing(&self) -> Pairing {
        self.inner.pairing()
    }
    fn parse(&mut self, data: &[u8], ctx: &mut ParseCtx<'_>) -> ParseOutcome {
        self.inner.parse(data, ctx)
    }
    fn on_gap(&mut self, dir: Direction) {
        self.inner.on_gap(dir)
    }
    fn on_close(&mut self, dir: Direction, ctx: &mut ParseCtx<'_>) -> Option<L7Message> {
        self.inner.on_close(dir, ctx)
    }
    fn is_done(&self) -> bool {
        self.inner.is_done()
    }
    fn upgrade(&mut self, cfg: &L7Config) -> Option<Box<dyn L7Parser>> {
        self.inner.upgrade(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_off_and_sampling() {
        let live = LiveConfig::default();
        assert!(live.enabled(L7Protocol::Http1) && live.keep_flow(7));
        let mut cfg = AgentSettings { flow_sampling: 4, ..Default::default() };
        cfg.l7_protocols.insert("http".into(), false);
        cfg.l7_protocols.insert("dns".into(), true);
        cfg.capture_interfaces = Some(vec!["eth0".into()]);
        let running = Running { interfaces: Some(vec!["lo".into()]), plugins: Vec::new() };
        let restart = live.apply("test", 2, &cfg, &running);
        assert_eq!(restart.len(), 1, "{restart:?}");
        assert!(!live.enabled(L7Protocol::Http1) && live.enabled(L7Protocol::Dns) && live.enabled(L7Protocol::Custom));
        let kept = (0..10_000u64).filter(|f| live.keep_flow(*f)).count();
        assert!((2_000..3_000).contains(&kept), "{kept}");
        live.apply("test", 3, &AgentSettings::default(), &running);
        assert!(live.enabled(L7Protocol::Http1) && live.keep_flow(1) && live.keep_flow(2));
    }
}
