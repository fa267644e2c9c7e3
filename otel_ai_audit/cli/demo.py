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
              help="Folder with the UCI Adult files (default: $OTEL_AI_AUDIT_ADULT_DATA, else "
                   "the copy shipped with otel-ai-audit).")
@click.option("--decisions", default=2000, show_default=True,
              help="adult.test applicants to score as audited decisions.")
@click.option("--requests", default=300, show_default=True,
              help="Requests the load script sends to the churn API.")
def demo(out: str, data_dir: str | None, decisions: int, requests: int) -> None:
    """Run the three scenarios on the embedded store and verify the result: a model card for
    UCI Adult, an audited churn API, a 48-hour evidence bundle for a triage system.

    Exit 0: everything verified; 1: verification failed; 2: the demo could not run.
    """
    try:
        from otel_ai_audit.demo.run import run_demo
    except ImportError as error:
        fail(f"the demo needs the demo extra: pip install 'otel-ai-audit[demo]' ({error})")
    result = run_demo(Path(out), data_dir, decisions, requests, sys.stdout)
    sys.exit(EXIT_OK if result.report.ok and result.bundle_ok else EXIT_FAILED)
