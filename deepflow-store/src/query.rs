//! SQL over the stored tables with DataFusion, names joined from the SmartEncoding dictionaries.
//!
//! # What is registered
//! | name | what |
//! |---|---|
//! | `l4_flow_log_ids`, `l7_flow_log_ids`, `network_ids`, `application_ids` | the Parquet files as stored (tag ids only), listing tables with the partition columns `date` (`YYYY-MM-DD`) and `hour` (`HH`), both strings |
//! | `l4_flow_log`, `l7_flow_log`, `network`, `application` | views: every stored column plus a name column per tag id: `region_0`, `az_0`, `host_0`, `l3_epc_0`, `subnet_0`, `pod_cluster_0`, `pod_ns_0`, `pod_node_0`, `pod_group_0`, `pod_0`, `service_0`, `gprocess_0` and the same with `_1` |
//! | `log_ids`, `profile_ids`; `log`, `profile` | the same for the one-resource tables: their suffix-less ids (`pod_id`, `service_id`, ...) get the name columns `region`, `az`, `host`, `l3_epc`, `subnet`, `pod_cluster`, `pod_ns`, `pod_node`, `pod_group`, `pod`, `service`, `gprocess` |
//! | `<kind>_map` (`pod_map`, `service_map`, `l3_epc_map`, `label_key_map`, ...) | the dictionaries: `id`, `key`, `name` |
//! | `labels` | custom labels by name: `kind`, `resource_id`, `key`, `value`, `source` |
//! | `dict_get(kind, id)` | scalar function: the name of `id` in dictionary `kind` (null for 0/unknown), like ClickHouse's `dictGet` |
//! | `dict_canon(kind, id)` | scalar function: the smallest id of `kind` whose name is the name of `id` (null for 0/unknown): grouping by it is grouping by name, over integers |
//! | `label_value(kind, id, key)` | scalar function: the value of custom label `key` of resource `id` of `kind`, e.g. `label_value('pod', pod_id_1, 'app')` |
//!
//! Name columns are computed by `dict_get`, not by joins: DataFusion removes unused view columns,
//! so a query pays only for the names it uses, and `dict_get` returns an Arrow
//! `Dictionary(UInt32, Utf8)` whose keys are the stored ids themselves and whose values are the
//! dictionary's name array (shared, not copied): one pass over the ids, no string copies.
//!
//! # Pruning
//! Filters on `date`/`hour` prune whole partitions before any file is opened; filters on the
//! time columns (`start_time`, `time`) prune row groups and pages by their min/max statistics.
//! Filter on both for the fastest time-range queries:
//! `WHERE date = '2024-05-01' AND hour BETWEEN '10' AND '11' AND start_time >= ...`.
//! Name filters such as `pod_1 = 'web-1'` run as id filters (`pod_id_1 = 7`): see the
//! `name_filter` optimizer rule; `GROUP BY` on a name column (`GROUP BY service_1`) groups by
//! canonical ids and names only the groups: see the `name_group` optimizer rule.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, RecordBatch, StringArray, StringBuilder, UInt32Array,
};
use datafusion::arrow::buffer::{BooleanBuffer, NullBuffer};
use datafusion::arrow::datatypes::{DataType, Field, Schema, UInt32Type};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use datafusion::prelude::{SessionConfig, SessionContext};
use deepflow_tagging::{DictionarySet, ResourceKind, TAG_COLUMNS};

use crate::error::{Result, StoreError};
use crate::schema::Table;
use crate::storage::Storage;

/// Where the writer saves the dictionaries, relative to the root.
pub const DICT_FILE: &str = "tags/dictionaries.txt";
/// Where the writer saves the custom labels (ids), relative to the root.
pub const LABELS_FILE: &str = "tags/labels.parquet";

/// Names by id for every kind: `names[kind.index()]` has the name of id `i` at index `i`
/// (index 0 is an unused placeholder).
#[derive(Debug)]
pub(crate) struct TagNames {
    version: u64,
    names: Vec<Arc<StringArray>>,
    /// `canon[kind.index()][id]`: the smallest id with the same name as `id` (0 for id 0), so
    /// that two ids group together exactly when their names are equal.
    canon: Vec<Vec<u32>>,
    /// (kind index, resource id, key id) -> value id
    labels: HashMap<(usize, u32, u32), u32>,
    key_ids: HashMap<String, u32>,
}

impl TagNames {
    fn empty() -> Self {
        TagNames {
            version: 0,
            names: ResourceKind::ALL.iter().map(|_| Arc::new(StringArray::from(vec![""]))).collect(),
            canon: ResourceKind::ALL.iter().map(|_| vec![0]).collect(),
            labels: HashMap::new(),
            key_ids: HashMap::new(),
        }
    }

    fn from_dict(d: &DictionarySet, labels: Option<&RecordBatch>) -> Self {
        let names: Vec<Arc<StringArray>> = ResourceKind::ALL
            .iter()
            .map(|&k| {
                let dict = d.dict(k);
                let mut b = StringBuilder::with_capacity(dict.len() + 1, dict.len() * 16);
                b.append_value("");
                for (_, _, name) in dict.iter() {
                    b.append_value(name);
                }
                Arc::new(b.finish())
            })
            .collect();
        let key_ids = d.dict(ResourceKind::LabelKey).iter().map(|(id, _, name)| (name.to_string(), id)).collect();
        let mut map = HashMap::new();
        if let Some(b) = labels
            && let (Some(kind), Some(rid), Some(kid), Some(vid)) = (
                b.column(0).as_string_opt::<i32>(),
                b.column(1).as_primitive_opt::<UInt32Type>(),
                b.column(2).as_primitive_opt::<UInt32Type>(),
                b.column(3).as_primitive_opt::<UInt32Type>(),
            )
        {
            for i in 0..b.num_rows() {
                if let Some(k) = ResourceKind::from_name(kind.value(i)) {
                    map.insert((k.index(), rid.value(i), kid.value(i)), vid.value(i));
                }
            }
        }
        let canon: Vec<Vec<u32>> = names.iter().map(|n| canonical_ids(n)).collect();
        TagNames { version: d.version(), names, canon, labels: map, key_ids }
    }

    /// The canonical ids of `kind` (see `canon`).
    pub(crate) fn canon_of(&self, kind: &str) -> Option<&[u32]> {
        ResourceKind::from_name(kind).and_then(|k| self.canon.get(k.index())).map(Vec::as_slice)
    }

    /// The ids whose name in the dictionary of `kind` is `name` (several keys may share a
    /// name); `None` for an unknown kind.
    pub(crate) fn ids_of(&self, kind: &str, name: &str) -> Option<Vec<u32>> {
        let names = ResourceKind::from_name(kind).and_then(|k| self.names.get(k.index()))?;
        // index 0 is the placeholder of id 0 (unknown): never a match
        Some((1..names.len()).filter(|&i| names.value(i) == name).map(|i| i as u32).collect())
    }

    fn kind_names(&self, kind: &str) -> datafusion::error::Result<&Arc<StringArray>> {
        ResourceKind::from_name(kind)
            .and_then(|k| self.names.get(k.index()))
            .ok_or_else(|| datafusion::error::DataFusionError::Plan(format!("dict_get: unknown dictionary {kind:?}")))
    }
}

/// For names indexed by id (index 0 unused): the smallest id carrying each id's name.
fn canonical_ids(names: &StringArray) -> Vec<u32> {
    let mut first: HashMap<&str, u32> = HashMap::with_capacity(names.len());
    let mut out = Vec::with_capacity(names.len());
    out.push(0);
    for i in 1..names.len() {
        out.push(*first.entry(names.value(i)).or_insert(i as u32));
    }
    out
}

pub(crate) type Shared = Arc<RwLock<Arc<TagNames>>>;

fn scalar_str(v: &ColumnarValue, what: &str) -> datafusion::error::Result<String> {
    match v {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)),
        ) => Ok(s.clone()),
        _ => Err(datafusion::error::DataFusionError::Plan(format!("{what} must be a constant string"))),
    }
}

fn ids_of(v: &ColumnarValue, n: usize) -> datafusion::error::Result<UInt32Array> {
    u32_ids(&v.to_array(n)?)
}

fn u32_ids(arr: &ArrayRef) -> datafusion::error::Result<UInt32Array> {
    let arr = datafusion::arrow::compute::cast(arr, &DataType::UInt32)?;
    Ok(arr.as_primitive::<UInt32Type>().clone())
}

/// The type `dict_get` and `label_value` return: keys are ids, values the shared names.
pub(crate) fn name_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8))
}

/// Equality and hash of a UDF holding the engine's shared names: two are equal when they read
/// the same names.
macro_rules! udf_identity {
    ($t:ty, $name:literal) => {
        impl PartialEq for $t {
            fn eq(&self, o: &Self) -> bool {
                Arc::ptr_eq(&self.names, &o.names)
            }
        }
        impl Eq for $t {}
        impl Hash for $t {
            fn hash<H: Hasher>(&self, h: &mut H) {
                $name.hash(h);
            }
        }
    };
}

/// `dict_get(kind, id)`.
#[derive(Debug)]
pub(crate) struct DictGet {
    sig: Signature,
    names: Shared,
}

udf_identity!(DictGet, "dict_get");

impl ScalarUDFImpl for DictGet {
    fn name(&self) -> &str {
        "dict_get"
    }
    fn signature(&self) -> &Signature {
        &self.sig
    }
    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(name_type())
    }
    fn coerce_types(&self, _: &[DataType]) -> datafusion::error::Result<Vec<DataType>> {
        Ok(vec![DataType::Utf8, DataType::UInt32])
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        let [kind, ids] = args.args.as_slice() else {
            return Err(datafusion::error::DataFusionError::Plan("dict_get(kind, id) takes 2 arguments".into()));
        };
        let kind = scalar_str(kind, "dict_get's kind")?;
        let names = self.names.read().unwrap_or_else(|e| e.into_inner()).clone();
        let values = names.kind_names(&kind)?.clone();
        let len = values.len() as u32;
        let ids = ids_of(ids, args.number_rows)?;
        // ids are the dictionary keys: 0 (unknown) and ids newer than the loaded dictionary -> null;
        // when every id is known (the common case) the id array is the key array as it is
        let known = |i: u32| i != 0 && i < len;
        let keys = if ids.null_count() == 0 && ids.values().iter().all(|&i| known(i)) {
            ids
        } else {
            // the same values, with the unknown ones masked as null (no per-row builder)
            let v = ids.values();
            let valid = BooleanBuffer::collect_bool(v.len(), |j| v.get(j).is_some_and(|&i| known(i)));
            let nulls = NullBuffer::union(ids.nulls(), Some(&NullBuffer::new(valid)));
            UInt32Array::new(v.clone(), nulls)
        };
        let arr = DictionaryArray::<UInt32Type>::try_new(keys, values as ArrayRef)?;
        Ok(ColumnarValue::Array(Arc::new(arr)))
    }
}

/// `dict_canon(kind, id)`: the smallest id of dictionary `kind` with the same name as `id` (null
/// for 0 and unknown ids, where `dict_get` gives null). `id` may also be what `dict_get` returned
/// (its keys are the ids). Grouping by it groups exactly as by the name, over integers: the
/// `name_group` optimizer rule uses it for `GROUP BY` on name columns.
#[derive(Debug)]
pub(crate) struct DictCanon {
    pub(crate) sig: Signature,
    pub(crate) names: Shared,
}

udf_identity!(DictCanon, "dict_canon");

impl ScalarUDFImpl for DictCanon {
    fn name(&self) -> &str {
        "dict_canon"
    }
    fn signature(&self) -> &Signature {
        &self.sig
    }
    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::UInt32)
    }
    fn coerce_types(&self, types: &[DataType]) -> datafusion::error::Result<Vec<DataType>> {
        let id = match types.get(1) {
            Some(d @ DataType::Dictionary(k, _)) if **k == DataType::UInt32 => d.clone(),
            _ => DataType::UInt32,
        };
        Ok(vec![DataType::Utf8, id])
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        let [kind, ids] = args.args.as_slice() else {
            return Err(datafusion::error::DataFusionError::Plan("dict_canon(kind, id) takes 2 arguments".into()));
        };
        let kind = scalar_str(kind, "dict_canon's kind")?;
        let names = self.names.read().unwrap_or_else(|e| e.into_inner()).clone();
        let canon = names.canon_of(&kind).ok_or_else(|| {
            datafusion::error::DataFusionError::Plan(format!("dict_canon: unknown dictionary {kind:?}"))
        })?;
        let arr = ids.to_array(args.number_rows)?;
        let ids = match arr.as_dictionary_opt::<UInt32Type>() {
            Some(d) => d.keys().clone(),
            None => u32_ids(&arr)?,
        };
        // canonical ids, 0 for id 0 and unknown ids, which become nulls
        let values: Vec<u32> = ids.values().iter().map(|&i| canon.get(i as usize).copied().unwrap_or(0)).collect();
        let known = BooleanBuffer::collect_bool(values.len(), |j| values.get(j).is_some_and(|&c| c != 0));
        let nulls = NullBuffer::union(ids.nulls(), Some(&NullBuffer::new(known)));
        let out = UInt32Array::new(values.into(), nulls);
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `label_value(kind, id, key)`.
#[derive(Debug)]
struct LabelValue {
    sig: Signature,
    names: Shared,
}

udf_identity!(LabelValue, "label_value");

impl ScalarUDFImpl for LabelValue {
    fn name(&self) -> &str {
        "label_value"
    }
    fn signature(&self) -> &Signature {
        &self.sig
    }
    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(name_type())
    }
    fn coerce_types(&self, _: &[DataType]) -> datafusion::error::Result<Vec<DataType>> {
        Ok(vec![DataType::Utf8, DataType::UInt32, DataType::Utf8])
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        let [kind, ids, key] = args.args.as_slice() else {
            return Err(datafusion::error::DataFusionError::Plan(
                "label_value(kind, id, key) takes 3 arguments".into(),
            ));
        };
        let kind = scalar_str(kind, "label_value's kind")?;
        let key = scalar_str(key, "label_value's key")?;
        let names = self.names.read().unwrap_or_else(|e| e.into_inner()).clone();
        let k = ResourceKind::from_name(&kind)
            .ok_or_else(|| datafusion::error::DataFusionError::Plan(format!("label_value: unknown kind {kind:?}")))?;
        let values = names.kind_names(ResourceKind::LabelValue.name())?.clone();
        let ids = ids_of(ids, args.number_rows)?;
        let keys: UInt32Array = match names.key_ids.get(&key) {
            Some(&kid) => ids.iter().map(|o| o.and_then(|i| names.labels.get(&(k.index(), i, kid)).copied())).collect(),
            None => UInt32Array::new_null(ids.len()),
        };
        let arr = DictionaryArray::<UInt32Type>::try_new(keys, values as ArrayRef)?;
        Ok(ColumnarValue::Array(Arc::new(arr)))
    }
}

/// A DataFusion session over a store root. See the [module docs](self).
pub struct QueryEngine {
    storage: Storage,
    ctx: SessionContext,
    names: Shared,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").field("storage", &self.storage).finish_non_exhaustive()
    }
}

/// The name column for a tag id column: `pod_id_0` -> `pod_0`, `pod_id` -> `pod`.
pub fn name_column(id_column: &str) -> String {
    match id_column.strip_suffix("_id") {
        Some(base) => base.to_string(),
        None => id_column.replacen("_id_", "_", 1),
    }
}

/// The view expressions naming the suffix-less tag id columns of a one-resource table:
/// `dict_get('pod', pod_id) AS pod`, ... (also used for the `prometheus` samples view).
pub fn row_tag_name_columns() -> Vec<String> {
    TAG_COLUMNS
        .iter()
        .filter_map(|base| {
            kind_of_tag_column(base).map(|k| format!("dict_get('{}', {base}) AS {}", k.name(), name_column(base)))
        })
        .collect()
}

fn kind_of_tag_column(base: &str) -> Option<ResourceKind> {
    ResourceKind::ALL.into_iter().find(|k| format!("{}_id", k.name()) == base)
}

impl QueryEngine {
    /// Opens a session over `storage`: registers the tables, views and functions, and loads the
    /// dictionaries the writer saved there (if any).
    pub fn open(storage: Storage) -> Result<QueryEngine> {
        let runtime = RuntimeEnvBuilder::new()
            // files appear and disappear under us: never cache directory listings
            .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
            .build_arc()?;
        let config = SessionConfig::new().with_information_schema(true);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.register_object_store(storage.url().as_ref(), storage.store().clone());
        let names: Shared = Arc::new(RwLock::new(Arc::new(TagNames::empty())));
        let get = Arc::new(ScalarUDF::new_from_impl(DictGet {
            sig: Signature::user_defined(Volatility::Stable),
            names: names.clone(),
        }));
        ctx.register_udf(get.as_ref().clone());
        ctx.register_udf(ScalarUDF::new_from_impl(LabelValue {
            sig: Signature::user_defined(Volatility::Stable),
            names: names.clone(),
        }));
        let canon = Arc::new(ScalarUDF::new_from_impl(DictCanon {
            sig: Signature::user_defined(Volatility::Stable),
            names: names.clone(),
        }));
        ctx.register_udf(canon.as_ref().clone());
        ctx.add_optimizer_rule(Arc::new(crate::name_filter::NameFilterToIds { names: names.clone() }));
        ctx.add_optimizer_rule(Arc::new(crate::name_group::GroupByNameAsIds { canon, get }));
        let engine = QueryEngine { storage, ctx, names };
        for t in Table::ALL {
            engine.register_table(t)?;
        }
        engine.reload_tags()?;
        Ok(engine)
    }

    /// Opens a local directory.
    pub fn open_local(root: impl AsRef<std::path::Path>) -> Result<QueryEngine> {
        QueryEngine::open(Storage::local(root)?)
    }

    /// The DataFusion session (register more tables, use the DataFrame API, ...).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The storage queried.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    fn register_table(&self, t: Table) -> Result<()> {
        let rel = format!("table={}", t.name());
        if let Some(root) = self.storage.local_root() {
            let dir = root.join(&rel);
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        }
        let url = ListingTableUrl::parse(self.storage.dir_url(&rel))?;
        let opts = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![
                ("date".to_string(), DataType::Utf8),
                ("hour".to_string(), DataType::Utf8),
            ]);
        let cfg = ListingTableConfig::new(url).with_listing_options(opts).with_schema(t.schema());
        let ids = format!("{}_ids", t.name());
        self.ctx.register_table(ids.as_str(), Arc::new(ListingTable::try_new(cfg)?))?;
        let mut cols: Vec<String> = t.schema().fields().iter().map(|f| format!("\"{}\"", f.name())).collect();
        cols.push("date".into());
        cols.push("hour".into());
        for (side, on) in t.tag_sides().into_iter().enumerate() {
            if !on {
                continue;
            }
            for base in TAG_COLUMNS {
                if let Some(k) = kind_of_tag_column(base) {
                    let id_col = format!("{base}_{side}");
                    cols.push(format!("dict_get('{}', {id_col}) AS {}", k.name(), name_column(&id_col)));
                }
            }
        }
        if t.row_tags() {
            cols.extend(row_tag_name_columns());
        }
        let sql = format!("CREATE OR REPLACE VIEW {} AS SELECT {} FROM {ids}", t.name(), cols.join(", "));
        self.run_blocking(&sql)?;
        Ok(())
    }

    /// Loads the dictionaries and labels saved under the root (by a writer with a tagger) and
    /// (re)registers the `<kind>_map` and `labels` tables. Returns the dictionary version.
    pub fn reload_tags(&self) -> Result<u64> {
        let dict = if self.storage.exists(DICT_FILE)? {
            let bytes = self.storage.get(DICT_FILE)?;
            DictionarySet::decode(&bytes).map_err(|e| StoreError::Config(format!("{DICT_FILE}: {e}")))?
        } else {
            DictionarySet::new()
        };
        let labels = if self.storage.exists(LABELS_FILE)? {
            let bytes = self.storage.get(LABELS_FILE)?;
            let r =
                datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
            let batches = r.collect::<Result<Vec<_>, _>>()?;
            match batches.first() {
                Some(f) => Some(datafusion::arrow::compute::concat_batches(&f.schema(), &batches)?),
                None => None,
            }
        } else {
            None
        };
        self.set_tags(&dict, labels)
    }

    /// Uses these dictionaries (and label rows, as written by [`crate::writer::labels_batch`])
    /// for names, e.g. straight from a live [`deepflow_tagging::Tagger`]. Returns the version.
    pub fn set_tags(&self, dict: &DictionarySet, labels: Option<RecordBatch>) -> Result<u64> {
        let names = Arc::new(TagNames::from_dict(dict, labels.as_ref()));
        let map_schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::UInt32, false),
            Field::new("key", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        for k in ResourceKind::ALL {
            let d = dict.dict(k);
            let batch = RecordBatch::try_new(
                map_schema.clone(),
                vec![
                    Arc::new(UInt32Array::from_iter_values(d.iter().map(|(i, _, _)| i))),
                    Arc::new(StringArray::from_iter_values(d.iter().map(|(_, key, _)| key))),
                    Arc::new(StringArray::from_iter_values(d.iter().map(|(_, _, n)| n))),
                ],
            )?;
            let name = format!("{}_map", k.name());
            let _ = self.ctx.deregister_table(name.as_str())?;
            self.ctx
                .register_table(name.as_str(), Arc::new(MemTable::try_new(map_schema.clone(), vec![vec![batch]])?))?;
        }
        let labels = match labels {
            Some(b) => b,
            None => RecordBatch::new_empty(Arc::new(Schema::new(vec![
                Field::new("kind", DataType::Utf8, false),
                Field::new("resource_id", DataType::UInt32, false),
                Field::new("key_id", DataType::UInt32, false),
                Field::new("value_id", DataType::UInt32, false),
                Field::new("source", DataType::UInt8, false),
            ]))),
        };
        let _ = self.ctx.deregister_table("labels_ids")?;
        self.ctx.register_table("labels_ids", Arc::new(MemTable::try_new(labels.schema(), vec![vec![labels]])?))?;
        self.run_blocking(
            "CREATE OR REPLACE VIEW labels AS SELECT l.kind, l.resource_id, k.name AS key, v.name AS value, \
             CASE l.source WHEN 0 THEN 'label' WHEN 1 THEN 'annotation' WHEN 2 THEN 'cmdb' ELSE 'cloud_tag' END AS source \
             FROM labels_ids l JOIN label_key_map k ON l.key_id = k.id JOIN label_value_map v ON l.value_id = v.id",
        )?;
        let version = names.version;
        *self.names.write().unwrap_or_else(|e| e.into_inner()) = names;
        Ok(version)
    }

    /// The name of `id` in the dictionary of `kind` as loaded now; `None` for 0 (unknown) and
    /// ids the loaded dictionary does not have.
    pub fn tag_name(&self, kind: ResourceKind, id: u32) -> Option<String> {
        if id == 0 {
            return None;
        }
        let names = self.names.read().unwrap_or_else(|e| e.into_inner()).clone();
        let arr = names.names.get(kind.index())?;
        ((id as usize) < arr.len()).then(|| arr.value(id as usize).to_string())
    }

    pub(crate) fn run_blocking(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let ctx = self.ctx.clone();
        let sql = sql.to_string();
        self.storage.runtime().block_on(async move { ctx.sql(&sql).await?.collect().await }).map_err(StoreError::from)
    }

    /// Runs SQL and collects the result. Blocks on the store's own runtime: do not call it from
    /// inside an async runtime (use [`QueryEngine::query_async`] there).
    pub fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        self.run_blocking(sql)
    }

    /// Runs SQL on the caller's async runtime.
    pub async fn query_async(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.ctx.sql(sql).await?.collect().await?)
    }

    /// How many Parquet files the plan of `sql` will read, after partition pruning: a way to
    /// check that a time filter prunes what it should.
    pub fn files_scanned(&self, sql: &str) -> Result<usize> {
        use datafusion::datasource::physical_plan::FileScanConfig;
        use datafusion::datasource::source::DataSourceExec;
        use datafusion::physical_plan::ExecutionPlan;
        fn walk(p: &Arc<dyn ExecutionPlan>) -> usize {
            let here = p
                .downcast_ref::<DataSourceExec>()
                .and_then(|d| d.data_source().downcast_ref::<FileScanConfig>())
                .map_or(0, |c| c.file_groups.iter().map(|g| g.len()).sum());
            here + p.children().into_iter().map(walk).sum::<usize>()
        }
        let ctx = self.ctx.clone();
        let sql = sql.to_string();
        let plan = self.storage.runtime().block_on(async move { ctx.sql(&sql).await?.create_physical_plan().await })?;
        Ok(walk(&plan))
    }

    /// The dictionary version in use.
    pub fn tags_version(&self) -> u64 {
        self.names.read().unwrap_or_else(|e| e.into_inner()).version
    }
}
