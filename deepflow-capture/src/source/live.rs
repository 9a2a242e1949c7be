//! Live capture through libpcap (feature `live`).
//!
//! The capture runs in immediate mode (each packet is delivered as soon as it arrives). When
//! no packet arrives within `timeout_ms`, [`PacketSource::next_packet`] returns
//! [`Next::Idle`] so that the caller can advance its timers on a quiet link.
//!
//! Implementation notes. libpcap's own read timeout does not fire in immediate mode on Linux
//! (a blocking read polls until a packet arrives), so the handle is non-blocking and
//! `next_packet` waits with short sleeps (50 µs doubling up to 2 ms) while the interface is
//! quiet; under load no sleep happens. Each packet is copied once into a reused buffer: the
//! pcap crate lends packets with a borrow that the retry loop cannot return (a known limit
//! of today's borrow checker), and `unsafe` is not allowed here.
//!
//! ```no_run
//! use deepflow_capture::source::live::{LiveConfig, LiveSource};
//! use deepflow_capture::source::{Next, PacketSource};
//!
//! let cfg = LiveConfig { interface: "lo".into(), filter: Some("udp".into()), ..LiveConfig::default() };
//! let mut src = LiveSource::open(cfg)?;
//! for _ in 0..10 {
//!     if let Next::Packet(p) = src.next_packet()? {
//!         println!("{} bytes at {}", p.data.len(), p.timestamp_us);
//!     }
//! }
//! println!("kernel dropped {}", src.stats().dropped);
//! # Ok::<(), deepflow_capture::source::CaptureError>(())
//! ```

use std::net::IpAddr;
use std::time::{Duration, Instant};

use deepflow_core::wire::LinkType;

use super::{CaptureError, Next, PacketSource, RawPacket, SourceStats};

/// Settings of a [`LiveSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConfig {
    /// Interface name (`eth0`, `lo`, `any`).
    pub interface: String,
    /// BPF filter expression (tcpdump syntax), if any.
    pub filter: Option<String>,
    /// Bytes captured per packet (default 65535).
    pub snaplen: i32,
    /// Put the interface in promiscuous mode (default false).
    pub promiscuous: bool,
    /// Read timeout in milliseconds: how long `next_packet` waits before returning
    /// [`Next::Idle`] (default 100).
    pub timeout_ms: i32,
    /// Kernel capture buffer in bytes (default 16 MiB); larger buffers drop less under bursts.
    pub buffer_size: i32,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            interface: "any".into(),
            filter: None,
            snaplen: 65535,
            promiscuous: false,
            timeout_ms: 100,
            buffer_size: 16 << 20,
        }
    }
}

/// A network interface libpcap can capture on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Name to put in [`LiveConfig::interface`].
    pub name: String,
    /// libpcap's description, if any.
    pub description: Option<String>,
    /// Addresses assigned to it.
    pub addresses: Vec<IpAddr>,
    /// Interface is up.
    pub up: bool,
    /// Interface is a loopback interface.
    pub loopback: bool,
}

/// The interfaces libpcap can capture on.
pub fn list_interfaces() -> Result<Vec<Interface>, CaptureError> {
    let devices =
        pcap::Device::list().map_err(|e| CaptureError::Live { interface: String::new(), message: e.to_string() })?;
    Ok(devices
        .into_iter()
        .map(|d| Interface {
            up: d.flags.is_up(),
            loopback: d.flags.is_loopback(),
            addresses: d.addresses.iter().map(|a| a.addr).collect(),
            description: d.desc,
            name: d.name,
        })
        .collect())
}

/// Packets from a network interface through libpcap.
pub struct LiveSource {
    cap: pcap::Capture<pcap::Active>,
    interface: String,
    link: LinkType,
    stats: SourceStats,
    /// Last raw libpcap counters (32-bit, may wrap), to accumulate into 64-bit stats.
    last_raw: (u32, u32, u32),
    /// Packet time of the last stats refresh.
    refreshed_us: u64,
    /// Refresh the counters before the next read.
    refresh_due: bool,
    /// How long `next_packet` waits for a packet before returning `Idle`.
    timeout: Duration,
    /// The packet being lent (see the module docs for why it is copied).
    buf: Vec<u8>,
}

/// First and longest sleep while waiting for a packet on a quiet interface.
const MIN_NAP: Duration = Duration::from_micros(50);
const MAX_NAP: Duration = Duration::from_millis(2);

/// How often (in packet time) the libpcap counters are refreshed while packets flow.
const STATS_REFRESH_US: u64 = 1_000_000;

impl LiveSource {
    /// Opens the interface, applies the filter and starts capturing.
    pub fn open(cfg: LiveConfig) -> Result<LiveSource, CaptureError> {
        let interface = cfg.interface.clone();
        let err = |e: pcap::Error| CaptureError::Live { interface: interface.clone(), message: e.to_string() };
        let mut cap = pcap::Capture::from_device(cfg.interface.as_str())
            .map_err(err)?
            .immediate_mode(true)
            .snaplen(cfg.snaplen)
            .promisc(cfg.promiscuous)
            .timeout(cfg.timeout_ms)
            .buffer_size(cfg.buffer_size)
            .open()
            .map_err(err)?
            .setnonblock()
            .map_err(err)?;
        if let Some(f) = &cfg.filter {
            cap.filter(f, true).map_err(|e| CaptureError::Live {
                interface: interface.clone(),
                message: format!("filter {f:?}: {e}"),
            })?;
        }
        let dlt = cap.get_datalink().0;
        let link = u32::try_from(dlt).ok().and_then(LinkType::from_dlt).ok_or_else(|| CaptureError::Live {
            interface: interface.clone(),
            message: format!("data link type {dlt} is not supported"),
        })?;
        Ok(LiveSource {
            cap,
            interface,
            link,
            stats: SourceStats::default(),
            last_raw: (0, 0, 0),
            refreshed_us: 0,
            refresh_due: false,
            timeout: Duration::from_millis(u64::try_from(cfg.timeout_ms).unwrap_or(0)),
            buf: Vec::with_capacity(usize::try_from(cfg.snaplen).unwrap_or(65535).min(1 << 18)),
        })
    }

    /// The interface's link type.
    pub fn link_type(&self) -> LinkType {
        self.link
    }

    /// Reads libpcap's received/dropped counters into [`PacketSource::stats`]. Done
    /// automatically after every idle timeout and about once a second of packet time; call it
    /// before reading the final stats for exact numbers.
    pub fn refresh_stats(&mut self) -> Result<(), CaptureError> {
        let s = self
            .cap
            .stats()
            .map_err(|e| CaptureError::Live { interface: self.interface.clone(), message: format!("stats: {e}") })?;
        let (r, d, i) = self.last_raw;
        self.stats.received += u64::from(s.received.wrapping_sub(r));
        self.stats.dropped += u64::from(s.dropped.wrapping_sub(d));
        self.stats.if_dropped += u64::from(s.if_dropped.wrapping_sub(i));
        self.last_raw = (s.received, s.dropped, s.if_dropped);
        Ok(())
    }
}

impl PacketSource for LiveSource {
    fn next_packet(&mut self) -> Result<Next<'_>, CaptureError> {
        if self.refresh_due {
            self.refresh_due = false;
            // Counters are best effort: failing to read them must not stop the capture.
            let _ = self.refresh_stats();
        }
        let started = Instant::now();
        let mut nap = MIN_NAP;
        loop {
            match self.cap.next_packet() {
                Ok(p) => {
                    let secs = u64::try_from(p.header.ts.tv_sec).unwrap_or(0);
                    let usecs = u64::try_from(p.header.ts.tv_usec).unwrap_or(0);
                    let timestamp_us = secs.saturating_mul(1_000_000).saturating_add(usecs);
                    let wire_len = p.header.len;
                    self.buf.clear();
                    self.buf.extend_from_slice(p.data);
                    if timestamp_us.saturating_sub(self.refreshed_us) >= STATS_REFRESH_US {
                        self.refreshed_us = timestamp_us;
                        self.refresh_due = true;
                    }
                    self.stats.packets += 1;
                    self.stats.bytes += self.buf.len() as u64;
                    return Ok(Next::Packet(RawPacket {
                        timestamp_us,
                        wire_len,
                        link: self.link,
                        interface: 0,
                        data: &self.buf,
                    }));
                }
                Err(pcap::Error::TimeoutExpired) => {
                    if started.elapsed() >= self.timeout {
                        self.refresh_due = true;
                        return Ok(Next::Idle);
                    }
                    std::thread::sleep(nap);
                    nap = (nap * 2).min(MAX_NAP);
                }
                Err(pcap::Error::NoMorePackets) => return Ok(Next::End),
                Err(e) => return Err(CaptureError::Live { interface: self.interface.clone(), message: e.to_string() }),
            }
        }
    }

    fn stats(&self) -> SourceStats {
        self.stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn defaults() {
        let c = LiveConfig::default();
        assert_eq!((c.snaplen, c.promiscuous, c.timeout_ms), (65535, false, 100));
    }

    #[test]
    fn unknown_interface_is_an_error() {
        let cfg = LiveConfig { interface: "no-such-if0".into(), ..LiveConfig::default() };
        match LiveSource::open(cfg) {
            Err(CaptureError::Live { interface, message }) => {
                assert_eq!(interface, "no-such-if0");
                assert!(!message.is_empty());
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened a nonexistent interface"),
        }
    }

    /// Opens `lo`, sends UDP datagrams to a port of our own and sees them. Skips (with a
    /// message) where capture is not permitted.
    #[test]
    fn captures_udp_on_loopback() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rx.local_addr().unwrap().port();
        let cfg = LiveConfig {
            interface: "lo".into(),
            filter: Some(format!("udp and dst port {port}")),
            timeout_ms: 50,
            buffer_size: 1 << 20,
            ..LiveConfig::default()
        };
        let mut src = match LiveSource::open(cfg) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipping live capture test: cannot capture on lo ({e}); needs root or CAP_NET_RAW");
                return;
            }
        };
        assert!(list_interfaces().unwrap().iter().any(|i| i.name == "lo" && i.loopback));
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![b'd', b'f', i, i, i]).collect();
        for p in &payloads {
            tx.send_to(p, ("127.0.0.1", port)).unwrap();
        }
        let mut seen = Vec::new();
        let mut idle = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.len() < payloads.len() && Instant::now() < deadline {
            match src.next_packet().unwrap() {
                Next::Packet(p) => {
                    assert_eq!(p.link, LinkType::Ethernet, "lo is Ethernet-framed on Linux");
                    assert!(p.timestamp_us > 1_600_000_000_000_000);
                    // The UDP payload ends the frame on loopback.
                    let tail = p.data[p.data.len().saturating_sub(5)..].to_vec();
                    seen.push(tail);
                }
                Next::Idle => idle += 1,
                Next::End => break,
            }
        }
        assert_eq!(seen, payloads, "after {idle} idle timeouts");
        // With nothing more to see, the read times out as Idle.
        let mut got_idle = false;
        for _ in 0..50 {
            if matches!(src.next_packet().unwrap(), Next::Idle) {
                got_idle = true;
                break;
            }
        }
        assert!(got_idle);
        src.refresh_stats().unwrap();
        let s = src.stats();
        assert_eq!(s.packets, 5);
        assert!(s.received >= 5, "{s:?}");
        assert_eq!(s.dropped, 0);
    }
}
