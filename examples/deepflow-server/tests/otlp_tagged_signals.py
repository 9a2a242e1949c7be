#!/usr/bin/env python3
"""Emits OTLP metrics and logs from resources described like the inventory of
tests/otlp_tagging.rs, with the OpenTelemetry Python SDK and its OTLP/HTTP protobuf exporters.

  otlp_tagged_signals.py --endpoint http://127.0.0.1:PORT [--token T]

One resource per case; each sends the counter tag_test_requests (+1, attribute case=<case>)
and one log record with the body "tagging <case>":
- "pod": k8s.pod.name cart-1, k8s.namespace.name shop (service.name cart);
- "ip": host.ip ["10.1.0.5"] (pod web-1; service.name frontend, unknown);
- "name": service.name payments only (a service of the inventory);
- "host": host.name web-1 (a pod's hostname is its name; service.name other, unknown);
- "unknown": service.name nobody, host.name ghost, k8s.pod.name ghost-1 (nothing matches).
Prints {"failures": N} and exits 1 when an export fails.
"""
import argparse
import json
import logging
import sys

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

CASES = {
    "pod": {"service.name": "cart", "k8s.pod.name": "cart-1", "k8s.namespace.name": "shop"},
    "ip": {"service.name": "frontend", "host.ip": ["10.1.0.5"]},
    "name": {"service.name": "payments"},
    "host": {"service.name": "other", "host.name": "web-1"},
    "unknown": {"service.name": "nobody", "host.name": "ghost", "k8s.pod.name": "ghost-1"},
}


class Checked:
    """Wraps an exporter and counts failed exports."""

    def __init__(self, inner):
        self.inner, self.failures = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def export(self, batch, *a, **kw):
        r = self.inner.export(batch, *a, **kw)
        if r is not None and r != MetricExportResult.SUCCESS and getattr(r, "name", "") != "SUCCESS":
            self.failures += 1
        return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--token")
    a = ap.parse_args()
    headers = {"authorization": f"Bearer {a.token}"} if a.token else None
    checked = []
    for case, attrs in CASES.items():
        resource = Resource.create(attrs)
        mexp = Checked(OTLPMetricExporter(endpoint=f"{a.endpoint}/v1/metrics", headers=headers, timeout=10))
        lexp = Checked(OTLPLogExporter(endpoint=f"{a.endpoint}/v1/logs", headers=headers, timeout=10))
        checked += [mexp, lexp]
        reader = PeriodicExportingMetricReader(mexp, export_interval_millis=3_600_000)
        mp = MeterProvider(resource=resource, metric_readers=[reader])
        mp.get_meter("tagging-test").create_counter("tag_test_requests").add(1, {"case": case})
        mp.force_flush()
        mp.shutdown()
        lp = LoggerProvider(resource=resource)
        lp.add_log_record_processor(SimpleLogRecordProcessor(lexp))
        log = logging.getLogger(f"tagging-{case}")
        log.propagate = False
        log.setLevel(logging.INFO)
        log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=lp))
        log.info("tagging %s", case)
        lp.shutdown()
    failures = sum(c.failures for c in checked)
    print(json.dumps({"failures": failures}), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
