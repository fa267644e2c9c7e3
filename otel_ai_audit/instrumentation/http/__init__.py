"""Zero-code audit of calls to remote models over HTTP, made with `requests` or `httpx`.

Wraps `requests.Session.send`, `httpx.Client.send` and `httpx.AsyncClient.send`, which every
request of these libraries goes through (only the outermost send is recorded, so a redirected
call is one decision). A call whose URL matches `OTEL_AI_AUDIT_HTTP_MODEL_URLS` is one
`inference` decision of a remote model: payload and response under the capture policy, status
code, latency, error type. Other calls pass straight through.

Request and response are never altered, and no header (not even `traceparent`) is added. The
response body is read only when the library has already read it: with `stream=False`, the
default of both libraries, `send` loads the content before returning it, so reading it again is
free and consumes nothing. A streamed response (`stream=True`, `httpx.Client.stream`) belongs to
the caller: reading it would consume it, and wrapping its iterators would change the object the
caller gets, so its record holds the status but no body (`"streamed": true`). A streamed upload
(generator or file body) is recorded the same way.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import re
import time
from collections.abc import Callable, Collection
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import wrapt
from opentelemetry import context, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
)
from opentelemetry.semconv.attributes.url_attributes import URL_FULL

from otel_ai_audit import semconv
from otel_ai_audit.decisions import new_decision_ids
from otel_ai_audit.instrumentation.body import BodyCapture, UnseenBody, response_mode
from otel_ai_audit.instrumentation.context import request_context
from otel_ai_audit.instrumentation.model_call import (
    InstrumentationErrors,
    RuntimeSource,
    runtime_source,
)
from otel_ai_audit.processor import AuditSpan
from otel_ai_audit.record.schema import EventType, new_event
from otel_ai_audit.version import __version__

if TYPE_CHECKING:
    from otel_ai_audit.runtime import AuditRuntime

FRAMEWORK = "http"
STREAMED = object()  # a body the library streams: not observed
_NAME = re.compile(r"[\w.\-]+")

_in_call: ContextVar[bool] = ContextVar("otel_ai_audit_http_call", default=False)

# A request as (method, URL, body or STREAMED, content type)
Describe = Callable[[Any], tuple[str, str, Any, str | None]]
# A response as (status, body or None when streamed, content type)
Outcome = Callable[[], tuple[int, bytes | None, str | None]]


class HTTPInferenceInstrumentor(BaseInstrumentor):
    """`opentelemetry_instrumentor` entry point `http_inference`.

    Instruments whichever of `requests` and `httpx` is installed, so it declares neither as a
    dependency (`instrumentation_dependencies` would demand both). `instrument()` takes
    `tracer_provider=` and `audit_runtime=` (see `otel_ai_audit.instrumentation.model_call`).
    """

    _patched: list[tuple[type, str]] = []

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        tracer = trace.get_tracer(__name__, __version__,
                                  tracer_provider=kwargs.get("tracer_provider"))
        runtime = runtime_source(kwargs)
        self._patched = []
        for module, owner_name, factory, describe, streams in TARGETS:
            try:
                owner = getattr(importlib.import_module(module), owner_name)
            except ImportError:
                continue
            wrapt.wrap_function_wrapper(owner, "send",
                                        factory(tracer, runtime, describe, streams))
            self._patched.append((owner, "send"))

    def _uninstrument(self, **kwargs: Any) -> None:
        for owner, name in self._patched:
            unwrap(owner, name)
        self._patched = []


@functools.lru_cache(maxsize=8)
def model_endpoints(entries: tuple[str, ...]) -> tuple[tuple[str, str | None], ...]:
    """`[NAME=]GLOB` entries as (glob, name or None). A URL holds `://` before any `=`, so a
    prefix up to the first `=` made of name characters only is a name."""
    endpoints = []
    for entry in entries:
        name, separator, glob = entry.strip().partition("=")
        if separator and _NAME.fullmatch(name.strip()):
            endpoints.append((glob.strip(), name.strip()))
        else:
            endpoints.append((entry.strip(), None))
    return tuple(endpoints)


def match_model(entries: tuple[str, ...], url: str) -> tuple[str, str] | None:
    """(model name, recorded URL) when the URL is a configured model endpoint. The URL is
    matched and recorded as `scheme://host[:port]/path`: never its user info, query or
    fragment, which can hold credentials or personal data."""
    parts = urlsplit(url)
    location = parts.netloc.rpartition("@")[2].lower()
    endpoint = f"{parts.scheme.lower()}://{location}{parts.path}"
    for glob, name in model_endpoints(entries):
        if fnmatch.fnmatchcase(endpoint, glob):
            return name or f"{location}{parts.path}", endpoint
    return None


def _begin(tracer: trace.Tracer, source: RuntimeSource, request: Any,
           describe: Describe) -> RemoteCall | None:
    runtime = source()
    if runtime is None or _in_call.get() or not runtime.settings.http_model_urls:
        return None
    try:
        method, url, body, content_type = describe(request)
        target = match_model(runtime.settings.http_model_urls, url)
        if target is None:
            return None
        return RemoteCall(tracer, runtime, method, *target, body, content_type)
    except Exception:  # noqa: BLE001
        InstrumentationErrors.record("preparing the remote inference record", runtime)
        return None


class RemoteCall:
    """One call to a remote model, from `send` to its response (or error)."""

    def __init__(self, tracer: trace.Tracer, runtime: AuditRuntime, method: str, name: str,
                 url: str, body: Any, content_type: str | None) -> None:
        self.runtime = runtime
        self.started = time.time_ns()
        ids = new_decision_ids(1)
        risk = runtime.settings.default_risk
        request_body: BodyCapture | UnseenBody = UnseenBody(runtime.capture.inputs)
        if body is not STREAMED:
            request_body = BodyCapture.request(runtime.capture, content_type)
            request_body.update(body.encode() if isinstance(body, str) else body or b"")
        self.record = RemoteDecision(
            decision_id=ids.batch_id, model={"name": name, "framework": FRAMEWORK,
                                             "endpoint": url},
            method=method, request_body=request_body, risk=risk)
        self.audit = AuditSpan(tracer, f"{FRAMEWORK} {method}", context.get_current(),
                               self.started, {
            semconv.EVENT_TYPE: EventType.INFERENCE.value,
            semconv.MODEL_NAME: name,
            semconv.MODEL_FRAMEWORK: FRAMEWORK,
            semconv.OPERATION: method,
            semconv.DECISION_ID: ids.batch_id,
            semconv.DECISION_COUNT: 1,
            semconv.RISK_LEVEL: risk,
            HTTP_REQUEST_METHOD: method,
            URL_FULL: url,
        }, self.record, runtime.writer.service_name)

    def end(self, outcome: Outcome | None = None, error: BaseException | None = None) -> None:
        """Queue the record and its span for the writer; never raises."""
        try:
            record = self.record
            record.end_time_ns = time.time_ns()
            record.duration_ns = record.end_time_ns - self.started
            if outcome is not None:
                status, content, content_type = outcome()
                record.status_code = status
                self.audit.attributes[HTTP_RESPONSE_STATUS_CODE] = status
                if content is None:
                    record.response_body = UnseenBody(response_mode(self.runtime.capture, status))
                else:
                    body = BodyCapture.response(self.runtime.capture, status, content_type)
                    body.update(content)
                    record.response_body = body
                if status >= 400:
                    record.error = str(status)
            if error is not None:
                record.error = type(error).__qualname__
            if record.error is not None:
                self.audit.attributes[semconv.ERROR_TYPE] = record.error
                self.audit.error = record.error
            record.context = request_context(lambda: [record.decision_id])
            self.audit.end_ns = record.end_time_ns
            risk = str(self.audit.attributes[semconv.RISK_LEVEL])
            self.runtime.processor.audit(self.audit,
                                         self.runtime.durability(None, risk))
        except Exception:  # noqa: BLE001
            InstrumentationErrors.record("recording the remote inference record", self.runtime)


@dataclass
class RemoteDecision:
    """The `inference` record of one remote model call, built on the writer thread."""

    decision_id: str
    model: dict[str, Any]
    method: str
    request_body: BodyCapture | UnseenBody
    risk: str
    end_time_ns: int = 0
    duration_ns: int = 0
    status_code: int | None = None
    response_body: BodyCapture | UnseenBody | None = None
    error: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    trace: dict[str, str] = field(default_factory=dict)
    service: dict[str, Any] = field(default_factory=dict)

    def build(self) -> list[dict[str, Any]]:
        fields: dict[str, Any] = {
            "model": self.model, "operation": self.method, "input": self.request_body.record(),
            "http": {"method": self.method, "status_code": self.status_code},
            "risk": {"level": self.risk}, "batch": {"size": 1, "index": 0},
            "latency_ms": self.duration_ns / 1e6, "trace": self.trace, "service": self.service}
        if self.response_body is not None:
            fields["output"] = self.response_body.record()
        if self.context:
            fields["context"] = self.context
        if self.error is not None:
            fields["error"] = {"type": self.error}
        return [new_event(EventType.INFERENCE, event_id=self.decision_id,
                          time_ns=self.end_time_ns, **fields)]


def _requests_request(request: Any) -> tuple[str, str, Any, str | None]:
    body = request.body
    if body is not None and not isinstance(body, (bytes, str)):
        body = STREAMED
    return request.method, request.url, body, request.headers.get("content-type")


def _httpx_request(request: Any) -> tuple[str, str, Any, str | None]:
    import httpx

    try:
        body: Any = request.content
    except httpx.RequestNotRead:
        body = STREAMED
    return request.method, str(request.url), body, request.headers.get("content-type")


def _outcome(response: Any, streamed: bool) -> Outcome:
    return lambda: (response.status_code, None if streamed else response.content,
                    response.headers.get("content-type"))


def _send(tracer: trace.Tracer, runtime: RuntimeSource, describe: Describe,
          streams: Callable[[Any], bool]) -> Any:
    """A wrapper of a synchronous `send`; `streams(client)` is its default for `stream`."""

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        call = _begin(tracer, runtime, args[0] if args else kwargs.get("request"), describe)
        if call is None:
            return wrapped(*args, **kwargs)
        token = _in_call.set(True)
        try:
            response = wrapped(*args, **kwargs)
        except BaseException as error:
            call.end(error=error)
            raise
        finally:
            _in_call.reset(token)
        call.end(_outcome(response, kwargs.get("stream", streams(instance))))
        return response

    return wrapper


def _async_send(tracer: trace.Tracer, runtime: RuntimeSource, describe: Describe,
                streams: Callable[[Any], bool]) -> Any:
    """The same for an asynchronous `send`."""

    async def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
        call = _begin(tracer, runtime, args[0] if args else kwargs.get("request"), describe)
        if call is None:
            return await wrapped(*args, **kwargs)
        token = _in_call.set(True)
        try:
            response = await wrapped(*args, **kwargs)
        except BaseException as error:
            call.end(error=error)
            raise
        finally:
            _in_call.reset(token)
        call.end(_outcome(response, kwargs.get("stream", streams(instance))))
        return response

    return wrapper


def _never(client: Any) -> bool:
    return False


# (module, client class, wrapper factory, how to read a request, the client's default `stream`)
TARGETS: tuple[tuple[str, str, Any, Describe, Callable[[Any], bool]], ...] = (
    ("requests.sessions", "Session", _send, _requests_request, lambda session: session.stream),
    ("httpx", "Client", _send, _httpx_request, _never),
    ("httpx", "AsyncClient", _async_send, _httpx_request, _never),
)
