"""Zero-code set-up: `opentelemetry-instrument python app.py` loads this distro and configurator.

The configurator adds the audit span processor to the SDK's TracerProvider, so the audit trail
is kept whatever `OTEL_TRACES_EXPORTER` says, including `none`. The distro defaults the
exporters to `none` (set them to `otlp` to also export telemetry), because an audit trail must
not depend on a Collector being reachable.

An audit set-up that fails (a setting that is invalid, or that cannot be honoured: a missing
key file, a store whose folder cannot be written) never takes OpenTelemetry's own set-up down.
It is logged at ERROR as one line, `otel-ai-audit: audit trail NOT active: <reason>`, and:

* when the audit trail is required (`OTEL_AI_AUDIT_REQUIRED`; by default on when auditing is
  enabled and `OTEL_AI_AUDIT_DEFAULT_RISK` is high, critical or unacceptable), the process
  exits with status 78 (EX_CONFIG) before the application starts: it never serves unaudited;
* otherwise the SDK is set up as usual and the application runs without the audit trail.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _OTelSDKConfigurator

from otel_ai_audit.config import audit_switches, variable
from otel_ai_audit.errors import ConfigurationError

if TYPE_CHECKING:
    from otel_ai_audit.runtime import AuditRuntime

logger = logging.getLogger(__name__)

EX_CONFIG = 78
"""sysexits.h: configuration error. The exit status of a process that requires the audit trail
and could not set it up."""
NOT_ACTIVE = "otel-ai-audit: audit trail NOT active: "


class AuditDistro(BaseDistro):
    """`opentelemetry_distro` entry point."""

    def _configure(self, **kwargs: Any) -> None:
        for name in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER"):
            os.environ.setdefault(name, "none")


class AuditConfigurator(_OTelSDKConfigurator):
    """`opentelemetry_configurator` entry point: the SDK set-up plus the audit processor."""

    def _configure(self, **kwargs: Any) -> None:
        runtime = _audit_runtime()
        if runtime is not None:
            kwargs["span_processors"] = [*(kwargs.get("span_processors") or []),
                                         runtime.processor]
        super()._configure(**kwargs)


def _audit_runtime() -> AuditRuntime | None:
    """The audit runtime; None when auditing is off, or when its set-up failed and the trail
    is not required. Exits the process (EX_CONFIG) when it failed and the trail is required."""
    enabled, required = audit_switches()
    if not enabled and not required:
        return None
    try:
        from otel_ai_audit.runtime import configure

        return configure(install_processor=False)
    except ConfigurationError as error:
        reason = str(error)
    except Exception as error:  # noqa: BLE001 - a broken audit set-up must not stop OTel's
        logger.debug("otel-ai-audit: the audit set-up failed", exc_info=True)
        reason = f"{type(error).__name__}: {error}"
    reason = " ".join(reason.split())  # one line, whatever the error said
    if not required:
        logger.error("%s%s", NOT_ACTIVE, reason)
        return None
    why = (variable("required") if os.environ.get(variable("required"))
           else f"{variable('required')}, on by default at risk high and above")
    logger.error("%s%s; the audit trail is required (%s): exiting with status %d before the "
                 "application starts", NOT_ACTIVE, reason, why, EX_CONFIG)
    _exit(EX_CONFIG)


def _exit(status: int) -> NoReturn:
    """Leave now: this runs while `sitecustomize` is imported, where SystemExit would become
    a fatal interpreter error with a traceback."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
