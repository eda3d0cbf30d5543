"""Ed25519-signed checkpoints in the C2SP signed-note and tlog-checkpoint formats.

Using the published formats (https://c2sp.org/signed-note, https://c2sp.org/tlog-checkpoint)
lets an auditor check GeoGate's log heads with standard tools (Go's sumdb/note, witnesses)
instead of trusting code we wrote.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from geogate.files import create_once, replace_atomically

MAX_NOTE_SIZE = 1 << 20
MAX_SIGNATURES = 100
ED25519 = b"\x01"  # signature type byte of the signed-note spec
SIG_PREFIX = "— ".encode()  # U+2014 EM DASH, then a space
_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f]")
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")
_KEY_ID = re.compile(r"[0-9a-fA-F]{8}")


class NoteError(ValueError):
    """A note, checkpoint or key is malformed or not signed as required; says what is wrong."""


def _valid_name(name: str) -> bool:
    """Key names and origins: non-empty, no (Unicode) spaces, no '+', no control characters."""
    return bool(name) and "+" not in name and not any(c.isspace() or c < " " for c in name)


def _b64decode(text: str, what: str) -> bytes:
    """Strict, canonical base64, so one value has exactly one encoding."""
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise NoteError(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode() != text:
        raise NoteError(f"{what} is not canonical base64")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log head: the log's origin, its number of entries, and its RFC 6962 root."""

    origin: str
    size: int
    root: bytes

    def __post_init__(self) -> None:
        if not _valid_name(self.origin):
            raise NoteError(f"checkpoint origin {self.origin!r} is empty or has spaces or '+'")
        if not 0 <= self.size < 1 << 64:
            raise NoteError(f"checkpoint size {self.size} is not an unsigned 64-bit number")
        if len(self.root) != 32:
            raise NoteError(f"checkpoint root is {len(self.root)} bytes, not 32")

    def body(self) -> bytes:
        return f"{self.origin}\n{self.size}\n{_b64(self.root)}\n".encode()

    @classmethod
    def parse(cls, body: bytes) -> Checkpoint:
        """Strict parse; extension lines after the root are allowed and ignored."""
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise NoteError("checkpoint is not valid UTF-8") from None
        if not text.endswith("\n"):
            raise NoteError("checkpoint does not end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError(f"checkpoint has {len(lines)} lines, needs origin, size and root")
        if "" in lines[3:]:
            raise NoteError("checkpoint has an empty extension line")
        origin, size, root = lines[:3]
        if not _SIZE.fullmatch(size):
            raise NoteError(f"checkpoint size {size!r} is not a canonical decimal number")
        return cls(origin, int(size), _b64decode(root, "checkpoint root"))


class Verifier:
    """One trusted public key, named and identified as in the signed-note spec."""

    __slots__ = ("key_id", "name", "public")

    def __init__(self, name: str, public: Ed25519PublicKey) -> None:
        if not _valid_name(name):
            raise NoteError(f"key name {name!r} is empty or has spaces or '+'")
        self.name = name
        self.public = public
        self.key_id = hashlib.sha256(name.encode() + b"\n" + self._key_bytes()).digest()[:4]

    def _key_bytes(self) -> bytes:
        return ED25519 + self.public.public_bytes_raw()

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """Read "<name>+<key id hex>+<base64(0x01 || public key)>", checking the key id."""
        parts = vkey.strip().split("+", 2)  # base64 may contain "+" too
        if len(parts) != 3 or not _KEY_ID.fullmatch(parts[1]):
            raise NoteError("verifier key is not of the form <name>+<8 hex digits>+<base64 key>")
        raw = _b64decode(parts[2], "verifier key")
        if len(raw) != 33 or raw[:1] != ED25519:
            raise NoteError("verifier key is not an Ed25519 key")
        verifier = cls(parts[0], Ed25519PublicKey.from_public_bytes(raw[1:]))
        if verifier.key_id != bytes.fromhex(parts[1]):
            raise NoteError(f"verifier key id {parts[1]} does not match its key")
        return verifier

    def vkey(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{_b64(self._key_bytes())}"

    def verify_note(self, note: bytes) -> bytes:
        """Return the note's signed text if it carries a valid signature by this key."""
        if len(note) > MAX_NOTE_SIZE:
            raise NoteError(f"note is {len(note)} bytes, more than the {MAX_NOTE_SIZE} allowed")
        try:
            note.decode()
        except UnicodeDecodeError:
            raise NoteError("note is not valid UTF-8") from None
        if _CONTROL.search(note):
            raise NoteError("note contains control characters")
        split = note.rfind(b"\n\n")
        if split < 0:
            raise NoteError("note has no blank line between its text and its signatures")
        text, sigs = note[: split + 1], note[split + 2 :]
        if not sigs.endswith(b"\n"):
            raise NoteError("note's signature block is empty or truncated")
        lines = sigs[:-1].split(b"\n")
        if len(lines) > MAX_SIGNATURES:
            raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")
        signed = False
        for line in lines:
            if not line.startswith(SIG_PREFIX):
                raise NoteError("note has a signature line not starting with '— '")
            name, _, sig64 = line[len(SIG_PREFIX) :].decode().partition(" ")
            sig = _b64decode(sig64, f"signature by {name!r}")
            if not _valid_name(name) or len(sig) < 5:
                raise NoteError(f"note has a malformed signature line by {name!r}")
            if name != self.name or sig[:4] != self.key_id:
                continue  # a cosignature by some other key
            try:
                self.public.verify(sig[4:], text)
            except InvalidSignature:
                raise NoteError(f"invalid signature by {self.name}+{self.key_id.hex()}") from None
            signed = True
        if not signed:
            raise NoteError(f"no signature by {self.name}+{self.key_id.hex()}")
        return text

    def verify(self, note: bytes) -> Checkpoint:
        return Checkpoint.parse(self.verify_note(note))


class AuditKey:
    """The gateway's Ed25519 signing key (`gateway.audit_key` in the policy file)."""

    __slots__ = ("_private", "_verifier", "name")

    def __init__(self, name: str, private: Ed25519PrivateKey) -> None:
        self.name = name
        self._private = private
        self._verifier = Verifier(name, private.public_key())

    @classmethod
    def load(
        cls, path: str | Path, name: str = "geogate-audit", *, create: bool = True
    ) -> AuditKey:
        """Read the PKCS#8 PEM key at `path`, making it first if missing and `create` is set."""
        path = Path(path)
        if not _valid_name(name):
            raise NoteError(f"key name {name!r} is empty or has spaces or '+'")
        if create and not path.exists():
            _create_key_file(path)
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"audit signing key {path} does not exist") from None
        except OSError as exc:
            raise NoteError(f"cannot read audit signing key {path}: {exc.strerror}") from exc
        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise NoteError(f"audit signing key {path} is not a readable PEM key: {exc}") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise NoteError(f"audit signing key {path} is not an Ed25519 key")
        key = cls(name, private)
        _write_if_changed(path.with_name(path.name + ".pub"), key.verifier().vkey() + "\n")
        return key

    def verifier(self) -> Verifier:
        return self._verifier

    def sign(self, checkpoint: Checkpoint) -> bytes:
        """The full signed note for `checkpoint`."""
        body = checkpoint.body()
        sig = self._verifier.key_id + self._private.sign(body)
        return body + b"\n" + SIG_PREFIX + f"{self.name} {_b64(sig)}\n".encode()


def _create_key_file(path: Path) -> None:
    """Make a key without ever replacing one (another process may be making it too)."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    create_once(path, pem)


def _write_if_changed(path: Path, content: str) -> None:
    """(Re)write the public key file in one step, so it never shows a stale or partial key."""
    try:
        if path.read_text() == content:
            return
    except (OSError, UnicodeDecodeError):
        pass
    replace_atomically(path, content.encode(), 0o644)
