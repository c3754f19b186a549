"""FeedReader: the API's asyncio reads for the event stream (app.api.events): a tenant's
job, and what changed in a job since a given point."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis as AsyncRedis

from app.store import lua
from app.store.curve import BYTES_PER_POINT
from app.store.keys import KeyLayout, is_job_id
from app.store.records import text, visible_job


@dataclass(frozen=True)
class Update:
    """A job's state and the losses after a byte offset, as FEED_READ found them."""

    status: str
    progress: dict[str, Any]
    warnings: list[str]
    error: dict[str, Any] | None
    total: int  # iterations recorded so far
    losses: bytes  # float32 bytes from the asked offset on
    rows: list[dict[str, Any]]  # epoch rows from the asked epoch on, in order


class FeedReader:
    """Reads on the API's asyncio Redis client (no worker thread per follower)."""

    def __init__(self, client: AsyncRedis, prefix: str) -> None:
        self.keys = KeyLayout(prefix)
        self._client = client
        self._feed_read = client.register_script(lua.FEED_READ)

    async def job(self, job_id: str, tenant: str) -> dict[str, Any] | None:
        """The public Job, or None when unknown or another tenant's."""
        if not is_job_id(job_id):
            return None
        return visible_job(await self._client.hgetall(self.keys.job(job_id).job), tenant)

    async def update(self, job_id: str, total: int, first_epoch: int) -> Update | None:
        """The job now, with the losses after iteration `total` and the epoch rows from
        `first_epoch` on; None when the job is gone."""
        found = await self._feed_read(
            keys=list(self.keys.curve_keys(job_id)),
            args=[total * BYTES_PER_POINT, first_epoch],
        )
        if not found:
            return None
        status, progress, warnings, error, length, losses, rows = found
        return Update(
            status=text(status),
            progress=json.loads(progress) if progress else {},
            warnings=json.loads(warnings) if warnings else [],
            error=json.loads(error) if error else None,
            total=int(length) // BYTES_PER_POINT,
            losses=bytes(losses),
            rows=[json.loads(row) for row in rows],
        )
