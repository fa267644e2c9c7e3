"""RFC 9162 (Certificate Transparency 2.0) hashing: leaves, Merkle roots, inclusion and
consistency proofs.

Leaf hash  = SHA-256(0x00 || canonical record bytes)
Node hash  = SHA-256(0x01 || left || right)

The chain links records by leaf hash; checkpoints carry the Merkle root of the chain's first
`size` leaves, so one decision can later be proven with log2(size) hashes instead of handing
over its neighbours (`inclusion_proof`, `root_from_inclusion_proof`), and a later checkpoint
can be proven to extend an earlier one, rewriting nothing it signed, with as few
(`consistency_proof`, `verify_consistency`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from otel_ai_audit.errors import IntegrityError

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

    def append_subtree(self, node: bytes, height: int) -> None:
        """Append the root of a perfect subtree of 2**height leaves, as if its leaves were
        appended one by one (the tree's size must be a multiple of 2**height)."""
        if self.size % (1 << height):
            raise ValueError(f"a subtree of height {height} cannot start at leaf {self.size}")
        self.size += 1 << height
        count = self.size >> height
        while count % 2 == 0:
            node = node_hash(self._stack.pop(), node)
            count //= 2
        self._stack.append(node)

    def copy(self) -> MerkleAccumulator:
        twin = MerkleAccumulator()
        twin.size = self.size
        twin._stack = list(self._stack)
        return twin

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


Subtree = tuple[int, bytes]
"""(height, root) of a perfect subtree: 2**height leaves starting at a multiple of 2**height."""


def range_subtrees(leaves: bytes, start: int, ends: Iterable[int]) -> dict[int, list[Subtree]]:
    """For each of `ends`: the perfect subtrees that the leaves start..end-1 decompose into,
    left to right (`MerkleAccumulator.append_subtree` them in order to extend a tree of
    `start` leaves).

    `leaves` holds the 32-byte leaf hashes of positions start, start+1, ... of the tree.
    Every node over them is hashed once, a level at a time (one comprehension a level, about
    half the cost of appending leaves one by one), and consecutive ranges of one tree can be
    hashed in separate processes, then joined.
    """
    count = len(leaves) // 32
    levels, firsts = [leaves], [start]
    sha256, one = hashlib.sha256, b"\x01"
    height = 0
    while True:
        first = -(-start >> (height + 1))
        last = (start + count) >> (height + 1)
        if last <= first:
            break
        below = levels[height]
        offset = (2 * first - firsts[height]) * 32
        levels.append(b"".join([sha256(one + below[at:at + 64]).digest()
                                for at in range(offset, offset + (last - first) * 64, 64)]))
        firsts.append(first)
        height += 1
    subtrees: dict[int, list[Subtree]] = {}
    for end in ends:
        if not start < end <= start + count:
            raise ValueError(f"leaves {start}..{end - 1} are not all in the range given")
        nodes, position = [], start
        while position < end:
            height = (end - position).bit_length() - 1
            if position:
                height = min(height, (position & -position).bit_length() - 1)
            at = ((position >> height) - firsts[height]) * 32
            nodes.append((height, levels[height][at:at + 32]))
            position += 1 << height
        subtrees[end] = nodes
    return subtrees


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


class ConsistencyError(IntegrityError):
    """A consistency proof does not show the old tree is a prefix of the new one."""


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots make up PROOF(old_size, D[0:new_size]), in proof order.

    Walks SUBPROOF(m, D[n], true) of RFC 9162 section 2.1.4.1 from the top: each level adds
    the root of the sibling range the old tree's edge does not enter. Unless the old tree is a
    perfect subtree of the new one (the verifier holds that root already), the subtree the
    walk ends in comes first. Requires 0 < old_size < new_size.
    """
    siblings = []
    start, end, m = 0, new_size, old_size
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            siblings.append((start + k, end))
            end = start + k
        else:
            siblings.append((start, start + k))
            start, m = start + k, m - k
    ranges = [] if start == 0 else [(start, end)]
    return ranges + siblings[::-1]


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(old_size, leaves) of RFC 9162 section 2.1.4.1: the hashes showing the tree of the
    first `old_size` leaves is a prefix of the tree of all of them.

    The ranges it takes roots of are disjoint, so each leaf is hashed into one node at most:
    O(n) work, O(log n) hashes out.
    """
    size = len(leaves)
    if not 0 <= old_size <= size:
        raise ValueError(f"old size {old_size} is outside 0..{size}, the tree's size")
    if old_size in (0, size):
        return []
    return [merkle_root(leaves[start:end])
            for start, end in _consistency_ranges(old_size, size)]


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """Check a consistency proof (RFC 9162 section 2.1.4.2); raises ConsistencyError if it
    does not show the tree of `old_root` is the first `old_size` leaves of `new_root`'s.

    Any tree extends the empty one (only an empty proof is valid then); trees of one size are
    consistent only if their roots are equal.
    """
    if not 0 <= old_size <= new_size:
        raise ConsistencyError(f"old size {old_size} is outside 0..{new_size}, the new size")
    if old_size in (0, new_size):
        if proof:
            raise ConsistencyError(f"a consistency proof from size {old_size} to {new_size} "
                                   f"is empty, this one holds {len(proof)} hashes")
        if old_size == new_size and old_root != new_root:
            raise ConsistencyError(f"the two trees are both of size {old_size} but their "
                                   "roots differ")
        return
    expected = len(_consistency_ranges(old_size, new_size))
    if len(proof) != expected:
        raise ConsistencyError(f"a consistency proof from size {old_size} to {new_size} holds "
                               f"{expected} hashes, this one {len(proof)}")
    for position, node in enumerate(proof):
        if len(node) != len(EMPTY_ROOT):
            raise ConsistencyError(f"consistency proof hash {position} is {len(node)} bytes, "
                                   f"not {len(EMPTY_ROOT)}")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)  # the old tree is a perfect subtree: its root starts the path
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            raise ConsistencyError("consistency proof is longer than the new tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(node, fr)
            sr = node_hash(node, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, node)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ConsistencyError("consistency proof is shorter than the new tree is deep")
    if fr != old_root:
        raise ConsistencyError(f"consistency proof does not reproduce the old root (size "
                               f"{old_size}): the old tree is not a prefix of the new one")
    if sr != new_root:
        raise ConsistencyError(f"consistency proof does not reproduce the new root (size "
                               f"{new_size}): the new tree does not extend the old one")
