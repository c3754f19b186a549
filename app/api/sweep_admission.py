"""A sweep checked at the door: its base, every dimension and value as a job spec would be,
its size against the tenant's max_sweep_trials, and every trial as a job is admitted
(cost, memory, iterations against max_job_seconds and the limits). What passes becomes the
list of trials the store keeps."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from app.api.admission import admit
from app.api.catalog import Catalog
from app.api.schemas import JobSpec
from app.api.sweep_schemas import Range, SweepSpec
from app.api.wording import describe, did_you_mean, shown
from app.settings import Settings
from app.store.sweeps import Trial
from app.sweeps import Dimension, grid, grid_size, random_trials

VARIABLE = tuple(name for name in JobSpec.model_fields if name not in ("dataset", "name"))
# The fields a range may vary, and whether they are integers (drawn values are rounded).
NUMERIC = {"learning_rate": False, "momentum": False, "validation_fraction": False,
           "weight_init_std": False, "batch_size": True, "epochs": True,
           "early_stopping_patience": True, "seed": True}
MAX_ERRORS = 10  # 422 entries at most: the first problems are enough to act on


@dataclass
class SweepAdmission:
    errors: list[dict[str, Any]] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)
    estimated_seconds: float = 0.0
    dataset: str | None = None  # the base's dataset as a job stores it (an upload's id)

    def refuse(self, loc: list[str | int], message: str, value: Any,
               kind: str = "value_error") -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"loc": ["body", *loc], "msg": message, "type": kind,
                                "input": value})


def admit_sweep(
    spec: SweepSpec, settings: Settings, quotas: Mapping[str, Any], catalog: Catalog
) -> SweepAdmission:
    verdict = SweepAdmission()
    base = _base(spec, verdict)
    if base is None:
        return verdict
    dimensions = [d for name, given in spec.space.items()
                  if (d := _dimension(spec, base, name, given, verdict)) is not None]
    if verdict.errors:
        return verdict
    count = _trial_count(spec, dimensions, quotas, verdict)
    if count is None:
        return verdict
    if spec.max_concurrent > quotas["max_active_jobs"]:
        verdict.refuse(["max_concurrent"],
                       f"max_concurrent is {spec.max_concurrent}, over your quota "
                       f"max_active_jobs of {quotas['max_active_jobs']}", spec.max_concurrent)
        return verdict
    drawn = (grid(dimensions) if spec.method == "grid"
             else random_trials(dimensions, count, spec.seed))
    base_spec = base.stored_spec()
    for number, params in enumerate(drawn):
        job = JobSpec.model_validate({**base_spec, **params})
        admission = admit(job, settings, catalog, quotas["max_job_seconds"])
        for error in admission.errors:
            name = str(error["loc"][-1])
            where: list[str | int] = ["space", name] if name in params else ["base", name]
            verdict.refuse(where, f"trial {number} ({_params(params)}): {error['msg']}",
                           error.get("input"), error.get("type", "value_error"))
        if not admission.errors:
            verdict.dataset = admission.dataset
            verdict.trials.append(Trial(params, admission.spec(job), admission.iterations))
            verdict.estimated_seconds += admission.seconds or 0.0
    return verdict


def _base(spec: SweepSpec, verdict: SweepAdmission) -> JobSpec | None:
    if "name" in spec.base:
        verdict.refuse(["base", "name"], "base.name: a trial is named after its sweep; set "
                       "the sweep's name instead", spec.base["name"])
    try:
        base = JobSpec.model_validate(spec.base)
    except ValidationError as exc:
        for error in exc.errors():
            entry = describe({**error, "loc": ("body", "base", *error["loc"])},
                             JobSpec.model_fields)
            verdict.refuse(entry["loc"][1:], entry["msg"], entry.get("input"), entry["type"])
        return None
    if base.validation_fraction == 0:
        verdict.refuse(["base", "validation_fraction"],
                       "base.validation_fraction must be > 0: a sweep chooses its winner by "
                       "the validation set, got 0", 0)
    return None if verdict.errors else base


def _dimension(
    spec: SweepSpec, base: JobSpec, name: str, given: Any, verdict: SweepAdmission
) -> Dimension | None:
    loc: list[str | int] = ["space", name]
    if name not in VARIABLE:
        why = ("a sweep keeps one dataset: run a sweep per dataset" if name == "dataset"
               else "a trial is named after its sweep" if name == "name"
               else f"it is not a job spec field{did_you_mean(name, VARIABLE)}")
        verdict.refuse(loc, f"space.{name} cannot vary: {why}; these can: "
                       f"{', '.join(VARIABLE)}", name)
        return None
    if isinstance(given, Range):
        return _range(spec, base, name, given, verdict)
    values = []
    for index, value in enumerate(given.values):
        checked, problem = _check(base, name, value)
        if problem is None:
            values.append(checked)
        else:
            verdict.refuse([*loc, "values", index],
                           f"space.{name}.values[{index}]: {problem}", value)
    return Dimension(name, values=tuple(values))


def _range(
    spec: SweepSpec, base: JobSpec, name: str, given: Range, verdict: SweepAdmission
) -> Dimension | None:
    loc: list[str | int] = ["space", name]
    if spec.method == "grid":
        verdict.refuse(loc, f"space.{name}: a grid tries listed values only; give "
                       '{"values": [...]} or use method "random" for a range', given.model_dump())
        return None
    if name not in NUMERIC:
        verdict.refuse(loc, f"space.{name}: {name} takes a list of values, not a range",
                       given.model_dump())
        return None
    if not given.low < given.high:
        verdict.refuse([*loc, "low"], f"space.{name}: low must be < high, got low "
                       f"{given.low:g} and high {given.high:g}", given.low)
        return None
    if given.log and given.low <= 0:
        verdict.refuse([*loc, "low"], f"space.{name}: a log range needs low > 0, got "
                       f"{given.low:g}", given.low)
        return None
    integer = NUMERIC[name]
    low, high = ((math.ceil(given.low), math.floor(given.high)) if integer
                 else (given.low, given.high))
    if low > high:
        verdict.refuse(loc, f"space.{name}: no integer lies between {given.low:g} and "
                       f"{given.high:g}", given.model_dump())
        return None
    for end, value in (("low", low), ("high", high)):
        problem = _check(base, name, value)[1]
        if problem is not None:
            verdict.refuse([*loc, end], f"space.{name}.{end}: {problem}", value)
    return Dimension(name, low=low, high=high, log=given.log, integer=integer)


def _check(base: JobSpec, name: str, value: Any) -> tuple[Any, str | None]:
    """`value` as the job spec's `name` (10.0 -> 10, say) and None; or what is wrong with
    it, in the spec's own words."""
    try:
        return getattr(JobSpec.model_validate({**base.stored_spec(), name: value}), name), None
    except ValidationError as exc:
        return None, "; ".join(describe({**e, "loc": ("body", *e["loc"])})["msg"]
                               for e in exc.errors())


def _trial_count(
    spec: SweepSpec, dimensions: list[Dimension], quotas: Mapping[str, Any],
    verdict: SweepAdmission,
) -> int | None:
    if spec.method == "grid":
        count = grid_size(dimensions)
        if spec.trials is not None and spec.trials != count:
            verdict.refuse(["trials"], f"trials: a grid runs every combination, {count} here; "
                           f"leave trials out, got {spec.trials}", spec.trials)
            return None
        where: list[str | int] = ["space"]
    else:
        if spec.trials is None:
            verdict.refuse(["trials"], "trials is required with method random: how many "
                           "draws to train", None, "missing")
            return None
        count, where = spec.trials, ["trials"]
    limit = int(quotas["max_sweep_trials"])
    if count > limit:
        verdict.refuse(where, f"this sweep has {count} trials, over your quota "
                       f"max_sweep_trials of {limit}", count, "quota")
        return None
    return count


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {shown(v)}" for k, v in params.items())
