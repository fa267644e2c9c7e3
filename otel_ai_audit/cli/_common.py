"""Exit codes and error reporting shared by the commands."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

EXIT_OK = 0
EXIT_FAILED = 1
"""Verification failed: tampered, incomplete or untrusted."""
EXIT_USAGE = 2
"""Usage or I/O error: the command could not do its job (unreadable file, not a store)."""


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"otel-ai-audit: error: {message}", err=True)
    sys.exit(code)
