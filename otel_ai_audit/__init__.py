"""otel-ai-audit."""
