# The otel-ai-audit demo, for docker-compose.yml: sends its audit spans to the Collector named
# by OTEL_EXPORTER_OTLP_ENDPOINT and writes its report to /out.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY otel_ai_audit ./otel_ai_audit
RUN pip install --no-cache-dir .

CMD ["otel-ai-audit", "demo", "--out", "/out"]
