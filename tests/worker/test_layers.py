"""Dependencies point inward: the worker and the store never load the HTTP edge."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def modules_loaded_by(*imports: str) -> set[str]:
    code = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in imports)
        + "print('\\n'.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return set(out.split())


def test_the_worker_and_the_store_load_nothing_of_fastapi_or_the_api() -> None:
    loaded = modules_loaded_by("worker.tasks", "worker.maintenance", "app.store.jobs",
                               "app.store.reaper")

    assert not {m for m in loaded if m.split(".")[0] in ("fastapi", "starlette")}
    assert not {m for m in loaded if m.startswith("app.api")}
    assert "worker.runner" in loaded  # the imports did happen
