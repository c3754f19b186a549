"""Bad input, found by a fuzzer: schemathesis drives every operation of the API's own
OpenAPI against a running API and worker (examples, coverage, fuzzing and stateful phases);
no answer may be a server error, and every answer must match what the OpenAPI declares
(status codes, headers and bodies)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts.stack import RedisServer, stack_env, start_api, start_worker

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.mark.skipif(not SCHEMATHESIS.exists(), reason="schemathesis is not installed")
def test_no_server_errors_and_every_answer_matches_the_openapi(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # Its own database and prefix; jobs the fuzzer submits must be tiny (1 s estimated at
    # most), so that the worker it keeps busy never slows the rest of the suite.
    env = stack_env(redis_server.url_for(5), DESCENT_KEY_PREFIX="fuzz",
                    DESCENT_MAX_JOB_SECONDS="1")
    worker = start_worker(env, name="fuzz", log=tmp_path / "worker.log",
                          args=["--without-mingle", "--without-gossip"])
    api = start_api(env, log=tmp_path / "api.log", args=["--no-access-log"])
    try:
        worker.wait_online(60)
        api.wait_ready(60, watch=[worker])
        # Every check but "schema-valid data is accepted": a spec can be valid JSON Schema
        # and still be refused, rightly, with a 422 that says why (a dataset that is not
        # here, early stopping without a validation set, a job over the cost limit).
        run = subprocess.run(
            [str(SCHEMATHESIS), "run", f"{api.url}/openapi.json", "--checks", "all",
             "--exclude-checks", "positive_data_acceptance",
             "--max-examples", "30", "--generation-deterministic", "--request-timeout", "20",
             "--no-color"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,  # its cache dir
        )
    finally:
        api.stop()
        worker.stop()

    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert "Server error" not in run.stdout
