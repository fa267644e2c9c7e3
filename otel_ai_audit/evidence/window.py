"""The time window an authority asks about, selected by event time (`event.time`, UTC).

The window is half-open, `[from, to)`: two consecutive requests never count a record twice.
Times are RFC 3339 / ISO 8601; one without a UTC offset is read as UTC (the trail's clock).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from otel_ai_audit.errors import RequestError
from otel_ai_audit.record.canonical import ns_from_rfc3339, rfc3339_from_ns
from otel_ai_audit.record.schema import DESCRIBED_TIME

_FRACTION = re.compile(r"\.(\d+)")


class WindowError(RequestError):
    """A time or window that cannot be used, said in words a user can act on."""


def parse_time(text: str) -> int:
    """Unix nanoseconds of an RFC 3339 / ISO 8601 time (nanosecond fractions kept; a finer
    one is refused: a request's bounds must be exact)."""
    fraction = _FRACTION.search(text)
    if fraction is not None and len(fraction.group(1)) > 9:
        raise WindowError(f"{text!r}: more than nanosecond precision")
    try:
        return ns_from_rfc3339(text)
    except ValueError:
        raise WindowError(f"{text!r} is not a time: use RFC 3339, e.g. 2026-03-01T00:00:00Z"
                          ) from None


@dataclass(frozen=True)
class Window:
    start_ns: int
    end_ns: int

    @classmethod
    def parse(cls, start: str, end: str) -> Window:
        window = cls(parse_time(start), parse_time(end))
        if window.end_ns <= window.start_ns:
            raise WindowError(f"the window ends ({end}) before it starts ({start})")
        return window

    @cached_property
    def start(self) -> str:
        """The start as the store's `time` column writes it (fixed width: compares as text)."""
        return rfc3339_from_ns(self.start_ns)

    @cached_property
    def end(self) -> str:
        return rfc3339_from_ns(self.end_ns)

    def holds(self, time: str) -> bool:
        return self.start <= time < self.end

    def bucket(self, time: str, buckets: int) -> int:
        """Index of the equal slice of the window `time` falls in (0 .. buckets-1)."""
        offset = parse_time(time) - self.start_ns
        return min(max(offset * buckets // (self.end_ns - self.start_ns), 0), buckets - 1)


def described_ns(event: dict[str, Any]) -> int | None:
    """The event's described time (`record.schema.describing`) in Unix ns, if it has a readable
    one."""
    text = event.get(DESCRIBED_TIME)
    try:
        return parse_time(text) if isinstance(text, str) else None
    except WindowError:
        return None


def time_unit(seconds: float) -> tuple[str, float]:
    """The unit an axis of this span counts in, and its length in seconds: hours for a span of
    hours or days, minutes or seconds for shorter ones."""
    if seconds >= 7200:
        return "hours", 3600.0
    return ("minutes", 60.0) if seconds >= 120 else ("seconds", 1.0)
