"""The window `drift`, `fairness` and `evidence` read: --from/--to, or --last DURATION ending now,
and one clear line when it is missing, given twice or not a duration."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from otel_ai_audit.cli import main
from otel_ai_audit.cli._window import window_bounds
from otel_ai_audit.record.canonical import ns_from_rfc3339

COMMANDS = {
    "drift": ["drift", "missing.db", "--model", "m"],
    "fairness": ["fairness", "missing.db", "--model", "m", "--attribute", "sex"],
    "evidence": ["evidence", "missing.db", "--system", "s", "--out", "bundle"],
}


def test_last_is_the_window_of_that_length_ending_now() -> None:
    before = time.time_ns()
    start, end = window_bounds(None, None, "6h")
    assert ns_from_rfc3339(end) - ns_from_rfc3339(start) == 6 * 3600 * 1_000_000_000
    assert before <= ns_from_rfc3339(end) <= time.time_ns()


def test_fixed_bounds_pass_through_as_given() -> None:
    assert window_bounds("2026-11-01", "2026-11-29", None) == ("2026-11-01", "2026-11-29")


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(("window", "message"), [
    ([], "give the window: --from TIME --to TIME, or --last DURATION"),
    (["--from", "2026-11-01"], "give the window: --from TIME --to TIME"),
    (["--last", "1d", "--to", "2026-11-29"], "give the window once"),
    (["--last", "soon"], "--last 'soon' is not a duration such as 30m, 6h, 1d or 1w"),
    (["--last", "0h"], "--last '0h' is not a duration"),
])
def test_a_wrong_window_is_one_line_and_exit_2(command: str, window: list[str],
                                               message: str) -> None:
    result = CliRunner().invoke(main, COMMANDS[command] + window)
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("otel-ai-audit: error: ") and message in line, line
