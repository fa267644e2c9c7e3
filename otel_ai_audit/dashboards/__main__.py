"""`python -m otel_ai_audit.dashboards [DIRECTORY]`: regenerate the files under `dashboards/`."""

from __future__ import annotations

import sys
from pathlib import Path

from otel_ai_audit.dashboards import write

if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "dashboards")):
        print(path)
