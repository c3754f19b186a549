"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against the API
process and a real worker."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Service, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Where the screenshots go (the test's own directory unless DESCENT_SCREENSHOTS says).
SCREENSHOTS = os.environ.get("DESCENT_SCREENSHOTS")


def browser_or_skip() -> Any:
    """Playwright's chromium on the system browser; in CI a missing one is a failure."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "the playwright package is not installed (the dev extra has it)"
    else:
        if Path(CHROMIUM).exists():
            return sync_playwright
        reason = "no chromium (Debian's package `chromium`; .ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(f"CI needs the browser tests: {reason}")
    pytest.skip(reason)


@pytest.fixture
def page(service: Service, tmp_path: Path) -> Iterator[Any]:
    sync_playwright = browser_or_skip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
        context.close()
        browser.close()
        assert errors == [], errors  # no JavaScript error on any page


def shot(page: Any, tmp_path: Path, name: str) -> Path:
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_train_watch_and_cancel_in_the_dashboard(
    service: Service, page: Any, tmp_path: Path
) -> None:
    key = service.client.headers["Authorization"].split()[1]
    page.goto(service.api.url + "/")
    assert page.url.endswith("/ui/")
    page.fill("#api-key", key)
    page.click("button[type=submit]")
    page.wait_for_selector("#submit-form")

    # A learning rate out of range: the 422's message appears beside its field.
    page.select_option("#field-dataset", "digits")
    page.fill("#field-learning_rate", "99")
    page.click("#submit")
    page.wait_for_selector("#error-learning_rate:not(:empty)")
    message = page.inner_text("#error-learning_rate")
    assert "learning_rate" in message and "99" in message
    assert "invalid" in (page.get_attribute("#field-learning_rate", "class") or "")
    shot(page, tmp_path, "dashboard-422")

    page.fill("#field-learning_rate", "0.2")
    page.fill("#field-hidden_sizes", "256")
    page.select_option("#field-activation", "relu")
    page.fill("#field-batch_size", "4")
    page.fill("#field-epochs", "30")  # a few seconds: long enough to watch it grow
    page.click("#submit")
    page.wait_for_selector("#loss-chart")

    # Live: the curve's point count grows while the job runs (seen from the page alone).
    def running_points() -> int | None:
        if page.inner_text("#job-status") != "running":
            return None
        return int(page.get_attribute("#loss-chart", "data-points") or 0) or None

    first = wait_for(running_points, 60, "points of the running job")
    wait_for(lambda: (running_points() or 0) > first, 60, "the curve to grow while running")
    shot(page, tmp_path, "dashboard-running")
    page.wait_for_selector("#test-accuracy", timeout=120_000)
    assert page.locator("#epochs tr").count() == 30
    assert page.locator("#confusion tbody tr").count() == 10
    assert page.inner_text("#job-status") == "succeeded"
    assert page.inner_text("#test-accuracy").endswith("%")
    shot(page, tmp_path, "dashboard-job")

    # Cancel a second job from its page.
    job_id = service.submit(dataset="digits", hidden_sizes=[256], epochs=1000,
                            batch_size=8)["id"]
    page.goto(f"{service.api.url}/ui/#/jobs/{job_id}")
    page.wait_for_selector("#cancel:not([hidden])")
    page.click("#cancel")
    page.wait_for_selector("#job-status [data-status=cancelled]", timeout=60_000)
    assert service.job(job_id)["status"] == "cancelled"

    page.goto(f"{service.api.url}/ui/#/")
    page.wait_for_selector(f"tr.job[data-id='{job_id}']")
    shot(page, tmp_path, "dashboard-list")


def test_a_sweeps_page_shows_its_leaderboard_chart_and_the_winners_test(
    service: Service, page: Any, tmp_path: Path
) -> None:
    body = {"name": "dashboard rates",
            "base": {"dataset": "digits", "hidden_sizes": [32], "batch_size": 32, "epochs": 6},
            "method": "grid", "space": {"learning_rate": {"values": [0.00001, 0.1, 0.5, 10.0]}},
            "max_concurrent": 2}
    answer = service.client.post("/v1/sweeps", json=body)
    assert answer.status_code == 202, answer.text
    sweep_id = answer.json()["id"]
    key = service.client.headers["Authorization"].split()[1]
    page.goto(service.api.url + "/ui/")
    page.fill("#api-key", key)
    page.click("button[type=submit]")
    page.wait_for_selector(f"#sweeps tr[data-id='{sweep_id}']")
    page.click(f"#sweeps tr[data-id='{sweep_id}']")

    page.wait_for_selector("#sweep-status [data-status=succeeded]", timeout=180_000)
    page.wait_for_selector("#sweep-test-accuracy")
    sweep = service.client.get(f"/v1/sweeps/{sweep_id}").json()
    rows = page.query_selector_all("#leaderboard tr")
    assert [int(r.get_attribute("data-trial")) for r in rows] == [
        t["trial"] for t in sweep["trials"]]  # best first, as the API ranks them
    assert rows[0].get_attribute("class") == "job winner"
    assert page.get_attribute("#sweep-chart", "data-trials") == "4"
    accuracy = page.inner_text("#sweep-test-accuracy")
    assert accuracy == f"{100 * sweep['test']['accuracy']:.2f}%"
    notes = page.inner_text("#leaderboard")
    assert "may be too small" in notes  # the rate of 0.00001 barely moved the loss
    shot(page, tmp_path, "dashboard-sweep")

    # A losing trial's page says why it has no test metrics, and links back.
    loser = sweep["trials"][-1]
    page.click(f"#leaderboard tr[data-trial='{loser['trial']}']")
    page.wait_for_selector("#sweep-link")
    if loser["status"] == "succeeded":
        page.wait_for_selector("#no-test")
    page.click("#sweep-link")
    page.wait_for_selector("#leaderboard tr")
