"""Checks of a job spec that need the dataset catalogue and the cost estimate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.errors import field_error
from app.schemas import JobSpec
from app.settings import Settings
from trainer import (
    DatasetError,
    InvalidConfig,
    TrainConfig,
    dataset_info,
    estimate_cost,
    training_size,
)


@dataclass(frozen=True)
class Admission:
    """The verdict on a spec: 422 entries if it is refused, else the run's iteration count."""

    errors: list[dict[str, Any]]
    iterations: int | None = None


def admit(spec: JobSpec, settings: Settings) -> Admission:
    """Refuse a spec that pydantic accepted but that cannot run here (or is absurd), with
    422 entries; for one that can, count its iterations."""
    try:
        info = dataset_info(spec.dataset, settings.data_dir)
    except DatasetError as exc:
        return Admission([field_error("dataset", str(exc), spec.dataset)])
    if not info.available:
        message = f"dataset {spec.dataset!r} is not available here: {info.hint}"
        return Admission([field_error("dataset", message, spec.dataset)])
    config = TrainConfig.from_dict(spec.stored_spec())
    try:
        config.validate(training_size(info.n_train, config))
    except InvalidConfig as exc:
        return Admission([field_error(exc.field, str(exc), getattr(config, exc.field, None))])
    estimate = estimate_cost(config, info.n_train, info.n_features, info.n_classes)
    if estimate.seconds > settings.max_job_seconds:
        message = (
            f"this job is estimated at {estimate.seconds:,.0f} s ({estimate.flops:.3g} "
            f"floating-point operations over {estimate.iterations} iterations), over the "
            f"limit of {settings.max_job_seconds:,.0f} s (DESCENT_MAX_JOB_SECONDS): use "
            "fewer epochs, a smaller network, or gradient backprop"
        )
        # Name the knob that usually makes a job absurd.
        field = "gradient" if config.gradient == "numerical" else "epochs"
        return Admission([field_error(field, message, getattr(spec, field), "cost_limit")])
    if estimate.iterations > settings.max_iterations:
        message = (
            f"this job would run {estimate.iterations} iterations, over the limit of "
            f"{settings.max_iterations} (DESCENT_MAX_ITERATIONS): use fewer epochs or a "
            "larger batch_size"
        )
        return Admission([field_error("epochs", message, spec.epochs, "iteration_limit")])
    return Admission([], estimate.iterations)

