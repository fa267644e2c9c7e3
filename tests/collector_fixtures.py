"""A gateway Collector in front of an archive Collector, for the tests of the Collector routes."""

from __future__ import annotations

from typing import TypeVar

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
