"""The floor the hot-path benchmarks are judged against: a plain OpenTelemetry span with 10
attributes, exported by OTLP/HTTP through a BatchSpanProcessor to a loopback receiver — what a
team already pays for tracing a call."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

ATTRIBUTES = {f"plain.attribute_{index}": f"value-{index}" for index in range(10)}
QUEUE = 1 << 16
"""Spans the baseline's queue holds: more than any benchmark round makes."""


class _Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that accepts every export (what a Collector answers)."""

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


class Traced(NamedTuple):
    """`wrap(call)` runs `call` inside a plain exported span; `flush` exports what is queued."""

    wrap: Callable[[Callable[[], Any]], Callable[[], Any]]
    flush: Callable[[], Any]


@contextmanager
def otlp_traced() -> Iterator[Traced]:
    from tests.services.base import http_server

    with http_server(_Receiver) as receiver:
        provider = TracerProvider()
        # A queue that holds a whole round: the default (2,048 spans) overflows in a tight
        # loop, and a dropped span costs less than tracing does, which would flatter the floor.
        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{receiver}/v1/traces"), max_queue_size=QUEUE))
        tracer = provider.get_tracer("bench")

        def wrap(call: Callable[[], Any]) -> Callable[[], Any]:
            def spanned() -> Any:
                with tracer.start_as_current_span("predict", attributes=ATTRIBUTES):
                    return call()
            return spanned

        try:
            yield Traced(wrap, provider.force_flush)
        finally:
            provider.shutdown()
