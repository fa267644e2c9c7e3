"""Zero-code audit of the requests a FastAPI app serves on its inference routes.

Builds on opentelemetry-instrumentation-fastapi, which makes the server spans. This instrumentor
wraps `FastAPI.build_middleware_stack` on the class in `fastapi.applications` (the class the
contrib instrumentor subclasses, and whose method its per-app wrapper calls) and puts one ASGI
middleware just inside Starlette's outermost `ServerErrorMiddleware`: that is where the contrib
instrumentor looks for the rest of the stack, so the two coexist in either load order, the
middleware runs inside the server span, and each built stack holds it once. A request already
being recorded (a FastAPI app mounted in another) is not recorded again.

A request to an inference route (`OTEL_AI_AUDIT_FASTAPI_ROUTES`, default every POST) becomes:
- context on every decision a model makes while serving it (request id, route template, method,
  client pseudonym), through `otel_ai_audit.instrumentation.context`;
- one `request` record: the same fields, request and response bodies under the capture policy,
  status code, latency, error type, and the ids of the decisions made for it. Requests that
  never reached a model (validation errors, 4xx, 5xx) are on the record too.

The middleware only observes `receive` and `send`: messages pass through unchanged and in order.
"""

from __future__ import annotations

import fnmatch
import functools
import random
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otel_ai_audit import semconv
from otel_ai_audit.instrumentation.body import BodyCapture
from otel_ai_audit.instrumentation.context import current_request
from otel_ai_audit.instrumentation.model_call import (
    InstrumentationErrors,
    RuntimeSource,
    runtime_source,
)
from otel_ai_audit.processor import service_name
from otel_ai_audit.record.schema import EventType, new_event

if TYPE_CHECKING:
    from otel_ai_audit.runtime import AuditRuntime

DEFAULT_ROUTES = ("POST *",)
REQUEST_ID_HEADER = "x-request-id"
MAX_REQUEST_ID = 128


class FastAPIAuditInstrumentor(BaseInstrumentor):
    """`opentelemetry_instrumentor` entry point `fastapi_audit`.

    Instrument before the app is created (as `opentelemetry-instrument` does), like the contrib
    FastAPI instrumentor; stacks built while uninstrumented pass requests through untouched.
    `instrument()` takes `audit_runtime=` (see `otel_ai_audit.instrumentation.model_call`).
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("fastapi >= 0.110",)

    def _instrument(self, **kwargs: Any) -> None:
        from fastapi.applications import FastAPI

        wrapt.wrap_function_wrapper(FastAPI, "build_middleware_stack",
                                    _middleware_stack(runtime_source(kwargs)))

    def _uninstrument(self, **kwargs: Any) -> None:
        from fastapi.applications import FastAPI

        unwrap(FastAPI, "build_middleware_stack")


def _middleware_stack(runtime: RuntimeSource) -> Any:
    """A wrapper of `build_middleware_stack` adding the middleware, recording to `runtime()`."""

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> ASGIApp:
        stack = wrapped(*args, **kwargs)
        if isinstance(stack, ServerErrorMiddleware):
            stack.app = AuditMiddleware(stack.app, runtime)
            return stack
        return AuditMiddleware(stack, runtime)

    return wrapper


@functools.lru_cache(maxsize=8)
def route_patterns(entries: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """`[METHOD ]GLOB` entries as (method or "*", glob); fnmatch globs, where `*` also spans
    `/`. Globs rather than regular expressions, since these come as a comma-separated list."""
    patterns = []
    for entry in entries or DEFAULT_ROUTES:
        method, _, glob = entry.strip().rpartition(" ")
        patterns.append(((method.strip() or "*").upper(), glob))
    return tuple(patterns)


def is_inference_route(patterns: tuple[tuple[str, str], ...], method: str, route: str | None,
                       path: str) -> bool:
    """Does a pattern match the method and the route template (or, unrouted, the path)?"""
    target = path if route is None else route
    return any(wanted in ("*", method) and fnmatch.fnmatchcase(target, glob)
               for wanted, glob in patterns)


class AuditMiddleware:
    """ASGI middleware recording requests to inference routes; everything passes through."""

    def __init__(self, app: ASGIApp, runtime: RuntimeSource) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = _begin(scope, self.runtime)
        if exchange is None:
            await self.app(scope, receive, send)
            return
        token = current_request.set(exchange)
        try:
            await self.app(scope, exchange.receive(receive), exchange.send(send))
        except BaseException as error:
            exchange.finish(error)
            raise
        else:
            exchange.finish(None)
        finally:
            current_request.reset(token)


def _begin(scope: Scope, source: RuntimeSource) -> Exchange | None:
    if scope["type"] != "http" or current_request.get() is not None:
        return None
    runtime = source()
    if runtime is None or not FastAPIAuditInstrumentor().is_instrumented_by_opentelemetry:
        return None
    patterns = route_patterns(runtime.settings.fastapi_routes)
    if not any(wanted in ("*", scope["method"]) for wanted, _ in patterns):
        return None
    try:
        return Exchange(runtime, patterns, scope)
    except Exception:  # noqa: BLE001
        InstrumentationErrors.record("starting the request record", runtime)
        return None


class Exchange:
    """One request on its way through the app: the `InferenceRequest` its decisions see."""

    def __init__(self, runtime: AuditRuntime, patterns: tuple[tuple[str, str], ...],
                 scope: Scope) -> None:
        self.runtime = runtime
        self.patterns = patterns
        self.scope = scope
        self.started = time.time_ns()
        self.ended: int | None = None
        headers = {name.decode("latin-1").lower(): value.decode("latin-1")
                   for name, value in scope.get("headers", ())}
        supplied = headers.get(REQUEST_ID_HEADER, "")[:MAX_REQUEST_ID]
        # Not secret, only unique: no syscall (a GIL hand-off) on the request path.
        self.request_id = supplied or f"{random.getrandbits(128):032x}"
        self.client = client_identity(runtime, headers, scope)
        self.request_body = BodyCapture.request(runtime.capture, headers.get("content-type"))
        self.response_body: BodyCapture | None = None
        self.status: int | None = None
        self.decision_ids: list[str] = []
        self.span = trace.get_current_span()
        context = self.span.get_span_context()
        self.trace = ({"trace_id": f"{context.trace_id:032x}",
                       "span_id": f"{context.span_id:016x}"} if context.is_valid else {})

    def route(self) -> str | None:
        """The route template, once the app has routed the request (the router sets
        `scope["route"]`), with the prefix of the mounts it went through."""
        path = getattr(self.scope.get("route"), "path", None)
        if path is None or "app_root_path" not in self.scope:
            return path
        return self.scope["root_path"][len(self.scope["app_root_path"]):] + path

    def summary(self) -> dict[str, Any]:
        return {"id": self.request_id, "method": self.scope["method"], "route": self.route(),
                "client": self.client}

    def audited(self) -> bool:
        return is_inference_route(self.patterns, self.scope["method"], self.route(),
                                  self.scope["path"])

    def attach(self, decision_ids: list[str]) -> dict[str, Any]:
        if not self.audited():
            return {}
        self.decision_ids.extend(decision_ids)
        return {"request": self.summary()}

    def receive(self, receive: Receive) -> Receive:
        async def audited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                try:
                    self.request_body.update(message.get("body", b""))
                except Exception:  # noqa: BLE001
                    InstrumentationErrors.record("observing the request body")
            return message

        return audited_receive

    def send(self, send: Send) -> Send:
        async def audited_send(message: Message) -> None:
            try:
                self._observe(message)
            except Exception:  # noqa: BLE001
                InstrumentationErrors.record("observing the response")
            await send(message)

        return audited_send

    def _observe(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            content_type = next((value.decode("latin-1") for name, value in
                                 message.get("headers", ()) if name.lower() == b"content-type"),
                                None)
            self.response_body = BodyCapture.response(self.runtime.capture, self.status,
                                                      content_type)
        elif message["type"] == "http.response.body" and self.response_body is not None:
            self.response_body.update(message.get("body", b""))
            if not message.get("more_body", False):
                self.ended = time.time_ns()

    def finish(self, error: BaseException | None) -> None:
        """Queue the request record (when on an inference route); never raises."""
        try:
            if not self.audited():
                return
            ended = self.ended or time.time_ns()
            # An exception escaping before the response started becomes Starlette's 500.
            status = 500 if self.status is None and error is not None else self.status
            if self.span.is_recording():
                self.span.set_attribute(semconv.REQUEST_ID, self.request_id)
                if self.client:
                    self.span.set_attribute(semconv.ENDUSER_PSEUDO_ID, self.client["pseudo_id"])
            self.runtime.writer.submit(RequestRecord(
                request=self.summary(), request_body=self.request_body, status_code=status,
                response_body=self.response_body, started_ns=self.started, ended_ns=ended,
                decision_ids=list(self.decision_ids),
                error=None if error is None else type(error).__qualname__,
                trace=self.trace,
                service={"name": service_name(self.span, None, self.runtime.writer.service_name)}))
        except Exception:  # noqa: BLE001
            InstrumentationErrors.record("recording the request record", self.runtime)


def client_identity(runtime: AuditRuntime, headers: dict[str, str],
                    scope: Scope) -> dict[str, str]:
    """A keyed pseudonym of the caller: the first identity header present (the credential
    itself, so it names the credential, not the person), else the client address."""
    for name in runtime.settings.fastapi_identity_headers:
        value = headers.get(name.lower())
        if value:
            return {"pseudo_id": runtime.capture.pseudonym(f"{name.lower()}:{value}"),
                    "source": name.lower()}
    client = scope.get("client")
    if client:
        return {"pseudo_id": runtime.capture.pseudonym(f"address:{client[0]}"),
                "source": "address"}
    return {}


@dataclass
class RequestRecord:
    """The `request` record of one exchange, built on the writer thread (bodies hashed there)."""

    request: dict[str, Any]
    request_body: BodyCapture
    status_code: int | None
    response_body: BodyCapture | None
    started_ns: int
    ended_ns: int
    decision_ids: list[str]
    error: str | None
    trace: dict[str, str] = field(default_factory=dict)
    service: dict[str, Any] = field(default_factory=dict)

    def build(self) -> list[dict[str, Any]]:
        response: dict[str, Any] = {"status_code": self.status_code}
        if self.response_body is not None:
            response["body"] = self.response_body.record()
        fields: dict[str, Any] = {
            "request": {**self.request, "body": self.request_body.record()},
            "response": response, "latency_ms": (self.ended_ns - self.started_ns) / 1e6,
            "decision_ids": self.decision_ids, "trace": self.trace, "service": self.service}
        if self.error is not None:
            fields["error"] = {"type": self.error}
        return [new_event(EventType.REQUEST, time_ns=self.ended_ns, **fields)]
