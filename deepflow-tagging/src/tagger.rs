//! The [`Tagger`]: sources in, snapshots out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::build::build_snapshot;
use crate::cloud::CloudInventory;
use crate::dict::DictionarySet;
use crate::error::Result;
use crate::inventory::Inventory;
use crate::model::ResourceKind;
use crate::snapshot::Snapshot;

/// Tagger settings.
#[derive(Debug, Clone, Default)]
pub struct TaggerOptions {
    /// Where the SmartEncoding dictionaries live. Loaded at start (same ids after a restart),
    /// saved atomically after every build that added names. `None` keeps them in memory.
    pub dict_path: Option<PathBuf>,
    /// VPC name used for rows whose VPC is not known (e.g. the VPC the agent runs in).
    pub default_vpc: Option<String>,
}

struct Inner {
    sources: BTreeMap<String, Inventory>,
    dict: DictionarySet,
    options: TaggerOptions,
}

/// Holds the sources (inventory files, cloud inventories, Kubernetes clusters), the dictionaries,
/// and the current [`Snapshot`]. Updating a source rebuilds the snapshot; a source update that
/// fails (parse error, bad entry, dangling reference) is rejected with a clear error and the
/// previous state of every source stays in use.
///
/// Workers call [`Tagger::snapshot`] once per batch and tag rows with the returned `Arc`; the
/// snapshot is swapped atomically, so readers never block on a rebuild.
pub struct Tagger {
    inner: Mutex<Inner>,
    current: RwLock<Arc<Snapshot>>,
}

impl std::fmt::Debug for Tagger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tagger").field("snapshot", &self.snapshot().stats()).finish_non_exhaustive()
    }
}

impl Tagger {
    /// A tagger with no sources. Loads the dictionaries from `options.dict_path` if the file
    /// exists (a corrupt file is an error: ids must not silently change).
    pub fn new(options: TaggerOptions) -> Result<Self> {
        let dict = match &options.dict_path {
            Some(p) => DictionarySet::open_or_new(p)?,
            None => DictionarySet::new(),
        };
        Ok(Tagger {
            inner: Mutex::new(Inner { sources: BTreeMap::new(), dict, options }),
            current: RwLock::new(Arc::new(Snapshot::default())),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces (or adds) the source `name` and rebuilds. Sources are applied in name order;
    /// a later source overrides earlier definitions of the same resource. On error nothing
    /// changes.
    pub fn update_source(&self, name: &str, inventory: Inventory) -> Result<Arc<Snapshot>> {
        inventory.validate(name)?;
        let mut inner = self.lock();
        let previous = inner.sources.insert(name.to_string(), inventory);
        match self.rebuild(&mut inner) {
            Ok(s) => Ok(s),
            Err(e) => {
                match previous {
                    Some(p) => inner.sources.insert(name.to_string(), p),
                    None => inner.sources.remove(name),
                };
                Err(e)
            }
        }
    }

    /// Removes a source and rebuilds.
    pub fn remove_source(&self, name: &str) -> Result<Arc<Snapshot>> {
        let mut inner = self.lock();
        let previous = inner.sources.remove(name);
        match self.rebuild(&mut inner) {
            Ok(s) => Ok(s),
            Err(e) => {
                if let Some(p) = previous {
                    inner.sources.insert(name.to_string(), p);
                }
                Err(e)
            }
        }
    }

    /// Loads a static inventory file (YAML, or JSON for `.json`) as source `inventory:<path>`.
    pub fn load_inventory_file(&self, path: &Path) -> Result<Arc<Snapshot>> {
        let inv = Inventory::from_file(path)?;
        self.update_source(&format!("inventory:{}", path.display()), inv)
    }

    /// Loads a cloud inventory file as source `cloud:<path>`.
    pub fn load_cloud_file(&self, path: &Path) -> Result<Arc<Snapshot>> {
        let inv = CloudInventory::inventory_from_file(path)?;
        self.update_source(&format!("cloud:{}", path.display()), inv)
    }

    /// Names of the current sources.
    pub fn source_names(&self) -> Vec<String> {
        self.lock().sources.keys().cloned().collect()
    }

    fn rebuild(&self, inner: &mut Inner) -> Result<Arc<Snapshot>> {
        let Inner { sources, dict, options } = &mut *inner;
        let sources: Vec<(&str, &Inventory)> = sources.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let before = dict.version();
        let snap = Arc::new(build_snapshot(&sources, dict, options.default_vpc.as_deref())?);
        if let Some(p) = inner.options.dict_path.clone()
            && (inner.dict.version() != before || !p.exists())
        {
            inner.dict.save(&p)?;
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = snap.clone();
        Ok(snap)
    }

    /// The id of a resource key (see the README for key formats: `region`, `cluster/ns/pod`,
    /// ...), e.g. to find the agent's own `host_id` for eBPF rows.
    pub fn id(&self, kind: ResourceKind, key: &str) -> Option<u32> {
        self.lock().dict.id(kind, key)
    }

    /// `host_id` of a host name.
    pub fn host_id(&self, name: &str) -> Option<u32> {
        self.id(ResourceKind::Host, name)
    }

    /// `l3_epc_id` of a VPC name.
    pub fn vpc_id(&self, name: &str) -> Option<u32> {
        self.id(ResourceKind::Vpc, name)
    }

    /// The display name of an id.
    pub fn name(&self, kind: ResourceKind, id: u32) -> Option<String> {
        self.lock().dict.name(kind, id).map(str::to_string)
    }

    /// Runs `f` with the dictionaries (e.g. to export them to the store).
    pub fn with_dictionaries<R>(&self, f: impl FnOnce(&DictionarySet) -> R) -> R {
        f(&self.lock().dict)
    }

    /// Saves the dictionaries now (also done after each build that added names).
    pub fn save_dictionaries(&self) -> Result<()> {
        let mut inner = self.lock();
        match inner.options.dict_path.clone() {
            Some(p) => inner.dict.save(&p),
            None => Ok(()),
        }
    }
}
