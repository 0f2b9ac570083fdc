"""The package layering, checked by the default suite as well as by ``.ci/run``.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``); this runs the real
``lint-imports`` on them, so a plain ``pytest`` fails on an upward import or a cycle without
anyone having to remember the CI script. A second test plants a violation in a copy of the tree
to show the check is not vacuous: an import inside a function counts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "reporting", "contract_tests", "loadtests", "simulator", "conduit_core")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the packages under ``root``, with ``root`` first on the path."""
    # What the console script runs (importlinter.cli has no ``__main__`` to use with -m).
    command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([*command, "--no-cache"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)


def test_layers_and_cycles_hold() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Contracts: [1-9]\d* kept, 0 broken\.", result.stdout), result.stdout


def test_an_upward_import_inside_a_function_breaks_the_layers(tmp_path: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "node_modules", "*.mjs"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "simulator" / "planted.py").write_text(
        "def report():\n    from reporting import html\n    return html\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "simulator.planted -> reporting.html" in result.stdout
