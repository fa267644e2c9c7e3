"""What durability costs: an audited single-row decision at `async`, `process` and `fsync`
durability, beside a plain span exported by OTLP/HTTP (what a team already pays for tracing),
and group commit with 1, 4 and 16 concurrent callers.

Whole-process CPU per decision (the calling thread plus every background thread: writer,
exporter), over the bare call, measured in interleaved rounds until everything is persisted or
exported. The target (issue "nothing a caller was answered is lost"): `process` <= 1.5x the
plain OTLP-exported span. Stores are written under TMPDIR: fsync costs depend on its disk.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from opentelemetry.sdk.trace import TracerProvider

from benchmarks import Result
from benchmarks.otlp_baseline import otlp_traced

ROUNDS = 7
CALLS = 3000
TARGET = 1.5
CONCURRENCY = (1, 4, 16)
SECONDS = 3.0


def _per_call(action: Callable[[], Any], settle: Callable[[], Any]) -> float:
    """Whole-process CPU µs per call of `action`, including `settle` (flush)."""
    started = time.process_time_ns()
    for _ in range(CALLS):
        action()
    settle()
    return (time.process_time_ns() - started) / CALLS / 1000


def run() -> list[Result]:
    from sklearn.linear_model import LogisticRegression

    from otel_ai_audit import runtime
    from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor

    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 10))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    row = features[:1]
    with tempfile.TemporaryDirectory(prefix="otel-ai-audit-bench-") as folder, \
            otlp_traced() as traced:
        runtime.shutdown()
        spanned = traced.wrap(lambda: model.predict(row))
        provider = TracerProvider()
        audit = runtime.configure(provider, store=str(Path(folder) / "audit.db"),
                                  signing_key="ephemeral")  # measured, never verified
        instrumentor = SklearnInstrumentor()
        samples: dict[str, list[float]] = {name: [] for name in
                                           ("bare", "otlp span", "async", "process", "fsync")}
        try:
            for _ in range(ROUNDS):
                samples["bare"].append(_per_call(lambda: model.predict(row), lambda: None))
                samples["otlp span"].append(_per_call(spanned, traced.flush))
                instrumentor.instrument(tracer_provider=provider)
                for level in ("async", "process", "fsync"):
                    runtime.register_model(model, name="bench", durability=level)
                    samples[level].append(_per_call(lambda: model.predict(row),
                                                    audit.writer.flush))
                instrumentor.uninstrument()
            instrumentor.instrument(tracer_provider=provider)
            runtime.register_model(model, name="bench", durability="process")
            throughput = {threads: _concurrent(model, row, threads)
                          for threads in CONCURRENCY}
            instrumentor.uninstrument()
        finally:
            runtime.shutdown()
    median = {name: statistics.median(values) for name, values in samples.items()}
    added = {name: median[name] - median["bare"] for name in median}
    results = [Result(f"decision at {level} durability, whole-process CPU", added[level],
                      "µs added") for level in ("async", "process", "fsync")]
    results.append(Result("plain span exported by OTLP/HTTP, whole-process CPU",
                          added["otlp span"], "µs added"))
    results.append(Result("process durability / OTLP-exported span", added["process"]
                          / added["otlp span"], "x", TARGET, higher_is_better=False,
                          note=f"fsync: {added['fsync'] / added['otlp span']:.2f}x, async: "
                               f"{added['async'] / added['otlp span']:.2f}x; medians of "
                               f"{ROUNDS} interleaved rounds of {CALLS} single-row predicts"))
    for threads, rate in throughput.items():
        results.append(Result(f"group commit, {threads} concurrent caller(s)", rate,
                              "decisions/s", note="process durability, each caller waits for "
                                                  "its commit; callers share commits"))
    return results


def _concurrent(model: Any, row: Any, threads: int) -> float:
    """Decisions per second with `threads` callers scoring one row at a time."""
    done = [0] * threads
    stop = threading.Event()

    def caller(index: int) -> None:
        while not stop.is_set():
            model.predict(row)
            done[index] += 1

    workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    time.sleep(SECONDS)
    stop.set()
    for worker in workers:
        worker.join()
    return sum(done) / (time.perf_counter() - started)
