"""Hot-path cost of an audited single-row decision, side by side with a plain OTel span.

Three variants of the same single-row call run in interleaved rounds, so machine noise hits
them alike: (a) the bare call, (b) the call inside one plain OpenTelemetry span with 10
attributes (SDK tracer, no processor: the cheapest real span), (c) the call audited by the
instrumentation (span, decision batch, queue). The target compares what the caller pays on top
of the bare call: (c - a) <= 1.3 x (b - a).

"Hot path" is measured as the calling thread's CPU time. The audited call's span and records are
built later by the writer thread (`otel_ai_audit.processor.AuditSpan`), which also hashes, chains
and persists them; that work is reported beside the ratio as the whole process's CPU time per
decision, measured until the writer has persisted the round, so nothing is hidden off-thread.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from opentelemetry.sdk.trace import TracerProvider

from benchmarks import Result

ROUNDS = 12
CALLS = 1500
TARGET_RATIO = 1.3


def _measure(call: Callable[[], Any], calls: int) -> tuple[float, float]:
    """Mean (thread CPU µs, wall µs) per call."""
    cpu, wall = time.thread_time_ns(), time.perf_counter_ns()
    for _ in range(calls):
        call()
    return ((time.thread_time_ns() - cpu) / calls / 1000,
            (time.perf_counter_ns() - wall) / calls / 1000)


def _plain_span(tracer: Any, call: Callable[[], Any]) -> Callable[[], Any]:
    attributes = {f"plain.attribute_{index}": f"value-{index}" for index in range(10)}

    def spanned() -> Any:
        with tracer.start_as_current_span("predict", attributes=attributes):
            return call()

    return spanned


def _side_by_side(name: str, bare: Callable[[], Any], instrument: Callable[[], Any],
                  uninstrument: Callable[[], Any], settle: Callable[[], Any]) -> list[Result]:
    plain = _plain_span(TracerProvider().get_tracer("bench"), bare)
    samples: dict[str, list[tuple[float, float]]] = {"bare": [], "span": [], "audited": []}
    process: dict[str, list[float]] = {"bare": [], "span": [], "audited": []}
    for _ in range(ROUNDS):
        for key, call in (("bare", bare), ("span", plain)):
            started = time.process_time_ns()
            samples[key].append(_measure(call, CALLS))
            process[key].append((time.process_time_ns() - started) / CALLS / 1000)
        instrument()
        started = time.process_time_ns()
        samples["audited"].append(_measure(bare, CALLS))
        uninstrument()
        settle()  # the writer's backlog must not slow the next round's baseline
        process["audited"].append((time.process_time_ns() - started) / CALLS / 1000)
    cpu = {key: statistics.median(s[0] for s in value) for key, value in samples.items()}
    wall = {key: statistics.median(s[1] for s in value) for key, value in samples.items()}
    total = {key: statistics.median(value) for key, value in process.items()}
    cpu_ratio = (cpu["audited"] - cpu["bare"]) / (cpu["span"] - cpu["bare"])
    wall_ratio = (wall["audited"] - wall["bare"]) / (wall["span"] - wall["bare"])
    return [
        Result(f"{name}: bare call", wall["bare"], "µs/call"),
        Result(f"{name}: + plain span (10 attrs), caller CPU", cpu["span"] - cpu["bare"],
               "µs added"),
        Result(f"{name}: + audit, caller CPU", cpu["audited"] - cpu["bare"], "µs added"),
        Result(f"{name}: + audit, wall", wall["audited"] - wall["bare"], "µs added"),
        Result(f"{name}: audit/span hot-path ratio", cpu_ratio, "x", TARGET_RATIO,
               higher_is_better=False,
               note="caller-thread CPU over the bare call, audited vs plain span"),
        Result(f"{name}: audit/span wall ratio", wall_ratio, "x",
               note="the caller's wall time; the writer thread's work overlaps it"),
        Result(f"{name}: + audit, whole process CPU", total["audited"] - total["bare"],
               "µs added", note="caller and writer thread: span, records, hashing, chaining, "
               "SQLite, measured until the writer has persisted the round"),
        Result(f"{name}: + plain span, whole process CPU", total["span"] - total["bare"],
               "µs added", note="no exporter, nothing persisted"),
    ]


def _sklearn(provider: TracerProvider, settle: Callable[[], Any]) -> list[Result]:
    from sklearn.linear_model import LogisticRegression

    from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor

    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 10))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    row = features[:1]
    instrumentor = SklearnInstrumentor()
    return _side_by_side("sklearn predict 1 row", lambda: model.predict(row),
                         lambda: instrumentor.instrument(tracer_provider=provider),
                         instrumentor.uninstrument, settle)


def _torch(provider: TracerProvider, settle: Callable[[], Any]) -> list[Result]:
    import torch

    from otel_ai_audit.instrumentation.torch import TorchInstrumentor

    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 2)).eval()
    row = torch.randn(1, 10)
    instrumentor = TorchInstrumentor()

    def forward() -> Any:
        with torch.no_grad():
            return model(row)

    return _side_by_side("torch forward 1 row", forward,
                         lambda: instrumentor.instrument(tracer_provider=provider),
                         instrumentor.uninstrument, settle)


def run() -> list[Result]:
    from otel_ai_audit import runtime

    with tempfile.TemporaryDirectory(prefix="otel-ai-audit-bench-") as folder:
        runtime.shutdown()
        provider = TracerProvider()
        audit = runtime.configure(provider, store=str(Path(folder) / "audit.db"),
                                  signing_key="ephemeral")  # measured, never verified
        try:
            results = (_sklearn(provider, audit.writer.flush)
                       + _torch(provider, audit.writer.flush))
            audit.writer.flush()
            decisions = audit.writer.chain.size
            return [*results, Result("decisions recorded during the run", decisions, "records")]
        finally:
            runtime.shutdown()
