//! `l4_flow_log` rows and network metrics.
use std::net::IpAddr;

use serde::Serialize;

/// Why a flow record was closed/reported: DeepFlow's `close_type` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[repr(u8)]
pub enum CloseType {
    /// 0: none of the below (e.g. a UDP flow that went idle is reported as timeout instead).
    #[default]
    Unknown = 0,
    /// 1: FIN handshake completed.
    TcpFin = 1,
    /// 2: the server reset an established connection.
    TcpServerRst = 2,
    /// 3: idle timeout during transfer (also used for UDP/ICMP flows that go idle).
    Timeout = 3,
    /// 5: long-lived flow reported before it ended (flow still open at end of capture).
    ForcedReport = 5,
    /// 7: the client's SYN was never answered.
    ServerSynMiss = 7,
    /// 8: the server sent FIN, the client never did.
    ServerHalfClose = 8,
    /// 9: the client reset an established connection.
    TcpClientRst = 9,
    /// 10: the server answered SYN-ACK, the client never ACKed.
    ClientSynAckMiss = 10,
    /// 11: the client sent FIN, the server never did.
    ClientHalfClose = 11,
    /// 13: SYN arrived on a 5-tuple still in use.
    ClientSourcePortReuse = 13,
    /// 15: the server answered SYN with RST (port closed).
    ServerReset = 15,
    /// 17: SYN-ACKs retransmitted without a final ACK (server accept queue overflow).
    ServerQueueLack = 17,
    /// 18: client RST during the handshake.
    ClientEstablishReset = 18,
    /// 19: server RST during the handshake other than the direct answer to SYN.
    ServerEstablishReset = 19,
    /// 20: the client closed with RST after a normal exchange.
    TcpFinClientRst = 20,
}

impl CloseType {
    pub fn code(self) -> u8 {
        self as u8
    }
    pub fn name(self) -> &'static str {
        match self {
            CloseType::Unknown => "unknown",
            CloseType::TcpFin => "normal",
            CloseType::TcpServerRst => "server_rst",
            CloseType::Timeout => "timeout",
            CloseType::ForcedReport => "forced_report",
            CloseType::ServerSynMiss => "server_syn_miss",
            CloseType::ServerHalfClose => "server_half_close",
            CloseType::TcpClientRst => "client_rst",
            CloseType::ClientSynAckMiss => "client_ack_miss",
            CloseType::ClientHalfClose => "client_half_close",
            CloseType::ClientSourcePortReuse => "client_port_reuse",
            CloseType::ServerReset => "server_direct_rst",
            CloseType::ServerQueueLack => "server_queue_overflow",
            CloseType::ClientEstablishReset => "client_other_rst",
            CloseType::ServerEstablishReset => "server_other_rst",
            CloseType::TcpFinClientRst => "normal_client_rst",
        }
    }
    /// True for the codes DeepFlow counts as connection-establishment failures.
    pub fn is_establish_fail(self) -> bool {
        matches!(
            self,
            CloseType::ServerSynMiss
                | CloseType::ClientSynAckMiss
                | CloseType::ServerReset
                | CloseType::ServerQueueLack
                | CloseType::ClientEstablishReset
                | CloseType::ServerEstablishReset
                | CloseType::ClientSourcePortReuse
        )
    }
    /// Establishment failures blamed on the client.
    pub fn is_client_establish_fail(self) -> bool {
        matches!(self, CloseType::ClientSynAckMiss | CloseType::ClientEstablishReset | CloseType::ClientSourcePortReuse)
    }
    /// Establishment failures blamed on the server.
    pub fn is_server_establish_fail(self) -> bool {
        matches!(
            self,
            CloseType::ServerSynMiss
                | CloseType::ServerReset
                | CloseType::ServerQueueLack
                | CloseType::ServerEstablishReset
        )
    }
    /// Failures after establishment (resets and timeouts during transfer, half closes).
    pub fn is_transfer_fail(self) -> bool {
        matches!(
            self,
            CloseType::TcpServerRst
                | CloseType::TcpClientRst
                | CloseType::Timeout
                | CloseType::ServerHalfClose
                | CloseType::ClientHalfClose
        )
    }
    /// Resets of either side at any stage.
    pub fn is_rst(self) -> bool {
        matches!(
            self,
            CloseType::TcpServerRst
                | CloseType::TcpClientRst
                | CloseType::ServerReset
                | CloseType::ClientEstablishReset
                | CloseType::ServerEstablishReset
        )
    }
}

fn ser_close_type<S: serde::Serializer>(c: &CloseType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(c.code())
}

/// One row of `l4_flow_log`: a flow (both directions) over its lifetime or one report period.
/// `_tx` is client→server, `_rx` server→client. Times in microseconds since the epoch; all
/// latencies in microseconds, 0 when not measured.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct L4FlowLog {
    pub flow_id: u64,
    pub start_time: u64,
    pub end_time: u64,
    pub duration: u64,
    /// Client and server IPs (role inferred from SYN, else from ports).
    pub ip_0: Option<IpAddr>,
    pub ip_1: Option<IpAddr>,
    pub client_port: u16,
    pub server_port: u16,
    /// `TCP`, `UDP`, `ICMP`, ...
    pub protocol: &'static str,
    pub tunnel_type: &'static str,
    pub tunnel_id: u32,
    pub vlan: u16,
    pub packet_tx: u64,
    pub packet_rx: u64,
    pub byte_tx: u64,
    pub byte_rx: u64,
    pub l3_byte_tx: u64,
    pub l3_byte_rx: u64,
    pub l4_byte_tx: u64,
    pub l4_byte_rx: u64,
    /// Handshake round trip (rtt_client + rtt_server).
    pub rtt: u64,
    /// Probe side to client: ACK time - SYN-ACK time.
    pub rtt_client: u64,
    /// Probe side to server: SYN-ACK time - SYN time.
    pub rtt_server: u64,
    /// System response time: data segment to its pure ACK from the receiving side, averaged.
    pub srt: u64,
    pub srt_max: u64,
    pub srt_count: u32,
    /// Application response time: client request data to the first server data in reply, averaged.
    pub art: u64,
    pub art_max: u64,
    pub art_count: u32,
    /// Client idle time: server data to the client's next request, averaged.
    pub cit: u64,
    pub cit_count: u32,
    pub retrans_tx: u32,
    pub retrans_rx: u32,
    pub zero_win_tx: u32,
    pub zero_win_rx: u32,
    pub syn_count: u32,
    pub synack_count: u32,
    pub retrans_syn: u32,
    pub retrans_synack: u32,
    pub fin_count: u32,
    pub rst_count: u32,
    pub ooo_tx: u32,
    pub ooo_rx: u32,
    /// Bytes the reassembler could not deliver (holes), per direction.
    pub gap_tx: u64,
    pub gap_rx: u64,
    /// DeepFlow close code; see [`CloseType`].
    #[serde(serialize_with = "ser_close_type")]
    pub close_type: CloseType,
    /// Human-readable `close_type`.
    pub close_type_name: &'static str,
    /// Application protocol, once L7 detection names it; empty otherwise.
    pub l7_protocol: &'static str,
    /// True when the server role was seen to start the connection (SYN seen).
    pub is_new_flow: bool,
}

/// One row of the network metrics (`flow_metrics.network.1s` / `.1m`): per (ip_0, ip_1,
/// server_port, protocol) and time window.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct NetworkMetrics {
    /// Window start, seconds since the epoch.
    pub time: u64,
    /// Window length in seconds (1 or 60).
    pub interval: u32,
    pub ip_0: Option<IpAddr>,
    pub ip_1: Option<IpAddr>,
    pub server_port: u16,
    pub protocol: &'static str,
    /// Flows active in the window.
    pub flow: u64,
    pub new_flow: u64,
    pub closed_flow: u64,
    pub packet_tx: u64,
    pub packet_rx: u64,
    pub byte_tx: u64,
    pub byte_rx: u64,
    pub rtt_sum: u64,
    pub rtt_count: u64,
    pub rtt_max: u64,
    pub srt_sum: u64,
    pub srt_count: u64,
    pub srt_max: u64,
    pub art_sum: u64,
    pub art_count: u64,
    pub art_max: u64,
    pub retrans_tx: u64,
    pub retrans_rx: u64,
    pub zero_win_tx: u64,
    pub zero_win_rx: u64,
    pub tcp_establish_fail: u64,
    pub client_establish_fail: u64,
    pub server_establish_fail: u64,
    pub tcp_transfer_fail: u64,
    pub tcp_rst_fail: u64,
    pub tcp_timeout: u64,
}
