"""Sinks beyond the embedded store, fed by shippers that read the store as a write-ahead spool.

Each backend's sink lives in its package (`otel_ai_audit.backends`); this package holds what
they share.

A `Sink` only delivers batches; a `Shipper` owns the reading, the cursors and the retries
(like exporters and processors in the OpenTelemetry SDK).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from otel_ai_audit.sinks.shipper import DeliveryError, Shipper, ShipperStats, Sink

if TYPE_CHECKING:
    from otel_ai_audit.config import AuditSettings

__all__ = ["DeliveryError", "Shipper", "ShipperStats", "Sink", "configured_sinks"]


def configured_sinks(settings: AuditSettings) -> list[Sink]:
    """The sinks the settings turn on (each client library is imported only when used)."""
    sinks: list[Sink] = []
    if settings.elasticsearch_url:
        from otel_ai_audit.backends.elasticsearch.sink import ElasticsearchSink

        sinks.append(ElasticsearchSink.from_settings(settings))
    if settings.splunk_hec_url:
        from otel_ai_audit.backends.splunk_hec.sink import SplunkHecSink

        sinks.append(SplunkHecSink.from_settings(settings))
    if settings.otlp_endpoint:
        from otel_ai_audit.backends.otlp.sink import OtlpSink

        sinks.append(OtlpSink.from_settings(settings))
    if settings.kafka_bootstrap_servers:
        from otel_ai_audit.backends.kafka.client import KafkaSettings
        from otel_ai_audit.backends.kafka.sink import KafkaSink

        sinks.append(KafkaSink(KafkaSettings.from_env(
            bootstrap_servers=settings.kafka_bootstrap_servers)))
    return sinks
