"""Zero-code set-up: `opentelemetry-instrument python app.py` runs `install()` before the
instrumentors.

`install()` is an `opentelemetry_pre_instrument` hook rather than a distro or a configurator on
purpose: contrib's loader picks ONE distro and runs ONE configurator (the first found, or the one
named by `OTEL_PYTHON_DISTRO` / `OTEL_PYTHON_CONFIGURATOR`), but runs every pre-instrument hook,
after the configurator. So the audit trail is installed whatever distro or configurator the
environment has (`opentelemetry-distro`, Elastic's EDOT, ...), and installing otel-ai-audit
changes no other application's exporters. The hook adds the audit span processor to the SDK
TracerProvider that configurator set up; when no configurator set one up, it first does the
SDK's standard set-up from the `OTEL_*` variables (exporters included: none unless
`OTEL_TRACES_EXPORTER` and its siblings name some), as `opentelemetry-distro` would.

An audit set-up that fails (a setting that is invalid, or that cannot be honoured: a missing
key file, a store whose folder cannot be written) never takes OpenTelemetry's own set-up down.
It is logged at ERROR as one line, `otel-ai-audit: audit trail NOT active: <reason>`, and:

* when the audit trail is required (`OTEL_AI_AUDIT_REQUIRED`; by default on when auditing is
  enabled and `OTEL_AI_AUDIT_DEFAULT_RISK` is high, critical or unacceptable), the process
  exits with status 78 (EX_CONFIG) before the application starts: it never serves unaudited;
* otherwise the application runs without the audit trail.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from opentelemetry import trace
from opentelemetry.instrumentation.version import __version__ as auto_instrumentation_version
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.trace import TracerProvider

from otel_ai_audit.config import audit_switches, variable
from otel_ai_audit.errors import ConfigurationError

logger = logging.getLogger(__name__)

EX_CONFIG = 78
"""sysexits.h: configuration error. The exit status of a process that requires the audit trail
and could not set it up."""
NOT_ACTIVE = "otel-ai-audit: audit trail NOT active: "


def install() -> None:
    """`opentelemetry_pre_instrument` entry point: the audit processor on the SDK provider."""
    provider = sdk_tracer_provider()
    enabled, required = audit_switches()
    if not enabled and not required:
        return
    if provider is None:
        _not_active(f"the global tracer provider is a {type(trace.get_tracer_provider()).__name__}"
                    ", not the OpenTelemetry SDK's: no model call would reach the audit trail",
                    required)
        return
    try:
        from otel_ai_audit.runtime import configure

        configure(provider, instrument=False, origin="opentelemetry-instrument")
    except ConfigurationError as error:
        _not_active(str(error), required)
    except Exception as error:  # noqa: BLE001 - a broken audit set-up must not stop OTel's
        logger.debug("otel-ai-audit: the audit set-up failed", exc_info=True)
        _not_active(f"{type(error).__name__}: {error}", required)


def sdk_tracer_provider() -> TracerProvider | None:
    """The SDK provider the configurator set up; when none set one up, the SDK's standard
    set-up from the `OTEL_*` variables first. None when the global provider is another
    implementation than the SDK's (the application's choice, left alone)."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        _OTelSDKConfigurator().configure(auto_instrumentation_version=auto_instrumentation_version)
    provider = trace.get_tracer_provider()
    return provider if isinstance(provider, TracerProvider) else None


def _not_active(reason: str, required: bool) -> None:
    """Say in one line why the trail is not active; exit (EX_CONFIG) when it is required."""
    reason = " ".join(reason.split())  # one line, whatever the error said
    if not required:
        logger.error("%s%s", NOT_ACTIVE, reason)
        return
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
