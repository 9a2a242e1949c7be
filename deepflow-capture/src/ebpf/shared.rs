//! `#[repr(C)]` mirrors of `bpf/deepflow_shared.h`. The test `layout_matches_c_header`
//! compiles `bpf/layout_check.c` with the host C compiler and compares every size and offset.
#![allow(unsafe_code)]

use std::mem::offset_of;

/// Upper bound of payload bytes copied per syscall (`DF_MAX_DATA`).
pub const DF_MAX_DATA: usize = 4096;
/// `DF_COMM_LEN`.
pub const DF_COMM_LEN: usize = 16;

/// `DF_EV_*`.
pub mod event_type {
    /// Payload of a data syscall.
    pub const DATA: u8 = 1;
    /// connect() succeeded (or is in progress): the local side is the client.
    pub const CONNECT: u8 = 2;
    /// accept() returned a socket: the local side is the server.
    pub const ACCEPT: u8 = 3;
    /// close() of a socket fd.
    pub const CLOSE: u8 = 4;
}

/// `DF_SYS_*`: the syscall (or library call) an event comes from.
pub mod syscall {
    #![allow(missing_docs)]
    pub const READ: u16 = 1;
    pub const WRITE: u16 = 2;
    pub const READV: u16 = 3;
    pub const WRITEV: u16 = 4;
    pub const SENDTO: u16 = 5;
    pub const RECVFROM: u16 = 6;
    pub const SENDMSG: u16 = 7;
    pub const RECVMSG: u16 = 8;
    pub const SENDMMSG: u16 = 9;
    pub const RECVMMSG: u16 = 10;
    pub const CONNECT: u16 = 11;
    pub const ACCEPT: u16 = 12;
    pub const ACCEPT4: u16 = 13;
    pub const CLOSE: u16 = 14;
    pub const SSL_WRITE: u16 = 15;
    pub const SSL_READ: u16 = 16;

    /// Lowercase name of a `DF_SYS_*` value.
    pub fn name(v: u16) -> &'static str {
        match v {
            READ => "read",
            WRITE => "write",
            READV => "readv",
            WRITEV => "writev",
            SENDTO => "sendto",
            RECVFROM => "recvfrom",
            SENDMSG => "sendmsg",
            RECVMSG => "recvmsg",
            SENDMMSG => "sendmmsg",
            RECVMMSG => "recvmmsg",
            CONNECT => "connect",
            ACCEPT => "accept",
            ACCEPT4 => "accept4",
            CLOSE => "close",
            SSL_WRITE => "ssl_write",
            SSL_READ => "ssl_read",
            _ => "unknown",
        }
    }
}

/// `DF_DIR_EGRESS`: the process sent the bytes.
pub const DIR_EGRESS: u8 = 0;
/// `DF_DIR_INGRESS`: the process received the bytes.
pub const DIR_INGRESS: u8 = 1;
/// `DF_SRC_SYSCALL`: payload of a socket syscall.
pub const SRC_SYSCALL: u8 = 0;
/// `DF_SRC_OPENSSL`: plaintext of SSL_write/SSL_read (uprobes on libssl).
pub const SRC_OPENSSL: u8 = 1;
/// `DF_ROLE_UNKNOWN`.
pub const ROLE_UNKNOWN: u8 = 0;
/// `DF_ROLE_CLIENT`.
pub const ROLE_CLIENT: u8 = 1;
/// `DF_ROLE_SERVER`.
pub const ROLE_SERVER: u8 = 2;

/// `struct df_sock_tuple`: s* local, d* remote; addresses network order, ports host order.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DfSockTuple {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    pub l4_proto: u8,
    pub _pad: u8,
}

/// `struct df_socket_event`: the header of one ring-buffer record; `data_len` payload bytes
/// follow it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DfSocketEvent {
    pub ts_ns: u64,
    pub enter_ts_ns: u64,
    pub sock_id: u64,
    pub seq: u64,
    pub ret: i64,
    pub pid: u32,
    pub tid: u32,
    pub fd: u32,
    pub data_len: u32,
    pub syscall: u16,
    pub event_type: u8,
    pub direction: u8,
    pub role: u8,
    pub source: u8,
    pub _pad: [u8; 2],
    pub comm: [u8; DF_COMM_LEN],
    pub tuple: DfSockTuple,
    pub syscall_trace_id: u64,
}

/// `struct df_socket_stats` (per CPU).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DfSocketStats {
    pub events: u64,
    pub lost: u64,
    pub truncated: u64,
    pub not_socket: u64,
    pub fd_lookup_failed: u64,
    pub enter_missing: u64,
}

/// `struct df_stack_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DfStackKey {
    pub pid: u32,
    pub tid: u32,
    pub user_stack_id: i32,
    pub kernel_stack_id: i32,
    pub comm: [u8; DF_COMM_LEN],
}

/// `struct df_profile_stats` (per CPU).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DfProfileStats {
    pub samples: u64,
    pub dropped: u64,
    pub stack_errors: u64,
}

// SAFETY: plain `#[repr(C)]` structs of integers and byte arrays with explicit padding fields:
// every bit pattern is valid and there are no implicit padding bytes.
unsafe impl aya::Pod for DfSocketStats {}
// SAFETY: as above.
unsafe impl aya::Pod for DfStackKey {}
// SAFETY: as above.
unsafe impl aya::Pod for DfProfileStats {}

fn rd<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = b.get(off..off + N) {
        a.copy_from_slice(s);
    }
    a
}

impl DfSocketEvent {
    /// Size of the header.
    pub const SIZE: usize = std::mem::size_of::<DfSocketEvent>();

    /// Decodes the header at the start of a ring-buffer record (native endianness, as the
    /// kernel wrote it); `None` if the record is shorter than the header.
    pub fn parse(b: &[u8]) -> Option<(DfSocketEvent, &[u8])> {
        if b.len() < Self::SIZE {
            return None;
        }
        let t = offset_of!(DfSocketEvent, tuple);
        let ev = DfSocketEvent {
            ts_ns: u64::from_ne_bytes(rd(b, offset_of!(DfSocketEvent, ts_ns))),
            enter_ts_ns: u64::from_ne_bytes(rd(b, offset_of!(DfSocketEvent, enter_ts_ns))),
            sock_id: u64::from_ne_bytes(rd(b, offset_of!(DfSocketEvent, sock_id))),
            seq: u64::from_ne_bytes(rd(b, offset_of!(DfSocketEvent, seq))),
            ret: i64::from_ne_bytes(rd(b, offset_of!(DfSocketEvent, ret))),
            pid: u32::from_ne_bytes(rd(b, offset_of!(DfSocketEvent, pid))),
            tid: u32::from_ne_bytes(rd(b, offset_of!(DfSocketEvent, tid))),
            fd: u32::from_ne_bytes(rd(b, offset_of!(DfSocketEvent, fd))),
            data_len: u32::from_ne_bytes(rd(b, offset_of!(DfSocketEvent, data_len))),
            syscall: u16::from_ne_bytes(rd(b, offset_of!(DfSocketEvent, syscall))),
            event_type: rd::<1>(b, offset_of!(DfSocketEvent, event_type))[0],
            direction: rd::<1>(b, offset_of!(DfSocketEvent, direction))[0],
            role: rd::<1>(b, offset_of!(DfSocketEvent, role))[0],
            source: rd::<1>(b, offset_of!(DfSocketEvent, source))[0],
            _pad: [0; 2],
            comm: rd(b, offset_of!(DfSocketEvent, comm)),
            tuple: DfSockTuple {
                saddr: rd(b, t + offset_of!(DfSockTuple, saddr)),
                daddr: rd(b, t + offset_of!(DfSockTuple, daddr)),
                sport: u16::from_ne_bytes(rd(b, t + offset_of!(DfSockTuple, sport))),
                dport: u16::from_ne_bytes(rd(b, t + offset_of!(DfSockTuple, dport))),
                family: u16::from_ne_bytes(rd(b, t + offset_of!(DfSockTuple, family))),
                l4_proto: rd::<1>(b, t + offset_of!(DfSockTuple, l4_proto))[0],
                _pad: 0,
            },
            syscall_trace_id: u64::from_ne_bytes(rd(b, offset_of!(DfSocketEvent, syscall_trace_id))),
        };
        let n = (ev.data_len as usize).min(b.len() - Self::SIZE);
        let data = b.get(Self::SIZE..Self::SIZE + n).unwrap_or_default();
        Some((ev, data))
    }

    /// Encodes the header followed by `data` as the kernel writes a record (for tests and
    /// replay).
    pub fn to_record(&self, data: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; Self::SIZE];
        let t = offset_of!(DfSocketEvent, tuple);
        let mut put = |off: usize, b: &[u8]| {
            if let Some(d) = v.get_mut(off..off + b.len()) {
                d.copy_from_slice(b);
            }
        };
        put(offset_of!(DfSocketEvent, ts_ns), &self.ts_ns.to_ne_bytes());
        put(offset_of!(DfSocketEvent, enter_ts_ns), &self.enter_ts_ns.to_ne_bytes());
        put(offset_of!(DfSocketEvent, sock_id), &self.sock_id.to_ne_bytes());
        put(offset_of!(DfSocketEvent, seq), &self.seq.to_ne_bytes());
        put(offset_of!(DfSocketEvent, ret), &self.ret.to_ne_bytes());
        put(offset_of!(DfSocketEvent, pid), &self.pid.to_ne_bytes());
        put(offset_of!(DfSocketEvent, tid), &self.tid.to_ne_bytes());
        put(offset_of!(DfSocketEvent, fd), &self.fd.to_ne_bytes());
        put(offset_of!(DfSocketEvent, data_len), &(data.len() as u32).to_ne_bytes());
        put(offset_of!(DfSocketEvent, syscall), &self.syscall.to_ne_bytes());
        put(offset_of!(DfSocketEvent, event_type), &[self.event_type]);
        put(offset_of!(DfSocketEvent, direction), &[self.direction]);
        put(offset_of!(DfSocketEvent, role), &[self.role]);
        put(offset_of!(DfSocketEvent, source), &[self.source]);
        put(offset_of!(DfSocketEvent, comm), &self.comm);
        put(t + offset_of!(DfSockTuple, saddr), &self.tuple.saddr);
        put(t + offset_of!(DfSockTuple, daddr), &self.tuple.daddr);
        put(t + offset_of!(DfSockTuple, sport), &self.tuple.sport.to_ne_bytes());
        put(t + offset_of!(DfSockTuple, dport), &self.tuple.dport.to_ne_bytes());
        put(t + offset_of!(DfSockTuple, family), &self.tuple.family.to_ne_bytes());
        put(t + offset_of!(DfSockTuple, l4_proto), &[self.tuple.l4_proto]);
        put(offset_of!(DfSocketEvent, syscall_trace_id), &self.syscall_trace_id.to_ne_bytes());
        v.extend_from_slice(data);
        v
    }
}

/// The process name in a `comm` array (up to the first NUL).
pub fn comm_str(c: &[u8; DF_COMM_LEN]) -> String {
    let n = c.iter().position(|&b| b == 0).unwrap_or(c.len());
    String::from_utf8_lossy(c.get(..n).unwrap_or_default()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::mem::size_of;

    fn c_layout() -> Option<HashMap<String, usize>> {
        let dir = env!("CARGO_MANIFEST_DIR");
        let out = std::env::temp_dir().join(format!("df_layout_check_{}", std::process::id()));
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let st = std::process::Command::new(&cc)
            .arg(format!("-I{dir}/bpf"))
            .arg(format!("{dir}/bpf/layout_check.c"))
            .arg("-o")
            .arg(&out)
            .status();
        match st {
            Ok(s) if s.success() => {}
            other => {
                eprintln!("SKIP layout_matches_c_header: cannot compile bpf/layout_check.c with {cc}: {other:?}");
                return None;
            }
        }
        let o = std::process::Command::new(&out).output().unwrap();
        let _ = std::fs::remove_file(&out);
        let text = String::from_utf8(o.stdout).unwrap();
        Some(
            text.lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(k, v)| (k.to_string(), v.trim().parse().unwrap()))
                .collect(),
        )
    }

    #[test]
    fn layout_matches_c_header() {
        let Some(c) = c_layout() else { return };
        let mut checked = 0;
        let mut eq = |k: &str, v: usize| {
            assert_eq!(c.get(k).copied(), Some(v), "{k}: C says {:?}, Rust {v}", c.get(k));
            checked += 1;
        };
        eq("DF_MAX_DATA", DF_MAX_DATA);
        eq("DF_COMM_LEN", DF_COMM_LEN);
        eq("df_sock_tuple", size_of::<DfSockTuple>());
        eq("df_sock_tuple.saddr", offset_of!(DfSockTuple, saddr));
        eq("df_sock_tuple.daddr", offset_of!(DfSockTuple, daddr));
        eq("df_sock_tuple.sport", offset_of!(DfSockTuple, sport));
        eq("df_sock_tuple.dport", offset_of!(DfSockTuple, dport));
        eq("df_sock_tuple.family", offset_of!(DfSockTuple, family));
        eq("df_sock_tuple.l4_proto", offset_of!(DfSockTuple, l4_proto));
        eq("df_socket_event", size_of::<DfSocketEvent>());
        eq("df_socket_event.ts_ns", offset_of!(DfSocketEvent, ts_ns));
        eq("df_socket_event.enter_ts_ns", offset_of!(DfSocketEvent, enter_ts_ns));
        eq("df_socket_event.sock_id", offset_of!(DfSocketEvent, sock_id));
        eq("df_socket_event.seq", offset_of!(DfSocketEvent, seq));
        eq("df_socket_event.ret", offset_of!(DfSocketEvent, ret));
        eq("df_socket_event.pid", offset_of!(DfSocketEvent, pid));
        eq("df_socket_event.tid", offset_of!(DfSocketEvent, tid));
        eq("df_socket_event.fd", offset_of!(DfSocketEvent, fd));
        eq("df_socket_event.data_len", offset_of!(DfSocketEvent, data_len));
        eq("df_socket_event.syscall", offset_of!(DfSocketEvent, syscall));
        eq("df_socket_event.event_type", offset_of!(DfSocketEvent, event_type));
        eq("df_socket_event.direction", offset_of!(DfSocketEvent, direction));
        eq("df_socket_event.role", offset_of!(DfSocketEvent, role));
        eq("df_socket_event.source", offset_of!(DfSocketEvent, source));
        eq("df_socket_event.comm", offset_of!(DfSocketEvent, comm));
        eq("df_socket_event.tuple", offset_of!(DfSocketEvent, tuple));
        eq("df_socket_event.syscall_trace_id", offset_of!(DfSocketEvent, syscall_trace_id));
        eq("df_socket_stats", size_of::<DfSocketStats>());
        eq("df_socket_stats.events", offset_of!(DfSocketStats, events));
        eq("df_socket_stats.lost", offset_of!(DfSocketStats, lost));
        eq("df_socket_stats.truncated", offset_of!(DfSocketStats, truncated));
        eq("df_socket_stats.not_socket", offset_of!(DfSocketStats, not_socket));
        eq("df_socket_stats.fd_lookup_failed", offset_of!(DfSocketStats, fd_lookup_failed));
        eq("df_socket_stats.enter_missing", offset_of!(DfSocketStats, enter_missing));
        eq("df_stack_key", size_of::<DfStackKey>());
        eq("df_stack_key.pid", offset_of!(DfStackKey, pid));
        eq("df_stack_key.tid", offset_of!(DfStackKey, tid));
        eq("df_stack_key.user_stack_id", offset_of!(DfStackKey, user_stack_id));
        eq("df_stack_key.kernel_stack_id", offset_of!(DfStackKey, kernel_stack_id));
        eq("df_stack_key.comm", offset_of!(DfStackKey, comm));
        eq("df_profile_stats", size_of::<DfProfileStats>());
        eq("df_profile_stats.samples", offset_of!(DfProfileStats, samples));
        eq("df_profile_stats.dropped", offset_of!(DfProfileStats, dropped));
        eq("df_profile_stats.stack_errors", offset_of!(DfProfileStats, stack_errors));
        assert_eq!(checked, c.len(), "layout_check.c prints fields this test does not check");
    }

    #[test]
    fn record_roundtrip_and_short_input() {
        let mut e = DfSocketEvent {
            ts_ns: 7,
            pid: 42,
            syscall_trace_id: 99,
            syscall: syscall::WRITEV,
            role: ROLE_CLIENT,
            ..Default::default()
        };
        e.comm[..4].copy_from_slice(b"curl");
        e.tuple.sport = 40000;
        e.tuple.dport = 80;
        let rec = e.to_record(b"GET / HTTP/1.1\r\n");
        let (d, data) = DfSocketEvent::parse(&rec).unwrap();
        assert_eq!(data, b"GET / HTTP/1.1\r\n");
        assert_eq!(d.data_len, 16);
        assert_eq!(DfSocketEvent { data_len: 0, ..d }, e);
        assert_eq!(comm_str(&d.comm), "curl");
        for n in 0..rec.len() {
            let _ = DfSocketEvent::parse(&rec[..n]);
        }
        assert!(DfSocketEvent::parse(&rec[..DfSocketEvent::SIZE - 1]).is_none());
    }
}
