"""The processes a bench run starts: pinned to CPUs, waited for, accounted, always stopped.

Each child gets a session of its own, so it (and any worker it forks) can be stopped as one
group, and a Ctrl-C in the terminal reaches only `bench.run`, which then stops them in order.
"""

from __future__ import annotations

import http.client
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
_REPO = Path(__file__).resolve().parent.parent
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """Something the bench needs did not work; the message says what and where to look."""


def free_port() -> int:
    """An unused loopback port (bound and released; nothing else runs on a bench machine)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    cpus: frozenset[int] | None

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise BenchError(f"{self.name} exited with code {code}; its output:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """User+system CPU of every process in the child's session (the child and its workers)."""
        total = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue  # gone between listing and reading
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[3]) == self.pid:  # field 6 of stat: the session id
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / _CLOCK_TICKS


@dataclass
class Children:
    """Starts children and stops all of them, newest first, whatever happened in between."""

    folder: Path
    started: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        cpus: frozenset[int] | None,
        *,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = None,
    ) -> Child:
        log = self.folder / f"{name}.log"
        with log.open("wb") as sink:

            def pin() -> None:
                if cpus is not None:
                    os.sched_setaffinity(0, cpus)

            process = subprocess.Popen(
                list(argv),
                cwd=self.folder,
                stdin=stdin,
                stdout=sink if stdout is None else stdout,
                stderr=sink,
                start_new_session=True,
                env=_child_env(),
                preexec_fn=pin,  # safe: the bench runner has no other threads
            )
        child = Child(name, process, log, cpus)
        self.started.append(child)
        return child

    def stop(self, child: Child) -> None:
        """SIGTERM the child's group, SIGKILL it if it is still there after a grace period."""
        if child in self.started:
            self.started.remove(child)
        if child.process.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(child.pid, sig)
            except ProcessLookupError:
                return
            try:
                child.process.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        while self.started:
            self.stop(self.started[-1])


def _child_env() -> dict[str, str]:
    """The bench's environment, with the repository importable (children run in the temp folder)."""
    paths = [str(_REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """A plain GET to 127.0.0.1 (http.client: no proxy variables, nothing but loopback)."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_ready(child: Child, port: int, path: str, ready: int | None, timeout: float = 60.0) -> None:
    """Poll `path` until it answers (with status `ready`, if given) or the child dies."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        child.check_alive()
        try:
            status, _ = http_get(port, path, timeout=1.0)
        except OSError as exc:
            last = str(exc)
        else:
            if ready is None or status == ready:
                return
            last = f"HTTP {status}"
        time.sleep(0.1)
    raise BenchError(
        f"{child.name} was not ready on port {port} after {timeout:g}s ({last}); "
        f"its output:\n{child.tail()}"
    )


def read_line(child: Child, timeout: float) -> bytes:
    """One line from a child's stdout, or BenchError if it says nothing for `timeout` seconds."""
    stream = child.process.stdout
    assert stream is not None
    readable, _, _ = select.select([stream], [], [], timeout)
    if not readable:
        raise BenchError(f"{child.name} gave no answer within {timeout:g}s:\n{child.tail()}")
    line = stream.readline()
    if not line:
        child.check_alive()
        raise BenchError(f"{child.name} closed its output:\n{child.tail()}")
    return line
