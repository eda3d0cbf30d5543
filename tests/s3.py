"""A local S3-compatible object store (moto in server mode) for tests of s3:// recordings.

    with s3_server() as s3:
        url = s3.bucket("recordings")                      # "s3://recordings"
        fs = fsspec.filesystem("s3", skip_instance_cache=True, **s3.options())
        fs.pipe_file("recordings/logs/a.jsonl", b"{}\\n")
        s3.stop()                                          # the object store goes down

The server is moto's S3 app and request handler on werkzeug, as in moto's ThreadedMotoServer,
bound to 127.0.0.1 on a free ephemeral port. It is not ThreadedMotoServer itself, because that
takes half a second to stop (werkzeug's default poll interval) and lets moto's own `Server`
header through next to werkzeug's, which aiohttp's strict parser (`-X dev`) rejects. `options()`
gives dummy credentials, a region and the endpoint, so neither s3fs nor moto looks for AWS
credentials, instance metadata or any host but 127.0.0.1; no AWS_* variable is set.

Exceptions s3fs raises against this server (s3fs 2026.9, aiobotocore 3.10), sync and async alike:

- object store down (connection refused): `botocore.exceptions.EndpointConnectionError`, a
  `BotoCoreError` and NOT an `OSError`; s3fs does not retry it and `options()` turns botocore's
  retries off, so it is raised at once (well under a second);
- missing bucket, on read or write: `FileNotFoundError` ("The specified bucket does not exist");
- missing key: `FileNotFoundError`.

A recorder must therefore catch `OSError` and `botocore.exceptions.BotoCoreError` (or simply
`Exception`, as `geogate.recording.storage` does) to see every "not stored".

`stop()` refuses connections; it does not simulate a store that accepts and never answers.
Against such a store a read fails with `botocore.exceptions.ReadTimeoutError` (an `OSError`)
only after s3fs's own 5 retries (about 12 s; s3fs's `retries` is not a storage option), and a
write never fails: botocore sends `Expect: 100-continue` and aiohttp's wait for the interim
response is not bounded by `read_timeout`. Bound writes with `asyncio.timeout`.

`use_listings_cache` is off so a listing always shows what the server holds, even when another
filesystem (the gateway's) wrote or deleted in between.

Instance cache: `options()` leaves out `skip_instance_cache`, because callers such as
`geogate.recording.storage` pass it themselves and a duplicate keyword is a TypeError. Pass
`skip_instance_cache=True` when making a filesystem directly; an async filesystem from the cache
may belong to an event loop that has since closed. Each server also signs with its own dummy
key, so a cached filesystem is never one bound to an earlier, stopped server.

moto keeps its buckets in process-wide state, so only one server runs at a time in a process
(pytest-xdist workers are processes, so parallel runs are fine); it is emptied when a server
starts and when it exits.
"""

from __future__ import annotations

import functools
import secrets
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import botocore.session
from botocore.config import Config
from moto.core.base_backend import BackendDict
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

REGION = "eu-central-1"
"""Not us-east-1: s3fs's `mkdir` sends a LocationConstraint, which us-east-1 refuses."""

POLL_INTERVAL = 0.05
"""How often the server checks for `stop()`; werkzeug's default makes every stop cost 0.5 s."""


def _config() -> dict[str, Any]:
    """botocore settings that make a dead or stuck endpoint fail within seconds, without retries."""
    return {
        "connect_timeout": 1,
        "read_timeout": 2,
        "retries": {"mode": "standard", "total_max_attempts": 1},
    }


@functools.cache
def _botocore() -> Any:
    """One botocore session, so its service models load once per process, not per bucket."""
    return botocore.session.Session()


def _one_server_header(app: WSGIApplication) -> WSGIApplication:
    """Drop moto's `Server` header; werkzeug sends its own, and two are invalid HTTP."""

    def wrapped(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start(
            status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
        ) -> Any:
            kept = [(name, value) for name, value in headers if name.lower() != "server"]
            return start_response(status, kept, exc_info)

        return app(environ, start)

    return wrapped


_one_at_a_time = threading.Lock()


@dataclass
class S3:
    """A running moto S3 server; `stop()` takes it down while the test goes on."""

    endpoint: str
    _server: BaseWSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _key: str = field(init=False, default_factory=lambda: f"test-{secrets.token_hex(8)}")
    _stopped: bool = field(init=False, default=False)

    def bucket(self, name: str) -> str:
        """Create bucket `name` and return its URL, `s3://name`."""
        client = _botocore().create_client(
            "s3",
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id=self._key,
            aws_secret_access_key=self._key,
            config=Config(**_config()),
        )
        try:
            client.create_bucket(
                Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
        finally:
            client.close()
        return f"s3://{name}"

    def options(self) -> dict[str, Any]:
        """Storage options for `fsspec.filesystem("s3", ...)` / `url_to_fs` that reach this server."""
        return {
            "endpoint_url": self.endpoint,
            "key": self._key,
            "secret": self._key,
            "client_kwargs": {"region_name": REGION},
            "config_kwargs": _config(),
            "use_listings_cache": False,
        }

    def stop(self) -> None:
        """Close the listening socket: from now on connections are refused. Idempotent."""
        if not self._stopped:
            self._stopped = True
            self._server.shutdown()  # werkzeug closes the socket when serve_forever returns
            self._thread.join()


@contextmanager
def s3_server() -> Iterator[S3]:
    """Run moto's S3 on `http://127.0.0.1:PORT` for the block; empty, and stopped at the end."""
    if not _one_at_a_time.acquire(blocking=False):
        raise RuntimeError("moto's state is process-wide: one s3_server at a time")
    try:
        BackendDict.reset()
        app = _one_server_header(DomainDispatcherApplication(create_backend_app))
        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
        thread = threading.Thread(
            target=server.serve_forever, args=(POLL_INTERVAL,), name="s3_server", daemon=True
        )
        thread.start()
        s3 = S3(endpoint=f"http://127.0.0.1:{server.server_port}", _server=server, _thread=thread)
        try:
            yield s3
        finally:
            s3.stop()
            BackendDict.reset()
    finally:
        _one_at_a_time.release()
