"""The audit log's crypto: RFC 6962 roots and C2SP signed checkpoints, checked against the
published vectors of other implementations and against what a forger would try."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geogate.recording.merkle import EMPTY_ROOT, Tree, leaf_hash, node_hash, root_of
from geogate.recording.note import AuditKey, Checkpoint, NoteError, Verifier

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- RFC 6962 -----------------------------------------------------------------------------------

# The Certificate Transparency reference leaves and the roots of their first n, n = 0..8, as in
# the Go and C++ CT code (transparency-dev/merkle testonly).
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CT_ROOTS = [
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
HASHES = st.lists(st.binary(min_size=32, max_size=32), max_size=70)


def test_hashes_are_domain_separated() -> None:
    assert bytes.fromhex(CT_ROOTS[0]) == EMPTY_ROOT
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()


def test_root_of_matches_the_ct_vectors() -> None:
    leaves = [leaf_hash(data) for data in CT_LEAVES]
    assert [root_of(leaves[:n]).hex() for n in range(9)] == CT_ROOTS


def test_tree_matches_the_ct_vectors_at_every_size() -> None:
    tree = Tree()
    roots = [tree.root().hex()]
    for data in CT_LEAVES:
        tree.append(leaf_hash(data))
        roots.append(tree.root().hex())
        assert len(tree.frontier) == tree.size.bit_count()
    assert roots == CT_ROOTS
    assert tree.size == 8
    assert tree.frontier == (bytes.fromhex(CT_ROOTS[8]),)


@SETTINGS
@given(HASHES)
def test_tree_agrees_with_the_reference_at_every_size(leaves: list[bytes]) -> None:
    tree = Tree()
    assert tree.root() == root_of([])
    for n, leaf in enumerate(leaves, 1):
        tree.append(leaf)
        assert tree.size == n
        assert tree.root() == root_of(leaves[:n])


@SETTINGS
@given(HASHES, st.integers(min_value=0, max_value=70))
def test_a_restored_tree_continues_identically(leaves: list[bytes], cut: int) -> None:
    cut = min(cut, len(leaves))
    saved = Tree()
    for leaf in leaves[:cut]:
        saved.append(leaf)
    restored = Tree(saved.size, saved.frontier)
    twin = saved.copy()
    for leaf in leaves[cut:]:
        restored.append(leaf)
        twin.append(leaf)
        assert restored.root() == twin.root() == root_of(leaves[: restored.size])
    assert saved.size == cut  # copies do not share state with the original
    assert saved.root() == root_of(leaves[:cut])


@pytest.mark.parametrize(
    ("size", "frontier"),
    [
        (1, ()),
        (3, (b"a" * 32,)),
        (2, (b"a" * 32, b"b" * 32)),
        (0, (b"a" * 32,)),
        (-1, ()),
        (1, (b"a" * 31,)),
    ],
)
def test_tree_rejects_a_frontier_that_does_not_fit_its_size(
    size: int, frontier: tuple[bytes, ...]
) -> None:
    with pytest.raises(ValueError):
        Tree(size, frontier)


def test_tree_rejects_leaves_that_are_not_hashes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Tree().append(b"raw record line, not its leaf hash")


# --- signed notes -------------------------------------------------------------------------------

# The example of golang.org/x/mod/sumdb/note's documentation.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_TEXT = (
    b"If you think cryptography is the answer to your problem,\n"
    b"then you don't know what your problem is.\n"
)
PETER_NOTE = (
    PETER_TEXT
    + (
        "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    ).encode()
)

ROOT = hashlib.sha256(b"root").digest()
CHECKPOINT = Checkpoint("geogate.example/audit/eu", 42, ROOT)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> AuditKey:
    return AuditKey.load(tmp_path_factory.mktemp("key") / "audit.ed25519")


def other_key(name: str = "geogate-audit") -> AuditKey:
    return AuditKey(name, Ed25519PrivateKey.generate())


def test_the_go_sumdb_note_example_verifies() -> None:
    verifier = Verifier.parse(PETER_VKEY)
    assert verifier.vkey() == PETER_VKEY
    assert verifier.key_id == bytes.fromhex("c74f20a3")
    assert verifier.verify_note(PETER_NOTE) == PETER_TEXT
    with pytest.raises(NoteError):  # signed, but not a checkpoint
        verifier.verify(PETER_NOTE)
    with pytest.raises(NoteError, match="invalid signature by PeterNeumann"):
        verifier.verify_note(PETER_NOTE.replace(b"cryptography", b"cryptographY"))


def test_the_go_example_key_gives_the_same_verifier_key() -> None:
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:]
    key = AuditKey("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed))
    assert key.verifier().vkey() == PETER_VKEY


def test_sign_then_verify_round_trips(key: AuditKey) -> None:
    signed = key.sign(CHECKPOINT)
    body, sig_line = signed.split(b"\n\n")
    assert (
        body + b"\n"
        == CHECKPOINT.body()
        == f"geogate.example/audit/eu\n42\n{base64.b64encode(ROOT).decode()}\n".encode()
    )
    assert sig_line.startswith("— geogate-audit ".encode()) and sig_line.endswith(b"\n")
    assert base64.b64decode(sig_line.split(b" ")[2])[:4] == key.verifier().key_id
    assert key.verifier().verify(signed) == CHECKPOINT


def test_a_cosigned_note_verifies_for_each_signer(key: AuditKey) -> None:
    witness = other_key("witness.example/w1")
    ours = key.sign(CHECKPOINT).split(b"\n\n")[1]
    theirs = witness.sign(CHECKPOINT).split(b"\n\n")[1]
    for note in (
        CHECKPOINT.body() + b"\n" + ours + theirs,
        CHECKPOINT.body() + b"\n" + theirs + ours,
    ):
        assert key.verifier().verify(note) == CHECKPOINT
        assert witness.verifier().verify(note) == CHECKPOINT


def _flip(note: bytes, index: int) -> bytes:
    return note[:index] + bytes([note[index] ^ 1]) + note[index + 1 :]


def test_changing_any_byte_of_the_body_breaks_the_signature(key: AuditKey) -> None:
    signed = key.sign(CHECKPOINT)
    for index in range(len(CHECKPOINT.body())):
        with pytest.raises(NoteError):
            key.verifier().verify(_flip(signed, index))


def test_no_truncation_of_a_note_verifies(key: AuditKey) -> None:
    signed = key.sign(CHECKPOINT)
    for length in range(len(signed)):
        with pytest.raises(NoteError):
            key.verifier().verify(signed[:length])


def test_a_key_with_the_same_name_is_not_our_key(key: AuditKey) -> None:
    impostor = other_key()
    verifier = key.verifier()
    with pytest.raises(NoteError, match=f"no signature by geogate-audit\\+{verifier.key_id.hex()}"):
        verifier.verify(impostor.sign(CHECKPOINT))


def _signature_line(name: str, key_id: bytes, sig: bytes) -> bytes:
    return f"— {name} {base64.b64encode(key_id + sig).decode()}\n".encode()


def _with_signature(name: str, key_id: bytes, sig: bytes) -> bytes:
    return CHECKPOINT.body() + b"\n" + _signature_line(name, key_id, sig)


@pytest.mark.parametrize(
    "sig",
    [bytes(64), hashlib.sha512(b"forged").digest(), b"\x01" * 10, b"\x00"],
    ids=["zeros", "arbitrary", "short", "one-byte"],
)
def test_a_forged_signature_under_our_name_and_key_id_is_rejected(
    key: AuditKey, sig: bytes
) -> None:
    verifier = key.verifier()
    with pytest.raises(NoteError, match="invalid signature by geogate-audit"):
        verifier.verify(_with_signature("geogate-audit", verifier.key_id, sig))


def test_a_valid_signature_does_not_excuse_a_forged_one(key: AuditKey) -> None:
    verifier = key.verifier()
    forged = _with_signature("geogate-audit", verifier.key_id, bytes(64)).split(b"\n\n")[1]
    with pytest.raises(NoteError, match="invalid signature"):
        verifier.verify(key.sign(CHECKPOINT) + forged)


def test_signature_by_another_key_for_a_different_body_is_not_ours(key: AuditKey) -> None:
    signed_elsewhere = key.sign(Checkpoint("geogate.example/audit/eu", 43, ROOT))
    sig_line = signed_elsewhere.split(b"\n\n")[1]
    with pytest.raises(NoteError, match="invalid signature"):
        key.verifier().verify(CHECKPOINT.body() + b"\n" + sig_line)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda n: n.replace(b"\n\n", b"\n"), "no blank line"),
        (lambda n: n[:-1], "truncated"),
        (lambda n: n + b"\n", "truncated"),
        (lambda n: n.replace("—".encode(), b"-"), "not starting with"),
        (lambda n: n.replace("— ".encode(), "—\u00a0".encode()), "not starting with"),
        (lambda n: n.replace(b"geogate-audit ", b"geogate-audit  "), "not valid base64"),
        (lambda n: n.replace(b"=\n", b"\n"), "not valid base64"),
        (lambda n: n + "— other AAAA\n".encode(), "malformed signature"),
        (lambda n: n + "— other\n".encode(), "malformed signature"),
        (lambda n: n.replace(b"42", b"4\r2"), "control characters"),
        (lambda n: n.replace(b"42", b"4\x002"), "control characters"),
        (lambda n: n.replace(b"42", b"4\xff2"), "UTF-8"),
        (lambda n: n + "\n— other AAAAAAAAAAAAAAAAAAAAAA==\n".encode(), "no signature by"),
        (lambda n: n + "— w AAAAAAAA\n".encode() * 101, "more than 100 signatures"),
    ],
)
def test_malformed_notes_are_rejected(
    key: AuditKey, change: Callable[[bytes], bytes], error: str
) -> None:
    with pytest.raises(NoteError, match=error):
        key.verifier().verify(change(key.sign(CHECKPOINT)))


def test_a_huge_note_is_refused_by_its_size() -> None:
    private = Ed25519PrivateKey.generate()
    verifier = AuditKey("geogate-audit", private).verifier()

    def signed(lines: int) -> bytes:
        body = CHECKPOINT.body() + (b"x" * 1023 + b"\n") * lines  # extension lines are allowed
        return body + b"\n" + _signature_line("geogate-audit", verifier.key_id, private.sign(body))

    assert verifier.verify(signed(1000)) == CHECKPOINT  # just under 1 MiB
    with pytest.raises(NoteError, match="more than the 1048576 allowed"):
        verifier.verify(signed(1025))  # validly signed: only its size is wrong


@pytest.mark.parametrize(
    "body",
    [
        b"geogate.example/log\n012\nROOT\n",
        b"geogate.example/log\n-1\nROOT\n",
        b"geogate.example/log\n+5\nROOT\n",
        b"geogate.example/log\n 5\nROOT\n",
        b"geogate.example/log\n5 \nROOT\n",
        b"geogate.example/log\n\nROOT\n",
        b"geogate.example/log\n1e3\nROOT\n",
        b"geogate.example/log\n0x10\nROOT\n",
        "geogate.example/log\n\u0663\nROOT\n".encode(),  # ARABIC-INDIC DIGIT THREE
        b"geogate.example/log\n18446744073709551616\nROOT\n",  # 2**64
        b"geogate.example/log\n5\n" + base64.b64encode(bytes(31)) + b"\n",
        b"geogate.example/log\n5\n" + base64.b64encode(bytes(33)) + b"\n",
        b"geogate.example/log\n5\n" + base64.b64encode(bytes(32)).rstrip(b"=") + b"\n",
        b"geogate.example/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=\n",  # non-canonical
        b"geogate.example/log\n5\n" + base64.urlsafe_b64encode(b"\xff" * 32) + b"\n",
        b"geogate.example log\n5\nROOT\n",
        b"geogate.example/log+x\n5\nROOT\n",
        b"\n5\nROOT\n",
        b"geogate.example/log\n5\nROOT",
        b"geogate.example/log\n5\n",
        b"geogate.example/log\n5\nROOT\n\nextension\n",
        b"geogate.example/\xff\n5\nROOT\n",
    ],
)
def test_checkpoint_parse_is_strict(body: bytes) -> None:
    root = base64.b64encode(ROOT)
    with pytest.raises(NoteError):
        Checkpoint.parse(body.replace(b"ROOT", root))


def test_checkpoint_parse_reads_what_body_writes() -> None:
    assert Checkpoint.parse(CHECKPOINT.body()) == CHECKPOINT
    assert (
        Checkpoint.parse(b"o\n18446744073709551615\n" + base64.b64encode(ROOT) + b"\n").size
        == 2**64 - 1
    )
    assert Checkpoint.parse(b"o\n0\n" + base64.b64encode(ROOT) + b"\next one\next two\n").size == 0


@pytest.mark.parametrize(
    ("origin", "size", "root"),
    [
        ("with space", 1, ROOT),
        ("a+b", 1, ROOT),
        ("", 1, ROOT),
        ("o", -1, ROOT),
        ("o", 1, ROOT[:31]),
    ],
)
def test_checkpoint_refuses_values_it_could_not_write(origin: str, size: int, root: bytes) -> None:
    with pytest.raises(NoteError):
        Checkpoint(origin, size, root)


def test_verifier_keys_round_trip_with_plus_signs_in_their_base64() -> None:
    keys = (
        AuditKey("geogate-audit", Ed25519PrivateKey.from_private_bytes(bytes([i]) * 32))
        for i in range(256)
    )
    key = next(k for k in keys if "+" in k.verifier().vkey().split("+", 2)[2])
    verifier = Verifier.parse(key.verifier().vkey())
    assert verifier.vkey() == key.verifier().vkey()
    assert verifier.verify(key.sign(CHECKPOINT)) == CHECKPOINT


@pytest.mark.parametrize(
    "vkey",
    [
        PETER_VKEY.replace("c74f20a3", "c74f20a4"),  # key id of some other key
        PETER_VKEY.replace("c74f20a3", "c74f20a"),
        PETER_VKEY.replace("c74f20a3", "c74f20ag"),
        PETER_VKEY.replace("PeterNeumann", "Peter Neumann"),
        PETER_VKEY.replace("PeterNeumann", "PeterNeumannX"),  # the key id binds the name
        PETER_VKEY.replace("+ARpc", "+AhpC"),  # other algorithm byte
        PETER_VKEY[:-4],
        "PeterNeumann+c74f20a3",
        "a+b+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_verifier_keys_are_checked(vkey: str) -> None:
    with pytest.raises(NoteError):
        Verifier.parse(vkey)


# --- the signing key file -----------------------------------------------------------------------


def test_the_key_is_made_once_and_its_pub_file_verifies_its_notes(tmp_path: Path) -> None:
    path = tmp_path / "audit.ed25519"
    made = AuditKey.load(path)
    again = AuditKey.load(path, create=False)
    assert made.verifier().vkey() == again.verifier().vkey()
    pub = Path(f"{path}.pub").read_text()
    assert pub == made.verifier().vkey() + "\n"
    assert Verifier.parse(pub).verify(again.sign(CHECKPOINT)) == CHECKPOINT
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o600
        assert Path(f"{path}.pub").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.ed25519", "audit.ed25519.pub"]


def test_the_keys_folder_is_made_when_missing(tmp_path: Path) -> None:
    path = tmp_path / ".geogate" / "audit.ed25519"
    key = AuditKey.load(path)
    assert AuditKey.load(path, create=False).verifier().vkey() == key.verifier().vkey()
    if os.name == "posix":
        assert path.parent.stat().st_mode & 0o777 == 0o700


def test_a_stale_or_missing_pub_file_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "audit.ed25519"
    key = AuditKey.load(path, "geogate.example/audit")
    pub = Path(f"{path}.pub")
    pub.write_text(other_key().verifier().vkey() + "\n")
    AuditKey.load(path, "geogate.example/audit", create=False)
    assert pub.read_text() == key.verifier().vkey() + "\n"
    pub.unlink()
    AuditKey.load(path, "geogate.example/audit", create=False)
    assert pub.read_text() == key.verifier().vkey() + "\n"


def test_create_false_on_a_missing_key_says_so(tmp_path: Path) -> None:
    path = tmp_path / "missing.ed25519"
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"audit signing key {path} does not exist")
    ):
        AuditKey.load(path, create=False)
    assert not path.exists()


def test_a_corrupt_key_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.ed25519"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(NoteError, match=re.escape(f"{path} is not a readable PEM key")):
        AuditKey.load(path)
    assert b"not a key" in path.read_bytes()  # never replaced: it may be an operator's mistake


def test_a_key_of_another_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.ed25519"
    ec = generate_private_key(SECP256R1())
    path.write_bytes(
        ec.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(NoteError, match=re.escape(f"{path} is not an Ed25519 key")):
        AuditKey.load(path)


def test_key_names_follow_the_signed_note_rules(tmp_path: Path) -> None:
    for name in ("", "geogate audit", "geogate+audit"):
        with pytest.raises(NoteError, match="key name"):
            AuditKey.load(tmp_path / "audit.ed25519", name)
    assert list(tmp_path.iterdir()) == []


def test_processes_starting_together_end_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.ed25519"
    starters = 8
    barrier = threading.Barrier(starters)
    vkeys: list[str] = []

    def start() -> None:
        barrier.wait()
        vkeys.append(AuditKey.load(path).verifier().vkey())

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(vkeys) == starters
    assert set(vkeys) == {AuditKey.load(path, create=False).verifier().vkey()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.ed25519", "audit.ed25519.pub"]


def test_losing_the_creation_race_uses_the_winners_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.ed25519"
    winner = Ed25519PrivateKey.generate()
    real_link = os.link

    def other_process_links_first(src: str, dst: Path) -> None:
        Path(dst).write_bytes(
            winner.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        real_link(src, dst)

    monkeypatch.setattr(os, "link", other_process_links_first)
    key = AuditKey.load(path)
    assert key.verifier().vkey() == AuditKey("geogate-audit", winner).verifier().vkey()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.ed25519", "audit.ed25519.pub"]
