"""Canonical record bytes: RFC 8785 (JSON Canonicalization Scheme).

Two entry points, used on two different paths:

* `canonical_json(value)` is strict. It accepts only JSON data (dict with str keys, list, str,
  int within +-(2**53-1), finite float, bool, None) and raises `CanonicalizationError` for
  anything a verifier could not reproduce: NaN/Infinity, big integers, lone surrogates, keys
  that are not strings. The output is byte-identical to the `rfc8785` reference package (the
  test-suite proves it with property tests); it exists because the reference is ~5x slower
  than this C-backed path, and records are canonicalised at tens of thousands per second.

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
  datetime                      RFC 3339 string in UTC with "Z" (naive = UTC)
  date, time                    ISO 8601 string
  Decimal, UUID, Path           str(value)
  Enum                          its value, then these rules
  tuple, list, set, frozenset   list (sets sorted by canonical form)
  Mapping                       dict; keys converted with str()
  anything else                 "<unserializable TYPE>"
  ============================  ===================================================
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import enum
import json
import math
import re
import uuid
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import rfc8785

MAX_SAFE_INTEGER = 2**53 - 1

_encoder = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":"), check_circular=False
)
_PLACEHOLDER = "\x00jcs-number:"
_PLACEHOLDER_JSON = re.compile(r'"\\u0000jcs-number:([^"]*)"')


class CanonicalizationError(ValueError):
    """The value has no RFC 8785 form a verifier could reproduce."""


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of JSON data (strict: see the module docstring)."""
    state = _PrepareState()
    prepared = _prepare_value(value, state)
    if state.needs_reference:
        return rfc8785.dumps(value)
    text = _encoder.encode(prepared)
    if state.has_placeholders:
        text = _PLACEHOLDER_JSON.sub(r"\1", text)
    return text.encode("utf-8")


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


class _PrepareState:
    __slots__ = ("has_placeholders", "needs_reference")

    def __init__(self) -> None:
        self.has_placeholders = False
        self.needs_reference = False


def _prepare_value(value: Any, state: _PrepareState) -> Any:
    """Check strictness; swap floats whose Python repr differs from ES6 for placeholders."""
    kind = type(value)
    if kind is str:
        _check_string(value)
        return value
    if kind is bool or value is None:
        return value
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
        raise CanonicalizationError(f"integer {value} is outside the I-JSON range +-(2**53-1)")
    if kind is float:
        if not math.isfinite(value):
            raise CanonicalizationError(f"{value!r} has no JSON form")
        if value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
            return int(value)
        if value.is_integer() or "e" in repr(value):
            state.has_placeholders = True
            return _PLACEHOLDER + es6_number(value)
        return value
    if kind is dict:
        prepared = {}
        for key, item in value.items():
            if type(key) is not str:
                raise CanonicalizationError(f"object key {key!r} is not a string")
            _check_string(key)
            if not key.isascii() and any(ord(char) > 0xFFFF for char in key):
                # Python sorts keys by code point, JCS by UTF-16 unit: they differ only here.
                state.needs_reference = True
            prepared[key] = _prepare_value(item, state)
        return prepared
    if kind is list:
        return [_prepare_value(item, state) for item in value]
    raise CanonicalizationError(f"{kind.__name__} is not JSON data; convert it with to_json_data")


def _check_string(text: str) -> None:
    if _PLACEHOLDER[0] in text and _PLACEHOLDER in text:
        raise CanonicalizationError("string contains the reserved sequence NUL 'jcs-number:'")
    if not text.isascii():
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
    if kind is dict or isinstance(value, Mapping):
        return {_clean_string(str(key)): to_json_data(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [to_json_data(item) for item in value]
    return _convert_other(value)


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
        return rfc3339(value)
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return to_json_data(value.value)
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
    """RFC 3339 UTC timestamp with microseconds and "Z" (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339_from_ns(unix_nanos: int) -> str:
    """RFC 3339 UTC timestamp with nanoseconds, from OTel's Unix-epoch nanoseconds."""
    seconds, nanos = divmod(unix_nanos, 1_000_000_000)
    whole = _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{nanos:09d}Z"
