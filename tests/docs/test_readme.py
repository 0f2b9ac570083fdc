"""The README and ``docs/`` against the code (issue 9, outcome 8): what they show must exist.

- every ``conduit-harness ...`` command line (code blocks and inline code) parses with the real
  parser;
- every ``--option`` named in inline code is an option of some ``conduit-harness`` command, or is
  listed below as another tool's;
- every relative link, and every repository path named in inline code, points at a file or
  directory inside the repository; nothing refers to the unshipped ``../shared`` documents.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from harness.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Options the documents mention that belong to other programs, and whose they are.
FOREIGN_OPTIONS = {
    "--mutant": "the reference clients and receivers (contract_tests/clients, contract_tests/receivers)",
    "--master": "Locust, passed through by `load -- ...`",
    "--worker": "Locust, passed through by `load -- ...`",
    "--quick": "the benchmark scripts in benchmarks/",
    "--benchmark-json": "pytest-benchmark",
}
# Paths in inline code that are written at run time, not shipped.
GENERATED = ("reports/",)

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
LONG_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# A repository path: a directory (trailing slash) or a file in one with one of the project's
# suffixes; this leaves out media types and version strings such as `application/json` or `Conduit-LLM/1.0`.
# Bare file names (`summary.json`) are names within a directory the text has just named: left out.
REPO_PATH = re.compile(r"^[A-Za-z_][\w.-]*(/[\w.*-]+)*"
                       r"(/|/[\w.*-]+\.(md|py|toml|ya?ml|mjs|js|json|ini|txt|cfg|html))$")


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _prose(text: str) -> str:
    """The document without its fenced code blocks."""
    return FENCE.sub("", text)


def command_lines(text: str) -> list[str]:
    """``conduit-harness`` invocations in fenced blocks (prompts dropped, continuations joined)
    and in inline code, except synopses with ``[optional]`` parts."""
    found = [span for span in INLINE.findall(_prose(text))
             if span.startswith("conduit-harness ") and "[" not in span]
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            line = line.split("  #", 1)[0].split(" # ", 1)[0]
            words = shlex.split(line) if "conduit-harness" in line else []
            for start, word in enumerate(words):
                if word == "conduit-harness" or word.endswith("/conduit-harness"):
                    found.append(shlex.join(words[start:]))
                    break
    return found


def _all_options(parser: argparse.ArgumentParser) -> set[str]:
    options = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                options |= _all_options(sub)
    return options


EXAMPLES = [(document, line) for document in DOCUMENTS for line in command_lines(document.read_text())]


def test_the_readme_shows_command_lines() -> None:
    assert len([line for document, line in EXAMPLES if document.name == "README.md"]) >= 3


@pytest.mark.parametrize(("document", "line"), EXAMPLES, ids=[f"{_id(d)}: {c}" for d, c in EXAMPLES])
def test_command_line_parses(document: Path, line: str) -> None:
    argv = shlex.split(line)[1:]
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{_id(document)}: `{line}` is refused (exit {exc.code}): {errors.getvalue().strip()}")


@pytest.mark.parametrize("document", DOCUMENTS, ids=_id)
def test_every_option_named_exists(document: Path) -> None:
    known = _all_options(build_parser()) | set(FOREIGN_OPTIONS)
    named = {option for span in INLINE.findall(_prose(document.read_text()))
             for option in LONG_OPTION.findall(span)}
    assert sorted(named - known) == [], f"{_id(document)} names options no command has"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_id)
def test_every_relative_link_resolves_inside_the_repository(document: Path) -> None:
    broken = []
    for target in LINK.findall(document.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        resolved = (document.parent / target.split("#", 1)[0]).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(target)
    assert broken == [], f"{_id(document)} links outside the repository or to nothing"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_id)
def test_every_path_named_exists(document: Path) -> None:
    text = document.read_text()
    assert "../shared" not in text, f"{_id(document)} refers to ../shared, which is not shipped"
    missing = []
    for span in INLINE.findall(_prose(text)):
        for word in span.replace(",", " ").split():
            if not REPO_PATH.match(word) or word.startswith(GENERATED):
                continue
            base = ROOT if (ROOT / word.split("/", 1)[0]).exists() else document.parent
            if not any(base.glob(word.rstrip("/"))):
                missing.append(word)
    assert missing == [], f"{_id(document)} names paths that do not exist"
