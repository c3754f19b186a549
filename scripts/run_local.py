"""`make run`: Redis, one Celery worker and the API on 127.0.0.1, started and stopped together."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so that a checkout that is not pip-installed works too

from app.local_redis import LocalRedis, start_local_redis  # noqa: E402

HOST = "127.0.0.1"
READY_TIMEOUT = 60.0  # seconds for the worker and the API to come up together
API_STOP_TIMEOUT = 10.0
# Celery's warm shutdown lets the running task go on; past this it is killed and,
# with acks_late, redelivered to the next worker.
WORKER_STOP_TIMEOUT = 20.0
POLL = 0.5  # each poll is a line in the API access log


def say(*args: object, flush: bool = True) -> None:
    """print, but a closed stdout (`make run | tee` after Ctrl-C) must not stop the shutdown."""
    try:
        print(*args, flush=flush)
    except (BrokenPipeError, OSError):
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until exit


def worker_command() -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "worker.celery_app:celery_app", "worker",
        "--loglevel=INFO", "--pool=prefork", "--concurrency=1",
    ]


def api_command(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "app.api.main:app", "--host", HOST, "--port", str(port)]


class StopRequest:
    """Records SIGINT / SIGTERM / SIGHUP; a second signal asks to kill instead of waiting."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signals: list[str] = []

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # No printing here: a handler that writes to stdout can interrupt another write.
        self.signals.append(signal.Signals(signum).name)
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    @property
    def forced(self) -> bool:
        return len(self.signals) > 1


def exit_status(pid: int) -> str | None:
    """How the child `pid` ended, or None while it runs; it stays unreaped (a zombie).

    Not reaping keeps the pid, and so its process group id, from being reused before
    `Child.stop` has killed what is left of the group.
    """
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    if info is None or info.si_pid == 0:
        return None
    if info.si_code == os.CLD_EXITED:
        return f"exit code {info.si_status}"
    try:
        return f"signal {signal.Signals(info.si_status).name}"
    except ValueError:
        return f"signal {info.si_status}"


@dataclass
class Child:
    """A command in its own process group: Ctrl-C at the terminal reaches only us."""

    name: str
    process: subprocess.Popen[bytes]
    stop_timeout: float

    @classmethod
    def start(
        cls, name: str, command: list[str], env: dict[str, str], stop_timeout: float
    ) -> Child:
        shown = ["python", *command[1:]] if command[0] == sys.executable else command
        say(f"starting {name}: {' '.join(shown)}", flush=True)
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, process_group=0
        )
        return cls(name=name, process=process, stop_timeout=stop_timeout)

    def exit_status(self) -> str | None:
        if self.process.returncode is not None:
            return f"exit code {self.process.returncode}"
        return exit_status(self.process.pid)

    def stop(self, stop: StopRequest) -> None:
        """SIGTERM the leader, wait; then SIGKILL whatever is left of the group."""
        pid = self.process.pid
        if self.process.returncode is not None:
            return
        if self.exit_status() is None:
            say(f"stopping {self.name} (pid {pid}, waiting up to {self.stop_timeout:.0f} s)")
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while self.exit_status() is None and not stop.forced:
                if time.monotonic() > deadline:
                    say(f"{self.name} did not stop within {self.stop_timeout:.0f} s: killing it")
                    break
                time.sleep(0.05)
        # The leader is a zombie or stuck, so its group id is still ours: kill what is left.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        self.process.wait()


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (
        f":{parts.port}" if parts.port else ""
    )
    return urlunsplit(parts._replace(netloc=netloc))


def check_redis(url: str) -> str | None:
    """None when `url` answers PING, else why not."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        client.ping()
        client.close()
    except (redis.RedisError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def readiness(port: int) -> tuple[bool, str]:
    """(ready, what /readyz said) for the API on `port`."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    try:
        with opener.open(f"http://{HOST}:{port}/readyz", timeout=2) as response:
            return response.status == 200, f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        body = exc.read(300).decode("utf-8", "replace").strip()
        return False, f"HTTP {exc.code} {body}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"not answering yet ({reason})"


def dead_child(children: list[Child], server: LocalRedis | None) -> str | None:
    for child in children:
        status = child.exit_status()
        if status is not None:
            return f"{child.name} exited unexpectedly ({status})"
    if server is not None and server.process.poll() is not None:
        return f"redis-server exited unexpectedly (exit code {server.process.returncode})"
    return None


def wait_until_ready(
    port: int, children: list[Child], server: LocalRedis | None, stop: StopRequest
) -> str | None:
    """None once /readyz answers 200 (or a signal asks to stop), else why it never will."""
    started = time.monotonic()
    last_said, last_print = "", 0.0
    while not stop.requested:
        problem = dead_child(children, server)
        if problem:
            return problem
        ready, said = readiness(port)
        if ready:
            return None
        elapsed = time.monotonic() - started
        if elapsed > READY_TIMEOUT:
            return f"not ready after {READY_TIMEOUT:.0f} s: /readyz says {said}"
        if said != last_said or elapsed - last_print >= 5:
            say(f"waiting for /readyz ({elapsed:.0f} s): {said}")
            last_said, last_print = said, elapsed
        stop.event.wait(POLL)
    return None


def banner(port: int, redis_note: str) -> str:
    base = f"localhost:{port}"
    body = (
        '{"dataset":"spiral","hidden_sizes":[32],"activation":"relu",'
        '"learning_rate":0.5,"epochs":20,"batch_size":50}'
    )
    return f"""
==================================================================
Descent is ready at http://{HOST}:{port}  (API docs: /docs)
Redis: {redis_note}

Submit a training job:
  curl -s -X POST {base}/v1/jobs -H 'content-type: application/json' \\
    -d '{body}'
Poll it with the "id" from the answer:
  curl -s {base}/v1/jobs/<id>
  curl -s '{base}/v1/jobs/<id>/curve?since=0'   # then since=<"next">
  curl -s {base}/v1/jobs/<id>/metrics           # test-set metrics once succeeded
Press Ctrl-C to stop the API, the worker and Redis.
==================================================================
"""


def main() -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):  # keep our lines in order with the children's
        sys.stdout.reconfigure(line_buffering=True)
    stop = StopRequest()
    stop.install()
    try:
        port = int(os.environ.get("DESCENT_PORT", "8000"))
    except ValueError:
        say(f"DESCENT_PORT must be a port number, got {os.environ['DESCENT_PORT']!r}")
        return 1
    if port_in_use(port):
        say(f"port {port} on {HOST} is in use: stop what holds it or set DESCENT_PORT")
        return 1

    server: LocalRedis | None = None
    url = os.environ.get("REDIS_URL")
    if url:
        unreachable = check_redis(url)
        if unreachable:
            say(f"REDIS_URL={redacted(url)} does not answer: {unreachable}")
            return 1
        say(f"using REDIS_URL={redacted(url)}")
        redis_note = f"{redacted(url)} (from REDIS_URL)"
    else:
        say("REDIS_URL is not set: starting a private redis-server")
        try:
            server = start_local_redis()  # in its own process group: Ctrl-C reaches us
        except RuntimeError as exc:
            say(f"could not start Redis: {exc}")
            return 1
        url = server.url
        redis_note = f"{url} (private; nothing is kept after exit)"

    env = {**os.environ, "REDIS_URL": url, "PYTHONUNBUFFERED": "1"}
    children: list[Child] = []
    problem: str | None = None
    try:
        if not stop.requested:
            children.append(Child.start("worker", worker_command(), env, WORKER_STOP_TIMEOUT))
            children.append(Child.start("api", api_command(port), env, API_STOP_TIMEOUT))
            problem = wait_until_ready(port, children, server, stop)
            if problem is None and not stop.requested:
                say(banner(port, redis_note), flush=True)
                while not stop.requested:
                    problem = dead_child(children, server)
                    if problem:
                        break
                    stop.event.wait(POLL)
    finally:
        if stop.requested:
            say(f"\n{stop.signals[0]}: stopping everything (again to kill at once)", flush=True)
        elif problem:
            say(f"\n{problem}: stopping the rest", flush=True)
        for child in reversed(children):  # the API first, so that nothing new comes in
            child.stop(stop)
        if server is not None:
            say("stopping redis-server")
            server.stop()
    say("stopped" if problem is None else "stopped after an error")
    return 0 if problem is None else 1


if __name__ == "__main__":
    sys.exit(main())
