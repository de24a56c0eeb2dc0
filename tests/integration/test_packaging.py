"""``pip install .`` adds one top-level name, ``keyledger``, with every package of the tree and the SQL."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.env import clean_env
from tests.support.paths import REPO_ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel (no dependencies fetched)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                    "--wheel-dir", str(out), str(REPO_ROOT)], check=True, capture_output=True, timeout=300)
    return next(out.glob("keyledger-*.whl"))


def test_the_wheel_claims_only_the_keyledger_name(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"keyledger"}
    packages = {str(Path(name).parent) for name in names if name.endswith("__init__.py")}
    tree = {"keyledger/" + str(path.parent.relative_to(REPO_ROOT))
            for folder in ("domain", "projections", "services") for path in (REPO_ROOT / folder).rglob("__init__.py")}
    assert packages == tree, "pyproject's package list and the tree disagree"
    assert any(name.startswith("keyledger/services/storage/schema/") and name.endswith(".sql") for name in names)


def test_the_installed_package_runs_from_anywhere(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    code = ("import keyledger.services.cli.main as m, keyledger.services.storage.migrations as g; "
            "print(m.__file__); print(len(g.available_migrations()))")
    env = clean_env({"PYTHONPATH": str(target)})
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out[0].startswith(str(target)) and int(out[1]) >= 6
