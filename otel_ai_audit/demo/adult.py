"""The UCI Adult data set, loaded from a local copy and checked against its SHA256SUMS."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ADULT_DATA_ENV = "OTEL_AI_AUDIT_ADULT_DATA"
COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week",
    "native_country", "income",
]
NUMERIC = ["age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
CATEGORICAL = ["workclass", "education", "marital_status", "occupation", "relationship", "race",
               "sex", "native_country"]
TARGET = "income"


class DatasetError(RuntimeError):
    """The data set is missing or does not match its published checksums."""


@dataclass(frozen=True)
class AdultSplit:
    frame: object  # pandas.DataFrame; typed loosely so importing this module needs no pandas
    path: Path
    sha256: str


def find_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding adult.data/adult.test: explicit, $OTEL_AI_AUDIT_ADULT_DATA, or the
    `shared/data/uci-adult` folder beside (or above) the working directory.

    A folder given explicitly must hold the data: falling back to another copy would document
    or train on data the user did not name.
    """
    if explicit is not None:
        if not (Path(explicit) / "adult.data").is_file():
            raise DatasetError(f"{explicit}: no adult.data there; give the folder that holds "
                               "the UCI Adult files adult.data and adult.test")
        return Path(explicit)
    candidates = [os.environ.get(ADULT_DATA_ENV)]
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidates.append(folder / "shared" / "data" / "uci-adult")
        candidates.append(folder.parent / "shared" / "data" / "uci-adult")
    for candidate in candidates:
        if candidate and (Path(candidate) / "adult.data").is_file():
            return Path(candidate)
    raise DatasetError(
        "UCI Adult data not found: pass --data DIR or set "
        f"{ADULT_DATA_ENV} to the folder holding adult.data and adult.test")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _published_checksums(folder: Path) -> dict[str, str]:
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return {}
    pairs = (line.split() for line in sums.read_text().splitlines() if line.strip())
    return {name.lstrip("*"): digest for digest, name in pairs}


def load_split(name: str, data_dir: str | os.PathLike[str] | None = None) -> AdultSplit:
    """`train` (adult.data) or `test` (adult.test) as a DataFrame with a 0/1 `income` label."""
    import pandas as pd

    folder = find_data_dir(data_dir)
    path = folder / {"train": "adult.data", "test": "adult.test"}[name]
    digest = sha256_of(path)
    expected = _published_checksums(folder).get(path.name)
    if expected is not None and expected != digest:
        raise DatasetError(f"{path} does not match its SHA256SUMS entry: the data set changed")
    frame = pd.read_csv(path, names=COLUMNS, skipinitialspace=True, na_values="?",
                        comment="|", skip_blank_lines=True)
    frame = frame.dropna(subset=[TARGET])
    frame[TARGET] = frame[TARGET].str.rstrip(".").eq(">50K").astype(int)
    return AdultSplit(frame=frame.reset_index(drop=True), path=path, sha256=digest)


def adult_pipeline() -> Any:
    """The classifier, with every hyper-parameter that matters spelled out."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return Pipeline([
        ("prepare", ColumnTransformer([
            ("numeric", StandardScaler(), NUMERIC),
            ("categorical", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                          OneHotEncoder(handle_unknown="ignore")), CATEGORICAL),
        ])),
        ("classify", LogisticRegression(C=1.0, solver="lbfgs", max_iter=1000)),
    ])
