"""Keys, the operator's API, /v1/me, quotas over HTTP and ownership."""

from __future__ import annotations

import math
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from app.store.tenants import TenantStore
from scripts.stack import bearer as as_key
from tests.app.conftest import ADMIN_TOKEN, MakeClient

SPIRAL = {"dataset": "spiral", "epochs": 1}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def new_tenant(client: TestClient, name: str, **quotas: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name}
    if quotas:
        body["quotas"] = quotas
    response = client.post("/v1/admin/tenants", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return dict(response.json())


# --- 401s ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/" + "0" * 32),
     ("GET", "/v1/jobs/" + "0" * 32 + "/curve"), ("GET", "/v1/jobs/" + "0" * 32 + "/metrics"),
     ("POST", "/v1/jobs/" + "0" * 32 + "/cancel"), ("GET", "/v1/datasets"), ("GET", "/v1/me")],
)
def test_every_v1_route_needs_a_key(client: TestClient, method: str, path: str) -> None:
    for headers in ({"Authorization": ""}, as_key("dsk_" + "x" * 43), as_key("nonsense"),
                    {"Authorization": "Basic dXNlcjpwYXNz"}):
        response = client.request(method, path, headers=headers, json=SPIRAL)

        assert response.status_code == 401, (headers, response.text)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "key" in response.json()["detail"] or "Bearer" in response.json()["detail"]


def test_a_bad_body_without_a_key_is_a_401_not_a_422(client: TestClient) -> None:
    response = client.post("/v1/jobs", json={"epochs": -1}, headers={"Authorization": ""})

    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"])
def test_public_routes_need_no_key(client: TestClient, path: str) -> None:
    assert client.get(path, headers={"Authorization": ""}).status_code in (200, 503)


def test_a_revoked_key_is_refused_from_the_next_request(client: TestClient) -> None:
    made = new_tenant(client, "bob")
    key = made["api_key"]
    assert client.get("/v1/me", headers=as_key(key)).status_code == 200

    revoked = client.delete(f"/v1/admin/keys/{made['key_id']}", headers=ADMIN)

    assert revoked.status_code == 204
    refused = client.get("/v1/me", headers=as_key(key))
    assert refused.status_code == 401
    assert refused.json()["detail"] == "unknown or revoked API key"
    assert client.delete(f"/v1/admin/keys/{made['key_id']}", headers=ADMIN).status_code == 404


# --- the operator --------------------------------------------------------------------------


def test_the_admin_api_needs_the_operators_token(client: TestClient) -> None:
    assert client.get("/v1/admin/tenants").status_code == 401  # a tenant's key is not it
    wrong = client.get("/v1/admin/tenants", headers=as_key("wrong-token-but-long-enough"))
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/v1/admin/tenants", headers=ADMIN).status_code == 200


def test_without_an_admin_token_the_admin_api_is_closed(make_client: MakeClient) -> None:
    client = make_client(admin_token=None)

    response = client.get("/v1/admin/tenants", headers=ADMIN)

    assert response.status_code == 401
    assert "DESCENT_ADMIN_TOKEN" in response.json()["detail"]


def test_a_new_tenant_gets_a_key_shown_once_that_works(client: TestClient) -> None:
    made = new_tenant(client, "bob", max_running_jobs=3)

    key = made["api_key"]
    assert key.startswith("dsk_") and len(key) >= 4 + math.ceil(160 / 6)
    me = client.get("/v1/me", headers=as_key(key)).json()
    assert me["tenant"] == {"id": made["tenant"]["id"], "name": "bob"}
    assert me["quotas"]["max_running_jobs"] == 3
    listed = client.get("/v1/admin/tenants", headers=ADMIN).json()["items"]
    bob = next(t for t in listed if t["name"] == "bob")
    assert bob["own_quotas"] == ["max_running_jobs"]
    assert [k["key_id"] for k in bob["keys"]] == [made["key_id"]]
    assert key not in str(listed)  # listed by id and prefix, never the key


def test_tenant_names_are_unique_and_checked(client: TestClient) -> None:
    new_tenant(client, "bob")

    taken = client.post("/v1/admin/tenants", json={"name": "bob"}, headers=ADMIN)
    bad = client.post("/v1/admin/tenants", json={"name": "bob smith"}, headers=ADMIN)
    bad_quota = client.post("/v1/admin/tenants", json={"name": "eve",
                            "quotas": {"max_running_jobs": 0}}, headers=ADMIN)

    assert taken.status_code == 409 and "bob" in taken.json()["detail"]
    assert bad.status_code == 422 and '"bob smith"' in bad.json()["detail"][0]["msg"]
    assert bad_quota.status_code == 422
    assert bad_quota.json()["detail"][0]["loc"][-1] == "max_running_jobs"


def test_the_operator_changes_and_resets_quotas(client: TestClient) -> None:
    made = new_tenant(client, "bob")
    path = f"/v1/admin/tenants/{made['tenant']['id']}"

    changed = client.patch(path, json={"quotas": {"max_active_jobs": 7}}, headers=ADMIN)
    assert changed.status_code == 200
    assert changed.json()["quotas"]["max_active_jobs"] == 7
    reset = client.patch(path, json={"quotas": {"max_active_jobs": None}}, headers=ADMIN)
    assert reset.json()["quotas"]["max_active_jobs"] == 100
    assert reset.json()["own_quotas"] == []
    missing = client.patch("/v1/admin/tenants/tnt_nobody", json={"quotas": {}}, headers=ADMIN)
    assert missing.status_code == 404


def test_a_second_key_works_beside_the_first(client: TestClient) -> None:
    made = new_tenant(client, "bob")

    second = client.post(f"/v1/admin/tenants/{made['tenant']['id']}/keys", headers=ADMIN)

    assert second.status_code == 201
    assert second.json()["api_key"] != made["api_key"]
    for key in (made["api_key"], second.json()["api_key"]):
        assert client.get("/v1/me", headers=as_key(key)).json()["tenant"]["name"] == "bob"


def test_redis_never_holds_a_key_in_clear(
    client: TestClient, redis_client: redis.Redis, key_prefix: str, api_key: str
) -> None:
    keys = [api_key, new_tenant(client, "bob")["api_key"]]
    made = client.post("/v1/admin/tenants", json={"name": "carol"}, headers=ADMIN).json()
    keys.append(made["api_key"])
    keys.append(client.post(f"/v1/admin/tenants/{made['tenant']['id']}/keys",
                            headers=ADMIN).json()["api_key"])
    client.post("/v1/jobs", json=SPIRAL)

    dump = b""
    for name in redis_client.scan_iter(match=f"{key_prefix}:*"):
        dump += name
        kind = redis_client.type(name)
        if kind == b"string":
            dump += redis_client.get(name) or b""
        elif kind == b"hash":
            dump += b"".join(k + v for k, v in redis_client.hgetall(name).items())
        elif kind in (b"set",):
            dump += b"".join(redis_client.smembers(name))
        elif kind == b"zset":
            dump += b"".join(redis_client.zrange(name, 0, -1))
        elif kind == b"list":
            dump += b"".join(redis_client.lrange(name, 0, -1))
    assert len(dump) > 1000
    for key in keys:
        assert key.encode() not in dump
        assert key[4:20].encode() not in dump  # nor a telling piece of it


# --- /v1/me and quotas ------------------------------------------------------------------------


def test_me_shows_quotas_and_usage(client: TestClient) -> None:
    for _ in range(3):
        assert client.post("/v1/jobs", json=SPIRAL).status_code == 202

    me = client.get("/v1/me").json()

    assert me["tenant"]["name"] == "alice"
    assert me["quotas"] == {"max_active_jobs": 100, "max_running_jobs": 2,
                            "submissions_per_minute": 120, "max_job_seconds": 3600,
                            "max_dataset_bytes": 2**30, "max_sweep_trials": 64}
    usage = me["usage"]
    assert usage["active_jobs"] == usage["queued_jobs"] == 3
    assert (usage["dispatched_jobs"], usage["waiting_jobs"]) == (2, 1)
    assert usage["submissions_last_minute"] == 3


def test_over_max_active_jobs_is_a_429_naming_the_quota(client: TestClient) -> None:
    bob = new_tenant(client, "bob", max_active_jobs=2)
    for _ in range(2):
        assert client.post("/v1/jobs", json=SPIRAL, headers=as_key(bob["api_key"])).is_success

    refused = client.post("/v1/jobs", json=SPIRAL, headers=as_key(bob["api_key"]))

    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    body = refused.json()
    assert (body["quota"], body["limit"], body["current"]) == ("max_active_jobs", 2, 2)
    assert "max_active_jobs" in body["detail"] and "2" in body["detail"]
    assert client.post("/v1/jobs", json=SPIRAL).status_code == 202  # alice is not bob


def test_over_submissions_per_minute_is_a_429_with_retry_after(client: TestClient) -> None:
    bob = new_tenant(client, "bob", submissions_per_minute=2)
    for _ in range(2):
        assert client.post("/v1/jobs", json=SPIRAL, headers=as_key(bob["api_key"])).is_success

    refused = client.post("/v1/jobs", json=SPIRAL, headers=as_key(bob["api_key"]))

    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["quota"] == "submissions_per_minute"
    assert refused.json()["retry_after_seconds"] == int(refused.headers["Retry-After"])


def test_a_tenants_max_job_seconds_refuses_with_the_estimate(client: TestClient) -> None:
    bob = new_tenant(client, "bob", max_job_seconds=0.01)
    long_job = {"dataset": "spiral", "epochs": 1000, "batch_size": 10}

    refused = client.post("/v1/jobs", json=long_job, headers=as_key(bob["api_key"]))

    assert refused.status_code == 422
    error = refused.json()["detail"][0]
    assert error["type"] == "cost_limit"
    assert "your quota max_job_seconds" in error["msg"] and "estimated at" in error["msg"]


# --- ownership ------------------------------------------------------------------------------


def test_another_tenants_job_is_a_404_everywhere(client: TestClient) -> None:
    job = client.post("/v1/jobs", json=SPIRAL).json()
    bob = as_key(new_tenant(client, "bob")["api_key"])
    unknown = "f" * 32

    for suffix, method in (("", "GET"), ("/curve", "GET"), ("/metrics", "GET"),
                           ("/cancel", "POST")):
        theirs = client.request(method, f"/v1/jobs/{job['id']}{suffix}", headers=bob)
        nobody = client.request(method, f"/v1/jobs/{unknown}{suffix}", headers=bob)
        assert theirs.status_code == nobody.status_code == 404
        assert theirs.json()["detail"] == nobody.json()["detail"].replace(unknown, job["id"])
    assert client.get("/v1/jobs", headers=bob).json() == {"items": [], "next_cursor": None}
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"  # not cancelled


def test_idempotency_keys_are_per_tenant_over_http(client: TestClient) -> None:
    bob = as_key(new_tenant(client, "bob")["api_key"])
    mine = client.post("/v1/jobs", json=SPIRAL, headers={"Idempotency-Key": "k"})
    theirs = client.post("/v1/jobs", json=SPIRAL, headers={**bob, "Idempotency-Key": "k"})

    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["id"] != theirs.json()["id"]
    assert "Idempotent-Replayed" not in theirs.headers


def test_the_admin_cli_makes_tenants_and_keys(
    redis_url: str, key_prefix: str, client: TestClient, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, tenants: TenantStore,
) -> None:
    from app import admin

    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DESCENT_KEY_PREFIX", key_prefix)

    assert admin.main(["create-tenant", "dave", "--quota", "max_running_jobs=5"]) == 0
    key = capsys.readouterr().out.strip()
    assert client.get("/v1/me", headers=as_key(key)).json()["quotas"]["max_running_jobs"] == 5
    assert admin.main(["create-key", "dave"]) == 0
    second = capsys.readouterr().out.strip()
    assert admin.main(["set-quota", "dave", "max_running_jobs=default"]) == 0
    assert "max_running_jobs=2" in capsys.readouterr().out
    assert admin.main(["list-tenants"]) == 0
    listing = capsys.readouterr().out
    assert "dave" in listing and key not in listing and second not in listing
    dave = tenants.find_tenant("dave")
    assert dave is not None and len(tenants.list_keys(dave.id)) == 2
    first = next(k for k in tenants.list_keys(dave.id) if key.startswith(k["prefix"]))
    assert admin.main(["revoke-key", first["key_id"]]) == 0
    assert client.get("/v1/me", headers=as_key(key)).status_code == 401
    assert client.get("/v1/me", headers=as_key(second)).status_code == 200
    assert admin.main(["create-tenant", "dave"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert admin.main(["create-key", "nobody"]) == 1


def test_a_submission_costs_the_same_round_trips_whatever_the_backlog(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.asyncio.connection
    import redis.connection

    client = make_client(quota_max_active_jobs=1000, quota_submissions_per_minute=1000)
    sent = 0
    original = redis.connection.Connection.send_packed_command
    original_async = redis.asyncio.connection.Connection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        nonlocal sent
        sent += 1
        original(self, command, check_health)

    async def counting_async(self: Any, command: Any, check_health: bool = True) -> None:
        nonlocal sent
        sent += 1
        await original_async(self, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
    monkeypatch.setattr(redis.asyncio.connection.Connection, "send_packed_command",
                        counting_async)

    def round_trips() -> int:
        nonlocal sent
        sent = 0
        assert client.post("/v1/jobs", json=SPIRAL).status_code == 202
        return sent

    round_trips()  # the first one also loads the scripts and opens the connection
    first = round_trips()
    for _ in range(300):  # a long waiting line: 2 jobs sent, the rest wait
        client.post("/v1/jobs", json=SPIRAL)
    assert client.get("/v1/me").json()["usage"]["waiting_jobs"] >= 299
    later = round_trips()

    assert first == later == 2  # the key's check, then the job with its quotas and dispatch


def test_an_unknown_tenant_stays_unknown_whatever_the_operator_tries(
    client: TestClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    path = "/v1/admin/tenants/tnt_nosuchtenant"

    for _ in range(2):
        patched = client.patch(path, json={"quotas": {"max_active_jobs": 5}}, headers=ADMIN)
        assert patched.status_code == 404
    assert client.get(path, headers=ADMIN).status_code == 404
    assert client.post(f"{path}/keys", headers=ADMIN).status_code == 404
    assert redis_client.exists(f"{key_prefix}:tenant:tnt_nosuchtenant") == 0
