"""The root of otel-ai-audit's errors: each carries a message a user can act on, and a command
turns it into one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations


class AuditError(Exception):
    """Something otel-ai-audit cannot do, said in words the user can act on."""


class ConfigurationError(AuditError, ValueError):
    """A setting is invalid, or names something that cannot be used (a missing key file, a
    store in a folder that cannot be written).

    The message is one line naming the `OTEL_AI_AUDIT_*` variable (or the `configure()`
    keyword and its variable), the value, and what is accepted: for example
    `OTEL_AI_AUDIT_SAMPLING_RATE='2': a number from 0 to 1 (...)`. Secrets are never shown.
    `variable` is the variable concerned, when there is one. A `ValueError` too, as the
    settings' errors were before.
    """

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable
