"""An OpenTelemetry Collector as the way of the trail: `layout` (the span attributes; no SDK),
`client` (the SDK's OTLP exporter, gRPC or HTTP), `sink` (sealed items as spans) and `source`
(verifying what the Collector's file exporter wrote)."""
