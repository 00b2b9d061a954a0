"""Merkle tree hashes and proofs of RFC 6962 §2.1 (Certificate Transparency), over SHA-256.

* ``MTH({}) = SHA-256()``; a leaf is ``SHA-256(0x00 || data)``; an inner node is
  ``SHA-256(0x01 || left || right)``, the left subtree holding the largest power of two
  smaller than n leaves. The 0x00/0x01 prefixes separate leaves from nodes (§2.1).
* Proofs are produced as RFC 6962 §2.1.1 (PATH) and §2.1.2 (PROOF/SUBPROOF) define them and
  checked with the algorithms of RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency).
* :class:`CompactRange` keeps the root of a growing tree in O(log n) memory: one hash per
  set bit of the size (the "compact range" of transparency-dev/merkle).

Proof functions take *leaf hashes* (see :func:`leaf_hash`); every hash is 32 raw bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from ledger.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "CompactRange",
    "consistency_proof",
    "consistency_ranges",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "range_hashes",
    "verify_consistency",
    "verify_inclusion",
]

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """The hash of one leaf: SHA-256(0x00 || data)."""
    return _sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an inner node: SHA-256(0x01 || left || right)."""
    return _sha256(NODE_PREFIX + left + right).digest()


class CompactRange:
    """The root of a tree that only grows, kept as the roots of its perfect subtrees."""

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._size = 0
        self._stack: list[bytes] = []  # perfect subtrees, largest (leftmost) first

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash on the right; merges the perfect subtrees it completes."""
        n = self._size
        stack = self._stack
        node = leaf
        while n & 1:
            node = _sha256(NODE_PREFIX + stack.pop() + node).digest()
            n >>= 1
        stack.append(node)
        self._size += 1

    def root(self) -> bytes:
        """MTH of the leaves so far: the subtrees folded right to left (RFC 6962 §2.1)."""
        stack = self._stack
        if not stack:
            return EMPTY_ROOT
        node = stack[-1]
        for left in reversed(stack[:-1]):
            node = _sha256(NODE_PREFIX + left + node).digest()
        return node


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    """MTH over an iterable of leaf hashes, in O(log n) memory."""
    tree = CompactRange()
    for leaf in leaves:
        tree.append(leaf)
    return tree.root()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges [start, end) whose MTHs form PATH(index, D[size]), leaf first (§2.1.1)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    path: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append((lo + k, hi))
            hi = lo + k
        else:
            path.append((lo, lo + k))
            lo += k
    path.reverse()
    return path


def consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTHs form PROOF(size1, D[size2]) (RFC 6962 §2.1.2)."""
    if not 0 <= size1 <= size2:
        raise ProofError(f"no consistency proof from size {size1} to size {size2}")
    out: list[tuple[int, int]] = []
    if size1 in (0, size2):
        return out
    m, lo, hi, complete = size1, 0, size2, True
    tail: list[tuple[int, int]] = []
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            tail.append((lo + k, hi))
            hi = lo + k
        else:
            tail.append((lo, lo + k))
            m -= k
            lo += k
            complete = False
    if not complete:
        out.append((lo, hi))
    out.extend(reversed(tail))
    return out


def range_hashes(leaves: Iterable[bytes], ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """MTH of each disjoint leaf range, in one pass over the leaf hashes."""
    order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    out: list[bytes] = [b""] * len(ranges)
    it = iter(leaves)
    position = 0
    for i in order:
        start, end = ranges[i]
        tree = CompactRange()
        for leaf in it:
            position += 1
            if position > start:
                tree.append(leaf)
                if position == end:
                    break
        if tree.size != end - start:
            raise ProofError(f"range [{start}, {end}) runs past the last of {position} leaves")
        out[i] = tree.root()
    return out


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf *index* in the tree over *leaves* (leaf hashes)."""
    return range_hashes(leaves, inclusion_ranges(index, len(leaves)))


def consistency_proof(leaves: Sequence[bytes], size1: int) -> list[bytes]:
    """The proof that the tree of the first *size1* leaves is a prefix of the whole tree."""
    return range_hashes(leaves, consistency_ranges(size1, len(leaves)))


def _check_hash(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        length = len(value) if isinstance(value, bytes) else type(value).__name__
        raise ProofError(f"{name} must be {HASH_SIZE} bytes, found {length}")


def _mismatch(what: str, expected: bytes, found: bytes) -> ProofError:
    return ProofError(f"{what} mismatch: expected {expected.hex()}, found {found.hex()}")


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that *leaf* (a leaf hash) is at *index* in the tree (*size*, *root*), or raise.

    RFC 9162 §2.1.3.2; the proof length is checked first, so a proof with a missing,
    extra or misplaced component fails with a message that says so.
    """
    _check_hash("leaf hash", leaf)
    _check_hash("root", root)
    # (1) the index lies in the tree, and the path has the length this (index, size) needs
    wanted = len(inclusion_ranges(index, size))
    if len(proof) != wanted:
        raise ProofError(
            f"inclusion proof for leaf {index} of {size} needs {wanted} hashes, found {len(proof)}"
        )
    # (2) fold the path from the leaf up: fn walks the leaf's position, sn the last leaf's
    fn, sn, r = index, size - 1, leaf
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p)
        if sn == 0:
            raise ProofError(f"inclusion proof has a surplus hash at position {i}")
        if fn & 1 or fn == sn:
            r = _sha256(NODE_PREFIX + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    # (3) the path reached the top, at the expected root
    if sn != 0:
        raise ProofError(f"inclusion proof ends {sn.bit_length()} levels below the root")
    if r != root:
        raise _mismatch("inclusion proof root", root, r)


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that tree (*size1*, *root1*) is a prefix of tree (*size2*, *root2*), or raise.

    RFC 9162 §2.1.4.2, with its special cases: equal sizes need an empty proof and equal
    roots; size1 = 0 needs an empty proof.
    """
    _check_hash("root1", root1)
    _check_hash("root2", root2)
    # (1) sizes in order, and the proof length this (size1, size2) needs
    wanted = len(consistency_ranges(size1, size2))
    if len(proof) != wanted:
        raise ProofError(
            f"consistency proof from {size1} to {size2} needs {wanted} hashes, found {len(proof)}"
        )
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p)
    if size1 == size2:
        if root1 != root2:
            raise _mismatch(f"root of size {size1}", root1, root2)
        return
    if size1 == 0:
        return
    # (2) when size1 is a power of two its root is the first node of the path
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    # (3) walk both roots up together; fr only takes left siblings
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof has a surplus hash")
        if fn & 1 or fn == sn:
            fr = _sha256(NODE_PREFIX + c + fr).digest()
            sr = _sha256(NODE_PREFIX + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(NODE_PREFIX + sr + c).digest()
        fn >>= 1
        sn >>= 1
    # (4) both roots reproduced, at the top of the larger tree
    if sn != 0:
        raise ProofError(f"consistency proof ends {sn.bit_length()} levels below the root")
    if fr != root1:
        raise _mismatch(f"root of size {size1}", root1, fr)
    if sr != root2:
        raise _mismatch(f"root of size {size2}", root2, sr)
