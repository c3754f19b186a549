"""GET /v1/jobs/{id}/events: a job's progress as server-sent events (app.api.events)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from sse_starlette import EventSourceResponse

from app.api.auth import UNAUTHORIZED, PrincipalDep
from app.api.errors import field_error, unprocessable
from app.api.events import EventHub, Resume, events
from app.api.routes.jobs import NOT_FOUND, MaxPoints, Since, _not_found
from app.api.schemas import Unprocessable

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=UNAUTHORIZED)
KEEPALIVE_SECONDS = 15
# One event of the stream, as a client parses it; `data` is JSON text.
EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["status", "progress", "epoch", "end"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string", "pattern": r"^[0-9]+(:[0-9]+)?$"},
    },
}

STREAM_DESCRIPTION = """Server-sent events, in this order: `status` {status, error,
warnings} first and on each change; `progress` {iteration, epoch, epochs, fraction,
eta_seconds, iterations, loss} with the points new since the previous event (at most
max_points, evenly downsampled, the last kept; its id is the last iteration), which stop at
any epoch's end among them; `epoch` (an epoch row, right after the points that end it; id
"iteration:epoch"); `end` {status} last, then the stream closes. Last-Event-ID (either
kind of id) resumes with nothing repeated or skipped. A comment line every 15 s keeps
proxies from closing it."""


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": EVENT_SCHEMA}},
              "description": STREAM_DESCRIPTION},
        **NOT_FOUND,
        422: {"model": Unprocessable, "description": "A bad since, max_points or "
              "Last-Event-ID"},
    },
)
async def job_events(
    job_id: str,
    request: Request,
    principal: PrincipalDep,
    since: Since = 0,
    max_points: MaxPoints = 1000,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="Resume after this event (wins over since)"),
    ] = None,
) -> Any:
    """Follow a job: its progress as it trains, its epochs, its status, then `end`."""
    hub: EventHub = request.app.state.event_hub
    tenant = principal.tenant.id
    if await hub.reader.job(job_id, tenant) is None:
        raise _not_found(job_id)
    try:
        resume = Resume.parse(last_event_id, since)
    except ValueError as exc:
        return unprocessable(
            [field_error("Last-Event-ID", str(exc), last_event_id, where="header")]
        )
    return EventSourceResponse(events(hub, job_id, resume, max_points),
                               ping=KEEPALIVE_SECONDS)



