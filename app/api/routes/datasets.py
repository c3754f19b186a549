"""The dataset catalogue."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from app.api.auth import UNAUTHORIZED, tenant_of
from app.api.deps import SettingsDep
from app.api.schemas import DatasetList
from app.settings import Settings
from trainer import DatasetInfo, catalogue

router = APIRouter(
    prefix="/v1/datasets",
    tags=["datasets"],
    dependencies=[Depends(tenant_of)],
    responses=UNAUTHORIZED,
)


def described(info: DatasetInfo, settings: Settings) -> dict[str, Any]:
    """A catalogue entry whose hint names the setting behind "the data directory"."""
    entry = info.to_dict()
    if entry["hint"]:
        entry["hint"] = entry["hint"].replace(
            "the data directory", "the data directory DESCENT_DATA_DIR", 1
        )
    return entry


@router.get("", response_model=DatasetList)
def list_datasets(settings: SettingsDep) -> dict:
    """Every built-in dataset, its shapes, and whether (and how) it is available here."""
    return {"items": [described(info, settings) for info in catalogue(settings.data_dir)]}
