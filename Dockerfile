# The otel-ai-audit demo, for docker-compose.yml: runs the main job on the embedded store and
# writes everything to /out (UCI Adult is mounted at $OTEL_AI_AUDIT_ADULT_DATA).
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY otel_ai_audit ./otel_ai_audit
RUN pip install --no-cache-dir '.[ml]'

CMD ["otel-ai-audit", "demo", "--out", "/out"]
