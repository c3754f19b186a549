"""Your data in, your model out, in the dashboard: a real browser (Debian's chromium, driven
by Playwright) uploads a CSV, trains on it, downloads the model and predicts with it, against
the API process and a real worker."""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from scripts.stack import make_tenant
from tests.e2e import test_dashboard
from tests.e2e.conftest import Service, wait_for
from tests.e2e.test_dashboard import shot

page = test_dashboard.page  # the browser fixture (chromium, or a skip that says why)

CLASSES = ("setosa", "versicolor", "virginica")
# Each class's rows lie around its own centre: well apart, so a few epochs separate them.
CENTRES = {"setosa": [1.0, 1.0, 1.0, 1.0], "versicolor": [5.0, 9.0, 5.0, 9.0],
           "virginica": [9.0, 5.0, 9.0, 5.0]}


def flowers_csv(rows_per_class: int = 30) -> bytes:
    """90 rows: four numeric features and a string label in the last column."""
    rng = np.random.default_rng(7)
    lines = ["sepal_length,sepal_width,petal_length,petal_width,species"]
    for _ in range(rows_per_class):
        for label in CLASSES:
            x = np.array(CENTRES[label]) + rng.normal(0.0, 0.4, size=4)
            lines.append(",".join(f"{v:.3f}" for v in x) + f",{label}")
    return ("\n".join(lines) + "\n").encode()


def log_in(service: Service, page: Any, key: str | None = None) -> None:
    key = key or service.client.headers["Authorization"].split()[1]
    page.goto(service.api.url + "/ui/")
    page.fill("#api-key", key)
    page.click("button[type=submit]")
    page.wait_for_selector("#submit-form")


def upload(page: Any, name: str, file_name: str, content: bytes) -> None:
    page.set_input_files("#upload-file", files=[
        {"name": file_name, "mimeType": "text/csv", "buffer": content}])
    page.fill("#upload-name", name)
    page.click("#upload")


def test_upload_train_download_and_predict_in_the_dashboard(
    service: Service, page: Any, tmp_path: Path
) -> None:
    name = f"flowers-{uuid.uuid4().hex[:6]}"
    log_in(service, page)
    page.click("#datasets-link")
    page.wait_for_selector("#upload-form")
    page.wait_for_selector("#builtins tr[data-name=digits]")

    # A bad file first: the 422 says what and where, beside the file field.
    upload(page, name, "bad.csv", b"a,b,label\n1,2,x\n3,four,y\n")
    page.wait_for_selector("#upload-error-file:not(:empty)")
    message = page.inner_text("#upload-error-file")
    assert "bad.csv" in message and "line 3" in message and "'four'" in message, message
    assert "invalid" in (page.get_attribute("#upload-file", "class") or "")
    assert page.locator(f"#uploads tr[data-name='{name}']").count() == 0
    shot(page, tmp_path, "dashboard-upload-422")

    # The good file: the answer is shown, and the upload listed with its string labels.
    upload(page, name, "flowers.csv", flowers_csv())
    page.wait_for_selector("#upload-done")
    assert page.inner_text("#upload-error-file") == ""
    dataset_id = page.get_attribute("#upload-done", "data-id")
    dataset = service.client.get(f"/v1/datasets/{dataset_id}").json()
    assert dataset["name"] == name and sorted(dataset["classes"]) == sorted(CLASSES)
    row = page.locator(f"#uploads tr[data-id='{dataset_id}']")
    row.wait_for()
    listed = row.inner_text()
    assert name in listed and "flowers.csv" in listed and "virginica" in listed, listed
    shot(page, tmp_path, "dashboard-datasets")

    # Train on it through the submit form (the upload is offered by name).
    row.locator("a.train-on").click()
    page.wait_for_selector("#submit-form")
    assert page.input_value("#field-dataset") == name
    page.fill("#field-hidden_sizes", "8")
    page.select_option("#field-activation", "relu")
    page.fill("#field-learning_rate", "0.1")
    page.fill("#field-batch_size", "8")
    page.fill("#field-epochs", "20")
    shot(page, tmp_path, "dashboard-train-on-upload")
    page.click("#submit")
    page.wait_for_selector("#loss-chart")
    job_id = page.url.rsplit("/", 1)[1]
    assert service.job(job_id)["spec"]["dataset"] == dataset_id  # stored by id, shown by name
    assert name in page.inner_text("#job-dataset")
    page.wait_for_selector("#test-accuracy", timeout=120_000)
    assert page.inner_text("#job-status") == "succeeded"

    # The confusion matrix and the per-class table name the upload's own labels.
    metrics = service.client.get(f"/v1/jobs/{job_id}/metrics").json()["test"]
    labels = [c["label"] for c in metrics["per_class"]]
    assert labels == dataset["classes"]
    header = page.locator("#confusion thead th.label").all_inner_texts()
    assert header == labels
    assert page.locator("#confusion tbody th.label").all_inner_texts() == labels
    assert page.locator("#per-class tbody td.label").all_inner_texts() == labels

    # The model out: an .npz that NumPy loads alone.
    page.wait_for_selector("#download-model")
    with page.expect_download() as info:
        page.click("#download-model")
    download = info.value
    assert download.suggested_filename == f"descent-model-{job_id}.npz"  # the API's name
    page.wait_for_selector("#download-state:has-text('saved as')")
    content = Path(download.path()).read_bytes()
    assert zipfile.is_zipfile(io.BytesIO(content))
    with np.load(io.BytesIO(content)) as model:
        assert {"W1", "b1", "W2", "b2", "meta"} <= set(model.files)
        assert model["W1"].shape == (4, 8)

    # Predict: a row of the wrong length is a 422 shown beside the rows, in words.
    page.fill("#predict-rows", "1, 2, 3")
    page.click("#predict")
    page.wait_for_selector("#error-instances:not(:empty)")
    assert "4 numbers" in page.inner_text("#error-instances")
    page.fill("#predict-rows", ",".join(map(str, CENTRES["setosa"])) + "\n"
              + ",".join(map(str, CENTRES["virginica"])))
    page.click("#predict")
    page.wait_for_selector("#predictions")
    assert page.inner_text("#error-instances") == ""
    predicted = page.locator("#predictions tbody td.label").all_inner_texts()
    assert predicted == ["setosa", "virginica"]
    shot(page, tmp_path, "dashboard-upload-job")

    # A JSON array works too.
    page.fill("#predict-rows", f"[{CENTRES['versicolor']}]")
    page.click("#predict")
    wait_for(lambda: page.locator("#predictions tbody td.label").all_inner_texts()
             == ["versicolor"], 30, "the JSON row's prediction")

    # Deleting the upload while a job trains on it: a 409, said in words; then, once that
    # job has ended, the upload goes. The job is estimated at about 20 s, so it is still
    # queued or running when the delete is tried; it is cancelled right after.
    busy = service.submit(dataset=name, hidden_sizes=[1024, 1024], epochs=1000,
                          batch_size=1)["id"]
    page.goto(f"{service.api.url}/ui/#/datasets")
    row = page.locator(f"#uploads tr[data-id='{dataset_id}']")
    row.wait_for()
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button.delete").click()
    page.wait_for_selector("#delete-error .error")
    refusal = page.inner_text("#delete-error")
    assert name in refusal and busy in refusal and "cancel" in refusal, refusal
    assert page.get_attribute("#delete-blocker", "href") == f"#/jobs/{busy}"
    shot(page, tmp_path, "dashboard-delete-409")
    assert service.client.post(f"/v1/jobs/{busy}/cancel").status_code in (200, 202)
    service.wait_status(busy, ("cancelled",), timeout=60)

    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button.delete").click()
    row.wait_for(state="detached")
    assert page.inner_text("#delete-error") == ""
    assert service.client.get(f"/v1/datasets/{dataset_id}").status_code == 404

    # The job that trained on it keeps its page and its model.
    page.goto(f"{service.api.url}/ui/#/jobs/{job_id}")
    page.wait_for_selector("#download-model")
    assert service.client.get(f"/v1/jobs/{job_id}/model").status_code == 200


def test_a_file_over_the_quota_is_refused_beside_the_file_field(
    service: Service, page: Any, tmp_path: Path
) -> None:
    key = make_tenant(service.env, f"small-{uuid.uuid4().hex[:6]}", max_dataset_bytes=4096)
    log_in(service, page, key)
    page.click("#datasets-link")
    page.wait_for_selector("#upload-form")
    upload(page, "big", "big.csv", flowers_csv(rows_per_class=2000))  # about 200 KB
    page.wait_for_selector("#upload-error-file:not(:empty)")
    message = page.inner_text("#upload-error-file")
    assert "4,096" in message and "max_dataset_bytes" in message, message
    assert page.inner_text("#upload-state") == ""
    assert page.locator("#uploads tr.upload").count() == 0
    shot(page, tmp_path, "dashboard-upload-413")
