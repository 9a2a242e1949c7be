//! Printing rows: JSON lines on stdout, or a readable table with totals.

use std::collections::BTreeMap;
use std::io::{BufWriter, Stdout, Write};

use deepflow_capture::pipeline::Pipeline;
use deepflow_core::record::ApplicationMetrics;
use deepflow_core::record::{
    JsonlThread, L4FlowLog, L7FlowLog, L7Protocol, LatencyHistogram, NetworkMetrics, ResponseStatus,
};
use deepflow_protocols::capture::L7Observer;
use deepflow_protocols::red::{RedAggregator, RedConfig};

type Pipe = Pipeline<L7Observer>;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Jsonl,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    Flows,
    Sessions,
    Messages,
    Metrics,
}

/// RED figures of one (protocol, server, endpoint).
#[derive(Default)]
struct Red {
    requests: u64,
    client_errors: u64,
    server_errors: u64,
    timeouts: u64,
    rrt: LatencyHistogram,
    rrt_sum: u64,
    rrt_max: u64,
}

impl Red {
    /// Counts one row (requests once per session/request row; answers, errors and rrt on rows
    /// that carry a response or a timeout).
    fn count(&mut self, r: &L7FlowLog) {
        let is_request = !matches!(r.log_type, deepflow_core::record::LogType::Response);
        let is_answer = !matches!(r.log_type, deepflow_core::record::LogType::Request)
            || r.response_status == ResponseStatus::Timeout;
        if is_request {
            self.requests += 1;
        }
        if is_answer {
            match r.response_status {
                ResponseStatus::ClientError => self.client_errors += 1,
                ResponseStatus::ServerError => self.server_errors += 1,
                ResponseStatus::Timeout => self.timeouts += 1,
                _ => {}
            }
            if let Some(rrt) = r.rrt {
                self.rrt.record(rrt);
                self.rrt_sum += rrt;
                self.rrt_max = self.rrt_max.max(rrt);
            }
        }
    }
}

/// (protocol, server ip, server port, transport, endpoint or request type) of the summary.
type RedKey = (L7Protocol, std::net::IpAddr, u16, &'static str, String);

/// A [`RedKey`] with a borrowed endpoint (hashes the same): a row is counted without
/// allocating unless its endpoint is new.
#[derive(Hash)]
struct RedKeyRef<'a>(L7Protocol, std::net::IpAddr, u16, &'static str, &'a str);

impl hashbrown::Equivalent<RedKey> for RedKeyRef<'_> {
    fn equivalent(&self, k: &RedKey) -> bool {
        self.0 == k.0 && self.1 == k.1 && self.2 == k.2 && self.3 == k.3 && self.4 == k.4
    }
}

/// Totals over every flow, whatever was printed.
#[derive(Default)]
struct Totals {
    flows: u64,
    packets: u64,
    bytes: u64,
    retrans: u64,
    by_protocol: BTreeMap<&'static str, (u64, u64, u64)>,
    by_close: BTreeMap<(u8, &'static str), u64>,
    rtt_sum: u64,
    rtt_n: u64,
    l7_rows: u64,
    red: hashbrown::HashMap<RedKey, Red>,
}

pub struct Printer {
    format: Format,
    emit: Emit,
    limit: usize,
    out: BufWriter<Stdout>,
    flows: Vec<L4FlowLog>,
    metrics: Vec<NetworkMetrics>,
    l7: Vec<L7FlowLog>,
    app_metrics: Vec<ApplicationMetrics>,
    /// Application RED metrics (1 s and 1 min) from every L7 row.
    red: RedAggregator,
    totals: Totals,
    /// `--format jsonl` of L7 rows: serialized and written by a thread of their own.
    l7_json: Option<JsonlThread>,
}

impl Printer {
    pub fn new(format: Format, emit: Emit, limit: usize, normalize_routes: bool) -> Self {
        Printer {
            format,
            emit,
            limit,
            out: BufWriter::with_capacity(1 << 16, std::io::stdout()),
            flows: Vec::new(),
            metrics: Vec::new(),
            l7: Vec::new(),
            app_metrics: Vec::new(),
            red: RedAggregator::new(RedConfig { normalize_routes, ..RedConfig::default() }),
            totals: Totals::default(),
            // stdout is only shared with this thread's rows: in JSON lines one kind of row is
            // printed (L7 rows here) and `finish` joins the thread before it writes anything
            l7_json: if format == Format::Jsonl && matches!(emit, Emit::Sessions | Emit::Messages) {
                JsonlThread::spawn(std::io::stdout()).ok()
            } else {
                None
            },
        }
    }

    /// Takes the rows the pipeline produced so far.
    pub fn rows(&mut self, pipe: &mut Pipe) {
        let rows = pipe.table_mut().observer_mut().rows_mut();
        let print = matches!(self.emit, Emit::Sessions | Emit::Messages);
        self.totals.l7_rows += rows.len() as u64;
        // only what is printed is computed: the per-endpoint summary belongs to the table, the
        // application metrics to `--emit metrics`
        if self.format == Format::Table {
            for r in rows.iter() {
                self.account_red(r);
            }
        }
        if self.emit == Emit::Metrics {
            for r in rows.iter() {
                self.red.add(r);
            }
        }
        if print {
            match (&mut self.l7_json, self.format) {
                (Some(t), _) => t.send(rows),
                (None, Format::Table) => self.l7.append(rows),
                (None, Format::Jsonl) => {
                    // no writer thread (it could not be started): write here
                    let mut line = Vec::with_capacity(1 << 16);
                    for r in rows.iter() {
                        r.write_json(&mut line);
                        line.push(b'\n');
                    }
                    let _ = self.out.write_all(&line);
                }
            }
        }
        rows.clear();
        let table = self.format == Format::Table;
        for f in pipe.drain_flows() {
            if !table {
                // JSON lines print no totals
                if self.emit == Emit::Flows {
                    self.json(&f);
                }
                continue;
            }
            let t = &mut self.totals;
            t.flows += 1;
            t.packets += f.packet_tx + f.packet_rx;
            t.bytes += f.byte_tx + f.byte_rx;
            t.retrans += u64::from(f.retrans_tx + f.retrans_rx);
            let e = t.by_protocol.entry(f.protocol).or_default();
            e.0 += 1;
            e.1 += f.packet_tx + f.packet_rx;
            e.2 += f.byte_tx + f.byte_rx;
            if f.protocol == "TCP" {
                *t.by_close.entry((f.close_type.code(), f.close_type_name)).or_default() += 1;
            }
            if f.rtt > 0 {
                t.rtt_sum += f.rtt;
                t.rtt_n += 1;
            }
            if self.emit == Emit::Flows {
                self.flows.push(f);
            }
        }
        for m in pipe.drain_metrics() {
            if self.emit == Emit::Metrics {
                match self.format {
                    Format::Jsonl => self.json(&m),
                    Format::Table => self.metrics.push(m),
                }
            }
        }
        let mut app = Vec::new();
        self.red.flush(pipe.stats().last_timestamp_us, &mut app);
        self.app_rows(app);
        if self.format == Format::Jsonl {
            let _ = self.out.flush();
        }
    }

    fn app_rows(&mut self, rows: Vec<ApplicationMetrics>) {
        if self.emit != Emit::Metrics {
            return;
        }
        for m in rows {
            match self.format {
                Format::Jsonl => self.json(&m),
                Format::Table => self.app_metrics.push(m),
            }
        }
    }

    /// Adds a row to the per-endpoint RED summary (requests counted once per session/request row).
    fn account_red(&mut self, r: &L7FlowLog) {
        let ep = r.endpoint.as_deref().or(r.request_type.as_deref()).unwrap_or_default();
        match self.totals.red.get_mut(&RedKeyRef(r.l7_protocol, r.ip_1, r.server_port, r.protocol, ep)) {
            Some(e) => e.count(r),
            None => {
                let mut e = Red::default();
                e.count(r);
                self.totals.red.insert((r.l7_protocol, r.ip_1, r.server_port, r.protocol, ep.to_string()), e);
            }
        }
    }

    fn json<T: serde::Serialize>(&mut self, row: &T) {
        if serde_json::to_writer(&mut self.out, row).is_ok() {
            let _ = self.out.write_all(b"\n");
        }
    }

    /// Prints the table (if any) and the summary.
    pub fn finish(&mut self, pipe: &Pipe, source: &str) {
        if let Some(t) = self.l7_json.take() {
            // a closed stdout (`| head`) is not an error of the analysis
            let _ = t.finish();
        }
        let mut app = Vec::new();
        self.red.finish(&mut app);
        self.app_rows(app);
        if self.format == Format::Table {
            match self.emit {
                Emit::Flows => self.flow_table(),
                Emit::Sessions | Emit::Messages => self.l7_table(),
                Emit::Metrics => {
                    self.metrics_table();
                    self.app_metrics_table();
                }
            }
            self.red_table();
            self.summary(pipe, source);
        }
        let _ = self.out.flush();
    }

    fn flow_table(&mut self) {
        let mut flows = std::mem::take(&mut self.flows);
        flows.sort_by_key(|f| std::cmp::Reverse(f.byte_tx + f.byte_rx));
        let shown = flows.len().min(self.limit);
        let w = &mut self.out;
        let _ = writeln!(
            w,
            "{:<47} {:<5} {:>8} {:>8} {:>10} {:>10} {:>8} {:>8} {:>5} {:<18}",
            "client -> server", "proto", "pkt_tx", "pkt_rx", "byte_tx", "byte_rx", "rtt_us", "art_us", "retx", "close"
        );
        for f in flows.iter().take(shown) {
            let ends = format!(
                "{} -> {}",
                endpoint(f.ip_0, f.client_port, f.protocol),
                endpoint(f.ip_1, f.server_port, f.protocol)
            );
            let _ = writeln!(
                w,
                "{:<47} {:<5} {:>8} {:>8} {:>10} {:>10} {:>8} {:>8} {:>5} {:<18}",
                ends,
                f.protocol,
                f.packet_tx,
                f.packet_rx,
                f.byte_tx,
                f.byte_rx,
                f.rtt,
                f.art,
                f.retrans_tx + f.retrans_rx,
                if f.protocol == "TCP" {
                    format!("{} {}", f.close_type.code(), f.close_type_name)
                } else {
                    String::new()
                }
            );
        }
        if flows.len() > shown {
            let _ = writeln!(w, "... {} more flows (raise --limit, or use --format jsonl)", flows.len() - shown);
        }
    }

    fn l7_table(&mut self) {
        let rows = std::mem::take(&mut self.l7);
        let w = &mut self.out;
        let _ = writeln!(
            w,
            "{:<9} {:<8} {:<24} {:<10} {:<22} {:<36} {:<12} {:>6} {:>9}",
            "protocol", "type", "server", "req_type", "domain", "resource", "status", "code", "rrt_us"
        );
        for r in rows.iter().take(self.limit) {
            let _ = writeln!(
                w,
                "{:<9} {:<8} {:<24} {:<10} {:<22} {:<36} {:<12} {:>6} {:>9}",
                r.l7_protocol.name(),
                format!("{:?}", r.log_type).to_lowercase(),
                endpoint(Some(r.ip_1), r.server_port, r.protocol),
                cut(r.request_type.as_deref().unwrap_or(""), 10),
                cut(r.request_domain.as_deref().unwrap_or(""), 22),
                cut(r.request_resource.as_deref().unwrap_or(""), 36),
                r.response_status.name(),
                r.response_code.map(|c| c.to_string()).unwrap_or_default(),
                r.rrt.map(|v| v.to_string()).unwrap_or_default()
            );
        }
        if rows.len() > self.limit {
            let _ = writeln!(w, "... {} more rows (raise --limit, or use --format jsonl)", rows.len() - self.limit);
        }
    }

    /// Per-endpoint RED summary of every L7 row seen.
    fn red_table(&mut self) {
        if self.totals.red.is_empty() {
            return;
        }
        let w = &mut self.out;
        let _ = writeln!(w);
        let _ = writeln!(w, "L7 RED by endpoint ({} rows)", self.totals.l7_rows);
        let _ = writeln!(
            w,
            "  {:<9} {:<24} {:<30} {:>7} {:>6} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9}",
            "protocol", "server", "endpoint", "req", "4xx", "5xx", "tmout", "avg_us", "p50_us", "p99_us", "max_us"
        );
        let mut entries: Vec<_> = self
            .totals
            .red
            .iter()
            .map(|((proto, ip, port, transport, ep), r)| (proto, endpoint(Some(*ip), *port, transport), ep, r))
            .collect();
        // most requests first; ties in (protocol, server, endpoint) order, as before
        entries.sort_by(|a, b| b.3.requests.cmp(&a.3.requests).then_with(|| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2))));
        for (proto, server, ep, r) in entries.iter().take(self.limit) {
            let q = |x: f64| r.rrt.quantile(x).map(|v| v.to_string()).unwrap_or_default();
            let _ = writeln!(
                w,
                "  {:<9} {:<24} {:<30} {:>7} {:>6} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9}",
                proto.name(),
                server,
                cut(ep, 30),
                r.requests,
                r.client_errors,
                r.server_errors,
                r.timeouts,
                r.rrt_sum.checked_div(r.rrt.count).map(|v| v.to_string()).unwrap_or_default(),
                q(0.5),
                q(0.99),
                r.rrt_max
            );
        }
        if entries.len() > self.limit {
            let _ = writeln!(w, "  ... {} more endpoints", entries.len() - self.limit);
        }
    }

    fn metrics_table(&mut self) {
        let rows = std::mem::take(&mut self.metrics);
        let w = &mut self.out;
        let _ = writeln!(
            w,
            "{:>11} {:>4} {:<40} {:<5} {:>6} {:>6} {:>8} {:>8} {:>10} {:>10} {:>8} {:>5}",
            "time",
            "int",
            "client -> server",
            "proto",
            "flows",
            "new",
            "pkt_tx",
            "pkt_rx",
            "byte_tx",
            "byte_rx",
            "rtt_avg",
            "retx"
        );
        for m in rows.iter().filter(|m| m.interval == 60).take(self.limit) {
            let ends = format!(
                "{} -> {}",
                m.ip_0.map(|i| i.to_string()).unwrap_or_default(),
                endpoint(m.ip_1, m.server_port, m.protocol)
            );
            let _ = writeln!(
                w,
                "{:>11} {:>4} {:<40} {:<5} {:>6} {:>6} {:>8} {:>8} {:>10} {:>10} {:>8} {:>5}",
                m.time,
                m.interval,
                ends,
                m.protocol,
                m.flow,
                m.new_flow,
                m.packet_tx,
                m.packet_rx,
                m.byte_tx,
                m.byte_rx,
                m.rtt_sum.checked_div(m.rtt_count).unwrap_or(0),
                m.retrans_tx + m.retrans_rx
            );
        }
    }

    fn app_metrics_table(&mut self) {
        let rows = std::mem::take(&mut self.app_metrics);
        let w = &mut self.out;
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "{:>11} {:>4} {:<9} {:<24} {:<30} {:>7} {:>6} {:>6} {:>6} {:>9} {:>9}",
            "time", "int", "protocol", "server", "endpoint", "req", "4xx", "5xx", "tmout", "p50_us", "p99_us"
        );
        for m in rows.iter().filter(|m| m.interval == 60).take(self.limit) {
            let _ = writeln!(
                w,
                "{:>11} {:>4} {:<9} {:<24} {:<30} {:>7} {:>6} {:>6} {:>6} {:>9} {:>9}",
                m.time,
                m.interval,
                m.l7_protocol.name(),
                endpoint(Some(m.ip_1), m.server_port, "TCP"),
                cut(&m.endpoint, 30),
                m.request,
                m.client_error,
                m.server_error,
                m.timeout,
                m.rrt_p50.map(|v| v.to_string()).unwrap_or_default(),
                m.rrt_p99.map(|v| v.to_string()).unwrap_or_default()
            );
        }
    }

    fn summary(&mut self, pipe: &Pipe, source: &str) {
        let s = pipe.stats();
        let fs = pipe.flow_stats();
        let ds = pipe.defrag_stats();
        let t = &self.totals;
        let w = &mut self.out;
        let span = s.first_timestamp_us.map(|f| s.last_timestamp_us.saturating_sub(f)).unwrap_or(0);
        let _ = writeln!(w);
        let _ = writeln!(w, "summary of {source}");
        let _ = writeln!(
            w,
            "  packets {} ({} bytes) over {:.3} s; flows {}; non-IP frames {}; undecodable {}",
            s.packets,
            s.bytes,
            span as f64 / 1e6,
            t.flows,
            s.non_ip,
            s.decode_error_total()
        );
        for (proto, (n, p, b)) in &t.by_protocol {
            let _ = writeln!(w, "  {proto:<6} flows {n:>8}  packets {p:>10}  bytes {b:>12}");
        }
        if !t.by_close.is_empty() {
            let closes: Vec<String> = t.by_close.iter().map(|((c, name), n)| format!("{name}({c}) {n}")).collect();
            let _ = writeln!(w, "  TCP close types: {}", closes.join(", "));
        }
        let _ = writeln!(
            w,
            "  TCP retransmissions {}; out-of-order {}; avg handshake rtt {} us; reassembly gaps {} bytes",
            t.retrans,
            fs.out_of_order,
            t.rtt_sum.checked_div(t.rtt_n).unwrap_or(0),
            fs.gap_bytes
        );
        if s.fragments > 0 {
            let _ = writeln!(
                w,
                "  IP fragments {}; datagrams reassembled {}; timed out {}",
                s.fragments, s.reassembled, ds.timed_out
            );
        }
        if !s.decode_errors.is_empty() {
            let errs: Vec<String> = s.decode_errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(w, "  decode errors: {}", errs.join(", "));
        }
        let _ = writeln!(
            w,
            "  memory: peak {} KiB of a {} KiB budget; flows evicted {}, refused {}",
            pipe.budget().peak() / 1024,
            pipe.budget().limit() / 1024,
            fs.flows_evicted,
            fs.flows_refused
        );
    }
}

/// At most `n` characters of `s`, with `…` when cut.
fn cut(s: &str, n: usize) -> String {
    let s = s.replace(['\r', '\n', '\t'], " ");
    if s.chars().count() <= n {
        return s;
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn endpoint(ip: Option<std::net::IpAddr>, port: u16, proto: &str) -> String {
    let ip = ip.map(|i| i.to_string()).unwrap_or_default();
    let has_port = proto == "TCP" || proto == "UDP";
    match (ip.contains(':'), has_port) {
        (true, true) => format!("[{ip}]:{port}"),
        (false, true) => format!("{ip}:{port}"),
        _ => ip,
    }
}
