"""otel-ai-audit: tamper-evident audit trails for ML decisions, built on OpenTelemetry.

Zero-code: `opentelemetry-instrument python app.py`. In code:

    import otel_ai_audit
    otel_ai_audit.configure(store="audit.db", signing_key="audit.key.pem")
    otel_ai_audit.register_model(model, name="churn", version="3.2", risk="high")
    ...
    decision_id = otel_ai_audit.last_decision_ids()[0]
    otel_ai_audit.record_oversight(decision_id, reviewer="u123", action="overridden", reason="...")
"""

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
