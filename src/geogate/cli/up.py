"""`geogate up`: check the policy, migrate the state store, then serve with N workers."""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from types import FrameType
from typing import Annotated, Any

import typer
import uvicorn

from geogate.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    fail,
    fail_lines,
    open_config,
    parse_listen,
    resolve_config_path,
)
from geogate.config import quickstart_path
from geogate.gateway import BASE_DIR_ENV, CONFIG_ENV
from geogate.store import StoreError, open_store

DEMO_LISTEN = "127.0.0.1:8090"
"""Where the quickstart policy expects the demo LLM that `up` starts beside the gateway."""

LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "default": {
            "class": "logging.StreamHandler",
            "formatter": "default",
            "stream": "ext://sys.stderr",
        },
    },
    "loggers": {
        "geogate": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
    },
}


def up(
    config: ConfigOption = DEFAULT_CONFIG,
    listen: Annotated[
        str | None, typer.Option("--listen", help="HOST:PORT; default: gateway.listen.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Worker processes; default: cores.")
    ] = None,
) -> None:
    """Run the gateway (data path, health and metrics on one port)."""
    file, base_dir = resolve_config_path(config)
    policy = open_config(config)
    host, port = parse_listen(listen or policy.gateway.listen)
    unreadable = [
        f"{file}: connections.{name}.{where}tls.ca_file: {tls.ca_file} cannot be read"
        for name, connection in policy.connections.items()
        for where, tls in [
            ("", connection.tls),
            *((f"targets[{i}].", t.tls) for i, t in enumerate(connection.targets) if t.tls),
        ]
        if tls.ca_file is not None and not os.access(tls.ca_file, os.R_OK)
    ]
    if unreadable:  # found now rather than as a failed call (policy check runs anywhere)
        fail_lines(unreadable)
    try:
        asyncio.run(_migrate(policy.gateway.state))
    except StoreError as exc:
        fail(str(exc))

    if file == quickstart_path():
        _start_demo_llm()
        typer.echo(f"Using the bundled quickstart policy; demo LLM on http://{DEMO_LISTEN}")

    os.environ[CONFIG_ENV] = str(file)
    os.environ[BASE_DIR_ENV] = str(base_dir)
    workers = workers or os.cpu_count() or 1
    if workers > 1:  # one worker keeps its metrics in memory; several share them on disk
        metrics_dir = tempfile.mkdtemp(prefix="geogate-metrics-")
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    # uvicorn ends by re-raising SIGTERM; turned into an exit, the clean-up above still runs.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    typer.echo(f"GeoGate listening on http://{host}:{port} ({file})")
    uvicorn.run(
        "geogate.gateway.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        server_header=False,
        proxy_headers=False,  # the caller's X-Forwarded-* claims are not trusted
        date_header=False,  # the target's Date passes through
        log_config=LOG_CONFIG,
        timeout_graceful_shutdown=10,
    )


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """A stop asked for is a clean exit."""
    del signum, frame
    sys.exit(0)


async def _migrate(state_url: str) -> None:
    """Bring the state store to the current schema once, before workers start."""
    store = await open_store(state_url)
    await store.close()


def _start_demo_llm() -> None:
    process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "geogate", "demo-llm", "--listen", DEMO_LISTEN],
        stdin=subprocess.DEVNULL,
    )
    atexit.register(process.terminate)
