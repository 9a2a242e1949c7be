package deepflow

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// demo.pcap: real traffic of real servers and clients on 127.0.0.1 (HTTP, DNS, TLS, gRPC,
// MySQL, PostgreSQL, MQTT, Kafka, NATS), see examples/data/README.md.
const demo = "../../examples/data/demo.pcap"

const inventory = `vpcs: [{name: lo}]
subnets: [{name: loopback, vpc: lo, cidrs: [127.0.0.0/8]}]
hosts: [{name: demo-host, ips: [127.0.0.1], vpc: lo}]
`

func TestVersion(t *testing.T) {
	if Version() == "" {
		t.Fatal("empty version")
	}
}

func TestAnalyzeFileJSON(t *testing.T) {
	flows, l7, err := AnalyzeFile(demo, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(flows) == 0 || len(l7) == 0 {
		t.Fatalf("flows=%d l7=%d", len(flows), len(l7))
	}
	protos := map[string]int{}
	for _, r := range l7 {
		p, _ := r["l7_protocol"].(string)
		protos[p]++
	}
	for _, want := range []string{"http", "dns", "mysql", "postgresql"} {
		if protos[want] == 0 {
			t.Errorf("no %s rows: %v", want, protos)
		}
	}
}

func TestArrowTaggingStore(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(inv, []byte(inventory), 0o644); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "store")
	_, jsonL7, err := AnalyzeFile(demo, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(map[string]any{"output": "arrow", "inventory": inv, "store": store})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.OpenFile(demo); err != nil {
		t.Fatal(err)
	}
	if err := a.Run(); err != nil {
		t.Fatal(err)
	}
	b, err := a.TakeArrow(L7)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	if b.NumRows() != len(jsonL7) {
		t.Fatalf("arrow rows %d != json rows %d", b.NumRows(), len(jsonL7))
	}
	http := 0
	for i := 0; i < b.NumRows(); i++ {
		p, err := b.Value("l7_protocol", i)
		if err != nil {
			t.Fatal(err)
		}
		if p == "http" {
			http++
		}
		h, err := b.Value("host_id_1", i)
		if err != nil {
			t.Fatal(err)
		}
		if h.(uint64) == 0 {
			t.Fatalf("row %d not tagged", i)
		}
	}
	if http == 0 {
		t.Fatal("no http rows in the arrow batch")
	}
	tags, err := a.LookupIP("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if tags["host"] != "demo-host" || tags["l3_epc"] != "lo" {
		t.Fatalf("lookup: %v", tags)
	}
	if err := a.Finish(); err != nil {
		t.Fatal(err)
	}
	q, err := Query(store, "SELECT count(*) AS n FROM l7_flow_log WHERE l7_protocol = 'http'")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Release()
	n, err := q.Value("n", 0)
	if err != nil {
		t.Fatal(err)
	}
	if n.(int64) != int64(http) {
		t.Fatalf("store has %v http rows, batch %d", n, http)
	}
}

func TestErrors(t *testing.T) {
	_, _, err := AnalyzeFile("/nonexistent/x.pcap", nil)
	var e *Error
	if !errors.As(err, &e) || e.Name != "DF_ERR_OPEN" {
		t.Fatalf("missing file: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.pcap")
	os.WriteFile(junk, []byte("not a capture, not at all, really not"), 0o644)
	_, _, err = AnalyzeFile(junk, nil)
	if !errors.As(err, &e) || e.Name != "DF_ERR_FORMAT" {
		t.Fatalf("junk file: %v", err)
	}
	if _, err = New(map[string]any{"records": []string{"bogus"}}); !errors.As(err, &e) || e.Name != "DF_ERR_ARG" {
		t.Fatalf("bad config: %v", err)
	}
	a, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err = a.TakeArrow(L7); !errors.As(err, &e) || e.Name != "DF_ERR_STATE" {
		t.Fatalf("arrow on a json analyzer: %v", err)
	}
	if _, err = Query(t.TempDir(), "SELECT * FROM nope"); !errors.As(err, &e) || e.Name != "DF_ERR_STORE" {
		t.Fatalf("bad query: %v", err)
	}
}

func TestLiveCapture(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from the go live test\n")
	})}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	a, err := New(map[string]any{"records": []string{"l7"}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.OpenLive("lo", fmt.Sprintf("tcp port %d", port), 100); err != nil {
		var e *Error
		if errors.As(err, &e) && (e.Name == "DF_ERR_LIVE" || e.Name == "DF_ERR_UNSUPPORTED") {
			t.Skipf("live capture not possible here (needs root/CAP_NET_RAW): %v", err)
		}
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for i := 0; i < 5; i++ {
			resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/go/%d", port, i))
			if err != nil {
				done <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- nil
	}()
	var paths []string
	deadline := time.Now().Add(10 * time.Second)
	for len(paths) < 5 && time.Now().Before(deadline) {
		if _, _, err := a.Poll(4096); err != nil {
			t.Fatal(err)
		}
		rows, err := a.Records(L7)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r["l7_protocol"] == "http" {
				paths = append(paths, r["request_resource"].(string))
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	want := []string{"/go/0", "/go/1", "/go/2", "/go/3", "/go/4"}
	if fmt.Sprint(paths) != fmt.Sprint(want) {
		t.Fatalf("live http paths %v, want %v", paths, want)
	}
}
