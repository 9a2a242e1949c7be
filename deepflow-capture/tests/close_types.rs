//! DeepFlow close types on real TCP endings (fixture `tcp_close_cases.pcap`, made by
//! `tests/fixtures/make_fixtures.sh close`; ports documented in tests/fixtures/README.md).

use std::path::Path;

use deepflow_capture::flow::NoL7;
use deepflow_capture::pipeline::{Pipeline, PipelineConfig};
use deepflow_capture::source::{Next, open_file};
use deepflow_core::record::CloseType;

#[test]
fn close_types_of_real_connections() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tcp_close_cases.pcap");
    let mut src = open_file(&path).unwrap();
    let mut pipe = Pipeline::new(PipelineConfig::default(), NoL7);
    while let Next::Packet(p) = src.next_packet().unwrap() {
        pipe.process_raw(&p);
    }
    pipe.finish();
    let flows = pipe.drain_flows();
    let expect = [
        (40001, 19001, CloseType::ServerReset),   // closed port: SYN answered by RST
        (40002, 19002, CloseType::ServerSynMiss), // SYN dropped, resent, never answered
        (40003, 19003, CloseType::TcpClientRst),  // client resets after the reply
        (40004, 19004, CloseType::TcpServerRst),  // server resets mid-transfer
        (40005, 19005, CloseType::TcpFin),        // normal FIN close
    ];
    for (cp, sp, ct) in expect {
        let f = flows
            .iter()
            .find(|f| f.client_port == cp && f.server_port == sp)
            .unwrap_or_else(|| panic!("no flow {cp} -> {sp}"));
        assert_eq!(f.close_type, ct, "flow {cp} -> {sp}");
    }
    let syn_miss = flows.iter().find(|f| f.client_port == 40002).unwrap();
    assert_eq!((syn_miss.syn_count, syn_miss.retrans_syn), (3, 2));
}
