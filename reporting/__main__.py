"""``python -m reporting RUN_DIR``: render ``RUN_DIR/index.html`` and ``RUN_DIR/junit.xml``
(``merged-junit.xml`` when ``junit.xml`` is one of the inputs: rendering never overwrites them).

Exit codes: 0 rendered, 2 no such run directory (or it cannot be written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from reporting import render


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reporting",
        description="Render a run directory (manifest.json, verdicts, JUnit, load/, timeline.jsonl) as one "
                    "self-contained HTML page (index.html) and one merged JUnit file (junit.xml).")
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="e.g. reports/<run>/")
    args = parser.parse_args(argv)
    if not args.run_dir.is_dir():
        print(f"python -m reporting: error: {args.run_dir}: no such run directory", file=sys.stderr)
        return 2
    try:
        rendered = render(args.run_dir)
    except OSError as exc:
        print(f"python -m reporting: error: cannot write the report: {exc}", file=sys.stderr)
        return 2
    print(rendered.page)
    print(rendered.junit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
