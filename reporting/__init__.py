"""The run report: ``reports/<run>/index.html`` (self-contained) and ``reports/<run>/junit.xml``.

    from reporting import render_report
    render_report(Path("reports/20260101-120000"))      # → reports/20260101-120000/index.html

or ``python -m reporting RUN_DIR``. :mod:`reporting.run_dir` says what a run directory may hold.

Rendering never overwrites what it read: when ``junit.xml`` is an input (the directory of
``conduit-harness check --report DIR``), the merged JUnit goes to ``merged-junit.xml`` and the
input keeps its failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reporting.html import build_html
from reporting.junit import merge_junit, write_junit
from reporting.run_dir import LoadRun, Run, Subject, load_run

__all__ = ["LoadRun", "Rendered", "Run", "Subject", "build_html", "load_run", "merge_junit", "render",
           "render_report", "write_junit"]

JUNIT_NAMES = ("junit.xml", "merged-junit.xml")


@dataclass(frozen=True)
class Rendered:
    page: Path  # index.html
    junit: Path  # the merged JUnit file


def render(run_dir: Path) -> Rendered:
    """Read ``run_dir``, write ``index.html`` and the merged JUnit file into it."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    page = _output(run, "index.html")
    junit = next((run_dir / name for name in JUNIT_NAMES if (run_dir / name).resolve() not in run.inputs),
                 None)
    if junit is None:
        raise OSError(f"{run_dir}: every JUnit output name ({', '.join(JUNIT_NAMES)}) is an input")
    page.write_text(build_html(run), encoding="utf-8")
    write_junit(run.subjects, junit, run.run_id)
    return Rendered(page, junit)


def render_report(run_dir: Path) -> Path:
    """:func:`render`, returning the page's path."""
    return render(run_dir).page


def _output(run: Run, name: str) -> Path:
    path = run.path / name
    if path.resolve() in run.inputs:
        raise OSError(f"{path}: is an input of the report; not overwriting it")
    return path
