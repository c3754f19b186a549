"""Odd input and odd failures get a clear answer, never a 500 that is not a bug."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from app.store.jobs import JobStore
from tests.roles import TENANT

SPIRAL = {"dataset": "spiral", "epochs": 2}


def only_error(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    return dict(error)


@pytest.mark.parametrize("key", ["", " ", "a b", "x" * 201])
def test_a_bad_idempotency_key_is_422_naming_the_header(
    client: TestClient, store: JobStore, key: str
) -> None:
    response = client.post("/v1/jobs", json=SPIRAL, headers={"Idempotency-Key": key})

    error = only_error(response)
    assert error["loc"] == ["header", "idempotency-key"]
    assert "idempotency-key" in error["msg"]
    assert store.list_jobs(tenant=TENANT)[0] == []


def test_a_lone_surrogate_in_a_string_is_422_not_500(client: TestClient) -> None:
    body = b'{"dataset": "spiral", "name": "\\ud800"}'
    response = client.post("/v1/jobs", content=body,
                           headers={"Content-Type": "application/json"})

    error = only_error(response)
    assert error["loc"] == ["body", "name"]
    assert "lone surrogate" in error["msg"]
    assert error["input"] == "\ufffd"


def test_unparseable_json_is_422_saying_where(client: TestClient) -> None:
    response = client.post("/v1/jobs", content=b'{"dataset": ',
                           headers={"Content-Type": "application/json"})

    error = only_error(response)
    assert error["type"] == "json_invalid"
    assert "not valid JSON" in error["msg"] and "character 12" in error["msg"]


def test_options_lists_every_method_of_the_path(client: TestClient) -> None:
    response = client.options("/v1/jobs")

    assert response.status_code == 204
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}
    cancel = client.options("/v1/jobs/" + "0" * 32 + "/cancel")
    assert set(cancel.headers["allow"].split(", ")) == {"OPTIONS", "POST"}
    assert client.options("/nowhere").status_code == 404


def test_null_is_reported_as_null(client: TestClient) -> None:
    error = only_error(client.post("/v1/jobs", json={**SPIRAL, "seed": None}))

    assert error["msg"] == "seed must be an integer, got null"


def test_the_body_must_be_an_object_in_our_own_words(client: TestClient) -> None:
    error = only_error(client.post("/v1/jobs", json=[SPIRAL]))

    assert error["msg"].startswith("the body must be a JSON object, got [")
    assert "dictionary" not in error["msg"]


def test_an_unknown_field_suggests_the_known_one(client: TestClient) -> None:
    error = only_error(client.post("/v1/jobs", json={**SPIRAL, "learning_rte": 0.1}))

    assert error["msg"] == 'learning_rte is not a known field; did you mean "learning_rate"?'


def test_an_unknown_dataset_suggests_the_known_one(client: TestClient) -> None:
    error = only_error(client.post("/v1/jobs", json={"dataset": "sprial"}))

    assert 'did you mean "spiral"?' in error["msg"]


def test_a_misspelt_choice_suggests_the_allowed_one(client: TestClient) -> None:
    error = only_error(client.post("/v1/jobs", json={**SPIRAL, "activation": "relu6"}))

    assert error["msg"] == (
        'activation must be one of sigmoid, relu, got "relu6"; did you mean "relu"?'
    )


@pytest.mark.parametrize("field", ["epochs", "batch_size", "seed", "early_stopping_patience"])
def test_integral_floats_are_accepted_for_integer_fields(
    client: TestClient, field: str
) -> None:
    response = client.post("/v1/jobs", json={**SPIRAL, field: 3.0})

    assert response.status_code == 202, response.text
    assert response.json()["spec"][field] == 3
    assert isinstance(response.json()["spec"][field], int)


@pytest.mark.parametrize("value", [3.5, True, "3"])
def test_other_non_integers_stay_refused(client: TestClient, value: Any) -> None:
    error = only_error(client.post("/v1/jobs", json={**SPIRAL, "epochs": value}))

    assert error["msg"].startswith("epochs must be an integer, got ")


def test_a_cursor_past_any_curve_is_422_before_it_reaches_redis(client: TestClient) -> None:
    job = client.post("/v1/jobs", json=SPIRAL).json()

    response = client.get(f"/v1/jobs/{job['id']}/curve",
                          params={"since": "10000000000000000000"})

    error = only_error(response)
    assert error["loc"] == ["query", "since"]
    assert "since must be <= 1000000000" in error["msg"]


def test_a_redis_error_that_is_not_an_outage_is_a_logged_500(
    make_client: Any, store: JobStore, redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client_500 = make_client(raise_server_exceptions=False)
    job_id = "0" * 32
    redis_client.set(store.keys.job(job_id).job, "not a hash")  # WRONGTYPE on HGETALL

    response = client_500.get(f"/v1/jobs/{job_id}")

    assert response.status_code == 500
    assert "unavailable" not in response.text
    assert any("WRONGTYPE" in (r.exc_text or "") for r in caplog.records)


def test_a_body_that_is_not_utf8_is_422_not_400(client: TestClient) -> None:
    response = client.post("/v1/jobs", content=b'\xff\xfe{"dataset": "spiral"}',
                           headers={"Content-Type": "application/json"})

    error = only_error(response)
    assert error["type"] == "json_invalid" and "not UTF-8" in error["msg"]


def test_an_infinite_number_is_named_as_such(client: TestClient) -> None:
    response = client.post("/v1/jobs", content=b'{"dataset": "spiral", "learning_rate": 1e400}',
                           headers={"Content-Type": "application/json"})

    assert only_error(response)["msg"] == "learning_rate must be a finite number, got Infinity"


def test_a_list_item_is_named_by_its_index(client: TestClient) -> None:
    error = only_error(client.post("/v1/jobs", json={**SPIRAL, "hidden_sizes": [8, "x"]}))

    assert error["msg"] == 'hidden_sizes[1] must be an integer, got "x"'


def test_head_is_answered_wherever_get_is(client: TestClient) -> None:
    for path in ("/v1/jobs", "/healthz", "/v1/datasets"):
        response = client.head(path)
        assert response.status_code == 200, path
        assert response.content == b""
        assert response.headers["content-type"] == "application/json"


def test_a_405_lists_every_method_of_the_path(client: TestClient) -> None:
    response = client.put("/v1/jobs")

    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}


def test_a_body_nested_too_deeply_says_so(client: TestClient) -> None:
    response = client.post("/v1/jobs", content=b"[" * 50_000 + b"]" * 50_000,
                           headers={"Content-Type": "application/json"})

    assert only_error(response)["msg"] == "the body is not valid JSON: it nests too deeply"


def test_a_json_string_body_is_told_to_be_an_object(client: TestClient) -> None:
    error = only_error(client.post("/v1/jobs", json="digits"))

    assert error["msg"] == 'the body must be a JSON object, got "digits"'


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("a b", 'idempotency-key must be visible ASCII characters (no spaces), got "a b"'),
        ("", 'idempotency-key must have at least 1 character, got ""'),
    ],
)
def test_idempotency_key_errors_are_in_our_words(
    client: TestClient, key: str, message: str
) -> None:
    response = client.post("/v1/jobs", json=SPIRAL, headers={"Idempotency-Key": key})

    assert only_error(response)["msg"] == message


@pytest.mark.parametrize(
    "error",
    [
        redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'."),
        redis.ReadOnlyError("You can't write against a read only replica."),
        redis.ResponseError("MASTERDOWN Link with MASTER is down"),
    ],
    ids=["oom", "readonly", "masterdown"],
)
def test_a_redis_that_refuses_writes_for_now_is_503_not_500(error: Exception) -> None:
    import asyncio

    from starlette.requests import Request

    from app.api.errors import redis_error_handler

    request = Request({"type": "http", "method": "POST", "path": "/v1/jobs", "headers": []})
    response = asyncio.run(redis_error_handler(request, error))

    assert response.status_code == 503
    assert response.headers["retry-after"]


def test_a_static_file_s_405_and_options_name_what_it_serves(client: TestClient) -> None:
    refused = client.post("/static-offline-docs/swagger-ui.css")

    assert refused.status_code == 405
    assert set(refused.headers["allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_a_dropped_redis_connection_is_replaced_without_an_error(
    client: TestClient, redis_client: redis.Redis
) -> None:
    # As after a Redis restart: every pooled connection of the app is dead.
    assert client.get("/v1/me").status_code == 200
    assert client.post("/v1/jobs", json={"dataset": "spiral"}).status_code == 202
    redis_client.client_kill_filter(_type="normal", skipme=True)

    assert client.get("/v1/me").status_code == 200  # the key check's (asyncio) client
    assert client.get("/v1/jobs").status_code == 200  # and the store's
