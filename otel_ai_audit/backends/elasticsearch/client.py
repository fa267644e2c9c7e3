"""Connecting to Elasticsearch (nodes, API key or user, TLS) and its errors in words.

The `elasticsearch` client library is the `elasticsearch` extra: importing this module
without it raises `MissingExtraError`, one line naming the extra. The sink, the source and
`publish` take the library's names from here, so that check is made in one place.
"""

from __future__ import annotations

from typing import Any

from otel_ai_audit.backends._extras import MissingExtraError
from otel_ai_audit.backends._http import transport_reason
from otel_ai_audit.config import AuditSettings

try:
    from elasticsearch import (
        ApiError,
        AuthenticationException,
        AuthorizationException,
        Elasticsearch,
        NotFoundError,
        TransportError,
    )
except ModuleNotFoundError as missing:
    raise MissingExtraError("Elasticsearch support", "elasticsearch") from missing

__all__ = ["ApiError", "AuthenticationException", "AuthorizationException", "Elasticsearch",
           "NotFoundError", "TransportError", "connect", "describe", "explain",
           "transport_reason"]


def connect(settings: AuditSettings, *, request_timeout: float = 10.0) -> Elasticsearch:
    """A client for `settings.elasticsearch_url` (comma-separated nodes) with its credentials.

    An API key is the encoded form or "id:key"; TLS certificates are verified unless
    `elasticsearch_verify_certs` is off, against `elasticsearch_ca_certs` when given.
    """
    if not settings.elasticsearch_url:
        raise ValueError("no Elasticsearch URL configured")
    hosts = [url.strip() for url in settings.elasticsearch_url.split(",") if url.strip()]
    options: dict[str, Any] = {"request_timeout": request_timeout}
    api_key = settings.elasticsearch_api_key
    if api_key:
        options["api_key"] = tuple(api_key.split(":", 1)) if ":" in api_key else api_key
    if settings.elasticsearch_username:
        options["basic_auth"] = (settings.elasticsearch_username,
                                 settings.elasticsearch_password or "")
    if settings.elasticsearch_ca_certs:
        options["ca_certs"] = settings.elasticsearch_ca_certs
    if not settings.elasticsearch_verify_certs:
        options["verify_certs"] = False
    return Elasticsearch(hosts, **options)


def describe(client: Elasticsearch) -> str:
    """The client's node URLs, sorted (the client shuffles them); never with credentials."""
    return ",".join(sorted(node.base_url for node in client.transport.node_pool.all()))


def explain(error: ApiError | TransportError, client: Elasticsearch, doing: str, *,
            missing: str = "") -> str:
    """One line a user can act on for `error`, met while `doing` ("reading <index>").
    `missing` is what a 404 means here; without it a 404 is reported as any other answer."""
    where = f"Elasticsearch at {describe(client)}"
    if isinstance(error, AuthenticationException):
        return (f"{where} refused the credentials (HTTP 401): check the API key, or the user "
                "name and password")
    if isinstance(error, AuthorizationException):
        return f"{where}: these credentials do not allow {doing} (HTTP 403)"
    if isinstance(error, NotFoundError) and missing:
        return f"{where} {missing}"
    if isinstance(error, ApiError):
        return f"{where} answered HTTP {error.meta.status} {doing}: {error.message}"
    return f"cannot reach {where}: {transport_reason(error)}"
