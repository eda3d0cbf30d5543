"""The processes a bench run starts: pinned to CPUs, waited for, accounted, always stopped.

Each child gets a session of its own, so it (and any worker it forks) can be stopped as one
group, and a Ctrl-C in the terminal reaches only `bench.run`, which then stops them in order.
"""

from __future__ import annotations

import contextlib
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
    """A loopback port that is free now (the kernel picks it; the bench binds it moments later)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

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

    def session(self) -> list[int]:
        """The child and every process it started (its workers): all of its session."""
        pids = []
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and _stat(entry.name)[3:4] == [str(self.pid)]:
                pids.append(int(entry.name))
        return pids

    def cpu_seconds(self) -> float:
        """User+system CPU time of the child's whole session."""
        ticks = 0
        for pid in self.session():
            fields = _stat(str(pid))
            if fields:
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / _CLOCK_TICKS

    def pin(self, cpus: frozenset[int] | None) -> None:
        """Move every thread of the child's session to `cpus` (None: any CPU of the bench)."""
        allowed = cpus if cpus is not None else os.sched_getaffinity(0)
        for pid in self.session():
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setaffinity(int(task), allowed)


def _stat(pid: str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (so index 3 is the session id)."""
    try:
        stat = Path("/proc", pid, "stat").read_text()
    except OSError:
        return []  # gone between listing and reading
    return stat[stat.rindex(")") + 2 :].split()


def machine_busy_seconds() -> float:
    """User and system CPU time of every process on the machine (/proc/stat), to spot others.

    Interrupt time is left out: the kernel's loopback TCP work for the bench's own traffic is
    counted there and charged to no process.
    """
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system = (int(value) for value in fields[:3])
    return (user + nice + system) / _CLOCK_TICKS


@dataclass
class Children:
    """Starts children and stops all of them, newest first, whatever happened in between."""

    folder: Path
    started: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = None,
    ) -> Child:
        log = self.folder / f"{name}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                list(argv),
                cwd=self.folder,
                stdin=stdin,
                stdout=sink if stdout is None else stdout,
                stderr=sink,
                start_new_session=True,
                env=_child_env(),
            )
        child = Child(name, process, log)
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


def wait_ready(
    child: Child, port: int, path: str, ready: int | None, timeout: float = 60.0
) -> None:
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
