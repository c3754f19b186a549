"""Descent's numeric core: NumPy mini-batch gradient descent (NumPy and the stdlib only)."""

from trainer.checkpoint import Checkpoint, EpochRecord
from trainer.config import TrainConfig
from trainer.cost import CostEstimate, estimate_cost
from trainer.datasets import Dataset, DatasetInfo, catalogue, dataset_info, load_dataset
from trainer.errors import (
    DatasetError,
    DatasetUnavailable,
    Diverged,
    InvalidConfig,
    Stopped,
    TrainerError,
    UnknownDataset,
)
from trainer.loop import TrainResult, evaluate_test_set, overfitting, train
from trainer.model import model_from_bytes, model_to_bytes, predict_proba, read_model
from trainer.numerical import gradient_check, numerical_gradient
from trainer.reporting import Callbacks
from trainer.rundata import planned_iterations, training_size

__all__ = [
    "Callbacks",
    "Checkpoint",
    "CostEstimate",
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "DatasetUnavailable",
    "Diverged",
    "EpochRecord",
    "InvalidConfig",
    "Stopped",
    "TrainConfig",
    "TrainResult",
    "TrainerError",
    "UnknownDataset",
    "catalogue",
    "dataset_info",
    "estimate_cost",
    "evaluate_test_set",
    "gradient_check",
    "load_dataset",
    "model_from_bytes",
    "model_to_bytes",
    "numerical_gradient",
    "overfitting",
    "predict_proba",
    "read_model",
    "planned_iterations",
    "train",
    "training_size",
]
