"""Zero-code set-up: `opentelemetry-instrument python app.py` loads this distro and configurator.

The configurator adds the audit span processor to the SDK's TracerProvider, so the audit trail
is kept whatever `OTEL_TRACES_EXPORTER` says, including `none`. The distro defaults the
exporters to `none` (set them to `otlp` to also export telemetry), because an audit trail must
not depend on a Collector being reachable.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _OTelSDKConfigurator

from otel_ai_audit.config import AuditSettings
from otel_ai_audit.runtime import configure

logger = logging.getLogger(__name__)


class AuditDistro(BaseDistro):
    """`opentelemetry_distro` entry point."""

    def _configure(self, **kwargs: Any) -> None:
        for variable in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER"):
            os.environ.setdefault(variable, "none")


class AuditConfigurator(_OTelSDKConfigurator):
    """`opentelemetry_configurator` entry point: the SDK set-up plus the audit processor."""

    def _configure(self, **kwargs: Any) -> None:
        if not AuditSettings.from_env().enabled:
            super()._configure(**kwargs)
            return
        try:
            runtime = configure(install_processor=False)
        except Exception:  # noqa: BLE001 - a broken audit set-up must not stop the app
            logger.exception("otel-ai-audit: audit trail NOT configured")
            super()._configure(**kwargs)
            return
        processors = [*(kwargs.pop("span_processors", None) or []), runtime.processor]
        super()._configure(span_processors=processors, **kwargs)
