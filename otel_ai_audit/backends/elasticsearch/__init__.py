"""Elasticsearch as a place of the trail: `layout` (names, mappings, fields; no client),
`client` (connection and errors), `sink` (bulk delivery), `source` (verification) and
`publish` (the verifier's findings, for alert rules). The client library is the
`elasticsearch` extra."""
