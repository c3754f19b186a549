"""Predictions with a trained model: the instances checked, the model's preprocessing
applied, and the models kept per API process (least recently used out, by bytes)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer import predict_proba, read_model
from trainer.network import Network
from trainer.preprocess import raw_features

MAX_ROWS = 10_000  # instances per request


class BadInstances(ValueError):
    """What is wrong with the instances, naming where (a 422)."""


@dataclass(frozen=True)
class Model:
    net: Network
    meta: dict[str, Any]
    bytes: int

    @property
    def n_features(self) -> int:
        return int(self.meta["sizes"][0])

    def predict(self, instances: Any) -> dict[str, Any]:
        x = raw_features(check_instances(instances, self.n_features), self.meta["preprocess"])
        probabilities = predict_proba(self.net, x)
        classes = self.meta["classes"]
        return {"predictions": [classes[i] for i in probabilities.argmax(axis=1)],
                "probabilities": probabilities, "classes": classes}


def check_instances(instances: Any, n_features: int) -> np.ndarray:
    """(n, n_features) float64 from a list of rows of numbers, or BadInstances."""
    if not isinstance(instances, list) or not instances:
        raise BadInstances("instances must be a non-empty list of rows (lists of numbers)")
    if len(instances) > MAX_ROWS:
        raise BadInstances(f"instances has {len(instances):,} rows; at most {MAX_ROWS:,} a "
                           "request: send them in parts")
    for index, row in enumerate(instances):
        if not isinstance(row, list) or len(row) != n_features:
            got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
            raise BadInstances(f"instances[{index}] must be a list of {n_features} numbers "
                               f"(the model's features), got {got}")
    try:
        x = np.array(instances, dtype=np.float64)
    except (TypeError, ValueError):
        for index, row in enumerate(instances):
            for column, value in enumerate(row):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise BadInstances(f"instances[{index}][{column}] must be a number, got "
                                       f"{value!r}"[:200]) from None
        raise
    if not np.isfinite(x).all():
        row, column = (int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise BadInstances(f"instances[{row}][{column}] must be finite, got "
                           f"{x[row, column]}")
    return x


class ModelCache:
    """Succeeded jobs' models, read once per process: at most `max_bytes` of weights."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._models: OrderedDict[str, Model] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()  # the request threads share it

    def get(self, job_id: str) -> Model | None:
        with self._lock:
            model = self._models.get(job_id)
            if model is not None:
                self._models.move_to_end(job_id)
            return model

    def load(self, job_id: str, blob: bytes) -> Model:
        net, meta = read_model(blob)
        model = Model(net, meta, len(blob))
        with self._lock:
            if job_id not in self._models and model.bytes <= self.max_bytes:
                self._models[job_id] = model
                self._held += model.bytes
                while self._held > self.max_bytes:
                    _, dropped = self._models.popitem(last=False)
                    self._held -= dropped.bytes
        return model

    @property
    def held(self) -> int:
        return self._held

