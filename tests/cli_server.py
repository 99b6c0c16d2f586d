"""Run ``ladle serve`` / ``ladle ui`` as a real process on a free port, and keep its output.

Usage::

    with LadleServer(["serve", str(pipeline)], env) as server:
        httpx.get(server.url + "/health")
    server.output  # stdout and stderr, after it stopped
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import httpx

LADLE = str(Path(sys.executable).parent / "ladle")


def free_port() -> int:
    """A port nothing listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LadleServer:
    """``ladle <args> --port N`` until the block ends; ``output`` is everything it wrote."""

    def __init__(self, args: list[str], env: dict[str, str], *, cwd: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = ""
        self._args = [LADLE, *args, "--port", str(self.port)]
        self._env = {**os.environ, **env}
        self._cwd = cwd
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LadleServer:
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            self._args, env=self._env, cwd=self._cwd, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url + "/", timeout=1)
            except httpx.TransportError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"{self._args} did not start:\n{self.output}") from None
                time.sleep(0.1)
            else:
                return self

    def __exit__(self, *_: Any) -> None:
        assert self._process is not None
        assert self._log is not None
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.seek(0)
        self.output = self._log.read().decode("utf-8", "replace")
        self._log.close()
