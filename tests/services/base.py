"""One background process of a real service (Elasticsearch, the Collector), started and
stopped the same way by the pytest fixtures and by `make services`.

A service that does not come up raises `ServiceStartError` carrying the tail of the service's
own log, so a failing CI run shows why Elasticsearch or the Collector refused to start.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


class ServiceStartError(RuntimeError):
    """A service did not become ready; the message holds the tail of its log."""


def free_port() -> int:
    """A TCP port free on loopback right now (the service binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A stdlib HTTP server on a free loopback port, in a thread; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


JsonAnswer = Callable[[str, str, Any, bytes], "tuple[int, Any] | None"]
"""(method, path with query, headers, body) -> (status, JSON answer), or None to drop the
connection without answering."""


@contextmanager
def json_http_server(answer: JsonAnswer) -> Iterator[str]:
    """A loopback HTTP/1.1 peer whose every answer is JSON (`answer` decides it), for the
    protocols no real server can run here; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            outcome = answer(self.command, self.path, self.headers, body)
            if outcome is None:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            status, content = outcome
            data = json.dumps(content).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _answer  # noqa: N815 - the http.server API

        def log_message(self, *args: Any) -> None:
            pass

    with http_server(Handler) as url:
        yield url


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on `host:port`."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def cache_root() -> Path:
    """Where built binaries and unpacked distributions are kept between runs.

    As root the cache lives under /var/cache so that an unprivileged service user (Elasticsearch
    refuses to run as root) can read it; /root is not traversable by other users.
    """
    override = os.environ.get("OTEL_AI_AUDIT_SERVICES_CACHE")
    if override:
        root = Path(override)
    elif os.geteuid() == 0:
        root = Path("/var/cache/otel-ai-audit")
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "otel-ai-audit"
    root.mkdir(parents=True, exist_ok=True)
    return root


def unprivileged_prefix() -> list[str]:
    """Command prefix that drops root to `nobody` (empty when not root)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise ServiceStartError("running as root needs `setpriv` (util-linux) to drop privileges")
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def give_to_unprivileged_user(path: Path) -> None:
    """Make `path` (recursively) writable by the user `unprivileged_prefix` switches to."""
    if os.geteuid() != 0:
        return
    nobody = pwd.getpwnam("nobody")
    for dirpath, _dirnames, filenames in os.walk(path):
        os.chown(dirpath, nobody.pw_uid, nobody.pw_gid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), nobody.pw_uid, nobody.pw_gid)


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll `check` until it returns True or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:  # noqa: BLE001 - a service that is still booting may fail any probe
            pass
        time.sleep(interval)
    return False


@dataclass
class ServiceProcess:
    """A child process in its own session, with its output in `workdir/service.log`."""

    name: str
    argv: Sequence[str]
    workdir: Path
    ready: Callable[[], bool]
    env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout: float = 180.0
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "service.log"

    @property
    def pid_path(self) -> Path:
        return self.workdir / "service.pid"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                list(self.argv),
                cwd=self.workdir,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_path.write_text(str(self.process.pid))

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise ServiceStartError(
                    f"{self.name} exited with code {self.process.returncode} while starting\n"
                    f"{self.log_tail()}"
                )
            return self.ready()

        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            try:
                if up():
                    return
            except ServiceStartError:
                raise
            except Exception:  # noqa: BLE001 - probes fail until the service listens
                pass
            time.sleep(0.5)
        self.stop()
        raise ServiceStartError(
            f"{self.name} was not ready after {self.startup_timeout:.0f}s\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 60.0) -> None:
        pid = self.process.pid if self.process else read_pid(self.pid_path)
        if pid is not None:
            stop_process_group(pid, timeout)
        if self.process is not None:
            self.process.wait(timeout=5)
        self.pid_path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no log at {self.log_path})"
        return f"--- last {lines} lines of {self.log_path} ---\n" + "\n".join(text[-lines:])


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def stop_process_group(pid: int, timeout: float = 60.0) -> None:
    """SIGTERM the process group led by `pid`, SIGKILL it if it outlives `timeout`."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class SingleProcessService:
    """A service that is one `ServiceProcess` (`name` for messages): stop and log tail."""

    name = "service"
    process: ServiceProcess | None = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)

    def log_tail(self, lines: int = 60) -> str:
        if self.process is None:
            return f"({self.name} not started)"
        return self.process.log_tail(lines)


APT_TIMEOUT = 900.0
"""Seconds an apt-get step may take (a package download on a slow mirror)."""


def debian_binary(package: str, *names: str) -> Path:
    """The first of the binaries `names` on PATH, apt-get installing Debian's `package` first
    when none is (as root, as `make test` runs on a fresh machine)."""
    found = next(filter(None, map(shutil.which, names)), None)
    if found:
        return Path(found)
    if os.geteuid() != 0:
        raise ServiceStartError(f"{names[0]} is not installed and installing it needs root: run "
                                f"`apt-get install -y {package}`")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", package]):
        try:
            result = subprocess.run(command, capture_output=True, text=True, env=environment,
                                    timeout=APT_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ServiceStartError(f"{' '.join(command)} failed: {error}") from error
        if result.returncode != 0:
            raise ServiceStartError(f"{' '.join(command)} exited {result.returncode}:\n"
                                    f"{result.stderr[-2000:]}")
    found = next(filter(None, map(shutil.which, names)), None)
    if not found:
        raise ServiceStartError(f"apt-get installed {package} but no {names[0]} binary is on "
                                "PATH")
    return Path(found)
