"""Drift computation for 1,000,000 decisions x 14 features (UCI Adult), three ways:

* from in-memory codes (a decisions x features matrix of bins/categories): the statistics
  themselves, one `bincount` and 15 comparisons;
* from the decisions' monitoring views as Python data (what a reader holds after parsing);
* from an embedded store, end to end (read, parse, group, compare), on STORE_DECISIONS
  decisions written by the real writer, reported as decisions per second.

And what the monitoring view costs an online model: the single-row scikit-learn call of
`bench_instrumentation`, audited with and without a reference profile, side by side in one
run: the caller's CPU must not change (the view is built on the writer thread), the whole
process's shows the writer's extra work.

The decisions are the UCI Adult test split resampled with replacement, so the numbers are
those of real bins and categories.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import Result

DECISIONS = 1_000_000
STORE_DECISIONS = 100_000


def _setup() -> tuple[object, np.ndarray]:
    from otel_ai_audit.datasets.adult import (
        CATEGORICAL,
        NUMERIC,
        TARGET,
        adult_pipeline,
        load_split,
    )
    from otel_ai_audit.monitoring.profile import build_profile

    features = NUMERIC + CATEGORICAL
    train, test = load_split("train").frame, load_split("test").frame
    model = adult_pipeline().fit(train[features], train[TARGET])
    profile = build_profile("bench", train[features], model.predict(train[features]),
                            classes=model.classes_)
    sample = test.sample(DECISIONS, replace=True, random_state=0)
    sample = sample.assign(prediction=model.predict(sample[features]))
    columns = [*features, "prediction"]
    codes = np.column_stack([item.codes(sample[name].tolist())
                             for item, name in zip(profile.all_profiles(), columns, strict=True)])
    return profile, codes


def _views(profile: object, codes: np.ndarray) -> list[dict[str, object]]:
    items = profile.all_profiles()  # type: ignore[attr-defined]
    columns = [[item.view(code) for code in codes[:, index].tolist()]
               for index, item in enumerate(items)]
    names = [item.name for item in items[:-1]]
    return [{"profile": profile.id,  # type: ignore[attr-defined]
             "features": {name: columns[index][row] for index, name in enumerate(names)},
             "prediction": columns[-1][row]} for row in range(len(codes))]


def _store_rate(profile: object, views: list[dict[str, object]]) -> float:
    from otel_ai_audit.integrity.keys import SigningKey
    from otel_ai_audit.monitoring.drift import drift
    from otel_ai_audit.monitoring.profile import reference_event
    from otel_ai_audit.monitoring.records import StoreEvents
    from otel_ai_audit.pipeline.writer import AuditWriter
    from otel_ai_audit.record.schema import EventType, new_event
    from otel_ai_audit.store.sqlite import AuditStore

    model = {"name": "adult-income", "version": "1", "fingerprint": "bench"}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audit.db"
        writer = AuditWriter(str(path), SigningKey.generate(), checkpoint_interval=3600.0)
        writer.submit(reference_event(profile, model))  # type: ignore[arg-type]
        start = time.time_ns()
        for view in views[:STORE_DECISIONS]:
            writer.submit(new_event(EventType.INFERENCE, model=model, monitor=view,
                                    input={"policy": "hash", "hmac_sha256": "0" * 64},
                                    output={"policy": "full", "value": view["prediction"]},
                                    risk={"level": "high"}))
        assert writer.close()
        from otel_ai_audit.monitoring.records import record_time

        with AuditStore(path, create=False, readonly=True) as store:
            began = time.perf_counter()
            (report,) = drift(StoreEvents(store), "adult-income", record_time(start),
                              record_time(time.time_ns()))
            elapsed = time.perf_counter() - began
        assert report.decisions == STORE_DECISIONS
    return STORE_DECISIONS / elapsed


def _hot_path(profiled: bool) -> list[Result]:
    """What an audited single-row decision costs with and without a reference profile (the
    monitoring view binned on the writer thread), measured as bench_instrumentation does."""
    from opentelemetry.sdk.trace import TracerProvider
    from sklearn.linear_model import LogisticRegression

    from benchmarks.bench_instrumentation import _side_by_side
    from benchmarks.otlp_baseline import otlp_traced
    from otel_ai_audit import runtime
    from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor

    features = np.random.default_rng(0).normal(size=(500, 10))
    with tempfile.TemporaryDirectory(prefix="otel-ai-audit-bench-") as folder, \
            otlp_traced() as traced:
        runtime.shutdown()
        provider = TracerProvider()
        audit = runtime.configure(provider, store=str(Path(folder) / "audit.db"),
                                  signing_key="ephemeral")  # measured, never verified
        try:
            model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
            if profiled:
                runtime.register_reference(model, features, model.predict(features),
                                           classes=model.classes_)
            row = features[:1]
            measured = _side_by_side(
                f"sklearn 1 row, {'with' if profiled else 'no'} reference profile", model,
                lambda: model.predict(row), SklearnInstrumentor(), provider,
                audit.writer.flush, traced)
        finally:
            runtime.shutdown()
    return [result for result in measured if "+ audit" in result.name
            and result.name.endswith(("whole process CPU", "caller CPU"))]


def run() -> list[Result]:
    from otel_ai_audit.monitoring.drift import codes_of_views, drift_of_codes

    profile, codes = _setup()
    features = len(profile.features)  # type: ignore[attr-defined]
    drift_of_codes(profile, codes[:1000])  # type: ignore[arg-type]  # imports scipy
    began = time.perf_counter()
    results = drift_of_codes(profile, codes)  # type: ignore[arg-type]
    in_memory = time.perf_counter() - began
    assert len(results) == features + 1
    views = _views(profile, codes)
    began = time.perf_counter()
    drift_of_codes(profile, codes_of_views(profile, views))  # type: ignore[arg-type]
    from_views = time.perf_counter() - began
    label = f"drift {DECISIONS:,} x {features} features"
    return [
        Result(f"{label}: from codes", in_memory * 1000, "ms", higher_is_better=False,
               note="one bincount over the code matrix, then PSI/KS/chi2/JS per feature"),
        Result(f"{label}: from codes", DECISIONS / in_memory, "decisions/s"),
        Result(f"{label}: from monitoring views", from_views, "s", higher_is_better=False,
               note="views as parsed Python dicts to codes, then the same"),
        Result(f"drift from the embedded store ({STORE_DECISIONS:,} decisions)",
               _store_rate(profile, views), "decisions/s",
               note="read, parse canonical JSON, group, code, compare"),
        *_hot_path(profiled=False),
        *_hot_path(profiled=True),
    ]
