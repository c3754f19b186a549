"""SweepStore: sweeps in Redis. A sweep's trials are jobs of its tenant, made a few at a
time (at most `max_concurrent` unfinished) and dispatched through the fair queue like any
job; when every trial has ended, the winner's test set is evaluated once, by a worker.

`advance` is the one place a sweep moves: it makes the next trials, cancels them when the
sweep is cancelled, and at the end picks the winner and sends its test evaluation. It runs
under the sweep's lock (one process at a time) and can be called any number of times: by
the worker whose trial ended, by the API after a cancel, and by the reaper for every
active sweep (the safety net for a process that died in between).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Self

import redis

from app.settings import DEFAULT_MAX_ACTIVE_JOBS, Settings
from app.store import lua
from app.store.jobs import UNLIMITED, JobStore
from app.store.keys import SWEEP_TERMINAL, TERMINAL_STATUSES, is_job_id
from app.store.queue import DELIVERY_TAG, EVALUATE_TASK
from app.store.records import (
    JobAlreadyFinished,
    JobNotFound,
    QuotaExceeded,
    StoreError,
    decode_hash,
    dumps,
    parse_cursor,
    text,
)
from app.store.tenants import QUOTA_FIELD
from app.sweeps import chosen_epoch, dispatch_order, median_verdict, objective_at, rank_key

logger = logging.getLogger(__name__)

LOCK_MS = 30_000  # a lock's life: far longer than an advance takes
MAX_EVALUATIONS = 5  # sends of a winner's test evaluation before the sweep fails
LOCK_WAIT = 15.0  # seconds a caller waits for the lock before leaving it to the holder
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SweepNotFound(StoreError, LookupError):
    def __init__(self, sweep_id: str) -> None:
        super().__init__(f"sweep {sweep_id!r} not found")
        self.sweep_id = sweep_id


class SweepAlreadyEnded(StoreError):
    def __init__(self, sweep_id: str, status: str) -> None:
        super().__init__(f"sweep {sweep_id!r} already ended: {status}")
        self.status = status


@dataclass(frozen=True)
class Trial:
    """What a sweep plans for one trial: its params, its whole job spec, its iterations."""

    params: dict[str, Any]
    spec: dict[str, Any]
    iterations: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params, "spec": self.spec, "iterations": self.iterations}


class SweepStore(JobStore):
    """Sweeps: create, read, list, cancel, advance, and the winner's test result."""

    # The tenants' max_active_jobs unless the operator set one (settings.quota_max_active_
    # jobs): trials count as the tenant's jobs; the sweep's own submission is one request.
    max_active_default: int = DEFAULT_MAX_ACTIVE_JOBS

    def _register(self) -> None:
        super()._register()
        self._release = self._script(RELEASE)
        self._create_sweep = self._script(lua.CREATE_SWEEP)

    @classmethod
    def from_settings(cls, settings: Settings, client: redis.Redis | None = None) -> Self:
        store = super().from_settings(settings, client)
        store.max_active_default = settings.quota_max_active_jobs
        return store

    # --- creating and reading -------------------------------------------------------------

    def create_sweep(
        self, spec: dict[str, Any], trials: list[Trial], *, tenant: str, name: str | None,
        quotas: Mapping[str, int | float] | None = None,
    ) -> dict[str, Any]:
        """Store a sweep of `tenant` (spec: the sweep as validated) and make its first
        trials. The sweep counts as one of the tenant's submissions: over its
        submissions_per_minute (in `quotas`) it raises QuotaExceeded."""
        if not trials:
            raise ValueError("a sweep needs at least one trial")
        sweep_id = uuid.uuid4().hex
        now = self._now()
        fields = {
            "id": sweep_id, "tenant": tenant, "name": name or "", "status": "queued",
            "spec": dumps(spec), "trials": dumps([t.to_dict() for t in trials]),
            "created_at": now, "finished_at": "", "cancel_requested": "0",
            "winner": "", "test": "", "error": "", "evaluation": "", "evaluation_sent_at": "",
        }
        per_minute = (quotas or {}).get("submissions_per_minute", UNLIMITED)
        created = self._create_sweep(
            keys=[self.keys.sweep(sweep_id), self.keys.tenant_sweeps(tenant),
                  self.keys.active_sweeps, self.keys.tenant_submissions(tenant),
                  self.keys.seq],  # the seq: a unique score, for the list's cursor
            args=[sweep_id, per_minute, *(item for pair in fields.items() for item in pair)])
        if created[0] == -1:
            raise QuotaExceeded.refusal(created[1:])
        logger.info("sweep %s created for tenant %s: %d trials", sweep_id, tenant, len(trials))
        self.advance(sweep_id)
        found = self.get_sweep(sweep_id, tenant=tenant)
        assert found is not None
        return found

    def _fields(self, sweep_id: str, tenant: str | None) -> dict[str, str] | None:
        if not is_job_id(sweep_id):  # the same shape: uuid4 hex
            return None
        fields = decode_hash(self._redis.hgetall(self.keys.sweep(sweep_id)))
        if not fields or (tenant is not None and fields.get("tenant") != tenant):
            return None
        return fields

    def get_sweep(self, sweep_id: str, *, tenant: str | None) -> dict[str, Any] | None:
        """The public sweep with its leaderboard; None when unknown or another tenant's."""
        found = self.get_sweep_and_rows(sweep_id, tenant=tenant)
        return found[0] if found else None

    def get_sweep_and_rows(
        self, sweep_id: str, *, tenant: str | None
    ) -> tuple[dict[str, Any], dict[int, dict[int, dict[str, Any]]]] | None:
        """The sweep, and each made trial's epoch rows (trial -> epoch -> row) from the same
        read: what its curves and its picture draw."""
        fields = self._fields(sweep_id, tenant)
        if fields is None:
            return None
        views, rows = self._trial_views(fields)
        return self._document(fields, views), rows

    def list_sweeps(
        self, *, tenant: str, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The tenant's sweeps newest first, without their leaderboards; next_cursor."""
        index = self.keys.tenant_sweeps(tenant)
        upper = "+inf" if cursor is None else f"({parse_cursor(cursor)}"
        batch = self._redis.zrange(index, upper, "-inf", desc=True, byscore=True, offset=0,
                                   num=limit + 1, withscores=True)
        pipe = self._redis.pipeline(transaction=False)
        for member, _ in batch[:limit]:
            pipe.hgetall(self.keys.sweep(text(member)))
        items, gone = [], []
        for (member, _), raw in zip(batch[:limit], pipe.execute(), strict=True):
            fields = decode_hash(raw)
            if fields:
                items.append(self._document(fields, None))
            else:
                gone.append(member)
        if gone:
            self._redis.zrem(index, *gone)
        next_cursor = str(int(batch[limit - 1][1])) if len(batch) > limit else None
        return items, next_cursor

    def _trial_jobs(self, sweep_id: str) -> dict[int, str]:
        raw = self._redis.hgetall(self.keys.sweep_jobs(sweep_id))
        return dict(sorted((int(k), text(v)) for k, v in raw.items()))

    def _trial_views(
        self, fields: Mapping[str, str]
    ) -> tuple[list[dict[str, Any]], dict[int, dict[int, dict[str, Any]]]]:
        """One leaderboard row per planned trial, in trial order (unranked), and the made
        trials' epoch rows."""
        objective = json.loads(fields["spec"])["objective"]
        planned = json.loads(fields["trials"])
        jobs = self._trial_jobs(fields["id"])
        pipe = self._redis.pipeline(transaction=False)
        for job_id in jobs.values():
            keys = self.keys.job(job_id)
            pipe.hgetall(keys.job)
            pipe.hgetall(keys.epochs)
            pipe.get(keys.metrics)
        answers = pipe.execute()
        found = {trial: answers[3 * i : 3 * i + 3] for i, trial in enumerate(jobs)}
        views, rows = [], {}
        for trial, plan in enumerate(planned):
            view: dict[str, Any] = {
                "trial": trial, "job_id": jobs.get(trial), "params": plan["params"],
                "status": "queued", "best_epoch": None, "objective_value": None,
                "epochs_run": 0, "error": None, "warnings": [],
            }
            if trial in found:
                job, epochs, metrics = found[trial]
                rows[trial] = _rows(epochs)
                state = _trial_state(decode_hash(job), rows[trial], metrics, objective)
                view.update(state or {"job_id": None})  # claimed, not made: waits its turn
            views.append(view)
        return views, rows

    def _document(
        self, fields: Mapping[str, str], views: list[dict[str, Any]] | None
    ) -> dict[str, Any]:
        spec = json.loads(fields["spec"])
        planned = json.loads(fields["trials"])
        status = fields["status"]
        started = None
        counts = {s: 0 for s in ("queued", "running", "succeeded", "failed", "cancelled",
                                 "pruned")}
        if views is not None:
            for view in views:
                counts[view["status"]] += 1
            begun = [v["started_at"] for v in views if v.get("started_at")]
            started = min(begun) if begun else None
            if status == "queued" and (begun or counts["queued"] < len(views)):
                status = "running"
            views = sorted(views, key=lambda v: rank_key(spec["objective"],
                                                          v["objective_value"], v["trial"]))
            for view in views:
                view.pop("started_at", None)
        return {
            "id": fields["id"],
            "name": fields.get("name") or None,
            "status": status,
            "spec": spec,
            "objective": spec["objective"],
            "method": spec["method"],
            "trial_count": len(planned),
            "counts": counts if views is not None else None,
            "trials": views,
            "winner": json.loads(fields["winner"]) if fields.get("winner") else None,
            "test": json.loads(fields["test"]) if fields.get("test") else None,
            "error": json.loads(fields["error"]) if fields.get("error") else None,
            "cancel_requested": fields.get("cancel_requested") == "1",
            "estimated_seconds": spec.get("estimated_seconds"),
            "created_at": fields.get("created_at") or None,
            "started_at": started,
            "finished_at": fields.get("finished_at") or None,
        }

    # --- cancelling -----------------------------------------------------------------------

    def request_cancel_sweep(self, sweep_id: str, *, tenant: str) -> dict[str, Any]:
        """Cancel the trials that have not ended; the sweep ends `cancelled` once they
        have (a queued trial at once, a running one within a mini-batch)."""
        fields = self._fields(sweep_id, tenant)
        if fields is None:
            raise SweepNotFound(sweep_id)
        if fields["status"] in SWEEP_TERMINAL:
            raise SweepAlreadyEnded(sweep_id, fields["status"])
        if fields["evaluation"]:  # every trial has ended: only the winner's test is left
            raise SweepAlreadyEnded(sweep_id, "its trials (the winner's test set is being "
                                    "evaluated)")
        self._redis.hset(self.keys.sweep(sweep_id), "cancel_requested", "1")
        self.advance(sweep_id)
        found = self.get_sweep(sweep_id, tenant=tenant)
        if found is None:
            raise SweepNotFound(sweep_id)
        return found

    # --- advancing ------------------------------------------------------------------------

    @contextmanager
    def _locked(self, sweep_id: str) -> Iterator[bool]:
        """Hold the sweep's lock (waiting up to LOCK_WAIT); yields False if it stayed
        taken (its holder is advancing the sweep and will see what this caller saw)."""
        key, token = self.keys.sweep_lock(sweep_id), uuid.uuid4().hex
        deadline = time.monotonic() + LOCK_WAIT
        held = False
        while not (held := bool(self._redis.set(key, token, nx=True, px=LOCK_MS))):
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        try:
            yield held
        finally:
            if held:
                self._release(keys=[key], args=[token])

    def advance(self, sweep_id: str, *, resend_after: float | None = None) -> str | None:
        """Move the sweep on (see the module's docstring); its status afterwards, or None
        when it is unknown. `resend_after`: seconds after which a test evaluation that has
        not reported back is sent again (the reaper's safety net)."""
        with self._locked(sweep_id) as held:
            if not held:
                logger.warning("sweep %s: lock still taken; leaving it to its holder", sweep_id)
                return None
            fields = self._fields(sweep_id, None)
            if fields is None:
                self._redis.srem(self.keys.active_sweeps, sweep_id)
                return None
            if fields["status"] in SWEEP_TERMINAL:
                self._redis.srem(self.keys.active_sweeps, sweep_id)
                return fields["status"]
            if fields["evaluation"] == "sent":
                self._maybe_resend(fields, resend_after)
                return fields["status"]
            return self._advance(fields)

    def _advance(self, fields: dict[str, str]) -> str:
        sweep_id, tenant = fields["id"], fields["tenant"]
        spec = json.loads(fields["spec"])
        planned = [Trial(**t) for t in json.loads(fields["trials"])]
        jobs = self._trial_jobs(sweep_id)
        statuses = self._statuses(jobs)
        cancelling = fields["cancel_requested"] == "1"
        if cancelling:
            for trial, job_id in jobs.items():
                if statuses.get(trial) is None:  # claimed, never made: nothing to cancel
                    self._redis.hdel(self.keys.sweep_jobs(sweep_id), str(trial))
                elif statuses[trial] not in TERMINAL_STATUSES:
                    with suppress(JobNotFound, JobAlreadyFinished):
                        self.request_cancel(job_id, tenant=tenant)
            jobs = self._trial_jobs(sweep_id)
            statuses = self._statuses(jobs)
        else:
            # Trials claimed whose job was not made (the tenant's max_active_jobs was
            # reached, or a process died in between) first, in the order they were claimed.
            room = True
            for trial, job_id in jobs.items():
                if statuses.get(trial) is None and room:
                    room = self._make_trial(fields, planned, trial, job_id)
                    statuses[trial] = "queued" if room else None
            unfinished = sum(1 for s in statuses.values() if s not in TERMINAL_STATUSES)
            for trial in dispatch_order(spec["method"], len(planned), int(spec["seed"])):
                if not room or unfinished >= int(spec["max_concurrent"]):
                    break
                if trial in jobs:
                    continue
                job_id = uuid.uuid4().hex
                if not self._redis.hsetnx(self.keys.sweep_jobs(sweep_id), str(trial), job_id):
                    break  # cannot happen under the lock; never make a trial twice
                room = self._make_trial(fields, planned, trial, job_id)
                statuses[trial] = "queued" if room else None
                unfinished += 1
        if fields["status"] == "queued" and any(s not in (None, "queued")
                                                for s in statuses.values()):
            # What lists show (a sweep's own page derives it from its trials at each read).
            self._redis.hset(self.keys.sweep(sweep_id), "status", "running")
        if any(s not in TERMINAL_STATUSES for s in statuses.values()):
            return "running"
        if cancelling:
            return self._end(sweep_id, "cancelled")
        if len(statuses) < len(planned):
            return "running"
        return self._choose_winner(fields)

    def _statuses(self, jobs: Mapping[int, str]) -> dict[int, str | None]:
        pipe = self._redis.pipeline(transaction=False)
        for job_id in jobs.values():
            pipe.hget(self.keys.job(job_id).job, "status")
        return {trial: text(s) if s is not None else None
                for trial, s in zip(jobs, pipe.execute(), strict=True)}

    def _make_trial(
        self, fields: Mapping[str, str], planned: list[Trial], trial: int, job_id: str
    ) -> bool:
        """Make trial `trial` a job with the id claimed for it; False when the tenant's
        max_active_jobs is reached (a later advance makes it: a trial's end, the reaper)."""
        sweep_id, tenant = fields["id"], fields["tenant"]
        label = fields.get("name") or f"sweep {sweep_id[:8]}"
        plan = planned[trial]
        own = self._redis.hget(self.keys.tenant(tenant), QUOTA_FIELD + "max_active_jobs")
        limit = int(own) if own is not None else self.max_active_default
        try:
            self.create_job(
                plan.spec, tenant=tenant, name=f"{label} · trial {trial}",
                iterations=plan.iterations, job_id=job_id,
                extra={"sweep_id": sweep_id, "trial": str(trial)},
                quotas={"max_active_jobs": limit}, submission=False,
            )
        except QuotaExceeded:
            logger.info("sweep %s: trial %d waits: tenant %s has %d active jobs", sweep_id,
                        trial, tenant, limit)
            return False
        return True

    def _choose_winner(self, fields: dict[str, str]) -> str:
        """Every trial has ended: the best succeeded trial by the objective at its chosen
        epoch (ties: the lower trial) wins, and its test set is sent for evaluation."""
        views = self._trial_views(fields)[0]
        objective = json.loads(fields["spec"])["objective"]
        contenders = [v for v in views
                      if v["status"] == "succeeded" and v["objective_value"] is not None]
        if not contenders:
            counts: dict[str, int] = {}
            for view in views:
                counts[view["status"]] = counts.get(view["status"], 0) + 1
            told = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            error = {"code": "no_trial_succeeded",
                     "message": f"no trial succeeded ({told}); nothing to evaluate"}
            return self._end(fields["id"], "failed", error=error)
        best = min(contenders, key=lambda v: rank_key(objective, v["objective_value"],
                                                      v["trial"]))
        winner = {"trial": best["trial"], "job_id": best["job_id"], "params": best["params"],
                  "objective_value": best["objective_value"], "best_epoch": best["best_epoch"]}
        self._send_evaluation(fields["id"], winner)
        return "running"

    def _send_evaluation(self, sweep_id: str, winner: Mapping[str, Any] | None) -> None:
        message = self.messages.for_task(EVALUATE_TASK, [sweep_id], f"{sweep_id}-test")
        n = self._redis.hincrby(self.keys.sweep(sweep_id), "evaluation_dispatches", 1)
        pipe = self._redis.pipeline(transaction=True)
        if winner is not None:
            pipe.hset(self.keys.sweep(sweep_id), "winner", dumps(winner))
        pipe.hset(self.keys.sweep(sweep_id), mapping={
            "evaluation": "sent", "evaluation_sent_at": f"{time.time():.3f}"})
        pipe.lpush(self.keys.queue,
                   message.replace(DELIVERY_TAG.encode(), f"{sweep_id}.test.{n}".encode()))
        pipe.execute()
        logger.info("sweep %s: winner's test evaluation sent (%d)", sweep_id, n)

    def _maybe_resend(self, fields: Mapping[str, str], resend_after: float | None) -> None:
        sent = float(fields.get("evaluation_sent_at") or 0)
        if resend_after is not None and time.time() - sent > resend_after:
            if int(fields.get("evaluation_dispatches") or 0) >= MAX_EVALUATIONS:
                self._end(fields["id"], "failed", {
                    "code": "evaluation_failed",
                    "message": f"the winner's test evaluation was sent {MAX_EVALUATIONS} "
                               "times and never reported back (see the workers' logs)"})
                return
            logger.warning("sweep %s: no test result after %.0f s; sending again",
                           fields["id"], resend_after)
            self._send_evaluation(fields["id"], None)

    def _end(self, sweep_id: str, status: str, error: Mapping[str, Any] | None = None) -> str:
        key = self.keys.sweep(sweep_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"status": status, "finished_at": self._now(),
                                "error": dumps(error) if error else ""})
        pipe.expire(key, self.job_ttl)
        pipe.expire(self.keys.sweep_jobs(sweep_id), self.job_ttl)
        pipe.srem(self.keys.active_sweeps, sweep_id)
        pipe.execute()
        logger.info("sweep %s ended: %s", sweep_id, status)
        return status

    # --- the worker's side ----------------------------------------------------------------

    def winner_to_evaluate(self, sweep_id: str) -> dict[str, Any] | None:
        """(sweep fields with the winner) when its test evaluation is still owed."""
        fields = self._fields(sweep_id, None)
        if fields is None or fields["evaluation"] != "sent" or not fields.get("winner"):
            return None
        if fields["status"] in SWEEP_TERMINAL:
            return None
        return {"tenant": fields["tenant"], "winner": json.loads(fields["winner"])}

    def record_test(self, sweep_id: str, test: Mapping[str, Any],
                    overfitting: Mapping[str, Any] | None) -> bool:
        """The winner's test metrics, once: the sweep ends `succeeded` with them, and the
        winner's own metrics gain them. False when they were recorded already (a
        redelivered evaluation) or the sweep ended otherwise meanwhile."""
        key = self.keys.sweep(sweep_id)
        with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    fields = decode_hash(pipe.hgetall(key))
                    if (not fields or fields["evaluation"] != "sent"
                            or fields["status"] in SWEEP_TERMINAL):
                        return False
                    winner = json.loads(fields["winner"])
                    metrics_key = self.keys.job(winner["job_id"]).metrics
                    pipe.watch(metrics_key)
                    raw = pipe.get(metrics_key)
                    pipe.multi()
                    if raw is not None:
                        metrics = json.loads(raw)
                        metrics["test"], metrics["overfitting"] = test, overfitting
                        pipe.set(metrics_key, dumps(metrics), keepttl=True)
                    pipe.hset(key, mapping={"test": dumps(test), "evaluation": "done",
                                            "status": "succeeded", "finished_at": self._now()})
                    pipe.expire(key, self.job_ttl)
                    pipe.expire(self.keys.sweep_jobs(sweep_id), self.job_ttl)
                    pipe.srem(self.keys.active_sweeps, sweep_id)
                    pipe.execute()
                    logger.info("sweep %s succeeded: winner %s", sweep_id, winner["job_id"])
                    return True
                except redis.WatchError:
                    continue

    def fail_evaluation(self, sweep_id: str, message: str) -> None:
        """The winner's test set could not be evaluated (its model was not kept)."""
        with self._locked(sweep_id) as held:
            fields = self._fields(sweep_id, None)
            if held and fields is not None and fields["status"] not in SWEEP_TERMINAL:
                self._end(sweep_id, "failed", {"code": "evaluation_failed", "message": message})

    def prune_verdict(
        self, sweep_id: str, job_id: str, epoch: int, row: Mapping[str, Any]
    ) -> tuple[bool, str]:
        """Whether the median rule ends this trial now, at the end of its `epoch`, and why
        in words. It is judged at the latest epoch k <= `epoch` past the grace epochs that
        at least min_trials other trials have reached: its objective at k against their
        median at k. (Trials that run side by side finish an epoch at about the same time;
        the epoch just before is the latest that others have often finished.)"""
        fields = self._fields(sweep_id, None)
        if fields is None:
            return False, ""
        spec = json.loads(fields["spec"])
        rule = spec.get("early_stopping")
        grace = int(rule["grace_epochs"]) if rule else 0
        if not rule or epoch <= grace:
            return False, ""
        objective, needed = spec["objective"], int(rule.get("min_trials", 1))
        others = [j for j in self._trial_jobs(sweep_id).values() if j != job_id]
        epochs = list(range(epoch, grace, -1))  # the latest first
        pipe = self._redis.pipeline(transaction=False)
        pipe.hmget(self.keys.job(job_id).epochs, [str(k) for k in epochs])
        for other in others:
            pipe.hmget(self.keys.job(other).epochs, [str(k) for k in epochs])
        mine_rows, *their_rows = pipe.execute()
        for index, k in enumerate(epochs):
            found = [objective_at(json.loads(rows[index]), objective)
                     for rows in their_rows if rows[index] is not None]
            values = [v for v in found if v is not None]
            if len(values) < needed:
                continue
            own = row if k == epoch else (
                json.loads(mine_rows[index]) if mine_rows[index] else None)
            mine = objective_at(own, objective)
            prune, median, n = median_verdict(mine, values, objective, needed)
            if not prune:
                return False, ""
            assert mine is not None and median is not None
            return True, (f"pruned at epoch {epoch}: {objective} {mine:.4g} at epoch {k} is "
                          f"worse than the median {median:.4g} of {n} other "
                          f"trial{'s' if n != 1 else ''} there")
        return False, ""

    def active(self) -> list[str]:
        return sorted(text(m) for m in self._redis.smembers(self.keys.active_sweeps))


def _rows(raw: Mapping[bytes, bytes]) -> dict[int, dict[str, Any]]:
    return {int(k): json.loads(v) for k, v in raw.items()}


def _trial_state(
    job: Mapping[str, str], rows: Mapping[int, Mapping[str, Any]], metrics: bytes | None,
    objective: str,
) -> dict[str, Any]:
    """A made trial's leaderboard fields: status, its chosen epoch and objective there."""
    if not job:  # expired, or not yet made
        return {}
    best_epoch = json.loads(metrics)["best_epoch"] if metrics else chosen_epoch(rows)
    error = job.get("error") or ""
    return {
        "status": job["status"],
        "best_epoch": best_epoch,
        "objective_value": objective_at(rows.get(best_epoch), objective) if best_epoch else None,
        "epochs_run": len(rows),
        "error": json.loads(error) if error else None,
        "warnings": json.loads(job.get("warnings") or "[]"),
        "started_at": job.get("started_at") or None,
    }
