"""The service's own processes: a Celery worker and the API (uvicorn), and their readiness."""

from __future__ import annotations

import signal
import socket
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import redis

from app.settings import Settings
from app.store.registry import WorkerRegistry
from scripts.stack.process import Child, StackError, free_port, wait_for

HOST = "127.0.0.1"
CELERY_APP = "worker.celery_app:celery_app"
ASGI_APP = "app.api.main:app"
GRACEFUL_SECONDS = 5  # uvicorn's wait for open connections when told to stop


def _setting(env: Mapping[str, str], variable: str, field: str) -> str:
    """`variable` from the child's environment, else the Settings default of `field`."""
    default = Settings.model_fields[field].default
    return env.get(variable) or str(default)


class Worker(Child):
    """`celery worker` (prefork) with a unique node name. No --concurrency on its command
    line: DESCENT_WORKER_CONCURRENCY in `env` decides, as everywhere else.

    If the launcher dies, the kernel SIGKILLs the worker (and Celery's pool processes die
    with it) rather than SIGTERM it: SIGTERM is Celery's warm shutdown, which waits for the
    running job, and that job waits out the outage of a private Redis that died with the
    launcher (DESCENT_REDIS_OUTAGE_SECONDS); a cold shutdown (SIGQUIT) can hang on the
    unreachable broker. The job's lease lapses and the next worker resumes it from its
    checkpoint, as after any lost worker. The ordinary stop (`stop()`) is still SIGTERM.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        name: str,
        log: Path | None,
        args: Sequence[str],
        death_signal: int = signal.SIGKILL,
    ) -> None:
        self.node = f"{name}@{socket.gethostname()}"  # what Celery makes of name@%h
        self.redis_url = _setting(env, "REDIS_URL", "redis_url")
        self.key_prefix = _setting(env, "DESCENT_KEY_PREFIX", "key_prefix")
        command = [
            sys.executable, "-m", "celery", "-A", CELERY_APP, "worker",
            "--pool=prefork", "--loglevel=INFO", "-n", f"{name}@%h", *args,
        ]
        super().__init__(f"worker {name}", command, env=env, log=log, death_signal=death_signal)

    def online(self) -> bool:
        """Whether this worker has announced itself in the store's worker registry."""
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1)
        try:
            return self.node in WorkerRegistry(client, self.key_prefix).alive(600)
        except redis.RedisError:
            return False
        finally:
            client.close()

    def wait_online(self, timeout: float = 60.0) -> Worker:
        wait_for(self.online, timeout, f"{self.name} to come online", watch=[self])
        return self

    def pool_pids(self) -> list[int]:
        """The prefork pool's processes (Linux: read from /proc)."""
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(pid) for pid in path.read_text().split()]


class Api(Child):
    """uvicorn serving the FastAPI app on HOST:`port`."""

    def __init__(
        self, env: Mapping[str, str], port: int, log: Path | None, args: Sequence[str]
    ) -> None:
        self.port = port
        command = [
            sys.executable, "-m", "uvicorn", ASGI_APP, "--host", HOST, "--port", str(port),
            # An open stream must not hold a stop (or the launcher's death) forever.
            "--timeout-graceful-shutdown", str(GRACEFUL_SECONDS), *args,
        ]
        super().__init__("api", command, env=env, log=log)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def readiness(self) -> tuple[bool, str]:
        """(ready, what /readyz said)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
        try:
            with opener.open(f"{self.url}/readyz", timeout=2) as response:
                return response.status == 200, f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            body = exc.read(300).decode("utf-8", "replace").strip()
            return False, f"HTTP {exc.code} {body}"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return False, f"not answering yet ({reason})"

    def wait_ready(self, timeout: float = 60.0, watch: Sequence[Child] = ()) -> Api:
        """Until /readyz answers 200: Redis answers and a worker is online."""
        wait_for(lambda: self.readiness()[0], timeout, f"{self.url}/readyz to answer 200",
                 watch=[self, *watch], interval=0.1)
        return self


def start_worker(
    env: Mapping[str, str],
    name: str | None = None,
    log: Path | None = None,
    args: Sequence[str] = (),
    death_signal: int = signal.SIGKILL,
) -> Worker:
    """Start a Celery worker process; `env` is its whole environment (REDIS_URL and the
    DESCENT_* settings), `name` the start of its node name (default: unique), `args` more
    `celery worker` options. It is not waited for: call .wait_online() when it matters."""
    if "REDIS_URL" not in env:
        raise StackError("start_worker: env has no REDIS_URL")
    node = name or f"descent-{uuid.uuid4().hex[:8]}"
    return Worker(env, node, log, args, death_signal)


def start_api(
    env: Mapping[str, str],
    port: int | None = None,
    log: Path | None = None,
    args: Sequence[str] = (),
) -> Api:
    """Start the API on `port` (default: a free one); not waited for: see .wait_ready()."""
    if "REDIS_URL" not in env:
        raise StackError("start_api: env has no REDIS_URL")
    return Api(env, port or free_port(HOST), log, args)
