"""The HTTP contract's bodies: the job spec that is validated at the door, and the answers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue, field_validator

from app.store.keys import Status
from app.store.tenants import TENANT_NAME_PATTERN, TENANT_NAME_RULE, QuotaChanges
from trainer.config import (
    MAX_EPOCHS,
    MAX_HIDDEN_LAYERS,
    MAX_LAYER_SIZE,
    MAX_LEARNING_RATE,
    MAX_VALIDATION_FRACTION,
)


def _integral(value: Any) -> Any:
    """10.0 -> 10: many JSON encoders write integer-valued floats; 10.5 stays refused."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def _unicode(value: Any) -> Any:
    """Refuse text that UTF-8 cannot carry (a lone UTF-16 surrogate such as "\ud800")."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"must be valid Unicode text: a lone surrogate at character {exc.start}"
            ) from None
    return value


MAX_SEED = 2**53 - 1
Text = Annotated[str, BeforeValidator(_unicode)]

# The network's fields, shared by a job spec and a gradient check's body.
DatasetName = Annotated[
    Text, Field(min_length=1, max_length=200,
                description="A built-in dataset's name, or one of your uploads' name or id "
                "(GET /v1/datasets).")
]
HiddenSizes = Annotated[list[int], Field(
    min_length=1,
    max_length=MAX_HIDDEN_LAYERS,
    description=f"1 to {MAX_HIDDEN_LAYERS} hidden layers of 1 to {MAX_LAYER_SIZE} units.",
)]
Activation = Literal["sigmoid", "relu"]
Loss = Literal["cross_entropy", "sum_squares"]

# The first example works on every install: digits ships with scikit-learn.
SPEC_EXAMPLE: dict[str, JsonValue] = {
    "dataset": "digits",
    "hidden_sizes": [50],
    "activation": "sigmoid",
    "loss": "cross_entropy",
    "learning_rate": 0.5,
    "batch_size": 32,
    "epochs": 30,
    "seed": 0,
    "name": "book chapter 4",
}


class JobSpec(BaseModel):
    """What to train. Unknown fields are refused; every bound is enforced here."""

    model_config = ConfigDict(
        extra="forbid",
        # No coercion (true -> 1, "0.5" -> 0.5) and no NaN/Infinity, which the stored
        # JSON would silently turn into null.
        strict=True,
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                SPEC_EXAMPLE,
                {"dataset": "spiral", "hidden_sizes": [32], "activation": "relu",
                 "learning_rate": 0.5, "batch_size": 50, "epochs": 20},
                {"dataset": "blobs", "hidden_sizes": [8], "gradient": "numerical",
                 "batch_size": 20, "epochs": 2},
            ]
        },
    )

    dataset: DatasetName
    hidden_sizes: HiddenSizes = [50]
    activation: Activation = "sigmoid"
    loss: Loss = "cross_entropy"
    gradient: Literal["backprop", "numerical"] = "backprop"
    dtype: Literal["float32", "float64"] | None = Field(
        default=None,
        description="null: float32 for backprop, float64 for numerical.",
    )
    learning_rate: float = Field(default=0.1, gt=0, le=MAX_LEARNING_RATE)
    momentum: float = Field(default=0.0, ge=0, lt=1)
    batch_size: int = Field(default=100, ge=1, description="At most the training set's size.")
    epochs: int = Field(default=10, ge=1, le=MAX_EPOCHS)
    validation_fraction: float = Field(default=0.1, ge=0, le=MAX_VALIDATION_FRACTION)
    early_stopping_patience: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="null, or epochs without validation improvement."
    )
    weight_init_std: float | None = Field(
        default=None, gt=0, description="null: He for relu, Xavier for sigmoid."
    )
    seed: int = Field(
        default=0,
        ge=0,
        le=MAX_SEED,
        description="Same spec, seed and data: the same curve. At most 2**53 - 1, the largest "
        "integer every JSON client reads exactly.",
    )
    name: Text | None = Field(default=None, max_length=200)

    @field_validator(
        "hidden_sizes", "batch_size", "epochs", "early_stopping_patience", "seed", mode="before"
    )
    @classmethod
    def _integral_floats(cls, value: Any) -> Any:
        # Here, not as an Annotated validator: that one turns the OpenAPI's bounds of an
        # optional integer into unknown "ge" keywords.
        return [_integral(v) for v in value] if isinstance(value, list) else _integral(value)

    @field_validator("hidden_sizes")
    @classmethod
    def _layer_sizes(cls, sizes: list[int]) -> list[int]:
        # Checked here, not per item, so the 422 names hidden_sizes and the whole list.
        for index, size in enumerate(sizes):
            if not 1 <= size <= MAX_LAYER_SIZE:
                raise ValueError(
                    f"hidden_sizes[{index}] must be 1 to {MAX_LAYER_SIZE}, got {size}"
                )
        return sizes

    def stored_spec(self) -> dict[str, Any]:
        """The spec with defaults filled in, as kept with the job (the name lives apart)."""
        return self.model_dump(exclude={"name"})


class Progress(BaseModel):
    epoch: int
    epochs: int | None
    iteration: int
    iterations: int | None
    fraction: float
    eta_seconds: float | None


class JobError(BaseModel):
    code: str
    message: str


class Job(BaseModel):
    id: str
    name: str | None
    status: Status
    spec: dict[str, Any]
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    progress: Progress
    cancel_requested: bool
    attempts: int
    warnings: list[str]
    error: JobError | None
    sweep_id: str | None = Field(default=None, description="The sweep this job is a trial of.")
    trial: int | None = Field(default=None, description="Its trial number in that sweep.")


class JobList(BaseModel):
    items: list[Job]
    next_cursor: str | None


class EpochRow(BaseModel):
    epoch: int
    iteration: int
    train_loss: float | None
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None


class Curve(BaseModel):
    iterations: list[int]
    loss: list[float | None]
    next: int
    total: int
    epochs: list[EpochRow]
    status: Status


class BuiltinDataset(BaseModel):
    """A built-in dataset (the trainer's catalogue entry)."""

    name: str
    kind: Literal["builtin"] = "builtin"
    description: str
    available: bool
    n_train: int
    n_test: int
    n_features: int
    n_classes: int
    hint: str | None = Field(None, description="When unavailable: how to make it available.")


class UploadedDataset(BaseModel):
    """One of your uploads (POST /v1/datasets)."""

    id: str
    name: str
    kind: Literal["upload"] = "upload"
    description: str
    available: bool = True
    n_train: int = Field(description="Rows a job trains on (with validation taken out of "
                         "them, per the job's validation_fraction).")
    n_test: int = Field(description="The test rows: the file's own test split, or held out.")
    n_features: int
    n_classes: int
    classes: list[int | float | str] = Field(
        description="The labels, in the order of the model's outputs.")
    preprocess: Literal["none", "standardize"]
    test_fraction: float | None = Field(
        description="The fraction held out as the test set (None: the file's own split).")
    label_column: str | None = Field(description="A CSV's label column.")
    columns: list[str] | None = Field(description="A CSV's feature columns, in order.")
    file_name: str
    file_bytes: int
    file_sha256: str = Field(description="SHA-256 of the file as sent.")
    bytes: int = Field(description="Bytes stored (counted by max_dataset_bytes).")
    sha256: str = Field(description="SHA-256 of the stored form, its address in the store.")
    created_at: str


class DatasetUser(BaseModel):
    kind: Literal["job", "sweep"]
    id: str
    status: str


class DatasetInUseAnswer(BaseModel):
    detail: str
    used_by: DatasetUser = Field(description="The job or sweep that trains on the upload.")


class DatasetList(BaseModel):
    items: list[BuiltinDataset | UploadedDataset]


class ClassReport(BaseModel):
    label: int | float | str  # an upload's own class label
    precision: float
    recall: float
    f1: float
    support: int


class TestMetrics(BaseModel):
    loss: float | None
    accuracy: float
    n: int
    confusion_matrix: list[list[int]] = Field(description="Rows are the true label.")
    per_class: list[ClassReport]


class LossAccuracy(BaseModel):
    loss: float | None
    accuracy: float


class Overfitting(BaseModel):
    gap: float = Field(description="Train accuracy minus test accuracy.")
    threshold: float
    flagged: bool


class Metrics(BaseModel):
    test: TestMetrics | None = Field(
        description="Evaluated once, on the chosen model; null for a sweep's trial that did "
        "not win.")
    train: LossAccuracy
    validation: LossAccuracy | None
    best_epoch: int
    epochs_run: int
    iterations: int
    early_stopped: bool
    overfitting: Overfitting | None = Field(
        description="null for a sweep's trial whose test set was not evaluated.")
    duration_seconds: float


class MetricsNotReady(BaseModel):
    detail: str
    status: Status


class ErrorDetail(BaseModel):
    """Every error but a 422: what went wrong, in words."""

    detail: str


class FieldError(BaseModel):
    loc: list[str | int] = Field(description='Where: ["body", "epochs"], ["query", "since"]')
    msg: str = Field(description="What is wrong, naming the field and the value.")
    type: str
    input: JsonValue | None = None


class Unprocessable(BaseModel):
    """A 422: one entry per problem."""

    detail: list[FieldError]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    redis: bool
    workers: int = Field(description="Workers heard from within the last 3 heartbeats.")
    detail: str | None = None


class Quotas(BaseModel):
    """A tenant's quotas in force: its own where the operator set one, else the defaults."""

    max_active_jobs: int
    max_running_jobs: int
    submissions_per_minute: int
    max_job_seconds: float
    max_dataset_bytes: int
    max_sweep_trials: int


class Usage(BaseModel):
    active_jobs: int = Field(description="Queued + running (max_active_jobs).")
    queued_jobs: int
    running_jobs: int
    waiting_jobs: int = Field(description="Queued jobs waiting for a max_running_jobs slot.")
    dispatched_jobs: int = Field(description="Jobs holding a max_running_jobs slot.")
    submissions_last_minute: int
    dataset_bytes: int = Field(description="Stored bytes of the uploads (max_dataset_bytes).")


class TenantRef(BaseModel):
    id: str
    name: str


class Me(BaseModel):
    tenant: TenantRef
    quotas: Quotas
    usage: Usage


class ApiKeyInfo(BaseModel):
    key_id: str
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    created_at: str


class Tenant(BaseModel):
    id: str
    name: str
    created_at: str
    quotas: Quotas
    own_quotas: list[str] = Field(description="The quotas the operator set for this tenant.")
    keys: list[ApiKeyInfo] = []


class TenantList(BaseModel):
    items: list[Tenant]


class NewTenant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(pattern=TENANT_NAME_PATTERN, description=TENANT_NAME_RULE)
    quotas: QuotaChanges | None = None


class TenantPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quotas: QuotaChanges


class TenantCreated(BaseModel):
    tenant: Tenant
    key_id: str
    api_key: str = Field(description="Shown this once; Descent keeps only its digest.")


class KeyCreated(BaseModel):
    key_id: str
    api_key: str = Field(description="Shown this once; Descent keeps only its digest.")


class QuotaRefusal(BaseModel):
    """A 429: which quota, its limit, the current count; Retry-After says when to retry."""

    detail: str
    quota: str
    limit: int
    current: int
    retry_after_seconds: int
