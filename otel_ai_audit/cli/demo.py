"""`otel-ai-audit demo`: what `make demo` runs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from otel_ai_audit.cli._common import EXIT_FAILED, EXIT_OK, fail


@click.command()
@click.option("--out", default="otel-ai-audit-demo", show_default=True,
              type=click.Path(file_okay=False), help="Folder for every output of the demo.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False),
              help="Folder with the UCI Adult files (default: $OTEL_AI_AUDIT_ADULT_DATA or "
                   "shared/data/uci-adult beside the working directory).")
@click.option("--decisions", default=2000, show_default=True, help="Test rows to score.")
def demo(out: str, data_dir: str | None, decisions: int) -> None:
    """Run the main job on the embedded store and verify the result."""
    try:
        from otel_ai_audit.demo.adult import DatasetError
        from otel_ai_audit.demo.run import run_demo
    except ImportError as error:
        fail(f"the demo needs the ml extra: pip install 'otel-ai-audit[ml]' ({error})")
    try:
        report = run_demo(Path(out), data_dir, decisions, sys.stdout)
    except DatasetError as error:
        fail(str(error))
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)
