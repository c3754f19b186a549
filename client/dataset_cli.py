"""`descent datasets`, `upload`, `dataset` and `dataset-delete`: the built-in datasets and
your own data in. Registered on client.cli's app (which imports this)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from client.cli import app, call, client, emit, fail, out, state


def size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    value = n / 1000
    for unit in ("kB", "MB"):
        if value < 1000:
            return f"{value:,.1f} {unit}"
        value /= 1000
    return f"{value:,.1f} GB"


def classes_text(classes: list[Any], width: int = 60) -> str:
    text = ", ".join(str(c) for c in classes)
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command()
def upload(
    file: Annotated[Path, typer.Argument(help="A .csv with a header row, or an .npz with x "
                                         "and t (and x_test, t_test).", show_default=False)],
    name: Annotated[str, typer.Option(help="What jobs will call it (--dataset NAME).",
                                      show_default=False)],
    label_column: Annotated[str | None, typer.Option(
        help="A CSV's label column (default: the last).", show_default=False)] = None,
    test_fraction: Annotated[float | None, typer.Option(
        help="Rows held out as the test set when the file has none (default 0.2).",
        show_default=False)] = None,
    preprocess: Annotated[str | None, typer.Option(
        help="none or standardize (default: standardize for CSV, none for .npz).",
        show_default=False)] = None,
) -> None:
    """Upload a dataset of your own; a bad file is refused saying what and where."""
    if not file.is_file():
        fail(f"{file}: no such file")
    with client() as descent:
        made = call(lambda: descent.upload(file, name, label_column=label_column,
                                           test_fraction=test_fraction, preprocess=preprocess))
    if state.json:
        emit("dataset", made)
        return
    split = ("its own test split" if made["test_fraction"] is None
             else f"{made['test_fraction']:g} held out")
    out.print(f"uploaded [bold]{made['name']}[/] ({made['id']}): {made['n_train']:,} training "
              f"rows + {made['n_test']:,} test rows ({split}), {made['n_features']:,} features, "
              f"{made['n_classes']} classes: {classes_text(made['classes'])}", highlight=False)
    out.print(f"preprocess {made['preprocess']}; stored {size(made['bytes'])} "
              f"(sha256 {made['sha256'][:12]}…)", highlight=False)
    out.print(f"train on it: descent train --dataset {made['name']} --hidden 32 --follow",
              highlight=False)


@app.command()
def dataset(ref: Annotated[str, typer.Argument(help="A built-in's name, or one of your "
                                               "uploads' name or id.")]) -> None:
    """One dataset, in full."""
    with client() as descent:
        found = call(lambda: descent.dataset(ref))
    if state.json:
        emit("dataset", found)
    else:
        out.print_json(json.dumps(found))


@app.command("dataset-delete")
def dataset_delete(ref: Annotated[str, typer.Argument(help="One of your uploads' name or "
                                                      "id.")]) -> None:
    """Delete one of your uploads (refused while a queued or running job uses it)."""
    with client() as descent:
        call(lambda: descent.delete_dataset(ref))
    if state.json:
        emit("deleted", {"dataset": ref})
    else:
        out.print(f"deleted {ref}")


NUMBERS = ("train", "test", "features", "stored")


def columns(title: str, *names: str) -> Table:
    table = Table(title=title)
    for name in names:
        table.add_column(name, no_wrap=name in ("name", "id", *NUMBERS),
                         justify="right" if name in NUMBERS else "left")
    return table


@app.command()
def datasets() -> None:
    """The built-in datasets (shapes, and whether each is available here), then your
    uploads."""
    with client() as descent:
        items = call(descent.datasets)
    if state.json:
        for item in items:
            emit("dataset", item)
        return
    builtins = columns("built-in datasets", "name", "available", "train", "test", "features",
                       "classes", "how to get it")
    uploads = columns("your uploads", "name", "id", "train", "test", "features", "classes",
                      "preprocess", "stored")
    for item in items:
        sizes = (f"{item['n_train']:,}", f"{item['n_test']:,}", f"{item['n_features']:,}")
        if item.get("kind") == "upload":
            uploads.add_row(item["name"], item["id"], *sizes,
                            f"{item['n_classes']}: {classes_text(item['classes'], 24)}",
                            item["preprocess"], size(item["bytes"]))
        else:
            builtins.add_row(item["name"], "yes" if item["available"] else "[yellow]no[/]",
                             *sizes, str(item["n_classes"]), item.get("hint") or "")
    out.print(builtins)
    if uploads.row_count:
        out.print(uploads)
    else:
        out.print("no uploads yet: descent upload FILE.csv --name NAME")
