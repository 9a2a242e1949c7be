#!/usr/bin/env python3
"""Emits OpenTelemetry traces, metrics and logs with the OpenTelemetry Python SDK and its OTLP
exporters (proto-http or proto-grpc, gzip) to a deepflow-server; prints what it sent as JSON.

Used by tests/otlp.rs:
  otlp_emit.py --transport http --endpoint http://127.0.0.1:PORT --service NAME [--token T]
  otlp_emit.py --transport grpc --endpoint 127.0.0.1:PORT --service NAME [--token T]

Sends:
- spans: "parent-op" (internal) with child "child-op" (client), "error-op" (status ERROR
  "boom"), and "GET /items/{id}" (server, HTTP attributes, 200);
- metrics: counter otlp_test_requests (route=/a: 3 + 4) and histogram otlp_test_latency
  (0.3, 7, 120) with the SDK's default buckets;
- logs: a WARNING inside "parent-op" and an ERROR outside any span.
Exits 1 when an exporter reports a failure.
"""
import argparse
import json
import logging
import sys

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode


def exporters(transport, endpoint, token):
    headers = {"authorization": f"Bearer {token}"} if token else None
    if transport == "http":
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        kw = dict(headers=headers, compression=Compression.Gzip, timeout=10)
        return (
            OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", **kw),
            OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", **kw),
            OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", **kw),
        )
    from grpc import Compression
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    kw = dict(endpoint=endpoint, insecure=True, headers=headers, compression=Compression.Gzip, timeout=10)
    return OTLPSpanExporter(**kw), OTLPMetricExporter(**kw), OTLPLogExporter(**kw)


class Checked:
    """Wraps an exporter and remembers whether every export succeeded."""

    def __init__(self, inner, ok_value):
        self.inner, self.ok_value, self.failures = inner, ok_value, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def export(self, batch, *a, **kw):
        r = self.inner.export(batch, *a, **kw)
        if r != self.ok_value and getattr(r, "name", "") != "SUCCESS":
            self.failures += 1
        return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--transport", choices=["http", "grpc"], required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--token")
    a = ap.parse_args()

    resource = Resource.create({"service.name": a.service, "service.instance.id": f"{a.service}-1"})
    span_exp, metric_exp, log_exp = exporters(a.transport, a.endpoint, a.token)
    span_exp = Checked(span_exp, SpanExportResult.SUCCESS)
    log_exp_checked = Checked(log_exp, None)

    tp = TracerProvider(resource=resource)
    tp.add_span_processor(SimpleSpanProcessor(span_exp))
    tracer = tp.get_tracer("otlp-test")

    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(SimpleLogRecordProcessor(log_exp_checked))
    log = logging.getLogger(f"otlp-test-{a.transport}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=lp))

    hex_id = lambda n, w: format(n, f"0{w}x")
    out = {"transport": a.transport, "service": a.service}
    with tracer.start_as_current_span("parent-op") as parent:
        with tracer.start_as_current_span("child-op", kind=SpanKind.CLIENT) as child:
            child.set_attribute("peer.service", "backend")
        log.warning("disk almost full: %d MB left", 12, extra={"disk": "sda"})
        pc, cc = parent.get_span_context(), child.get_span_context()
        out["trace_id"] = hex_id(pc.trace_id, 32)
        out["parent_span_id"] = hex_id(pc.span_id, 16)
        out["child_span_id"] = hex_id(cc.span_id, 16)
    with tracer.start_as_current_span("error-op") as err:
        err.set_status(Status(StatusCode.ERROR, "boom"))
        ec = err.get_span_context()
        out["error_trace_id"] = hex_id(ec.trace_id, 32)
        out["error_span_id"] = hex_id(ec.span_id, 16)
    with tracer.start_as_current_span(
        "GET /items/{id}",
        kind=SpanKind.SERVER,
        attributes={
            "http.method": "GET",
            "http.target": "/items/7?full=1",
            "http.host": "shop.local",
            "http.flavor": "1.1",
            "http.status_code": 200,
            "net.peer.ip": "10.1.2.3",
            "net.peer.port": 40000,
            "net.host.ip": "127.0.0.1",
            "net.host.port": 8080,
        },
    ) as http:
        hc = http.get_span_context()
        out["http_trace_id"] = hex_id(hc.trace_id, 32)
        out["http_span_id"] = hex_id(hc.span_id, 16)
    log.error("payment failed")

    metric_exp_checked = Checked(metric_exp, MetricExportResult.SUCCESS)
    reader = PeriodicExportingMetricReader(metric_exp_checked, export_interval_millis=3_600_000)
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    meter = mp.get_meter("otlp-test")
    counter = meter.create_counter("otlp_test_requests")
    counter.add(3, {"route": "/a"})
    counter.add(4, {"route": "/a"})
    hist = meter.create_histogram("otlp_test_latency")
    for v in (0.3, 7, 120):
        hist.record(v)
    mp.force_flush()
    mp.shutdown()
    tp.shutdown()
    lp.shutdown()
    out["failures"] = span_exp.failures + metric_exp_checked.failures + log_exp_checked.failures
    print(json.dumps(out), flush=True)
    return 1 if out["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
