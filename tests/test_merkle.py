"""RFC 6962 Merkle trees: reference values, properties, and proofs built to deceive."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.merkle import (
    EMPTY_ROOT,
    RootBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    subtree_roots_of,
    verify_consistency,
    verify_inclusion,
)

# The Certificate Transparency reference leaves and the root of each prefix (RFC 6962 data,
# as published with the CT and transparency-dev test suites).
DATA = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
LEAVES = [leaf_hash(bytes.fromhex(d)) for d in DATA]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
CONSISTENCY = {
    (2, 8): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH straight from RFC 6962 section 2.1, recursively, as a second implementation."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(
        b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:])
    ).digest()


def synthetic(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def test_roots_match_the_rfc_6962_reference_for_every_size() -> None:
    assert EMPTY_ROOT.hex() == ROOTS[0]
    for n in range(len(LEAVES) + 1):
        assert root_of(LEAVES[:n]).hex() == ROOTS[n], n


def test_inclusion_and_consistency_proofs_match_the_reference() -> None:
    subtree = subtree_roots_of(LEAVES)
    root8 = bytes.fromhex(ROOTS[8])
    for (index, size), want in INCLUSION.items():
        proof = inclusion_proof(index, size, subtree)
        assert [h.hex() for h in proof] == want
        assert verify_inclusion(LEAVES[index], index, size, proof, root8)
    for (first, second), want in CONSISTENCY.items():
        proof = consistency_proof(first, second, subtree)
        assert [h.hex() for h in proof] == want
        assert verify_consistency(
            first, second, bytes.fromhex(ROOTS[first]), bytes.fromhex(ROOTS[second]), proof
        )


@given(st.lists(st.binary(max_size=20), max_size=70))
def test_streamed_root_equals_the_recursive_definition(data: list[bytes]) -> None:
    leaves = [leaf_hash(d) for d in data]
    builder = RootBuilder()
    for i, leaf in enumerate(leaves):
        assert builder.root() == reference_root(leaves[:i])
        builder.add(leaf)
    assert builder.root() == reference_root(leaves)
    assert builder.size == len(leaves)


@given(st.integers(1, 140), st.data())
def test_every_inclusion_proof_verifies_and_no_other_leaf_does(
    size: int, data: st.DataObject
) -> None:
    leaves = synthetic(size)
    root = reference_root(leaves)
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(index, size, subtree_roots_of(leaves))
    assert verify_inclusion(leaves[index], index, size, proof, root)
    other = data.draw(st.integers(0, size - 1))
    if other != index:
        assert not verify_inclusion(leaves[other], index, size, proof, root)
        assert not verify_inclusion(leaves[index], other, size, proof, root)


@given(st.integers(0, 140), st.integers(0, 140))
def test_every_consistency_proof_verifies(a: int, b: int) -> None:
    first, second = min(a, b), max(a, b)
    leaves = synthetic(second)
    proof = consistency_proof(first, second, subtree_roots_of(leaves))
    r1, r2 = reference_root(leaves[:first]), reference_root(leaves)
    assert verify_consistency(first, second, r1, r2, proof)
    if 0 < first < second:
        # A different history of the same size is not a prefix.
        forged = reference_root(synthetic(first + 1)[1:])
        assert not verify_consistency(first, second, forged, r2, proof)


def _mangled(proof: list[bytes]) -> list[list[bytes]]:
    out: list[list[bytes]] = [proof[:-1], [*proof, b"\xab" * 32], [*proof, *proof]]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 1]) + proof[i][1:]
        out.append(flipped)
        out.append([*proof[:i], proof[i][:31], *proof[i + 1 :]])
    if len(proof) >= 2 and proof[0] != proof[1]:
        out.append([proof[1], proof[0], *proof[2:]])
    return out


@pytest.mark.parametrize("size", [2, 3, 5, 8, 13, 64, 100])
def test_forged_inclusion_proofs_are_rejected(size: int) -> None:
    leaves = synthetic(size)
    root = reference_root(leaves)
    subtree = subtree_roots_of(leaves)
    for index in range(size):
        proof = inclusion_proof(index, size, subtree)
        for bad in _mangled(proof):
            assert not verify_inclusion(leaves[index], index, size, bad, root), (index, bad)
        # Positions outside the tree and garbage arguments. (A proof does not by itself bind
        # the tree size: the signed checkpoint does, which is why verify checks signatures.)
        assert not verify_inclusion(leaves[index], size, size, proof, root)
        assert not verify_inclusion(leaves[index], -1, size, proof, root)
        assert not verify_inclusion(leaves[index][:31], index, size, proof, root)
        assert not verify_inclusion(leaves[index], index, size, proof, root[:31])
        assert not verify_inclusion(leaves[index], index, size, "proof", root)  # type: ignore[arg-type]
    # A one-leaf tree's root is its leaf: an empty path and nothing else.
    assert verify_inclusion(leaves[0], 0, 1, [], leaves[0])
    assert not verify_inclusion(leaves[0], 0, 1, [leaves[1]], leaves[0])
    assert not verify_inclusion(leaves[0], 0, 0, [], EMPTY_ROOT)


@pytest.mark.parametrize("second", [2, 3, 7, 8, 9, 31, 64])
def test_forged_consistency_proofs_are_rejected(second: int) -> None:
    leaves = synthetic(second)
    subtree = subtree_roots_of(leaves)
    r2 = reference_root(leaves)
    for first in range(1, second):
        r1 = reference_root(leaves[:first])
        proof = consistency_proof(first, second, subtree)
        for bad in _mangled(proof):
            assert not verify_consistency(first, second, r1, r2, bad), (first, bad)
        assert not verify_consistency(first, second, r1, r2, [])
        assert not verify_consistency(second, first, r2, r1, proof)
        assert not verify_consistency(first + 1, second, r1, r2, proof) or first + 1 == second
        assert not verify_consistency(first, second, r2, r1, proof)
    # Degenerate sizes: equal trees need equal roots and no proof; any tree extends empty.
    assert verify_consistency(second, second, r2, r2, [])
    assert not verify_consistency(second, second, r2, leaves[0], [])
    assert not verify_consistency(second, second, r2, r2, [r2])
    assert verify_consistency(0, second, EMPTY_ROOT, r2, [])
    assert not verify_consistency(0, second, leaves[0], r2, [])
    assert not verify_consistency(0, second, EMPTY_ROOT, r2, [r2])


def test_generators_refuse_positions_outside_the_tree() -> None:
    subtree = subtree_roots_of(LEAVES)
    for index, size in [(8, 8), (-1, 8), (0, 0)]:
        with pytest.raises(ValueError, match="not in a tree"):
            inclusion_proof(index, size, subtree)
    with pytest.raises(ValueError, match="no consistency proof"):
        consistency_proof(5, 3, subtree)
    with pytest.raises(ValueError, match="32-byte"):
        node_hash(b"\x00" * 31, b"\x00" * 32)
