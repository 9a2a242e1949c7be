/* C test program of the deepflow C ABI, compiled and run by tests/c_program.rs.
 * Usage: analyze PCAP WORKDIR INVENTORY
 * Analyzes a real capture through the JSON pull API, the Arrow C Data Interface, writes the
 * records to a Parquet store, queries it back with SQL, looks an IP up in the inventory, and
 * checks error codes. Prints "ok: ..." lines; exits non-zero on the first failed check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deepflow.h"

static int failures = 0;
#define CHECK(cond, ...)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);               \
      fprintf(stderr, __VA_ARGS__);                                                 \
      fprintf(stderr, " (last error: %s)\n", df_last_error());                      \
      exit(1);                                                                      \
    }                                                                               \
  } while (0)

/* The child of a struct array/schema called `name`, or -1. */
static int child_index(const struct ArrowSchema *s, const char *name) {
  for (int64_t i = 0; i < s->n_children; i++)
    if (strcmp(s->children[i]->name, name) == 0) return (int)i;
  return -1;
}

/* Counts the rows of a utf8 column ("u": int32 offsets) equal to `want`. */
static int64_t count_utf8(const struct ArrowArray *col, const char *want) {
  const int32_t *offsets = (const int32_t *)col->buffers[1];
  const char *data = (const char *)col->buffers[2];
  const uint8_t *validity = (const uint8_t *)col->buffers[0];
  size_t wlen = strlen(want);
  int64_t n = 0;
  for (int64_t i = col->offset; i < col->offset + col->length; i++) {
    if (validity && !(validity[i / 8] & (1 << (i % 8)))) continue;
    int32_t len = offsets[i + 1] - offsets[i];
    if ((size_t)len == wlen && memcmp(data + offsets[i], want, wlen) == 0) n++;
  }
  return n;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s PCAP WORKDIR INVENTORY\n", argv[0]);
    return 2;
  }
  const char *pcap = argv[1], *workdir = argv[2], *inventory = argv[3];
  printf("deepflow %s\n", df_version());

  /* 1. JSON pull API. */
  DfAnalyzer *a = NULL;
  int rc = df_analyzer_new(NULL, &a);
  CHECK(rc == DF_OK && a != NULL, "df_analyzer_new rc=%d", rc);
  rc = df_analyzer_open_file(a, pcap);
  CHECK(rc == DF_OK, "open_file rc=%d", rc);
  rc = df_analyzer_run(a);
  CHECK(rc == DF_OK, "run rc=%d", rc);
  int64_t json_flows = df_analyzer_pending(a, DF_KIND_FLOW);
  int64_t json_l7 = df_analyzer_pending(a, DF_KIND_L7);
  CHECK(json_flows > 0 && json_l7 > 0, "pending flows=%lld l7=%lld", (long long)json_flows, (long long)json_l7);
  const char *json = NULL;
  size_t len = 0;
  int64_t http_json = 0, seen = 0;
  while ((rc = df_analyzer_next_record(a, DF_KIND_L7, &json, &len)) == DF_OK) {
    CHECK(json != NULL && len == strlen(json) && json[0] == '{', "bad record");
    if (strstr(json, "\"l7_protocol\":\"http\"")) http_json++;
    seen++;
  }
  CHECK(rc == DF_END && seen == json_l7, "next_record rc=%d seen=%lld", rc, (long long)seen);
  CHECK(http_json > 0, "no HTTP session in the JSON records");
  df_analyzer_free(a);
  printf("ok: json: %lld flows, %lld l7 rows (%lld http)\n", (long long)json_flows, (long long)json_l7,
         (long long)http_json);

  /* 2. Arrow C Data Interface, tagging and the Parquet store. */
  char store[4096], config[8192];
  snprintf(store, sizeof store, "%s/store", workdir);
  snprintf(config, sizeof config, "{\"output\": \"arrow\", \"store\": \"%s\", \"inventory\": \"%s\"}", store,
           inventory);
  rc = df_analyzer_new(config, &a);
  CHECK(rc == DF_OK, "df_analyzer_new(arrow) rc=%d", rc);
  rc = df_analyzer_open_file(a, pcap);
  CHECK(rc == DF_OK, "open_file rc=%d", rc);
  rc = df_analyzer_run(a);
  CHECK(rc == DF_OK, "run rc=%d", rc);
  CHECK(df_analyzer_pending(a, DF_KIND_L7) == json_l7, "arrow pending l7 %lld != %lld",
        (long long)df_analyzer_pending(a, DF_KIND_L7), (long long)json_l7);

  struct ArrowArray arr;
  struct ArrowSchema sch;
  rc = df_analyzer_take_arrow(a, DF_KIND_L7, &arr, &sch);
  CHECK(rc == DF_OK, "take_arrow rc=%d", rc);
  CHECK(strcmp(sch.format, "+s") == 0, "format %s", sch.format);
  CHECK(arr.length == json_l7, "arrow rows %lld != json %lld", (long long)arr.length, (long long)json_l7);
  CHECK(arr.n_children == sch.n_children && sch.n_children > 20, "children %lld", (long long)sch.n_children);
  int proto = child_index(&sch, "l7_protocol");
  CHECK(proto >= 0 && strcmp(sch.children[proto]->format, "u") == 0, "l7_protocol column");
  int64_t http_arrow = count_utf8(arr.children[proto], "http");
  CHECK(http_arrow == http_json, "arrow http rows %lld != json %lld", (long long)http_arrow, (long long)http_json);
  int pod1 = child_index(&sch, "host_id_1");
  CHECK(pod1 >= 0 && strcmp(sch.children[pod1]->format, "I") == 0, "host_id_1 column (uint32)");
  const uint32_t *host1 = (const uint32_t *)arr.children[pod1]->buffers[1];
  int64_t tagged = 0;
  for (int64_t i = 0; i < arr.length; i++) tagged += host1[i] != 0;
  CHECK(tagged == arr.length, "only %lld of %lld rows tagged with the inventory host", (long long)tagged,
        (long long)arr.length);
  arr.release(&arr);
  sch.release(&sch);
  CHECK(arr.release == NULL && sch.release == NULL, "release must mark the structs released");

  rc = df_analyzer_take_arrow(a, DF_KIND_FLOW, &arr, &sch);
  CHECK(rc == DF_OK && arr.length == json_flows, "flows %lld != %lld", (long long)arr.length, (long long)json_flows);
  CHECK(child_index(&sch, "close_type") >= 0, "l4_flow_log has close_type");
  df_arrow_release(&arr, &sch);
  /* Taken: the queue is empty now, a second take gives an empty batch. */
  rc = df_analyzer_take_arrow(a, DF_KIND_FLOW, &arr, &sch);
  CHECK(rc == DF_OK && arr.length == 0, "second take %lld rows", (long long)arr.length);
  df_arrow_release(&arr, &sch);

  DfBytes tags = {0};
  rc = df_analyzer_lookup_ip(a, "127.0.0.1", &tags);
  CHECK(rc == DF_OK && tags.data != NULL, "lookup_ip rc=%d", rc);
  char *tj = strndup((const char *)tags.data, tags.len);
  CHECK(strstr(tj, "\"host\":\"demo-host\"") != NULL, "lookup: %s", tj);
  printf("ok: lookup 127.0.0.1: %s\n", tj);
  free(tj);
  df_bytes_free(tags);
  rc = df_analyzer_lookup_ip(a, "not-an-ip", &tags);
  CHECK(rc == DF_ERR_ARG && strlen(df_last_error()) > 0, "lookup of a bad IP rc=%d", rc);
  rc = df_analyzer_finish(a);
  CHECK(rc == DF_OK, "finish rc=%d", rc);
  df_analyzer_free(a);
  printf("ok: arrow: %lld l7 rows (%lld http), %lld flows, all tagged\n", (long long)json_l7, (long long)http_arrow,
         (long long)json_flows);

  /* 3. SQL over the store that was written. */
  rc = df_store_query(store, "SELECT count(*) AS n, count(DISTINCT l7_protocol) AS p FROM l7_flow_log", &arr, &sch);
  CHECK(rc == DF_OK, "store_query rc=%d", rc);
  CHECK(arr.length == 1 && sch.n_children == 2, "query shape %lld x %lld", (long long)arr.length,
        (long long)sch.n_children);
  CHECK(strcmp(sch.children[0]->format, "l") == 0, "count(*) is int64: %s", sch.children[0]->format);
  int64_t n = ((const int64_t *)arr.children[0]->buffers[1])[arr.children[0]->offset];
  CHECK(n == json_l7, "stored l7 rows %lld != %lld", (long long)n, (long long)json_l7);
  df_arrow_release(&arr, &sch);
  printf("ok: store: %lld l7 rows queried back with SQL\n", (long long)n);
  rc = df_store_query(store, "SELECT nope FROM l7_flow_log", &arr, &sch);
  CHECK(rc == DF_ERR_STORE && strlen(df_last_error()) > 0, "bad SQL rc=%d", rc);

  /* 4. Errors. */
  rc = df_analyzer_new("{\"output\": \"xml\"}", &a);
  CHECK(rc == DF_ERR_ARG && a == NULL, "bad output rc=%d", rc);
  rc = df_analyzer_new("{\"inventory\": \"/nonexistent/inv.yaml\"}", &a);
  CHECK(rc == DF_ERR_TAGGING && a == NULL, "missing inventory rc=%d", rc);
  rc = df_analyzer_new(NULL, &a);
  CHECK(rc == DF_OK, "new rc=%d", rc);
  rc = df_analyzer_take_arrow(a, DF_KIND_L7, &arr, &sch);
  CHECK(rc == DF_ERR_STATE, "take_arrow on a JSON analyzer rc=%d", rc);
  rc = df_analyzer_take_arrow(a, DF_KIND_L7, NULL, &sch);
  CHECK(rc == DF_ERR_NULL, "NULL out_array rc=%d", rc);
  rc = df_analyzer_open_file(a, "/nonexistent/x.pcap");
  CHECK(rc == DF_ERR_OPEN, "missing file rc=%d", rc);
  rc = df_analyzer_open_file(a, inventory);
  CHECK(rc == DF_ERR_FORMAT, "not a capture rc=%d", rc);
  df_analyzer_free(a);
  printf("ok: error codes\n");
  return failures;
}
