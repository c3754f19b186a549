"""Checks of a job spec that need the dataset catalogue and the cost estimate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.api.catalog import Catalog
from app.api.errors import field_error
from app.api.schemas import JobSpec
from app.settings import Settings
from trainer import (
    InvalidConfig,
    TrainConfig,
    estimate_cost,
    training_size,
)


@dataclass(frozen=True)
class Admission:
    """The verdict on a spec: 422 entries if it is refused, else the run's iteration count."""

    errors: list[dict[str, Any]]
    iterations: int | None = None
    seconds: float | None = None  # the run's estimated duration
    dataset: str | None = None  # what the job's spec stores (an upload by its id)

    def spec(self, spec: JobSpec) -> dict[str, Any]:
        """The job's spec to store: defaults filled in, the dataset as resolved."""
        return {**spec.stored_spec(), "dataset": self.dataset}


def admit(
    spec: JobSpec, settings: Settings, catalog: Catalog, max_job_seconds: float | None = None
) -> Admission:
    """Refuse a spec that pydantic accepted but that cannot run here (or is absurd), with
    422 entries; for one that can, count its iterations. `catalog`: the datasets the
    tenant may name. `max_job_seconds`: the tenant's quota (the deployment's
    DESCENT_MAX_JOB_SECONDS when None)."""
    if max_job_seconds is None or max_job_seconds == settings.max_job_seconds:
        max_job_seconds, limit_name = settings.max_job_seconds, "DESCENT_MAX_JOB_SECONDS"
    else:
        limit_name = "your quota max_job_seconds"
    resolved, errors = catalog.resolve(spec.dataset)
    if resolved is None:
        return Admission(errors)
    info = resolved.info
    config = TrainConfig.from_dict(spec.stored_spec())
    try:
        config.validate(training_size(info.n_train, config))
    except InvalidConfig as exc:
        return Admission([field_error(exc.field, str(exc), getattr(config, exc.field, None))])
    estimate = estimate_cost(
        config, info.n_train, info.n_features, info.n_classes, n_test=info.n_test
    )
    if estimate.seconds > max_job_seconds:
        # Advice names only what would help this job; the knob named first is the field.
        remedies = ["fewer epochs", "a smaller network"]
        if config.batch_size < 32:  # each step's fixed cost dominates small batches
            remedies.append("a larger batch_size")
        if config.gradient == "numerical":
            remedies.append("gradient backprop")
        message = (
            f"this job is estimated at {estimate.seconds:,.0f} s ({estimate.flops:.3g} "
            f"floating-point operations over {estimate.iterations} iterations), over the "
            f"limit of {max_job_seconds:,.0f} s ({limit_name}): use "
            f"{_either(remedies)}"
        )
        field = "gradient" if config.gradient == "numerical" else "epochs"
        return Admission([field_error(field, message, getattr(spec, field), "cost_limit")])
    if estimate.memory_bytes > settings.max_job_memory_bytes:
        remedies = ["a smaller network"]
        if config.resolved_dtype == "float64" and config.gradient == "backprop":
            remedies.append("dtype float32")
        if config.momentum:
            remedies.append("no momentum")
        message = (
            f"hidden_sizes {spec.hidden_sizes}: this job needs an estimated "
            f"{estimate.memory_bytes / 2**30:,.2f} GiB of memory "
            "(parameters, gradients, optimiser state, the best epoch's copy, a checkpoint, "
            "copies of the data in the job's dtype and a batch's activations), over the "
            f"limit of {settings.max_job_memory_bytes / 2**30:,.2f} GiB "
            f"(DESCENT_MAX_JOB_MEMORY_BYTES): use {_either(remedies)}"
        )
        return Admission(
            [field_error("hidden_sizes", message, spec.hidden_sizes, "memory_limit")]
        )
    if estimate.iterations > settings.max_iterations:
        message = (
            f"this job would run {estimate.iterations} iterations, over the limit of "
            f"{settings.max_iterations} (DESCENT_MAX_ITERATIONS): use fewer epochs or a "
            "larger batch_size"
        )
        return Admission([field_error("epochs", message, spec.epochs, "iteration_limit")])
    return Admission([], estimate.iterations, estimate.seconds, resolved.stored)


def _either(options: list[str]) -> str:
    return options[0] if len(options) == 1 else ", ".join(options[:-1]) + " or " + options[-1]
