"""Prometheus metrics (public, like the health probes)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.monitoring import metrics_registry

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                     "description": "Prometheus text exposition format"}},
)
def metrics(request: Request) -> Response:
    """Jobs by status, queue depth, workers online, job durations, iterations trained (all
    from the store), and this API process's HTTP requests and latencies."""
    return Response(generate_latest(metrics_registry(request.app.state)),
                    media_type=CONTENT_TYPE_LATEST)
