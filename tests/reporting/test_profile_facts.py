"""The report shows, beside a rule judged in the as-built dialect, where that dialect differs from the
guide in what the rule exercises: the same rows ``profiles diff`` prints, from the same data."""

from __future__ import annotations

import html as html_escape
import json
from pathlib import Path

import pytest

from contract_tests.verdict import Outcome, Verdict
from reporting import build_html, load_run, merge_junit
from reporting.profile_facts import RULE_SECTIONS, facts_for
from simulator.profiles import load_profile
from simulator.profiles.diff import SECTION_KEYS, diff

AS_BUILT = "conduit-2025.08"
FAST = "contract_tests/client_profiles/python-reference-fast.toml"


def _write(path: Path, verdicts: list[Verdict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([v.to_json() for v in verdicts]), encoding="utf-8")


def _two_dialects(root: Path) -> Path:
    _write(root / "guide.verdicts.json", [Verdict("C-OUTCOME", Outcome.PASS, "ok"),
                                          Verdict("C-AUTH", Outcome.PASS, "ok")])
    _write(root / "built.verdicts.json", [Verdict("C-OUTCOME", Outcome.FAIL, "no completion reported")])
    manifest = {"run": "r", "simulator": {"profile": "documented"}, "subjects": [
        {"name": "guide-client", "verdicts": "guide.verdicts.json"},
        {"name": "built-client", "verdicts": "built.verdicts.json", "dialect": AS_BUILT}]}
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


def test_every_rule_names_known_diff_sections() -> None:
    assert all(set(keys) <= set(SECTION_KEYS) for keys in RULE_SECTIONS.values())


def test_the_facts_are_the_rows_of_profiles_diff() -> None:
    facts = facts_for("C-OUTCOME", AS_BUILT)
    assert facts is not None and facts.problem is None
    expected = [s for s in diff(load_profile("documented"), load_profile(AS_BUILT),
                                only=RULE_SECTIONS["C-OUTCOME"]) if s.rows]
    assert list(facts.sections) == expected and facts.count == sum(len(s.rows) for s in expected)
    assert {s.key for s in facts.sections} == {"statuses", "events", "emissions"}
    assert facts_for("C-OUTCOME", "documented") is None and facts_for("C-OUTCOME", None) is None
    assert facts_for("preflight", AS_BUILT) is None
    unknown = facts_for("C-OUTCOME", "conduit-1999")
    assert unknown is not None and "unknown profile" in (unknown.problem or "")


def test_the_subject_dialect_comes_from_its_entry_else_the_run(tmp_path: Path) -> None:
    run = load_run(_two_dialects(tmp_path))
    dialects = {s.name: s.dialect for s in run.subjects}
    assert dialects == {"guide-client": "documented", "built-client": AS_BUILT}
    suites = {s.get("name"): s for s in merge_junit(run.subjects, run.run_id).getroot().iter("testsuite")}
    props = {p.get("name"): p.get("value") for p in suites["built-client"].iter("property")}
    assert props["dialect"] == AS_BUILT


def test_the_matrix_shows_the_facts_beside_the_rule_whose_outcome_differs(tmp_path: Path) -> None:
    page = html_escape.unescape(build_html(load_run(_two_dialects(tmp_path))))
    facts = facts_for("C-OUTCOME", AS_BUILT)
    assert facts is not None
    assert (f"C-OUTCOME in {AS_BUILT}: {facts.count} differences from documented in what it exercises"
            " · outcome differs between dialects") in page
    assert f"conduit-harness profiles diff documented {AS_BUILT}" in page
    assert f"dialect {AS_BUILT}" in page  # under the subject's name
    for section in facts.sections:
        assert f"<caption>{section.title}</caption>" in page
        for row in section.rows:
            assert f"<td>{row.left}</td><td>{row.right}</td>" in page
    # C-AUTH ran in the guide's dialect only: nothing beside it.
    assert f"C-AUTH in {AS_BUILT}" not in page and page.count('class="dialect-row"') == 1


def test_a_check_report_directory_says_its_dialect(tmp_path: Path) -> None:
    """``check --report DIR`` writes a manifest with the dialect; the report picks it up, whether
    pointed at DIR or at a directory above it that has no manifest."""
    from harness.cli import main

    out = tmp_path / "runs" / "as-built-auth"
    code = main(["check", "--client-profile", FAST, "--profile", AS_BUILT, "--rules", "C-AUTH",
                 "--report", str(out)])
    assert code == 0, (out / "verdicts.json").read_text() if (out / "verdicts.json").exists() else "none"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["subjects"][0]["dialect"] == AS_BUILT
    assert f"--profile {AS_BUILT}" in manifest["command"]
    for root in (out, tmp_path / "runs"):
        run = load_run(root)
        assert [s.dialect for s in run.subjects] == [AS_BUILT]
        page = html_escape.unescape(build_html(run))
        facts = facts_for("C-AUTH", AS_BUILT)
        assert facts is not None and f"C-AUTH in {AS_BUILT}: {facts.count} difference" in page


@pytest.mark.parametrize("rule", sorted(RULE_SECTIONS))
def test_every_rule_has_facts_in_the_as_built_dialect(rule: str) -> None:
    facts = facts_for(rule, AS_BUILT)
    assert facts is not None and facts.count > 0
