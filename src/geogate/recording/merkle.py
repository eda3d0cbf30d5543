"""RFC 6962 §2.1 Merkle tree hashing, so audit-log roots match every Certificate Transparency tool.

Leaves are hashed with a 0x00 prefix and interior nodes with 0x01, which keeps a leaf from ever
being passed off as an interior node (second-preimage attack). `root_of` is the recursive
definition from the RFC, kept as the reference; `Tree` computes the same root while storing
only O(log n) hashes, which is what the recorder persists between appends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """MTH of a single entry: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH over already leaf-hashed entries, split at the largest power of two below n."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(root_of(leaves[:k]), root_of(leaves[k:]))


class Tree:
    """Append-only compact tree: keeps only the right-edge frontier (O(log n) hashes).

    The frontier holds the roots of the perfect subtrees that make up the tree, largest first;
    one per set bit of `size`. `(size, frontier)` is the whole state, so it can be saved and
    restored without the leaves.
    """

    __slots__ = ("_frontier", "_size")

    def __init__(self, size: int = 0, frontier: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise ValueError(f"tree size must not be negative, got {size}")
        if len(frontier) != size.bit_count():
            raise ValueError(
                f"a tree of size {size} has {size.bit_count()} frontier hashes, got {len(frontier)}"
            )
        if any(len(h) != HASH_SIZE for h in frontier):
            raise ValueError(f"frontier hashes must be {HASH_SIZE} bytes each")
        self._size = size
        self._frontier = [bytes(h) for h in frontier]

    @property
    def size(self) -> int:
        return self._size

    @property
    def frontier(self) -> tuple[bytes, ...]:
        return tuple(self._frontier)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash, merging equal-sized subtrees like a binary counter carries."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, got {len(leaf)}")
        node = bytes(leaf)
        carry = self._size
        while carry & 1:
            node = node_hash(self._frontier.pop(), node)
            carry >>= 1
        self._frontier.append(node)
        self._size += 1

    def root(self) -> bytes:
        """The RFC 6962 root: fold the frontier from the smallest subtree up."""
        if not self._frontier:
            return EMPTY_ROOT
        root = self._frontier[-1]
        for subtree in reversed(self._frontier[:-1]):
            root = node_hash(subtree, root)
        return root

    def copy(self) -> Tree:
        """A tree that goes on independently (without checking again what is known valid)."""
        twin = Tree.__new__(Tree)
        twin._size, twin._frontier = self._size, self._frontier.copy()
        return twin
