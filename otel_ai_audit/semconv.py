"""Span attribute names of otel-ai-audit (documented in docs/semantic-conventions.md).

Ours live under one prefix, `ai_audit.`; existing conventions are reused where they fit
(`service.name`, `artifact.hash`, `http.*`, `enduser.pseudo.id`).
"""

from __future__ import annotations

PREFIX = "ai_audit."

EVENT_TYPE = "ai_audit.event.type"
DECISION_ID = "ai_audit.decision.id"
DECISION_COUNT = "ai_audit.decision.count"
MODEL_NAME = "ai_audit.model.name"
MODEL_VERSION = "ai_audit.model.version"
MODEL_FINGERPRINT = "artifact.hash"
MODEL_FRAMEWORK = "ai_audit.model.framework"
MODEL_CLASS = "ai_audit.model.class"
OPERATION = "ai_audit.operation"
RISK_LEVEL = "ai_audit.risk.level"
INPUT_SHAPE = "ai_audit.input.shape"
ERROR_TYPE = "error.type"
ENDUSER_PSEUDO_ID = "enduser.pseudo.id"
REQUEST_ID = "ai_audit.request.id"
DESCRIBED_TIME = "ai_audit.described_time"
"""The time a decision is about, as the application says (`record.schema.describing`)."""
DRIFT_FEATURE = "ai_audit.drift.feature"
DRIFT_METHOD = "ai_audit.drift.method"
FAIRNESS_ATTRIBUTE = "ai_audit.fairness.attribute"
FAIRNESS_SLICE = "ai_audit.fairness.slice"
