"""Debian's poppler-utils (`pdftoppm`, `pdftotext`) for tests that look into a PDF: its pages
as PNG, its text.

`poppler_tool(name)` finds the tool, or installs the package with apt-get when running as root
(as `tests/services/chromium.py` does for Chromium). A machine where it can neither be found
nor installed raises `ServiceStartError`, which the tests turn into a failure (a skip only
when asked for outside CI).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.services.base import debian_binary

PACKAGE = "poppler-utils"


def poppler_tool(name: str) -> Path:
    return debian_binary(PACKAGE, name)


def pdf_text(pdf: Path) -> str:
    """The PDF's text in the order it was drawn (`pdftotext -raw`): a table cell's wrapped
    lines stay together."""
    result = subprocess.run([str(poppler_tool("pdftotext")), "-raw", str(pdf), "-"],
                            capture_output=True, text=True, timeout=120, check=True)
    return result.stdout


def pdf_pages(pdf: Path, prefix: Path, dpi: int = 80) -> list[Path]:
    """Each page of the PDF as `<prefix>-<n>.png` (`pdftoppm`), in page order."""
    for stale in prefix.parent.glob(f"{prefix.name}-*.png"):
        stale.unlink()
    subprocess.run([str(poppler_tool("pdftoppm")), "-r", str(dpi), "-png", str(pdf),
                    str(prefix)], capture_output=True, timeout=300, check=True)
    return sorted(prefix.parent.glob(f"{prefix.name}-*.png"),
                  key=lambda path: int(path.stem.rsplit("-", 1)[1]))
