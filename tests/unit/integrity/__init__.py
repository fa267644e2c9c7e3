"""Unit tests of otel_ai_audit.integrity."""
