"""The root of otel-ai-audit's errors: each carries a message a user can act on, and a command
turns it into one line on stderr and a non-zero exit, never a traceback.

One base, `AuditError`, and one subclass per area, so a caller can catch as widely or as
narrowly as it needs (the CLI catches `AuditError` once, in `cli._common.Commands`):

- `ConfigurationError`: a setting, option or missing extra;
- `KeyFileError`: a signing or verification key file;
- `StoreError`: the embedded SQLite store (missing, foreign, full, corrupt);
- `SourceError`: records read from somewhere other than the store (an export file,
  Elasticsearch, a monitoring source);
- `IntegrityError`: data handed to the integrity code that has no valid form, or a proof
  that cannot be built or does not prove what it should;
- `RequestError`: a request the records at hand cannot answer (no decisions in a window, an
  unknown system or training record);
- `BackendError`: a service (Elasticsearch, Splunk, an OTLP endpoint, Kibana, S3, a TSA) that
  could not be reached or refused;
- `DemoError`: the demo or its data set.

The specific errors live beside the code that raises them and derive from these. Where an
error was a built-in (`ValueError`, `LookupError`, `RuntimeError`) before the hierarchy, it
still is, so callers that caught the built-in keep working. Verification *failures* (a
tampered record, a missing checkpoint) are not errors: they are findings in a report.

This module imports nothing, so the light core (`record`, `integrity`, `store`, `verify`)
can depend on it.
"""

from __future__ import annotations


class AuditError(Exception):
    """Something otel-ai-audit cannot do, said in words the user can act on."""

    def diagnostics(self) -> str:
        """The line a command prints for this error (after `otel-ai-audit: error: `)."""
        return str(self)


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


class KeyFileError(AuditError, ValueError):
    """A key file is missing, unreadable or not an Ed25519 key of the expected form."""


class StoreError(AuditError):
    """The store cannot be used; the message says why in words a user can act on."""


class SourceError(AuditError):
    """Records cannot be read from where they are kept outside the store (an export file,
    Elasticsearch, a monitoring source); the message says why in one line."""


class IntegrityError(AuditError, ValueError):
    """Data handed to the integrity code has no valid form (a value without a canonical form,
    a malformed proof), or a proof cannot be built or does not prove what it should."""


class RequestError(AuditError, ValueError):
    """What was asked cannot be answered from the records at hand (no decisions in the window,
    an unknown system, decision or training record, a window that cannot be used)."""


class BackendError(AuditError):
    """A service could not be reached or refused the request (Elasticsearch, Splunk, an OTLP
    endpoint, Kibana, an S3 bucket, a time-stamping authority)."""


class DemoError(AuditError, RuntimeError):
    """The demo cannot run: its data set is missing or altered, or a scenario did not start."""
