//! Row generators shared by the tests.
#![allow(dead_code)]

use std::net::IpAddr;

use deepflow_core::FlowInfo;
use deepflow_core::record::{
    ApplicationMetrics, CloseType, L4FlowLog, L7FlowLog, L7Protocol, LatencyHistogram, LogType, NetworkMetrics,
    ResponseStatus,
};

/// 2024-05-01T10:00:00Z in µs.
pub const T0_US: u64 = 1_714_557_600_000_000;
pub const HOUR_US: u64 = 3_600_000_000;

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `n` l7 rows spread over `hours` hours starting at T0, varied values (nulls, IPv6, attributes).
pub fn l7_rows(n: usize, hours: u64) -> Vec<L7FlowLog> {
    (0..n)
        .map(|i| {
            let i64_ = i as u64;
            let flow = FlowInfo {
                flow_id: i64_ + 1,
                protocol: if i % 5 == 0 { 17 } else { 6 },
                client_ip: if i % 7 == 0 { ip("fd00::1") } else { ip(&format!("10.1.{}.{}", i % 3, i % 250 + 1)) },
                server_ip: ip(&format!("10.2.0.{}", i % 4 + 1)),
                client_port: 40000 + (i % 1000) as u16,
                server_port: [80u16, 443, 3306, 53][i % 4],
                tunnel: Default::default(),
                start_time_us: 0,
            };
            let proto = [L7Protocol::Http1, L7Protocol::Http2, L7Protocol::MySql, L7Protocol::Dns][i % 4];
            let mut r = L7FlowLog::new(&flow, proto, if i % 9 == 0 { LogType::Request } else { LogType::Session });
            r.start_time = T0_US + (i64_ * hours * HOUR_US) / n.max(1) as u64;
            r.end_time = r.start_time + 100 + i64_ % 5000;
            r.rrt = if i % 9 == 0 { None } else { Some(100 + i64_ % 5000) };
            r.version = Some("1.1".into());
            r.request_type = Some(["GET", "POST", "COM_QUERY", "A"][i % 4].into());
            r.request_domain = if i % 3 == 0 { None } else { Some(format!("svc-{}.example", i % 10)) };
            r.request_resource = Some(format!("/api/v1/items/{}", i % 100));
            r.endpoint = Some(format!("/api/v1/items/{}", i % 10));
            r.request_id = if i % 2 == 0 { Some(i as u32) } else { None };
            r.response_status =
                [ResponseStatus::Ok, ResponseStatus::ClientError, ResponseStatus::ServerError, ResponseStatus::Ok]
                    [i % 4];
            r.response_code = Some([200, 404, 500, 200][i % 4]);
            r.response_exception = if i % 4 == 2 { Some("Internal \"error\"\nline2".into()) } else { None };
            r.request_length = Some(i64_ * 3);
            r.response_length = if i % 6 == 0 { None } else { Some(i64_ * 7) };
            r.trace_id = if i % 2 == 0 { Some(format!("{:032x}", i64_ * 7919)) } else { None };
            r.span_id = Some(format!("{:016x}", i64_));
            r.x_request_id_0 = Some(format!("req-{i}"));
            if i % 5 == 0 {
                // an eBPF row: processes on both ends and the syscall correlation ids
                r.signal_source = "ebpf";
                r.process_id_0 = Some(1000 + i as u32);
                r.process_id_1 = Some(77);
                r.process_kname_0 = Some("curl".into());
                r.process_kname_1 = Some("nginx".into());
                r.syscall_trace_id_request = Some(i64_ << 8);
                r.syscall_trace_id_response = if i % 10 == 0 { Some(i64_ << 9) } else { None };
            }
            if i % 4 == 1 {
                r.attribute_names = vec!["user".into(), "tenant".into()];
                r.attribute_values = vec![format!("u{i}"), "acme".into()];
            }
            r
        })
        .collect()
}

pub fn l4_rows(n: usize, hours: u64) -> Vec<L4FlowLog> {
    (0..n)
        .map(|i| {
            let i64_ = i as u64;
            let ct = [CloseType::TcpFin, CloseType::Timeout, CloseType::ServerReset, CloseType::ForcedReport][i % 4];
            L4FlowLog {
                flow_id: i64_ + 1,
                start_time: T0_US + (i64_ * hours * HOUR_US) / n.max(1) as u64,
                end_time: T0_US + (i64_ * hours * HOUR_US) / n.max(1) as u64 + 5000,
                duration: 5000,
                ip_0: if i % 11 == 0 { None } else { Some(ip(&format!("10.1.0.{}", i % 200 + 1))) },
                ip_1: Some(if i % 7 == 0 { ip("2001:db8::5") } else { ip("10.2.0.1") }),
                client_port: 30000 + (i % 3000) as u16,
                server_port: 80,
                protocol: if i % 3 == 0 { "UDP" } else { "TCP" },
                tunnel_type: if i % 13 == 0 { "vxlan" } else { "" },
                tunnel_id: (i % 13 == 0) as u32 * 42,
                vlan: (i % 2) as u16 * 100,
                packet_tx: i64_ * 2,
                packet_rx: i64_ * 3,
                byte_tx: i64_ * 200,
                byte_rx: i64_ * 3000,
                l3_byte_tx: i64_ * 180,
                l3_byte_rx: i64_ * 2900,
                l4_byte_tx: i64_ * 100,
                l4_byte_rx: i64_ * 2800,
                rtt: 300 + i64_ % 100,
                rtt_client: 100,
                rtt_server: 200 + i64_ % 100,
                srt: 50,
                srt_max: 90,
                srt_count: 3,
                art: 1000 + i64_,
                art_max: 2000 + i64_,
                art_count: 2,
                cit: 10,
                cit_count: 1,
                retrans_tx: (i % 3) as u32,
                retrans_rx: (i % 5) as u32,
                zero_win_tx: 0,
                zero_win_rx: (i % 17 == 0) as u32,
                syn_count: 1,
                synack_count: 1,
                retrans_syn: 0,
                retrans_synack: 0,
                fin_count: 2,
                rst_count: (i % 4 == 2) as u32,
                ooo_tx: 0,
                ooo_rx: (i % 19) as u32,
                gap_tx: 0,
                gap_rx: i64_ % 2,
                close_type: ct,
                close_type_name: ct.name(),
                l7_protocol: if i % 2 == 0 { "http" } else { "" },
                is_new_flow: i % 4 != 3,
            }
        })
        .collect()
}

pub fn network_rows(n: usize, hours: u64) -> Vec<NetworkMetrics> {
    (0..n)
        .map(|i| {
            let i64_ = i as u64;
            NetworkMetrics {
                time: T0_US / 1_000_000 + (i64_ * hours * 3600) / n.max(1) as u64,
                interval: if i % 2 == 0 { 1 } else { 60 },
                ip_0: Some(ip(&format!("10.1.0.{}", i % 200 + 1))),
                ip_1: if i % 9 == 0 { None } else { Some(ip("10.2.0.1")) },
                server_port: (i % 60000) as u16,
                protocol: "TCP",
                flow: i64_,
                new_flow: i64_ / 2,
                closed_flow: i64_ / 3,
                packet_tx: i64_ * 10,
                packet_rx: i64_ * 11,
                byte_tx: i64_ * 1000,
                byte_rx: i64_ * 1100,
                rtt_sum: i64_ * 300,
                rtt_count: i64_,
                rtt_max: 900,
                srt_sum: 1,
                srt_count: 1,
                srt_max: 1,
                art_sum: 2,
                art_count: 2,
                art_max: 2,
                retrans_tx: i64_ % 3,
                retrans_rx: 0,
                zero_win_tx: 0,
                zero_win_rx: 0,
                tcp_establish_fail: i64_ % 2,
                client_establish_fail: 0,
                server_establish_fail: i64_ % 2,
                tcp_transfer_fail: 0,
                tcp_rst_fail: 0,
                tcp_timeout: i64_ % 5,
            }
        })
        .collect()
}

pub fn application_rows(n: usize, hours: u64) -> Vec<ApplicationMetrics> {
    (0..n)
        .map(|i| {
            let i64_ = i as u64;
            let mut h = LatencyHistogram::default();
            if i % 3 != 0 {
                for v in 0..(i64_ % 20 + 1) {
                    h.record(100 + v * 37);
                }
            }
            ApplicationMetrics {
                time: T0_US / 1_000_000 + (i64_ * hours * 3600) / n.max(1) as u64,
                interval: 60,
                ip_1: ip(&format!("10.2.0.{}", i % 4 + 1)),
                server_port: 80,
                l7_protocol: L7Protocol::Http1,
                endpoint: format!("/ep/{i}"),
                request: i64_ + 1,
                response: i64_,
                client_error: i64_ % 3,
                server_error: i64_ % 2,
                timeout: 0,
                rrt_sum: i64_ * 1000,
                rrt_count: i64_,
                rrt_max: 5000,
                rrt_p50: h.quantile(0.5),
                rrt_p90: h.quantile(0.9),
                rrt_p99: h.quantile(0.99),
                rrt_histogram: h,
            }
        })
        .collect()
}
