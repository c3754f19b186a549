"""`make run`: Redis, one Celery worker and the API on 127.0.0.1, started and stopped together."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so that a checkout that is not pip-installed works too

from scripts.stack import (  # noqa: E402
    Api,
    Child,
    RedisServer,
    StackError,
    stack_env,
    start_api,
    start_redis,
    start_worker,
)

HOST = "127.0.0.1"
RUN_DIR = ROOT / ".run"  # what `make run` keeps between runs; --run-dir moves it
DATA_DIR = ROOT / ".data"  # DESCENT_DATA_DIR unless it is set: <dir>/<dataset>/
LOCAL_TENANT = "local"  # the tenant whose key `make run` prints (and keeps in .run/api-key)
READY_TIMEOUT = 60.0  # seconds for the worker and the API to come up together
API_STOP_TIMEOUT = 10.0
# Celery's warm shutdown lets the running task go on; past this it is killed and,
# with acks_late, redelivered to the next worker.
WORKER_STOP_TIMEOUT = 20.0
POLL = 0.5  # each poll is a line in the API access log

# The banner's first job: digits ships with scikit-learn (the `digits` extra), so it works
# on a fresh machine. Trained directly it reaches 96-98% test accuracy over seeds 0-5, in
# about 0.1 s of training (tests/scripts/test_run_local.py keeps it >= 95%).
FIRST_JOB = {"dataset": "digits", "hidden_sizes": [64], "activation": "relu",
             "learning_rate": 0.2, "batch_size": 32, "epochs": 20}
FIRST_JOB_RESULT = "about 97% test accuracy on 359 held-out digits, in under a second"


def say(*args: object, flush: bool = True) -> None:
    """print, but a closed stdout (`make run | tee` after Ctrl-C) must not stop the shutdown."""
    try:
        print(*args, flush=flush)
    except (BrokenPipeError, OSError):
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until exit


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


def started(child: Child) -> Child:
    command = child.command
    shown = ["python", *command[1:]] if command[0] == sys.executable else command
    say(f"started {child.name} (pid {child.pid}): {' '.join(shown)}")
    return child


def dead_child(children: list[Child]) -> str | None:
    for child in children:
        status = child.exit_status()
        if status is not None:
            return f"{child.name} exited unexpectedly ({status})"
    return None


def wait_until_ready(api: Api, children: list[Child], stop: StopRequest) -> str | None:
    """None once /readyz answers 200 (or a signal asks to stop), else why it never will."""
    begun = time.monotonic()
    last_said, last_print = "", 0.0
    while not stop.requested:
        problem = dead_child(children)
        if problem:
            return problem
        ready, said = api.readiness()
        if ready:
            return None
        waited = time.monotonic() - begun
        if waited > READY_TIMEOUT:
            return f"not ready after {READY_TIMEOUT:.0f} s: /readyz says {said}"
        if said != last_said or waited - last_print >= 5:
            say(f"waiting for /readyz ({waited:.0f} s): {said}")
            last_said, last_print = said, waited
        stop.event.wait(POLL)
    return None


def fashion_note(data_dir: str) -> str:
    try:
        from trainer import dataset_info

        if dataset_info("fashion-mnist", data_dir).available:
            return "Fashion-MNIST is available too (dataset \"fashion-mnist\")."
    except ImportError:
        pass
    return "Fashion-MNIST is not installed here: `make data` says how to get it."


def local_key(redis_url: str, key_file: Path) -> tuple[str, str]:
    """The API key of the tenant `local`: the one in `key_file` while Redis still knows it,
    else a new one (making the tenant if need be), written to `key_file` (mode 600).
    Returns (key, what happened, in words)."""
    from app.settings import Settings
    from app.store.tenants import TenantStore

    tenants = TenantStore.from_settings(Settings(redis_url=redis_url))
    try:
        if key_file.exists():
            kept = key_file.read_text().strip()
            principal = tenants.authenticate(kept)
            if principal is not None and principal.tenant.name == LOCAL_TENANT:
                return kept, f"the key in {key_file} (tenant {LOCAL_TENANT!r})"
        tenant = tenants.find_tenant(LOCAL_TENANT)
        if tenant is None:
            _, key, _ = tenants.create_tenant(LOCAL_TENANT)
            made = f"made the tenant {LOCAL_TENANT!r}; its key is in {key_file}"
        else:
            _, key = tenants.create_key(tenant.id)
            made = f"a new key for the tenant {LOCAL_TENANT!r}, written to {key_file}"
    finally:
        tenants.close()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
    key_file.chmod(0o600)  # also when the file was there before, with other modes
    return key, made


def banner(port: int, redis_note: str, data_dir: str, key: str, key_note: str) -> str:
    base = f"localhost:{port}"
    body = json.dumps(FIRST_JOB, separators=(",", ":"))
    auth = "-H \"Authorization: Bearer $DESCENT_API_KEY\""
    return f"""
==================================================================
Descent is ready at http://{HOST}:{port}  (API docs: /docs)
Redis: {redis_note}
API key: {key_note}

Every /v1 request carries the key; in another shell:
  export DESCENT_API_KEY={key}
Submit a first training job (a 64-unit ReLU network on scikit-learn's
8x8 digits; {FIRST_JOB_RESULT}):
  curl -s -X POST {base}/v1/jobs {auth} \\
    -H 'content-type: application/json' -d '{body}'
Poll it with the "id" from the answer:
  curl -s {base}/v1/jobs/<id> {auth}
  curl -s '{base}/v1/jobs/<id>/curve?since=0' {auth}
  curl -s {base}/v1/jobs/<id>/metrics {auth}
{fashion_note(data_dir)}
Press Ctrl-C to stop the API, the worker and Redis.
==================================================================
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--run-dir", type=Path, default=RUN_DIR,
        help="where the private Redis keeps its append-only file (default: .run/)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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

    server: RedisServer | None = None
    url = os.environ.get("REDIS_URL")
    if url:
        unreachable = check_redis(url)
        if unreachable:
            say(f"REDIS_URL={redacted(url)} does not answer: {unreachable}")
            return 1
        say(f"using REDIS_URL={redacted(url)}")
        redis_note = f"{redacted(url)} (from REDIS_URL)"
    else:
        redis_dir = args.run_dir / "redis"
        say(f"REDIS_URL is not set: starting a private redis-server (data in {redis_dir}/)")
        try:
            server = start_redis(aof_dir=redis_dir, log=args.run_dir / "redis.log")
        except StackError as exc:
            say(f"could not start Redis: {exc}")
            return 1
        url = server.url
        redis_note = f"{url} (private; jobs are kept in {redis_dir}/ across restarts)"

    data_dir = os.environ.get("DESCENT_DATA_DIR") or str(DATA_DIR)
    env = stack_env(url, DESCENT_DATA_DIR=data_dir)
    children: list[Child] = [server] if server else []
    problem: str | None = None
    try:
        if not stop.requested:
            children.append(started(start_worker(env)))
            api = start_api(env, port=port)
            children.append(started(api))
            problem = wait_until_ready(api, children, stop)
            if problem is None and not stop.requested:
                key, key_note = local_key(url, args.run_dir / "api-key")
                say(banner(port, redis_note, data_dir, key, key_note))
                while not stop.requested:
                    problem = dead_child(children)
                    if problem:
                        break
                    stop.event.wait(POLL)
    finally:
        if stop.requested:
            say(f"\n{stop.signals[0]}: stopping everything (again to kill at once)")
        elif problem:
            say(f"\n{problem}: stopping the rest")
        # The API first, so that nothing new comes in; Redis last.
        for child in reversed(children):
            timeout = WORKER_STOP_TIMEOUT if child.name.startswith("worker") else API_STOP_TIMEOUT
            if child.running():
                say(f"stopping {child.name} (pid {child.pid}, waiting up to {timeout:.0f} s)")
            if not child.stop(timeout, forced=lambda: stop.forced):
                say(f"{child.name} did not stop in time: killed it")
    say("stopped" if problem is None else "stopped after an error")
    return 0 if problem is None else 1


if __name__ == "__main__":
    sys.exit(main())
