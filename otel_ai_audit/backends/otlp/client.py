"""The OTLP exporter a sink sends through: the SDK's own, gRPC or HTTP/protobuf, with OTel's
header syntax. opentelemetry-exporter-otlp is a core dependency (see the README's install
section): the Collector is the OpenTelemetry-native way to any backend."""

from __future__ import annotations

from urllib.parse import urlsplit

from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.util.re import parse_env_headers


def span_exporter(endpoint: str, protocol: str = "grpc", headers: str | None = None,
                  timeout: float = 10.0) -> tuple[SpanExporter, str]:
    """(exporter, its endpoint as used) for `endpoint` ("http://collector:4317"; an http://
    gRPC endpoint is plaintext), protocol "grpc" or "http/protobuf" (the path `/v1/traces`
    added when none is given), headers "k=v,k2=v2" as OTel's."""
    parsed = parse_env_headers(headers or "", liberal=True)
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(endpoint=endpoint, headers=parsed, timeout=timeout,
                            insecure=urlsplit(endpoint).scheme == "http"), endpoint
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        if urlsplit(endpoint).path in ("", "/"):
            endpoint = endpoint.rstrip("/") + "/v1/traces"
        return HttpExporter(endpoint=endpoint, headers=parsed, timeout=timeout), endpoint
    raise ValueError(f"OTLP protocol {protocol!r} is not grpc or http/protobuf")
