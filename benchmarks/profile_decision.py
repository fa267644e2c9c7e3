"""A loop of default-configured audited decisions to profile: single-row scikit-learn
predicts of a high-risk model (so `process` durable), the whole process sampled, e.g.

    pip install py-spy
    py-spy record -r 250 -o flame.svg -- python -m benchmarks.profile_decision 20000

The flame graphs in docs/images/flamegraph-decision-*.svg were taken this way.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from opentelemetry.sdk.trace import TracerProvider
from sklearn.linear_model import LogisticRegression

from otel_ai_audit import runtime
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor


def main(calls: int) -> None:
    features = np.random.default_rng(0).normal(size=(500, 10))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    row = features[:1]
    provider = TracerProvider()
    with tempfile.TemporaryDirectory(prefix="otel-ai-audit-profile-") as folder:
        audit = runtime.configure(provider, store=str(Path(folder) / "audit.db"),
                                  signing_key="ephemeral")  # profiled, never verified
        SklearnInstrumentor().instrument(tracer_provider=provider)
        try:
            for _ in range(calls):
                model.predict(row)
            audit.writer.flush()
        finally:
            runtime.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
