"""`integrity.merkle` against RFC 9162 read literally.

`merkle.py` computes roots with a compact-range accumulator, audit paths recursively and
consistency paths with an iterative walk. The oracle below is the RFC's own recursive
definitions (MTH, PATH, PROOF/SUBPROOF, sections 2.1.1 to 2.1.4) with nothing optimised, so a
proof that verifies but is not the RFC's (one other implementations would reject) fails here.
test_merkle_proofs.py checks the proofs verify and that tampering is caught.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from otel_ai_audit.integrity.merkle import (
    EMPTY_ROOT,
    MerkleAccumulator,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    root_from_inclusion_proof,
    verify_consistency,
)
from tests.unit.profiles import property_settings

MAX_SIZE = 70


def split(n: int) -> int:
    """k: the largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of section 2.1.1 (on leaf hashes)."""
    return _mth(tuple(leaves))


@functools.cache
def _mth(leaves: tuple[bytes, ...]) -> bytes:
    """Cached: the oracle asks for the same subtrees thousands of times."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = split(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of section 2.1.3.1."""
    if len(leaves) == 1:
        return []
    k = split(len(leaves))
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of section 2.1.4.1."""
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = split(n)
    if m <= k:
        return subproof(m, leaves[:k], whole) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


def proof(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) for 0 < m < n."""
    return subproof(m, leaves, True)


def tree(size: int, salt: bytes = b"") -> list[bytes]:
    return [leaf_hash(salt + i.to_bytes(2, "big")) for i in range(size)]


LEAVES = tree(MAX_SIZE)


def test_roots_of_every_prefix_and_the_accumulator_on_the_way() -> None:
    accumulator = MerkleAccumulator()
    assert accumulator.root() == merkle_root([]) == EMPTY_ROOT
    for size in range(1, MAX_SIZE + 1):
        accumulator.append(LEAVES[size - 1])
        expected = mth(LEAVES[:size])
        assert accumulator.size == size
        assert accumulator.root() == merkle_root(LEAVES[:size]) == expected, size


def test_audit_path_at_every_index_of_every_tree_is_the_rfcs() -> None:
    for size in range(1, MAX_SIZE + 1):
        leaves = LEAVES[:size]
        for index in range(size):
            expected = path(index, leaves)
            assert inclusion_proof(leaves, index) == expected, (index, size)
            assert root_from_inclusion_proof(leaves[index], index, size, expected) == mth(leaves)


def test_consistency_path_of_every_pair_of_trees_is_the_rfcs() -> None:
    for new_size in range(2, MAX_SIZE + 1):
        leaves = LEAVES[:new_size]
        for old_size in range(1, new_size):
            expected = proof(old_size, leaves)
            assert consistency_proof(leaves, old_size) == expected, (old_size, new_size)
            verify_consistency(old_size, new_size, mth(leaves[:old_size]), mth(leaves), expected)


@property_settings()
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=MAX_SIZE), st.data())
def test_random_leaf_contents_give_the_rfcs_proofs(contents: list[bytes],
                                                    data: st.DataObject) -> None:
    """The fixed trees above have distinct leaves; here leaves may repeat or be empty."""
    leaves = [leaf_hash(item) for item in contents]
    size = len(leaves)
    index = data.draw(st.integers(0, size - 1), label="index")
    old_size = data.draw(st.integers(1, size), label="old_size")
    assert merkle_root(leaves) == mth(leaves)
    assert inclusion_proof(leaves, index) == path(index, leaves)
    assert consistency_proof(leaves, old_size) == ([] if old_size == size
                                                   else proof(old_size, leaves))
