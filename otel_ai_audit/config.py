"""Settings, read from `OTEL_AI_AUDIT_*` environment variables and mirrored by `configure()`.

Defaults are the safe ones for a regulated user: inputs are recorded as keyed hashes, every
decision is kept (risk "high" unless configured otherwise), and checkpoints are signed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

from otel_ai_audit.store.sqlite import DEFAULT_STORE_PATH

ENV_PREFIX = "OTEL_AI_AUDIT_"
ELASTICSEARCH_INDEX_PREFIX = "otel-ai-audit"
ELASTICSEARCH_RETENTION = "190d"
"""Kept at least six months (EU AI Act Art. 19, 26(6)), with a margin for a late request."""


@dataclass(frozen=True)
class AuditSettings:
    """Every knob, with its environment variable named after the field (upper case)."""

    enabled: bool = True
    store: str = DEFAULT_STORE_PATH
    signing_key: str | None = None
    hmac_key: str | None = None
    hmac_key_file: str | None = None
    capture_inputs: str = "hash"
    capture_outputs: str = "full"
    capture_max_bytes: int = 16_384
    redact_fields: tuple[str, ...] = field(default_factory=tuple)
    default_risk: str = "high"
    model_name: str | None = None
    model_version: str | None = None
    checkpoint_every: int = 1000
    checkpoint_interval: float = 5.0
    max_queue: int = 100_000
    queue_full_policy: str = "block"
    sampling_rate: float | None = None
    sampling_keep_risk: tuple[str, ...] | None = None
    sampling_policy: str | None = None
    sampling_hold_hours: float = 72.0
    decision_mode: str = "per_row"
    monitor_features: tuple[str, ...] = ("all",)
    """Features of a profiled model kept (binned) in each decision: all, none, or names."""
    monitor_bins: int = 20
    monitor_top_categories: int = 20
    drift_numeric_method: str = "auto"
    """The drift_* settings: statistics and thresholds of `monitoring.drift.DriftPolicy`, with
    Evidently's conventions as defaults (auto = KS / chi-squared for a reference of at most
    drift_small_reference rows, else PSI / Jensen-Shannon)."""
    drift_categorical_method: str = "auto"
    drift_small_reference: int = 1000
    drift_p_value: float = 0.05
    drift_psi_threshold: float = 0.1
    drift_js_threshold: float = 0.1
    drift_share: float = 0.5
    fastapi_routes: tuple[str, ...] = field(default_factory=tuple)
    fastapi_identity_headers: tuple[str, ...] = ("authorization", "x-api-key")
    http_model_urls: tuple[str, ...] = field(default_factory=tuple)
    elasticsearch_url: str | None = None
    """Comma-separated node URLs; setting it turns shipping to Elasticsearch on."""
    elasticsearch_api_key: str | None = None
    elasticsearch_username: str | None = None
    elasticsearch_password: str | None = None
    elasticsearch_ca_certs: str | None = None
    elasticsearch_verify_certs: bool = True
    elasticsearch_index_prefix: str = ELASTICSEARCH_INDEX_PREFIX
    elasticsearch_retention: str = ELASTICSEARCH_RETENTION
    splunk_hec_url: str | None = None
    """Base URL of a Splunk HTTP Event Collector (https://splunk:8088); turns shipping to it on."""
    splunk_hec_token: str | None = None
    splunk_hec_index: str | None = None
    """Index for the events; none: the token's default index."""
    splunk_hec_source: str = "otel-ai-audit"
    splunk_hec_host: str | None = None
    """The events' host field; none: this machine's host name."""
    splunk_hec_ack: bool = False
    """Use indexer acknowledgement (the token must have it on): a batch counts as delivered
    only once Splunk says it is indexed, not when HEC accepted it."""
    splunk_hec_ca_certs: str | None = None
    splunk_hec_verify_certs: bool = True
    otlp_endpoint: str | None = None
    """OTLP endpoint of a Collector that takes the audit records as spans; turns shipping on.
    Its own setting, apart from OTEL_EXPORTER_OTLP_*, so audit spans reach the Collector's
    audit pipeline and never the sampled one of ordinary traces."""
    otlp_protocol: str = "grpc"
    """grpc or http/protobuf, as OTEL_EXPORTER_OTLP_PROTOCOL."""
    otlp_headers: str | None = None
    """key=value pairs, comma-separated, as OTEL_EXPORTER_OTLP_HEADERS."""
    ship_shutdown_timeout: float = 10.0
    """Seconds the shippers may take at exit to deliver what the writer persisted last."""
    anchor_s3: str | None = None
    """s3://BUCKET/PREFIX of a bucket with Object Lock; turns external anchoring on."""
    anchor_s3_endpoint: str | None = None
    """Endpoint of an S3-compatible service other than AWS (MinIO, versitygw, Ceph)."""
    anchor_s3_region: str | None = None
    anchor_interval: float = 60.0
    """Seconds between anchors (one is also made after the closing checkpoint)."""
    anchor_retention_days: int = 190
    """Compliance-mode retention of each anchor: six months (EU AI Act Art. 19, 26(6))."""
    tsa_url: str | None = None
    """RFC 3161 time-stamping authority that stamps each anchor (e.g. https://tsa/...)."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> AuditSettings:
        """Settings from the environment, then `overrides` (the Python API wins)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in fields(cls):
            raw = env.get(ENV_PREFIX + item.name.upper())
            if raw is None or raw == "":
                continue
            values[item.name] = _parse(item.name, raw, cls.__dataclass_fields__[item.name].type)
        settings = cls(**values)
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def _parse(name: str, raw: str, annotation: Any) -> Any:
    text = str(annotation)
    try:
        if text.startswith("bool"):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if text.startswith("int"):
            return int(raw)
        if text.startswith("float"):
            return float(raw)
        if text.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as error:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r}: {error}") from error
    return raw
