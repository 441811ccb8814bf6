"""Helpers shared by the benchmarks: child-process runs, peak RSS, the result record."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def contender_main(contenders: Mapping[str, Callable[[Path], dict[str, Any]]]) -> None:
    """A contender child's entry point: ``argv`` names the contender and its work directory; one JSON line out,
    with the contender's CPU seconds, peak RSS and threads."""
    contender, workdir = sys.argv[1], Path(sys.argv[2])
    workdir.mkdir(parents=True, exist_ok=True)
    cpu = time.process_time()
    out = contenders[contender](workdir)
    out.update(cpu_s=time.process_time() - cpu, peak_rss_mb=peak_rss_mb(), threads=threading.active_count())
    print(json.dumps(out))


def run_child(module: str, args: list[str], env: dict[str, str], timeout_s: float = 600) -> dict[str, Any]:
    """Run ``python -m module args`` in a fresh process (so its peak RSS is its own) and return the JSON it prints
    on its last stdout line."""
    done = subprocess.run([sys.executable, "-m", module, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class ChildSession:
    """``python -m module args`` kept running and asked for one measurement at a time: each line written to its
    stdin is answered by one JSON line on its stdout. Lets two contenders take turns, so a machine that slows down
    for a while slows both alike."""

    def __init__(self, module: str, args: list[str], env: dict[str, str]) -> None:
        self.module = module
        # A file, not a pipe: a chatty child would block once a pipe nobody reads is full.
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives until close()
        self.proc = subprocess.Popen([sys.executable, "-m", module, *args], env=env, cwd=ROOT, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr)

    def answer(self) -> dict[str, Any]:
        """The next JSON line the child prints (its first one says it is ready)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=60)
            self.stderr.seek(0)
            stderr = self.stderr.read()
            raise RuntimeError(f"{self.module} stopped ({self.proc.returncode}):\n{stderr[-3000:]}")
        return json.loads(line)

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.answer()

    def close(self) -> None:
        stop_child(self.proc)
        self.stderr.close()


def stop_child(proc: subprocess.Popen[str], timeout_s: float = 60) -> None:
    """Close the stdin of a child that serves until its stdin closes; kill it if it does not exit in time."""
    if proc.stdin:
        proc.stdin.close()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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
