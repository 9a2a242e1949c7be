"""deepflow: Python bindings of deepflow-rs over its C ABI (libdeepflow, bindings/c).

Records come out of the library as Arrow C Data Interface batches and are imported by pyarrow
without copying row by row::

    import deepflow
    sessions = deepflow.analyze("capture.pcap")                 # l7_flow_log rows
    flows = deepflow.analyze("capture.pcap", kind="flows")      # l4_flow_log rows
    for batch in deepflow.live("lo", duration=5):                # live capture (root)
        print(batch.num_rows)
    table = deepflow.query("/tmp/store", "SELECT count(*) FROM l7_flow_log")

The shared library is looked up in $DEEPFLOW_LIB, then in $CARGO_TARGET_DIR/{debug,release},
then in the workspace's target/{debug,release} (build it with `cargo build -p deepflow-c`).
"""

from __future__ import annotations

import ctypes
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pyarrow as pa

__all__ = [
    "Analyzer",
    "DeepflowError",
    "analyze",
    "live",
    "query",
    "version",
    "FLOWS",
    "L7",
    "METRICS",
]

DF_OK = 0
DF_END = 1
FLOWS = 0
L7 = 1
METRICS = 2
_KINDS = {"flows": FLOWS, "l4": FLOWS, "l7": L7, "sessions": L7, "metrics": METRICS, "network": METRICS}
_RECORDS = {FLOWS: "flows", L7: "l7", METRICS: "metrics"}

_ERRORS = {
    -1: "DF_ERR_NULL",
    -2: "DF_ERR_ARG",
    -3: "DF_ERR_OPEN",
    -4: "DF_ERR_FORMAT",
    -5: "DF_ERR_IO",
    -6: "DF_ERR_LIVE",
    -7: "DF_ERR_STATE",
    -8: "DF_ERR_UNSUPPORTED",
    -9: "DF_ERR_CALLBACK",
    -10: "DF_ERR_TAGGING",
    -11: "DF_ERR_STORE",
    -99: "DF_ERR_PANIC",
}


class DeepflowError(Exception):
    """A failed library call: `code` is the DF_ERR_* value, `name` its name."""

    def __init__(self, code: int, message: str):
        self.code = code
        self.name = _ERRORS.get(code, f"error {code}")
        super().__init__(f"{message} ({self.name})")


class _ArrowSchema(ctypes.Structure):
    _fields_ = [
        ("format", ctypes.c_char_p),
        ("name", ctypes.c_char_p),
        ("metadata", ctypes.c_char_p),
        ("flags", ctypes.c_int64),
        ("n_children", ctypes.c_int64),
        ("children", ctypes.c_void_p),
        ("dictionary", ctypes.c_void_p),
        ("release", ctypes.c_void_p),
        ("private_data", ctypes.c_void_p),
    ]


class _ArrowArray(ctypes.Structure):
    _fields_ = [
        ("length", ctypes.c_int64),
        ("null_count", ctypes.c_int64),
        ("offset", ctypes.c_int64),
        ("n_buffers", ctypes.c_int64),
        ("n_children", ctypes.c_int64),
        ("buffers", ctypes.c_void_p),
        ("children", ctypes.c_void_p),
        ("dictionary", ctypes.c_void_p),
        ("release", ctypes.c_void_p),
        ("private_data", ctypes.c_void_p),
    ]


class _Bytes(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def _candidates() -> list[Path]:
    out = []
    if os.environ.get("DEEPFLOW_LIB"):
        out.append(Path(os.environ["DEEPFLOW_LIB"]))
    roots = []
    if os.environ.get("CARGO_TARGET_DIR"):
        roots.append(Path(os.environ["CARGO_TARGET_DIR"]))
    roots.append(Path(__file__).resolve().parents[3] / "target")
    for root in roots:
        for profile in ("release", "debug"):
            out.append(root / profile / "libdeepflow.so")
    return out


def _load() -> ctypes.CDLL:
    tried = _candidates()
    for p in tried:
        if p.is_file():
            lib = ctypes.CDLL(str(p))
            break
    else:
        raise ImportError(
            "libdeepflow.so not found (build it with `cargo build -p deepflow-c` or set DEEPFLOW_LIB); tried: "
            + ", ".join(map(str, tried))
        )
    P, I32, I64, U64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64, ctypes.c_uint64
    sigs = {
        "df_version": ([], ctypes.c_char_p),
        "df_last_error": ([], ctypes.c_char_p),
        "df_analyzer_new": ([ctypes.c_char_p, ctypes.POINTER(P)], I32),
        "df_analyzer_free": ([P], None),
        "df_analyzer_open_file": ([P, ctypes.c_char_p], I32),
        "df_analyzer_open_live": ([P, ctypes.c_char_p, ctypes.c_char_p, I32], I32),
        "df_analyzer_poll": ([P, U64, ctypes.POINTER(U64)], I32),
        "df_analyzer_run": ([P], I32),
        "df_analyzer_feed": ([P, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t, U64, ctypes.c_uint32], I32),
        "df_analyzer_idle": ([P, U64], I32),
        "df_analyzer_finish": ([P], I32),
        "df_analyzer_pending": ([P, I32], I64),
        "df_analyzer_take_jsonl": ([P, I32, ctypes.POINTER(_Bytes)], I32),
        "df_analyzer_take_arrow": ([P, I32, ctypes.POINTER(_ArrowArray), ctypes.POINTER(_ArrowSchema)], I32),
        "df_analyzer_stats_json": ([P, ctypes.POINTER(_Bytes)], I32),
        "df_analyzer_lookup_ip": ([P, ctypes.c_char_p, ctypes.POINTER(_Bytes)], I32),
        "df_analyzer_flush_store": ([P], I32),
        "df_store_query": (
            [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(_ArrowArray), ctypes.POINTER(_ArrowSchema)],
            I32,
        ),
        "df_bytes_free": ([_Bytes], None),
    }
    for name, (args, res) in sigs.items():
        f = getattr(lib, name)
        f.argtypes = args
        f.restype = res
    return lib


_lib = _load()


def version() -> str:
    """The library version."""
    return _lib.df_version().decode()


def _check(rc: int, what: str) -> int:
    if rc < 0:
        raise DeepflowError(rc, _lib.df_last_error().decode(errors="replace") or what)
    return rc


def _take_bytes(b: _Bytes) -> bytes:
    try:
        return ctypes.string_at(b.data, b.len) if b.data else b""
    finally:
        _lib.df_bytes_free(b)


def _import_batch(arr: _ArrowArray, sch: _ArrowSchema) -> pa.RecordBatch:
    # pyarrow takes ownership (moves the structs and calls their release callbacks).
    return pa.RecordBatch._import_from_c(ctypes.addressof(arr), ctypes.addressof(sch))


def _kind(kind: Any) -> int:
    if isinstance(kind, int) and kind in _RECORDS:
        return kind
    try:
        return _KINDS[str(kind)]
    except KeyError:
        raise ValueError(f"unknown record kind {kind!r}: expected one of {sorted(_KINDS)}") from None


class Analyzer:
    """One analyzer of the C ABI, producing Arrow batches.

    ``config`` keys (all optional): ``records`` (list of "flows", "l7", "metrics"), ``emit``
    ("sessions" or "messages"), ``max_memory``, ``no_l7``, ``l7`` (L7Config), ``inventory`` (a
    deepflow-tagging inventory file: rows get tag ids, :meth:`lookup_ip` works), ``store`` (a
    directory: records are also written there as Parquet, see :func:`query`). Not thread-safe.
    """

    def __init__(self, **config: Any):
        cfg = {k: v for k, v in config.items() if v is not None}
        cfg["output"] = "arrow"
        self._h = ctypes.c_void_p()
        _check(_lib.df_analyzer_new(json.dumps(cfg).encode(), ctypes.byref(self._h)), "df_analyzer_new")

    def _handle(self) -> ctypes.c_void_p:
        if not self._h:
            raise DeepflowError(-7, "the analyzer is closed")
        return self._h

    def close(self) -> None:
        """Frees the analyzer (flushing rows buffered for the store). Idempotent."""
        if self._h:
            _lib.df_analyzer_free(self._h)
            self._h = ctypes.c_void_p()

    def __enter__(self) -> "Analyzer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def open_file(self, path: os.PathLike | str) -> None:
        """Attaches a pcap/pcapng file."""
        _check(_lib.df_analyzer_open_file(self._handle(), os.fsencode(path)), "open_file")

    def open_live(self, interface: str, filter: Optional[str] = None, timeout_ms: int = 100) -> None:
        """Attaches a live capture (needs root or CAP_NET_RAW)."""
        f = filter.encode() if filter is not None else None
        _check(_lib.df_analyzer_open_live(self._handle(), interface.encode(), f, timeout_ms), "open_live")

    def run(self) -> None:
        """Analyzes the attached file to its end."""
        _check(_lib.df_analyzer_run(self._handle()), "run")

    def poll(self, max_packets: int = 65536) -> tuple[bool, int]:
        """Reads up to max_packets packets: returns (ended, packets read)."""
        n = ctypes.c_uint64()
        rc = _check(_lib.df_analyzer_poll(self._handle(), max_packets, ctypes.byref(n)), "poll")
        return rc == DF_END, n.value

    def feed(self, frame: bytes, timestamp_us: int, link_type: int = 1, wire_len: int = 0) -> None:
        """Analyzes one frame (link_type: pcap LINKTYPE, 1 = Ethernet)."""
        _check(_lib.df_analyzer_feed(self._handle(), link_type, frame, len(frame), timestamp_us, wire_len), "feed")

    def finish(self) -> None:
        """Ends the input: flushes open flows and pending requests (and the store)."""
        _check(_lib.df_analyzer_finish(self._handle()), "finish")

    def pending(self, kind: Any = "l7") -> int:
        """Queued records of a kind."""
        return _check(_lib.df_analyzer_pending(self._handle(), _kind(kind)), "pending")

    def take(self, kind: Any = "l7") -> pa.RecordBatch:
        """Every queued record of a kind as one RecordBatch (possibly empty)."""
        arr, sch = _ArrowArray(), _ArrowSchema()
        _check(_lib.df_analyzer_take_arrow(self._handle(), _kind(kind), ctypes.byref(arr), ctypes.byref(sch)), "take")
        return _import_batch(arr, sch)

    def stats(self) -> dict:
        """Counters: packets, bytes, flows, l7_rows, decode_errors, ..."""
        b = _Bytes()
        _check(_lib.df_analyzer_stats_json(self._handle(), ctypes.byref(b)), "stats")
        return json.loads(_take_bytes(b))

    def lookup_ip(self, ip: str) -> dict:
        """Universal tags of an IP (ids and names) from the analyzer's inventory."""
        b = _Bytes()
        _check(_lib.df_analyzer_lookup_ip(self._handle(), ip.encode(), ctypes.byref(b)), "lookup_ip")
        return json.loads(_take_bytes(b))

    def flush_store(self) -> None:
        """Writes rows buffered for the store now."""
        _check(_lib.df_analyzer_flush_store(self._handle()), "flush_store")


def analyze(path: os.PathLike | str, kind: Any = "l7", **config: Any) -> pa.Table:
    """Analyzes a pcap/pcapng file; returns the records of `kind` ("l7": l7_flow_log sessions,
    "flows": l4_flow_log, "metrics": network) as a pyarrow Table. ``config`` as for
    :class:`Analyzer` (e.g. ``emit="messages"``, ``inventory=...``, ``store=...``)."""
    k = _kind(kind)
    config.setdefault("records", [_RECORDS[k]])
    with Analyzer(**config) as a:
        a.open_file(path)
        a.run()
        return pa.Table.from_batches([a.take(k)])


def live(
    interface: str,
    filter: Optional[str] = None,
    kind: Any = "l7",
    duration: Optional[float] = None,
    max_batches: Optional[int] = None,
    timeout_ms: int = 100,
    **config: Any,
) -> Iterator[pa.RecordBatch]:
    """Captures on `interface` and yields a RecordBatch of new records of `kind` whenever some
    arrived, until `duration` seconds passed or `max_batches` were yielded (both None: until
    the caller stops iterating). When it stops by time, open flows are flushed into a last
    batch. Needs root or CAP_NET_RAW."""
    k = _kind(kind)
    config.setdefault("records", [_RECORDS[k]])
    deadline = None if duration is None else time.monotonic() + duration
    yielded = 0
    with Analyzer(**config) as a:
        a.open_live(interface, filter, timeout_ms)
        while deadline is None or time.monotonic() < deadline:
            a.poll(4096)
            if a.pending(k) > 0:
                yield a.take(k)
                yielded += 1
                if max_batches is not None and yielded >= max_batches:
                    return
        a.finish()
        if a.pending(k) > 0:
            yield a.take(k)


def query(store: os.PathLike | str, sql: str) -> pa.Table:
    """Runs SQL (DataFusion) over a deepflow-store directory written with ``store=...``."""
    arr, sch = _ArrowArray(), _ArrowSchema()
    _check(_lib.df_store_query(os.fsencode(store), sql.encode(), ctypes.byref(arr), ctypes.byref(sch)), "query")
    return pa.Table.from_batches([_import_batch(arr, sch)])
