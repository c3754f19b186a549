"""9. The dashboard in Debian's chromium (Playwright): a job page with a 100,000-point curve,
timed by the browser's own performance marks (app.js marks when the curve has arrived and
when it is drawn). The server sends the curve downsampled to about the chart's width."""

from __future__ import annotations

import shutil
import uuid
from typing import Any

from bench.service.harness import Plan, Row, Stack, job_spec
from bench.service.log import log
from bench.service.polling import CurveWriter, drop_messages
from bench.service.stats import median

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
POINTS = 100_000


def measure(stack: Stack, plan: Plan) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    rounds = max(3, plan.recovery_rounds * 2)
    log(f"9. dashboard: a {POINTS:,}-point curve in chromium, {rounds} page loads")
    stack.stop_worker()  # this process writes the job's curve itself
    job, _ = stack.store.create_job(job_spec("fashion-mnist", 1), tenant=stack.tenant_id,
                                    name="dashboard bench")
    job_id, token = job["id"], uuid.uuid4().hex
    drop_messages(stack, job_id)
    if not stack.holder.acquire_lease(job_id, token, 3600) or \
            stack.holder.start_attempt(job_id, token) != 1:
        raise RuntimeError(f"could not start the simulated job {job_id}")
    writer = CurveWriter(stack.holder, job_id, token, 1)
    for _ in range(POINTS // 10_000):
        writer.append(10_000)
    url = f"{stack.http.base_url}/ui/#/jobs/{job_id}"
    fetched, drawn, points = [], [], 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--no-sandbox", "--disable-gpu"])
        for _ in range(rounds):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_init_script(
                f"sessionStorage.setItem('descent-api-key', '{stack.api_key}')")
            page = context.new_page()
            page.goto(url)
            page.wait_for_function(
                "performance.getEntriesByName('descent:curve-drawn').length > 0",
                timeout=60_000)
            marks = page.evaluate(
                "() => ['descent:curve-fetched', 'descent:curve-drawn'].map("
                "n => performance.getEntriesByName(n)[0].startTime)")
            points = int(page.get_attribute("#loss-chart", "data-points") or 0)
            fetched.append(marks[0])
            drawn.append(marks[1] - marks[0])
            context.close()
        browser.close()
    stack.holder.finish(job_id, "cancelled", token=token)
    result = {"fetched": median(fetched), "drawn": median(drawn), "points": points,
              "rounds": rounds}
    log(f"dashboard: curve arrived {result['fetched']:.0f} ms after navigation, drawn "
        f"{result['drawn']:.0f} ms later ({points} points drawn)")
    return result


def rows(result: dict[str, Any]) -> list[Row]:
    return [
        (f"9 dashboard, {POINTS:,}-point job: navigation -> curve arrived (median)",
         f"{result['fetched']:.0f} ms", "(report)", ""),
        ("9   curve arrived -> drawn (median)",
         f"{result['drawn']:.0f} ms ({result['points']:,} points drawn, of {POINTS:,})",
         "(report)", ""),
    ]
