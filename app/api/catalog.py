"""The datasets a tenant's request may name: the built-ins, and its own uploads by name or id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.api.errors import field_error
from app.api.wording import did_you_mean
from app.data import upload_info
from app.settings import Settings
from app.store.uploads import UploadStore
from trainer import DatasetError, DatasetInfo, UnknownDataset, dataset_info
from trainer.datasets import BUILTIN_NAMES


def described(info: DatasetInfo, settings: Settings) -> dict[str, Any]:
    """A built-in's catalogue entry whose hint names the setting behind "the data directory"."""
    entry = {**info.to_dict(), "kind": "builtin"}
    if entry["hint"]:
        entry["hint"] = entry["hint"].replace(
            "the data directory", "the data directory DESCENT_DATA_DIR", 1
        )
    return entry


@dataclass(frozen=True)
class Resolved:
    """A dataset a request named: its sizes, and what a job's spec stores (a built-in's
    name, or the upload's id: a name may be given to another upload later)."""

    info: DatasetInfo
    stored: str


class Catalog:
    """One request's view of the datasets (a sweep's trials look theirs up once)."""

    def __init__(self, settings: Settings, uploads: UploadStore, tenant: str) -> None:
        self.settings, self.uploads, self.tenant = settings, uploads, tenant
        self._seen: dict[str, tuple[Resolved | None, list[dict[str, Any]]]] = {}

    def resolve(self, name: str) -> tuple[Resolved | None, list[dict[str, Any]]]:
        """The dataset `name` names, or (None, the 422 entry on `dataset`): unknown (with
        the name probably meant), unreadable, or not available here (with how to make
        it so)."""
        if name not in self._seen:
            self._seen[name] = self._resolve(name)
        return self._seen[name]

    def _resolve(self, name: str) -> tuple[Resolved | None, list[dict[str, Any]]]:
        if name not in BUILTIN_NAMES:
            upload = self.uploads.get_dataset(name, tenant=self.tenant)
            if upload is not None:
                return Resolved(upload_info(upload), upload["id"]), []
        try:
            info = dataset_info(name, self.settings.data_dir)
        except UnknownDataset:
            own = [d["name"] for d in self.uploads.list_datasets(tenant=self.tenant)]
            known = ", ".join(BUILTIN_NAMES) + (
                f"; your uploads: {', '.join(own)}" if own else "; you have no uploads "
                "(POST /v1/datasets)")
            message = (f"unknown dataset {name!r}; known datasets: {known}"
                       f"{did_you_mean(name, [*BUILTIN_NAMES, *own])}")
            return None, [field_error("dataset", message, name)]
        except DatasetError as exc:
            return None, [field_error("dataset", str(exc), name)]
        if not info.available:
            hint = described(info, self.settings)["hint"]
            message = f"dataset {name!r} is not available here: {hint}"
            return None, [field_error("dataset", message, name)]
        return Resolved(info, name), []
