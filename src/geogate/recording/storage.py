"""Where recordings live: a local folder, or any fsspec URL (S3 and other object stores).

    storage = open_storage("file:///var/lib/geogate/recordings")
    await storage.append("logs/host.0/0000000000000000.jsonl", b'{"i":0,...}\n')
    await storage.sync()                      # to disk, for a power cut (a crash loses nothing)
    names = await storage.list("logs/host.0")  # ["0000000000000000.jsonl", ...], sorted

A local folder appends to a segment file; an object store cannot append, so the log writes
each batch as an object of its own (`appends` says which). Every failure surfaces as a
`StorageError`, whose message names the store and what went wrong, so the recorder can refuse
the calls it could not record.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from pathlib import Path
from typing import Any, Protocol

import fsspec
from fsspec.asyn import AsyncFileSystem

from geogate.files import replace_atomically, sync_folder

OBJECT_TIMEOUT = 30.0
"""Seconds an object store has for one operation: a store that accepts connections but stops
answering must fail the calls waiting on it, not hold them (aiobotocore's own timeouts do not
cover a PUT waiting for `100 Continue`)."""


class StorageError(Exception):
    """The store could not do what was asked; nothing may be forwarded on its behalf."""


class Storage(Protocol):
    url: str
    appends: bool
    """Whether `append` adds to an existing file (a local folder) or every write is an object."""

    async def append(self, path: str, data: bytes) -> None: ...

    async def write(self, path: str, data: bytes) -> None: ...

    async def read(self, path: str) -> bytes: ...

    async def list(self, folder: str) -> list[str]: ...

    async def delete(self, path: str) -> None: ...

    async def sync(self) -> None: ...

    async def truncate(self, path: str, size: int) -> None: ...

    async def close(self) -> None: ...


def open_storage(url: str, options: dict[str, Any] | None = None) -> Storage:
    """The store of `gateway.recordings.store`; `options` go to the fsspec filesystem."""
    if url.startswith("file://"):
        return LocalStorage(Path(url.removeprefix("file://")))
    return ObjectStorage(url, options or {})


def _explain(store: str, action: str, exc: BaseException) -> StorageError:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        reason = "the disk is full"
    elif isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "it is not writable"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    return StorageError(f"could not {action} in the recording store {store} ({reason})")


class LocalStorage:
    """A folder. Appends go through one open descriptor per file; `sync` flushes those."""

    appends = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"
        self._open: dict[str, int] = {}
        self._dirty: set[int] = set()

    async def append(self, path: str, data: bytes) -> None:
        try:
            descriptor = self._open.get(path)
            if descriptor is None:
                descriptor = self._descriptor(path)
            view = memoryview(data)
            while view:  # a regular file takes it all at once; a full disk raises
                written = os.write(descriptor, view)
                view = view[written:]
            self._dirty.add(descriptor)
        except OSError as exc:
            self._forget(path)  # reopened next time: the file may have been repaired or replaced
            raise _explain(self.url, f"append to {path}", exc) from exc

    def _forget(self, path: str) -> None:
        descriptor = self._open.pop(path, None)
        if descriptor is not None:
            self._dirty.discard(descriptor)
            os.close(descriptor)

    def _descriptor(self, path: str) -> int:
        file = self.root / path
        created = not file.exists()
        file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if created:  # a new file's name must survive a power cut too
            sync_folder(file.parent)
        for other in list(self._open):  # the log appends to one segment at a time
            closing = self._open.pop(other)
            if closing in self._dirty:  # its last batches must reach the disk too
                os.fdatasync(closing)
                self._dirty.discard(closing)
            os.close(closing)
        self._open[path] = descriptor
        return descriptor

    async def sync(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = list(self._dirty), set()
        try:
            await asyncio.to_thread(_sync_all, dirty)
        except OSError as exc:
            raise _explain(self.url, "flush to disk", exc) from exc

    async def write(self, path: str, data: bytes) -> None:
        file = self.root / path
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(replace_atomically, file, data, 0o644)
        except OSError as exc:
            raise _explain(self.url, f"write {path}", exc) from exc

    async def read(self, path: str) -> bytes:
        try:
            return await asyncio.to_thread((self.root / path).read_bytes)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise _explain(self.url, f"read {path}", exc) from exc

    async def list(self, folder: str) -> list[str]:
        try:
            return sorted(entry.name for entry in (self.root / folder).iterdir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _explain(self.url, f"list {folder}", exc) from exc

    async def delete(self, path: str) -> None:
        descriptor = self._open.pop(path, None)
        if descriptor is not None:
            os.close(descriptor)
        try:
            (self.root / path).unlink(missing_ok=True)
        except OSError as exc:
            raise _explain(self.url, f"delete {path}", exc) from exc

    async def truncate(self, path: str, size: int) -> None:
        try:
            os.truncate(self.root / path, size)
        except FileNotFoundError as exc:
            if size:
                raise _explain(self.url, f"truncate {path}", exc) from exc
            # never created (the failed append could not open it): nothing to cut
        except OSError as exc:
            raise _explain(self.url, f"truncate {path}", exc) from exc

    async def close(self) -> None:
        await self.sync()
        for descriptor in self._open.values():
            os.close(descriptor)
        self._open.clear()


def _sync_all(descriptors: list[int]) -> None:
    for descriptor in descriptors:
        try:
            os.fdatasync(descriptor)
        except OSError as exc:
            if exc.errno != errno.EBADF:  # closed by a segment switch, which flushed it
                raise


class ObjectStorage:
    """An fsspec filesystem (`s3://bucket/prefix`, `gs://...`, `memory://...`).

    Object stores acknowledge a write once it is durable, so `sync` has nothing to do.
    """

    appends = False

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self.url = url.rstrip("/")
        self._options = options
        self._fs: Any = None
        self._async = False
        self._root = ""

    async def _filesystem(self) -> Any:
        """Made on first use, inside the event loop an async filesystem (s3fs) must live in."""
        if self._fs is None:
            protocol = self.url.partition("://")[0]
            self._async = issubclass(fsspec.get_filesystem_class(protocol), AsyncFileSystem)
            extra = {"asynchronous": True} if self._async else {}
            fs, root = fsspec.core.url_to_fs(
                self.url, skip_instance_cache=True, **extra, **self._options
            )
            if self._async:
                await fs.set_session()
            self._fs, self._root = fs, root.rstrip("/")
        return self._fs

    async def _call(self, action: str, method: str, path: str, *args: Any) -> Any:
        try:
            async with asyncio.timeout(OBJECT_TIMEOUT):
                fs = await self._filesystem()
                args = (f"{self._root}/{path}" if path else self._root, *args)
                if self._async:
                    return await getattr(fs, f"_{method}")(*args)
                return await asyncio.to_thread(getattr(fs, method), *args)
        except FileNotFoundError:
            raise
        except TimeoutError as exc:
            reason = f"no answer within {OBJECT_TIMEOUT:g} s"
            raise StorageError(
                f"could not {action} in the recording store {self.url} ({reason})"
            ) from exc
        except Exception as exc:  # each backend has its own errors; all mean "not done"
            raise _explain(self.url, action, exc) from exc

    async def append(self, path: str, data: bytes) -> None:
        await self.write(path, data)

    async def write(self, path: str, data: bytes) -> None:
        await self._call(f"write {path}", "pipe_file", path, data)

    async def read(self, path: str) -> bytes:
        data = await self._call(f"read {path}", "cat_file", path)
        assert isinstance(data, bytes)
        return data

    async def list(self, folder: str) -> list[str]:
        try:
            entries = await self._call(f"list {folder}", "ls", folder, False)
        except FileNotFoundError:
            return []
        return sorted(str(entry).rstrip("/").rpartition("/")[2] for entry in entries)

    async def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await self._call(f"delete {path}", "rm_file", path)

    async def sync(self) -> None:
        return None

    async def truncate(self, path: str, size: int) -> None:
        data = await self.read(path)
        await self.write(path, data[:size])

    async def close(self) -> None:
        client = getattr(self._fs, "_s3", None)  # s3fs's aiobotocore client, if one was made
        if self._async and client is not None:
            with contextlib.suppress(Exception):
                await client.close()
