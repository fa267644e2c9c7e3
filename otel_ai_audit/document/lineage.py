"""Data lineage of a model card: what data went in, in what state, and through which steps.

A data set is identified twice: by the SHA-256 of its file (what a reviewer can check against
a published checksum) and by the fingerprint the scikit-learn instrumentation records at `fit`
(`data_fingerprint` of the frame the model saw). Both in one place prove that the file named
in the card is the data of the recorded training run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from otel_ai_audit.datasets.source import DataSource
from otel_ai_audit.instrumentation.sklearn import data_fingerprint


@dataclass(frozen=True)
class ColumnFacts:
    name: str
    dtype: str
    missing: int


@dataclass(frozen=True)
class DatasetFacts:
    """A data set as the card describes it; `features`/`target` as `data_fingerprint` gives."""

    source: str | None
    sha256: str | None
    rows: int
    columns: list[ColumnFacts]
    features: dict[str, Any] | None
    target: dict[str, Any] | None


@dataclass(frozen=True)
class PipelineStep:
    """One transformation (or the final estimator): where it sits, what it does, on what."""

    path: str
    operation: str
    columns: list[str] | None


def describe_dataset(frame: pd.DataFrame, features: Sequence[str], label: str,
                     source: str | Path | DataSource | None = None) -> DatasetFacts:
    """Rows, columns, missing values per column, fingerprints and (given) the file's SHA-256."""
    named = DataSource.of(source) if source is not None else None
    return DatasetFacts(
        source=named.name if named is not None else None,
        sha256=named.sha256 if named is not None else None,
        rows=len(frame),
        columns=[ColumnFacts(str(name), str(frame[name].dtype), int(frame[name].isna().sum()))
                 for name in frame.columns],
        features=data_fingerprint(frame[list(features)]),
        target=data_fingerprint(frame[label]))


def model_structure(model: Any) -> list[PipelineStep]:
    """The steps of a Pipeline (through ColumnTransformers and nested Pipelines), each with the
    input columns it applies to, then the final estimator.

    Operations are scikit-learn's own repr, which shows only the parameters changed from their
    defaults: `SimpleImputer(strategy='most_frequent')`.
    """
    return list(_walk(model, "", None))


def _walk(estimator: Any, path: str, columns: list[str] | None) -> Iterator[PipelineStep]:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline):
        for name, step in estimator.steps:
            yield from _walk(step, _join(path, name), columns)
    elif isinstance(estimator, ColumnTransformer):
        fitted = getattr(estimator, "transformers_", None)
        for name, transformer, selected in fitted or estimator.transformers:
            selected = _column_names(selected)
            if selected != []:
                yield from _walk(transformer, _join(path, name), selected)
    else:
        operation = estimator if isinstance(estimator, str) else " ".join(repr(estimator).split())
        yield PipelineStep(path or type(estimator).__name__, operation, columns)


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def _column_names(selected: Any) -> list[str]:
    """A ColumnTransformer's column selection as text: each name or index of a list, else the
    selector itself (a single column, a slice, a callable)."""
    if isinstance(selected, (list, tuple)) or hasattr(selected, "tolist"):  # arrays, Index
        return [str(column) for column in list(selected)]
    return [str(selected)]
