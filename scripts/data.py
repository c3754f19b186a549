"""`make data`: make Fashion-MNIST available, from Debian's dataset-fashion-mnist package.

Standard library only, so that it runs before the virtualenv exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "fashion-mnist"
PACKAGE = "dataset-fashion-mnist"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # where the package puts the files
DEFAULT_DATA_DIR = ROOT / ".data"  # what `make run` uses when DESCENT_DATA_DIR is unset
# trainer.datasets.IDX_FILES names the same four files (a test checks that they agree).
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

Run = Callable[[Sequence[str]], int]


def data_dir() -> Path:
    return Path(os.environ.get("DESCENT_DATA_DIR") or DEFAULT_DATA_DIR)


def found(candidates: Sequence[Path]) -> Path | None:
    """The first directory holding all four files."""
    for directory in candidates:
        if all((directory / file).is_file() for file in IDX_FILES):
            return directory
    return None


def run_command(command: Sequence[str]) -> int:
    return subprocess.run(list(command), stdin=subprocess.DEVNULL).returncode


def shown(path: Path) -> str:
    """`path` relative to the checkout when it is inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def make_available(
    user_dir: Path,
    system_dir: Path = SYSTEM_DIR,
    apt_get: str | None = None,
    is_root: bool = False,
    run: Run = run_command,
) -> tuple[bool, str]:
    """(available now, one line saying where it is or what to do)."""
    place = user_dir / NAME
    where = found([place, system_dir])
    if where is not None:
        return True, f"Fashion-MNIST is available in {shown(where)}/"
    if apt_get is not None and is_root:
        print(f"==> installing Debian's {PACKAGE} with apt-get (about 30 MB)", flush=True)
        if (
            run([apt_get, "update", "-q"]) == 0
            and run([apt_get, "install", "-y", "-q", "--no-install-recommends", PACKAGE]) == 0
        ):
            where = found([system_dir])
            if where is not None:
                return True, f"Fashion-MNIST is available in {shown(where)}/"
        how = f"apt-get could not install {PACKAGE} (see above)"
    elif apt_get is not None:
        how = f"run `sudo apt-get install {PACKAGE}`"
    else:
        how = f"install Debian's {PACKAGE} package"
    files = ", ".join(IDX_FILES)
    return False, (
        f"make data: Fashion-MNIST is not installed: {how}, or put its four IDX files "
        f"({files}) in {shown(place)}/ (under $DESCENT_DATA_DIR, else .data/)"
    )


def main() -> int:
    ok, line = make_available(
        data_dir(), apt_get=shutil.which("apt-get"), is_root=os.geteuid() == 0
    )
    print(line, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
