package deepflow

import (
	"os"
	"testing"
	"time"
)

// BenchmarkAnalyzeArrow reports records/s through the Go binding (Arrow batches) on the capture
// in $DEEPFLOW_BENCH_PCAP (default: examples/data/demo.pcap).
func BenchmarkAnalyzeArrow(b *testing.B) { benchAnalyze(b, true) }

// BenchmarkAnalyzeJSON is the same through JSON records decoded into maps.
func BenchmarkAnalyzeJSON(b *testing.B) { benchAnalyze(b, false) }

func benchAnalyze(b *testing.B, arrow bool) {
	pcap := os.Getenv("DEEPFLOW_BENCH_PCAP")
	if pcap == "" {
		pcap = demo
	}
	total := 0
	start := time.Now()
	for i := 0; i < b.N; i++ {
		cfg := map[string]any{}
		if arrow {
			cfg["output"] = "arrow"
		}
		a, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := a.OpenFile(pcap); err != nil {
			b.Fatal(err)
		}
		for ended := false; !ended; {
			if ended, _, err = a.Poll(65536); err != nil {
				b.Fatal(err)
			}
			for _, k := range []Kind{Flows, L7} {
				if arrow {
					batch, err := a.TakeArrow(k)
					if err != nil {
						b.Fatal(err)
					}
					total += batch.NumRows()
					batch.Release()
				} else {
					rows, err := a.Records(k)
					if err != nil {
						b.Fatal(err)
					}
					total += len(rows)
				}
			}
		}
		a.Close()
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "records/s")
}
