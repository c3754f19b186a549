"""The dataset catalogue."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import SettingsDep
from app.schemas import DatasetList
from trainer import catalogue

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.get("", response_model=DatasetList)
def list_datasets(settings: SettingsDep) -> dict:
    """Every built-in dataset, its shapes, and whether (and how) it is available here."""
    return {"items": [info.to_dict() for info in catalogue(settings.data_dir)]}
