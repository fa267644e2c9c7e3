"""Decision records built from one model call, off the hot path.

The instrumentation captures references on the calling thread (inputs, outputs, identity,
ids); the writer thread turns them into one record per decision: a single-row call is one
decision, a batch call one per row, so "what did the model decide for this person at that
time" can be answered and proven. `summary` mode records one record per call instead, for bulk
scoring that is not high-risk (documented cost trade-off in docs/semantic-conventions.md).
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from otel_ai_audit.capture import CapturePolicy
from otel_ai_audit.monitoring.profile import monitor_views
from otel_ai_audit.record.canonical import to_json_data
from otel_ai_audit.record.schema import DESCRIBED_TIME, EventType, new_event

RiskFunction = Callable[[Any], str]


@dataclass(frozen=True)
class DecisionIds:
    """The ids of one call's decisions: `<batch>` for one row, `<batch>.<i>` for row i."""

    batch_id: str
    count: int

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.as_list())

    def as_list(self) -> list[str]:
        if self.count == 1:
            return [self.batch_id]
        return [f"{self.batch_id}.{index}" for index in range(self.count)]


_last_decisions: ContextVar[DecisionIds | None] = ContextVar("otel_ai_audit_last", default=None)


class _IdSource:
    """Unique call ids without a system call on the hot path: a random per-process prefix (new
    after fork) and a counter."""

    def __init__(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count()

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


_ids = _IdSource()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.__init__)


def new_decision_ids(count: int) -> DecisionIds:
    ids = DecisionIds(_ids.next(), count)
    _last_decisions.set(ids)
    return ids


def last_decision_ids() -> list[str]:
    """Decision ids of the last audited model call in this thread / task (for oversight,
    disputes and outcomes recorded later)."""
    ids = _last_decisions.get()
    return [] if ids is None else ids.as_list()


@dataclass(slots=True, kw_only=True)
class DecisionBatch:
    """One audited model call, expanded into records by `build()` on the writer thread.

    Keyword-only: eleven values of which several share a type. Made when the call starts;
    `outputs`, `end_time_ns`, `duration_ns` (and `error`, `context`, `described_time`) are set
    when it returns."""

    capture: CapturePolicy
    model: dict[str, Any]
    operation: str
    inputs: Any
    outputs: Any = None
    ids: DecisionIds
    end_time_ns: int
    duration_ns: int = 0
    risk: str
    risk_fn: RiskFunction | None = None
    mode: str = "per_row"
    trace: dict[str, str] = field(default_factory=dict)
    service: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    described_time: str | None = None
    error: str | None = None

    def build(self) -> list[dict[str, Any]]:
        common = {"model": self.model, "operation": self.operation, "trace": self.trace,
                  "service": self.service, "latency_ms": self.duration_ns / 1e6}
        if self.context:
            common["context"] = self.context
        if self.described_time is not None:
            common[DESCRIBED_TIME] = self.described_time
        if self.error is not None:
            return [new_event(EventType.INFERENCE, event_id=self.ids.batch_id,
                              time_ns=self.end_time_ns, error={"type": self.error},
                              input=self.capture.capture_input(rows(self.inputs)),
                              risk={"level": self.risk}, batch={"size": self.ids.count},
                              **common)]
        if self.mode == "summary" and self.ids.count > 1:
            return [self._summary(common)]
        inputs = rows(self.inputs, self.ids.count)
        outputs = rows(self.outputs, self.ids.count)
        views = monitor_views(self.model, inputs, outputs)
        events = []
        for index, decision_id in enumerate(self.ids.as_list()):
            output = outputs[index] if index < len(outputs) else None
            event = new_event(
                EventType.INFERENCE, event_id=decision_id, time_ns=self.end_time_ns,
                input=self.capture.capture_input(inputs[index] if index < len(inputs) else None),
                output=self.capture.capture_output(output),
                risk={"level": self._risk(output)},
                batch={"size": self.ids.count, "index": index},
                **common)
            if views is not None and index < len(views):
                event["monitor"] = views[index]
            events.append(event)
        return events

    def record_ids(self) -> list[str]:
        """The ids `build()` gives this call's records (one per row, or one for the call)."""
        if self.error is not None or (self.mode == "summary" and self.ids.count > 1):
            return [self.ids.batch_id]
        return self.ids.as_list()

    def _risk(self, output: Any) -> str:
        if self.risk_fn is not None:
            try:
                return str(self.risk_fn(output))
            except Exception:  # noqa: BLE001 - a user risk rule must not lose the record
                return self.risk
        return self.risk

    def _summary(self, common: dict[str, Any]) -> dict[str, Any]:
        return new_event(EventType.INFERENCE, event_id=self.ids.batch_id,
                         time_ns=self.end_time_ns, mode="summary",
                         input=self.capture.capture_input(rows(self.inputs)),
                         output=self.capture.capture_output(rows(self.outputs)),
                         risk={"level": self.risk}, batch={"size": self.ids.count}, **common)


def row_count(value: Any) -> int:
    """How many decisions a model input holds (1 for a single sample or unknown shapes)."""
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) >= 1:
        return max(int(shape[0]), 1) if len(shape) >= 2 or _is_table(value) else 1
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple, dict)):
        return len(value)
    return 1


def _is_table(value: Any) -> bool:
    return type(value).__name__ == "DataFrame"


def rows(value: Any, count: int | None = None) -> Any:
    """Split a model input or output into per-decision JSON data (all of it if count is None)."""
    if _is_numeric_array(value):
        # The usual input and output, straight to what the general path below makes of it.
        data = to_json_data(value.tolist())
        if count is None:
            return data
    else:
        value = _to_host(value)
        if count is None:
            return to_json_data(_table_records(value) if _is_table(value) else value)
        if _is_table(value):
            return _table_records(value)
        if hasattr(value, "tocsr"):
            matrix = value.tocsr()
            return [{"indices": matrix.indices[matrix.indptr[i]:matrix.indptr[i + 1]].tolist(),
                     "values": to_json_data(matrix.data[matrix.indptr[i]:matrix.indptr[i + 1]]),
                     "width": matrix.shape[1]} for i in range(matrix.shape[0])]
        if type(value).__name__ == "Series":
            return to_json_data(value.to_list())
        data = to_json_data(value)
    if not isinstance(data, list) or (count == 1 and len(data) != 1):
        return [data]
    return data


def _is_numeric_array(value: Any) -> bool:
    """A numpy array (not a subclass) of at least one dimension of booleans, integers or
    floats: `tolist()` gives its JSON data's Python values directly."""
    kind = type(value)
    return (kind.__name__ == "ndarray" and kind.__module__ == "numpy" and value.ndim > 0
            and value.dtype.kind in "biuf")


def _table_records(frame: Any) -> list[dict[str, Any]]:
    return [to_json_data(record) for record in frame.to_dict("records")]


def _to_host(value: Any) -> Any:
    """Tensors to numpy (on CPU, without gradients) so they split and serialise like arrays."""
    detach = getattr(value, "detach", None)
    if callable(detach) and hasattr(value, "cpu"):
        try:
            return detach().cpu().numpy()
        except Exception:  # noqa: BLE001
            return value
    return value
