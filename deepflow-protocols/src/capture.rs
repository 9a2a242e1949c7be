//! Glue to [`deepflow_capture`]: [`L7Observer`] lets the flow table feed the L7 engine
//! (feature `capture`, on by default).
//!
//! ```no_run
//! use deepflow_capture::pipeline::{Pipeline, PipelineConfig};
//! use deepflow_capture::source::{open_file, Next};
//! use deepflow_protocols::{capture::L7Observer, L7Config};
//!
//! let mut src = open_file("capture.pcap".as_ref()).unwrap();
//! let mut pipe = Pipeline::new(PipelineConfig::default(), L7Observer::new(L7Config::default()));
//! while let Next::Packet(p) = src.next_packet().unwrap() {
//!     pipe.process_raw(&p);
//! }
//! pipe.finish();
//! for row in pipe.table_mut().observer_mut().drain_rows() {
//!     println!("{} {:?} {:?}", row.l7_protocol, row.request_resource, row.response_status);
//! }
//! ```

use deepflow_capture::flow::FlowObserver;
use deepflow_core::record::{L4FlowLog, L7FlowLog};
use deepflow_core::{Direction, FlowInfo};

use crate::{L7Config, L7Engine, L7FlowState};

/// A [`FlowObserver`] that runs every flow's payload through an [`L7Engine`] and collects the
/// `l7_flow_log` rows it produces.
pub struct L7Observer {
    engine: L7Engine,
    rows: Vec<L7FlowLog>,
}

impl L7Observer {
    /// An observer with the built-in parsers enabled in `cfg`.
    pub fn new(cfg: L7Config) -> Self {
        L7Observer { engine: L7Engine::new(cfg), rows: Vec::new() }
    }

    /// Takes the rows produced so far (the observer keeps its buffer's capacity).
    pub fn drain_rows(&mut self) -> Vec<L7FlowLog> {
        self.rows.drain(..).collect()
    }

    /// The rows produced so far, to read in place and clear (or take from): no row is moved.
    pub fn rows_mut(&mut self) -> &mut Vec<L7FlowLog> {
        &mut self.rows
    }

    /// The engine (counters, configuration, parser registration).
    pub fn engine(&self) -> &L7Engine {
        &self.engine
    }

    /// The engine, mutably (e.g. to register a parser).
    pub fn engine_mut(&mut self) -> &mut L7Engine {
        &mut self.engine
    }
}

impl FlowObserver for L7Observer {
    type State = L7FlowState;

    fn on_payload(&mut self, st: &mut L7FlowState, flow: &FlowInfo, dir: Direction, ts_us: u64, data: &[u8]) {
        self.engine.on_payload(st, flow, dir, ts_us, data, &mut self.rows);
    }

    fn on_gap(&mut self, st: &mut L7FlowState, flow: &FlowInfo, dir: Direction, ts_us: u64, len: u64) {
        self.engine.on_gap(st, flow, dir, ts_us, len);
    }

    fn on_tick(&mut self, st: &mut L7FlowState, flow: &FlowInfo, now_us: u64) {
        self.engine.on_tick(st, flow, now_us, &mut self.rows);
    }

    fn on_close(&mut self, st: &mut L7FlowState, flow: &FlowInfo, ts_us: u64, record: &mut L4FlowLog) {
        self.engine.on_flow_end(st, flow, ts_us, &mut self.rows);
        if let Some(p) = st.protocol() {
            record.l7_protocol = p.name();
        }
    }
}
