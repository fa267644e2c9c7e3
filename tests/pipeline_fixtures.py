"""Helpers of the pipeline tests (sampling, queue policy, metrics): a real scikit-learn model
audited in-process, and readers of what the store holds beyond the chain."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.integrity.checkpoint import Checkpoint
from otel_ai_audit.store.sqlite import AuditStore, HeldRecord
from tests.instrumentation_fixtures import AuditedProcess, instrumented


@contextmanager
def audited_sklearn(tmp_path: Path, **settings: Any) -> Iterator[AuditedProcess]:
    """An audit runtime configured with `settings`, scikit-learn instrumented into it."""
    with instrumented(tmp_path, SklearnInstrumentor, **settings) as process:
        yield process


def trained_model(seed: int) -> tuple[LogisticRegression, np.ndarray]:
    """A logistic regression fitted on synthetic data, and 1,000 fresh rows to score."""
    features, labels = make_classification(n_samples=2000, n_features=6, n_informative=4,
                                           random_state=seed)
    model = LogisticRegression(max_iter=500).fit(features[:1000], labels[:1000])
    return model, features[1000:]


def risk_of(probabilities: Any) -> str:
    """Risk of one scored row (a `predict_proba` row): the likelier the positive class, the
    higher the risk."""
    score = float(probabilities[1])
    if score >= 0.95:
        return "critical"
    if score >= 0.8:
        return "high"
    return "medium" if score >= 0.5 else "low"


def held_rows(store: Path) -> dict[str, HeldRecord]:
    """The holding table, by decision id."""
    with closing(sqlite3.connect(store)) as db:
        rows = db.execute("SELECT record_id, chain_id, held_at, expires, data FROM held")
        return {row[0]: HeldRecord(*row) for row in rows}


def signed_checkpoints(store: Path) -> list[Checkpoint]:
    """Every chain's checkpoints in order (their signatures are checked by `verify()`)."""
    with AuditStore(store, create=False, readonly=True) as audit_store:
        return [Checkpoint.from_payload(signed.payload) for chain in audit_store.chain_ids()
                for signed in audit_store.checkpoints(chain)]
