"""The HTTP contract of sweeps (DESIGN.md "Sweeps"): the request and the answers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from app.api.schemas import MAX_SEED, JobError, TestMetrics, Text
from app.store.keys import Status, SweepStatus

MAX_DIMENSION_VALUES = 1000
MAX_DIMENSIONS = 16
MAX_CONCURRENT = 64

SWEEP_EXAMPLE: dict[str, JsonValue] = {
    "name": "learning rates",
    "base": {"dataset": "digits", "hidden_sizes": [50], "epochs": 10, "batch_size": 32},
    "method": "grid",
    "space": {"learning_rate": {"values": [0.001, 0.01, 0.1, 1.0, 10.0]}},
    "objective": "val_accuracy",
    "max_concurrent": 2,
}


class Values(BaseModel):
    """A dimension given as the values to try."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    values: list[JsonValue] = Field(min_length=1, max_length=MAX_DIMENSION_VALUES)


class Range(BaseModel):
    """A dimension given as a range (method random only): uniform in low..high, or in
    the logarithm with `log`; integer fields are rounded."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    low: float
    high: float
    log: bool = False

    @field_validator("low", "high", mode="before")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


class EarlyStopping(BaseModel):
    """The median rule: after `grace_epochs`, a trial whose objective at an epoch is worse
    than the median of the other trials at that epoch ends `pruned`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    rule: Literal["median"] = "median"
    grace_epochs: int = Field(default=1, ge=0, le=1000,
                              description="Epochs no trial is pruned in.")
    min_trials: int = Field(
        default=2, ge=1, le=1000,
        description="Other trials that must have reached the epoch for a median to count.")


class SweepSpec(BaseModel):
    """A sweep: trials of `base` with the fields of `space` varied."""

    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False,
        json_schema_extra={"examples": [SWEEP_EXAMPLE]},
    )

    name: Text | None = Field(default=None, max_length=200)
    base: dict[str, JsonValue] = Field(
        description="A job spec (POST /v1/jobs) that every trial starts from; it needs a "
        "validation set (validation_fraction > 0).")
    method: Literal["grid", "random"] = "grid"
    space: dict[str, Values | Range] = Field(
        min_length=1, max_length=MAX_DIMENSIONS,
        description="Job spec fields (any but dataset and name) -> {values: [...]} or, for "
        "random, {low, high, log}.")
    trials: int | None = Field(
        default=None, ge=1, description="random: how many draws; grid: every combination "
        "(leave it out).")
    objective: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    max_concurrent: int = Field(default=2, ge=1, le=MAX_CONCURRENT,
                                description="Trials unfinished at once, at most.")
    early_stopping: EarlyStopping | None = None
    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="Seeds the random draws.")


class TrialRow(BaseModel):
    trial: int
    job_id: str | None = Field(description="null until the trial's job is made.")
    params: dict[str, Any]
    status: Status
    best_epoch: int | None
    objective_value: float | None = Field(description="The objective at best_epoch.")
    epochs_run: int
    error: JobError | None
    warnings: list[str]


class Winner(BaseModel):
    trial: int
    job_id: str
    params: dict[str, Any]
    objective_value: float
    best_epoch: int | None


class SweepCounts(BaseModel):
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    pruned: int


class Sweep(BaseModel):
    id: str
    name: str | None
    status: SweepStatus
    spec: dict[str, Any]
    objective: str
    method: str
    trial_count: int
    counts: SweepCounts | None = Field(description="null in lists.")
    trials: list[TrialRow] | None = Field(description="Best first; null in lists.")
    winner: Winner | None
    test: TestMetrics | None = Field(description="The winner's, evaluated once.")
    error: JobError | None
    cancel_requested: bool
    estimated_seconds: float | None = Field(description="All trials, run one after another.")
    created_at: str | None
    started_at: str | None
    finished_at: str | None


class SweepList(BaseModel):
    items: list[Sweep]
    next_cursor: str | None


class TrialCurve(BaseModel):
    trial: int
    job_id: str
    status: Status
    epochs: list[int]
    values: list[float | None] = Field(description="The objective at each of those epochs.")


class SweepCurves(BaseModel):
    objective: str
    status: SweepStatus
    winner: int | None = Field(description="The winning trial, once known.")
    trials: list[TrialCurve] = Field(description="The trials made so far, in trial order.")
