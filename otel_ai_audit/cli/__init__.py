"""The `otel-ai-audit` command line. Each command lives in its own module."""

from __future__ import annotations

import click

from otel_ai_audit.cli._common import Commands
from otel_ai_audit.cli.anchor import anchor
from otel_ai_audit.cli.decisions import decisions
from otel_ai_audit.cli.demo import demo
from otel_ai_audit.cli.document import document
from otel_ai_audit.cli.drift import drift
from otel_ai_audit.cli.evidence import evidence
from otel_ai_audit.cli.fairness import fairness
from otel_ai_audit.cli.import_trail import import_trail
from otel_ai_audit.cli.keys import keygen
from otel_ai_audit.cli.kibana import kibana
from otel_ai_audit.cli.models import models
from otel_ai_audit.cli.prove import prove, verify_proof
from otel_ai_audit.cli.recover import recover
from otel_ai_audit.cli.ship import ship
from otel_ai_audit.cli.verify import verify
from otel_ai_audit.cli.verify_bundle import verify_bundle


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="otel-ai-audit")
def main() -> None:
    """Tamper-evident audit trails for ML decisions, built on OpenTelemetry."""


for command in (verify, ship, keygen, prove, verify_proof, demo, document, kibana,
                drift, fairness, evidence, verify_bundle, anchor, models, decisions, recover,
                import_trail):
    main.add_command(command)
