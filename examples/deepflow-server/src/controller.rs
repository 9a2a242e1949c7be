//! The controller: agent registration and heartbeat, the agent config document, and the
//! assignment of agents to ingesters (server processes that serve agent gRPC ingest over one
//! shared store).
//!
//! HTTP endpoints (on the server's HTTP API, behind the same `--token`):
//! - `POST /v1/agents/sync`: registration and heartbeat in one call; answers with the ingester
//!   assigned to the agent (and the fallbacks in order), the agent config and its version, and
//!   the heartbeat interval;
//! - `GET /v1/agents`: the registry (first/last seen, alive/lost, assignment, config version
//!   acknowledged, counters);
//! - `GET /v1/ingesters`: the ingesters found under `<data>/_cluster/ingesters/`;
//! - `GET /v1/agents/config`, `PUT /v1/agents/config`: the config document (validated on PUT:
//!   400 with a message and the previous document kept).
//!
//! Membership: every server that serves agent gRPC ingest writes `<data>/_cluster/ingesters/
//! <id>.json` (its advertised gRPC URL, id, pid, timestamp) every second (temp file + rename)
//! and removes it on a clean shutdown; an ingester whose file is older than `--ingester-ttl-ms`
//! is gone. The store only reads `table=<name>/` directories, so `_cluster` is never a table.
//!
//! Assignment: rendezvous (highest random weight) hashing of the agent id over the live
//! ingester ids. An ingester that goes away moves only its own agents; a new one takes about
//! 1/n of them. The answer lists every live ingester in the agent's rendezvous order: the first
//! is the assignment, the others are the agent's failover order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use deepflow_core::record::L7Protocol;
use serde::{Deserialize, Serialize};

use crate::json_error;

/// Directory (under the store) of the ingester heartbeat files.
pub const INGESTERS_DIR: &str = "_cluster/ingesters";
/// Where the last accepted config document is kept (under the store).
pub const CONFIG_FILE: &str = "_cluster/agent-config.json";
/// Agents kept in the registry at most (a sync of a new agent beyond it: 429).
const MAX_AGENTS: usize = 100_000;
/// Counters kept per agent at most.
const MAX_COUNTERS: usize = 64;

/// Command-line options of the controller.
#[derive(clap::Args, Debug, Clone)]
pub struct ControllerArgs {
    /// Agent config document pushed to agents (YAML or JSON; see README "Controller"). Without
    /// it, the last one accepted by `PUT /v1/agents/config` (kept in <data>/_cluster/) is used,
    /// or an empty one.
    #[arg(long, value_name = "FILE")]
    pub agent_config: Option<PathBuf>,
    /// Heartbeat interval told to agents, milliseconds; an agent is `lost` after 3 missed.
    #[arg(long, default_value_t = 5000)]
    pub agent_heartbeat_ms: u64,
    /// This server's ingester id in <data>/_cluster/ingesters/ [default: <hostname>-<gRPC port>].
    #[arg(long)]
    pub ingester_id: Option<String>,
    /// The agent gRPC URL other processes should use for this server [default:
    /// http://<the --grpc-listen address> (127.0.0.1 for an unspecified address)].
    #[arg(long, value_name = "URL")]
    pub advertise_grpc: Option<String>,
    /// An ingester whose heartbeat file is older than this is considered gone, milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub ingester_ttl_ms: u64,
}

// ---------- the config document ----------

/// Settings of an agent (all optional: absent = the agent's own command line / default).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Interfaces to capture on (a restart of the agent applies them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_interfaces: Option<Vec<String>>,
    /// L7 protocols switched on (`true`) or off (`false`) by lowercase name; unnamed ones stay
    /// on. Per-agent entries override the default section's entry of the same protocol.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub l7_protocols: BTreeMap<String, bool>,
    /// Keep the flow logs (l4_flow_log, l7_flow_log) of 1 flow in N, chosen by a hash of the
    /// flow id; metrics still count every flow. 1 = every flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_sampling: Option<u32>,
    /// WASM plugin files the agent loads (a restart of the agent applies them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm_plugins: Option<Vec<String>>,
}

/// The document of `GET/PUT /v1/agents/config`: a default section and per-agent overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigDoc {
    /// Settings of every agent.
    #[serde(default)]
    pub default: Settings,
    /// Per-agent-id overrides (a field set here replaces the default's).
    #[serde(default)]
    pub agents: BTreeMap<String, Settings>,
}

/// What an agent receives: its settings with the override applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Effective {
    /// `null`: the agent's command line.
    pub capture_interfaces: Option<Vec<String>>,
    /// Protocols switched explicitly; the others are on.
    pub l7_protocols: BTreeMap<String, bool>,
    /// 1 in N flows' logs kept.
    pub flow_sampling: u32,
    /// `null`: the agent's command line.
    pub wasm_plugins: Option<Vec<String>>,
}

impl Settings {
    fn validate(&self, at: &str) -> Result<(), String> {
        if let Some(ifs) = &self.capture_interfaces {
            if ifs.len() > 64 {
                return Err(format!("{at}.capture_interfaces: at most 64 interfaces"));
            }
            for i in ifs {
                if i.is_empty() || i.len() > 15 || i.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/') {
                    return Err(format!(
                        "{at}.capture_interfaces: {i:?} is not an interface name (1-15 characters, no spaces or '/')"
                    ));
                }
            }
        }
        for name in self.l7_protocols.keys() {
            match L7Protocol::from_name(name) {
                Some(p) if p != L7Protocol::Unknown && p.name() == name.as_str() => {}
                Some(p) if p != L7Protocol::Unknown => {
                    return Err(format!("{at}.l7_protocols: write {:?} as {:?}", name, p.name()));
                }
                _ => {
                    let known: Vec<&str> =
                        L7Protocol::ALL.iter().filter(|p| **p != L7Protocol::Unknown).map(|p| p.name()).collect();
                    return Err(format!("{at}.l7_protocols: unknown protocol {name:?} (known: {})", known.join(", ")));
                }
            }
        }
        if let Some(n) = self.flow_sampling
            && !(1..=1_000_000).contains(&n)
        {
            return Err(format!("{at}.flow_sampling: {n} is out of range (1 = every flow ... 1000000)"));
        }
        if let Some(ps) = &self.wasm_plugins {
            if ps.len() > 64 {
                return Err(format!("{at}.wasm_plugins: at most 64 plugins"));
            }
            for p in ps {
                if p.trim().is_empty() || p.contains('\0') {
                    return Err(format!("{at}.wasm_plugins: {p:?} is not a file path"));
                }
            }
        }
        Ok(())
    }
}

impl ConfigDoc {
    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.default.validate("default")?;
        if self.agents.len() > MAX_AGENTS {
            return Err(format!("agents: at most {MAX_AGENTS} overrides"));
        }
        for (id, s) in &self.agents {
            check_agent_id(id).map_err(|e| format!("agents: {e}"))?;
            s.validate(&format!("agents.{id}"))?;
        }
        Ok(())
    }

    /// The settings of `agent_id`.
    pub fn effective(&self, agent_id: &str) -> Effective {
        let d = &self.default;
        let o = self.agents.get(agent_id);
        let mut l7 = d.l7_protocols.clone();
        if let Some(o) = o {
            l7.extend(o.l7_protocols.iter().map(|(k, v)| (k.clone(), *v)));
        }
        Effective {
            capture_interfaces: o.and_then(|o| o.capture_interfaces.clone()).or_else(|| d.capture_interfaces.clone()),
            l7_protocols: l7,
            flow_sampling: o.and_then(|o| o.flow_sampling).or(d.flow_sampling).unwrap_or(1),
            wasm_plugins: o.and_then(|o| o.wasm_plugins.clone()).or_else(|| d.wasm_plugins.clone()),
        }
    }

    /// Parses a document: JSON, or YAML when `yaml` (YAML also reads JSON).
    pub fn parse(body: &[u8], yaml: bool) -> Result<ConfigDoc, String> {
        let doc: ConfigDoc = if yaml {
            if body.iter().all(|b| b.is_ascii_whitespace()) {
                ConfigDoc::default()
            } else {
                serde_yaml_ng::from_slice(body).map_err(|e| format!("invalid YAML config: {e}"))?
            }
        } else {
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON config: {e}"))?
        };
        doc.validate()?;
        Ok(doc)
    }

    fn hash(&self) -> String {
        let canon = serde_json::to_vec(self).unwrap_or_default();
        format!("{:016x}", fnv1a(&canon))
    }
}

fn check_agent_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
        return Err(format!("agent id {id:?}: 1-128 printable characters"));
    }
    Ok(())
}

// ---------- hashing ----------

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| (h ^ u64::from(*x)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The rendezvous weight of `agent` on `ingester`: FNV-1a of both, through a 64-bit finalizer
/// (murmur3's fmix64) so that close ids give unrelated weights.
fn weight(agent: &str, ingester: &str) -> u64 {
    let mut h = fnv1a(agent.as_bytes()) ^ fnv1a(ingester.as_bytes()).rotate_left(17);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The live ingesters in `agent`'s rendezvous order (highest weight first; ties by id).
fn rendezvous<'a>(agent: &str, live: &'a [Ingester]) -> Vec<&'a Ingester> {
    let mut v: Vec<&Ingester> = live.iter().collect();
    v.sort_by(|a, b| weight(agent, &b.id).cmp(&weight(agent, &a.id)).then_with(|| a.id.cmp(&b.id)));
    v
}

// ---------- ingester membership ----------

/// One ingester heartbeat file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ingester {
    /// Ingester id (file name without `.json`).
    pub id: String,
    /// Agent gRPC URL (`http://host:port`).
    pub grpc: String,
    /// The server's HTTP address, for operators.
    #[serde(default)]
    pub http: String,
    /// Process id.
    #[serde(default)]
    pub pid: u32,
    /// When the process started, ms since the epoch.
    #[serde(default)]
    pub started_ms: u64,
    /// Last heartbeat, ms since the epoch.
    pub updated_ms: u64,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Reads every heartbeat file (unreadable or torn ones are skipped: a writer renames whole
/// files into place, so a bad one is junk).
fn read_ingesters(data: &Path) -> Vec<Ingester> {
    let dir = data.join(INGESTERS_DIR);
    let Ok(rd) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut v: Vec<Ingester> = rd
        .flatten()
        .filter(|e| {
            e.file_name().to_string_lossy().ends_with(".json") && !e.file_name().to_string_lossy().starts_with('.')
        })
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<Ingester>(&b).ok())
        .collect();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

/// This process's membership: writes its heartbeat file every second until [`Membership::leave`].
pub struct Membership {
    path: PathBuf,
    me: Mutex<Ingester>,
    left: std::sync::atomic::AtomicBool,
}

impl Membership {
    /// Announces the ingester at `grpc` (the bound agent gRPC address) in `data`.
    pub fn join(
        data: &Path,
        args: &ControllerArgs,
        grpc: SocketAddr,
        http: SocketAddr,
    ) -> Result<Arc<Membership>, String> {
        let ip = if grpc.ip().is_unspecified() { "127.0.0.1".to_string() } else { grpc.ip().to_string() };
        let host = if grpc.is_ipv6() && !grpc.ip().is_unspecified() { format!("[{ip}]") } else { ip };
        let url = args.advertise_grpc.clone().unwrap_or_else(|| format!("http://{host}:{}", grpc.port()));
        let id = args.ingester_id.clone().unwrap_or_else(|| {
            let h = deepflow_store::transport::default_agent_id();
            format!("{h}-{}", grpc.port())
        });
        if id.is_empty() || id.len() > 128 || id.starts_with('.') || id.contains(['/', '\\', '\0']) {
            return Err(format!("--ingester-id {id:?}: 1-128 characters, no '/', not starting with '.'"));
        }
        let now = now_ms();
        let me = Ingester {
            id: id.clone(),
            grpc: url,
            http: http.to_string(),
            pid: std::process::id(),
            started_ms: now,
            updated_ms: now,
        };
        let m = Arc::new(Membership {
            path: data.join(INGESTERS_DIR).join(format!("{id}.json")),
            me: Mutex::new(me),
            left: Default::default(),
        });
        m.beat().map_err(|e| format!("{}: {e}", m.path.display()))?;
        eprintln!("deepflow-server: ingester {id} announced in {}", m.path.display());
        Ok(m)
    }

    fn me(&self) -> MutexGuard<'_, Ingester> {
        self.me.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the heartbeat file now (nothing after [`Membership::leave`]).
    pub fn beat(&self) -> std::io::Result<()> {
        // the write happens under the lock, so that `leave` cannot come between
        let mut me = self.me();
        if self.left.load(Ordering::SeqCst) {
            return Ok(());
        }
        me.updated_ms = now_ms();
        let body = serde_json::to_vec(&*me).unwrap_or_default();
        write_atomic(&self.path, &body)
    }

    /// Removes the heartbeat file (clean shutdown).
    pub fn leave(&self) {
        // under the lock: a beat in progress finishes first, later ones write nothing
        let _me = self.me();
        self.left.store(true, Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.path);
    }

    /// Beats every second in the background (a failed write is logged once per error kind).
    pub fn spawn(self: &Arc<Self>) {
        let m = self.clone();
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(Duration::from_secs(1));
            let mut failing = false;
            loop {
                iv.tick().await;
                let m2 = m.clone();
                let res = tokio::task::spawn_blocking(move || m2.beat()).await;
                match res {
                    Ok(Ok(())) => failing = false,
                    Ok(Err(e)) if !failing => {
                        failing = true;
                        eprintln!("deepflow-server: ingester heartbeat {}: {e}", m.path.display());
                    }
                    _ => {}
                }
            }
        });
    }
}

// ---------- the registry ----------

/// What an agent sends in `POST /v1/agents/sync`.
#[derive(Debug, Clone, Deserialize)]
pub struct SyncRequest {
    /// The agent's id (unique per agent).
    pub agent_id: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub pid: u32,
    /// Interfaces it captures on (`ebpf` for the socket tracer, empty for a file).
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Its counters (rows sent/acked/spilled, ...).
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    /// The config version it runs (0: none yet).
    #[serde(default)]
    pub config_version: u64,
    /// Settings of that version it could not apply without a restart.
    #[serde(default)]
    pub restart_needed: Vec<String>,
    /// The ingester URL it sends to now.
    #[serde(default)]
    pub ingester: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct AgentEntry {
    agent_id: String,
    hostname: String,
    version: String,
    pid: u32,
    interfaces: Vec<String>,
    first_seen_ms: u64,
    last_seen_ms: u64,
    syncs: u64,
    /// The ingester the last answer assigned.
    assigned_ingester: Option<String>,
    /// The one the agent said it uses.
    current_ingester: Option<String>,
    config_version: u64,
    restart_needed: Vec<String>,
    counters: BTreeMap<String, u64>,
}

struct Inner {
    agents: BTreeMap<String, AgentEntry>,
    doc: ConfigDoc,
    version: u64,
    hash: String,
    ingesters: Vec<Ingester>,
    ingesters_read_ms: u64,
}

/// Counters of the controller.
#[derive(Default)]
struct Counters {
    syncs: AtomicU64,
    bad_requests: AtomicU64,
    config_updates: AtomicU64,
    config_rejected: AtomicU64,
}

/// The controller state of one server process.
pub struct Controller {
    data: PathBuf,
    heartbeat: Duration,
    ttl: Duration,
    inner: Mutex<Inner>,
    counters: Counters,
    membership: Mutex<Option<Arc<Membership>>>,
}

impl Controller {
    /// Loads the config document (`--agent-config`, else the last accepted one in the store,
    /// else empty).
    pub fn open(data: &Path, args: &ControllerArgs) -> Result<Arc<Controller>, String> {
        let (doc, version) = match &args.agent_config {
            Some(p) => {
                let body = std::fs::read(p).map_err(|e| format!("--agent-config {}: {e}", p.display()))?;
                let doc = ConfigDoc::parse(&body, true).map_err(|e| format!("--agent-config {}: {e}", p.display()))?;
                (doc, 1)
            }
            None => match std::fs::read(data.join(CONFIG_FILE)) {
                Ok(b) => {
                    #[derive(Deserialize)]
                    struct Saved {
                        version: u64,
                        config: ConfigDoc,
                    }
                    match serde_json::from_slice::<Saved>(&b) {
                        Ok(s) if s.config.validate().is_ok() => (s.config, s.version.max(1)),
                        _ => {
                            eprintln!(
                                "deepflow-server: warning: {} is not a valid agent config; starting empty",
                                CONFIG_FILE
                            );
                            (ConfigDoc::default(), 1)
                        }
                    }
                }
                Err(_) => (ConfigDoc::default(), 1),
            },
        };
        let hash = doc.hash();
        Ok(Arc::new(Controller {
            data: data.to_path_buf(),
            heartbeat: Duration::from_millis(args.agent_heartbeat_ms.clamp(100, 3_600_000)),
            ttl: Duration::from_millis(args.ingester_ttl_ms.max(100)),
            inner: Mutex::new(Inner {
                agents: BTreeMap::new(),
                doc,
                version,
                hash,
                ingesters: Vec::new(),
                ingesters_read_ms: 0,
            }),
            counters: Counters::default(),
            membership: Mutex::new(None),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers this process's membership (for `self` in `GET /v1/ingesters` and `leave`).
    pub fn set_membership(&self, m: Arc<Membership>) {
        *self.membership.lock().unwrap_or_else(|e| e.into_inner()) = Some(m);
    }

    /// Removes this process's heartbeat file (clean shutdown).
    pub fn leave(&self) {
        if let Some(m) = self.membership.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            m.leave();
        }
    }

    /// The heartbeat files, re-read at most every 500 ms.
    fn ingesters(&self, inner: &mut Inner, now: u64) -> Vec<Ingester> {
        if now.saturating_sub(inner.ingesters_read_ms) >= 500 || inner.ingesters_read_ms > now {
            inner.ingesters = read_ingesters(&self.data);
            inner.ingesters_read_ms = now;
        }
        inner.ingesters.clone()
    }

    fn live(&self, all: &[Ingester], now: u64) -> Vec<Ingester> {
        let ttl = self.ttl.as_millis() as u64;
        all.iter().filter(|i| now.saturating_sub(i.updated_ms) < ttl && i.updated_ms <= now + ttl).cloned().collect()
    }

    fn sync(&self, req: SyncRequest) -> Result<serde_json::Value, (StatusCode, String)> {
        check_agent_id(&req.agent_id).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        if req.counters.len() > MAX_COUNTERS || req.counters.keys().any(|k| k.is_empty() || k.len() > 64) {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("counters: at most {MAX_COUNTERS}, names of 1-64 characters"),
            ));
        }
        if req.interfaces.len() > 64 || req.restart_needed.len() > 16 {
            return Err((StatusCode::BAD_REQUEST, "interfaces: at most 64; restart_needed: at most 16".into()));
        }
        let clip = |s: &str, n: usize| s.chars().take(n).collect::<String>();
        let now = now_ms();
        let mut inner = self.lock();
        let all = self.ingesters(&mut inner, now);
        let live = self.live(&all, now);
        let order = rendezvous(&req.agent_id, &live);
        let urls: Vec<String> = order.iter().map(|i| i.grpc.clone()).collect();
        let assigned = urls.first().cloned();
        if !inner.agents.contains_key(&req.agent_id) && inner.agents.len() >= MAX_AGENTS {
            return Err((StatusCode::TOO_MANY_REQUESTS, format!("the registry is full ({MAX_AGENTS} agents)")));
        }
        let version = inner.version;
        let hash = inner.hash.clone();
        let effective = inner.doc.effective(&req.agent_id);
        let e = inner.agents.entry(req.agent_id.clone()).or_insert_with(|| AgentEntry {
            agent_id: req.agent_id.clone(),
            hostname: String::new(),
            version: String::new(),
            pid: 0,
            interfaces: Vec::new(),
            first_seen_ms: now,
            last_seen_ms: now,
            syncs: 0,
            assigned_ingester: None,
            current_ingester: None,
            config_version: 0,
            restart_needed: Vec::new(),
            counters: BTreeMap::new(),
        });
        e.hostname = clip(&req.hostname, 256);
        e.version = clip(&req.version, 64);
        e.pid = req.pid;
        e.interfaces = req.interfaces.iter().map(|s| clip(s, 64)).collect();
        e.last_seen_ms = now;
        e.syncs += 1;
        if assigned.is_some() {
            e.assigned_ingester.clone_from(&assigned);
        }
        e.current_ingester = req.ingester.as_deref().map(|s| clip(s, 256));
        e.config_version = req.config_version;
        e.restart_needed = req.restart_needed.iter().map(|s| clip(s, 64)).collect();
        e.counters = req.counters;
        drop(inner);
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(serde_json::json!({
            "status": "success",
            "agent_id": req.agent_id,
            "ingester": assigned,
            "ingesters": urls,
            "fallbacks": urls.iter().skip(1).collect::<Vec<_>>(),
            "config_version": version,
            "config_hash": hash,
            "config": effective,
            "heartbeat_interval_ms": self.heartbeat.as_millis() as u64,
            "server_time_ms": now,
        }))
    }

    fn agents_json(&self) -> serde_json::Value {
        let now = now_ms();
        let lost_after = 3 * self.heartbeat.as_millis() as u64;
        let inner = self.lock();
        let version = inner.version;
        let agents: Vec<serde_json::Value> = inner
            .agents
            .values()
            .map(|a| {
                let mut v = serde_json::to_value(a).unwrap_or_default();
                let age = now.saturating_sub(a.last_seen_ms);
                if let Some(o) = v.as_object_mut() {
                    o.insert("status".into(), (if age > lost_after { "lost" } else { "alive" }).into());
                    o.insert("last_seen_age_ms".into(), age.into());
                    o.insert("config_current".into(), (a.config_version == version).into());
                }
                v
            })
            .collect();
        let c = &self.counters;
        let counters = serde_json::json!({
            "syncs": c.syncs.load(Ordering::Relaxed),
            "bad_requests": c.bad_requests.load(Ordering::Relaxed),
            "config_updates": c.config_updates.load(Ordering::Relaxed),
            "config_rejected": c.config_rejected.load(Ordering::Relaxed),
        });
        serde_json::json!({"status": "success", "config_version": version, "controller": counters, "data": agents})
    }

    fn ingesters_json(&self) -> serde_json::Value {
        let now = now_ms();
        let mut inner = self.lock();
        let all = self.ingesters(&mut inner, now);
        let live = self.live(&all, now);
        // agents (alive ones) per ingester by their current assignment
        let lost_after = 3 * self.heartbeat.as_millis() as u64;
        let mut assigned: BTreeMap<String, u64> = BTreeMap::new();
        for a in inner.agents.values().filter(|a| now.saturating_sub(a.last_seen_ms) <= lost_after) {
            if let Some(i) = rendezvous(&a.agent_id, &live).first() {
                *assigned.entry(i.id.clone()).or_default() += 1;
            }
        }
        drop(inner);
        let me = self.membership.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|m| m.me().id.clone());
        let list: Vec<serde_json::Value> = all
            .iter()
            .map(|i| {
                let alive = live.iter().any(|l| l.id == i.id);
                serde_json::json!({
                    "id": i.id,
                    "grpc": i.grpc,
                    "http": i.http,
                    "pid": i.pid,
                    "started_ms": i.started_ms,
                    "updated_ms": i.updated_ms,
                    "age_ms": now.saturating_sub(i.updated_ms),
                    "status": if alive { "alive" } else { "gone" },
                    "agents": assigned.get(&i.id).copied().unwrap_or(0),
                    "self": me.as_deref() == Some(i.id.as_str()),
                })
            })
            .collect();
        serde_json::json!({"status": "success", "ttl_ms": self.ttl.as_millis() as u64, "data": list})
    }

    fn config_json(&self) -> serde_json::Value {
        let inner = self.lock();
        serde_json::json!({"status": "success", "version": inner.version, "hash": inner.hash, "config": inner.doc})
    }

    /// Replaces the document (already validated); a new version unless it is the same one.
    fn put_config(&self, doc: ConfigDoc) -> Result<serde_json::Value, String> {
        let hash = doc.hash();
        let mut inner = self.lock();
        let changed = hash != inner.hash;
        if changed {
            let version = inner.version + 1;
            let saved = serde_json::json!({"version": version, "config": doc});
            // kept for a restart (and a server started later over the same store)
            write_atomic(&self.data.join(CONFIG_FILE), saved.to_string().as_bytes())
                .map_err(|e| format!("cannot save the config in {}: {e}", self.data.join(CONFIG_FILE).display()))?;
            inner.doc = doc;
            inner.hash = hash;
            inner.version = version;
            self.counters.config_updates.fetch_add(1, Ordering::Relaxed);
            eprintln!("deepflow-server: agent config version {version} ({})", inner.hash);
        }
        Ok(serde_json::json!({"status": "success", "version": inner.version, "hash": inner.hash, "changed": changed}))
    }
}

// ---------- HTTP ----------

type St = State<Arc<Controller>>;

/// The controller's routes (merged into the server's app, behind its auth layer).
pub fn routes<S: Clone + Send + Sync + 'static>(ctl: Arc<Controller>) -> Router<S> {
    Router::new()
        .route("/v1/agents/sync", post(sync_handler))
        .route("/v1/agents", get(agents_handler))
        .route("/v1/ingesters", get(ingesters_handler))
        .route("/v1/agents/config", get(get_config).put(put_config))
        .with_state(ctl)
}

fn ok_json(v: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

async fn sync_handler(State(ctl): St, body: Bytes) -> Response {
    let req: SyncRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            ctl.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            return json_error(StatusCode::BAD_REQUEST, "bad_data", &format!("invalid sync request: {e}"));
        }
    };
    // reads the heartbeat directory now and then: off the async threads
    let c = ctl.clone();
    match tokio::task::spawn_blocking(move || c.sync(req)).await {
        Ok(Ok(v)) => ok_json(v),
        Ok(Err((code, msg))) => {
            ctl.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            json_error(code, "bad_data", &msg)
        }
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()),
    }
}

async fn agents_handler(State(ctl): St) -> Response {
    ok_json(ctl.agents_json())
}

async fn ingesters_handler(State(ctl): St) -> Response {
    match tokio::task::spawn_blocking(move || ctl.ingesters_json()).await {
        Ok(v) => ok_json(v),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()),
    }
}

async fn get_config(State(ctl): St) -> Response {
    ok_json(ctl.config_json())
}

async fn put_config(State(ctl): St, headers: HeaderMap, body: Bytes) -> Response {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let yaml = ct.contains("yaml");
    let doc = match ConfigDoc::parse(&body, yaml) {
        Ok(d) => d,
        Err(e) => {
            ctl.counters.config_rejected.fetch_add(1, Ordering::Relaxed);
            return json_error(StatusCode::BAD_REQUEST, "bad_data", &format!("{e} (the previous config is kept)"));
        }
    };
    match tokio::task::spawn_blocking(move || ctl.put_config(doc)).await {
        Ok(Ok(v)) => ok_json(v),
        Ok(Err(e)) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ing(id: &str) -> Ingester {
        Ingester {
            id: id.into(),
            grpc: format!("http://{id}"),
            http: String::new(),
            pid: 0,
            started_ms: 0,
            updated_ms: 0,
        }
    }

    /// Removing an ingester moves only its agents; adding one takes about 1/n of them.
    #[test]
    fn rendezvous_moves_only_the_agents_of_the_ingester_gone() {
        let three: Vec<Ingester> = ["a", "b", "c"].map(ing).into();
        let two: Vec<Ingester> = ["a", "c"].map(ing).into();
        let four: Vec<Ingester> = ["a", "b", "c", "d"].map(ing).into();
        let agents: Vec<String> = (0..3000).map(|i| format!("agent-{i}")).collect();
        let first = |a: &str, l: &[Ingester]| rendezvous(a, l)[0].id.clone();
        let mut per = BTreeMap::new();
        let (mut moved_on_remove, mut moved_on_add) = (0, 0);
        for a in &agents {
            let before = first(a, &three);
            *per.entry(before.clone()).or_insert(0) += 1;
            let after = first(a, &two);
            if before != "b" {
                assert_eq!(before, after, "{a} moved although its ingester stayed");
            } else {
                moved_on_remove += 1;
                // the new one is the old first fallback
                assert_eq!(after, rendezvous(a, &three)[1].id);
            }
            if first(a, &four) != before {
                assert_eq!(first(a, &four), "d");
                moved_on_add += 1;
            }
        }
        // balanced within a loose bound (expected 1000 each)
        assert!(per.values().all(|n| (800..1200).contains(n)), "{per:?}");
        assert_eq!(moved_on_remove, per["b"]);
        assert!((600..900).contains(&moved_on_add), "{moved_on_add}");
        // every ingester appears once in the order
        assert_eq!(rendezvous("x", &four).len(), 4);
    }

    #[test]
    fn config_validation_and_overrides() {
        let doc = ConfigDoc::parse(
            br#"
default:
  l7_protocols: {http: true, tls: false}
  flow_sampling: 4
agents:
  edge-1:
    l7_protocols: {tls: true, dns: false}
    capture_interfaces: [eth0]
"#,
            true,
        )
        .unwrap();
        let e = doc.effective("edge-1");
        assert_eq!(e.flow_sampling, 4);
        assert_eq!(e.capture_interfaces, Some(vec!["eth0".to_string()]));
        assert_eq!(e.l7_protocols.get("tls"), Some(&true));
        assert_eq!(e.l7_protocols.get("dns"), Some(&false));
        assert_eq!(doc.effective("other").l7_protocols.get("tls"), Some(&false));
        assert_eq!(doc.effective("other").capture_interfaces, None);
        for (bad, want) in [
            (r#"{"default": {"l7_protocols": {"nope": true}}}"#, "unknown protocol"),
            (r#"{"default": {"flow_sampling": 0}}"#, "flow_sampling"),
            (r#"{"default": {"capture_interfaces": ["a b"]}}"#, "interface"),
            (r#"{"default": {"sampling": 2}}"#, "unknown field"),
            (r#"{"agents": {"": {}}}"#, "agent id"),
            (r#"{"default": {"l7_protocols": {"HTTP": false}}}"#, "write"),
            ("[1,2", "invalid JSON"),
        ] {
            let e = ConfigDoc::parse(bad.as_bytes(), false).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
        assert_eq!(ConfigDoc::parse(b"", true).unwrap(), ConfigDoc::default());
    }
}
