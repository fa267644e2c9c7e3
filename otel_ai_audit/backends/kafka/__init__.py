"""Apache Kafka: the trail as topics, for fleets that put a replicated log between the model
servers and the search cluster (`layout`, `client`, `sink`, `source`, and `consumer` for
`ship --from-kafka`; docs/kafka.md)."""
