"""A real Apache Kafka broker for the tests: one KRaft node (broker and controller) on loopback.

No Docker: the broker's jars come from Maven Central. A tiny pom generated in the services cache
names `org.apache.kafka:kafka_2.13` and log4j's SLF4J binding (Kafka logs through SLF4J and ships
no binding in its Maven artifacts), and `mvn dependency:copy-dependencies` puts them with every
runtime dependency into one `libs/` folder, cached by version. The node is formatted with
`kafka.tools.StorageTool` and run as `kafka.Kafka server.properties`, like the distribution's
scripts do.

The first idempotent producer of a fresh broker waits ~3 s for the producer-id block to be
allocated by the controller; `start` sends one warm-up message so the tests don't pay it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.services.base import (
    ServiceProcess,
    ServiceStartError,
    SingleProcessService,
    cache_root,
    free_port,
    port_open,
)
from tests.services.elasticsearch import java_home

KAFKA_VERSION = "4.4.0"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.25.5"
HEAP = os.environ.get("OTEL_AI_AUDIT_TEST_KAFKA_HEAP", "384m")
WARMUP_TOPIC = "otel-ai-audit-warmup"
SASL_USERNAME = "audit-shipper"
SASL_PASSWORD = "audit-shipper-secret"
"""The one user of the SASL/PLAIN listener (`sasl_bootstrap_servers`)."""

POM = f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.github.otel-ai-audit.tests</groupId>
  <artifactId>kafka-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{SCALA_VERSION}</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""

LOG4J2_PROPERTIES = """\
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = console
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def kafka_libs() -> Path:
    """The folder of Kafka's jars with their runtime dependencies, resolved by Maven once."""
    libs = cache_root() / "kafka" / f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}" / "libs"
    if libs.is_dir() and any(libs.glob(f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}.jar")):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceStartError("resolving Kafka needs Maven (`mvn`) on PATH")
    progress(f"resolving org.apache.kafka:kafka_{SCALA_VERSION}:{KAFKA_VERSION} with Maven")
    started = time.monotonic()
    libs.parent.mkdir(parents=True, exist_ok=True)
    # A scratch folder beside the result: a concurrent run never sees a half-filled libs/.
    with tempfile.TemporaryDirectory(dir=libs.parent, prefix="resolve-") as scratch:
        pom = Path(scratch) / "pom.xml"
        pom.write_text(POM)
        command = [
            mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={scratch}/libs",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceStartError(
                f"Maven could not resolve Kafka {KAFKA_VERSION}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        os.replace(Path(scratch) / "libs", libs)
    progress(f"resolved {len(list(libs.iterdir()))} jars into {libs} in "
             f"{time.monotonic() - started:.0f}s")
    return libs


def progress(message: str) -> None:
    print(f"[kafka] {message}", file=sys.stderr, flush=True)


class KafkaService(SingleProcessService):
    """One KRaft node (`process.roles=broker,controller`) on free loopback ports.

    Clients use `bootstrap_servers` (PLAINTEXT) or `sasl_bootstrap_servers` (SASL_PLAINTEXT,
    mechanism PLAIN, user `SASL_USERNAME`); data and log live under `workdir`. `auto_create_topics`
    maps to the broker's `auto.create.topics.enable` (off lets tests see a missing topic).
    """

    name = "kafka"

    def __init__(self, workdir: Path, auto_create_topics: bool = True,
                 startup_timeout: float = 120.0) -> None:
        self.workdir = workdir
        self.auto_create_topics = auto_create_topics
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.sasl_port = free_port()
        self.controller_port = free_port()
        self.process: ServiceProcess | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers, "KAFKA_VERSION": KAFKA_VERSION}

    def _properties(self) -> str:
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (f"PLAINTEXT://127.0.0.1:{self.port},"
                          f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port},"
                          f"CONTROLLER://127.0.0.1:{self.controller_port}"),
            "advertised.listeners": (f"PLAINTEXT://127.0.0.1:{self.port},"
                                     f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}"),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ("PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,"
                                               "CONTROLLER:PLAINTEXT"),
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'user_{SASL_USERNAME}="{SASL_PASSWORD}";'),
            "log.dirs": str(self.workdir / "data"),
            "auto.create.topics.enable": str(self.auto_create_topics).lower(),
            # One node: every internal topic has one replica.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _java(self, libs: Path, *args: str) -> list[str]:
        return [
            str(Path(java_home(), "bin", "java")), f"-Xms{HEAP}", f"-Xmx{HEAP}",
            "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp", f"{libs}/*", *args,
        ]

    def start(self) -> KafkaService:
        if importlib.util.find_spec("confluent_kafka") is None:
            raise ServiceStartError("probing the Kafka broker needs confluent-kafka: "
                                    "pip install -e '.[test]'")
        libs = kafka_libs()
        self.workdir.mkdir(parents=True, exist_ok=True)
        properties = self.workdir / "server.properties"
        properties.write_text(self._properties())
        (self.workdir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        if not (self.workdir / "data" / "meta.properties").exists():
            self._format(libs, properties)
        self.process = ServiceProcess(
            name="kafka",
            argv=self._java(libs, "kafka.Kafka", str(properties)),
            workdir=self.workdir,
            ready=lambda: port_open(self.port) and self._answers_metadata(),
            startup_timeout=self.startup_timeout,
        )
        self.process.start()
        try:
            self._warm_up()
        except BaseException:
            self.stop()
            raise
        return self

    def _format(self, libs: Path, properties: Path) -> None:
        def storage_tool(*args: str) -> str:
            result = subprocess.run(self._java(libs, "kafka.tools.StorageTool", *args),
                                    capture_output=True, text=True, check=False, timeout=120)
            if result.returncode != 0:
                raise ServiceStartError(f"kafka-storage {args[0]} exited {result.returncode}:\n"
                                        f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
            return result.stdout

        cluster_id = storage_tool("random-uuid").strip().splitlines()[-1]
        storage_tool("format", "-t", cluster_id, "-c", str(properties))

    def _answers_metadata(self) -> bool:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        return bool(admin.list_topics(timeout=2).brokers)

    def _warm_up(self) -> None:
        """Send one message with an idempotent producer, so the broker has allocated producer
        ids before any test times or counts anything."""
        from confluent_kafka import KafkaError, KafkaException, Producer
        from confluent_kafka.admin import AdminClient
        from confluent_kafka.cimpl import NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        try:
            admin.create_topics([NewTopic(WARMUP_TOPIC, 1, 1)])[WARMUP_TOPIC].result(timeout=60)
        except KafkaException as error:  # a restarted broker already has it
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ServiceStartError(f"kafka could not create {WARMUP_TOPIC}: {error}\n"
                                        f"{self.log_tail()}") from error
        # log_level 3: librdkafka's expected "Coordinator load in progress: retrying" warning
        # is the wait this warm-up exists for.
        producer = Producer({"bootstrap.servers": self.bootstrap_servers,
                             "enable.idempotence": True, "acks": "all", "log_level": 3})
        errors: list[object] = []
        producer.produce(WARMUP_TOPIC, b"warm-up",
                         on_delivery=lambda error, _message: errors.append(error))
        if producer.flush(60) or errors != [None]:
            raise ServiceStartError(f"kafka did not take an idempotent warm-up message: {errors}\n"
                                    f"{self.log_tail()}")

    def restart(self, down_for: float = 0.0) -> None:
        """Stop the broker, stay down `down_for` seconds, start it again on the same ports and
        data: an outage clients see at an unchanged address."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def remove_data(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

