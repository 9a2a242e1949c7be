//! stub
#![allow(missing_docs)]
use super::*;
use crate::config::L7Config;
use deepflow_core::{Direction, FlowInfo, record::L7Protocol};
pub struct TlsParser;
impl TlsParser {
    pub fn new(_c: &L7Config) -> Self {
        TlsParser
    }
}
impl L7Parser for TlsParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Tls
    }
    fn probe(&self, _d: &[u8], _dir: Direction, _f: &FlowInfo) -> Probe {
        Probe::NotThis
    }
    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(TlsParser)
    }
    fn parse(&mut self, _d: &[u8], _c: &mut ParseCtx<'_>) -> ParseOutcome {
        ParseOutcome::NeedMore(0)
    }
}
