"""Helpers shared by the benchmarks: child-process runs, peak RSS, the result record."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(module: str, args: list[str], env: dict[str, str], timeout_s: float = 600) -> dict[str, Any]:
    """Run ``python -m module args`` in a fresh process (so its peak RSS is its own) and return the JSON it prints
    on its last stdout line."""
    done = subprocess.run([sys.executable, "-m", module, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Figure:
    """One line of the report: a measured value, its target and whether it is met (None = informational)."""

    section: str
    name: str
    value: float
    unit: str
    target: str = ""
    passed: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def verdict(self) -> str:
        return "" if self.passed is None else ("PASS" if self.passed else "MISS")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc), to account for the sandbox's share."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
