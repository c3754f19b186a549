"""Datasets: the built-in catalogue and a tenant's uploads (POST, GET, DELETE)."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.api.auth import UNAUTHORIZED, PrincipalDep, tenant_of
from app.api.catalog import described
from app.api.deps import DefaultQuotasDep, SettingsDep, UploadsDep
from app.api.errors import field_error, not_found, unprocessable
from app.api.multipart import BadForm, ReceivedFile, StreamedForm, TooLarge, boundary_of
from app.api.schemas import (
    DatasetInUseAnswer,
    DatasetList,
    ErrorDetail,
    Unprocessable,
    UploadedDataset,
)
from app.csv_upload import read_csv
from app.settings import Settings
from app.store.keys import is_dataset_id
from app.store.uploads import DatasetInUse, DatasetQuotaExceeded, NameTaken, UploadStore
from trainer import catalogue, dataset_info
from trainer.datasets import BUILTIN_NAMES
from trainer.errors import DatasetError
from trainer.preprocess import PREPROCESSING
from trainer.uploads import Upload, UploadTooLarge, check_upload, read_npz, sizes, to_bytes

logger = logging.getLogger(__name__)

router = APIRouter(
    prefix="/v1/datasets",
    tags=["datasets"],
    dependencies=[Depends(tenant_of)],
    responses=UNAUTHORIZED,
)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
FIELDS = ("name", "label_column", "test_fraction", "preprocess")
ZIP_MAGIC = b"PK\x03\x04"
# Uploads parsed at once per API process: each holds its rows in memory a few times over.
PARSING = asyncio.Semaphore(2)
UPLOAD_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "name"],
        "properties": {
            "file": {"type": "string", "format": "binary", "description":
                     "A .csv with a header row, or an .npz with x, t (and x_test, t_test)."},
            "name": {"type": "string", "pattern": f"^{NAME.pattern}$", "description":
                     "What jobs call it in `dataset` (or by the id this answer gives)."},
            "label_column": {"type": "string", "description":
                             "A CSV's label column (default: the last)."},
            "test_fraction": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1,
                              "description": "Rows held out as the test set when the file "
                              "has no test split (default 0.2)."},
            "preprocess": {"type": "string", "enum": list(PREPROCESSING), "description":
                           "standardize: each feature by its mean and standard deviation "
                           "over a job's training rows (default for CSV; none for .npz)."},
        }}}},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No such dataset (or another tenant's)"}}


@router.get("", response_model=DatasetList)
def list_datasets(settings: SettingsDep, principal: PrincipalDep, uploads: UploadsDep) -> dict:
    """Every built-in dataset (its shapes, and whether and how it is available here),
    then your uploads, oldest first."""
    builtins = [described(info, settings) for info in catalogue(settings.data_dir)]
    return {"items": builtins + uploads.list_datasets(tenant=principal.tenant.id)}


@router.get("/{ref}", response_model=UploadedDataset | dict, responses=NOT_FOUND)
def get_dataset(ref: str, settings: SettingsDep, principal: PrincipalDep,
                uploads: UploadsDep) -> Any:
    """A built-in dataset by name, or one of your uploads by name or id."""
    if ref in BUILTIN_NAMES:
        return described(dataset_info(ref, settings.data_dir), settings)
    found = uploads.get_dataset(ref, tenant=principal.tenant.id)
    if found is None:
        raise not_found("dataset", ref)
    return found


@router.delete("/{ref}", status_code=204, response_class=Response, responses={
    **NOT_FOUND,
    409: {"model": DatasetInUseAnswer, "description": "A queued or running job (or an "
          "unfinished sweep) trains on it (`used_by` names it); or it is a built-in dataset"}})
def delete_dataset(ref: str, principal: PrincipalDep, uploads: UploadsDep) -> Response:
    """Delete one of your uploads (by id or name). Jobs that ended keep their models."""
    if ref in BUILTIN_NAMES:
        raise HTTPException(status_code=409, detail=f"{ref!r} is a built-in dataset; only "
                            "uploads can be deleted")
    try:
        deleted = uploads.delete_dataset(ref, tenant=principal.tenant.id)
    except DatasetInUse as exc:
        return JSONResponse(status_code=409, content={
            "detail": f"{exc}: delete it once that has ended (or cancel it: POST "
                      f"/v1/{exc.kind}s/{exc.user_id}/cancel)",
            "used_by": {"kind": exc.kind, "id": exc.user_id, "status": exc.status}})
    if not deleted:
        raise not_found("dataset", ref)
    return Response(status_code=204)


@router.post(
    "",
    status_code=201,
    response_model=UploadedDataset,
    openapi_extra={"requestBody": UPLOAD_BODY},
    responses={
        409: {"model": ErrorDetail, "description": "The name is taken"},
        413: {"model": ErrorDetail, "description": "Over DESCENT_MAX_UPLOAD_BYTES or your "
              "quota max_dataset_bytes; refused while the file streams in"},
        422: {"model": Unprocessable, "description": "A bad form or file: each entry says "
              "what and where (line and column, row, array)"},
    },
)
async def upload_dataset(
    request: Request, settings: SettingsDep, principal: PrincipalDep, uploads: UploadsDep,
    defaults: DefaultQuotasDep,
) -> Any:
    """Upload a dataset: a CSV with a header row (labels in `label_column`, any strings or
    numbers; every other column a number) or an .npz (`x`, `t`, optionally `x_test`,
    `t_test`). The body is read as it streams in and refused with 413 as soon as the file
    passes the limit; the file is then checked whole, and every problem gets a 422 that
    says what and where."""
    tenant = principal.tenant.id
    quota = int(principal.tenant.quotas(defaults)["max_dataset_bytes"])
    used = await run_in_threadpool(uploads.used_bytes, tenant)
    limit, limit_name = _upload_limit(settings, quota, used)
    try:
        form = StreamedForm(boundary_of(request.headers.get("content-type", "")), limit,
                            settings.upload_dir)
    except BadForm as exc:
        return unprocessable([field_error(exc.field, str(exc), None)])
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > form.body_limit:
        return _too_large(f"{int(declared):,} bytes", limit, limit_name)
    try:
        try:
            async for chunk in request.stream():
                form.write(chunk)
            form.finish()
        except TooLarge as exc:
            return _too_large(f"at least {exc.seen:,} bytes", limit, limit_name)
        except BadForm as exc:
            return unprocessable([field_error(exc.field, str(exc), None)])
        assert form.file is not None
        options, errors = _options(form.fields, form.file)
        if errors:
            return unprocessable(errors)
        if options["name"] in BUILTIN_NAMES:
            raise HTTPException(status_code=409, detail=f"the name {options['name']!r} is a "
                                "built-in dataset's; choose another")
        taken = await run_in_threadpool(uploads.get_dataset, options["name"], tenant=tenant)
        if taken is not None:
            return _name_taken(NameTaken(options["name"], taken["id"]))
        async with PARSING:
            return await run_in_threadpool(
                _store, uploads, form.file, options, tenant, quota, limit)
    finally:
        form.close()


def _upload_limit(settings: Settings, quota: int, used: int) -> tuple[int, str]:
    """The most the file may take, and what sets it."""
    room = max(quota - used, 0)
    if room < settings.max_upload_bytes:
        return room, (f"your quota max_dataset_bytes ({quota:,} bytes, of which your "
                      f"uploads take {used:,})")
    return settings.max_upload_bytes, "DESCENT_MAX_UPLOAD_BYTES"


def _too_large(size: str, limit: int, limit_name: str) -> JSONResponse:
    return JSONResponse(status_code=413, headers={"Connection": "close"}, content={
        "detail": f"the upload of {size} exceeds the limit of {limit:,} bytes ({limit_name})"})


def _name_taken(exc: NameTaken) -> JSONResponse:
    return JSONResponse(status_code=409, content={
        "detail": f"{exc}: choose another name, or delete it first (DELETE "
                  f"/v1/datasets/{exc.dataset_id})"})


def _options(fields: dict[str, str], file: ReceivedFile
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The form's fields checked: (options, 422 entries)."""
    errors: list[dict[str, Any]] = []
    for unknown in sorted(set(fields) - set(FIELDS)):
        errors.append(field_error(unknown, f"unknown field {unknown!r}; the form takes file, "
                                  f"{', '.join(FIELDS)}", fields[unknown]))
    name = fields.get("name")
    if name is None:
        errors.append(field_error("name", "name is required: what jobs will call the "
                                  "dataset", None, "missing"))
    elif not NAME.fullmatch(name) or is_dataset_id(name):
        errors.append(field_error("name", "name must be 1 to 64 letters, digits, '.', '_' or "
                                  "'-', starting with a letter or digit (and not shaped like "
                                  f"a dataset id), got {name!r}", name))
    is_npz = file.head.startswith(ZIP_MAGIC) or file.filename.lower().endswith(".npz")
    preprocess = fields.get("preprocess", "none" if is_npz else "standardize")
    if preprocess not in PREPROCESSING:
        errors.append(field_error("preprocess", f"preprocess must be one of "
                                  f"{', '.join(PREPROCESSING)}, got {preprocess!r}", preprocess))
    test_fraction: float | None = None
    if "test_fraction" in fields:
        try:
            test_fraction = float(fields["test_fraction"])
            if not 0 < test_fraction < 1:
                raise ValueError
        except ValueError:
            errors.append(field_error("test_fraction", "test_fraction must be a number > 0 "
                                      f"and < 1, got {fields['test_fraction']!r}",
                                      fields["test_fraction"]))
    label_column = fields.get("label_column")
    if label_column is not None and is_npz:
        errors.append(field_error("label_column", "label_column is for a CSV; an .npz has "
                                  "its labels in t", label_column))
    return {"name": name, "is_npz": is_npz, "preprocess": preprocess,
            "test_fraction": test_fraction, "label_column": label_column}, errors


def _store(uploads: UploadStore, file: ReceivedFile, options: dict[str, Any], tenant: str,
           quota: int, limit: int) -> Any:
    """Parse and check the file, then store it (in a thread: it takes seconds for 100 MB).
    An .npz's arrays may take twice the file's limit once loaded (a compressed one more
    than its file), no more."""
    try:
        upload = (read_npz(file.path, max_bytes=2 * limit + 2**20) if options["is_npz"]
                  else read_csv(file.path, options["label_column"]))
        fraction = check_upload(upload, options["test_fraction"])
        info = _info(upload, options, fraction, file)
        blob = to_bytes(upload, preprocess=options["preprocess"], test_fraction=fraction)
        del upload  # its rows are in the blob now: one copy in memory, not two
    except UploadTooLarge as exc:
        return JSONResponse(status_code=413, content={"detail": str(exc)})
    except DatasetError as exc:
        return unprocessable([field_error("file", f"{file.filename}: {exc}", file.filename,
                                          "invalid_dataset")])
    except Exception as exc:  # a reader's surprise is still the file's, not the server's
        logger.exception("upload %s: reading %s failed", options["name"], file.filename)
        return unprocessable([field_error("file", f"{file.filename}: cannot read it: "
                                          f"{type(exc).__name__}: {exc}"[:300],
                                          file.filename, "invalid_dataset")])
    try:
        document = uploads.create_dataset(tenant=tenant, name=options["name"], blob=blob,
                                          info=info, max_bytes=quota)
    except NameTaken as exc:
        return _name_taken(exc)
    except DatasetQuotaExceeded as exc:
        return JSONResponse(status_code=413, content={"detail": (
            f"stored, this dataset takes {exc.size:,} bytes; with your uploads' {exc.used:,} "
            f"that is over your quota max_dataset_bytes of {exc.limit:,}: delete an upload "
            "first")})
    return JSONResponse(status_code=201, content=document,
                        headers={"Location": f"/v1/datasets/{document['id']}"})


def _info(upload: Upload, options: dict[str, Any], fraction: float, file: ReceivedFile
          ) -> dict[str, Any]:
    own_split = upload.x_test is not None
    n_train, n_test = sizes(upload, fraction)
    return {
        "description": f"uploaded from {file.filename}"[:200],
        "n_train": n_train, "n_test": n_test, "n_features": upload.n_features,
        "n_classes": len(upload.classes), "classes": upload.classes,
        "preprocess": options["preprocess"], "test_fraction": None if own_split else fraction,
        "label_column": upload.label_column, "columns": upload.columns,
        "file_name": file.filename[:200], "file_bytes": file.size, "file_sha256": file.sha256,
    }
