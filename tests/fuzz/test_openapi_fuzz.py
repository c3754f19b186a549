"""Bad input, found by a fuzzer: schemathesis drives every operation of the API's own
OpenAPI against a running API and worker (examples, coverage, fuzzing and stateful phases);
no answer may be a server error, and every answer must match what the OpenAPI declares
(status codes, headers and bodies).

Two runs, each with the credentials its operations take: the tenants' operations with a
tenant's API key, then the operator's (/v1/admin/*) with DESCENT_ADMIN_TOKEN. Each run also
checks that its operations refuse a request without them (schemathesis's ignored_auth)."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.stack import RedisServer, make_tenant, stack_env, start_api, start_worker

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
ADMIN_PATHS = "^/v1/admin/"


def schemathesis(url: str, credential: str, paths: list[str], cwd: Path) -> tuple[int, int]:
    """One schemathesis run against `url` that sends `credential` as its Bearer token, on
    the operations that `paths` (its path filter options) select, checked; (operations
    tested, operations in the OpenAPI)."""
    # Every check but "schema-valid data is accepted": a spec can be valid JSON Schema
    # and still be refused, rightly, with a 422 that says why (a dataset that is not
    # here, early stopping without a validation set, a job over the cost limit).
    run = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{url}/openapi.json", "--checks", "all",
         "--exclude-checks", "positive_data_acceptance",
         "-H", f"Authorization: Bearer {credential}", *paths,
         "--max-examples", "30", "--generation-deterministic", "--request-timeout", "20",
         "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=cwd,  # its cache dir
    )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert "Server error" not in run.stdout
    # Its credential was accepted: not every answer of an operation was a 401.
    assert "Authentication failed" not in run.stdout, run.stdout[-4000:]
    selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", run.stdout)
    assert selected is not None, run.stdout[-4000:]
    chosen, total, tested = map(int, selected.groups())
    assert tested == chosen > 0, run.stdout[-4000:]  # a filter that selects nothing passes
    return tested, total


@pytest.mark.skipif(not SCHEMATHESIS.exists(), reason="schemathesis is not installed")
def test_no_server_errors_and_every_answer_matches_the_openapi(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # Its own database and prefix; jobs the fuzzer submits must be tiny (1 s estimated at
    # most), so that the worker it keeps busy never slows the rest of the suite, and so
    # must the gradient checks the API computes itself.
    admin_token = secrets.token_urlsafe(24)
    env = stack_env(redis_server.url_for(5), DESCENT_KEY_PREFIX="fuzz",
                    DESCENT_MAX_JOB_SECONDS="1", DESCENT_MAX_INLINE_SECONDS="0.5",
                    DESCENT_ADMIN_TOKEN=admin_token)
    worker = start_worker(env, name="fuzz", log=tmp_path / "worker.log",
                          args=["--without-mingle", "--without-gossip"])
    api = start_api(env, log=tmp_path / "api.log", args=["--no-access-log"])
    try:
        worker.wait_online(60)
        api.wait_ready(60, watch=[worker])
        api_key = make_tenant(env, "fuzz")
        # The tenant's run first: the operator's may revoke the tenant's key (its stateful
        # phase lists the tenants' keys and deletes them).
        tested, total = schemathesis(api.url, api_key, ["--exclude-path-regex", ADMIN_PATHS],
                                     tmp_path)
        admin_tested, _ = schemathesis(api.url, admin_token,
                                       ["--include-path-regex", ADMIN_PATHS], tmp_path)
    finally:
        api.stop()
        worker.stop()
    assert tested + admin_tested == total  # every operation, in one run or the other
