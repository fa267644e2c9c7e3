"""Real Apache Kafka for the tests: one KRaft node (broker and controller) on loopback, or a
cluster of three such nodes for the fault tests.

No Docker: the broker's jars come from Maven Central. A tiny pom generated in the services cache
names `org.apache.kafka:kafka_2.13` and log4j's SLF4J binding (Kafka logs through SLF4J and ships
no binding in its Maven artifacts), and `mvn dependency:copy-dependencies` puts them with every
runtime dependency into one `libs/` folder, cached by version. The node is formatted with
`kafka.tools.StorageTool` and run as `kafka.Kafka server.properties`, like the distribution's
scripts do.

The first idempotent producer of a fresh broker waits ~3 s for the producer-id block to be
allocated by the controller; `start` sends one warm-up message so the tests don't pay it.

`KafkaCluster` runs three combined broker+controller nodes (a three-voter quorum: the fewest
JVMs that survive losing one node), replication factor 3 and `min.insync.replicas=2` by
default, so `acks=all` writes go on with one node down and stop with two down.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


def cluster_id() -> str:
    """A new KRaft cluster id, as `kafka-storage random-uuid` prints it (URL-safe base64 of 16
    random bytes, never starting with '-'), without a JVM start."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


class KafkaService(SingleProcessService):
    """One KRaft node (`process.roles=broker,controller`) on free loopback ports.

    Clients use `bootstrap_servers` (PLAINTEXT) or `sasl_bootstrap_servers` (SASL_PLAINTEXT,
    mechanism PLAIN, user `SASL_USERNAME`); data and log live under `workdir`. `auto_create_topics`
    maps to the broker's `auto.create.topics.enable` (off lets tests see a missing topic).
    `KafkaCluster` makes nodes of a quorum with `node_id`, `voters` (node id to controller port)
    and `replicas` (the default replication factor, also of the internal topics);
    `jvm_options` go to the node's JVM.
    """

    name = "kafka"

    def __init__(self, workdir: Path, auto_create_topics: bool = True,
                 startup_timeout: float = 120.0, *, node_id: int = 1,
                 voters: dict[int, int] | None = None, replicas: int = 1,
                 jvm_options: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.auto_create_topics = auto_create_topics
        self.startup_timeout = startup_timeout
        self.node_id = node_id
        self.port = free_port()
        self.sasl_port = free_port()
        self.controller_port = free_port() if voters is None else voters[node_id]
        self.voters = voters or {node_id: self.controller_port}
        self.replicas = replicas
        self.jvm_options = jvm_options
        self.cluster_id = cluster_id()
        """The KRaft cluster id the storage is formatted with at the first start
        (`KafkaCluster` gives its nodes one)."""
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
        in_sync = str(min(self.replicas, 2))
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": ",".join(f"{node}@127.0.0.1:{port}"
                                                 for node, port in sorted(self.voters.items())),
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
            # `replicas` copies of every topic, the internal ones too; with three, writes go on
            # while two are in sync.
            "num.partitions": str(self.replicas),
            "default.replication.factor": str(self.replicas),
            "min.insync.replicas": in_sync,
            "offsets.topic.replication.factor": str(self.replicas),
            "transaction.state.log.replication.factor": str(self.replicas),
            "transaction.state.log.min.isr": in_sync,
            "share.coordinator.state.topic.replication.factor": str(self.replicas),
            "share.coordinator.state.topic.min.isr": in_sync,
            "group.initial.rebalance.delay.ms": "0",
            # A node killed without a word is fenced, and its partitions led elsewhere, after
            # this session timeout (default 9 s): 3 s keeps the fault tests short.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _java(self, libs: Path, *args: str) -> list[str]:
        return [
            str(Path(java_home(), "bin", "java")), f"-Xms{HEAP}", f"-Xmx{HEAP}",
            "-XX:+UseG1GC", *self.jvm_options, "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp", f"{libs}/*", *args,
        ]

    def start(self) -> KafkaService:
        self.launch()
        try:
            warm_up(self.bootstrap_servers, self.replicas, self.log_tail)
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self) -> None:
        """Start the node (formatting its storage the first time) and wait until it serves
        as a broker of the cluster; no warm-up."""
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
            name=f"kafka node {self.node_id}",
            argv=self._java(libs, "kafka.Kafka", str(properties)),
            workdir=self.workdir,
            ready=lambda: port_open(self.port) and self._serves(),
            startup_timeout=self.startup_timeout,
        )
        self.process.start()

    def _format(self, libs: Path, properties: Path) -> None:
        command = self._java(libs, "kafka.tools.StorageTool", "format", "-t", self.cluster_id,
                             "-c", str(properties))
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                timeout=120)
        if result.returncode != 0:
            raise ServiceStartError(f"kafka-storage format exited {result.returncode}:\n"
                                    f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")

    def _serves(self) -> bool:
        """The node answers metadata and lists itself among the live brokers (a restarted
        node of a cluster only once the controller has let it in again)."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        return self.node_id in admin.list_topics(timeout=2).brokers

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the node's process group and wait until it is gone (a crash, not a
        shutdown, with SIGKILL)."""
        if self.process is None or self.process.process is None:
            return
        os.killpg(self.process.process.pid, sig)
        self.process.process.wait(timeout=60)

    def restart(self, down_for: float = 0.0) -> None:
        """Stop the broker, stay down `down_for` seconds, start it again on the same ports and
        data: an outage clients see at an unchanged address."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def remove_data(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def warm_up(bootstrap_servers: str, replicas: int, log_tail: Callable[[], str]) -> None:
    """Send one message with an idempotent producer, so the brokers have allocated producer
    ids before any test times or counts anything."""
    from confluent_kafka import KafkaError, KafkaException, Producer
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    try:
        admin.create_topics([NewTopic(WARMUP_TOPIC, 1, replicas)])[WARMUP_TOPIC].result(
            timeout=60)
    except KafkaException as error:  # a restarted broker already has it
        if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise ServiceStartError(f"kafka could not create {WARMUP_TOPIC}: {error}\n"
                                    f"{log_tail()}") from error
    # log_level 3: librdkafka's expected "Coordinator load in progress: retrying" warning
    # is the wait this warm-up exists for.
    producer = Producer({"bootstrap.servers": bootstrap_servers,
                         "enable.idempotence": True, "acks": "all", "log_level": 3})
    errors: list[object] = []
    producer.produce(WARMUP_TOPIC, b"warm-up",
                     on_delivery=lambda error, _message: errors.append(error))
    if producer.flush(60) or errors != [None]:
        raise ServiceStartError(f"kafka did not take an idempotent warm-up message: {errors}\n"
                                f"{log_tail()}")


CLUSTER_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1",)
"""The C1 compiler only: a node's start takes half the CPU (5.0 s instead of 9.4 s of JVM
time measured here), which the fault tests pay at every restart; they never measure the
brokers' throughput, which the one-node service (full JIT) keeps for the benchmarks."""


class KafkaCluster:
    """`size` KRaft nodes, each broker and controller, on loopback: a quorum of `size` voters,
    topics created with `size` replicas and `min.insync.replicas=2` unless a test says
    otherwise, automatic topic creation off. Nodes are numbered from 1 (their `node.id`)."""

    name = "kafka cluster"

    def __init__(self, workdir: Path, size: int = 3, startup_timeout: float = 180.0) -> None:
        self.workdir = workdir
        voters = {node: free_port() for node in range(1, size + 1)}
        self.nodes = {node: KafkaService(workdir / f"node{node}", auto_create_topics=False,
                                         startup_timeout=startup_timeout, node_id=node,
                                         voters=voters, replicas=size,
                                         jvm_options=CLUSTER_JVM_OPTIONS)
                      for node in voters}
        shared = cluster_id()
        for service in self.nodes.values():
            service.cluster_id = shared

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes.values())

    def env(self) -> dict[str, str]:
        return {"KAFKA_CLUSTER_BOOTSTRAP_SERVERS": self.bootstrap_servers}

    def start(self) -> KafkaCluster:
        """Start every node at once (none can serve before a majority of the quorum runs)
        and warm the producer-id allocation up."""
        try:
            self.restart(*self.nodes)
            warm_up(self.bootstrap_servers, len(self.nodes), self.log_tail)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, node: int, sig: int = signal.SIGKILL) -> None:
        """Kill one node (SIGKILL: a crash, nothing flushed, no controlled shutdown)."""
        self.nodes[node].kill(sig)

    def restart(self, *nodes: int) -> None:
        """Start the given stopped or killed nodes again, together, on their ports and data;
        returns once each serves as a broker."""
        with ThreadPoolExecutor(len(nodes)) as pool:
            for started in [pool.submit(self.nodes[node].launch) for node in nodes]:
                started.result()

    def stop(self) -> None:
        """Stop every node at once (one by one, the last ones wait for a quorum that left)."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            for stopped in [pool.submit(node.stop) for node in self.nodes.values()]:
                stopped.result()

    def remove_data(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(node.log_tail(lines) for node in self.nodes.values())
