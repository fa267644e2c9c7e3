"""The Merkle roots a chain's records hash to, at the sizes checkpoints and anchors signed."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from otel_ai_audit.integrity.merkle import MerkleAccumulator, Subtree, range_subtrees
from otel_ai_audit.verify.reading import ChainData, Positions

CHUNK = 1 << 16
"""Leaves hashed into subtrees at once: bounds the memory of the tree's levels."""


class PrefixTrees:
    """The Merkle trees of the first `size` leaves of a chain, for chosen sizes, grown from the
    subtrees of consecutive ranges of its leaves (`range_subtrees`), hashed here or in
    another process."""

    def __init__(self) -> None:
        self.tree = MerkleAccumulator()
        self.at: dict[int, MerkleAccumulator] = {}

    def extend(self, subtrees: dict[int, list[Subtree]], end: int) -> None:
        """Add the range from the tree's size to `end` (whose subtrees are `subtrees[end]`),
        keeping the tree at `end` and at each other size `subtrees` has."""
        for size in sorted(subtrees):
            if size != end:
                self.at[size] = _grown(self.tree.copy(), subtrees[size])
        self.tree = _grown(self.tree, subtrees[end])
        self.at[end] = self.tree.copy()

    def add_leaves(self, leaves: bytes, sizes: Iterable[int]) -> None:
        """Hash `leaves` (32 bytes each) onto the tree, in chunks, keeping it at `sizes`."""
        start, count = self.tree.size, len(leaves) // 32
        wanted = sorted(size for size in set(sizes) if start < size <= start + count)
        for first in range(start, start + count, CHUNK):
            end = min(first + CHUNK, start + count)
            chunk = leaves[(first - start) * 32:(end - start) * 32]
            self.extend(range_subtrees(chunk, first, [*(size for size in wanted
                                                         if first < size < end), end]), end)


def _grown(tree: MerkleAccumulator, subtrees: list[Subtree]) -> MerkleAccumulator:
    for height, node in subtrees:
        tree.append_subtree(node, height)
    return tree


class PrefixRoots:
    """Roots of the first `size` records of a chain in `order`, for the `sizes` asked about.

    Taken from what pass 1 grew (`ChainData.prefix`) when `order` is the stored order, else
    hashed from the leaves on first use.
    """

    def __init__(self, data: ChainData, order: Positions, sizes: Iterable[int]) -> None:
        self._data = data
        self._order = order
        self._sizes = {size for size in sizes if size > 0}
        self._trees: dict[int, MerkleAccumulator] | None = None

    def root(self, size: int) -> bytes:
        return self._tree(size).root()

    def root_with_last(self, size: int, last: bytes) -> bytes:
        """The root of the first `size - 1` records followed by a leaf `last`."""
        if size == 1:
            tree = MerkleAccumulator()
        else:
            tree = self._tree(size - 1).copy()
        tree.append(last)
        return tree.root()

    def _tree(self, size: int) -> MerkleAccumulator:
        if self._trees is None:
            self._trees = self._grow()
        return self._trees[size]

    def _grow(self) -> dict[int, MerkleAccumulator]:
        data, order = self._data, self._order
        wanted = self._sizes | {size - 1 for size in self._sizes if size > 1}
        stored_order = len(order) == data.size and bool(np.all(order == np.arange(data.size)))
        if stored_order and wanted <= data.prefix.keys():
            return data.prefix
        trees = PrefixTrees()
        trees.add_leaves(data.leaves[order[:max(wanted, default=0)]].tobytes(), wanted)
        return trees.at
