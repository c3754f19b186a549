"""The gradient check: backprop against central differences, computed in the API process."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from app.api.auth import UNAUTHORIZED, PrincipalDep
from app.api.catalog import Catalog
from app.api.deps import DefaultQuotasDep, SettingsDep, TenantsDep, UploadsDep
from app.api.errors import field_error, unprocessable
from app.api.routes.jobs import quota_refusal
from app.api.schemas import (
    MAX_SEED,
    Activation,
    DatasetName,
    HiddenSizes,
    JobSpec,
    Loss,
    QuotaRefusal,
    Unprocessable,
)
from app.data import Datasets
from app.store.jobs import UNLIMITED
from app.store.records import QuotaExceeded
from trainer import DatasetError, InvalidConfig, TrainConfig
from trainer.cost import gradient_check_seconds
from trainer.gradcheck import AGREE, check_initial_gradients
from trainer.numerical import H
from trainer.rundata import training_size

router = APIRouter(prefix="/v1/gradient-check", tags=["gradients"], responses=UNAUTHORIZED)

MAX_BATCH_SIZE = 1000
EXAMPLE: dict[str, JsonValue] = {
    "dataset": "digits", "hidden_sizes": [50], "activation": "sigmoid",
    "loss": "cross_entropy", "batch_size": 10, "seed": 0,
}


class GradientCheckSpec(BaseModel):
    """Which network to check, on which data. Unknown fields are refused, as in a job spec."""

    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False,
        json_schema_extra={"examples": [
            EXAMPLE,
            {"dataset": "spiral", "hidden_sizes": [32, 16], "activation": "relu",
             "loss": "sum_squares", "batch_size": 20, "seed": 3},
        ]},
    )

    dataset: DatasetName
    hidden_sizes: HiddenSizes = [50]
    activation: Activation = "sigmoid"
    loss: Loss = "cross_entropy"
    batch_size: int = Field(
        default=10, ge=1, le=MAX_BATCH_SIZE,
        description="Samples in the batch: at most the training set's size after a job's "
        "default 10% validation split.",
    )
    weight_init_std: float | None = Field(
        default=None, gt=0, description="null: He for relu, Xavier for sigmoid."
    )
    seed: int = Field(
        default=0, ge=0, le=MAX_SEED,
        description="The weights and the batch of a job with this seed: its initial weights "
        "and its first mini-batch.",
    )

    # A job spec's own validators: integer-valued floats accepted (10.0), and the same
    # layer bounds in the same words.
    @field_validator("hidden_sizes", "batch_size", "seed", mode="before")
    @classmethod
    def _integral_floats(cls, value: Any) -> Any:
        return JobSpec._integral_floats(value)

    @field_validator("hidden_sizes")
    @classmethod
    def _layer_sizes(cls, sizes: list[int]) -> list[int]:
        return JobSpec._layer_sizes(sizes)

    def config(self) -> TrainConfig:
        return TrainConfig(
            hidden_sizes=tuple(self.hidden_sizes), activation=self.activation, loss=self.loss,
            batch_size=self.batch_size, weight_init_std=self.weight_init_std, seed=self.seed,
        )


class ParameterCheck(BaseModel):
    name: str = Field(description="W1, b1, W2, b2, ... in layer order.")
    shape: list[int]
    max_relative_error: float
    mean_relative_error: float


class GradientCheckResult(BaseModel):
    parameters: list[ParameterCheck]
    max_relative_error: float = Field(
        description="Over every element: |backprop - numerical| / (max |backprop| + max "
        "|numerical|), the maxima over the element's parameter array."
    )
    agree: bool = Field(description=f"max_relative_error <= {AGREE:g}")
    h: float = Field(description=f"The central differences' step ({H:g}).")
    numerical_seconds: float
    backprop_seconds: float



@router.post(
    "",
    response_model=GradientCheckResult,
    responses={
        422: {"model": Unprocessable,
              "description": "Invalid body, or a check estimated over "
              "DESCENT_MAX_INLINE_SECONDS; each entry names the field and the value"},
        429: {"model": QuotaRefusal, "description": "Over submissions_per_minute (a check "
              "is one submission); Retry-After says when to try again"},
    },
)
def gradient_check(
    spec: GradientCheckSpec, principal: PrincipalDep, settings: SettingsDep,
    uploads: UploadsDep, tenants: TenantsDep, defaults: DefaultQuotasDep,
) -> Any:
    """Backprop's gradient against central differences (float64, h = 1e-4) for every
    parameter, at the initial weights of a job with this seed, on its first mini-batch.
    Computed here, in the API process, when its estimate is within
    DESCENT_MAX_INLINE_SECONDS. A check that is computed counts as one of the tenant's
    submissions (submissions_per_minute), as a job or a sweep does."""
    resolved, errors = Catalog(settings, uploads, principal.tenant.id).resolve(spec.dataset)
    if resolved is None:
        return unprocessable(errors)
    info = resolved.info
    config = spec.config()
    try:
        config.validate(training_size(info.n_train, config))
    except InvalidConfig as exc:
        return unprocessable([field_error(exc.field, str(exc), getattr(spec, exc.field, None))])
    sizes = (info.n_features, *config.hidden_sizes, info.n_classes)
    estimate = gradient_check_seconds(sizes, config.batch_size)
    if estimate > settings.max_inline_seconds:
        return unprocessable([_too_long(spec, sizes, estimate, settings.max_inline_seconds)])
    per_minute = principal.tenant.quotas(defaults).get("submissions_per_minute", UNLIMITED)
    try:
        tenants.count_submission(principal.tenant.id, int(per_minute), "gradcheck")
    except QuotaExceeded as exc:
        return quota_refusal(exc)
    try:
        dataset = Datasets(uploads, settings.data_dir).load(resolved.stored)
        result = check_initial_gradients(config, dataset)
    except (InvalidConfig, DatasetError) as exc:
        field = exc.field if isinstance(exc, InvalidConfig) else "dataset"
        return unprocessable([field_error(field, str(exc), getattr(spec, field, None))])
    return result.to_dict()


def _too_long(
    spec: GradientCheckSpec, sizes: tuple[int, ...], estimate: float, limit: float
) -> dict[str, Any]:
    """The 422 entry of a check estimated over the limit. It names batch_size when a
    smaller batch would do (the cost grows in proportion to it), else hidden_sizes."""
    one = gradient_check_seconds(sizes, 1)
    per_sample = gradient_check_seconds(sizes, 2) - one
    fitting = int((limit - one) // per_sample) + 1 if limit >= one else 0
    head = (
        f"this gradient check is estimated at {_seconds(estimate)} s, over the limit of "
        f"{_seconds(limit)} s (DESCENT_MAX_INLINE_SECONDS): use"
    )
    if fitting >= 1:
        batch = "batch_size 1" if fitting == 1 else f"batch_size {fitting} or less"
        message = f"{head} {batch}, or smaller hidden_sizes"
        return field_error("batch_size", message, spec.batch_size, "cost_limit")
    message = f"{head} smaller hidden_sizes (even batch_size 1 is estimated at {_seconds(one)} s)"
    return field_error("hidden_sizes", message, spec.hidden_sizes, "cost_limit")


def _seconds(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2g}" if value < 1 else f"{value:.1f}"
