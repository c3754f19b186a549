"""A small typed client of Descent's HTTP API, on httpx. It imports nothing of the server.

    from client import Descent

    with Descent("http://127.0.0.1:8000", api_key) as descent:
        job = descent.submit({"dataset": "digits", "epochs": 20})
        for event in descent.follow(job["id"]):
            print(event.event, event.data)
        print(descent.metrics(job["id"])["test"]["accuracy"])
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import SSEError, connect_sse

TERMINAL = ("succeeded", "failed", "cancelled", "pruned")
SWEEP_TERMINAL = ("succeeded", "failed", "cancelled")
RESUME_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)  # between attempts to resume a dropped stream
UPLOAD_TIMEOUT = 600.0  # seconds: a few hundred MB to send, then checked whole by the API


class DescentError(Exception):
    """An answer other than the one asked for: `status` (0 when the API could not be
    reached), `detail` in words, and the body."""

    def __init__(self, status: int, detail: str, body: Any = None) -> None:
        super().__init__(f"{status}: {detail}" if status else detail)
        self.status = status
        self.detail = detail
        self.body = body

    @property
    def retry_after(self) -> float | None:
        if isinstance(self.body, dict) and "retry_after_seconds" in self.body:
            return float(self.body["retry_after_seconds"])
        return None


class TimedOut(DescentError):
    def __init__(self, what: str) -> None:
        super().__init__(0, f"timed out waiting for {what}")


@dataclass(frozen=True)
class Event:
    """One server-sent event of a job's stream: `status`, `progress`, `epoch` or `end`."""

    event: str
    id: str | None
    data: dict[str, Any]


def _detail(response: httpx.Response) -> tuple[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase, None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # a 422: one entry per problem, each naming its field
        return "; ".join(str(item.get("msg", item)) for item in detail), body
    return str(detail if detail is not None else body), body


def _check(response: httpx.Response) -> None:
    """Raise DescentError for an error answer (its body read)."""
    if response.is_error:
        detail, body = _detail(response)
        raise DescentError(response.status_code, detail, body)


class Descent:
    """Descent's API with one tenant's key."""

    def __init__(self, url: str, api_key: str, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, transport=transport,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "descent-client"},
        )

    def __enter__(self) -> Descent:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise DescentError(0, f"cannot reach {self.url}: {exc}") from exc
        _check(response)
        return response

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        return response.json() if response.content else None

    # -- the API, one method per route ------------------------------------------------------

    def me(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/me"))

    def datasets(self) -> list[dict[str, Any]]:
        """The built-in datasets (kind "builtin"), then your uploads (kind "upload")."""
        return list(self._call("GET", "/v1/datasets")["items"])

    def dataset(self, ref: str) -> dict[str, Any]:
        """A built-in dataset by name, or one of your uploads by name or id."""
        return dict(self._call("GET", f"/v1/datasets/{ref}"))

    def upload(self, path: str | os.PathLike[str], name: str, *,
               label_column: str | None = None, test_fraction: float | None = None,
               preprocess: str | None = None, timeout: float = UPLOAD_TIMEOUT
               ) -> dict[str, Any]:
        """Upload a .csv (with a header row) or an .npz as dataset `name`; the file is
        streamed from disk, not read into memory."""
        fields = {"name": name, "label_column": label_column, "test_fraction": test_fraction,
                  "preprocess": preprocess}
        data = {key: str(value) for key, value in fields.items() if value is not None}
        with open(path, "rb") as stream:
            files = {"file": (os.path.basename(path), stream, "application/octet-stream")}
            return dict(self._call("POST", "/v1/datasets", data=data, files=files,
                                   timeout=timeout))

    def delete_dataset(self, ref: str) -> None:
        """Delete one of your uploads (409 while a queued or running job uses it)."""
        self._request("DELETE", f"/v1/datasets/{ref}")

    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None
               ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return dict(self._call("POST", "/v1/jobs", json=spec, headers=headers))

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/jobs/{job_id}"))

    def jobs(self, status: str | None = None, limit: int | None = None,
             page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Your jobs, newest first, page after page (at most `limit` of them)."""
        return self._paged("/v1/jobs", {"status": status} if status else {}, limit, page_size)

    def _paged(self, path: str, params: dict[str, Any], limit: int | None, page_size: int
               ) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        given = 0
        while True:
            params = {**params, "limit": page_size}
            if cursor:
                params["cursor"] = cursor
            page = self._call("GET", path, params=params)
            for item in page["items"]:
                if limit is not None and given >= limit:
                    return
                given += 1
                yield item
            cursor = page["next_cursor"]
            if not cursor:
                return

    def curve(self, job_id: str, since: int = 0, max_points: int = 1000) -> dict[str, Any]:
        params = {"since": since, "max_points": max_points}
        return dict(self._call("GET", f"/v1/jobs/{job_id}/curve", params=params))

    def metrics(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/jobs/{job_id}/metrics"))

    def picture(self, job_id: str, fmt: str = "png") -> bytes:
        """The job's curve as a picture: "png" or "svg"."""
        return self._request("GET", f"/v1/jobs/{job_id}/curve.{fmt}").content

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/jobs/{job_id}/cancel"))

    def gradient_check(self, **body: Any) -> dict[str, Any]:
        """Backprop against central differences at a network's initial weights, computed by
        the API: body fields dataset, hidden_sizes, activation, loss, batch_size,
        weight_init_std, seed."""
        return dict(self._call("POST", "/v1/gradient-check", json=body))

    def model(self, job_id: str) -> bytes:
        """A succeeded job's model: .npz bytes (W1, b1, ... and meta) NumPy loads alone."""
        return self._request("GET", f"/v1/jobs/{job_id}/model").content

    def predict(self, job_id: str, instances: list[list[float]]) -> dict[str, Any]:
        """Labels and probabilities for rows of raw features (at most 10,000 a call)."""
        return dict(self._call("POST", f"/v1/jobs/{job_id}/predict",
                               json={"instances": instances}))

    def submit_sweep(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/sweeps", json=body))

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        """The sweep with its leaderboard (trials best first), winner and test metrics."""
        return dict(self._call("GET", f"/v1/sweeps/{sweep_id}"))

    def sweeps(self, limit: int | None = None, page_size: int = 100
               ) -> Iterator[dict[str, Any]]:
        """Your sweeps, newest first, without their leaderboards."""
        return self._paged("/v1/sweeps", {}, limit, min(page_size, 100))

    def sweep_curves(self, sweep_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/sweeps/{sweep_id}/curves"))

    def cancel_sweep(self, sweep_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/sweeps/{sweep_id}/cancel"))

    def sweep_picture(self, sweep_id: str, fmt: str = "png") -> bytes:
        """Every trial's validation curve, the winner marked: "png" or "svg"."""
        return self._request("GET", f"/v1/sweeps/{sweep_id}/plot.{fmt}").content

    # -- following -----------------------------------------------------------------------

    def follow(self, job_id: str, max_points: int = 1000, last_event_id: str | None = None,
               resume_for: float = 60.0) -> Iterator[Event]:
        """The job's events until `end`. A dropped connection (the API restarting, a proxy)
        is resumed with Last-Event-ID, so nothing is repeated or skipped; for `resume_for`
        seconds without a successful reconnection it gives up (DescentError, status 0)."""
        last = last_event_id
        failing_since: float | None = None
        attempt = 0
        while True:
            headers = {"Last-Event-ID": last} if last else {}
            try:
                with connect_sse(self._http, "GET", f"/v1/jobs/{job_id}/events",
                                 params={"max_points": max_points}, headers=headers,
                                 timeout=httpx.Timeout(30.0, read=60.0)) as source:
                    if source.response.is_error:
                        source.response.read()
                        _check(source.response)
                    failing_since, attempt = None, 0
                    for sse in source.iter_sse():
                        event = Event(sse.event, sse.id or None, json.loads(sse.data))
                        if sse.id:
                            last = sse.id
                        yield event
                        if event.event == "end":
                            return
                # Closed before `end` (the API restarting, a proxy): resume, not in a spin.
                time.sleep(RESUME_DELAYS[0])
            except (httpx.HTTPError, SSEError, DescentError) as exc:
                # A dropped connection, or an API that is restarting (a 503 for a moment):
                # resume. Any other answer is final.
                if isinstance(exc, DescentError) and exc.status != 503:
                    raise
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > resume_for:
                    if isinstance(exc, DescentError):
                        raise
                    raise DescentError(0, f"lost the stream of job {job_id}: {exc}") from exc
                time.sleep(RESUME_DELAYS[min(attempt, len(RESUME_DELAYS) - 1)])
                attempt += 1

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.5
             ) -> dict[str, Any]:
        """The job once it has ended (TimedOut after `timeout` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimedOut(f"job {job_id} to end")
            time.sleep(poll if deadline is None else min(poll, max(deadline - time.monotonic(),
                                                                    0.01)))
