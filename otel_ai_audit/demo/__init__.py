"""The demo job behind `otel-ai-audit demo`."""
