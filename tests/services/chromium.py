"""A real headless Chromium (Debian's `chromium` package) for tests that render HTML.

`chromium_binary()` finds it, or installs it with apt-get when running as root (as `make test`
does on a fresh machine). A machine where it can neither be found nor installed raises
`ServiceStartError`, which the tests turn into a failure (a skip only when asked for outside CI).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.services.base import debian_binary

PACKAGE = "chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--disable-dev-shm-usage", "--no-first-run")
"""No sandbox: the tests run as root in containers, where Chromium's sandbox cannot start."""


def chromium_binary() -> Path:
    return debian_binary(PACKAGE, "chromium", "chromium-browser")


def render(html: Path, *arguments: str, timeout: float = 120.0,
           ) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on a local HTML file with extra `arguments` (a --screenshot=,
    --dump-dom, ...); its stdout is the DOM when asked for, stderr its log."""
    return subprocess.run([str(chromium_binary()), *FLAGS, *arguments, html.resolve().as_uri()],
                          capture_output=True, text=True, timeout=timeout, check=False)
