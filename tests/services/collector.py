"""A real OpenTelemetry Collector (`otelcol-ai-audit`) for the tests and for `make services`.

The binary is built from `collector_config/builder-config.yaml` with the OpenTelemetry Collector
Builder (ocb) and cached under `cache_root()/otelcol/<key>/`, keyed by the manifest bytes, the
sources of the repository's own modules it names by `path:` (collector/auditprocessor) and the
Go version, so a changed manifest, processor or toolchain rebuilds it and anything else reuses it.

Prebuild it (a cold build downloads modules and compiles for a few minutes):

    python -m tests.services.collector build
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.services.base import (
    REPO_ROOT,
    ServiceProcess,
    ServiceStartError,
    cache_root,
    free_port,
)

MANIFEST = REPO_ROOT / "collector_config" / "builder-config.yaml"
DISTRIBUTION = "otelcol-ai-audit"
BUILDER_MODULE = "go.opentelemetry.io/collector/cmd/builder"
BUILD_TIMEOUT = 1800.0


def collector_release(manifest: Path = MANIFEST) -> str:
    """The Collector release the manifest pins (e.g. "0.165.0"), read from its service module.

    The builder, the docker-compose image tag and every component must be on this one release.
    """
    match = re.search(r"go\.opentelemetry\.io/collector/service v(\S+)", manifest.read_text())
    if match is None:
        raise ServiceStartError(f"{manifest} pins no go.opentelemetry.io/collector/service")
    return match.group(1)


def go_executable() -> str:
    go = shutil.which("go")
    if go is None:
        raise ServiceStartError("building the Collector needs the Go toolchain (`go`) on PATH")
    return go


def go_env(name: str) -> str:
    """A Go setting as the go command sees it (environment, then its env file)."""
    result = subprocess.run(
        [go_executable(), "env", name], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def go_version() -> str:
    """The Go version that would build the binary (honours GOTOOLCHAIN)."""
    return go_env("GOVERSION")


LOCAL_PATH = re.compile(r"^(\s*path:\s*)(\S+)\s*$", re.MULTILINE)
"""A manifest's `path:` entry: a module of this repository, relative to its root."""


def cache_key(manifest: Path = MANIFEST) -> str:
    digest = hashlib.sha256(manifest.read_bytes())
    for match in LOCAL_PATH.finditer(manifest.read_text()):
        module = REPO_ROOT / match.group(2)
        for source in sorted(module.rglob("*")):
            if source.is_file() and source.suffix in (".go", ".mod", ".sum"):
                digest.update(str(source.relative_to(module)).encode() + source.read_bytes())
    digest.update(go_version().encode())
    return digest.hexdigest()


def otelcol_cache() -> Path:
    path = cache_root() / "otelcol"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cached_binary_path(manifest: Path = MANIFEST) -> Path:
    return otelcol_cache() / cache_key(manifest)[:16] / DISTRIBUTION


def collector_binary(manifest: Path = MANIFEST) -> Path:
    """The cached Collector binary, built first if this manifest and Go version have none."""
    binary = cached_binary_path(manifest)
    if binary.is_file():
        return binary
    build_collector(manifest, binary)
    return binary


def builder_binary(release: str) -> Path:
    """ocb at the manifest's release, installed once into the cache."""
    bin_dir = otelcol_cache() / f"builder-v{release}"
    builder = bin_dir / "builder"
    if builder.is_file():
        return builder
    progress(f"installing {BUILDER_MODULE}@v{release}")
    run_or_raise(
        [go_executable(), "install", f"{BUILDER_MODULE}@v{release}"],
        cwd=otelcol_cache(),
        env={"GOBIN": str(bin_dir)},
        what=f"installing ocb v{release}",
    )
    return builder


def build_collector(manifest: Path, destination: Path) -> None:
    """Build with ocb in a scratch dir and move the binary into place atomically.

    The manifest's relative `output_path` lands under the scratch dir because ocb runs there;
    the scratch dir sits beside the cache so the final rename stays on one filesystem.
    """
    builder = builder_binary(collector_release(manifest))
    progress(
        f"building {DISTRIBUTION} from {manifest.name} into {destination.parent}; "
        "a cold build downloads Go modules and compiles for a few minutes"
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=otelcol_cache(), prefix="build-") as scratch:
        # ocb resolves `path:` from its working directory: the scratch dir's copy of the
        # manifest names the repository's modules by absolute path.
        resolved = Path(scratch) / manifest.name
        resolved.write_text(LOCAL_PATH.sub(lambda m: m.group(1) + str(REPO_ROOT / m.group(2)),
                                           manifest.read_text()))
        run_or_raise(
            [str(builder), "--config", str(resolved)],
            cwd=Path(scratch),
            env={"GOFLAGS": tolerant_goflags()},
            what=f"building {DISTRIBUTION}",
        )
        built = next((p for p in Path(scratch).rglob(DISTRIBUTION) if p.is_file()), None)
        if built is None:
            raise ServiceStartError(f"ocb reported success but wrote no {DISTRIBUTION} binary")
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(built, destination)
    size_mb = destination.stat().st_size / 1e6
    progress(f"built {destination} ({size_mb:.0f} MB) in {time.monotonic() - started:.0f}s")


def tolerant_goflags() -> str:
    """The Go flags in force plus `-e`, so ocb's `go mod tidy` writes go.mod although a test
    dependency of the file exporter is refused by the module proxy (the manifest's header)."""
    return f"{go_env('GOFLAGS')} -e".strip()


def run_or_raise(argv: list[str], cwd: Path, env: Mapping[str, str], what: str) -> None:
    """Run a build step; on failure raise with the tail of its output, which names the cause."""
    try:
        result = subprocess.run(
            argv,
            cwd=cwd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise ServiceStartError(f"{what} took over {BUILD_TIMEOUT:.0f}s") from error
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-40:])
        raise ServiceStartError(f"{what} failed (exit {result.returncode}):\n{tail}")


def progress(message: str) -> None:
    print(f"[otelcol] {message}", file=sys.stderr, flush=True)


def distinct_free_ports(count: int) -> list[int]:
    """`count` different free loopback ports (free_port alone may repeat one)."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


class CollectorService:
    """The Collector on loopback ports: OTLP in, JSON lines files out, health_check for readiness.

    `extra_config` (a mapping, or YAML text) is passed to the Collector as a second `--config`,
    which the Collector merges over the default: maps merge key by key, lists are replaced. So
    add an exporter with its own pipeline (e.g. `service.pipelines["traces/es"]`), and when
    adding extensions repeat `health_check` in `service.extensions`.

    `config_file` replaces the default config with a file of the repository (such as
    collector_config/otelcol-audit-test.yaml); it reads its ports and paths from the
    environment the service sets (plus `environment`): `${env:OTELCOL_GRPC_ENDPOINT}`,
    `${env:OTELCOL_HTTP_ENDPOINT}`, `${env:OTELCOL_HEALTH_ENDPOINT}`, `${env:OTELCOL_WORKDIR}`.
    `stop()` (or `kill()`) then `start()` restarts it on the same ports and files.
    """

    def __init__(
        self,
        workdir: Path,
        extra_config: Mapping[str, Any] | str | None = None,
        startup_timeout: float = 60.0,
        config_file: Path | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.extra_config = extra_config
        self.startup_timeout = startup_timeout
        self.config_file = config_file
        self.environment = dict(environment or {})
        grpc_port, http_port, health_port = distinct_free_ports(3)
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.health_port = health_port
        self.otlp_grpc_endpoint = f"http://127.0.0.1:{grpc_port}"
        self.otlp_http_endpoint = f"http://127.0.0.1:{http_port}"
        self.health_url = f"http://127.0.0.1:{health_port}/"
        self.traces_path = workdir / "traces.jsonl"
        self.logs_path = workdir / "logs.jsonl"
        self.metrics_path = workdir / "metrics.jsonl"
        self.process: ServiceProcess | None = None

    def config(self) -> dict[str, Any]:
        """The default test config: every signal to its own JSON lines file, plus debug."""
        signals = {"traces": self.traces_path, "logs": self.logs_path, "metrics": self.metrics_path}
        file_exporter = {"format": "json", "flush_interval": "100ms"}
        return {
            "receivers": {
                "otlp": {
                    "protocols": {
                        "grpc": {"endpoint": f"127.0.0.1:{self.grpc_port}"},
                        "http": {"endpoint": f"127.0.0.1:{self.http_port}"},
                    }
                }
            },
            "processors": {"batch": {"timeout": "200ms"}},
            "exporters": {
                "debug": {"verbosity": "basic"},
                **{
                    f"file/{signal}": {"path": str(path), **file_exporter}
                    for signal, path in signals.items()
                },
            },
            "extensions": {"health_check": {"endpoint": f"127.0.0.1:{self.health_port}"}},
            "service": {
                "extensions": ["health_check"],
                "pipelines": {
                    signal: {
                        "receivers": ["otlp"],
                        "processors": ["batch"],
                        "exporters": [f"file/{signal}", "debug"],
                    }
                    for signal in signals
                },
                # No Prometheus endpoint on :8888, so several Collectors can run side by side.
                "telemetry": {"metrics": {"level": "none"}},
            },
        }

    def config_files(self) -> list[Path]:
        """Write the config (JSON is YAML) and the extra config into the workdir."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        base = self.config_file or self.workdir / "otelcol.yaml"
        if self.config_file is None:
            base.write_text(json.dumps(self.config(), indent=2))
        if self.extra_config is None:
            return [base]
        extra = self.workdir / "otelcol-extra.yaml"
        if isinstance(self.extra_config, str):
            extra.write_text(self.extra_config)
        else:
            extra.write_text(json.dumps(self.extra_config, indent=2))
        return [base, extra]

    def healthy(self) -> bool:
        with urllib.request.urlopen(self.health_url, timeout=2) as response:
            return bool(response.status == 200)

    def start(self) -> CollectorService:
        binary = collector_binary()
        argv = [str(binary)]
        for path in self.config_files():
            argv += ["--config", f"file:{path}"]
        self.process = ServiceProcess(
            name=DISTRIBUTION,
            argv=argv,
            workdir=self.workdir,
            ready=self.healthy,
            env={
                "OTELCOL_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
                "OTELCOL_HTTP_ENDPOINT": f"127.0.0.1:{self.http_port}",
                "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{self.health_port}",
                "OTELCOL_WORKDIR": str(self.workdir),
                **self.environment,
            },
            startup_timeout=self.startup_timeout,
        )
        self.process.start()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill: no shutdown, no flush of what is in memory."""
        if self.process is not None and self.process.process is not None:
            os.killpg(self.process.process.pid, signal.SIGKILL)
            self.process.process.wait(timeout=30)

    def log_tail(self, lines: int = 60) -> str:
        if self.process is None:
            return "(collector not started)"
        return self.process.log_tail(lines)

    def env(self) -> dict[str, str]:
        return {
            "OTLP_ENDPOINT": self.otlp_grpc_endpoint,
            "OTLP_HTTP_ENDPOINT": self.otlp_http_endpoint,
            "COLLECTOR_HEALTH_URL": self.health_url,
        }


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.services.collector build`: build (or find) the cached binary."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["build"]:
        print("usage: python -m tests.services.collector build", file=sys.stderr)
        return 2
    try:
        binary = collector_binary()
    except ServiceStartError as error:
        print(error, file=sys.stderr)
        return 1
    print(binary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
