"""scripts.stack: the one harness that starts Redis, workers and the API."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis

from scripts.stack import ROOT, Child, StackError, start_redis, wait_for
from tests.scripts.processes import gone

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux: /proc")


def test_a_redis_with_an_aof_dir_keeps_its_keys_across_a_restart(tmp_path: Path) -> None:
    aof = tmp_path / "redis"
    server = start_redis(aof_dir=aof, log=tmp_path / "redis.log")
    try:
        client = redis.Redis.from_url(server.url)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        client.set("job", "kept")
        client.close()
    finally:
        server.stop()
    again = start_redis(aof_dir=aof, log=tmp_path / "redis.log")
    try:
        assert redis.Redis.from_url(again.url).get("job") == b"kept"
    finally:
        again.stop()


def test_a_redis_without_an_aof_dir_keeps_nothing(tmp_path: Path) -> None:
    server = start_redis(log=tmp_path / "redis.log")
    try:
        client = redis.Redis.from_url(server.url)
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        directory = Path(str(client.config_get("dir")["dir"]))
        client.close()
        assert directory.is_dir()
    finally:
        server.stop()
    assert not directory.exists()


def test_two_redis_servers_never_share_an_aof_dir(tmp_path: Path) -> None:
    first = start_redis(aof_dir=tmp_path / "redis")
    try:
        with pytest.raises(StackError, match="another redis-server"):
            start_redis(aof_dir=tmp_path / "redis")
    finally:
        first.stop()
    start_redis(aof_dir=tmp_path / "redis").stop()  # free again once the first is gone


def test_stop_kills_what_is_left_of_the_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    # The shell leaves a background child behind when SIGTERM ends it.
    child = Child("sh", ["sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait"])

    def written() -> str | None:
        return pid_file.read_text().strip() if pid_file.exists() else None

    straggler = int(wait_for(written, 30, "the background sleep"))
    assert child.stop(timeout=10)
    wait_for(lambda: gone(straggler), 30, "the background sleep to be killed")


def test_waiting_on_a_process_that_exited_fails_at_once_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    child = Child("false", ["sh", "-c", "echo it went wrong; exit 3"], log=log)
    with pytest.raises(StackError, match=r"false exited \(exit code 3\)[\s\S]*it went wrong"):
        wait_for(lambda: None, 600, "something that never comes", watch=[child])
    child.stop()


LAUNCHER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from scripts.stack import Child, start_redis
    log = Path(sys.argv[1])
    server = start_redis(log=log)
    sleeper = Child("sleep", ["sleep", "300"], log=log)
    print(server.pid, server.port, sleeper.pid, flush=True)
    time.sleep(300)
""")


def test_children_do_not_outlive_a_launcher_that_is_killed(tmp_path: Path) -> None:
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(tmp_path / "children.log")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert launcher.stdout is not None
        redis_pid, redis_port, sleeper_pid = map(int, launcher.stdout.readline().split())
        assert not gone(redis_pid) and not gone(sleeper_pid)
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        wait_for(lambda: gone(redis_pid) and gone(sleeper_pid), 30,
                 "redis-server and sleep to die with their launcher")
        client = redis.Redis(port=redis_port, socket_connect_timeout=1)
        with pytest.raises(redis.ConnectionError):
            client.ping()
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
