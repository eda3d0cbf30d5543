"""Writing small files safely: keys made once by whichever process comes first, and files
replaced so that a reader sees the old content or the new, never part of either."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def create_once(path: Path, data: bytes) -> None:
    """Write `path` (readable by its owner only) unless it exists, and never replace it.

    The content goes to a temporary file first, which is then linked to `path`: the link
    fails if another process got there first, so processes starting together all end up
    with the first one's file. The folder must exist.
    """
    descriptor, draft = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:  # mkstemp made it 0600
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: all use its file
            os.link(draft, path)
    finally:
        os.unlink(draft)


def replace_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data` in one step, flushed to disk with its folder entry."""
    descriptor, draft = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(draft, mode)
        os.replace(draft, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(draft)
        raise
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries, so a file just created or renamed in it survives a power cut."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
