"""A real S3 server with Object Lock for the tests: versitygw's posix backend on loopback.

versitygw (Versity S3 Gateway, Apache-2.0) is installed once with `go install` into the services
cache, keyed by its version; the Go module and build caches make a rebuild after a version bump
quick. It keeps objects as files and their metadata, retention included, in `user.*` extended
attributes, so the data dir must be on a filesystem with user xattrs (ext4, xfs, btrfs; tmpfs only
from Linux 6.6). Buckets created with Object Lock are versioned (versions in `--versioning-dir`).

versitygw does not stamp a bucket's default retention on the versions written under it: it applies
the rule to the whole bucket while the rule is in force (counted from when the rule was set), and
HeadObject shows no lock for such a version. Retention set on the object itself is stored with it.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.services.base import (
    ServiceProcess,
    ServiceStartError,
    SingleProcessService,
    cache_root,
    free_port,
)
from tests.services.collector import go_executable, run_or_raise

VERSITYGW_VERSION = "v1.8.0"
VERSITYGW_PACKAGE = "github.com/versity/versitygw/cmd/versitygw"


def versitygw_binary() -> Path:
    """The cached versitygw binary, installed with `go install` if this version has none."""
    binary = cache_root() / "versitygw" / VERSITYGW_VERSION / "versitygw"
    if binary.is_file():
        return binary
    progress(f"installing {VERSITYGW_PACKAGE}@{VERSITYGW_VERSION} into {binary.parent}")
    started = time.monotonic()
    binary.parent.mkdir(parents=True, exist_ok=True)
    # A scratch GOBIN beside the binary: a concurrent run never sees a half-written file.
    with tempfile.TemporaryDirectory(dir=binary.parent.parent, prefix="build-") as scratch:
        run_or_raise(
            [go_executable(), "install", f"-ldflags=-X=main.Version={VERSITYGW_VERSION}",
             f"{VERSITYGW_PACKAGE}@{VERSITYGW_VERSION}"],
            cwd=Path(scratch),
            env={"GOBIN": scratch},
            what=f"installing versitygw {VERSITYGW_VERSION}",
        )
        os.replace(Path(scratch) / "versitygw", binary)
    progress(f"installed {binary} in {time.monotonic() - started:.0f}s")
    return binary


def progress(message: str) -> None:
    print(f"[versitygw] {message}", file=sys.stderr, flush=True)


def supports_user_xattrs(directory: Path) -> bool:
    """True when files in `directory` take `user.*` extended attributes (versitygw needs them)."""
    with tempfile.NamedTemporaryFile(dir=directory) as probe:
        try:
            os.setxattr(probe.name, "user.otel-ai-audit-probe", b"1")
        except OSError:
            return False
    return True


class S3Service(SingleProcessService):
    """versitygw on a free loopback port, single account, path-style addressing.

    A client needs `endpoint`, `access_key`, `secret_key` and `region`; buckets and objects live
    under `workdir` (`data/`, versions in `versions/`), its log in `workdir/service.log`.
    """

    name = "versitygw"
    region = "us-east-1"
    access_key = "otel-ai-audit-test"

    def __init__(self, workdir: Path, startup_timeout: float = 60.0) -> None:
        self.workdir = workdir
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.health_url = f"{self.endpoint}/health"
        self.secret_key = secrets.token_hex(20)
        self.data_dir = workdir / "data"
        self.versions_dir = workdir / "versions"
        self.process: ServiceProcess | None = None

    def healthy(self) -> bool:
        with urllib.request.urlopen(self.health_url, timeout=2) as response:
            return bool(response.status == 200)

    def start(self) -> S3Service:
        binary = versitygw_binary()
        for directory in (self.data_dir, self.versions_dir):
            directory.mkdir(parents=True, exist_ok=True)
        if not supports_user_xattrs(self.data_dir):
            raise ServiceStartError(
                f"versitygw keeps object metadata and Object Lock retention in user extended "
                f"attributes, which the filesystem of {self.data_dir} does not support; give the "
                f"tests a temp dir on ext4, xfs or btrfs (e.g. TMPDIR or pytest --basetemp)"
            )
        self.process = ServiceProcess(
            name="versitygw",
            argv=[
                str(binary),
                "--access", self.access_key,
                "--secret", self.secret_key,
                "--region", self.region,
                "--port", f"127.0.0.1:{self.port}",
                "--health", "/health",
                "posix", "--versioning-dir", str(self.versions_dir), str(self.data_dir),
            ],
            workdir=self.workdir,
            ready=self.healthy,
            startup_timeout=self.startup_timeout,
        )
        self.process.start()
        return self

    def env(self) -> dict[str, str]:
        return {
            "OTEL_AI_AUDIT_TEST_S3_ENDPOINT": self.endpoint,
            "OTEL_AI_AUDIT_TEST_S3_ACCESS_KEY": self.access_key,
            "OTEL_AI_AUDIT_TEST_S3_SECRET_KEY": self.secret_key,
            "OTEL_AI_AUDIT_TEST_S3_REGION": self.region,
        }
