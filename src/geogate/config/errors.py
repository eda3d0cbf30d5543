"""What a broken policy file reports: every problem at its line, all at once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding in the policy file, printed the way compilers do so editors can jump to it."""

    file: str
    line: int
    """1-based; 0 when the file itself could not be read."""
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class ConfigError(Exception):
    """The policy file cannot be used; `problems` lists every error found, by line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda problem: problem.line)
        super().__init__("\n".join(str(problem) for problem in self.problems))
