"""The UCI Adult data set: the copy shipped with the package (xz-compressed, checked against the
published SHA256SUMS), or a folder the user names.

See `uci_adult/SOURCE.md` for the citation and licence (CC BY 4.0).
"""

from __future__ import annotations

import io
import lzma
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otel_ai_audit.datasets.source import DataSource
from otel_ai_audit.errors import DemoError

ADULT_DATA_ENV = "OTEL_AI_AUDIT_ADULT_DATA"
BUNDLED = Path(__file__).with_name("uci_adult")
FILES = {"train": "adult.data", "test": "adult.test"}
COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week",
    "native_country", "income",
]
NUMERIC = ["age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
CATEGORICAL = ["workclass", "education", "marital_status", "occupation", "relationship", "race",
               "sex", "native_country"]
TARGET = "income"


class DatasetError(DemoError):
    """The data set is missing or does not match its published checksums."""


@dataclass(frozen=True)
class AdultSplit:
    frame: Any  # pandas.DataFrame; typed loosely so importing this module needs no pandas
    source: DataSource


def find_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding the data: explicit, else $OTEL_AI_AUDIT_ADULT_DATA, else the copy
    shipped with the package.

    A folder given explicitly (or by the variable) must hold the data: falling back to another
    copy would document or train on data the user did not name.
    """
    named = explicit if explicit is not None else os.environ.get(ADULT_DATA_ENV) or None
    if named is None:
        return BUNDLED
    if not any((Path(named) / f"adult.data{suffix}").is_file() for suffix in ("", ".xz")):
        origin = "" if explicit is not None else f" (from {ADULT_DATA_ENV})"
        raise DatasetError(f"{named}{origin}: no adult.data there; give the folder that holds "
                           "the UCI Adult files adult.data and adult.test, or name none to use "
                           "the copy shipped with otel-ai-audit")
    return Path(named)


def _published_checksums(folder: Path) -> dict[str, str]:
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return {}
    pairs = (line.split() for line in sums.read_text().splitlines() if line.strip())
    return {name.lstrip("*"): digest for digest, name in pairs}


def _read_original(folder: Path, name: str) -> bytes:
    """The file's original bytes: `name` itself, else `name.xz` decompressed."""
    plain, compressed = folder / name, folder / f"{name}.xz"
    try:
        if plain.is_file():
            return plain.read_bytes()
        if compressed.is_file():
            return lzma.decompress(compressed.read_bytes())
    except (OSError, lzma.LZMAError) as error:
        raise DatasetError(f"{folder / name}: cannot read it ({error})") from error
    raise DatasetError(f"{folder}: neither {name} nor {name}.xz is there")


def load_split(name: str, data_dir: str | os.PathLike[str] | None = None) -> AdultSplit:
    """`train` (adult.data) or `test` (adult.test) as a DataFrame with a 0/1 `income` label."""
    import hashlib

    import pandas as pd

    folder = find_data_dir(data_dir)
    file_name = FILES[name]
    data = _read_original(folder, file_name)
    digest = hashlib.sha256(data).hexdigest()
    expected = _published_checksums(folder).get(file_name)
    if expected is not None and expected != digest:
        raise DatasetError(f"{folder / file_name} does not match its SHA256SUMS entry: "
                           "the data set changed")
    frame = pd.read_csv(io.BytesIO(data), names=COLUMNS, skipinitialspace=True, na_values="?",
                        comment="|", skip_blank_lines=True)
    frame = frame.dropna(subset=[TARGET])
    frame[TARGET] = frame[TARGET].str.rstrip(".").eq(">50K").astype(int)
    return AdultSplit(frame=frame.reset_index(drop=True),
                      source=DataSource(name=file_name, sha256=digest))


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
