"""Every boolean, choice, whole-number and number setting accepts exactly what its rule says.

Each rule's `accepted` text is what the one-line error tells the user; here it is read as a
specification (the words of a boolean, the bounds of a number) and checked against generated
values, given as the `OTEL_AI_AUDIT_*` variable (text, any case, surrounding blanks) and as the
`configure()` keyword (a Python value). tests/integration/test_configuration.py holds the
hand-picked cases and the messages.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args, get_origin, get_type_hints

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from otel_ai_audit.config import RULES, AuditSettings, variable
from otel_ai_audit.errors import ConfigurationError
from tests.unit.profiles import property_settings

TYPES = get_type_hints(AuditSettings)
BOOLEAN_TEXT = "true or false (also 1/0, yes/no, on/off, in any case)"


def accepts(name: str, value: Any) -> Any:
    """The setting's value from the variable (text) or the keyword (anything else); raises
    ConfigurationError naming the variable."""
    if isinstance(value, str):
        return getattr(AuditSettings.from_env({variable(name): value}), name)
    return getattr(AuditSettings.from_env({}, **{name: value}), name)


def refused(name: str, value: Any) -> bool:
    try:
        accepts(name, value)
    except ConfigurationError as error:
        assert error.variable == variable(name)
        assert "\n" not in str(error)
        return True
    return False


@dataclass(frozen=True)
class Bounds:
    """A number's documented range; `whole` for whole numbers (with `step`)."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    whole: bool = False
    step: int = 1

    def holds(self, number: float) -> bool:
        return (math.isfinite(number)
                and (self.low < number if self.low_open else self.low <= number)
                and (number < self.high if self.high_open else number <= self.high)
                and (not self.whole or number % self.step == 0))


def documented_bounds(text: str) -> Bounds | None:
    """The range a number rule's text states, or None if it is not a number rule."""
    if not re.match(r"an? (whole|number|p-value|share)\b", text):
        return None
    found: dict[str, Any] = {"whole": text.startswith("a whole")}
    if match := re.search(r"multiple of (\d+)", text):
        found["step"] = int(match[1])
    if match := re.search(r"at least (\d+)", text):
        found["low"] = float(match[1])
    if match := re.search(r"(\d+) or more", text):
        found["low"] = float(match[1])
    if match := re.search(r"greater than (\d+)", text):
        found.update(low=float(match[1]), low_open=True)
    if match := re.search(r"at most (\d+)", text):
        found["high"] = float(match[1])
    if match := re.search(r"from (\d+) to (\d+)", text):
        found.update(low=float(match[1]), high=float(match[2]))
    if match := re.search(r"between (\d+) and (\d+), both excluded", text):
        found.update(low=float(match[1]), high=float(match[2]), low_open=True, high_open=True)
    return Bounds(**found)


BOOLEANS = sorted(name for name, rule in RULES.items() if rule.accepted == BOOLEAN_TEXT)
CHOICES = {name: get_args(TYPES[name]) for name in RULES if get_origin(TYPES[name]) is Literal}
NUMBERS = {name: bounds for name, rule in RULES.items()
           if (bounds := documented_bounds(rule.accepted)) is not None}


def test_every_boolean_choice_and_number_setting_is_covered() -> None:
    """A new setting of these types needs a rule text this test can read."""
    for item in fields(AuditSettings):
        kind = TYPES[item.name]
        if kind in (bool, bool | None):
            assert item.name in BOOLEANS, item.name
        elif kind in (int, float, float | None):
            assert item.name in NUMBERS, item.name
            assert NUMBERS[item.name].whole == (kind is int), item.name
    for name, options in CHOICES.items():
        assert all(f"'{option}'" in RULES[name].accepted for option in options), name
    assert len(BOOLEANS) >= 5 and len(CHOICES) >= 8 and len(NUMBERS) >= 15


def spelled(word: str, data: st.DataObject) -> str:
    """`word` in any letter case, with blanks around it."""
    cases = data.draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    blank = st.sampled_from(["", " ", "\t", "  "])
    letters = (c.upper() if up else c for c, up in zip(word, cases, strict=True))
    return data.draw(blank) + "".join(letters) + data.draw(blank)


BOOLEAN_WORDS = dict.fromkeys(("true", "1", "yes", "on"), True) | dict.fromkeys(
    ("false", "0", "no", "off"), False)


def test_the_boolean_words_are_the_documented_ones() -> None:
    words = re.findall(r"[a-z0-9]+", BOOLEAN_TEXT.replace("in any case", ""))
    assert sorted(set(words) - {"or", "also"}) == sorted(BOOLEAN_WORDS)


@property_settings()
@given(st.sampled_from(BOOLEANS), st.sampled_from(sorted(BOOLEAN_WORDS)), st.data())
def test_booleans_accept_their_words_in_any_case(name: str, word: str,
                                                data: st.DataObject) -> None:
    assert accepts(name, spelled(word, data)) is BOOLEAN_WORDS[word]
    assert accepts(name, BOOLEAN_WORDS[word]) is BOOLEAN_WORDS[word]


@property_settings()
@given(st.sampled_from(BOOLEANS), st.text(max_size=8) | st.integers() | st.floats())
def test_booleans_refuse_everything_else(name: str, value: Any) -> None:
    assume(not (isinstance(value, str) and value.strip().lower() in BOOLEAN_WORDS))
    assume(value != "")  # unset
    assert refused(name, value)


@property_settings()
@given(st.sampled_from(sorted(CHOICES)), st.data())
def test_choices_accept_their_options_in_any_case(name: str, data: st.DataObject) -> None:
    option = data.draw(st.sampled_from(CHOICES[name]))
    assert accepts(name, spelled(option, data)) == option


@property_settings()
@given(st.sampled_from(sorted(CHOICES)), st.text(max_size=16) | st.integers())
def test_choices_refuse_everything_else(name: str, value: Any) -> None:
    assume(not (isinstance(value, str) and value.strip().lower() in CHOICES[name]))
    assume(value != "")
    assert refused(name, value)


numbers = st.one_of(
    st.integers(-50, 50),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 1e-300, 1 - 1e-16, 1 + 2e-16, 10.0, 20.0]),
)


@property_settings(2)
@given(st.sampled_from(sorted(NUMBERS)), numbers, st.booleans())
def test_numbers_accept_exactly_their_documented_range(name: str, number: float,
                                                        as_text: bool) -> None:
    bounds = NUMBERS[name]
    if bounds.whole and not isinstance(number, int):
        value: Any = repr(number) if as_text else number
        assert refused(name, value), value  # "1.0" is not a whole number here
        return
    value = f" {number!r} " if as_text else number
    if bounds.holds(number):
        assert accepts(name, value) == number
    else:
        assert refused(name, value), value


@pytest.mark.parametrize("name", sorted(NUMBERS))
def test_numbers_refuse_words_and_booleans(name: str) -> None:
    for value in ("ten", "1k", "5%", True, [1]):
        assert refused(name, value), value
