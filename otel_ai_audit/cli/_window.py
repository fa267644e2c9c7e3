"""The time window a command reads (`drift`, `fairness`, `evidence`): fixed bounds with --from
and --to, or --last DURATION for the window that ends now, which is what a scheduled job or a
store made minutes ago needs; and the durations both --last and --every take."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from otel_ai_audit.cli._common import fail
from otel_ai_audit.record.canonical import rfc3339_from_ns

Command = TypeVar("Command", bound=Callable[..., Any])

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {unit: seconds * 1_000_000_000 for unit, seconds in
          (("s", 1), ("m", 60), ("h", 3600), ("d", 86_400), ("w", 604_800))}


def window_options(time_form: str) -> Callable[[Command], Command]:
    """--from, --to (times in `time_form`) and --last, passed on as `start`, `end`, `last`."""

    def decorate(command: Command) -> Command:
        for option in reversed([
            click.option("--from", "start", metavar="TIME",
                         help=f"Window start, {time_form}, inclusive."),
            click.option("--to", "end", metavar="TIME", help="Window end, exclusive."),
            click.option("--last", metavar="DURATION",
                         help="Instead of --from and --to: the window of this length (30m, "
                              "6h, 1d, 1w) that ends now."),
        ]):
            command = option(command)
        return command

    return decorate


def window_bounds(start: str | None, end: str | None, last: str | None) -> tuple[str, str]:
    """The window's bounds as given, or those of --last in RFC 3339; one line if they are
    missing or given twice."""
    if last is None:
        if start is None or end is None:
            fail("give the window: --from TIME --to TIME, or --last DURATION (e.g. 1d)")
        return start, end
    if start is not None or end is not None:
        fail("give the window once: --last, or --from and --to")
    now = time.time_ns()
    return rfc3339_from_ns(now - duration_ns(last, "--last")), rfc3339_from_ns(now)


def duration_ns(text: str, option: str) -> int:
    """A duration such as 30m, 6h, 1d or 1w in nanoseconds; one line if it is not one."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        fail(f"{option} {text!r} is not a duration such as 30m, 6h, 1d or 1w")
    return int(match.group(1)) * _UNITS[match.group(2)]
