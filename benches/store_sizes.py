"""Bytes per row of the same l7_flow_log rows stored four ways: our Parquet files (tag ids),
the same rows with every tag as its name (Parquet, from `store_ingest N DIR red`), and both
loaded into a ClickHouse MergeTree table (chdb: the ClickHouse engine in-process, default LZ4
codec), which is what DeepFlow stores them in.

Usage: /opt/deepflow-venv/bin/python benches/store_sizes.py IDS_DIR NAMES_DIR [LABELS_DIR]
  IDS_DIR    the table directory of the store (DIR/red/table=l7_flow_log)
  NAMES_DIR  the pre-joined copy (DIR/red/names)
  LABELS_DIR the copy with names and the 20 labels of each side's pod as one `k=v,...` string
             per side (DIR/red/names_labels, from `store_ingest N DIR sizes`): the issue's
             "every tag name and label as strings in the row"
"""
import glob
import shutil
import sys
import tempfile

import pyarrow.parquet as pq
from chdb import session

TAGS = ["region", "az", "host", "l3_epc", "subnet", "pod_cluster", "pod_ns", "pod_node", "pod_group", "pod",
        "service", "gprocess"]
NAME_COLS = {f"{k}_{s}" for k in TAGS for s in (0, 1)}
LABEL_COLS = NAME_COLS | {"labels_0", "labels_1"}


def files(d):
    return sorted(glob.glob(f"{d}/**/*.parquet", recursive=True))


def parquet_sizes(d, is_tag):
    rows = total = tags = 0
    for f in files(d):
        md = pq.ParquetFile(f).metadata
        rows += md.num_rows
        for rg in range(md.num_row_groups):
            g = md.row_group(rg)
            for c in range(g.num_columns):
                col = g.column(c)
                total += col.total_compressed_size
                if is_tag(col.path_in_schema):
                    tags += col.total_compressed_size
    return rows, total, tags


def clickhouse_sizes(s, name, d, tag_filter):
    fs = files(d)
    s.query(f"CREATE TABLE {name} ENGINE = MergeTree ORDER BY tuple() AS SELECT * FROM file('{fs[0]}', Parquet) LIMIT 0")
    for f in fs:
        s.query(f"INSERT INTO {name} SELECT * FROM file('{f}', Parquet)")
    s.query(f"OPTIMIZE TABLE {name} FINAL")
    one = lambda q: int(str(s.query(q, "CSV")).strip() or 0)
    rows = one(f"SELECT sum(rows) FROM system.parts WHERE table = '{name}' AND active")
    total = one(f"SELECT sum(data_compressed_bytes) FROM system.columns WHERE table = '{name}'")
    tags = one(f"SELECT sum(data_compressed_bytes) FROM system.columns WHERE table = '{name}' AND ({tag_filter})")
    return rows, total, tags


def line(what, r, t, g):
    print(f"{what:40} {r:>9} rows {t / r:7.1f} bytes/row   tag columns {g / r:6.2f} bytes/row")
    return g / r


def main():
    ids_dir, names_dir = sys.argv[1], sys.argv[2]
    a = line("parquet, tag ids (deepflow-store)", *parquet_sizes(ids_dir, lambda p: "_id_" in p))
    b = line("parquet, tag names as strings", *parquet_sizes(names_dir, lambda p: p in NAME_COLS))
    tmp = tempfile.mkdtemp(prefix="store-sizes-")
    try:
        s = session.Session(tmp)
        c = line("clickhouse MergeTree LZ4, tag ids", *clickhouse_sizes(s, "ids", ids_dir, "name LIKE '%\\\\_id\\\\_%'"))
        names = "name IN (" + ",".join(f"'{n}'" for n in sorted(NAME_COLS)) + ")"
        d = line("clickhouse MergeTree LZ4, tag names", *clickhouse_sizes(s, "names", names_dir, names))
        if len(sys.argv) > 3:
            labels_dir = sys.argv[3]
            e = line("parquet, names + labels as strings", *parquet_sizes(labels_dir, lambda p: p in LABEL_COLS))
            labels = "name IN (" + ",".join(f"'{n}'" for n in sorted(LABEL_COLS)) + ")"
            f = line("clickhouse MergeTree LZ4, names + labels",
                     *clickhouse_sizes(s, "names_labels", labels_dir, labels))
            print(f"tag bytes with labels in the row / our ids: parquet {e / a:.2f}x, clickhouse {f / a:.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"tag bytes, names / ids: parquet {b / a:.2f}x, clickhouse {d / c:.2f}x; "
          f"clickhouse names / parquet ids {d / a:.2f}x, clickhouse ids / parquet ids {c / a:.2f}x")


if __name__ == "__main__":
    main()
