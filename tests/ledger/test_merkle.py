"""RFC 6962 Merkle trees: the transparency-dev/merkle vectors, corruption probes, properties."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import ProofError
from ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# transparency-dev/merkle proof/verify_test.go: eight leaves and the roots of sizes 1..8
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def _h(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(x) for x in hexes]


# (leaf index, tree size, audit path), leaf index 0-based
INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        _h(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, _h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        _h(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]

# (size1, size2, proof)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _h(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]


def reference_mth(data: Sequence[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, written recursively and independently of ledger.merkle."""
    if not data:
        return hashlib.sha256(b"").digest()
    if len(data) == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < len(data):
        k *= 2
    return hashlib.sha256(b"\x01" + reference_mth(data[:k]) + reference_mth(data[k:])).digest()


LEAF_HASHES = [leaf_hash(d) for d in LEAVES]


@pytest.mark.parametrize("size", range(9))
def test_roots_match_reference_and_vectors(size: int) -> None:
    """The root of the first n vector leaves is the reference MTH and the published root."""
    got = merkle_root(LEAF_HASHES[:size])
    assert got == reference_mth(LEAVES[:size])
    assert got == (ROOTS[size - 1] if size else EMPTY_ROOT)


def test_pinned_roots() -> None:
    """The size-8 and empty roots are the published ones, byte for byte."""
    assert merkle_root(LEAF_HASHES).hex() == (
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    )
    assert merkle_root([]).hex() == EMPTY == EMPTY_ROOT.hex()


def test_hash_prefixes() -> None:
    """Leaves and nodes are domain-separated by 0x00 and 0x01."""
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )


def inclusion_probes(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, int, int, list[bytes], bytes, bytes]]:
    """transparency-dev's corruptInclusionProof: every probe must fail verification."""
    probes = [
        ("index - 1", index - 1, size, proof, root, leaf),
        ("index + 1", index + 1, size, proof, root, leaf),
        ("index ^ 2", index ^ 2, size, proof, root, leaf),
        ("size * 2", index, size * 2, proof, root, leaf),
        ("size / 2", index, size // 2, proof, root, leaf),
        ("wrong leaf", index, size, proof, root, hashlib.sha256(b"WrongLeaf").digest()),
        ("empty root", index, size, proof, EMPTY_ROOT, leaf),
        ("random root", index, size, proof, SOME_HASH, leaf),
        ("trailing garbage", index, size, [*proof, b""], root, leaf),
        ("trailing root", index, size, [*proof, root], root, leaf),
        ("preceding garbage", index, size, [b"", *proof], root, leaf),
        ("preceding root", index, size, [root, *proof], root, leaf),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 8]) + proof[i][1:]
        probes.append((f"proof[{i}] bit 3 flipped", index, size, flipped, root, leaf))
    if proof:
        probes.append(("truncated proof", index, size, proof[:-1], root, leaf))
    if len(proof) > 1:
        probes.append(
            ("inserted component", index, size, [proof[0], SOME_HASH, *proof[1:]], root, leaf)
        )
    return probes


def consistency_probes(
    size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes
) -> list[tuple[str, int, int, list[bytes], bytes, bytes]]:
    """transparency-dev's corruptConsistencyProof: every probe must fail verification."""
    wrong = hashlib.sha256(b"WrongRoot").digest()
    probes = [
        ("size1 - 1", size1 - 1, size2, proof, root1, root2),
        ("size1 + 1", size1 + 1, size2, proof, root1, root2),
        ("size1 ^ 2", size1 ^ 2, size2, proof, root1, root2),
        ("size2 * 2", size1, size2 * 2, proof, root1, root2),
        ("size2 / 2", size1, size2 // 2, proof, root1, root2),
        ("wrong root1", size1, size2, proof, wrong, root2),
        ("wrong root2", size1, size2, proof, root1, wrong),
        ("swapped roots", size1, size2, proof, root2, root1),
        ("empty proof", size1, size2, [], root1, root2),
        ("trailing garbage", size1, size2, [*proof, b""], root1, root2),
        ("trailing root1", size1, size2, [*proof, root1], root1, root2),
        ("trailing root2", size1, size2, [*proof, root2], root1, root2),
        ("preceding garbage", size1, size2, [b"", *proof], root1, root2),
        ("preceding root1", size1, size2, [root1, *proof], root1, root2),
        ("preceding root2", size1, size2, [root2, *proof], root1, root2),
        ("preceding proof[0]", size1, size2, [proof[0], *proof], root1, root2),
        ("truncated proof", size1, size2, proof[:-1], root1, root2),
        ("inserted component", size1, size2, [proof[0], SOME_HASH, *proof[1:]], root1, root2),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 16]) + proof[i][1:]
        probes.append((f"proof[{i}] bit 4 flipped", size1, size2, flipped, root1, root2))
    return probes


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION, ids=lambda v: str(v)[:8])
def test_known_inclusion_proofs(index: int, size: int, path: list[bytes]) -> None:
    """The published audit paths are produced, verify, and every corruption of them fails."""
    leaves = LEAF_HASHES[:size]
    assert inclusion_proof(leaves, index) == path
    root = ROOTS[size - 1]
    verify_inclusion(leaves[index], index, size, path, root)
    for name, i, n, proof, r, leaf in inclusion_probes(index, size, path, root, leaves[index]):
        with pytest.raises(ProofError):
            verify_inclusion(leaf, i, n, proof, r)
            pytest.fail(f"probe verified: {name}")


@pytest.mark.parametrize(("size1", "size2", "path"), CONSISTENCY, ids=lambda v: str(v)[:8])
def test_known_consistency_proofs(size1: int, size2: int, path: list[bytes]) -> None:
    """The published consistency proofs are produced, verify, and every corruption fails."""
    assert consistency_proof(LEAF_HASHES[:size2], size1) == path
    root1, root2 = ROOTS[size1 - 1], ROOTS[size2 - 1]
    verify_consistency(size1, size2, path, root1, root2)
    if not path:
        return  # equal sizes: checked by test_consistency_special_cases
    for name, m, n, proof, r1, r2 in consistency_probes(size1, size2, path, root1, root2):
        with pytest.raises(ProofError):
            verify_consistency(m, n, proof, r1, r2)
            pytest.fail(f"probe verified: {name}")


@pytest.mark.parametrize(
    ("size1", "size2", "root1", "root2", "proof", "ok"),
    [
        pytest.param(0, 0, EMPTY_ROOT, EMPTY_ROOT, [], True, id="0-0 ok"),
        pytest.param(0, 1, EMPTY_ROOT, ROOTS[0], [], True, id="0-1 ok"),
        pytest.param(1, 1, ROOTS[0], ROOTS[0], [], True, id="1-1 ok"),
        pytest.param(0, 0, EMPTY_ROOT, ROOTS[0], [], False, id="0-0 roots differ"),
        pytest.param(1, 1, ROOTS[0], ROOTS[1], [], False, id="1-1 roots differ"),
        pytest.param(1, 0, ROOTS[0], EMPTY_ROOT, [], False, id="1-0 time travel"),
        pytest.param(2, 1, ROOTS[1], ROOTS[0], [], False, id="2-1 time travel"),
        pytest.param(1, 2, ROOTS[0], ROOTS[1], [], False, id="1-2 empty proof"),
        pytest.param(0, 1, EMPTY_ROOT, ROOTS[0], [EMPTY_ROOT], False, id="0-1 non-empty proof"),
        pytest.param(1, 1, ROOTS[0], ROOTS[0], [EMPTY_ROOT], False, id="1-1 non-empty proof"),
    ],
)
def test_consistency_special_cases(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes], ok: bool
) -> None:
    """Equal sizes, an empty first tree, time travel and non-empty trivial proofs."""
    if ok:
        verify_consistency(size1, size2, proof, root1, root2)
    else:
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof, root1, root2)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (1, 1), (2, 1), (-1, 1)])
def test_inclusion_outside_the_tree(index: int, size: int) -> None:
    """An index outside the tree never verifies, whatever the hashes."""
    with pytest.raises(ProofError, match="outside"):
        verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)


def test_single_leaf_tree() -> None:
    """In a one-leaf tree the root is the leaf hash, and hashes must be 32 bytes."""
    leaf = leaf_hash(b"data")
    verify_inclusion(leaf, 0, 1, [], leaf)
    for bad_leaf, bad_root in ((leaf, b""), (b"", leaf), (b"", b"")):
        with pytest.raises(ProofError, match="32 bytes"):
            verify_inclusion(bad_leaf, 0, 1, [], bad_root)


def test_messages_show_hex() -> None:
    """A root mismatch names both roots in hex, not an object repr."""
    with pytest.raises(ProofError) as info:
        verify_inclusion(LEAF_HASHES[0], 0, 8, INCLUSION[1][2], ROOTS[6])
    assert ROOTS[6].hex() in str(info.value) and ROOTS[7].hex() in str(info.value)


def test_compact_range_grows_like_the_reference() -> None:
    """Appending leaf by leaf gives the reference root at every size (O(log n) state)."""
    data = [i.to_bytes(4, "big") for i in range(70)]
    tree = CompactRange()
    assert tree.root() == EMPTY_ROOT
    for n, d in enumerate(data, 1):
        tree.append(leaf_hash(d))
        assert tree.size == n
        assert tree.root() == reference_mth(data[:n])
        assert len(tree._stack) == bin(n).count("1")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.data())
def test_every_proof_verifies_on_random_sizes(size: int, data: st.DataObject) -> None:
    """Inclusion for every i < n and consistency for every m <= n verify; roots match MTH."""
    blobs = [i.to_bytes(4, "big") for i in range(size)]
    leaves = [leaf_hash(b) for b in blobs]
    roots = [EMPTY_ROOT]
    tree = CompactRange()
    for leaf in leaves:
        tree.append(leaf)
        roots.append(tree.root())
    assert roots[-1] == reference_mth(blobs)
    for i in range(size):
        verify_inclusion(leaves[i], i, size, inclusion_proof(leaves, i), roots[size])
    for m in range(size + 1):
        verify_consistency(m, size, consistency_proof(leaves, m), roots[m], roots[size])
    # and some corruptions on this size: another index, a flipped bit, a dropped hash
    i = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(leaves, i)
    for other in {i - 1, i + 1, i ^ 2} - {i}:
        with pytest.raises(ProofError):
            verify_inclusion(leaves[i], other, size, proof, roots[size])
    for k in range(len(proof)):
        flipped = [*proof[:k], bytes([proof[k][0] ^ 1]) + proof[k][1:], *proof[k + 1 :]]
        with pytest.raises(ProofError):
            verify_inclusion(leaves[i], i, size, flipped, roots[size])
    if proof:
        with pytest.raises(ProofError):
            verify_inclusion(leaves[i], i, size, proof[:-1], roots[size])
