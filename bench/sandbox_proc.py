"""The sandbox in its own process, so the connector's CPU time and peak RSS are measured without it.

``python -m bench.sandbox_proc '<SandboxDataSize JSON>'`` prints one JSON line (the D365SNOW_* settings) once the
servers listen, then serves until its standard input closes. :class:`SandboxProcess` drives it; the scenario
knobs (page size, latency, rate limit) go through the sandbox's own loopback admin routes.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from bench.common import stop_child


class SandboxProcess:
    """A child process running :class:`SandboxServer` with the given data size."""

    def __init__(self, **size: Any) -> None:
        self.size = size
        self.proc: subprocess.Popen[str] | None = None
        self.env: dict[str, str] = {}
        self._admin: httpx.Client | None = None

    def __enter__(self) -> SandboxProcess:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.sandbox_proc", json.dumps(self.size)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd=Path(__file__).resolve().parent.parent)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the sandbox process did not start")
        self.env = json.loads(line)
        self._admin = httpx.Client(verify=ssl.create_default_context(cafile=self.env["D365SNOW_CA_BUNDLE"]),
                                   timeout=60)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._admin:
            self._admin.close()
        if self.proc:
            stop_child(self.proc, timeout_s=30)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def admin(self, service: str, path: str, payload: Any = None) -> Any:
        """POST ``payload`` (or GET when None) to an admin route of ``service`` (d365 or snow)."""
        assert self._admin is not None
        base = self.env["D365SNOW_D365_URL" if service == "d365" else "D365SNOW_SNOW_URL"]
        if payload is None:
            response = self._admin.get(f"{base}{path}")
        else:
            response = self._admin.post(f"{base}{path}", json=payload)
        response.raise_for_status()
        return response.json()

    def set_faults(self, service: str, **profile: Any) -> None:
        """Set a FaultProfile; this also zeroes the service's request counters."""
        self.admin(service, "/admin/faults", profile)

    def requests(self, service: str) -> int:
        return int(self.admin(service, "/admin/faults")["counters"]["requests"])

    def connector_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}


def main() -> None:
    from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
    from d365_snow_assets.sandbox.server import SandboxServer

    size = SandboxDataSize(**json.loads(sys.argv[1]))
    server = SandboxServer(SandboxConfig(data=size)).start()
    print(json.dumps(server.env()), flush=True)
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()  # returns at EOF: the parent closed the pipe or died
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
