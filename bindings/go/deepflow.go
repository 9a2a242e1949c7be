// Package deepflow is the Go binding of deepflow-rs, over its C ABI (libdeepflow, bindings/c).
//
// An Analyzer reads a pcap/pcapng file, a live interface or frames given by the caller, and
// hands out records (l4_flow_log flows, l7_flow_log sessions, network metrics) as JSON objects
// or as Arrow C Data Interface batches (read with the small Batch reader here: no Arrow Go
// dependency). With an inventory file rows carry deepflow-tagging tag ids and LookupIP works;
// with a store directory records are also written as Parquet, which Query runs SQL on.
//
// Build: the library must be built first (cargo build -p deepflow-c) and found by the linker
// and at run time, e.g.
//
//	export CGO_LDFLAGS="-L$TARGET/debug -Wl,-rpath,$TARGET/debug"
//
// An Analyzer is not safe for concurrent use.
package deepflow

/*
#cgo CFLAGS: -I${SRCDIR}/../c/include
#cgo LDFLAGS: -ldeepflow
#include <stdlib.h>
#include "deepflow.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"unsafe"
)

// Kind selects a record kind.
type Kind int32

const (
	// Flows are l4_flow_log rows.
	Flows Kind = C.DF_KIND_FLOW
	// L7 are l7_flow_log rows (request/response sessions by default).
	L7 Kind = C.DF_KIND_L7
	// Metrics are network metrics rows.
	Metrics Kind = C.DF_KIND_METRICS
)

var errNames = map[int]string{
	-1: "DF_ERR_NULL", -2: "DF_ERR_ARG", -3: "DF_ERR_OPEN", -4: "DF_ERR_FORMAT", -5: "DF_ERR_IO",
	-6: "DF_ERR_LIVE", -7: "DF_ERR_STATE", -8: "DF_ERR_UNSUPPORTED", -9: "DF_ERR_CALLBACK",
	-10: "DF_ERR_TAGGING", -11: "DF_ERR_STORE", -99: "DF_ERR_PANIC",
}

// Error is a failed library call.
type Error struct {
	Code    int    // DF_ERR_* value
	Name    string // e.g. "DF_ERR_OPEN"
	Message string // df_last_error()
}

func (e *Error) Error() string { return fmt.Sprintf("%s (%s)", e.Message, e.Name) }

func check(rc C.int32_t) error {
	if rc >= 0 {
		return nil
	}
	name, ok := errNames[int(rc)]
	if !ok {
		name = fmt.Sprintf("error %d", int(rc))
	}
	return &Error{Code: int(rc), Name: name, Message: C.GoString(C.df_last_error())}
}

// Version is the library version.
func Version() string { return C.GoString(C.df_version()) }

// Analyzer wraps a DfAnalyzer.
type Analyzer struct {
	h *C.DfAnalyzer
}

// New creates an analyzer. config (may be nil) is the JSON configuration of df_analyzer_new:
// "records", "emit", "max_memory", "no_l7", "l7", "output" ("json" or "arrow"),
// "inventory", "store".
func New(config map[string]any) (*Analyzer, error) {
	var cfg *C.char
	if config != nil {
		b, err := json.Marshal(config)
		if err != nil {
			return nil, err
		}
		cfg = C.CString(string(b))
		defer C.free(unsafe.Pointer(cfg))
	}
	a := &Analyzer{}
	if err := check(C.df_analyzer_new(cfg, &a.h)); err != nil {
		return nil, err
	}
	return a, nil
}

// Close frees the analyzer (writing rows buffered for the store). Idempotent.
func (a *Analyzer) Close() {
	if a.h != nil {
		C.df_analyzer_free(a.h)
		a.h = nil
	}
}

// OpenFile attaches a pcap/pcapng file.
func (a *Analyzer) OpenFile(path string) error {
	p := C.CString(path)
	defer C.free(unsafe.Pointer(p))
	return check(C.df_analyzer_open_file(a.h, p))
}

// OpenLive attaches a live capture on interface with an optional BPF filter ("" = none).
// Needs root or CAP_NET_RAW.
func (a *Analyzer) OpenLive(iface, filter string, timeoutMs int) error {
	i := C.CString(iface)
	defer C.free(unsafe.Pointer(i))
	var f *C.char
	if filter != "" {
		f = C.CString(filter)
		defer C.free(unsafe.Pointer(f))
	}
	return check(C.df_analyzer_open_live(a.h, i, f, C.int32_t(timeoutMs)))
}

// Run analyzes the attached file to its end.
func (a *Analyzer) Run() error { return check(C.df_analyzer_run(a.h)) }

// Poll reads up to maxPackets packets of the attached source; ended is true when a file ended.
func (a *Analyzer) Poll(maxPackets uint64) (ended bool, packets uint64, err error) {
	var n C.uint64_t
	rc := C.df_analyzer_poll(a.h, C.uint64_t(maxPackets), &n)
	return rc == C.DF_END, uint64(n), check(rc)
}

// Feed analyzes one frame: linkType is its pcap LINKTYPE (1 Ethernet), ts in microseconds.
func (a *Analyzer) Feed(linkType uint32, frame []byte, tsUs uint64, wireLen uint32) error {
	var p *C.uint8_t
	if len(frame) > 0 {
		p = (*C.uint8_t)(unsafe.Pointer(&frame[0]))
	}
	return check(C.df_analyzer_feed(a.h, C.uint32_t(linkType), p, C.size_t(len(frame)), C.uint64_t(tsUs), C.uint32_t(wireLen)))
}

// Finish ends the input: open flows and pending requests are reported.
func (a *Analyzer) Finish() error { return check(C.df_analyzer_finish(a.h)) }

// Pending is the number of queued records of kind.
func (a *Analyzer) Pending(kind Kind) (int64, error) {
	n := C.df_analyzer_pending(a.h, C.int32_t(kind))
	if n < 0 {
		return 0, check(C.int32_t(n))
	}
	return int64(n), nil
}

func takeBytes(b C.DfBytes) []byte {
	defer C.df_bytes_free(b)
	if b.data == nil {
		return nil
	}
	return C.GoBytes(unsafe.Pointer(b.data), C.int(b.len))
}

// TakeJSONL moves the queued records of kind out as JSON lines (output "json").
func (a *Analyzer) TakeJSONL(kind Kind) ([]byte, error) {
	var b C.DfBytes
	if err := check(C.df_analyzer_take_jsonl(a.h, C.int32_t(kind), &b)); err != nil {
		return nil, err
	}
	return takeBytes(b), nil
}

// Records moves the queued records of kind out, decoded from JSON (output "json").
func (a *Analyzer) Records(kind Kind) ([]map[string]any, error) {
	lines, err := a.TakeJSONL(kind)
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	start := 0
	for i, c := range lines {
		if c != '\n' {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(lines[start:i], &m); err != nil {
			return nil, err
		}
		out = append(out, m)
		start = i + 1
	}
	return out, nil
}

// TakeArrow moves the queued records of kind out as one Arrow batch (output "arrow"). The
// caller must Release it.
func (a *Analyzer) TakeArrow(kind Kind) (*Batch, error) {
	b := newBatch()
	if err := check(C.df_analyzer_take_arrow(a.h, C.int32_t(kind), b.arr, b.sch)); err != nil {
		b.free()
		return nil, err
	}
	return b, nil
}

// Stats returns the analyzer's counters (packets, bytes, flows, l7_rows, ...).
func (a *Analyzer) Stats() (map[string]any, error) {
	var b C.DfBytes
	if err := check(C.df_analyzer_stats_json(a.h, &b)); err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(takeBytes(b), &m)
}

// LookupIP returns the universal tags (ids and names) of ip from the analyzer's inventory.
func (a *Analyzer) LookupIP(ip string) (map[string]any, error) {
	s := C.CString(ip)
	defer C.free(unsafe.Pointer(s))
	var b C.DfBytes
	if err := check(C.df_analyzer_lookup_ip(a.h, s, &b)); err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(takeBytes(b), &m)
}

// AnalyzeFile analyzes a whole file and returns its flows and L7 rows decoded from JSON.
// config as in New (nil: defaults).
func AnalyzeFile(path string, config map[string]any) (flows, l7 []map[string]any, err error) {
	a, err := New(config)
	if err != nil {
		return nil, nil, err
	}
	defer a.Close()
	if err = a.OpenFile(path); err != nil {
		return nil, nil, err
	}
	if err = a.Run(); err != nil {
		return nil, nil, err
	}
	if flows, err = a.Records(Flows); err != nil {
		return nil, nil, err
	}
	l7, err = a.Records(L7)
	return flows, l7, err
}

// Query runs SQL over a deepflow-store directory (written with the "store" setting); the
// caller must Release the result.
func Query(store, sql string) (*Batch, error) {
	d := C.CString(store)
	defer C.free(unsafe.Pointer(d))
	q := C.CString(sql)
	defer C.free(unsafe.Pointer(q))
	b := newBatch()
	if err := check(C.df_store_query(d, q, b.arr, b.sch)); err != nil {
		b.free()
		return nil, err
	}
	return b, nil
}
