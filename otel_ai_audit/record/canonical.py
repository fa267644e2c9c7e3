"""Canonical record bytes: RFC 8785 (JSON Canonicalization Scheme).

Two entry points, used on two different paths:

* `canonical_json(value)` is strict. It accepts only JSON data (dict with str keys, list, str,
  int within +-(2**53-1), finite float, bool, None) and raises `CanonicalizationError` for
  anything a verifier could not reproduce: NaN/Infinity, big integers, lone surrogates, keys
  that are not strings, other types, values that contain themselves. The output is
  byte-identical to the `rfc8785` reference package (the test-suite proves it with property
  tests); it exists because the reference is ~5x slower than the json module's C encoder, which
  is itself ~6x slower than orjson, and records are canonicalised at tens of thousands per
  second. Checked data goes to orjson when its floats print in ES6 form as they are (or as
  integers); other floats go through the json module's encoder, rewritten (below). An object
  whose values are all of exact JSON types, its floats printed as they are, skips the full
  check: orjson's own strict options refuse what else is forbidden there.

* `to_json_data(value)` is the write path's documented conversion of Python and numpy values
  into JSON data, so instrumentation never fails on odd inputs and never hashes a form a
  verifier cannot reproduce:

  ============================  ===================================================
  value                         becomes
  ============================  ===================================================
  float NaN / +Inf / -Inf       the strings "NaN", "Infinity", "-Infinity"
  int beyond +-(2**53-1)        its decimal string (e.g. OTel nanosecond timestamps)
  float with an integral value  stays a number (JCS prints 1.0 as 1)
  bool, None, str               unchanged; lone surrogates replaced by U+FFFD
  bytes, bytearray, memoryview  standard base64 string
  numpy scalar / array          .item() / nested lists, then these rules
  datetime                      RFC 3339 string in UTC with "Z" (naive = UTC; pandas
                                Timestamp keeps nanoseconds; NaT and datetimes whose UTC
                                time is out of range keep their isoformat())
  date, time                    ISO 8601 string
  Decimal, UUID, Path           str(value)
  Enum (also str/int mix-ins)   its value, then these rules
  tuple, list, set, frozenset   list (sets sorted by canonical form)
  Mapping                       dict; keys converted with str()
  anything else                 "<unserializable TYPE>"
  ============================  ===================================================

Why one module: `to_json_data` produces exactly what `canonical_json` accepts, and both follow
the RFC 8785 number and string rules (`es6_number`, the I-JSON integer range, lone
surrogates): a rule changed on one side only would make the write path hash what the strict
side refuses, or lose data it could have kept.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import enum
import functools
import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

import orjson
import rfc8785

from otel_ai_audit.errors import IntegrityError

MAX_SAFE_INTEGER = 2**53 - 1

_encoder = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":"), check_circular=False
)
_make_c_encoder = getattr(json.encoder, "c_make_encoder", None)
# JSONEncoder.encode builds a new C encoder on every call; building it once saves ~10%.
_encode_chunks = None if _make_c_encoder is None else _make_c_encoder(
    None, _encoder.default, json.encoder.encode_basestring, None, ":", ",", True, False, False)
# Floats whose Python repr differs from ES6 travel through the C encoder as strings marked with
# a lone surrogate: no string canonical_json accepts can contain one, so no value can pose as
# a number.
_PLACEHOLDER = "\udc00"
_PLACEHOLDER_JSON = re.compile('"\udc00([^"]*)"')
_REWRITE_FLOATS = 1
_ASTRAL_KEYS = 2
_INTEGRAL_FLOATS = 4


class CanonicalizationError(IntegrityError):
    """The value has no RFC 8785 form a verifier could reproduce."""


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of JSON data (strict: see the module docstring)."""
    if type(value) is dict or type(value) is list:
        # The usual event (or a row of values): only exact JSON types and floats orjson prints
        # in their ES6 form.
        # orjson itself refuses what else the strict rules forbid here (keys that are not
        # str, lone surrogates, integers beyond the I-JSON range); anything it refuses, or
        # output with a 4-byte UTF-8 sequence (perhaps an astral key), takes the full path,
        # which says why or writes it.
        try:
            ready = _orjson_ready(value.values() if type(value) is dict else value)
        except RecursionError:
            ready = False
        if ready:
            try:
                data = orjson.dumps(value, option=_STRICT_SORTED)
            except orjson.JSONEncodeError:
                pass
            else:
                if data.isascii() or _ASTRAL_UTF8.search(data) is None:
                    return data
    try:
        flags = _scan((value,))
    except RecursionError as error:
        raise CanonicalizationError("value is nested too deeply or contains itself") from error
    if flags & _ASTRAL_KEYS:
        # Python sorts keys by code point, JCS by UTF-16 unit: they differ only for keys
        # beyond U+FFFF, rare enough to leave to the reference.
        return rfc8785.dumps(value)
    if flags & _REWRITE_FLOATS:
        return _PLACEHOLDER_JSON.sub(r"\1", _encode(_rewrite_floats(value))).encode("utf-8")
    if flags & _INTEGRAL_FLOATS:
        value = _rewrite_floats(value)
    # Checked JSON data whose floats all print in their ES6 form: orjson writes the RFC 8785
    # bytes (keys sorted by code point, which is UTF-16 order without astral keys; the same
    # escapes; Python's shortest float digits).
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _encode(value: Any) -> str:
    """The C encoder's JSON text of checked data (keys sorted by code point)."""
    if _encode_chunks is None:
        return _encoder.encode(value)
    return "".join(_encode_chunks(value, 0))


def es6_number(value: float) -> str:
    """The ECMAScript Number-to-String form JCS requires for a finite float."""
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
        return str(int(value))
    text = repr(value)
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # Decimal point position n such that value = 0.digits * 10**n.
    point = len(whole) + (int(exponent) if exponent else 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0") or "0"
    count = len(digits)
    if count <= point <= 21:
        body = digits + "0" * (point - count)
    elif 0 < point <= 21:
        body = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        body = "0." + "0" * (-point) + digits
    else:
        power = point - 1
        head = digits[0] + ("." + digits[1:] if count > 1 else "")
        body = f"{head}e{'+' if power > 0 else '-'}{abs(power)}"
    return sign + body


def _scan(items: Iterable[Any]) -> int:
    """Check strictness without copying; flag what the C encoder alone would get wrong.

    Records are canonicalised at tens of thousands per second, so the common types are tested
    inline, most frequent first.
    """
    flags = 0
    for item in items:
        kind = type(item)
        if kind is str:
            if not item.isascii():
                _check_string(item)
        elif kind is dict:
            for key in item:
                if type(key) is not str:
                    raise CanonicalizationError(f"object key {key!r} is not a string")
                if not key.isascii():
                    _check_string(key)
                    if max(key) > "\uffff":
                        flags |= _ASTRAL_KEYS
            flags |= _scan(item.values())
        elif kind is float:
            # Python's repr is the ES6 form exactly for non-integral values in [1e-4, 1e16);
            # an integral value within the safe range is written as the integer.
            if not (1e-4 <= abs(item) < 1e16 and not item.is_integer()):
                if not math.isfinite(item):
                    raise CanonicalizationError(f"{item!r} has no JSON form")
                if item.is_integer() and abs(item) <= MAX_SAFE_INTEGER:
                    flags |= _INTEGRAL_FLOATS
                else:
                    flags |= _REWRITE_FLOATS
        elif kind is int:
            if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                raise CanonicalizationError(
                    f"integer {item} is outside the I-JSON range +-(2**53-1)")
        elif kind is list:
            flags |= _scan(item)
        elif kind is not bool and item is not None:
            raise CanonicalizationError(
                f"{kind.__name__} is not JSON data; convert it with to_json_data")
    return flags


_PLAIN_TYPES = frozenset((str, int, bool, type(None)))
_STRICT_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_ASTRAL_UTF8 = re.compile(rb"[\xf0-\xf4]")


def _orjson_ready(items: Iterable[Any]) -> bool:
    """Are `items` (recursively) of exact JSON types, their floats printed by orjson in their
    ES6 form? A walk of types only, cheaper than `_scan`: the checks orjson makes itself
    (`_STRICT_SORTED`) are left to it."""
    for item in items:
        kind = type(item)
        if kind is str:
            continue
        if kind is dict:
            if not _orjson_ready(item.values()):
                return False
        elif kind is float:
            if not 1e-4 <= abs(item) < 1e16 or item.is_integer():
                return False
        elif kind is list:
            if not _orjson_ready(item):
                return False
        elif kind not in _PLAIN_TYPES:
            return False
    return True


def _rewrite_floats(value: Any) -> Any:
    """A copy of checked JSON data whose floats the C encoder will print in their ES6 form."""
    kind = type(value)
    if kind is float:
        if value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
            return int(value)
        if value.is_integer() or "e" in repr(value):
            return _PLACEHOLDER + es6_number(value)
        return value
    if kind is dict:
        return {key: _rewrite_floats(item) for key, item in value.items()}
    if kind is list:
        return [_rewrite_floats(item) for item in value]
    return value


def _check_string(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise CanonicalizationError(f"string has a lone surrogate: {text!r}") from error


def to_json_data(value: Any) -> Any:
    """Convert any Python value to JSON data by the documented rules (never raises)."""
    kind = type(value)
    if kind is str:
        return _clean_string(value)
    if kind is bool or value is None:
        return value
    if kind is int:
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else str(value)
    if kind is float:
        return _float_data(value)
    if kind is list or kind is tuple:
        if value and type(value[0]) in _NUMBERS:
            numbers = _numbers(value)
            if numbers is not None:
                return numbers
        return [to_json_data(item) for item in value]
    if kind is dict or isinstance(value, Mapping):
        return {_clean_string(str(key)): to_json_data(item) for key, item in value.items()}
    return _convert_other(value)


_NUMBERS = frozenset((float, int))


def _numbers(items: list[Any] | tuple[Any, ...]) -> list[Any] | None:
    """`items` as a list, as they are, if every one is a finite float or an int in the I-JSON
    range (the common case: a row of a numeric array), else None for the per-item rules. Checked
    in bulk at C speed: a non-finite item makes the sum non-finite."""
    types = set(map(type, items))
    if not types <= _NUMBERS:
        return None
    total = sum(items)
    if total - total != 0 or (int in types and (max(items) > MAX_SAFE_INTEGER
                                                or min(items) < -MAX_SAFE_INTEGER)):
        return None
    return list(items)


def _float_data(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _clean_string(text: str) -> str:
    """Replace lone surrogates by U+FFFD (valid surrogate pairs are joined)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _convert_other(value: Any) -> Any:
    # An array (numpy's, or one with its protocol) first: the most frequent model input and
    # output. A memoryview has the protocol too, but is bytes (base64, below).
    if getattr(value, "shape", ()) != () and not isinstance(value, memoryview):
        tolist = getattr(value, "tolist", None)
        if callable(tolist):
            try:
                return to_json_data(tolist())
            except Exception:  # noqa: BLE001 - fall through to the generic rules
                pass
    if isinstance(value, enum.Enum):
        # Before str and int: str() of a (str, Enum) member is "Class.NAME", not its value.
        return to_json_data(value.value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return to_json_data(int(value))
    if isinstance(value, float):
        return _float_data(float(value))
    if isinstance(value, str):
        return _clean_string(str(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, _dt.datetime):
        try:
            return rfc3339(value)
        except (ValueError, OverflowError):
            # No UTC form: pandas NaT, or an offset that moves it outside the years 1-9999.
            return str(value.isoformat())
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID, PurePath)):
        return str(value)
    if isinstance(value, (set, frozenset)):
        items = [to_json_data(item) for item in value]
        return sorted(items, key=lambda item: canonical_json(item))
    if isinstance(value, (list, tuple)):
        return [to_json_data(item) for item in value]
    # numpy scalars and arrays (and pandas objects exposing the same protocol), without
    # importing numpy here: the core must not depend on what the user happens to have.
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        try:
            return to_json_data(item())
        except Exception:  # noqa: BLE001 - fall through to the generic rule
            pass
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        try:
            return to_json_data(tolist())
        except Exception:  # noqa: BLE001
            pass
    return f"<unserializable {type(value).__module__}.{type(value).__qualname__}>"


def rfc3339(moment: _dt.datetime) -> str:
    """RFC 3339 UTC timestamp with "Z" (naive datetimes are taken as UTC).

    Six fraction digits, nine for a pandas Timestamp (it carries nanoseconds, as OTel does).
    Formatted by hand: strftime("%Y") does not pad years before 1000 to four digits.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    moment = moment.astimezone(_dt.timezone.utc)
    fraction = f"{moment.microsecond:06d}"
    nanosecond = getattr(moment, "nanosecond", None)
    if nanosecond is not None:
        fraction += f"{nanosecond:03d}"
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
            f"{moment.minute:02d}:{moment.second:02d}.{fraction}Z")


def rfc3339_from_ns(unix_nanos: int) -> str:
    """RFC 3339 UTC timestamp with nanoseconds, from OTel's Unix-epoch nanoseconds."""
    seconds, nanos = divmod(unix_nanos, 1_000_000_000)
    return f"{_utc_second(seconds)}.{nanos:09d}Z"


@functools.lru_cache(maxsize=4)
def _utc_second(seconds: int) -> str:
    """The date and time of a Unix second (cached: every record of that second asks)."""
    return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


_FRACTION = re.compile(r"(?<=:\d\d)\.(\d+)")
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def ns_from_rfc3339(text: str) -> int:
    """Unix nanoseconds of an RFC 3339 / ISO 8601 time, the inverse of `rfc3339_from_ns`: a
    date alone is midnight, a time without an offset is UTC, digits past nanoseconds are cut.
    ValueError if the text is not a time."""
    value = text.strip()
    nanos = 0
    if (fraction := _FRACTION.search(value)) is not None:
        nanos = int(fraction.group(1)[:9].ljust(9, "0"))
        value = value[:fraction.start()] + value[fraction.end():]
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = _dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + nanos
