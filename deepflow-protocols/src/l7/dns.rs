//! stub
#![allow(missing_docs)]
use super::*;
use crate::config::L7Config;
use deepflow_core::{Direction, FlowInfo, record::L7Protocol};
pub struct DnsParser;
impl DnsParser {
    pub fn new(_c: &L7Config) -> Self {
        DnsParser
    }
}
impl L7Parser for DnsParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Dns
    }
    fn probe(&self, _d: &[u8], _dir: Direction, _f: &FlowInfo) -> Probe {
        Probe::NotThis
    }
    fn new_flow(&self) -> Box<dyn L7Parser> {
        Box::new(DnsParser)
    }
    fn parse(&mut self, _d: &[u8], _c: &mut ParseCtx<'_>) -> ParseOutcome {
        ParseOutcome::NeedMore(0)
    }
}
