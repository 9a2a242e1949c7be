//! `--inventory FILE`: SmartEncoding tags (AutoTagging ids) on the request rows ingested from
//! OTLP and SkyWalking, like the rows the agent writes with `--inventory`.
//!
//! The inventory (deepflow-tagging's static inventory, YAML or JSON) is loaded once at start.
//! Its dictionaries are kept in `<data>/tags/dictionaries.txt` (the file the agent and the
//! store use: ids stay the same across restarts) and its custom labels in
//! `<data>/tags/labels.parquet`, so the store's name views (`l7_flow_log` with `pod_1`,
//! `service_1`, ...) resolve the ids; the stored `*_ids` tables hold integers only.
//!
//! What is matched, per `l7_flow_log` row:
//! - `ip_0` (client) and `ip_1` (server) through the inventory's IP lookup (pod, service
//!   ClusterIP, node, host IPs, then the longest-prefix subnet), in the default VPC given by
//!   `--inventory-vpc` or the only VPC that has the address; `0.0.0.0` (no address in the span)
//!   matches nothing;
//! - the span's service name (`service.name` of OTLP spans, `app_service` of SkyWalking spans)
//!   against the inventory's services, then workloads (`pod_groups`), by their name (`name`, or
//!   `display` when set) when exactly one resource of that kind has it. The service is the
//!   server side (`_1`) of server and internal spans (`tap_side` `s-app`/`app`) and the client
//!   side (`_0`) of client spans (`c-app`). It only fills a side whose IP lookup found neither a
//!   service nor a workload, and only ids that are still 0 (the service's namespace and cluster,
//!   the workload's namespace and cluster): an address the inventory knows wins over a name.
//!
//! The tagger is set once per process ([`init`]); the writers take it through
//! [`writer_options`] and [`append_l7`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use deepflow_core::record::L7FlowLog;
use deepflow_store::{QueryEngine, StoreWriter, WriterOptions};
use deepflow_tagging::{ResourceKind, RowContext, TaggedRow, Tagger, TaggerOptions, UniversalTags};

/// Command-line options of the ingest tagging.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TagArgs {
    /// Static inventory (deepflow-tagging YAML, or JSON for `.json`): tags the `l7_flow_log`
    /// rows ingested from OTLP and SkyWalking with its resource ids (by `ip_0`/`ip_1` and by the
    /// span's service name). Loaded once at start; a bad file stops the server with the reason.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// VPC of addresses whose VPC is unknown (all ingested spans), for `--inventory`. Without
    /// it an address resolves when exactly one VPC of the inventory has it.
    #[arg(long, value_name = "NAME", requires = "inventory")]
    pub inventory_vpc: Option<String>,
}

/// The loaded inventory and its service-name index.
pub struct IngestTags {
    tagger: Arc<Tagger>,
    /// Service (then workload) name → the resource's tags; `None` when the name is ambiguous.
    by_name: HashMap<String, Option<UniversalTags>>,
}

static TAGS: OnceLock<IngestTags> = OnceLock::new();

/// Loads `--inventory` (if given) into a tagger whose dictionaries live under `data`, hands the
/// dictionaries and labels to `engine` (the name views), and makes it the process's ingest
/// tagger. Call before opening the ingest writers. An error names the file and the entry.
pub fn init(data: &Path, args: &TagArgs, engine: &QueryEngine) -> Result<(), String> {
    let Some(file) = &args.inventory else { return Ok(()) };
    let dict_path = data.join(deepflow_store::query::DICT_FILE);
    if let Some(parent) = dict_path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let tagger = Tagger::new(TaggerOptions { dict_path: Some(dict_path), default_vpc: args.inventory_vpc.clone() })
        .map_err(|e| format!("--inventory: {e}"))?;
    let snap = tagger.load_inventory_file(file).map_err(|e| format!("--inventory: {e}"))?;
    if let Some(vpc) = &args.inventory_vpc
        && tagger.vpc_id(vpc).is_none()
    {
        return Err(format!("--inventory-vpc {vpc:?}: no such VPC in {}", file.display()));
    }
    let labels = deepflow_store::writer::labels_batch(&snap).map_err(|e| e.to_string())?;
    tagger
        .with_dictionaries(|d| engine.set_tags(d, Some(labels)))
        .map_err(|e| format!("--inventory: loading the names into the query engine: {e}"))?;
    let mut by_name: HashMap<String, Option<UniversalTags>> = HashMap::new();
    for kind in [ResourceKind::Service, ResourceKind::PodGroup] {
        let mut of_kind: HashMap<&str, Option<UniversalTags>> = HashMap::new();
        for r in snap.resources_of(kind) {
            of_kind.entry(r.name.as_str()).and_modify(|t| *t = None).or_insert(Some(r.tags));
        }
        for (name, t) in of_kind {
            // a service name wins over a workload of the same name
            by_name.entry(name.to_string()).or_insert(t);
        }
    }
    let st = snap.stats();
    eprintln!(
        "deepflow-server: tagging OTLP/SkyWalking spans with {} ({} resources, {} IPs, {} networks, {} labels)",
        file.display(),
        st.resources,
        st.exact_ips,
        st.networks,
        st.labels
    );
    TAGS.set(IngestTags { tagger: Arc::new(tagger), by_name })
        .map_err(|_| "the ingest tagger was already set".to_string())
}

/// `opts` with the ingest tagger (when `--inventory` was given): rows appended are tagged by
/// their IPs, and the dictionaries and labels are saved next to the data at each flush.
pub fn writer_options(opts: WriterOptions) -> WriterOptions {
    match TAGS.get() {
        Some(t) => opts.with_tagger(t.tagger.clone()),
        None => opts,
    }
}

/// Tags of one span row: IP lookup of both sides, then the service name (see the module docs).
pub fn tag_l7(t: &IngestTags, snap: &deepflow_tagging::Snapshot, row: &L7FlowLog) -> (UniversalTags, UniversalTags) {
    let (mut c, mut s) = snap.tag_l7(row, &RowContext::default());
    let name = row.attribute("service.name").or_else(|| row.attribute("app_service"));
    if let Some(Some(named)) = name.and_then(|n| t.by_name.get(n)) {
        let side = if row.tap_side == "c-app" { &mut c } else { &mut s };
        if side.service_id == 0 && side.pod_group_id == 0 {
            side.fill_from(named);
        }
    }
    (c, s)
}

/// Appends span rows to `w`, tagged as the module docs say when `--inventory` was given
/// (untagged otherwise).
pub fn append_l7(w: &mut StoreWriter, rows: Vec<L7FlowLog>) -> deepflow_store::Result<()> {
    let Some(t) = TAGS.get() else { return w.extend(rows) };
    let snap = t.tagger.snapshot();
    for row in rows {
        let (tags_0, tags_1) = tag_l7(t, &snap, &row);
        w.append_tagged(TaggedRow { row, tags_0, tags_1 })?;
    }
    Ok(())
}
