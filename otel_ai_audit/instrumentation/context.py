"""The inference request in flight, shared by the HTTP server and the model instrumentations.

The FastAPI instrumentation sets it for the duration of a request. A model call registering its
decisions reads it: the decision records carry the request's context (id, route, method, client
pseudonym) and the request record lists the decisions, so either side leads to the other. A
record is sealed when its model call ends, before the response exists, so status and latency
of the exchange live on the request record only.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol


class InferenceRequest(Protocol):
    def attach(self, decision_ids: list[str]) -> dict[str, Any]:
        """Note decisions made within the request; return the context their records carry
        (empty when the request is not on an inference route)."""


current_request: ContextVar[InferenceRequest | None] = ContextVar(
    "otel_ai_audit_request", default=None)


def request_context(decision_ids: Callable[[], list[str]]) -> dict[str, Any]:
    """The context for records of decisions made now: empty outside an inference request.

    `decision_ids` is only called inside a request (model calls outside one pay nothing).
    """
    request = current_request.get()
    return {} if request is None else request.attach(decision_ids())
