"""Hypothesis strategies for JSON data where canonicalisers go wrong: escapes, the code points
whose UTF-16 order differs from their code point order, every kind of float (subnormals,
integral floats beyond 2**53, the ECMAScript notation boundaries) and integers at the I-JSON
limits. Shared by the canonical-form and record tests."""

from __future__ import annotations

import math
import struct

from hypothesis import strategies as st

from otel_ai_audit.record.canonical import MAX_SAFE_INTEGER

# Characters where naive JSON canonicalisers go wrong: controls (escapes), the private-use and
# specials range U+E000-U+FFFF and astral characters (code point order differs from UTF-16
# unit order exactly between these two), plus anything else that is valid Unicode.
characters = st.one_of(
    st.characters(codec="utf-8"),
    st.characters(max_codepoint=0x1F),
    st.sampled_from('"\\/\x7f\u2028\u2029'),
    st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF, codec="utf-8"),
    st.characters(min_codepoint=0x10000),
)
# The sequence an earlier version used internally to mark numbers, and look-alikes.
tricky_strings = st.sampled_from(
    ["\x00jcs-number:", "\x00jcs-number:1e-7", '"\x00jcs-number:5"', "\\u0000jcs-number:5", '\\"']
)
texts = st.text(characters, max_size=12) | tricky_strings
keys = st.text(characters, max_size=6) | tricky_strings


def _double(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


# Floats of every exponent (uniform over bit patterns), subnormals, integral floats beyond
# 2**53, and the boundaries where ECMAScript switches between fixed and exponent notation.
BOUNDARY_FLOATS = [
    x * sign
    for base in (1e21, 1e-6, 1e-7, 1e-4, 1e16, 2.0**53, 5e-324, 2.2250738585072014e-308)
    for x in (base, math.nextafter(base, 0), math.nextafter(base, math.inf))
    for sign in (1, -1)
] + [0.0, -0.0]
finite_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(0, 2**64 - 1).map(_double).filter(math.isfinite),
    st.floats(min_value=-2.2250738585072014e-308, max_value=2.2250738585072014e-308),
    st.integers(2**53, 2**1023).map(float) | st.integers(-(2**1023), -(2**53)).map(float),
    st.sampled_from(BOUNDARY_FLOATS),
)
safe_integers = st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
json_scalars = st.one_of(st.none(), st.booleans(), safe_integers, finite_floats, texts)
json_data = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=30,
)
json_objects = st.dictionaries(keys, json_data, max_size=8)
