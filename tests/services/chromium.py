"""A real headless Chromium (Debian's `chromium` package) for tests that render HTML.

`chromium_binary()` finds it, or installs it with apt-get when running as root (as `make test`
does on a fresh machine). A machine where it can neither be found nor installed raises
`ServiceStartError`, which the tests turn into a failure (a skip only when asked for outside CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.services.base import ServiceStartError

PACKAGE = "chromium"
INSTALL_TIMEOUT = 900.0
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--disable-dev-shm-usage", "--no-first-run")
"""No sandbox: the tests run as root in containers, where Chromium's sandbox cannot start."""


def chromium_binary() -> Path:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return Path(found)
    if os.geteuid() != 0:
        raise ServiceStartError(f"chromium is not installed and installing it needs root: run "
                                f"`apt-get install -y {PACKAGE}`")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", PACKAGE]):
        try:
            result = subprocess.run(command, capture_output=True, text=True, env=environment,
                                    timeout=INSTALL_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ServiceStartError(f"{' '.join(command)} failed: {error}") from error
        if result.returncode != 0:
            raise ServiceStartError(f"{' '.join(command)} exited {result.returncode}:\n"
                                    f"{result.stderr[-2000:]}")
    found = shutil.which("chromium")
    if not found:
        raise ServiceStartError(f"apt-get installed {PACKAGE} but no chromium binary is on PATH")
    return Path(found)


def render(html: Path, *arguments: str, timeout: float = 120.0,
           ) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on a local HTML file with extra `arguments` (a --screenshot=,
    --dump-dom, ...); its stdout is the DOM when asked for, stderr its log."""
    return subprocess.run([str(chromium_binary()), *FLAGS, *arguments, html.resolve().as_uri()],
                          capture_output=True, text=True, timeout=timeout, check=False)
