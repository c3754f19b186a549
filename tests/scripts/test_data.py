"""`make data` (scripts/data.py): Fashion-MNIST from Debian's package, or what to do instead."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from scripts import data
from trainer.datasets import IDX_FILES

APT = "/usr/bin/apt-get"
INSTALL = [APT, "install", "-y", "-q", "--no-install-recommends", "dataset-fashion-mnist"]


class Apt:
    """Records the commands it is asked to run; `install` puts the files in place."""

    def __init__(self, system_dir: Path, works: bool = True) -> None:
        self.system_dir = system_dir
        self.works = works
        self.commands: list[list[str]] = []

    def __call__(self, command: Sequence[str]) -> int:
        self.commands.append(list(command))
        if command[1] == "install" and self.works:
            put_files(self.system_dir)
        return 0 if self.works else 100


def put_files(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in data.IDX_FILES:
        (directory / name).write_bytes(b"")


def test_it_looks_for_the_files_the_trainer_reads() -> None:
    assert list(data.IDX_FILES) == [name for name, _ in IDX_FILES]


def test_files_already_in_the_data_directory_need_no_install(tmp_path: Path) -> None:
    put_files(tmp_path / "data" / "fashion-mnist")
    apt = Apt(tmp_path / "system")
    ok, line = data.make_available(tmp_path / "data", tmp_path / "system", APT, True, apt)
    assert ok and str(tmp_path / "data" / "fashion-mnist") in line
    assert apt.commands == []


def test_as_root_with_apt_get_it_installs_the_debian_package(tmp_path: Path) -> None:
    apt = Apt(tmp_path / "system")
    ok, line = data.make_available(tmp_path / "data", tmp_path / "system", APT, True, apt)
    assert ok and str(tmp_path / "system") in line
    assert apt.commands == [[APT, "update", "-q"], INSTALL]


def test_a_failed_install_says_so_and_what_else_to_do(tmp_path: Path) -> None:
    apt = Apt(tmp_path / "system", works=False)
    ok, line = data.make_available(tmp_path / "data", tmp_path / "system", APT, True, apt)
    assert not ok
    assert "apt-get could not install dataset-fashion-mnist" in line
    assert str(tmp_path / "data" / "fashion-mnist") in line


def test_without_root_it_says_to_use_sudo_or_the_data_directory(tmp_path: Path) -> None:
    apt = Apt(tmp_path / "system")
    ok, line = data.make_available(tmp_path / "data", tmp_path / "system", APT, False, apt)
    assert not ok and apt.commands == []
    assert "sudo apt-get install dataset-fashion-mnist" in line
    assert f"in {tmp_path / 'data' / 'fashion-mnist'}/" in line
    assert all(name in line for name in data.IDX_FILES)
    assert "\n" not in line


def test_without_apt_it_names_the_package_and_the_data_directory(tmp_path: Path) -> None:
    apt = Apt(tmp_path / "system")
    ok, line = data.make_available(tmp_path / "data", tmp_path / "system", None, True, apt)
    assert not ok and apt.commands == []
    assert "install Debian's dataset-fashion-mnist package" in line
    assert f"in {tmp_path / 'data' / 'fashion-mnist'}/" in line
