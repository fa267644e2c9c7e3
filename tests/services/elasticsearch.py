"""A real Elasticsearch for the tests: one node, or a cluster of N nodes, on loopback.

The distribution is Elastic's `integ-test-zip` build of Elasticsearch, resolved from Maven
Central by `elasticsearch-dist/pom.xml` into ~/.m2 and unpacked once into the services cache.
No Docker is involved. Elasticsearch refuses to run as root, so as root each node runs as
`nobody` (see `base.unprivileged_prefix`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.services.base import (
    REPO_ROOT,
    ServiceProcess,
    ServiceStartError,
    cache_root,
    free_port,
    give_to_unprivileged_user,
    port_open,
    stop_process_group,
    unprivileged_prefix,
    wait_until,
)

ELASTICSEARCH_VERSION = "8.19.21"
POM = REPO_ROOT / "tests" / "services" / "elasticsearch-dist" / "pom.xml"
HEAP = os.environ.get("OTEL_AI_AUDIT_TEST_ES_HEAP", "512m")


def java_home() -> str:
    """A JDK for Elasticsearch 8.x (17 or newer): JAVA_HOME, else the one `java` belongs to."""
    for candidate in (os.environ.get("ES_JAVA_HOME"), os.environ.get("JAVA_HOME")):
        if candidate and Path(candidate, "bin", "java").exists():
            return candidate
    java = shutil.which("java")
    if java is None:
        raise ServiceStartError("Elasticsearch needs a JDK 17+: no `java` on PATH and no JAVA_HOME")
    return str(Path(java).resolve().parents[1])


def distribution_home() -> Path:
    """The unpacked distribution, resolved through Maven on first use and cached after."""
    home = cache_root() / "elasticsearch" / f"elasticsearch-{ELASTICSEARCH_VERSION}"
    if (home / "bin" / "elasticsearch").exists():
        return home
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceStartError("resolving Elasticsearch needs Maven (`mvn`) on PATH")
    with tempfile.TemporaryDirectory(dir=home.parent.parent) as staging:
        command = [
            mvn, "-q", "-B", "-f", str(POM), f"-Des.version={ELASTICSEARCH_VERSION}",
            f"-Dunpack.dir={staging}/unpacked", f"-Dwork.dir={staging}/maven", "process-resources",
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise ServiceStartError(
                f"Maven could not resolve Elasticsearch {ELASTICSEARCH_VERSION}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        home.parent.mkdir(parents=True, exist_ok=True)
        os.replace(Path(staging) / "unpacked" / f"elasticsearch-{ELASTICSEARCH_VERSION}", home)
    return home


def _get_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class ElasticsearchService:
    """`nodes` Elasticsearch processes forming one cluster; `url` points at the first node."""

    def __init__(self, workdir: Path | None = None, nodes: int = 1, heap: str = HEAP) -> None:
        # Not under the caller's tmp dir: pytest's tmp root is private to root, and the nodes
        # may run as `nobody`.
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="otel-ai-audit-es-"))
        self.node_count = nodes
        self.heap = heap
        self.cluster_name = f"otel-ai-audit-test-{os.getpid()}"
        self.http_ports = [free_port() for _ in range(nodes)]
        self.transport_ports = [free_port() for _ in range(nodes)]
        self.processes: list[ServiceProcess] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_ports[0]}"

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.http_ports]

    def env(self) -> dict[str, str]:
        return {"ELASTICSEARCH_URL": self.url, "ELASTICSEARCH_VERSION": ELASTICSEARCH_VERSION}

    def start(self, timeout: float = 240.0) -> None:
        home = distribution_home()
        self.workdir.mkdir(parents=True, exist_ok=True)
        for index in range(self.node_count):
            self.processes.append(self._node(home, index))
        give_to_unprivileged_user(self.workdir)
        try:
            for process in self.processes:
                process.start()
            if not wait_until(self._cluster_healthy, timeout=timeout, interval=1.0):
                raise ServiceStartError(
                    f"Elasticsearch cluster of {self.node_count} did not reach health green/yellow "
                    f"with all nodes in {timeout:.0f}s\n"
                    + "\n".join(process.log_tail(40) for process in self.processes)
                )
        except BaseException:
            self.stop()
            raise

    def _node(self, home: Path, index: int) -> ServiceProcess:
        name = f"node-{index}"
        node_dir = self.workdir / name
        config_dir = node_dir / "config"
        shutil.copytree(home / "config", config_dir, dirs_exist_ok=True)
        for sub in ("data", "logs"):
            (node_dir / sub).mkdir(parents=True, exist_ok=True)
        seeds = ",".join(f"127.0.0.1:{port}" for port in self.transport_ports)
        masters = ",".join(f"node-{i}" for i in range(self.node_count))
        settings = {
            "cluster.name": self.cluster_name,
            "node.name": name,
            "network.host": "127.0.0.1",
            "http.port": str(self.http_ports[index]),
            "transport.port": str(self.transport_ports[index]),
            "path.data": str(node_dir / "data"),
            "path.logs": str(node_dir / "logs"),
            "xpack.security.enabled": "false",
            "action.destructive_requires_name": "false",
            # Test disks are often nearly full; watermarks would block writes for no reason.
            "cluster.routing.allocation.disk.threshold_enabled": "false",
        }
        if self.node_count == 1:
            settings["discovery.type"] = "single-node"
        else:
            settings["discovery.seed_hosts"] = seeds
            settings["cluster.initial_master_nodes"] = masters
        argv = [
            *unprivileged_prefix(),
            str(home / "bin" / "elasticsearch"),
            *(f"-E{key}={value}" for key, value in settings.items()),
        ]
        return ServiceProcess(
            name=f"elasticsearch {name}",
            argv=argv,
            workdir=node_dir,
            # A node answers HTTP before the cluster has a master: readiness of the whole
            # cluster is checked once every node listens.
            ready=lambda port=self.http_ports[index]: port_open(port),
            env={
                "ES_JAVA_HOME": java_home(),
                "ES_PATH_CONF": str(config_dir),
                "ES_JAVA_OPTS": f"-Xms{self.heap} -Xmx{self.heap}",
            },
            startup_timeout=240.0,
        )

    def _cluster_healthy(self) -> bool:
        health = _get_json(
            f"{self.url}/_cluster/health?wait_for_nodes={self.node_count}&timeout=2s"
        )
        return (
            health.get("number_of_nodes") == self.node_count
            and health.get("status") in ("green", "yellow")
        )

    def stop(self) -> None:
        for process in self.processes:
            try:
                process.stop()
            except Exception:  # noqa: BLE001 - stop every node even if one misbehaves
                if process.process is not None:
                    stop_process_group(process.process.pid, timeout=5)
        self.processes.clear()

    def restart(self, down_for: float = 0.0, timeout: float = 240.0) -> None:
        """Stop every node, stay down `down_for` seconds, then start new node processes on the
        same data directories and ports: an outage that clients see at an unchanged URL."""
        self.stop()
        time.sleep(down_for)
        self.start(timeout)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(process.log_tail(lines) for process in self.processes)

    def remove_data(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
