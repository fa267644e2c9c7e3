"""Session fixtures: the real services every integration test talks to.

Each service starts once per test run on free loopback ports and stops at the end. A service
that fails to start fails the tests that need it, with the service's own log in the message.
Set OTEL_AI_AUDIT_SKIP_SERVICES=1 to skip those tests instead (never honoured when CI=true).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

from tests.services.base import ServiceStartError
from tests.services.collector import CollectorService
from tests.services.elasticsearch import ElasticsearchService
from tests.services.kafka import KafkaCluster, KafkaService
from tests.services.s3 import S3Service
from tests.services.tsa import TimestampAuthorityService

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile("ci", max_examples=400, deadline=None)
settings.load_profile("dev")
"""Property tests scale their example counts from the profile's `max_examples`: "dev" (the
default, `make test-unit`) keeps a developer's loop under a minute, "ci" (`make test`,
`pytest --hypothesis-profile=ci`) runs eight times as many examples."""

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def _service_unavailable(error: ServiceStartError) -> None:
    if os.environ.get("OTEL_AI_AUDIT_SKIP_SERVICES") == "1" and os.environ.get("CI") != "true":
        pytest.skip(f"service unavailable and OTEL_AI_AUDIT_SKIP_SERVICES=1: {error}")
    pytest.fail(f"a real service the tests need did not start:\n{error}", pytrace=False)


def _running(
    service: (ElasticsearchService | CollectorService | S3Service | TimestampAuthorityService
              | KafkaService | KafkaCluster),
) -> Iterator[Any]:
    """Start a service for the session, hand it over, stop it (and drop its data) at the end."""
    try:
        service.start()
    except ServiceStartError as error:
        _service_unavailable(error)
    yield service
    service.stop()
    if isinstance(service, ElasticsearchService | KafkaService | KafkaCluster):
        service.remove_data()


@pytest.fixture(scope="session")
def elasticsearch() -> Iterator[ElasticsearchService]:
    """One real Elasticsearch node."""
    yield from _running(ElasticsearchService())


@pytest.fixture(scope="session")
def elasticsearch_cluster() -> Iterator[ElasticsearchService]:
    """A real 3-node Elasticsearch cluster, for tests of records spread over shards and nodes."""
    yield from _running(ElasticsearchService(nodes=3, heap="384m"))


@pytest.fixture(scope="session")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorService]:
    """The real Collector built with ocb: OTLP in, JSON-lines files out."""
    yield from _running(CollectorService(tmp_path_factory.mktemp("collector")))


@pytest.fixture(scope="session")
def s3_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Service]:
    """A real S3 server with Object Lock (versitygw over the temp dir, which needs user xattrs)."""
    yield from _running(S3Service(tmp_path_factory.mktemp("s3")))


@pytest.fixture(scope="session")
def tsa_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimestampAuthorityService]:
    """A real RFC 3161 time-stamping authority, with a fresh in-memory certificate chain."""
    yield from _running(TimestampAuthorityService(tmp_path_factory.mktemp("tsa")))


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaService]:
    """One real Apache Kafka node in KRaft mode (broker and controller), idempotence warmed up,
    automatic topic creation off (as production clusters usually run)."""
    yield from _running(KafkaService(tmp_path_factory.mktemp("kafka"), auto_create_topics=False))


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three real Kafka nodes (each broker and controller): replication factor 3,
    min.insync.replicas=2, automatic topic creation off; for the tests that kill brokers."""
    yield from _running(KafkaCluster(tmp_path_factory.mktemp("kafka-cluster")))
