"""A real RFC 3161 time-stamping authority for the tests: sigstore's timestamp-server on loopback.

The `memory` signer makes a fresh root, intermediate and TSA certificate at every start, so a
token only verifies against the chain of the process that issued it (`certchain_pem`).

timestamp-server always serves Prometheus metrics on `:2112`, with no flag to move it (v2.1.3 and
v2.2.1 alike), and exits when that port is taken: two instances (the tests' and `make services`')
would collide. The binary is therefore built from the release's own module source with that one
address changed to `127.0.0.1:0` (a kernel-chosen free loopback port), the way upstream's Makefile
builds it (CGO off, -trimpath, version stamped), and cached by version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

from tests.services.base import (
    ServiceProcess,
    ServiceStartError,
    SingleProcessService,
    cache_root,
    free_port,
)
from tests.services.collector import go_executable, run_or_raise

TSA_VERSION = "v2.1.3"
TSA_MODULE = "github.com/sigstore/timestamp-authority/v2"
METRICS_SOURCE = Path("pkg", "server", "prometheus.go")
METRICS_ADDRESS = '":2112"'
PATCHED_METRICS_ADDRESS = '"127.0.0.1:0"'


def timestamp_server_binary() -> Path:
    """The cached timestamp-server (metrics on a free loopback port), built if missing."""
    build = f"{TSA_VERSION}-metrics-loopback"
    binary = cache_root() / "timestamp-server" / build / "timestamp-server"
    if binary.is_file():
        return binary
    progress(f"building {TSA_MODULE}@{TSA_VERSION} into {binary.parent}")
    started = time.monotonic()
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=binary.parent.parent, prefix="build-") as scratch:
        source = unpacked_module_source(Path(scratch))
        metrics = source / METRICS_SOURCE
        text = metrics.read_text()
        if text.count(METRICS_ADDRESS) != 1:
            raise ServiceStartError(f"{metrics} no longer hard-codes {METRICS_ADDRESS} once")
        metrics.write_text(text.replace(METRICS_ADDRESS, PATCHED_METRICS_ADDRESS))
        built = Path(scratch) / "timestamp-server"
        run_or_raise(
            [go_executable(), "build", "-trimpath",
             f"-ldflags=-X=sigs.k8s.io/release-utils/version.gitVersion={TSA_VERSION}",
             "-o", str(built), "./cmd/timestamp-server"],
            cwd=source,
            env={"CGO_ENABLED": "0"},
            what=f"building timestamp-server {TSA_VERSION}",
        )
        os.replace(built, binary)
    progress(f"built {binary} in {time.monotonic() - started:.0f}s")
    return binary


def unpacked_module_source(scratch: Path) -> Path:
    """The release's module zip (checked against the Go checksum database by `go mod download`)
    unpacked into `scratch`, writable unlike the module cache; returns the module root."""
    result = subprocess.run(
        [go_executable(), "mod", "download", "-json", f"{TSA_MODULE}@{TSA_VERSION}"],
        cwd=scratch, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
    )
    try:
        download = json.loads(result.stdout)
    except json.JSONDecodeError:
        download = {"Error": result.stderr.strip()}
    if result.returncode != 0 or "Error" in download:
        raise ServiceStartError(f"go mod download {TSA_MODULE}@{TSA_VERSION} failed: "
                                f"{download.get('Error')}")
    with zipfile.ZipFile(download["Zip"]) as archive:
        archive.extractall(scratch / "src")
    return scratch / "src" / f"{TSA_MODULE}@{TSA_VERSION}"


def progress(message: str) -> None:
    print(f"[timestamp-server] {message}", file=sys.stderr, flush=True)


class TimestampAuthorityService(SingleProcessService):
    """timestamp-server with the in-memory signer on a free loopback port.

    `url` takes `POST` of an `application/timestamp-query`; `certchain_pem` (empty until started)
    is the PEM chain, leaf first and root last, also written to `certchain_path`.
    """

    name = "timestamp-server"

    def __init__(self, workdir: Path, startup_timeout: float = 60.0) -> None:
        self.workdir = workdir
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1/timestamp"
        self.certchain_url = f"{self.url}/certchain"
        self.certchain_path = workdir / "certchain.pem"
        self.certchain_pem = b""
        self.process: ServiceProcess | None = None

    def _fetch_certchain(self) -> bool:
        """Readiness probe: the chain is served once the signer is up."""
        with urllib.request.urlopen(self.certchain_url, timeout=2) as response:
            self.certchain_pem = response.read()
        return b"-----BEGIN CERTIFICATE-----" in self.certchain_pem

    def start(self) -> TimestampAuthorityService:
        binary = timestamp_server_binary()
        self.process = ServiceProcess(
            name="timestamp-server",
            argv=[
                str(binary), "serve",
                "--host", "127.0.0.1",
                "--port", str(self.port),
                "--timestamp-signer", "memory",
                # No NTP servers are reachable from the tests; it would only log timeouts.
                "--disable-ntp-monitoring",
                "--log-type", "prod",
                "--graceful-timeout", "2s",
            ],
            workdir=self.workdir,
            ready=self._fetch_certchain,
            startup_timeout=self.startup_timeout,
        )
        self.process.start()
        self.certchain_path.write_bytes(self.certchain_pem)
        return self

    def env(self) -> dict[str, str]:
        return {
            "OTEL_AI_AUDIT_TEST_TSA_URL": self.url,
            "OTEL_AI_AUDIT_TEST_TSA_CERTCHAIN": str(self.certchain_path),
        }
