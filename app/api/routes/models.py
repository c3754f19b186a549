"""The trained model out: GET /v1/jobs/{id}/model (an .npz that NumPy loads alone) and
POST /v1/jobs/{id}/predict."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.auth import UNAUTHORIZED, PrincipalDep, tenant_of
from app.api.deps import StoreDep
from app.api.errors import unprocessable
from app.api.predict import MAX_ROWS, BadInstances, Model, ModelCache
from app.api.routes.jobs import NOT_FOUND, _not_found
from app.api.schemas import ErrorDetail, Unprocessable
from app.store.jobs import JobStore

router = APIRouter(
    prefix="/v1/jobs", tags=["models"], dependencies=[Depends(tenant_of)],
    responses=UNAUTHORIZED,
)
NO_MODEL: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    409: {"model": ErrorDetail,
          "description": "The job has not succeeded, or its model was too large to keep"},
}
PREDICT_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {
        "type": "object", "required": ["instances"], "additionalProperties": False,
        "properties": {"instances": {
            "type": "array", "minItems": 1, "maxItems": MAX_ROWS,
            "description": f"Rows of raw features (at most {MAX_ROWS:,}); the model's "
            "preprocessing is applied.",
            "items": {"type": "array", "items": {"type": "number"}}}},
    }, "example": {"instances": [[0.0, 0.5, 1.0]]}}},
}


def _succeeded(store: JobStore, job_id: str, tenant: str) -> None:
    """The tenant's job, succeeded (else a 404, or a 409 that gives its status)."""
    job = store.get_job(job_id, tenant=tenant)
    if job is None:
        raise _not_found(job_id)
    if job["status"] != "succeeded":
        raise HTTPException(status_code=409, detail=f"job {job_id} has no model: its status "
                            f"is {job['status']!r}; a model exists once it has succeeded")


def _weights(store: JobStore, job_id: str, tenant: str) -> bytes:
    blob = store.load_weights(job_id, tenant=tenant)
    if blob is None:
        raise HTTPException(status_code=409, detail=f"job {job_id} kept no model: it was "
                            "over DESCENT_MAX_WEIGHTS_BYTES (see the job's warnings)")
    return blob


@router.get("/{job_id}/model", response_class=Response, responses={
    200: {"content": {"application/octet-stream": {"schema": {"type": "string",
                                                              "format": "binary"}}},
          "description": "W1, b1, W2, b2, ... and meta (JSON in a uint8 array: layer sizes, "
          "activation, loss, dataset, classes, preprocessing)"},
    **NO_MODEL})
def get_model(job_id: str, store: StoreDep, principal: PrincipalDep) -> Response:
    """The chosen model of a succeeded job, as an .npz that NumPy loads alone."""
    _succeeded(store, job_id, principal.tenant.id)
    blob = _weights(store, job_id, principal.tenant.id)
    return Response(blob, media_type="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="descent-model-{job_id}.npz"',
        "Cache-Control": "private, max-age=86400"})


@router.post("/{job_id}/predict", openapi_extra={"requestBody": PREDICT_BODY}, responses={
    200: {"content": {"application/json": {"schema": {
        "type": "object", "properties": {
            "predictions": {"type": "array", "items": {}},
            "probabilities": {"type": "array", "items": {"type": "array",
                                                           "items": {"type": "number"}}},
            "classes": {"type": "array", "items": {}}}}}},
        "description": "A class label per row, the probability of each class, the classes"},
    **NO_MODEL,
    413: {"model": ErrorDetail, "description": "Body over DESCENT_MAX_PREDICT_BODY_BYTES"},
    422: {"model": Unprocessable,
          "description": "Bad instances: which row and column, or the feature count"}})
async def predict(job_id: str, request: Request, store: StoreDep,
                  principal: PrincipalDep) -> Response:
    """Class labels and probabilities for rows of raw features (at most 10,000), with the
    model's preprocessing applied. The body is parsed with orjson, not pydantic: 10,000 rows
    of 784 numbers are 7.8 million of them."""
    body = await request.body()
    return await run_in_threadpool(_predict, job_id, body, request.app.state.models, store,
                                   principal.tenant.id)


def _predict(job_id: str, body: bytes, cache: ModelCache, store: JobStore,
             tenant: str) -> Response:
    model = _cached(cache, store, job_id, tenant)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return unprocessable([{"loc": ["body"], "msg": f"the body is not valid JSON: {exc}",
                               "type": "json_invalid"}])
    if not isinstance(document, dict) or set(document) != {"instances"}:
        keys = sorted(document) if isinstance(document, dict) else type(document).__name__
        return unprocessable([{"loc": ["body"], "msg": "the body must be "
                               f'{{"instances": [[...], ...]}}, got {keys}',
                               "type": "value_error"}])
    try:
        answer = model.predict(document["instances"])
    except BadInstances as exc:
        return unprocessable([{"loc": ["body", "instances"], "msg": str(exc),
                               "type": "value_error"}])
    return Response(orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY),
                    media_type="application/json")


def _cached(cache: ModelCache, store: JobStore, job_id: str, tenant: str) -> Model:
    # The ownership check on every request; the model's bytes only once per process.
    _succeeded(store, job_id, tenant)
    return cache.get(job_id) or cache.load(job_id, _weights(store, job_id, tenant))

