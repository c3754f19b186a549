"""The trainer imports only NumPy and the standard library (sklearn lazily, for digits)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import trainer

TRAINER_DIR = Path(trainer.__file__).parent
SERVICE_PACKAGES = ("redis", "celery", "fastapi", "pydantic", "kombu", "starlette")


def test_importing_the_trainer_loads_no_service_package() -> None:
    modules = sorted(p.stem for p in TRAINER_DIR.glob("*.py") if p.stem != "__init__")
    assert "loop" in modules and "network" in modules
    code = (
        "import importlib, json, sys\n"
        "import trainer\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module('trainer.' + name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=TRAINER_DIR.parent,
    )
    loaded = set(json.loads(completed.stdout))
    assert "trainer.loop" in loaded and "numpy" in loaded
    for package in SERVICE_PACKAGES:
        offenders = [m for m in loaded if m == package or m.startswith(package + ".")]
        assert offenders == [], f"importing trainer loaded {offenders}"
    assert "sklearn" not in loaded  # only when `digits` is actually loaded


def top_level_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        if node.level:  # relative: inside the package
            return ["trainer"]
        return [(node.module or "").split(".")[0]]
    return [alias.name.split(".")[0] for alias in node.names]


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(top-level module, inside a function?) of every import statement in `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.extend((name, in_function) for name in top_level_names(child))
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            visit(child, inner)

    visit(tree, False)
    return found


def test_the_only_third_party_import_is_numpy() -> None:
    allowed = set(sys.stdlib_module_names) | {"numpy", "trainer", "__future__"}
    files = sorted(TRAINER_DIR.glob("*.py"))
    assert len(files) >= 10
    offenders = []
    sklearn_imports = []
    for path in files:
        for name, in_function in imports_of(path):
            if name == "sklearn":
                sklearn_imports.append((path.name, in_function))
            elif name not in allowed:
                offenders.append(f"{path.name}: {name}")
    assert offenders == []
    # scikit-learn only lazily, inside a function of datasets.py
    assert sklearn_imports, "datasets.py should load digits through scikit-learn"
    assert all(where == ("datasets.py", True) for where in sklearn_imports), sklearn_imports


def test_the_ast_scan_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The scan itself can fail: a module-level redis import and a lazy sklearn are told apart."""
    path = tmp_path / "bad.py"
    path.write_text("import redis\nfrom celery import Celery\n"
                    "def f():\n    from sklearn.datasets import load_digits\n")
    assert imports_of(path) == [("redis", False), ("celery", False), ("sklearn", True)]
