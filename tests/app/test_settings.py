"""Settings come from REDIS_URL and DESCENT_* variables and refuse inconsistent limits."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Settings, get_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No REDIS_URL or DESCENT_* from the machine leaks into these tests."""
    for name in list(os.environ):
        if name.upper() == "REDIS_URL" or name.upper().startswith("DESCENT_"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_defaults_are_consistent() -> None:
    settings = Settings()

    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.key_prefix == "descent"
    assert settings.data_dir is None
    assert settings.visibility_timeout > settings.task_time_limit > settings.task_soft_time_limit
    assert settings.heartbeat_seconds < settings.lease_seconds
    assert settings.max_body_bytes == 1_000_000
    assert settings.max_inline_seconds == 10


def test_redis_url_is_read_from_REDIS_URL_without_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6380/2")

    assert Settings().redis_url == "redis://cache:6380/2"


def test_REDIS_URL_wins_over_a_prefixed_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESCENT_REDIS_URL", "redis://elsewhere:1/0")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6380/2")

    assert Settings().redis_url == "redis://cache:6380/2"


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("DESCENT_KEY_PREFIX", "staging", "key_prefix", "staging"),
        ("DESCENT_DATA_DIR", "/srv/data", "data_dir", "/srv/data"),
        ("DESCENT_MAX_BODY_BYTES", "2000", "max_body_bytes", 2000),
        ("DESCENT_MAX_JOB_SECONDS", "60.5", "max_job_seconds", 60.5),
        ("DESCENT_MAX_INLINE_SECONDS", "2.5", "max_inline_seconds", 2.5),
        ("DESCENT_MAX_ITERATIONS", "1000", "max_iterations", 1000),
        ("DESCENT_MAX_CHECKPOINT_BYTES", "0", "max_checkpoint_bytes", 0),
        ("DESCENT_MAX_WEIGHTS_BYTES", "4096", "max_weights_bytes", 4096),
        ("DESCENT_JOB_TTL_SECONDS", "3600", "job_ttl_seconds", 3600),
        ("DESCENT_IDEMPOTENCY_TTL_SECONDS", "60", "idempotency_ttl_seconds", 60),
        ("DESCENT_MAX_ATTEMPTS", "5", "max_attempts", 5),
        ("DESCENT_LEASE_SECONDS", "30", "lease_seconds", 30.0),
        ("DESCENT_HEARTBEAT_SECONDS", "1", "heartbeat_seconds", 1.0),
        ("DESCENT_PROGRESS_FLUSH_SECONDS", "0.5", "progress_flush_seconds", 0.5),
        ("DESCENT_PROGRESS_FLUSH_ITERATIONS", "100", "progress_flush_iterations", 100),
        ("DESCENT_REAPER_INTERVAL_SECONDS", "5", "reaper_interval_seconds", 5.0),
        ("DESCENT_WORKER_CONCURRENCY", "4", "worker_concurrency", 4),
        ("DESCENT_QUOTA_MAX_ACTIVE_JOBS", "7", "quota_max_active_jobs", 7),
        ("DESCENT_QUOTA_MAX_RUNNING_JOBS", "3", "quota_max_running_jobs", 3),
        ("DESCENT_QUOTA_SUBMISSIONS_PER_MINUTE", "0", "quota_submissions_per_minute", 0),
        ("DESCENT_QUOTA_MAX_DATASET_BYTES", "1024", "quota_max_dataset_bytes", 1024),
        ("DESCENT_QUOTA_MAX_SWEEP_TRIALS", "8", "quota_max_sweep_trials", 8),
        ("descent_max_body_bytes", "1234", "max_body_bytes", 1234),
    ],
)
def test_limits_are_read_from_DESCENT_variables(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)

    assert getattr(Settings(), field) == expected


def test_time_limits_are_read_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESCENT_TASK_SOFT_TIME_LIMIT", "100")
    monkeypatch.setenv("DESCENT_TASK_TIME_LIMIT", "110")
    monkeypatch.setenv("DESCENT_VISIBILITY_TIMEOUT", "120")

    settings = Settings()

    assert (settings.task_soft_time_limit, settings.task_time_limit,
            settings.visibility_timeout) == (100, 110, 120)


def test_keyword_arguments_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://from-env:6379/0")
    monkeypatch.setenv("DESCENT_KEY_PREFIX", "from-env")

    settings = Settings(redis_url="redis://given:6379/0", key_prefix="given")

    assert (settings.redis_url, settings.key_prefix) == ("redis://given:6379/0", "given")


def test_the_admin_token_is_a_secret_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().admin_token is None
    monkeypatch.setenv("DESCENT_ADMIN_TOKEN", "")
    assert Settings().admin_token is None  # compose passes an unset one as empty
    monkeypatch.setenv("DESCENT_ADMIN_TOKEN", "s3cret-s3cret-s3cret")
    settings = Settings()

    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "s3cret-s3cret-s3cret"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())


def test_unknown_DESCENT_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESCENT_NO_SUCH_SETTING", "1")

    assert not hasattr(Settings(), "no_such_setting")


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"DESCENT_VISIBILITY_TIMEOUT": "3660"}, "visibility_timeout"),
        ({"DESCENT_VISIBILITY_TIMEOUT": "100"}, "visibility_timeout"),
        ({"DESCENT_TASK_SOFT_TIME_LIMIT": "3660"}, "task_soft_time_limit"),
        ({"DESCENT_TASK_TIME_LIMIT": "3000"}, "task_soft_time_limit"),
        ({"DESCENT_HEARTBEAT_SECONDS": "15"}, "heartbeat_seconds"),
        ({"DESCENT_LEASE_SECONDS": "1"}, "heartbeat_seconds"),
        ({"DESCENT_MAX_BODY_BYTES": "0"}, "max_body_bytes"),
        ({"DESCENT_MAX_BODY_BYTES": "lots"}, "max_body_bytes"),
        ({"DESCENT_MAX_JOB_SECONDS": "-1"}, "max_job_seconds"),
        ({"DESCENT_MAX_INLINE_SECONDS": "0"}, "max_inline_seconds"),
        ({"DESCENT_MAX_ATTEMPTS": "0"}, "max_attempts"),
        ({"DESCENT_JOB_TTL_SECONDS": "0"}, "job_ttl_seconds"),
        ({"DESCENT_KEY_PREFIX": ""}, "key_prefix"),
        ({"DESCENT_ADMIN_TOKEN": "short"}, "admin_token"),
        ({"DESCENT_QUOTA_MAX_RUNNING_JOBS": "0"}, "quota_max_running_jobs"),
        ({"REDIS_URL": ""}, "REDIS_URL"),
    ],
)
def test_inconsistent_or_invalid_settings_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    for variable, value in variables.items():
        monkeypatch.setenv(variable, value)

    with pytest.raises(ValidationError) as caught:
        Settings()

    assert named in str(caught.value)


def test_visibility_timeout_must_exceed_the_hard_time_limit() -> None:
    with pytest.raises(ValidationError, match="visibility_timeout must be > task_time_limit"):
        Settings(task_time_limit=100, task_soft_time_limit=90, visibility_timeout=100)

    assert Settings(task_time_limit=100, task_soft_time_limit=90,
                    visibility_timeout=100.5).visibility_timeout == 100.5


def test_settings_are_frozen() -> None:
    settings = Settings()

    with pytest.raises(ValidationError):
        settings.max_body_bytes = 1  # type: ignore[misc]


def test_get_settings_reads_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESCENT_KEY_PREFIX", "first")
    first = get_settings()
    monkeypatch.setenv("DESCENT_KEY_PREFIX", "second")

    assert get_settings() is first
    assert first.key_prefix == "first"


def test_a_dead_workers_job_is_requeued_and_readiness_drops_within_seconds_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("DESCENT_LEASE_SECONDS", "DESCENT_HEARTBEAT_SECONDS",
                 "DESCENT_REAPER_INTERVAL_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()

    # The lease lapses, then the next reaper pass (on any live worker) re-queues the job:
    # under 10 s from the kill, leaving a new worker a few seconds to start it.
    worst_requeue = settings.lease_seconds + settings.reaper_interval_seconds
    assert worst_requeue <= 7
    # /readyz counts workers heard from within 3 heartbeats.
    assert 3 * settings.heartbeat_seconds <= 3
    assert settings.heartbeat_seconds * 3 < settings.lease_seconds + 1


def test_the_memory_limit_defaults_to_a_quarter_of_the_container_or_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.settings as settings_module

    limit = tmp_path / "memory.max"
    monkeypatch.setattr(settings_module, "CGROUP_MEMORY_LIMITS", (limit,))
    limit.write_text("1073741824\n")  # a container allowed 1 GiB
    assert settings_module.default_job_memory() == 2**28
    limit.write_text("max\n")  # no limit: the machine's memory decides
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert settings_module.default_job_memory() == machine // 4
