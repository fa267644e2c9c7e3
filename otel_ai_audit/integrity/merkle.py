"""RFC 9162 (Certificate Transparency 2.0) hashing: leaves, Merkle roots, inclusion proofs.

Leaf hash  = SHA-256(0x00 || canonical record bytes)
Node hash  = SHA-256(0x01 || left || right)

The chain links records by leaf hash; checkpoints carry the Merkle root of the chain's first
`size` leaves, so one decision can later be proven with log2(size) hashes instead of handing
over its neighbours.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()
GENESIS = bytes(32)
"""The `prev` of the first record of every chain."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class MerkleAccumulator:
    """The Merkle root of a growing list of leaves, in O(log n) memory.

    Keeps the roots of the perfect subtrees the leaves so far decompose into (a "compact
    range"); the RFC 9162 root folds them right to left.
    """

    __slots__ = ("size", "_stack")

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[bytes] = []

    def append(self, leaf: bytes) -> None:
        self.size += 1
        node = leaf
        count = self.size
        while count % 2 == 0:
            node = node_hash(self._stack.pop(), node)
            count //= 2
        self._stack.append(node)

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    accumulator = MerkleAccumulator()
    for leaf in leaves:
        accumulator.append(leaf)
    return accumulator.root()


def _split(size: int) -> int:
    """The largest power of two smaller than `size` (RFC 9162 section 2.1.1)."""
    return 1 << ((size - 1).bit_length() - 1)


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, leaves) of RFC 9162 section 2.1.3.1, leaf-to-root order."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} is outside a tree of size {len(leaves)}")
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_proof(leaves[:k], index), merkle_root(leaves[k:])]
    return [*inclusion_proof(leaves[k:], index - k), merkle_root(leaves[:k])]


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Iterable[bytes]) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 section 2.1.3.2).

    Compare it with a signed root: equal means the leaf is in that tree.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    fn, sn = index, size - 1
    node = leaf
    for sibling in proof:
        if sn == 0:
            raise ValueError("inclusion proof is longer than the tree is deep")
        if fn % 2 == 1 or fn == sn:
            node = node_hash(sibling, node)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            node = node_hash(node, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("inclusion proof is shorter than the tree is deep")
    return node
