"""otel-ai-audit: tamper-evident audit trails for ML decisions, built on OpenTelemetry.

Zero-code: `opentelemetry-instrument python app.py`. In code:

    import otel_ai_audit
    otel_ai_audit.configure(store="audit.db", signing_key="audit.key.pem")
    otel_ai_audit.register_model(model, name="churn", version="3.2", risk="high")
    ...
    decision_id = otel_ai_audit.last_decision_ids()[0]
    otel_ai_audit.record_oversight(decision_id, reviewer="u123", action="overridden", reason="...")

The public names are loaded on first use: importing the package, or an offline part of it such as
`otel_ai_audit.verify` or `otel_ai_audit.integrity`, loads no OpenTelemetry SDK, sink or numpy
and registers no fork hook.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otel_ai_audit.decisions import last_decision_ids
    from otel_ai_audit.runtime import (
        configure,
        record_dispute,
        record_outcome,
        record_oversight,
        register_model,
        register_reference,
        shutdown,
    )
    from otel_ai_audit.version import __version__

_PUBLIC = {
    "__version__": "otel_ai_audit.version",
    "configure": "otel_ai_audit.runtime",
    "last_decision_ids": "otel_ai_audit.decisions",
    "record_dispute": "otel_ai_audit.runtime",
    "record_outcome": "otel_ai_audit.runtime",
    "record_oversight": "otel_ai_audit.runtime",
    "register_model": "otel_ai_audit.runtime",
    "register_reference": "otel_ai_audit.runtime",
    "shutdown": "otel_ai_audit.runtime",
}
"""Each public name and the module that defines it (the version too: reading it from the
installed metadata costs more than the rest of the core)."""

__all__ = [
    "__version__",
    "configure",
    "last_decision_ids",
    "record_dispute",
    "record_outcome",
    "record_oversight",
    "register_model",
    "register_reference",
    "shutdown",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module when the name is first asked for (PEP 562)."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
