# The otel-ai-audit demo, for docker-compose.yml: runs the three scenarios on the embedded store
# and writes everything to /out (UCI Adult ships with the package). Installed
# from the source tree (editable) because the demo serves the apps of examples/.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY otel_ai_audit ./otel_ai_audit
COPY examples ./examples
RUN pip install --no-cache-dir -e '.[demo,anchor,elasticsearch]'

CMD ["otel-ai-audit", "demo", "--out", "/out"]
