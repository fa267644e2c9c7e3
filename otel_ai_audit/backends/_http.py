"""Connection errors in words, for the clients over HTTP (Elasticsearch, Kibana)."""

from __future__ import annotations

import re

_ERRNO = re.compile(r"\[Errno -?\d+\][^)'\"]*")


def transport_reason(error: Exception) -> str:
    """The operating system's reason ("[Errno 111] Connection refused") rather than the
    client's nested wrappers, when there is one."""
    match = _ERRNO.search(str(error))
    return match.group(0).strip() if match else str(error)
