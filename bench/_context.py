"""What every section gets: the work directory, the process registry, quick mode, output."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench._procs import Processes


@dataclass
class Context:
    work: Path
    procs: Processes
    quick: bool = False
    started: float = field(default_factory=time.monotonic)

    def say(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)

    def pick(self, full: int, quick: int) -> int:
        """A repetition count: ``full`` normally, ``quick`` with --quick."""
        return quick if self.quick else full

    def dir(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path
