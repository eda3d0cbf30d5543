"""Reading back what a test gateway recorded (its store is `FOLDER/recordings`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from geogate.recording import open_storage
from geogate.recording.log import LogReader


def records(folder: Path) -> list[dict[str, Any]]:
    """Every record of every log in the store, in log order, each a valid record."""

    async def read() -> list[dict[str, Any]]:
        storage = open_storage(f"file://{folder}/recordings")
        found: list[dict[str, Any]] = []
        for log in await storage.list("logs"):
            async for stored in LogReader(storage, log).records():
                assert stored.record is not None
                found.append(stored.record)
        return found

    return asyncio.run(read())
