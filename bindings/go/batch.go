package deepflow

/*
#include <stdlib.h>
#include "deepflow.h"

static void df_go_release(struct ArrowArray *a, struct ArrowSchema *s) { df_arrow_release(a, s); }
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Batch is a record batch received through the Arrow C Data Interface: a struct array with one
// child per column. It reads the column types deepflow produces (strings, integers, booleans,
// timestamps); it is not a general Arrow implementation. Release it when done.
type Batch struct {
	arr *C.struct_ArrowArray
	sch *C.struct_ArrowSchema
}

func newBatch() *Batch {
	return &Batch{
		arr: (*C.struct_ArrowArray)(C.calloc(1, C.size_t(unsafe.Sizeof(C.struct_ArrowArray{})))),
		sch: (*C.struct_ArrowSchema)(C.calloc(1, C.size_t(unsafe.Sizeof(C.struct_ArrowSchema{})))),
	}
}

func (b *Batch) free() {
	C.free(unsafe.Pointer(b.arr))
	C.free(unsafe.Pointer(b.sch))
	b.arr, b.sch = nil, nil
}

// Release releases the Arrow data. Idempotent.
func (b *Batch) Release() {
	if b.arr == nil {
		return
	}
	C.df_go_release(b.arr, b.sch)
	b.free()
}

// NumRows is the number of rows.
func (b *Batch) NumRows() int { return int(b.arr.length) }

func (b *Batch) children() ([]*C.struct_ArrowSchema, []*C.struct_ArrowArray) {
	n := int(b.sch.n_children)
	if n == 0 {
		return nil, nil
	}
	return unsafe.Slice(b.sch.children, n), unsafe.Slice(b.arr.children, n)
}

// Columns are the column names, in order.
func (b *Batch) Columns() []string {
	s, _ := b.children()
	out := make([]string, len(s))
	for i, c := range s {
		out[i] = C.GoString(c.name)
	}
	return out
}

func (b *Batch) column(name string) (*C.struct_ArrowSchema, *C.struct_ArrowArray, error) {
	s, a := b.children()
	for i, c := range s {
		if C.GoString(c.name) == name {
			return c, a[i], nil
		}
	}
	return nil, nil, fmt.Errorf("no column %q", name)
}

// Value is the value at row of column name: string, int64, uint64, bool, or nil for null.
// Timestamps are int64 (units of the column type, microseconds for deepflow tables).
func (b *Batch) Value(name string, row int) (any, error) {
	s, a, err := b.column(name)
	if err != nil {
		return nil, err
	}
	if row < 0 || row >= int(a.length) {
		return nil, fmt.Errorf("row %d out of range (%d rows)", row, int(a.length))
	}
	i := row + int(a.offset)
	bufs := unsafe.Slice(a.buffers, int(a.n_buffers))
	if a.null_count != 0 && len(bufs) > 0 && bufs[0] != nil {
		valid := unsafe.Slice((*byte)(bufs[0]), i/8+1)
		if valid[i/8]&(1<<(uint(i)%8)) == 0 {
			return nil, nil
		}
	}
	format := C.GoString(s.format)
	if len(format) >= 3 && format[:2] == "ts" { // timestamp: int64
		format = "l"
	}
	if len(bufs) < 2 {
		return nil, fmt.Errorf("column %q: unsupported format %q", name, format)
	}
	p := bufs[1]
	switch format {
	case "u":
		off := unsafe.Slice((*int32)(p), i+2)
		data := unsafe.Slice((*byte)(bufs[2]), int(off[i+1]))
		return string(data[off[i]:off[i+1]]), nil
	case "b":
		bits := unsafe.Slice((*byte)(p), i/8+1)
		return bits[i/8]&(1<<(uint(i)%8)) != 0, nil
	case "c":
		return int64(unsafe.Slice((*int8)(p), i+1)[i]), nil
	case "s":
		return int64(unsafe.Slice((*int16)(p), i+1)[i]), nil
	case "i":
		return int64(unsafe.Slice((*int32)(p), i+1)[i]), nil
	case "l":
		return unsafe.Slice((*int64)(p), i+1)[i], nil
	case "C":
		return uint64(unsafe.Slice((*uint8)(p), i+1)[i]), nil
	case "S":
		return uint64(unsafe.Slice((*uint16)(p), i+1)[i]), nil
	case "I":
		return uint64(unsafe.Slice((*uint32)(p), i+1)[i]), nil
	case "L":
		return unsafe.Slice((*uint64)(p), i+1)[i], nil
	case "g":
		return unsafe.Slice((*float64)(p), i+1)[i], nil
	}
	return nil, fmt.Errorf("column %q: unsupported format %q", name, format)
}
