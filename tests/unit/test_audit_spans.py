"""The spans of audited calls, and the trail's independence from trace sampling.

Audit spans are emitted by the writer thread with the call's own times and parent; the records
never depend on whether the trace was sampled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from sklearn.linear_model import LogisticRegression

from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.instrumentation.torch import TorchInstrumentor
from otel_ai_audit.semconv import DECISION_ID, ERROR_TYPE, EVENT_TYPE
from tests.instrumentation_fixtures import instrumented


def _model() -> tuple[LogisticRegression, np.ndarray]:
    features = np.random.default_rng(3).normal(size=(60, 4))
    return LogisticRegression().fit(features, features[:, 0] > 0), features


@pytest.mark.parametrize("durability", ["async", "process"])
@pytest.mark.parametrize("sampler", [ALWAYS_OFF, ParentBased(TraceIdRatioBased(0.01))],
                         ids=["always_off", "parentbased_traceidratio_0.01"])
def test_every_decision_is_recorded_whatever_the_trace_sampler(tmp_path: Path, sampler: object,
                                                               durability: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)  # type: ignore[arg-type]
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    model, features = _model()
    with instrumented(tmp_path, SklearnInstrumentor, tracer_provider=provider,
                      durability=durability) as audited:
        for start in range(0, 50, 5):
            model.predict(features[start:start + 5])
        inferences = audited.events("inference")
        report = audited.verify()
    assert len(inferences) == 50
    assert all(len(event["trace"]["trace_id"]) == 32 for event in inferences)
    assert report.ok, report.findings
    assert len(exporter.get_finished_spans()) <= 2  # sampled out (1% may keep one)


@pytest.mark.parametrize("durability", ["async", "process"])
def test_span_has_the_calls_parent_times_and_attributes(tmp_path: Path, durability: str) -> None:
    """A `process` durable caller builds its records itself and leaves the span to the writer
    thread: the span still gets the ids the records carry."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    model, features = _model()
    with instrumented(tmp_path, SklearnInstrumentor, tracer_provider=provider,
                      durability=durability) as audited:
        with provider.get_tracer("app").start_as_current_span("handle request") as parent:
            model.predict(features[:3])
            model.predict(features[3:4])  # a root span's trace id is chosen for it too
        model.predict(features[4:5])
        audited.runtime.writer.flush()
        inferences = audited.events("inference")
    finished = exporter.get_finished_spans()
    spans = {span.name: span for span in finished}
    parent_span = spans["handle request"]
    audit_span = min((span for span in finished if span.name == "sklearn predict"),
                     key=lambda span: span.start_time)
    assert [span.name for span in finished].count("sklearn predict") == 3
    assert {(span.context.trace_id, span.context.span_id) for span in finished
            if span.name == "sklearn predict"} == {
        (int(event["trace"]["trace_id"], 16), int(event["trace"]["span_id"], 16))
        for event in inferences}
    assert finished[-1].parent is None and finished[-1].context.trace_id != \
        parent_span.context.trace_id
    assert audit_span.parent is not None
    assert audit_span.parent.span_id == parent.get_span_context().span_id
    assert audit_span.context.trace_id == parent_span.context.trace_id
    assert parent_span.start_time <= audit_span.start_time <= audit_span.end_time
    assert audit_span.end_time <= parent_span.end_time
    assert audit_span.attributes[EVENT_TYPE] == "inference"
    assert [event["trace"] for event in inferences[:3]] == [{
        "trace_id": f"{audit_span.context.trace_id:032x}",
        "span_id": f"{audit_span.context.span_id:016x}"}] * 3
    assert audit_span.attributes[DECISION_ID] == inferences[0]["id"].rsplit(".", 1)[0]
    latency_ms = (audit_span.end_time - audit_span.start_time) / 1e6
    assert inferences[0]["latency_ms"] == pytest.approx(latency_ms)


class Failing(torch.nn.Module):
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        raise ValueError("bad shape")


def test_a_failed_call_has_an_error_span_and_an_error_record(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with instrumented(tmp_path, TorchInstrumentor, tracer_provider=provider) as audited:
        with pytest.raises(ValueError, match="bad shape"), torch.no_grad():
            Failing().eval()(torch.zeros(1, 2))
        inferences = audited.events("inference")
    (span,) = exporter.get_finished_spans()
    assert span.attributes[ERROR_TYPE] == "ValueError"
    assert span.status.description == "bad shape"
    assert inferences[0]["error"] == {"type": "ValueError"}


class _Delegating:
    """A tracer that is not the SDK's (no id generator to preset), in front of one that is:
    what `trace.ProxyTracer` is before and after the global provider is set."""

    def __init__(self, tracer: Any) -> None:
        self._tracer = tracer

    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        return self._tracer.start_span(*args, **kwargs)


def test_a_durable_call_through_a_tracer_without_preset_ids_emits_its_span_once(
        tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    model, features = _model()
    with instrumented(tmp_path, SklearnInstrumentor, tracer_provider=provider,
                      durability="process") as audited:
        instrumentor = SklearnInstrumentor()  # the instrumentor is a singleton: the one in use
        tracer = instrumentor._tracer
        instrumentor._tracer = _Delegating(tracer)  # type: ignore[assignment]
        try:
            model.predict(features[:1])
            model.predict(features[1:2])
            audited.runtime.writer.flush()
        finally:
            instrumentor._tracer = tracer
        inferences = audited.events("inference")
    spans = [span for span in exporter.get_finished_spans() if span.name == "sklearn predict"]
    assert len(spans) == 2
    assert {f"{span.context.span_id:016x}" for span in spans} == {
        event["trace"]["span_id"] for event in inferences}


@pytest.mark.parametrize("durability", ["async", "process"])
def test_a_span_nothing_would_receive_is_not_built_and_its_records_keep_ids(
        tmp_path: Path, durability: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With only the audit processor on the provider, building the span is pure cost; once an
    exporter is added, spans are emitted again with the ids their records carry."""
    started: list[str] = []
    start_span = Tracer.start_span

    def counted(self: Tracer, name: str, *args: Any, **kwargs: Any) -> Any:
        started.append(name)
        return start_span(self, name, *args, **kwargs)

    monkeypatch.setattr(Tracer, "start_span", counted)
    provider = TracerProvider()
    model, features = _model()
    with instrumented(tmp_path, SklearnInstrumentor, tracer_provider=provider,
                      durability=durability) as audited:
        model.predict(features[:3])
        audited.runtime.writer.flush()
        assert started == []
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        model.predict(features[3:4])
        audited.runtime.writer.flush()
        inferences = audited.events("inference")
        report = audited.verify()
    assert report.ok, report.findings
    assert len({event["trace"]["span_id"] for event in inferences[:3]}) == 1
    assert all(len(event["trace"]["trace_id"]) == 32 for event in inferences)
    assert [(f"{span.context.span_id:016x}") for span in exporter.get_finished_spans()] == [
        inferences[3]["trace"]["span_id"]]
