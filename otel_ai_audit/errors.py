"""The root of otel-ai-audit's errors: each carries a message a user can act on, and a command
turns it into one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations


class AuditError(Exception):
    """Something otel-ai-audit cannot do, said in words the user can act on."""
