"""RFC 9162 Merkle proofs: inclusion and consistency, from the hash functions up to the CLI.

The hashing level is tested exhaustively on every tree of up to 70 leaves (every old size,
every leaf index) and against the reference vectors the Certificate Transparency
implementations share; the store level on a chain written by the real `AuditWriter`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from otel_ai_audit.cli import main
from otel_ai_audit.integrity.checkpoint import SignedCheckpoint
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.integrity.merkle import (
    EMPTY_ROOT,
    ConsistencyError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    root_from_inclusion_proof,
    verify_consistency,
)
from otel_ai_audit.integrity.proof import (
    CONSISTENCY_PROOF_FORMAT,
    ProofError,
    build_consistency_proof,
    check_consistency_proof,
    consistency_proof_from_leaves,
)
from otel_ai_audit.store.sqlite import AuditStore
from tests.audit_fixtures import (
    STORE_EVENTS,
    chain_ids,
    checkpoints,
    edit_event,
    rows,
    set_data,
    tamper,
    write_store,
)
from tests.unit.profiles import property_settings

MAX_SIZE = 70


def flipped(node: bytes, bit: int = 0) -> bytes:
    return bytes([node[0] ^ (1 << bit)]) + node[1:]


def tree(size: int, salt: bytes = b"") -> list[bytes]:
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(size)]


LEAVES = tree(MAX_SIZE + 1)
ROOTS = [merkle_root(LEAVES[:size]) for size in range(MAX_SIZE + 2)]
"""ROOTS[n]: the root of the first n of LEAVES."""


def accepts(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
            proof: Sequence[bytes]) -> bool:
    try:
        verify_consistency(old_size, new_size, old_root, new_root, proof)
    except ConsistencyError:
        return False
    return True


# --- reference vectors -----------------------------------------------------------------------
# From github.com/transparency-dev/merkle (the Go library certificate-transparency-go's merkle
# package moved to): leaf inputs and roots from testonly/constants.go, the inclusion and
# consistency proofs from proof/verify_test.go. The leaf inputs are raw data; their leaf hashes
# are SHA-256(0x00 || data). Sizes there are 1-based leaf numbers; here they are tree sizes
# and 0-based leaf indices.

REFERENCE_INPUTS = [bytes.fromhex(data) for data in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f")]
REFERENCE_ROOTS = [bytes.fromhex(root) for root in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")]
"""REFERENCE_ROOTS[n]: the root of the first n reference leaves (n = 0 is SHA-256 of nothing)."""
REFERENCE_CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]
"""(old size, new size, PROOF(old, D[new]))."""
REFERENCE_INCLUSION = [
    (0, 1, []),
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
"""(leaf index, tree size, PATH(index, D[size]))."""
REFERENCE_LEAVES = [leaf_hash(data) for data in REFERENCE_INPUTS]


def test_reference_roots() -> None:
    assert EMPTY_ROOT == REFERENCE_ROOTS[0]
    for size, root in enumerate(REFERENCE_ROOTS):
        assert merkle_root(REFERENCE_LEAVES[:size]) == root


@pytest.mark.parametrize(("old_size", "new_size", "expected"), REFERENCE_CONSISTENCY,
                         ids=[f"{m}-to-{n}" for m, n, _ in REFERENCE_CONSISTENCY])
def test_reference_consistency_proofs(old_size: int, new_size: int, expected: list[str]) -> None:
    proof = consistency_proof(REFERENCE_LEAVES[:new_size], old_size)
    assert [node.hex() for node in proof] == expected
    verify_consistency(old_size, new_size, REFERENCE_ROOTS[old_size], REFERENCE_ROOTS[new_size],
                       proof)


@pytest.mark.parametrize(("index", "size", "expected"), REFERENCE_INCLUSION,
                         ids=[f"{i}-of-{n}" for i, n, _ in REFERENCE_INCLUSION])
def test_reference_inclusion_proofs(index: int, size: int, expected: list[str]) -> None:
    proof = inclusion_proof(REFERENCE_LEAVES[:size], index)
    assert [node.hex() for node in proof] == expected
    assert root_from_inclusion_proof(REFERENCE_LEAVES[index], index, size,
                                     proof) == REFERENCE_ROOTS[size]


# --- consistency proofs, every tree of up to MAX_SIZE leaves ---------------------------------


def tampered_proofs(proof: list[bytes], old_root: bytes,
                    new_root: bytes) -> list[tuple[str, list[bytes]]]:
    """Each proof an attacker could derive from a valid, non-empty one."""
    variants = [(f"bit {bit} of hash {i} flipped",
                 [*proof[:i], flipped(node, bit), *proof[i + 1:]])
                for i, node in enumerate(proof) for bit in (0, 4)]
    variants += [(f"hash {i} dropped", proof[:i] + proof[i + 1:]) for i in range(len(proof))]
    variants += [(f"{name} appended", [*proof, node])
                 for name, node in (("old root", old_root), ("new root", new_root),
                                    ("last hash", proof[-1]))]
    variants += [(f"{name} prepended", [node, *proof])
                 for name, node in (("old root", old_root), ("new root", new_root),
                                    ("first hash", proof[0]))]
    variants += [("empty", []), ("reversed", proof[::-1])] if len(proof) > 1 else [("empty", [])]
    return variants


def test_consistency_every_old_size_of_every_tree() -> None:
    """PROOF(m, D[n]) verifies for all 0 <= m <= n <= MAX_SIZE; every tampered proof, wrong
    root and wrong old size is rejected."""
    for new_size in range(1, MAX_SIZE + 1):
        new_root = ROOTS[new_size]
        for old_size in range(new_size + 1):
            old_root = ROOTS[old_size]
            proof = consistency_proof(LEAVES[:new_size], old_size)
            verify_consistency(old_size, new_size, old_root, new_root, proof)
            if old_size in (0, new_size):
                assert proof == []
                continue
            case = f"{old_size} -> {new_size}"
            for name, variant in tampered_proofs(proof, old_root, new_root):
                assert not accepts(old_size, new_size, old_root, new_root, variant), (case, name)
            for name, roots in (("wrong old root", (flipped(old_root), new_root)),
                                ("wrong new root", (old_root, flipped(new_root))),
                                ("swapped roots", (new_root, old_root)),
                                ("old root of a neighbour", (ROOTS[old_size + 1], new_root)),
                                ("new root of a neighbour", (old_root, ROOTS[new_size + 1]))):
                assert not accepts(old_size, new_size, *roots, proof), (case, name)
            for name, sizes in (("sizes swapped", (new_size, old_size)),
                                ("old size - 1", (old_size - 1, new_size)),
                                ("old size + 1", (old_size + 1, new_size)),
                                ("old size ^ 2", (old_size ^ 2, new_size)),
                                ("old size * 2", (old_size * 2, new_size)),
                                ("new size * 2", (old_size, new_size * 2)),
                                ("new size / 2", (old_size, new_size // 2))):
                assert not accepts(*sizes, old_root, new_root, proof), (case, name)


def test_new_size_is_not_bound_by_the_proof_alone() -> None:
    """A documented limit of RFC 9162 proofs, why checkpoints sign the size with the root:
    the new size only shapes the path, so PROOF(4, D[5]) = [leaf 4] also "verifies" as a
    proof from 4 to 6 against the size-5 root. `check_consistency_proof` compares the sizes
    with the signed checkpoints' (tested below)."""
    proof = consistency_proof(LEAVES[:5], 4)
    assert accepts(4, 6, ROOTS[4], ROOTS[5], proof)
    assert not accepts(4, 6, ROOTS[4], ROOTS[6], proof)


@property_settings(0.5)
@given(st.lists(st.binary(max_size=48), min_size=1, max_size=MAX_SIZE), st.data())
def test_consistency_of_random_leaves(data: list[bytes], draw: st.DataObject) -> None:
    """Random leaf contents: the proof verifies; a new tree that rewrote any leaf of the old
    one is not consistent with it, while one that only differs past it is."""
    leaves = [leaf_hash(item) for item in data]
    new_size = len(leaves)
    old_size = draw.draw(st.integers(0, new_size), label="old_size")
    old_root, new_root = merkle_root(leaves[:old_size]), merkle_root(leaves)
    verify_consistency(old_size, new_size, old_root, new_root,
                       consistency_proof(leaves, old_size))
    index = draw.draw(st.integers(0, new_size - 1), label="rewritten leaf")
    rewritten = [*leaves[:index], leaf_hash(data[index] + b"!"), *leaves[index + 1:]]
    forged_proof = consistency_proof(rewritten, old_size)
    assert accepts(old_size, new_size, old_root, merkle_root(rewritten),
                   forged_proof) == (index >= old_size)


def test_trivial_consistency() -> None:
    """Any tree extends the empty one, a tree only itself; then only an empty proof is valid
    (the cases transparency-dev/merkle's TestVerifyConsistency lists)."""
    some, other = ROOTS[5], ROOTS[6]
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, some, other, [])
    verify_consistency(3, 3, some, some, [])
    for args in [(0, 0, some, other, []), (3, 3, some, other, []),
                 (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT]), (0, 1, some, other, [EMPTY_ROOT]),
                 (3, 3, some, some, [EMPTY_ROOT]), (1, 0, some, other, []),
                 (4, 3, some, other, []), (1, 2, some, other, []), (-1, 3, some, other, [])]:
        assert not accepts(*args), args


def test_consistency_errors_say_what_is_wrong() -> None:
    proof = consistency_proof(LEAVES[:7], 3)
    with pytest.raises(ConsistencyError, match=r"old size 8 is outside 0\.\.7"):
        verify_consistency(8, 7, ROOTS[8], ROOTS[7], [])
    assert len(proof) == 4
    with pytest.raises(ConsistencyError, match="from size 3 to 7 holds 4 hashes, this one 3"):
        verify_consistency(3, 7, ROOTS[3], ROOTS[7], proof[:3])
    with pytest.raises(ConsistencyError, match="hash 1 is 31 bytes, not 32"):
        verify_consistency(3, 7, ROOTS[3], ROOTS[7], [proof[0], proof[1][:31], *proof[2:]])
    with pytest.raises(ConsistencyError, match=r"does not reproduce the old root \(size 3\)"):
        verify_consistency(3, 7, flipped(ROOTS[3]), ROOTS[7], proof)
    with pytest.raises(ConsistencyError, match=r"does not reproduce the new root \(size 7\)"):
        verify_consistency(3, 7, ROOTS[3], flipped(ROOTS[7]), proof)
    with pytest.raises(ConsistencyError, match="both of size 7 but their roots differ"):
        verify_consistency(7, 7, ROOTS[7], ROOTS[6], [])
    with pytest.raises(ConsistencyError, match="from size 0 to 7 is empty, this one holds 1"):
        verify_consistency(0, 7, EMPTY_ROOT, ROOTS[7], [ROOTS[7]])
    assert issubclass(ConsistencyError, ValueError)


@pytest.mark.parametrize("old_size", [-1, 8])
def test_consistency_proof_of_an_old_size_outside_the_tree(old_size: int) -> None:
    with pytest.raises(ValueError, match=rf"old size {old_size} is outside 0\.\.7"):
        consistency_proof(LEAVES[:7], old_size)


def test_consistency_proof_hashes_each_leaf_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proof's subtree roots cover disjoint ranges: building it from n leaves costs fewer
    than n node hashes, whatever the old size (a CLI builds it over a million records)."""
    from otel_ai_audit.integrity import merkle

    calls = 0
    real = merkle.node_hash

    def counting(left: bytes, right: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return real(left, right)

    monkeypatch.setattr(merkle, "node_hash", counting)
    leaves = tree(1000)
    for old_size in (1, 3, 500, 511, 512, 513, 999):
        calls = 0
        consistency_proof(leaves, old_size)
        assert calls < len(leaves), old_size


# --- inclusion proofs, every leaf of every tree of up to MAX_SIZE leaves ---------------------


def test_inclusion_every_leaf_of_every_tree() -> None:
    for size in range(1, MAX_SIZE + 1):
        leaves, root = LEAVES[:size], ROOTS[size]
        for index in range(size):
            proof = inclusion_proof(leaves, index)
            assert root_from_inclusion_proof(leaves[index], index, size, proof) == root
            for i in range(len(proof)):
                forged = [*proof[:i], flipped(proof[i]), *proof[i + 1:]]
                assert root_from_inclusion_proof(leaves[index], index, size, forged) != root
            if proof:
                with pytest.raises(ValueError, match="shorter"):
                    root_from_inclusion_proof(leaves[index], index, size, proof[:-1])
            with pytest.raises(ValueError, match="longer"):
                root_from_inclusion_proof(leaves[index], index, size, [*proof, root])
            assert root_from_inclusion_proof(flipped(leaves[index]), index, size, proof) != root


# --- store level: checkpoints written by the real AuditWriter ---------------------------------

EVENTS = STORE_EVENTS
SIZES = [4, 8, 12, 16, 20, 21]
"""The shared store's checkpoint sizes (every 4 records, then the closing one); the store is
`tests/unit/conftest.py`'s `store` fixture, a path."""


def chain_of(path: Path) -> str:
    (chain_id,) = chain_ids(path)
    return chain_id


def build(path: Path, old_index: int, new_index: int | None = None,
          chain_id: str | None = None) -> dict[str, Any]:
    with AuditStore(path, create=False, readonly=True) as source:
        return build_consistency_proof(source, chain_id or chain_of(path), old_index, new_index)


def trusting(*keys: SigningKey) -> dict[str, Any]:
    return {key.key_id: key.public_key for key in keys}


def test_store_has_the_expected_checkpoints(template: Path) -> None:
    signed = checkpoints(template, chain_of(template))
    assert [(c.index, c.size) for c in signed] == list(enumerate(SIZES))


def test_every_pair_of_checkpoints_is_consistent(template: Path, key: SigningKey) -> None:
    other = SigningKey.generate()
    for new_index in range(len(SIZES)):
        for old_index in range(new_index + 1):
            proof = build(template, old_index, new_index)
            assert proof["format"] == CONSISTENCY_PROOF_FORMAT
            assert (proof["old_size"], proof["new_size"]) == (SIZES[old_index], SIZES[new_index])
            assert json.loads(json.dumps(proof)) == proof
            assert check_consistency_proof(proof, trusting(key)) == [], (old_index, new_index)
            assert check_consistency_proof(proof, trusting(other)) == [
                f"{which} checkpoint is signed by key {key.key_id}, which you do not trust"
                for which in ("old", "new")]
    assert build(template, 2) == build(template, 2, len(SIZES) - 1)


def test_builder_refuses_what_it_cannot_prove(store: Path) -> None:
    chain_id = chain_of(store)
    with pytest.raises(ProofError, match="no chain with id nope"):
        build(store, 0, chain_id="nope")
    with pytest.raises(ProofError, match=r"has no checkpoint 6 \(its checkpoints are 0\.\.5\)"):
        build(store, 6)
    with pytest.raises(ProofError, match="has no checkpoint 9"):
        build(store, 0, 9)
    with pytest.raises(ProofError, match="checkpoint 3 of chain .* comes after checkpoint 1"):
        build(store, 3, 1)
    tamper(store, "DELETE FROM records WHERE chain_id = ? AND seq >= 18", (chain_id,))
    with pytest.raises(ProofError, match="holds 18 records, fewer than the 21"):
        build(store, 0)
    assert build(store, 0, 3)["new_size"] == 16  # what the store still holds is provable


def test_leaves_helper_refuses_mismatched_checkpoints(template: Path) -> None:
    signed = checkpoints(template, chain_of(template))
    leaves = [leaf_hash(row["data"]) for row in rows(template, chain_of(template))]
    proof = consistency_proof_from_leaves(leaves, signed[1], signed[4])
    assert proof == build(template, 1, 4)
    with pytest.raises(ProofError, match="covers 16 records, more than checkpoint 1"):
        consistency_proof_from_leaves(leaves, signed[3], signed[1])
    with pytest.raises(ProofError, match="10 leaves are fewer than the 16"):
        consistency_proof_from_leaves(leaves[:10], signed[0], signed[3])
    foreign = SignedCheckpoint(signed[1].payload, signed[1].signature, signed[1].key_id,
                               "another-chain", 1, 8)
    with pytest.raises(ProofError, match="two chains"):
        consistency_proof_from_leaves(leaves, signed[0], foreign)


@pytest.mark.parametrize(("seq", "old_index", "new_index", "holds"), [
    (9, 2, 5, False),  # in the old tree, inside a subtree the path hashes
    (9, 1, 5, False),  # past the old tree, inside the new one
    (9, 0, 1, True),  # past both trees
    (9, 3, 5, True),  # inside the old tree, which is a perfect subtree: its signed root stands in
    (18, 2, 3, True),  # past both trees
    (18, 3, 4, False),  # past the old tree, inside the new one
])
def test_proof_from_a_tampered_store(store: Path, key: SigningKey, seq: int, old_index: int,
                                     new_index: int, holds: bool) -> None:
    """A proof built from records edited after signing leads away from the signed roots,
    unless the edit lies where the proof takes no hash from: then the two signed checkpoints
    still are consistent, which is all the proof claims (the edit is `verify`'s to find)."""
    chain_id = chain_of(store)
    record = rows(store, chain_id)[seq]["data"]
    set_data(store, chain_id, seq, edit_event(record, output={"score": 0.99}))
    problems = check_consistency_proof(build(store, old_index, new_index), trusting(key))
    if holds:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith("consistency path is invalid: ")
        assert "does not reproduce the" in problems[0]


def other_chain_checkpoint(tmp_path: Path, key: SigningKey) -> dict[str, Any]:
    path = tmp_path / "other.db"
    write_store(path, key, 12)
    return build(path, 0, 2)["new_checkpoint"]


def test_checker_finds_every_edit_of_the_document(template: Path, key: SigningKey,
                                                  tmp_path: Path) -> None:
    good = build(template, 2, 4)
    trusted = trusting(key)

    def problems(**changes: Any) -> list[str]:
        return check_consistency_proof({**good, **changes}, trusted)

    assert problems() == []
    assert problems(new_size=21) == ["proof's new size differs from the new checkpoint's"]
    assert problems(old_size=11) == ["proof's old size differs from the old checkpoint's"]
    assert problems(chain_id="another") == ["proof's chain id differs from the checkpoints'"]
    swapped = problems(old_checkpoint=good["new_checkpoint"], new_checkpoint=good["old_checkpoint"])
    assert "old checkpoint (4) comes after the new one (2)" in swapped
    assert any("old size 20 is outside 0..12" in problem for problem in swapped)
    foreign = other_chain_checkpoint(tmp_path, key)
    assert any("different chains" in problem for problem in problems(new_checkpoint=foreign))
    edited = {**good["new_checkpoint"],
              "payload": good["new_checkpoint"]["payload"].replace('"closed":false',
                                                                   '"closed":true')}
    assert edited["payload"] != good["new_checkpoint"]["payload"]
    assert problems(new_checkpoint=edited) == ["new checkpoint signature does not verify"]
    other_signature = base64.b64encode(SigningKey.generate().sign(b"x")).decode()
    assert problems(old_checkpoint={**good["old_checkpoint"], "signature": other_signature}) == [
        "old checkpoint signature does not verify"]
    path = good["consistency_path"]
    assert problems(consistency_path=[path[0][:-2] + "00", *path[1:]])[0].startswith(
        "consistency path is invalid: ")
    assert problems(consistency_path=path[:-1]) == [
        "consistency path is invalid: a consistency proof from size 12 to 20 holds "
        f"{len(path)} hashes, this one {len(path) - 1}"]
    for broken in ({"consistency_path": ["zz"]}, {"old_size": "many"},
                   {"old_checkpoint": {"payload": "{}", "signature": "", "key_id": ""}}):
        assert problems(**broken)[0].startswith("proof is malformed: ")
    bare = {k: v for k, v in good.items() if k != "new_checkpoint"}
    assert check_consistency_proof(bare, trusted)[0].startswith("proof is malformed: ")
    assert problems(format="otel-ai-audit/inclusion-proof/v1") == [
        f"not a consistency proof of format {CONSISTENCY_PROOF_FORMAT}"]


# --- command line ----------------------------------------------------------------------------


def cli(*args: str) -> Result:
    """Run the CLI in-process; an uncaught exception (a traceback for the user) fails here."""
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def public_key(tmp_path: Path, key: SigningKey) -> str:
    path = tmp_path / "trusted.pub.pem"
    path.write_text(key.public_pem)
    return str(path)


def test_cli_consistency_round_trip(store: Path, public_key: str, tmp_path: Path) -> None:
    chain_id = chain_of(store)
    out = tmp_path / "consistency.json"
    result = cli("prove", str(store), "--consistency", chain_id, "--from", "1", "--to", "3",
                 "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.stderr == (f"consistency proof for chain {chain_id} written to {out}\n")
    assert json.loads(out.read_text()) == build(store, 1, 3)
    result = cli("verify-proof", str(out), "--public-key", public_key)
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"OK: the signed checkpoint of size 16 of chain {chain_id} "
                             "extends the one of size 8\n")
    # Without --to: the newest checkpoint; without --out: stdout.
    result = cli("prove", str(store), "--consistency", chain_id, "--from", "0")
    assert result.exit_code == 0 and json.loads(result.stdout) == build(store, 0)
    # Untrusted signer, or an edited path: not proven.
    untrusted = tmp_path / "untrusted.pub.pem"
    untrusted.write_text(SigningKey.generate().public_pem)
    result = cli("verify-proof", str(out), "--public-key", str(untrusted))
    assert result.exit_code == 1
    assert result.stdout.count("FAIL ") == 2 and "which you do not trust" in result.stdout
    document = json.loads(out.read_text())
    document["consistency_path"][0] = "00" * 32
    out.write_text(json.dumps(document))
    result = cli("verify-proof", str(out), "--public-key", public_key)
    assert result.exit_code == 1
    assert result.stdout.startswith("FAIL consistency path is invalid: ")


def test_cli_inclusion_proofs_work_as_before(store: Path, public_key: str,
                                             tmp_path: Path) -> None:
    chain_id = chain_of(store)
    record_id = rows(store, chain_id)[9]["record_id"]
    out = tmp_path / "proof.json"
    result = cli("prove", str(store), record_id, "--out", str(out))
    assert result.exit_code == 0 and result.stderr == f"proof for {record_id} written to {out}\n"
    result = cli("verify-proof", str(out), "--public-key", public_key)
    assert result.exit_code == 0
    assert result.stdout == (f"OK: record seq 9 of chain {chain_id} is included in the signed "
                             "checkpoint of size 21\n")


@pytest.mark.parametrize(("args", "message"), [
    ([], "give a RECORD_ID, or --consistency CHAIN_ID --from INDEX"),
    (["some-id", "--consistency", "CHAIN"], "give a RECORD_ID or --consistency, not both"),
    (["some-id", "--from", "1"], "--from and --to go with --consistency"),
    (["--consistency", "CHAIN"], "--consistency needs --from INDEX"),
    (["--consistency", "nope", "--from", "0"], "no chain with id nope"),
    (["--consistency", "CHAIN", "--from", "7"], "has no checkpoint 7"),
    (["--consistency", "CHAIN", "--from", "4", "--to", "2"], "comes after checkpoint 2"),
], ids=["nothing", "both", "from-without-consistency", "no-from", "unknown-chain",
        "unknown-checkpoint", "backwards"])
def test_cli_prove_usage_errors(store: Path, args: list[str], message: str) -> None:
    args = [chain_of(store) if arg == "CHAIN" else arg for arg in args]
    result = cli("prove", str(store), *args)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("otel-ai-audit: error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1


def test_cli_verify_proof_of_something_else(tmp_path: Path, public_key: str) -> None:
    out = tmp_path / "proof.json"
    out.write_text("[1, 2]")
    result = cli("verify-proof", str(out), "--public-key", public_key)
    assert result.exit_code == 1 and result.stdout == "FAIL proof is malformed: not a JSON object\n"
    out.write_text("{not json")
    assert cli("verify-proof", str(out), "--public-key", public_key).exit_code == 2
