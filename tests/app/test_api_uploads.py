"""Uploads over HTTP: POST /v1/datasets (a CSV or an .npz, streamed), GET, DELETE, and jobs
that name an upload; each bad file a 422 that says what and where."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from app.store.tenants import TenantStore
from tests.app.conftest import MakeClient

PATH = "/v1/datasets"
KINDS = ("circle", "square", "triangle")


def table_csv(rows: int = 60, seed: int = 0) -> bytes:
    """Three shapes, 4 features around separate centres; labels are words (last column)."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows) % 3
    x = np.array([[0, 0, 5, 5], [5, 0, 0, 5], [0, 5, 5, 0]])[t] + rng.normal(size=(rows, 4))
    lines = ["width,height,depth,weight,shape"]
    lines += [",".join(f"{v:.4f}" for v in row) + f",{KINDS[k]}"
              for row, k in zip(x, t, strict=True)]
    return ("\n".join(lines) + "\n").encode()


def npz_bytes(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def upload(client: TestClient, content: bytes, filename: str = "shapes.csv",
           **fields: Any) -> Any:
    data = {"name": "shapes", **{k: str(v) for k, v in fields.items() if v is not None}}
    return client.post(PATH, files={"file": (filename, content)}, data=data)


def test_a_csv_upload_is_described_listed_and_found_by_name_or_id(client: TestClient) -> None:
    answer = upload(client, table_csv())

    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert answer.headers["location"] == f"{PATH}/{made['id']}"
    assert made["id"].startswith("ds-") and made["kind"] == "upload"
    assert (made["name"], made["n_features"], made["n_classes"]) == ("shapes", 4, 3)
    assert made["classes"] == ["circle", "square", "triangle"]  # sorted: the outputs' order
    assert (made["n_train"], made["n_test"], made["test_fraction"]) == (48, 12, 0.2)
    assert made["preprocess"] == "standardize" and made["label_column"] == "shape"
    assert made["columns"] == ["width", "height", "depth", "weight"]
    assert made["file_name"] == "shapes.csv" and made["file_bytes"] == len(table_csv())
    assert len(made["sha256"]) == 64 and made["bytes"] > 60 * 4 * 4
    assert client.get(f"{PATH}/shapes").json() == made
    assert client.get(f"{PATH}/{made['id']}").json() == made
    listed = client.get(PATH).json()["items"]
    assert [d["kind"] for d in listed].count("builtin") == 5 and listed[-1] == made
    assert client.get("/v1/me").json()["usage"]["dataset_bytes"] == made["bytes"]


def test_an_npz_upload_with_its_own_test_split(client: TestClient) -> None:
    rng = np.random.default_rng(1)
    body = npz_bytes(x=rng.normal(size=(30, 2)), t=np.arange(30) % 2,
                     x_test=rng.normal(size=(8, 2)), t_test=np.arange(8) % 2)

    answer = upload(client, body, "points.npz")

    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert (made["n_train"], made["n_test"], made["test_fraction"]) == (30, 8, None)
    assert made["preprocess"] == "none" and made["classes"] == [0, 1]


def test_the_same_content_is_stored_once(client: TestClient, redis_client: redis.Redis,
                                         key_prefix: str) -> None:
    first = upload(client, table_csv()).json()
    second = client.post(PATH, files={"file": ("again.csv", table_csv())},
                         data={"name": "again"}).json()

    assert first["sha256"] == second["sha256"] and first["id"] != second["id"]
    blobs = {k for k in redis_client.scan_iter(f"{key_prefix}:blob:*") if not k.endswith(b"s")}
    assert len(blobs) == 2  # one blob's hash and its single chunk
    assert client.delete(f"{PATH}/shapes").status_code == 204
    assert client.get(f"{PATH}/again").status_code == 200  # its bytes are still there
    assert client.delete(f"{PATH}/again").status_code == 204
    assert list(redis_client.scan_iter(f"{key_prefix}:blob:*")) == []
    assert client.get("/v1/me").json()["usage"]["dataset_bytes"] == 0


def ragged() -> bytes:
    return b"a,b,label\n1,2,x\n3,4,y\n5,6\n7,8,x\n9,9,y\n"


BAD_FILES = [
    ("pickled objects", "bad.npz",
     npz_bytes(x=np.array([[object()]] * 4, dtype=object), t=np.arange(4) % 2),
     "array x holds Python objects"),
    ("NaN at a known cell", "bad.npz",
     npz_bytes(x=np.where(np.arange(12).reshape(6, 2) == 7, np.nan, 1.0), t=np.arange(6) % 2),
     "x holds NaN or infinity: nan at row 3, column 1"),
    ("NaN in a CSV", "bad.csv", b"a,b,label\n1,2,x\n3,4,y\n5,nan,x\n7,8,y\n",
     "line 4, column 'b' (column 2): nan (NaN or infinity)"),
    ("a ragged line", "bad.csv", ragged(), "line 4 has 2 fields but the header has 3"),
    ("a string in a numeric column", "bad.csv", b"a,b,label\n1,2,x\n3,four,y\n5,6,x\n7,8,y\n",
     "line 3, column 'b' (column 2): 'four' is not a number"),
    ("an empty value", "bad.csv", b"a,b,label\n1,2,x\n3,,y\n5,6,x\n7,8,y\n",
     "line 3, column 'b' (column 2): the value is empty"),
    ("one class only", "bad.csv", b"a,b,label\n1,2,x\n3,4,x\n5,6,x\n",
     "the labels have only one class ('x')"),
    ("a class too small to split", "bad.csv", b"a,b,label\n1,2,x\n3,4,y\n5,6,x\n7,8,x\n",
     "class 'y' has 1 row; each class needs at least 2"),
    ("labels out of range", "bad.npz", npz_bytes(x=np.ones((4, 2)), t=np.array([0, 1, -3, 1])),
     "t has a label out of range 0..999: -3 at index 2"),
    ("x and t of different lengths", "bad.npz", npz_bytes(x=np.ones((5, 2)), t=np.arange(4) % 2),
     "t has 4 labels but x has 5 rows"),
    ("not a zip", "bad.npz", b"PK\x03\x04 and then nothing", "not a readable .npz archive"),
    ("an empty CSV", "bad.csv", b"", "the file is empty: a CSV needs a header row"),
    ("one column", "bad.csv", b"a\n1\n2\n", "the header names 1 column"),
    ("a picture", "bad.png", b"\x89PNG\r\n\x1a\n\x00\x00IHDR", "the header is not UTF-8 text "
     "(byte 0x89 at offset 0): is the file a CSV?"),
    ("a label that is not text", "bad.csv", b"a,label\n1,x\n2,\xff\n3,x\n",
     "line 3, label column 'label': the label is not UTF-8 text"),
]


@pytest.mark.parametrize(("why", "filename", "content", "message"), BAD_FILES,
                         ids=[case[0] for case in BAD_FILES])
def test_each_bad_file_is_a_422_that_says_what_and_where(
    client: TestClient, redis_client: redis.Redis, key_prefix: str,
    why: str, filename: str, content: bytes, message: str,
) -> None:
    answer = upload(client, content, filename)

    assert answer.status_code == 422, answer.text
    (entry,) = answer.json()["detail"]
    assert entry["loc"] == ["body", "file"] and entry["input"] == filename
    assert entry["msg"].startswith(f"{filename}: ")
    assert message in entry["msg"]
    assert list(redis_client.scan_iter(f"{key_prefix}:blob:*")) == []  # nothing kept


@pytest.mark.parametrize(("fields", "loc", "message"), [
    ({"name": None}, "name", "name is required"),
    ({"name": "no spaces"}, "name", "name must be 1 to 64 letters"),
    ({"name": "ds-0123456789abcdef0123"}, "name", "not shaped like a dataset id"),
    ({"preprocess": "scale"}, "preprocess", "preprocess must be one of none, standardize"),
    ({"test_fraction": "1.5"}, "test_fraction", "test_fraction must be a number > 0 and < 1"),
    ({"label_column": "colour"}, "file", "label_column 'colour' is not in the header"),
    ({"colour": "red"}, "colour", "unknown field 'colour'"),
])
def test_each_bad_field_is_a_422_naming_it(
    client: TestClient, fields: dict[str, Any], loc: str, message: str
) -> None:
    data = {"name": "shapes", **fields}
    data = {k: v for k, v in data.items() if v is not None}
    answer = client.post(PATH, files={"file": ("s.csv", table_csv())}, data=data)

    assert answer.status_code == 422, answer.text
    entry = answer.json()["detail"][0]
    assert entry["loc"] == ["body", loc] and message in entry["msg"]


def test_a_body_that_is_not_a_form_with_a_file_is_a_422(client: TestClient) -> None:
    as_json = client.post(PATH, json={"name": "x"})
    no_file = client.post(PATH, data={"name": "x"}, files={"other": ("", b"")})
    text_only = client.post(PATH, files={"name": (None, "x")})

    assert as_json.status_code == 422 and "multipart/form-data" in as_json.text
    assert no_file.status_code == 422
    assert text_only.status_code == 422 and "the form has no file" in text_only.text


def test_a_taken_name_is_a_409(client: TestClient) -> None:
    first = upload(client, table_csv()).json()

    again = upload(client, table_csv(seed=1))
    builtin = client.post(PATH, files={"file": ("d.csv", table_csv())}, data={"name": "digits"})

    assert again.status_code == 409 and first["id"] in again.json()["detail"]
    assert builtin.status_code == 409 and "built-in" in builtin.json()["detail"]


def test_too_large_is_a_413_from_the_declared_length_or_while_streaming(
    make_client: MakeClient,
) -> None:
    client = make_client(max_upload_bytes=50_000)
    big = table_csv(rows=3000)
    assert len(big) > 100_000

    declared = upload(client, big)
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked, read as it comes
        boundary = b"--xyz"
        yield (boundary + b'\r\nContent-Disposition: form-data; name="file"; '
               b'filename="s.csv"\r\n\r\n')
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]
        yield b"\r\n" + boundary + b"--\r\n"

    streamed = client.post(PATH, content=chunks(),
                           headers={"content-type": "multipart/form-data; boundary=xyz"})

    assert declared.status_code == 413 and "DESCENT_MAX_UPLOAD_BYTES" in declared.text
    assert streamed.status_code == 413, streamed.text
    assert "exceeds the limit of 50,000 bytes" in streamed.json()["detail"]
    # (TestClient sends a body whole; tests/e2e/test_uploads.py shows a real server
    # answering before the rest is sent.)


def test_the_tenants_quota_bounds_its_uploads(
    make_client: MakeClient,
) -> None:
    one = len(table_csv())
    client = make_client(quota_max_dataset_bytes=int(one * 1.6))  # one stored upload fits

    assert upload(client, table_csv()).status_code == 201
    second = client.post(PATH, files={"file": ("s.csv", table_csv(seed=2))},
                         data={"name": "second"})

    assert second.status_code == 413
    assert "max_dataset_bytes" in second.json()["detail"]


def test_another_tenants_upload_is_a_404_and_cannot_be_trained_on(
    client: TestClient, make_client: MakeClient, tenants: TenantStore,
) -> None:
    made = upload(client, table_csv()).json()
    other = make_client()
    other.headers["Authorization"] = f"Bearer {tenants.create_tenant('bob')[1]}"

    for ref in ("shapes", made["id"]):
        assert other.get(f"{PATH}/{ref}").status_code == 404
        assert other.delete(f"{PATH}/{ref}").status_code == 404
        job = other.post("/v1/jobs", json={"dataset": ref, "hidden_sizes": [4]})
        assert job.status_code == 422 and job.json()["detail"][0]["loc"] == ["body", "dataset"]
    assert all(d["kind"] == "builtin" for d in other.get(PATH).json()["items"])
    assert client.get(f"{PATH}/shapes").status_code == 200  # untouched


def test_a_job_names_an_upload_which_cannot_be_deleted_while_it_is_queued(
    client: TestClient,
) -> None:
    made = upload(client, table_csv()).json()

    job = client.post("/v1/jobs", json={"dataset": "shapes", "hidden_sizes": [8],
                                        "batch_size": 8})
    check = client.post("/v1/gradient-check", json={"dataset": "shapes", "hidden_sizes": [3],
                                                     "batch_size": 4})
    refused = client.delete(f"{PATH}/shapes")

    assert job.status_code == 202, job.text
    assert job.json()["spec"]["dataset"] == made["id"]  # stored by id: names can be reused
    assert check.status_code == 200 and check.json()["agree"], check.text
    assert refused.status_code == 409 and job.json()["id"] in refused.json()["detail"]
    assert refused.json()["used_by"] == {"kind": "job", "id": job.json()["id"],
                                         "status": "queued"}
    assert client.post(f"/v1/jobs/{job.json()['id']}/cancel").status_code == 202
    assert client.delete(f"{PATH}/{made['id']}").status_code == 204
    assert client.get(f"{PATH}/shapes").status_code == 404
    gone = client.post("/v1/jobs", json={"dataset": made["id"], "hidden_sizes": [8],
                                         "batch_size": 8})
    assert gone.status_code == 422 and "you have no uploads" in gone.text


def test_builtins_are_found_and_not_deleted(client: TestClient) -> None:
    found = client.get(f"{PATH}/digits")

    assert found.status_code == 200 and found.json()["kind"] == "builtin"
    assert client.delete(f"{PATH}/digits").status_code == 409
    assert client.get(f"{PATH}/nothing-here").status_code == 404
