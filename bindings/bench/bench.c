/* records/s through the C ABI: JSON lines and Arrow paths over one capture.
 * Usage: bench PCAP [RUNS]  (prints the best run of each path) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "deepflow.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

/* One run: analyze, take flows and L7 records; returns seconds, *records = rows. */
static double run(const char *pcap, int arrow, long long *records) {
  DfAnalyzer *a;
  double t0 = now();
  if (df_analyzer_new(arrow ? "{\"output\": \"arrow\"}" : NULL, &a) != DF_OK || df_analyzer_open_file(a, pcap) != DF_OK) {
    fprintf(stderr, "%s\n", df_last_error());
    exit(1);
  }
  *records = 0;
  int ended = 0;
  while (!ended) {
    uint64_t n = 0;
    int rc = df_analyzer_poll(a, 65536, &n);
    if (rc < 0) {
      fprintf(stderr, "%s\n", df_last_error());
      exit(1);
    }
    ended = rc == DF_END;
    for (int kind = DF_KIND_FLOW; kind <= DF_KIND_L7; kind++) {
      if (arrow) {
        struct ArrowArray arr;
        struct ArrowSchema sch;
        df_analyzer_take_arrow(a, kind, &arr, &sch);
        *records += arr.length;
        arr.release(&arr);
        sch.release(&sch);
      } else {
        DfBytes b;
        df_analyzer_take_jsonl(a, kind, &b);
        for (size_t i = 0; i < b.len; i++) *records += b.data[i] == '\n';
        df_bytes_free(b);
      }
    }
  }
  df_analyzer_free(a);
  return now() - t0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PCAP [RUNS]\n", argv[0]);
    return 2;
  }
  int runs = argc > 2 ? atoi(argv[2]) : 3;
  for (int arrow = 0; arrow <= 1; arrow++) {
    double best = 1e9;
    long long recs = 0;
    for (int i = 0; i < runs; i++) {
      double s = run(argv[1], arrow, &recs);
      if (s < best) best = s;
    }
    printf("c-%s: %lld records in %.3f s = %.0f records/s\n", arrow ? "arrow" : "jsonl", recs, best, recs / best);
  }
  return 0;
}
