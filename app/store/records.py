"""Job records: the job store's errors and the job hash <-> public Job encoding."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from app.store.curve import json_safe
from app.store.keys import TERMINAL_STATUSES


class StoreError(Exception):
    """Base class of the job store's domain errors."""


class JobNotFound(StoreError, LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")
        self.job_id = job_id


class JobAlreadyFinished(StoreError):
    def __init__(self, status: str, job_id: str | None = None) -> None:
        super().__init__(f"job {job_id!r} already finished with status {status!r}")
        self.status = status
        self.job_id = job_id


class QuotaExceeded(StoreError):
    """A tenant's quota refused a submission; retry_after: seconds until it may not."""

    def __init__(self, quota: str, limit: int, count: int, retry_after: int) -> None:
        super().__init__(f"quota {quota} is {limit}; the tenant has {count}")
        self.quota = quota
        self.limit = limit
        self.count = count
        self.retry_after = retry_after

    @classmethod
    def refusal(cls, found: Sequence[Any]) -> QuotaExceeded:
        """From a Lua script's refusal {quota, limit, count, retry_after} (lua._RATE's and
        the submit's, after their -1)."""
        quota, limit, count, retry_after = found
        return cls(text(quota), int(limit), int(count), int(retry_after))


class DatasetGone(StoreError):
    """The upload a job was to train on was deleted meanwhile."""

    def __init__(self, dataset: object) -> None:
        super().__init__(f"dataset {dataset!r} was deleted")
        self.dataset = dataset


class IdempotencyConflict(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used with a different request")
        self.key = key


class LeaseLost(StoreError):
    def __init__(self, job_id: str, token: str) -> None:
        super().__init__(f"job {job_id!r}: the lease is not held by token {token!r}")
        self.job_id = job_id
        self.token = token


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with a 'Z', to the millisecond."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    """The inverse of `iso`."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def dumps(value: Any) -> str:
    """Compact strict JSON; non-finite floats (a diverged loss) become null."""
    return json.dumps(json_safe(value), separators=(",", ":"), allow_nan=False)


def fingerprint(spec: Mapping[str, Any], name: str | None) -> str:
    """sha256 of the canonical JSON of spec and name: what an Idempotency-Key pins down."""
    canonical = json.dumps(
        json_safe({"name": name, "spec": spec}), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def initial_progress(spec: Mapping[str, Any], iterations: int | None = None) -> dict[str, Any]:
    epochs = spec.get("epochs")
    return {
        "epoch": 0,
        "epochs": epochs if isinstance(epochs, int) else None,
        "iteration": 0,
        "iterations": iterations,
        "fraction": 0.0,
        "eta_seconds": None,
    }


def new_job_fields(
    job_id: str, spec: Mapping[str, Any], name: str | None, now: str, iterations: int | None
) -> dict[str, str]:
    """The hash of a freshly queued job (the store adds `seq`)."""
    fields = {
        "id": job_id,
        "status": "queued",
        "spec": dumps(spec),
        "created_at": now,
        "queued_at": now,
        "started_at": "",
        "finished_at": "",
        "heartbeat_at": "",
        "progress": dumps(initial_progress(spec, iterations)),
        "cancel_requested": "0",
        "attempts": "0",
        "warnings": "[]",
        "error": "",
    }
    if name is not None:
        fields["name"] = name
    return fields


def job_document(fields: Mapping[str, str]) -> dict[str, Any]:
    """The public Job (DESIGN.md) from the decoded fields of a job hash."""
    spec = json.loads(fields["spec"])
    stored = json.loads(fields.get("progress") or "{}")
    progress = {key: stored.get(key, value) for key, value in initial_progress(spec).items()}
    if fields["status"] in TERMINAL_STATUSES:
        progress["eta_seconds"] = None
    error = fields.get("error") or ""
    return {
        "id": fields["id"],
        "name": fields.get("name"),
        "status": fields["status"],
        "spec": spec,
        "created_at": fields.get("created_at") or None,
        "started_at": fields.get("started_at") or None,
        "finished_at": fields.get("finished_at") or None,
        "progress": progress,
        "cancel_requested": fields.get("cancel_requested") == "1",
        "attempts": int(fields.get("attempts") or 0),
        "warnings": json.loads(fields.get("warnings") or "[]"),
        "error": json.loads(error) if error else None,
        "sweep_id": fields.get("sweep_id"),
        "trial": int(fields["trial"]) if fields.get("trial") else None,
    }


def visible_job(raw: Mapping[Any, Any], tenant: str | None) -> dict[str, Any] | None:
    """The public Job from a job hash as Redis returned it; None when there is none or,
    given `tenant`, it is another tenant's: to a tenant, those are the same."""
    fields = decode_hash(raw)
    if not fields or (tenant is not None and fields.get("tenant") != tenant):
        return None
    return job_document(fields)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode_hash(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {text(key): text(value) for key, value in raw.items()}


def parse_cursor(cursor: str) -> int:
    if not isinstance(cursor, str) or not cursor.isdecimal() or int(cursor) < 1:
        raise ValueError(f"cursor must be the next_cursor of an earlier page, got {cursor!r}")
    return int(cursor)


def millis(seconds: float) -> int:
    if seconds <= 0:
        raise ValueError(f"ttl_seconds must be > 0, got {seconds}")
    return max(1, round(seconds * 1000))


def check_token(token: str) -> str:
    if not isinstance(token, str) or not token:
        raise ValueError(f"token must be a non-empty string, got {token!r}")
    return token
