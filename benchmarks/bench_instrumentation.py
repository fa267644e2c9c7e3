"""Hot-path cost of an audited single-row decision (scikit-learn and PyTorch), side by side with
a plain OpenTelemetry span exported by OTLP/HTTP (`benchmarks.otlp_baseline`).

Three variants of the same single-row call run in interleaved rounds, so machine noise hits
them alike: (a) the bare call, (b) the call inside a plain span with 10 attributes, exported
through a BatchSpanProcessor to a loopback receiver, (c) the call audited by the
instrumentation. Each is measured as the calling thread's CPU and as the whole process's CPU
(every thread: the audit writer, the span exporter) until everything is persisted or exported,
for the default (a high-risk model: `process` durable) and for an `async` durable model.
The targets (issue "auditing cheaper than ordinary tracing") compare what each adds to the bare
call: whole process (c - a) <= 0.5 x (b - a), calling thread <= 0.3 x, each ratio taken within a
round and the median of the rounds judged (the µs figures are medians of each variant).
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
from benchmarks.otlp_baseline import Traced, otlp_traced
from otel_ai_audit.pipeline.writer import Durability

ROUNDS = 8
CALLS = 1500
WHOLE_TARGET = 0.5
CALLER_TARGET = 0.3
CALLER, WALL, WHOLE = 0, 1, 2
"""The columns of a sample (`_measure`)."""


def _measure(call: Callable[[], Any], settle: Callable[[], Any]) -> tuple[float, float, float]:
    """Mean (calling thread's CPU µs, wall µs, whole process's CPU µs until `settle` returns)
    per call."""
    process, cpu, wall = time.process_time_ns(), time.thread_time_ns(), time.perf_counter_ns()
    for _ in range(CALLS):
        call()
    cpu, wall = time.thread_time_ns() - cpu, time.perf_counter_ns() - wall
    settle()
    return (cpu / CALLS / 1000, wall / CALLS / 1000,
            (time.process_time_ns() - process) / CALLS / 1000)


LEVELS: dict[str, Durability | None] = {"audit, high risk (process durable)": None,
                                        "audit, async durable": "async"}
"""The default (None: the configured `auto`, for the default risk, high), and what a
lower-risk model pays."""


def _side_by_side(name: str, model: Any, bare: Callable[[], Any], instrumentor: Any,
                  provider: TracerProvider, settle: Callable[[], Any],
                  traced: Traced) -> list[Result]:
    from otel_ai_audit import runtime

    samples: dict[str, list[tuple[float, float, float]]] = {
        key: [] for key in ("bare", "span", *LEVELS)}
    spanned = traced.wrap(bare)
    for _ in range(ROUNDS):
        samples["bare"].append(_measure(bare, lambda: None))
        samples["span"].append(_measure(spanned, traced.flush))
        instrumentor.instrument(tracer_provider=provider)
        for label, level in LEVELS.items():
            runtime.register_model(model, name="bench", durability=level)
            samples[label].append(_measure(bare, settle))
        instrumentor.uninstrument()
    added = {key: [statistics.median(sample[column] for sample in value)
                   - statistics.median(sample[column] for sample in samples["bare"])
                   for column in range(3)] for key, value in samples.items()}
    caller, wall, whole = CALLER, WALL, WHOLE
    span = added["span"][whole]
    results = [
        Result(f"{name}: bare call", statistics.median(s[wall] for s in samples["bare"]),
               "µs/call"),
        Result(f"{name}: + OTLP-exported span, whole process CPU", span, "µs added",
               note="span, BatchSpanProcessor, protobuf, HTTP to loopback"),
    ]
    for label in LEVELS:
        results += [
            Result(f"{name}: + {label}, whole process CPU", added[label][whole], "µs added",
                   note="caller and writer thread: records, hashing, chaining, SQLite, "
                        "measured until the writer has persisted the round"),
            Result(f"{name}: + {label}, caller CPU", added[label][caller], "µs added"),
            Result(f"{name}: + {label}, wall", added[label][wall], "µs added"),
            _paired_ratio(f"{name}: {label} / OTLP span, whole process", samples, label, whole,
                          WHOLE_TARGET, ""),
            _paired_ratio(f"{name}: {label}, caller / OTLP span", samples, label, caller,
                          CALLER_TARGET, "what the calling thread pays, against all a traced "
                                         "call costs; "),
        ]
    return results


def _paired_ratio(name: str, samples: dict[str, list[tuple[float, float, float]]], label: str,
                  column: int, target: float, note: str) -> Result:
    """The median over rounds of what `label` adds (in `column`) to that round's bare call,
    divided by what the exported span adds to it (whole process) in the same round: the rounds
    interleave the variants, so a machine that speeds up or slows down between rounds moves
    both sides of each ratio, not one."""
    ratios = [(audited[column] - bare[column]) / (span[WHOLE] - bare[WHOLE])
              for bare, span, audited in zip(samples["bare"], samples["span"], samples[label],
                                             strict=True)]
    return Result(name, statistics.median(ratios), "x", target, higher_is_better=False,
                  note=f"{note}per-round ratios " + ", ".join(f"{r:.2f}" for r in ratios))


def _sklearn(provider: TracerProvider, settle: Callable[[], Any],
             traced: Traced) -> list[Result]:
    from sklearn.linear_model import LogisticRegression

    from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor

    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 10))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    row = features[:1]
    return _side_by_side("sklearn predict 1 row", model, lambda: model.predict(row),
                         SklearnInstrumentor(), provider, settle, traced)


def _torch(provider: TracerProvider, settle: Callable[[], Any],
           traced: Traced) -> list[Result]:
    import torch

    from otel_ai_audit.instrumentation.torch import TorchInstrumentor

    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 2)).eval()
    row = torch.randn(1, 10)

    def forward() -> Any:
        with torch.no_grad():
            return model(row)

    return _side_by_side("torch forward 1 row", model, forward, TorchInstrumentor(),
                         provider, settle, traced)


def run() -> list[Result]:
    from otel_ai_audit import runtime

    with tempfile.TemporaryDirectory(prefix="otel-ai-audit-bench-") as folder, \
            otlp_traced() as traced:
        runtime.shutdown()
        provider = TracerProvider()
        audit = runtime.configure(provider, store=str(Path(folder) / "audit.db"),
                                  signing_key="ephemeral")  # measured, never verified
        try:
            results = (_sklearn(provider, audit.writer.flush, traced)
                       + _torch(provider, audit.writer.flush, traced))
            audit.writer.flush()
            decisions = audit.writer.chain.size
            return [*results, Result("decisions recorded during the run", decisions, "records")]
        finally:
            runtime.shutdown()
