"""Where the trail goes beyond the embedded store: one package per backend, each in parts.

* `layout`: what the backend holds and how it is named (index names and mappings, sourcetypes,
  span attributes) and how a record's fields are derived; no client library, so dashboards,
  documentation and offline verifiers use it without connecting anywhere.
* `client`: connecting (URLs, authentication, TLS) and the backend's errors in words.
* `sink`: delivery, as the shipper calls it (`otel_ai_audit.sinks.Sink`).
* `source`: reading the trail back for the verifier (`otel_ai_audit.verify.RecordSource`).

A backend whose client library is an extra raises `MissingExtraError` (one line naming the
extra) when its `client` is imported without it.
"""
