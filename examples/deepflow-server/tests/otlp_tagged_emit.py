#!/usr/bin/env python3
"""Emits spans whose addresses and service names are in the inventory of tests/otlp_tagging.rs,
with the OpenTelemetry Python SDK and its OTLP/HTTP protobuf exporter; prints the trace ids.

  otlp_tagged_emit.py --endpoint http://127.0.0.1:PORT [--token T]

Sends (one trace each, so the test can find them):
- "GET /cart" (SERVER, service.name web): net.peer.ip 10.1.0.5 (pod web-1), net.host.ip
  10.1.0.6 (pod cart-1);
- "SELECT" (CLIENT, service.name web): server.address 10.96.0.20 (ClusterIP of service db);
- "charge" (SERVER, service.name payments, no address): matched by name only;
- "GET /unknown" (SERVER, service.name nobody): net.host.ip 192.0.2.1 (not in the inventory).
Exits 1 when an export fails.
"""
import argparse
import json
import sys

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind


class Checked:
    """Wraps an exporter and counts failed exports."""

    def __init__(self, inner):
        self.inner, self.failures = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def export(self, batch, *a, **kw):
        r = self.inner.export(batch, *a, **kw)
        if r != SpanExportResult.SUCCESS:
            self.failures += 1
        return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--token")
    a = ap.parse_args()
    headers = {"authorization": f"Bearer {a.token}"} if a.token else None
    out, providers, exporters = {}, [], []

    def tracer(service):
        exp = Checked(OTLPSpanExporter(endpoint=f"{a.endpoint}/v1/traces", headers=headers, timeout=10))
        tp = TracerProvider(resource=Resource.create({"service.name": service}))
        tp.add_span_processor(SimpleSpanProcessor(exp))
        providers.append(tp)
        exporters.append(exp)
        return tp.get_tracer("otlp-tagging-test")

    def span(t, key, name, kind, attrs):
        with t.start_as_current_span(name, kind=kind, attributes=attrs) as s:
            out[key] = format(s.get_span_context().trace_id, "032x")

    web = tracer("web")
    span(web, "server", "GET /cart", SpanKind.SERVER,
         {"net.peer.ip": "10.1.0.5", "net.peer.port": 41000, "net.host.ip": "10.1.0.6", "net.host.port": 8080})
    span(web, "client", "SELECT", SpanKind.CLIENT, {"server.address": "10.96.0.20", "server.port": 5432})
    span(tracer("payments"), "by_name", "charge", SpanKind.SERVER, {})
    span(tracer("nobody"), "unknown", "GET /unknown", SpanKind.SERVER,
         {"net.host.ip": "192.0.2.1", "net.host.port": 80})
    for tp in providers:
        tp.shutdown()
    out["failures"] = sum(e.failures for e in exporters)
    print(json.dumps(out), flush=True)
    return 1 if out["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
