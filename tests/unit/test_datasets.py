"""The UCI Adult copy shipped with the package: the published originals, checked on load."""

from __future__ import annotations

import lzma
import shutil
from pathlib import Path

import pytest

from otel_ai_audit.datasets.adult import (
    ADULT_DATA_ENV,
    BUNDLED,
    DatasetError,
    find_data_dir,
    load_split,
)
from tests.conftest import SHARED_DATA

ORIGINALS = Path(SHARED_DATA) / "uci-adult"


@pytest.mark.parametrize("name", ["adult.data", "adult.test"])
def test_the_shipped_copy_decompresses_to_the_originals(name: str) -> None:
    shipped = lzma.decompress((BUNDLED / f"{name}.xz").read_bytes())
    assert shipped == (ORIGINALS / name).read_bytes()
    assert (BUNDLED / "SHA256SUMS").read_bytes() == (ORIGINALS / "SHA256SUMS").read_bytes()


def test_the_shipped_copy_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADULT_DATA_ENV, raising=False)
    assert find_data_dir() == BUNDLED
    split = load_split("test")
    assert len(split.frame) == 16281 and split.source.name == "adult.test"


def test_a_named_folder_without_the_data_is_refused(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ADULT_DATA_ENV, str(tmp_path))
    with pytest.raises(DatasetError, match=ADULT_DATA_ENV):
        find_data_dir()
    with pytest.raises(DatasetError, match="no adult.data there"):
        find_data_dir(tmp_path / "nowhere")


def test_a_changed_file_is_refused(tmp_path: Path) -> None:
    for name in ("adult.data", "adult.test", "SHA256SUMS"):
        shutil.copy(ORIGINALS / name, tmp_path / name)
    (tmp_path / "adult.test").chmod(0o644)
    with open(tmp_path / "adult.test", "ab") as handle:
        handle.write(b"39, Private, 1, Bachelors, 13, Never-married, Sales, Not-in-family, "
                     b"White, Male, 0, 0, 40, United-States, >50K.\n")
    with pytest.raises(DatasetError, match="does not match its SHA256SUMS"):
        load_split("test", tmp_path)
    assert len(load_split("train", tmp_path).frame) == 32561
