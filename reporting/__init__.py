"""The run report: ``reports/<run>/index.html`` (self-contained) and ``reports/<run>/junit.xml``.

    from reporting import render_report
    render_report(Path("reports/20260101-120000"))      # → reports/20260101-120000/index.html

or ``python -m reporting RUN_DIR``. :mod:`reporting.run_dir` says what a run directory may hold.
"""

from __future__ import annotations

from pathlib import Path

from reporting.html import build_html
from reporting.junit import merge_junit, write_junit
from reporting.run_dir import LoadRun, Run, Subject, load_run

__all__ = ["LoadRun", "Run", "Subject", "build_html", "load_run", "merge_junit", "render_report",
           "write_junit"]


def render_report(run_dir: Path) -> Path:
    """Read ``run_dir``, write ``index.html`` and ``junit.xml`` into it; returns the page's path."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    page = run_dir / "index.html"
    page.write_text(build_html(run), encoding="utf-8")
    write_junit(run.subjects, run_dir / "junit.xml", run.run_id)
    return page
