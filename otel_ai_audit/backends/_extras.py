"""The error for a backend used without the optional dependencies it needs."""

from __future__ import annotations

from otel_ai_audit.errors import ConfigurationError


class MissingExtraError(ConfigurationError, ImportError):
    """A backend is configured but its client library is not installed.

    One line naming the extra to install. A `ConfigurationError` (so a `ValueError`, as every
    settings error) and an `ImportError`, as a missing module is to callers that expect one.
    """

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} needs the `{extra}` extra: "
                         f"pip install 'otel-ai-audit[{extra}]'")
        self.extra = extra
