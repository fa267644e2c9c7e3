"""The Splunk app's searches run in Python over what the HEC stand-in indexed.

Splunk cannot run here, so the tests read the generated app (never the Python specs it comes
from) and evaluate its searches as Splunk would, on `SplunkHec.results()`: a result's fields
are the HEC indexed fields and Splunk's own (`_time`, `_indextime`, `sourcetype`, ...), which
is what a search sees with the app's `KV_MODE = none` (checked by `search_time_fields`).

The SPL subset is the one the app uses, and anything else is an error, not a guess:
* the base search: macros (from macros.conf), `field::value`, `field=value` and
  `field="value"` (exact; `=` ignores case, as Splunk's does), and the time modifiers
  `_index_earliest`/`_index_latest` (relative `-<n>h`, `-<n>d`, `now`);
* `stats` and `timechart` (per hour) with `count`, `dc()`, `min()`, `max()`, `avg()`,
  `sum()`, `as` and `by` (a multi-valued by-field counts the event once per value, and an event
  without a by-field is left out, as in Splunk);
* `eval` and `where` with numbers, "strings", 'field names', `+ - * /`, comparisons,
  `AND`/`OR`/`NOT`, `if()` and `in()`.
A saved search also runs within its `dispatch.earliest_time`/`latest_time` (event time), and
fires as its `counttype`/`relation`/`quantity` say (no `counttype`: Splunk's default,
`always`).
"""

from __future__ import annotations

import configparser
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Row = dict[str, Any]

_RELATIVE = re.compile(r"-(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TERM = re.compile(r'([A-Za-z_][\w.]*)(::|=)(?:"((?:[^"\\]|\\.)*)"|(\S+))\Z')
_AGGREGATE = re.compile(r"(count|dc|min|max|avg|sum)(?:\(([\w.]+)\))?\Z")
_TOKEN = re.compile(r'\s*(?:(\d+(?:\.\d+)?)|"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|'
                    r'([A-Za-z_][\w.]*)|(<=|>=|==|!=|[-+*/<>=(),]))')
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "=": operator.eq, "==": operator.eq, "!=": operator.ne}
_ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def search_time_fields(props: configparser.ConfigParser, sourcetype: str) -> bool:
    """Whether Splunk would extract fields from `_raw` at search time for `sourcetype`
    (`KV_MODE` other than `none`; its default is `auto`); these tests model none."""
    stanza = props[sourcetype] if props.has_section(sourcetype) else {}
    return stanza.get("KV_MODE", "auto") != "none"


def relative_time(text: str, now: float) -> float:
    """Epoch seconds of a Splunk time modifier of the subset (`0`: the beginning)."""
    if text == "now":
        return now
    if text == "0":
        return -math.inf
    match = _RELATIVE.fullmatch(text)
    if match is None:
        raise ValueError(f"time modifier outside the subset: {text!r}")
    return now - int(match.group(1)) * _UNITS[match.group(2)]


def run(query: str, results: Sequence[Row], *, macros: configparser.ConfigParser, now: float,
        earliest: str = "0", latest: str = "now") -> list[Row]:
    """The rows `query` returns over `results` with the time range `earliest`..`latest`."""
    query = re.sub(r"`([^`]+)`", lambda match: macros[match.group(1)]["definition"], query)
    base, *commands = (part.strip() for part in _pipes(query))
    start, end = relative_time(earliest, now), relative_time(latest, now)
    rows = [dict(result) for result in results if start <= result["_time"] <= end]
    for term in _words(base):
        rows = _filter(term, rows, now)
    for command in commands:
        name, _, arguments = command.partition(" ")
        if name in ("stats", "timechart"):
            rows = _stats(arguments, rows, hourly=name == "timechart")
        elif name == "eval":
            target, _, expression = arguments.partition("=")
            evaluate = _expression(expression)
            for row in rows:
                row[target.strip()] = evaluate(row)
        elif name == "where":
            keep = _expression(arguments)
            rows = [row for row in rows if keep(row) is True]
        else:
            raise ValueError(f"command outside the subset: {command!r}")
    return rows


def fires(stanza: Mapping[str, str], rows: Sequence[Row]) -> bool:
    """Whether a saved search whose run returned `rows` triggers its alert."""
    counttype = stanza.get("counttype", "always")
    if counttype == "always":
        return True
    if counttype != "number of events":
        raise ValueError(f"counttype outside the subset: {counttype!r}")
    relations: dict[str, Callable[[int, int], bool]] = {
        "greater than": operator.gt, "less than": operator.lt, "equal to": operator.eq,
        "not equal to": operator.ne}
    return relations[stanza["relation"]](len(rows), int(stanza["quantity"]))


def run_saved_search(stanza: Mapping[str, str], results: Sequence[Row], *,
                     macros: configparser.ConfigParser, now: float) -> list[Row]:
    return run(stanza["search"], results, macros=macros, now=now,
               earliest=stanza.get("dispatch.earliest_time") or "0",
               latest=stanza.get("dispatch.latest_time") or "now")


# --- the base search ---------------------------------------------------------------------------


def _pipes(query: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in query:
        if char == '"':
            quoted = not quoted
        if char == "|" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    return [*parts, "".join(current)]


def _words(text: str) -> list[str]:
    return re.findall(r'(?:[^\s"]|"(?:[^"\\]|\\.)*")+', text)


def values(row: Row, name: str) -> list[Any]:
    """A field's values in a result (none, one, or a multi-valued field's)."""
    value = row.get(name)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _filter(term: str, rows: list[Row], now: float) -> list[Row]:
    match = _TERM.match(term)
    if match is None:
        raise ValueError(f"search term outside the subset: {term!r}")
    name, kind, quoted, bare = match.groups()
    wanted = quoted if quoted is not None else bare
    if name in ("_index_earliest", "_index_latest"):
        bound = relative_time(wanted, now)
        before = operator.ge if name == "_index_earliest" else operator.le
        return [row for row in rows if before(row["_indextime"], bound)]
    if kind == "::":
        return [row for row in rows if wanted in map(str, values(row, name))]
    return [row for row in rows
            if wanted.lower() in (str(value).lower() for value in values(row, name))]


# --- stats and timechart -----------------------------------------------------------------------


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _aggregate(function: str, field: str | None, rows: list[Row]) -> Any:
    if function == "count" and field is None:
        return len(rows)
    found = [value for row in rows for value in values(row, field or "")]
    if function == "count":
        return len(found)
    if function == "dc":
        return len({str(value) for value in found})
    numbers = [number for number in map(_number, found) if number is not None]
    if not numbers:
        return None
    reduce: dict[str, Callable[[list[float]], float]] = {
        "min": min, "max": max, "sum": math.fsum,
        "avg": lambda items: math.fsum(items) / len(items)}
    return reduce[function](numbers)


def _stats(arguments: str, rows: list[Row], *, hourly: bool) -> list[Row]:
    words = arguments.split()
    by = words[words.index("by") + 1:] if "by" in words else []
    words = words[:words.index("by")] if "by" in words else words
    outputs: list[tuple[str, str, str | None]] = []
    for position, word in enumerate(words):
        if word == "as" or (position and words[position - 1] == "as"):
            continue
        match = _AGGREGATE.fullmatch(word)
        if match is None:
            raise ValueError(f"stats function outside the subset: {word!r}")
        alias = words[position + 2] if words[position + 1:position + 2] == ["as"] else word
        outputs.append((alias, match.group(1), match.group(2)))
    keys = ["_time", *by] if hourly else by
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        if hourly:
            row = {**row, "_time": row["_time"] // 3600 * 3600}
        for key in _combinations([values(row, name) for name in keys]):
            groups.setdefault(key, []).append(row)
    if not keys:
        groups.setdefault((), [])  # `stats count` over nothing is one row: count=0
    return [{**dict(zip(keys, key, strict=True)),
             **{alias: _aggregate(function, field, members)
                for alias, function, field in outputs}}
            for key, members in groups.items()]


def _combinations(columns: list[list[Any]]) -> list[tuple[Any, ...]]:
    combined: list[tuple[Any, ...]] = [()]
    for column in columns:
        combined = [(*prefix, value) for prefix in combined for value in column]
    return combined


# --- eval and where ----------------------------------------------------------------------------


def _expression(text: str) -> Callable[[Row], Any]:
    """A function of a row evaluating an eval/where expression of the subset."""
    tokens: list[tuple[str, Any]] = []
    position = 0
    while position < len(text.rstrip()):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"expression outside the subset: {text!r} at {position}")
        number, string, quoted_field, name, symbol = match.groups()
        if number is not None:
            tokens.append(("value", float(number)))
        elif string is not None:
            tokens.append(("value", string))
        elif quoted_field is not None:
            tokens.append(("field", quoted_field))
        elif name is not None:
            tokens.append(("word", name))
        else:
            tokens.append(("symbol", symbol))
        position = match.end()
    parsed, rest = _disjunction(tokens)
    if rest:
        raise ValueError(f"expression outside the subset: {text!r}, left {rest}")
    return parsed


Parsed = tuple[Callable[[Row], Any], list[tuple[str, Any]]]


def _disjunction(tokens: list[tuple[str, Any]]) -> Parsed:
    left, tokens = _conjunction(tokens)
    while tokens[:1] == [("word", "OR")]:
        right, tokens = _conjunction(tokens[1:])
        left = (lambda a, b: lambda row: a(row) is True or b(row) is True)(left, right)
    return left, tokens


def _conjunction(tokens: list[tuple[str, Any]]) -> Parsed:
    left, tokens = _negation(tokens)
    while tokens[:1] == [("word", "AND")]:
        right, tokens = _negation(tokens[1:])
        left = (lambda a, b: lambda row: a(row) is True and b(row) is True)(left, right)
    return left, tokens


def _negation(tokens: list[tuple[str, Any]]) -> Parsed:
    if tokens[:1] == [("word", "NOT")]:
        inner, tokens = _negation(tokens[1:])
        return (lambda row: inner(row) is not True), tokens
    return _comparison(tokens)


def _comparison(tokens: list[tuple[str, Any]]) -> Parsed:
    left, tokens = _sum(tokens)
    if tokens and tokens[0][0] == "symbol" and tokens[0][1] in _COMPARE:
        compare = _COMPARE[tokens[0][1]]
        right, tokens = _sum(tokens[1:])

        def compared(row: Row, a: Any = left, b: Any = right) -> bool | None:
            x, y = a(row), b(row)
            if x is None or y is None:
                return None
            if _number(x) is not None and _number(y) is not None:
                x, y = _number(x), _number(y)
            else:
                x, y = str(x), str(y)
            return compare(x, y)

        return compared, tokens
    return left, tokens


def _sum(tokens: list[tuple[str, Any]]) -> Parsed:
    left, tokens = _product(tokens)
    while tokens and tokens[0] in (("symbol", "+"), ("symbol", "-")):
        operation = _ARITHMETIC[tokens[0][1]]
        right, tokens = _product(tokens[1:])
        left = _arithmetic(operation, left, right)
    return left, tokens


def _product(tokens: list[tuple[str, Any]]) -> Parsed:
    left, tokens = _operand(tokens)
    while tokens and tokens[0] in (("symbol", "*"), ("symbol", "/")):
        operation = _ARITHMETIC[tokens[0][1]]
        right, tokens = _operand(tokens[1:])
        left = _arithmetic(operation, left, right)
    return left, tokens


def _arithmetic(operation: Callable[[float, float], float], left: Callable[[Row], Any],
                right: Callable[[Row], Any]) -> Callable[[Row], Any]:
    def computed(row: Row) -> float | None:
        x, y = _number(left(row)), _number(right(row))
        return None if x is None or y is None else operation(x, y)
    return computed


def _operand(tokens: list[tuple[str, Any]]) -> Parsed:
    if not tokens:
        raise ValueError("expression ends where an operand was expected")
    (kind, value), tokens = tokens[0], tokens[1:]
    if kind == "value":
        return (lambda row: value), tokens
    if kind == "symbol" and value == "(":
        inner, tokens = _disjunction(tokens)
        return inner, _expect(tokens, ")")
    if kind == "word" and tokens[:1] == [("symbol", "(")]:
        arguments: list[Callable[[Row], Any]] = []
        tokens = tokens[1:]
        while tokens[:1] != [("symbol", ")")]:
            argument, tokens = _disjunction(tokens)
            arguments.append(argument)
            if tokens[:1] == [("symbol", ",")]:
                tokens = tokens[1:]
        return _function(value, arguments), tokens[1:]
    if kind in ("word", "field"):
        return (lambda row: (values(row, value) or [None])[0]), tokens
    raise ValueError(f"unexpected {value!r} in an expression")


def _expect(tokens: list[tuple[str, Any]], symbol: str) -> list[tuple[str, Any]]:
    if tokens[:1] != [("symbol", symbol)]:
        raise ValueError(f"expected {symbol!r} in an expression")
    return tokens[1:]


def _function(name: str, arguments: list[Callable[[Row], Any]]) -> Callable[[Row], Any]:
    if name == "if" and len(arguments) == 3:
        condition, then, otherwise = arguments
        return lambda row: then(row) if condition(row) is True else otherwise(row)
    if name == "in" and len(arguments) >= 2:
        field, *choices = arguments
        return lambda row: str(field(row)) in {str(choice(row)) for choice in choices}
    raise ValueError(f"eval function outside the subset: {name}()")
