"""A gateway Collector in front of an archive Collector, for the tests of the Collector routes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.services.base import ServiceStartError
from tests.services.collector import CollectorService

_Pair = TypeVar("_Pair", bound="CollectorPair")


class CollectorPair:
    """Two real Collectors started and stopped together, archive first; one that does not start
    fails the test (never a skip). Subclasses make `archive` and `gateway`."""

    archive: CollectorService
    gateway: CollectorService

    def start(self: _Pair) -> _Pair:
        try:
            self.archive.start()
            self.gateway.start()
        except ServiceStartError as error:
            self.stop()
            pytest.fail(f"a real Collector did not start:\n{error}", pytrace=False)
        return self

    def stop(self) -> None:
        self.gateway.stop()
        self.archive.stop()

    def __enter__(self: _Pair) -> _Pair:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def attribute_map(attributes: list[dict[str, Any]]) -> dict[str, Any]:
    """OTLP/JSON attributes (`[{"key": ..., "value": {"stringValue": ...}}]`) as a dict."""
    return {a["key"]: next(iter(a["value"].values())) for a in attributes}


def archived_spans(path: Path) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(OTLP resource, span attributes) of every span in a Collector's OTLP/JSON lines file, in
    file order, repeats included; nothing if the file is not written yet."""
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        for resource in json.loads(line)["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    yield resource["resource"], attribute_map(span.get("attributes", []))
