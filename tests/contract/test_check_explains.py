"""``check`` explains itself: a pre-flight that names the cause once, labelled rows that cite the
guide, the client's stderr, a command that replays a failure, a quiet console, and exit codes
that say what happened (0 pass, 1 violation, 2 usage or harness error, 3 inconclusive).

Everything runs as a user would: ``conduit-harness check`` subprocesses against the bundled
Python reference client with its fast profile, on small ``--rules`` subsets.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from contract_tests.citations import CITATIONS
from contract_tests.suite.catalogue import catalogue

ROOT = Path(__file__).resolve().parents[2]
HARNESS = [sys.executable, "-m", "harness.cli"]
FAST = "python-reference-fast"
PYTHON_CLIENT = f"{shlex.quote(sys.executable)} -m contract_tests.clients.python_client"


def harness(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARNESS, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_every_rule_is_cited_or_says_why_not() -> None:
    for entry in catalogue():
        cited = entry.cited
        assert cited is not None, entry.rule
        assert cited.line
        assert (cited.section and cited.quote) or cited.beyond, entry.rule
        assert len(cited.quote) <= 60, f"{entry.rule}: keep quotes to a few words"
    assert set(CITATIONS) == {e.rule for e in catalogue()} | {"PREFLIGHT"}


def test_list_rules_prints_the_catalogue() -> None:
    done = harness("check", "--list-rules", timeout=60)
    assert done.returncode == 0, done.stderr
    for entry in catalogue():
        assert entry.rule in done.stdout
    assert "C-RETRY-AFTER[429], C-RETRY-AFTER[503]" in done.stdout
    assert '"Exponential backoff: 0, 2, 10, 30 seconds"' in done.stdout
    assert "beyond the guide:" in done.stdout


def test_an_unknown_rule_exits_2_and_lists_the_known_ones() -> None:
    done = harness("check", "--client-profile", FAST, "--rules", "C-POLL-*,C-NOPE", timeout=60)
    assert done.returncode == 2
    assert "--rules C-NOPE matches no rule" in done.stderr
    assert "C-POLL-INTERVAL" in done.stderr and "W-ACCEPT" in done.stderr


@pytest.mark.parametrize(("args", "cause"), [
    (("--client", f"{shlex.quote(sys.executable)} -c 'import sys; sys.exit(3)'"),
     "exited with code 3 before its ready line"),
    (("--client", "python -c 'unbalanced"), "does not parse as a command line: No closing quotation"),
    (("--client", "/no/such/client --flag"), "cannot start client"),
    (("--client-profile", "{nan_profile}"), "polling.interval_ms: must be a whole number"),
])
def test_harness_errors_exit_2_fast_with_one_line(args: tuple[str, ...], cause: str, tmp_path: Path) -> None:
    profile = tmp_path / "nan.toml"
    profile.write_text(f'command = "{PYTHON_CLIENT}"\n[polling]\ninterval_ms = nan\n')
    args = tuple(a.replace("{nan_profile}", str(profile)) for a in args)
    started = time.monotonic()
    done = harness("check", *args, "--rules", "C-POLL-INTERVAL", timeout=60)
    assert time.monotonic() - started < 10
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and cause in lines[0], done.stderr


def test_a_client_that_cannot_connect_fails_the_preflight_once(tmp_path: Path) -> None:
    profile = tmp_path / "wrong-key.toml"
    profile.write_text(f'command = "{PYTHON_CLIENT}"\n[env]\n'
                       'CONDUIT_VIRTUAL_KEY = "vk_not_the_suites_key_0123456789"\n')
    done = harness("check", "--client-profile", str(profile), "--rules", "C-*", "--report", str(tmp_path))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    verdicts = json.loads((tmp_path / "verdicts.json").read_text())
    assert [(v["label"], v["outcome"]) for v in verdicts] == [("PREFLIGHT", "FAIL")]
    assert "negotiate answered 401 (unknown key): send the key the suite gives" in done.stdout
    assert done.stdout.count("answered 401") == 1  # said once, in the failure's explanation
    cases = ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    [case] = list(cases)
    assert case.get("name") == "PREFLIGHT"
    assert "negotiate failed: HTTP 401" in (case.findtext("system-err") or "")  # the client's stderr


def test_a_failure_cites_the_guide_and_prints_a_command_that_replays_it(tmp_path: Path) -> None:
    client = f"{PYTHON_CLIENT} --mutant polls-too-often"
    done = harness("check", "--client-profile", FAST, "--client", client, "--seed", "7",
                   "--rules", "C-POLL-INTERVAL,C-RETRY-AFTER", "--junit", str(tmp_path / "j.xml"))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    out = done.stdout
    assert "Traceback" not in out + done.stderr and "=====" not in out  # no framework output
    assert 'cites:     guide, Quick Start › Polling for Task Status: "Wait 5 seconds before next poll"' in out
    assert "client stderr (last lines):" in out
    names = [c.get("name") for c in ET.parse(tmp_path / "j.xml").getroot().iter("testcase")]
    assert names == ["PREFLIGHT", "C-POLL-INTERVAL", "C-RETRY-AFTER[429]", "C-RETRY-AFTER[503]"]
    assert len(set(names)) == len(names)
    [command] = [line.split("reproduce: ", 1)[1] for line in out.splitlines() if "reproduce: " in line]
    words = shlex.split(command)
    assert words[:2] == ["conduit-harness", "check"]
    assert words[words.index("--rules") + 1] == "C-POLL-INTERVAL"
    assert words[words.index("--seed") + 1] == "7"
    replay = harness(*words[1:])
    assert replay.returncode == 1
    assert "C-POLL-INTERVAL  FAIL" in replay.stdout and "C-RETRY-AFTER" not in replay.stdout


CRASHING_CLIENT = '''
"""The Python reference client, except that it dies when told to poll (stdout passed through)."""
import subprocess, sys

child = subprocess.Popen([sys.executable, "-m", "contract_tests.clients.python_client"],
                         stdin=subprocess.PIPE)
for line in sys.stdin:
    if '"via": "polling"' in line:
        sys.stderr.write("boom: polling is not implemented\\n")
        child.kill()
        sys.exit(3)
    child.stdin.write(line.encode())
    child.stdin.flush()
child.stdin.close()
sys.exit(child.wait())
'''


def test_a_client_that_crashes_mid_run_is_reported_at_once(tmp_path: Path) -> None:
    script = tmp_path / "crashing_client.py"
    script.write_text(textwrap.dedent(CRASHING_CLIENT))
    started = time.monotonic()
    done = harness("check", "--client-profile", FAST, "--client", f"{shlex.quote(sys.executable)} {script}",
                   "--rules", "C-POLL-LIMIT,C-POLL-STOP,C-AUTH", "--report", str(tmp_path),
                   # One rule after another: side by side, C-POLL-STOP would be running (and crash
                   # the client on its own) before C-POLL-LIMIT's crash is known.
                   "--jobs", "1")
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    verdicts = {v["label"]: v for v in json.loads((tmp_path / "verdicts.json").read_text())}
    assert "PREFLIGHT" not in verdicts  # it passed: no rule, so no row
    assert verdicts["C-POLL-LIMIT"]["outcome"] == "FAIL"
    assert "exited with code 3" in verdicts["C-POLL-LIMIT"]["summary"]
    assert "boom: polling is not implemented" in verdicts["C-POLL-LIMIT"]["summary"]
    assert verdicts["C-POLL-STOP"]["outcome"] == "INCONCLUSIVE"
    assert "exited with code 3 during C-POLL-LIMIT" in verdicts["C-POLL-STOP"]["summary"]
    assert elapsed < 20  # C-POLL-LIMIT alone would wait ~8 s with these numbers, the crash far less


SUITE_INI = ROOT / "contract_tests" / "suite" / "pytest.ini"
OUTCOME_TEST = '''
from contract_tests.verdict import Outcome, Verdict

def test_one(record_verdict):
    record_verdict(Verdict("C-POOL", Outcome.{outcome}, "what was found"))
'''


@pytest.mark.parametrize(("outcome", "code"), [("PASS", 0), ("FAIL", 1), ("INCONCLUSIVE", 3),
                                                ("NOT_APPLICABLE", 0)])
def test_exit_codes_come_from_the_verdicts(outcome: str, code: int, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_outcome=OUTCOME_TEST.format(outcome=outcome))
    result = pytester.runpytest_subprocess("-c", str(SUITE_INI), "--rootdir", str(pytester.path),
                                           "-p", "no:terminal", "--client-profile", FAST)
    assert result.ret == code, result.outlines[-10:]


def test_a_usage_error_inside_a_fixture_exits_2(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_profile="def test_one(client_profile):\n    pass\n")
    result = pytester.runpytest_subprocess("-c", str(SUITE_INI), "--rootdir", str(pytester.path),
                                           "--client-profile", "no/such.toml")
    assert result.ret == 2
    assert "no such file" in result.stdout.str() + result.stderr.str()


def test_a_client_that_never_says_ready_exits_2_after_the_deadline() -> None:
    from contract_tests.driver import READY_TIMEOUT_S

    started = time.monotonic()
    done = harness("check", "--client", f"{shlex.quote(sys.executable)} -c 'import time; time.sleep(120)'",
                   "--rules", "C-AUTH", timeout=120)
    assert time.monotonic() - started < READY_TIMEOUT_S + 10
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert f"sent no ready line within {READY_TIMEOUT_S:g} s" in line


def test_rules_take_ids_globs_and_case_labels() -> None:
    from contract_tests.suite.catalogue import known_names, selects, unknown_patterns

    names = known_names()
    assert "C-RETRY-AFTER[503]" in names and "C-RETRY-AFTER" in names
    assert unknown_patterns(["C-POLL-*", "C-RETRY-AFTER[503]", "W-ACCEPT", "C-NOPE", "C-RETRY-AFTER[404]"],
                            names) == ["C-NOPE", "C-RETRY-AFTER[404]"]
    assert selects("C-RETRY-AFTER[503]", "C-RETRY-AFTER", "C-RETRY-AFTER[503]")
    assert not selects("C-RETRY-AFTER[503]", "C-RETRY-AFTER", "C-RETRY-AFTER[429]")
    assert selects("C-RETRY-*", "C-RETRY-AFTER", "C-RETRY-AFTER[429]")


def test_a_harness_bug_in_a_rule_exits_2_with_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bug='''
import pytest

@pytest.mark.rule("C-POOL")
def test_one(record_verdict):
    raise RuntimeError("the rule itself broke")
''')
    result = pytester.runpytest_subprocess("-c", str(SUITE_INI), "--rootdir", str(pytester.path),
                                           "-p", "no:terminal")
    assert result.ret == 2
    assert "harness error: test_one: RuntimeError: the rule itself broke" in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


def test_the_preflight_fix_for_each_refusal() -> None:
    from contract_tests.suite.preflight import fix_for

    assert "the key must be sent on negotiate too" in fix_for("negotiate", "missing key")
    assert "`Authorization: Bearer <key>` or `?access_token=<key>`" in fix_for("negotiate", "missing key")
    assert "CONDUIT_VIRTUAL_KEY" in fix_for("negotiate", "unknown key")
    assert "on the connection too" in fix_for("WebSockets", "missing key")
    assert "every REST call" in fix_for("rest", "missing key")
