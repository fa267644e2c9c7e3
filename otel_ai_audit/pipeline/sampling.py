"""Risk-based sampling of inference decisions, applied on the writer thread.

It runs on the writer thread, before sealing, because that is where a batch call's rows get
their own risk level (`risk_fn` of each row's output, in `DecisionBatch.build`), and because
the caller's hot path must stay "create span + enqueue".

Always kept: decisions whose risk level is in `keep_risk` (default `high`, `critical`), error
decisions, and every event that is not an inference (oversight, dispute, training, ...).
Disputed decisions are kept by promotion: a sampled-out decision is held in the store for
`hold_hours`, and a dispute raised within that time puts it into the chain before the dispute
record (see `AuditWriter`). The rest is kept with probability `rate` (per model if the policy
file says so), decided by the decision id alone: kept iff the first 8 bytes of
SHA-256(UTF-8 id), read as a big-endian integer, are below rate * 2^64. Every process, every
run and every auditor reaches the same verdict for the same id and rate; ids are random, so
the kept share is the rate.

Nothing is sampled out unaccounted: the writer counts sampled-out decisions per model and risk
level into the signed checkpoints (`counters.sampled_out`, keys `<model>|<risk>`), and this
policy's hash is part of the checkpoints' `policy_hash`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_ai_audit.config import AuditSettings
from otel_ai_audit.errors import ConfigurationError
from otel_ai_audit.record.canonical import canonical_json, rfc3339_from_ns
from otel_ai_audit.record.schema import EventType
from otel_ai_audit.store.sqlite import HeldRecord

DEFAULT_KEEP_RISK = ("high", "critical")
RULE = "sha256(id)[:8] < rate * 2^64"
"""Named in the policy hash, so a change of the rule changes the hash."""
_POLICY_FILE_KEYS = {"rate", "keep_risk", "models"}
_INFERENCE = EventType.INFERENCE.value


class SamplingConfigError(ConfigurationError):
    """A sampling setting or policy file is invalid."""


@dataclass(frozen=True)
class SamplingPolicy:
    """Which inference decisions are kept in the chain; the default keeps everything."""

    rate: float = 1.0
    keep_risk: tuple[str, ...] = DEFAULT_KEEP_RISK
    model_rates: Mapping[str, float] = field(default_factory=dict)
    hold_hours: float = 72.0

    def __post_init__(self) -> None:
        for name, rate in {"rate": self.rate, **self.model_rates}.items():
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
                raise SamplingConfigError(f"sampling rate of {name!r} must be a number from 0 "
                                          f"to 1, not {rate!r}")
        if not self.hold_hours >= 0:
            raise SamplingConfigError(f"hold hours must be >= 0, not {self.hold_hours!r}")

    @classmethod
    def from_settings(cls, settings: AuditSettings) -> SamplingPolicy:
        """The policy file (`sampling_policy`) overridden by the rate and risk levels set in the
        environment or through `configure()`."""
        document = _load_policy_file(settings.sampling_policy) if settings.sampling_policy else {}
        rate = settings.sampling_rate
        keep_risk = settings.sampling_keep_risk
        return cls(rate=document.get("rate", 1.0) if rate is None else rate,
                   keep_risk=tuple(document.get("keep_risk", DEFAULT_KEEP_RISK)
                                   if keep_risk is None else keep_risk),
                   model_rates=dict(document.get("models", {})),
                   hold_hours=settings.sampling_hold_hours)

    @property
    def policy_hash(self) -> str:
        """SHA-256 of the policy's RFC 8785 form: part of every checkpoint's `policy_hash`."""
        description = {"rate": self.rate, "keep_risk": sorted(set(self.keep_risk)),
                       "models": dict(self.model_rates), "hold_hours": self.hold_hours,
                       "rule": RULE}
        return hashlib.sha256(canonical_json(description)).hexdigest()

    @property
    def hold_ns(self) -> int:
        return int(self.hold_hours * 3600 * 1e9)

    def rate_for(self, model: str) -> float:
        return self.model_rates.get(model, self.rate)

    def sample(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The event to seal, or None when it is sampled out.

        A decision kept while its model's rate is below 1 says why it is on the record
        (`sampling: {"rate", "kept": "risk" | "error" | "rate"}`), so an auditor can check the
        rule against it.
        """
        if event.get("type") != _INFERENCE:
            return event
        rate = self.rate_for(model_name(event))
        if rate >= 1.0:
            return event
        if risk_level(event) in self.keep_risk:
            reason = "risk"
        elif "error" in event:
            reason = "error"
        elif keeps(str(event.get("id")), rate):
            reason = "rate"
        else:
            return None
        return {**event, "sampling": {"rate": rate, "kept": reason}}


def keeps(decision_id: str, rate: float) -> bool:
    """The deterministic draw: is `decision_id` inside the kept share `rate`?"""
    draw = int.from_bytes(hashlib.sha256(decision_id.encode("utf-8")).digest()[:8], "big")
    return draw < rate * 2**64


def model_name(event: Mapping[str, Any]) -> str:
    model = event.get("model")
    return str(model.get("name")) if isinstance(model, Mapping) else "unknown"


def risk_level(event: Mapping[str, Any]) -> str:
    risk = event.get("risk")
    return str(risk.get("level")) if isinstance(risk, Mapping) else "unknown"


def counter_key(event: Mapping[str, Any]) -> str:
    """The key a sampled-out decision is counted under in `counters.sampled_out`."""
    return f"{model_name(event)}|{risk_level(event)}"


def promoted_event(held: HeldRecord) -> dict[str, Any]:
    """A held decision as it enters the chain: the original event, marked as promoted."""
    event = json.loads(held.data)
    event["promoted"] = {"from_hold": True, "sampled_out_at": rfc3339_from_ns(held.held_at),
                         "chain_id": held.chain_id}
    return event


def _load_policy_file(path: str) -> dict[str, Any]:
    """`{"rate": 0.1, "keep_risk": ["high", "critical"], "models": {"churn": 0.05}}`, every key
    optional; unknown keys are an error (a misspelt key must not silently sample more)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SamplingConfigError(f"sampling policy file {path}: {error}") from error
    if not isinstance(document, dict) or not set(document) <= _POLICY_FILE_KEYS:
        raise SamplingConfigError(f"sampling policy file {path}: expected an object with keys "
                                  f"{sorted(_POLICY_FILE_KEYS)}")
    keep_risk = document.get("keep_risk", [])
    models = document.get("models", {})
    if not isinstance(keep_risk, list) or not all(isinstance(level, str) for level in keep_risk):
        raise SamplingConfigError(f"sampling policy file {path}: keep_risk must be a list of "
                                  "risk levels")
    if not isinstance(models, dict):
        raise SamplingConfigError(f"sampling policy file {path}: models must map model names "
                                  "to rates")
    return document
