"""`make run`'s launcher, scripts/run_local.py, run as a real process."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.run_local import FIRST_JOB
from scripts.stack import ROOT, accepts_connections, free_port, wait_for
from tests.scripts.processes import command_line, descendants, gone
from trainer import TrainConfig, load_dataset, train

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux: /proc")

LAUNCHER = ROOT / "scripts" / "run_local.py"
# Runs far longer than the test: the launcher dies while the worker is busy with it.
LONG_JOB = {**FIRST_JOB, "hidden_sizes": [512, 512], "batch_size": 8, "epochs": 200}


class Launcher:
    """scripts/run_local.py in a subprocess, its output in a file."""

    def __init__(self, run_dir: Path, output: Path) -> None:
        self.port = free_port()
        self.output = output
        self.key_file = run_dir / "api-key"
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env["DESCENT_PORT"] = str(self.port)
        with output.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(LAUNCHER), "--run-dir", str(run_dir)],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"content-type": "application/json",
                     "Authorization": f"Bearer {self.key_file.read_text().strip()}"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            return json.load(response)

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the launcher exited ({self.process.returncode}):\n"
                                 + self.output.read_text())
        # Ready once the banner is out: it comes after /readyz, with the key.
        return "Descent is ready" in self.output.read_text()

    def wait_ready(self) -> None:
        # A worker takes a few seconds to come up; the launcher's own limit is 60 s.
        wait_for(self.ready, 90, "the launcher's banner")

    def job_status(self, job_id: str) -> str:
        status: str = self.request("GET", f"/v1/jobs/{job_id}")["status"]
        return status

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=60)


@pytest.fixture
def launchers(tmp_path: Path) -> Iterator[list[Launcher]]:
    started: list[Launcher] = []
    yield started
    for launcher in started:
        if launcher.process.poll() is None:
            launcher.process.kill()
            launcher.process.wait()


def test_the_banner_s_first_job_learns_the_digits() -> None:
    spec = {k: v for k, v in FIRST_JOB.items() if k != "dataset"}
    result = train(TrainConfig.from_dict(spec), load_dataset(str(FIRST_JOB["dataset"])))
    assert result.metrics["test"]["accuracy"] >= 0.95


def test_a_hard_killed_launcher_leaves_no_redis_worker_or_api_behind(
    tmp_path: Path, launchers: list[Launcher]
) -> None:
    launcher = Launcher(tmp_path / "run", tmp_path / "launcher.log")
    launchers.append(launcher)
    launcher.wait_ready()
    job_id = launcher.request("POST", "/v1/jobs", LONG_JOB)["id"]
    wait_for(lambda: launcher.job_status(job_id) == "running", 60, "the job to run")
    processes = descendants(launcher.process.pid)  # redis, worker and its pool, the API
    commands = {pid: " ".join(command_line(pid)) for pid in processes}
    (redis_pid,) = [pid for pid, command in commands.items() if "redis-server" in command]
    # redis-server retitles itself "redis-server 127.0.0.1:PORT".
    found = re.search(r"127\.0\.0\.1:(\d+)", commands[redis_pid])
    assert found, commands[redis_pid]
    redis_port = int(found.group(1))
    assert any("celery" in command for command in commands.values())
    assert any("uvicorn" in command for command in commands.values())

    launcher.process.send_signal(signal.SIGKILL)
    launcher.process.wait()

    wait_for(lambda: not accepts_connections(redis_port), 30, "the private Redis to go")
    wait_for(lambda: all(gone(pid) for pid in processes), 30,
             f"every process the launcher started to go: {commands}")


def banner_commands(output: str) -> tuple[str, str]:
    """The banner's export line and its first curl command (joined across its '\\')."""
    export = next(line.strip() for line in output.splitlines()
                  if line.strip().startswith("export DESCENT_API_KEY="))
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if "curl -s -X POST" in line)
    command = lines[start].strip()
    while command.endswith("\\"):
        start += 1
        command = command[:-1] + " " + lines[start].strip()
    return export, command


def test_restarting_the_launcher_keeps_every_job_and_the_key(
    tmp_path: Path, launchers: list[Launcher]
) -> None:
    first = Launcher(tmp_path / "run", tmp_path / "first.log")
    launchers.append(first)
    first.wait_ready()
    key = first.key_file.read_text().strip()
    assert key.startswith("dsk_")
    assert first.key_file.stat().st_mode & 0o777 == 0o600
    # The banner's lines, pasted into a shell as they are, submit the first job.
    export, curl = banner_commands(first.output.read_text())
    assert export == f"export DESCENT_API_KEY={key}"
    pasted = subprocess.run(
        ["bash", "-c", f"{export}\n{curl}"], capture_output=True, text=True, timeout=30,
        env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
    )
    job_id = json.loads(pasted.stdout)["id"]
    wait_for(lambda: first.job_status(job_id) == "succeeded", 60, "the job to succeed")
    first.stop()
    assert first.process.returncode == 0, first.output.read_text()

    second = Launcher(tmp_path / "run", tmp_path / "second.log")
    launchers.append(second)
    second.wait_ready()
    assert second.key_file.read_text().strip() == key  # the same tenant, the same key
    assert second.job_status(job_id) == "succeeded"
    metrics = second.request("GET", f"/v1/jobs/{job_id}/metrics")
    assert metrics["test"]["accuracy"] >= 0.95
    second.stop()
    assert second.process.returncode == 0, second.output.read_text()


def test_a_port_in_use_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "DESCENT_PORT": str(port)}
        env.pop("REDIS_URL", None)
        result = subprocess.run(
            [sys.executable, str(LAUNCHER), "--run-dir", str(tmp_path / "run")],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in result.stdout
    assert not (tmp_path / "run").exists()  # nothing was started
