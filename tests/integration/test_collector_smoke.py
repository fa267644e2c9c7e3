"""The real Collector built by ocb receives a span over OTLP/gRPC and writes it out."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.services.base import wait_until
from tests.services.collector import CollectorService

SMOKE_ATTRIBUTE = "otel_ai_audit.smoke_id"


def span_attribute_values(traces_path: Path, key: str) -> set[str]:
    """Every string value of span attribute `key` in the file exporter's OTLP JSON lines."""
    if not traces_path.exists():
        return set()
    values: set[str] = set()
    for line in traces_path.read_text().splitlines():
        for span in spans_of(json.loads(line)):
            for attribute in span.get("attributes", []):
                if attribute["key"] == key:
                    values.add(attribute["value"].get("stringValue", ""))
    return values


def spans_of(traces_data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for resource_spans in traces_data.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            yield from scope_spans.get("spans", [])


def send_span(endpoint: str, smoke_id: str) -> None:
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    provider = TracerProvider(resource=Resource.create({"service.name": "otel-ai-audit-smoke"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("otel-ai-audit.tests")
    try:
        with tracer.start_as_current_span("collector-smoke") as span:
            span.set_attribute(SMOKE_ATTRIBUTE, smoke_id)
    finally:
        provider.shutdown()


def test_span_reaches_the_file_exporter(collector: CollectorService) -> None:
    smoke_id = uuid.uuid4().hex
    send_span(collector.otlp_grpc_endpoint, smoke_id)

    arrived = wait_until(
        lambda: smoke_id in span_attribute_values(collector.traces_path, SMOKE_ATTRIBUTE),
        timeout=30,
    )

    assert arrived, f"span {smoke_id} not in {collector.traces_path}\n{collector.log_tail()}"


def test_env_names_the_running_collector(collector: CollectorService) -> None:
    env = collector.env()

    assert env == {
        "OTLP_ENDPOINT": collector.otlp_grpc_endpoint,
        "OTLP_HTTP_ENDPOINT": collector.otlp_http_endpoint,
        "COLLECTOR_HEALTH_URL": collector.health_url,
    }
    assert collector.healthy()
