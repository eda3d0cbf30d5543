"""The local S3 of tests/s3.py behaves like an object store, through fsspec/s3fs, sync and async.

These pin the exceptions s3fs raises (down, missing bucket, missing key), which the recorder
relies on to refuse calls it could not record.
"""

from __future__ import annotations

import fsspec
import pytest
from botocore.exceptions import BotoCoreError, EndpointConnectionError

from geogate.recording.storage import StorageError, open_storage
from tests.s3 import s3_server


def test_sync_write_list_read_delete() -> None:
    with s3_server() as s3:
        assert s3.endpoint.startswith("http://127.0.0.1:")
        assert s3.bucket("recordings") == "s3://recordings"
        fs = fsspec.filesystem("s3", skip_instance_cache=True, **s3.options())

        fs.pipe_file("recordings/logs/a.jsonl", b'{"i":0}\n')
        fs.pipe_file("recordings/logs/b.jsonl", b'{"i":1}\n')
        fs.pipe_file("recordings/other/c.jsonl", b"elsewhere")

        assert fs.ls("recordings/logs", detail=False) == [
            "recordings/logs/a.jsonl",
            "recordings/logs/b.jsonl",
        ]
        assert fs.cat_file("recordings/logs/b.jsonl") == b'{"i":1}\n'

        fs.rm_file("recordings/logs/a.jsonl")
        assert fs.ls("recordings/logs", detail=False) == ["recordings/logs/b.jsonl"]
        assert fs.find("recordings", detail=False) == [
            "recordings/logs/b.jsonl",
            "recordings/other/c.jsonl",
        ]


def test_missing_key_and_missing_bucket_are_file_not_found() -> None:
    with s3_server() as s3:
        s3.bucket("recordings")
        fs = fsspec.filesystem("s3", skip_instance_cache=True, **s3.options())

        with pytest.raises(FileNotFoundError):
            fs.cat_file("recordings/logs/never-written")
        with pytest.raises(FileNotFoundError, match="bucket does not exist"):
            fs.cat_file("no-such-bucket/logs/a.jsonl")
        with pytest.raises(FileNotFoundError, match="bucket does not exist"):
            fs.pipe_file("no-such-bucket/logs/a.jsonl", b"lost")


async def test_async_write_list_read_delete_and_missing() -> None:
    with s3_server() as s3:
        s3.bucket("recordings")
        fs = fsspec.filesystem("s3", asynchronous=True, skip_instance_cache=True, **s3.options())
        session = await fs.set_session()
        try:
            await fs._pipe_file("recordings/logs/a.jsonl", b"first")
            await fs._pipe_file("recordings/logs/b.jsonl", b"second")

            assert await fs._ls("recordings/logs", detail=False) == [
                "recordings/logs/a.jsonl",
                "recordings/logs/b.jsonl",
            ]
            assert await fs._cat_file("recordings/logs/a.jsonl") == b"first"

            await fs._rm_file("recordings/logs/a.jsonl")
            assert await fs._find("recordings", detail=False) == ["recordings/logs/b.jsonl"]
            with pytest.raises(FileNotFoundError):
                await fs._cat_file("recordings/logs/a.jsonl")
            with pytest.raises(FileNotFoundError):
                await fs._pipe_file("no-such-bucket/a", b"lost")
        finally:
            await session.close()


def test_write_after_stop_raises_endpoint_connection_error() -> None:
    with s3_server() as s3:
        s3.bucket("recordings")
        fs = fsspec.filesystem("s3", skip_instance_cache=True, **s3.options())
        fs.pipe_file("recordings/logs/a.jsonl", b"stored")

        s3.stop()
        s3.stop()

        with pytest.raises(EndpointConnectionError) as raised:
            fs.pipe_file("recordings/logs/b.jsonl", b"lost")
        # Not an OSError: a recorder catching only OSError would miss the outage.
        assert not isinstance(raised.value, OSError)
        assert isinstance(raised.value, BotoCoreError)
        with pytest.raises(EndpointConnectionError):
            fs.cat_file("recordings/logs/a.jsonl")


async def test_async_write_after_stop_raises_endpoint_connection_error() -> None:
    with s3_server() as s3:
        s3.bucket("recordings")
        fs = fsspec.filesystem("s3", asynchronous=True, skip_instance_cache=True, **s3.options())
        session = await fs.set_session()
        try:
            await fs._pipe_file("recordings/logs/a.jsonl", b"stored")
            s3.stop()
            with pytest.raises(EndpointConnectionError):
                await fs._pipe_file("recordings/logs/b.jsonl", b"lost")
        finally:
            await session.close()


async def test_options_work_with_the_recording_storage() -> None:
    with s3_server() as s3:
        url = s3.bucket("recordings")
        storage = open_storage(f"{url}/gw", s3.options())
        await storage.write("logs/host.0/0.jsonl", b"batch")
        assert await storage.list("logs/host.0") == ["0.jsonl"]
        assert await storage.read("logs/host.0/0.jsonl") == b"batch"

        s3.stop()
        with pytest.raises(StorageError, match="EndpointConnectionError"):
            await storage.write("logs/host.0/1.jsonl", b"lost")
        await storage.close()


def test_each_server_starts_empty_and_only_one_runs_at_a_time() -> None:
    with s3_server() as s3:
        s3.bucket("recordings")
        fs = fsspec.filesystem("s3", skip_instance_cache=True, **s3.options())
        fs.pipe_file("recordings/a", b"from the first server")
        with pytest.raises(RuntimeError, match="one s3_server at a time"), s3_server():
            pass
    with s3_server() as s3:
        fs = fsspec.filesystem("s3", skip_instance_cache=True, **s3.options())
        with pytest.raises(FileNotFoundError):
            fs.cat_file("recordings/a")
        assert fs.ls("", detail=False) == []


def test_traversal_looking_keys_stay_literal_under_their_prefix() -> None:
    """An object store has no folders: `..` in a key written by an attacker escapes nothing."""
    with s3_server() as s3:
        s3.bucket("recordings")
        fs = fsspec.filesystem("s3", skip_instance_cache=True, **s3.options())
        hostile = [
            "recordings/tenant-a/../tenant-b/x",
            "recordings/tenant-a/%2e%2e/tenant-b/y",
            "recordings/tenant-a/ünï cödé?&#.txt",
        ]
        for key in hostile:
            fs.pipe_file(key, b"attacker")

        assert sorted(fs.find("recordings", detail=False)) == sorted(hostile)
        assert not fs.exists("recordings/tenant-b/x")
        assert fs.cat_file("recordings/tenant-a/ünï cödé?&#.txt") == b"attacker"
