"""``check --profile`` / the client profile's ``profile =`` key: the suite serves the client's dialect
and tells the client (CONDUIT_PROFILE); results are compared in every form the dialect gives them."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract_tests.check import run_check
from contract_tests.client_profile import ProfileError, parse_profile

FAST = "contract_tests/client_profiles/python-reference-fast.toml"


def test_the_profile_key_names_a_simulator_profile() -> None:
    assert parse_profile({"profile": "conduit-2025.08"}, "x.toml").dialect == "conduit-2025.08"
    assert parse_profile({}, "x.toml").dialect == "documented"
    with pytest.raises(ProfileError, match="not a simulator profile"):
        parse_profile({"profile": "conduit-1999"}, "x.toml")


def test_reference_client_passes_outcome_and_cleanup_rules_in_the_as_built_dialect(tmp_path: Path) -> None:
    verdicts = tmp_path / "verdicts.json"
    code = run_check(client_profile=FAST, profile="conduit-2025.08", rules="C-OUTCOME,C-CLEANUP,C-LATENCY",
                     verdicts_json=str(verdicts), extra=["-p", "no:cacheprovider"])
    assert code == 0, verdicts.read_text() if verdicts.exists() else "no verdicts"


def test_a_mutant_still_fails_its_rule_in_the_as_built_dialect() -> None:
    code = run_check(client_profile=FAST, profile="conduit-2025.08", rules="C-CLEANUP",
                     client="{python} -m contract_tests.clients.python_client --mutant no-cleanup",
                     extra=["-p", "no:cacheprovider"])
    assert code == 1


def test_selftest_in_the_as_built_dialect(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    code = main(["selftest", "--clients", "python", "--mutants", "no-cleanup", "--no-references",
                 "--profile", "conduit-2025.08", "--numbers", "fast"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "receivers: not applicable to the conduit-2025.08 profile" in out
    assert "mutation score: 1/1 mutants killed" in out
