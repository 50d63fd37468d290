"""The wheel ships every package and module under eventstore/ and projections/, with their py.typed markers.

Builds the wheel from a copy of the source tree (the checkout stays clean) with the installed setuptools, so no
package index is needed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("eventstore", "projections")


def source_files() -> set[str]:
    """Every module and marker the wheel must hold, as paths inside it."""
    files = set()
    for top in SHIPPED:
        for path in (ROOT / top).rglob("*"):
            if path.suffix == ".py" or path.name == "py.typed":
                files.add(path.relative_to(ROOT).as_posix())
    return files


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, tree / name)
    for top in SHIPPED:
        shutil.copytree(ROOT / top, tree / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    build = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    completed = subprocess.run([sys.executable, "-c", build, str(out)], cwd=tree, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return zipfile.ZipFile(out / completed.stdout.strip().splitlines()[-1])


def test_every_package_module_and_marker_is_in_the_wheel(wheel):
    expected = source_files()
    assert {"eventstore/py.typed", "projections/py.typed", "eventstore/cli/__init__.py"} <= expected
    assert expected - set(wheel.namelist()) == set()


def test_every_package_has_a_py_typed_marker():
    packages = {path.parent for top in SHIPPED for path in (ROOT / top).rglob("__init__.py")}
    tops = {ROOT / top for top in SHIPPED}
    # A marker in each top-level package covers its subpackages (PEP 561); each top-level one needs its own.
    assert tops <= packages
    assert all((top / "py.typed").is_file() for top in tops)


def test_the_wheel_declares_the_license(wheel):
    metadata = next(name for name in wheel.namelist() if name.endswith(".dist-info/METADATA"))
    text = wheel.read(metadata).decode()
    assert "License-Expression: MIT" in text
    assert any(name.endswith("licenses/LICENSE") for name in wheel.namelist())
