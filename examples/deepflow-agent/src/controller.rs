//! `--controller URL`: registration and heartbeat with deepflow-server's controller
//! (`POST /v1/agents/sync`), the ingester assignment and the agent config it pushes.
//!
//! A background thread syncs every heartbeat interval (the controller sets it): it reports the
//! agent's counters, the config version it runs and the ingester it uses, and gets back the
//! ingester assigned to it (with the fallbacks in order) and the config. The [`Host`] (the
//! agent's sink, or a simulated agent of deepflow-loadgen, which includes this file) switches
//! its sender when the assignment changes and applies a new config version. An unreachable
//! controller never stops anything: the last assignment and config stay, failures are counted
//! and the next heartbeat retries.
//!
//! This file depends on serde, serde_json and ureq only, so that deepflow-loadgen can include it
//! (`#[path]`) and its simulated agents run the same client.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;

/// The settings of the agent config the controller pushes (see deepflow-server's README,
/// "Controller").
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct AgentSettings {
    /// Interfaces to capture on; `None`: the command line's.
    pub capture_interfaces: Option<Vec<String>>,
    /// L7 protocols switched on or off by name; the others are on.
    pub l7_protocols: BTreeMap<String, bool>,
    /// Keep the flow logs of 1 flow in N (0 or 1: every flow).
    pub flow_sampling: u32,
    /// WASM plugins to load; `None`: the command line's.
    pub wasm_plugins: Option<Vec<String>>,
}

/// The controller's answer to a sync.
#[derive(Debug, Clone, Deserialize)]
pub struct SyncAnswer {
    /// Every live ingester in this agent's order: the assigned one, then the fallbacks (empty
    /// when the controller knows no live ingester).
    #[serde(default)]
    pub ingesters: Vec<String>,
    /// Version of the config.
    pub config_version: u64,
    /// The config of this agent.
    #[serde(default)]
    pub config: AgentSettings,
    /// How often to sync, milliseconds.
    #[serde(default)]
    pub heartbeat_interval_ms: u64,
}

/// What the client needs from the agent it runs in.
pub trait Host: Send + Sync + 'static {
    /// Counters reported with every sync (rows sent, acknowledged, ...).
    fn counters(&self) -> BTreeMap<String, u64>;
    /// The ingester URL calls go to now.
    fn current_ingester(&self) -> Option<String>;
    /// Sends to these ingesters from now on (in order of preference).
    fn set_ingesters(&self, urls: &[String]) -> Result<(), String>;
    /// Applies config `version`; returns the settings that need a restart (and logs them).
    fn apply(&self, version: u64, cfg: &AgentSettings) -> Vec<String>;
}

/// Settings of the client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Controller base URL (`http://host:20416`).
    pub url: String,
    /// Bearer token of the controller's HTTP API.
    pub token: Option<String>,
    /// This agent's id.
    pub agent_id: String,
    /// Host name reported.
    pub hostname: String,
    /// Agent version reported.
    pub version: String,
    /// Interfaces captured on (`ebpf` for the socket tracer, none for a file).
    pub interfaces: Vec<String>,
    /// Time limit of one sync.
    pub timeout: Duration,
    /// Prefix of the log lines (`deepflow-agent`).
    pub log: String,
}

/// Counters of the client.
#[derive(Debug, Clone, Default)]
pub struct ClientStats {
    /// Syncs answered.
    pub syncs: u64,
    /// Syncs that failed (unreachable, refused, bad answer).
    pub failures: u64,
    /// Config version applied (0: none yet).
    pub config_version: u64,
    /// Settings of that version that need a restart.
    pub restart_needed: Vec<String>,
    /// The ingesters of the last assignment.
    pub ingesters: Vec<String>,
    /// Times the assignment changed (the first one included).
    pub reassignments: u64,
    /// The last error.
    pub last_error: Option<String>,
}

struct State {
    stats: ClientStats,
    interval: Duration,
    reachable: Option<bool>,
    stop: bool,
}

struct Shared {
    opts: ClientOptions,
    http: ureq::Agent,
    host: Arc<dyn Host>,
    st: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running controller client.
pub struct Controller {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Controller {
    /// Syncs once now (so that the first assignment and config apply before the agent sends
    /// anything), then keeps syncing in the background. Never fails on an unreachable
    /// controller; an invalid URL is an error.
    pub fn start(opts: ClientOptions, host: Arc<dyn Host>) -> Result<Controller, String> {
        let base = opts.url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.len() <= "http://".len() {
            return Err(format!("--controller {:?}: expected http://HOST:PORT", opts.url));
        }
        let http: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(opts.timeout)).build().into();
        let shared = Arc::new(Shared {
            opts,
            http,
            host,
            st: Mutex::new(State {
                stats: ClientStats::default(),
                interval: Duration::from_secs(5),
                reachable: None,
                stop: false,
            }),
            cv: Condvar::new(),
        });
        sync_once(&shared);
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("deepflow-controller".into())
            .spawn(move || {
                loop {
                    let mut st = sh.lock();
                    let wait = st.interval;
                    if !st.stop {
                        st = sh.cv.wait_timeout(st, wait).unwrap_or_else(|e| e.into_inner()).0;
                    }
                    if st.stop {
                        break;
                    }
                    drop(st);
                    sync_once(&sh);
                }
            })
            .map_err(|e| format!("cannot start the controller thread: {e}"))?;
        Ok(Controller { shared, thread: Some(thread) })
    }

    /// Counters so far.
    pub fn stats(&self) -> ClientStats {
        self.shared.lock().stats.clone()
    }

    /// Stops the background syncs (waits for one in progress).
    pub fn halt(&mut self) {
        self.shared.lock().stop = true;
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Syncs once now (e.g. the final counters at exit); true when the controller answered.
    pub fn sync_now(&self) -> bool {
        let before = self.stats().syncs;
        sync_once(&self.shared);
        self.stats().syncs > before
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.halt();
    }
}

fn request_body(sh: &Shared) -> Vec<u8> {
    let (applied, restart, failures, syncs) = {
        let st = sh.lock();
        (st.stats.config_version, st.stats.restart_needed.clone(), st.stats.failures, st.stats.syncs)
    };
    let mut counters = sh.host.counters();
    counters.insert("controller_syncs".into(), syncs);
    counters.insert("controller_failures".into(), failures);
    let o = &sh.opts;
    serde_json::json!({
        "agent_id": o.agent_id,
        "hostname": o.hostname,
        "version": o.version,
        "pid": std::process::id(),
        "interfaces": o.interfaces,
        "counters": counters,
        "config_version": applied,
        "restart_needed": restart,
        "ingester": sh.host.current_ingester(),
    })
    .to_string()
    .into_bytes()
}

fn call(sh: &Shared, body: &[u8]) -> Result<SyncAnswer, String> {
    let url = format!("{}/v1/agents/sync", sh.opts.url.trim_end_matches('/'));
    let mut req = sh.http.post(&url).header("Content-Type", "application/json");
    if let Some(t) = &sh.opts.token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.send(body).map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = resp.body_mut().with_config().limit(4 << 20).read_to_vec().map_err(|e| format!("{url}: {e}"))?;
    if status != 200 {
        let msg = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
        return Err(format!("{url}: HTTP {status}: {msg}"));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("{url}: bad answer: {e}"))
}

fn sync_once(sh: &Shared) {
    let body = request_body(sh);
    let log = &sh.opts.log;
    match call(sh, &body) {
        Err(e) => {
            let mut st = sh.lock();
            st.stats.failures += 1;
            if st.reachable != Some(false) {
                let keep = if st.stats.ingesters.is_empty() {
                    "no ingester assigned yet: rows wait in the buffer".to_string()
                } else {
                    format!("keeping ingester {}", st.stats.ingesters[0])
                };
                eprintln!("{log}: controller unreachable: {e} ({keep}; retrying every heartbeat)");
            }
            st.reachable = Some(false);
            st.stats.last_error = Some(e);
        }
        Ok(a) => {
            let (applied, old) = {
                let mut st = sh.lock();
                st.stats.syncs += 1;
                if st.reachable == Some(false) {
                    eprintln!("{log}: controller reachable again ({} failed syncs so far)", st.stats.failures);
                }
                st.reachable = Some(true);
                if a.heartbeat_interval_ms > 0 {
                    st.interval = Duration::from_millis(a.heartbeat_interval_ms.clamp(100, 3_600_000));
                }
                (st.stats.config_version, st.stats.ingesters.clone())
            };
            if !a.ingesters.is_empty() && a.ingesters != old {
                match sh.host.set_ingesters(&a.ingesters) {
                    Ok(()) => {
                        eprintln!(
                            "{log}: controller assigned ingester {}{}",
                            a.ingesters[0],
                            if a.ingesters.len() > 1 {
                                format!(" (fallbacks: {})", a.ingesters[1..].join(", "))
                            } else {
                                String::new()
                            }
                        );
                        let mut st = sh.lock();
                        st.stats.ingesters = a.ingesters.clone();
                        st.stats.reassignments += 1;
                    }
                    Err(e) => {
                        eprintln!("{log}: controller assignment {:?} not used: {e}", a.ingesters);
                        sh.lock().stats.last_error = Some(e);
                    }
                }
            }
            // no live ingester known to the controller (empty list): the last assignment stays
            if a.config_version != applied {
                let restart = sh.host.apply(a.config_version, &a.config);
                let mut st = sh.lock();
                st.stats.config_version = a.config_version;
                st.stats.restart_needed = restart;
            }
        }
    }
}
