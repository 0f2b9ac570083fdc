"""The contract suite's own pytest plugin, loaded by the suite's ``pytest.ini`` (``-p``).

It lives apart from :mod:`contract_tests.plugin` (the ``pytest11`` entry point every project that
installs conduit-harness loads) so that only the suite's runs (``conduit-harness check``) get its
options ``--client``, ``--client-profile``, ``--rules``, ``--seed``, ``--webhook-url``/
``--webhook-secret``, ``--max-rule-seconds``, the tolerances and ``--verdicts-json``; the
``client_profile``, ``client_roles``, ``contract_seed``, ``client_crash`` and ``record_verdict``
fixtures; and the suite's console output and exit code. (The pre-flight, which checks that the
client connects at all before any rule, is :mod:`contract_tests.suite.preflight`.)

The console is the verdicts', not pytest's: ``check`` runs pytest without its terminal reporter
(``-p no:terminal``; ``-v`` brings it back), and this plugin prints one line per rule as it
ends, then the table, then each failure with its numbers, its guide citation, the client's last
stderr lines and a command that reruns it alone. The exit code is decided here from the verdicts
(:data:`EXIT_CODES`), so pytest run directly on the suite gives the same codes as ``check``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from contract_tests.citations import citation
from contract_tests.client_profile import ClientProfile, ProfileError, find_profile
from contract_tests.suite.catalogue import selects, split_patterns, unknown_patterns
from contract_tests.suite.preflight import PREFLIGHT_RULE
from contract_tests.suite.stalls import DEFAULT_MAX_STALL_MS, FIRST_RUNS, RUN_AGAIN, SIDE_BY_SIDE
from contract_tests.timing import Tolerance
from contract_tests.verdict import Outcome, Verdict
from contract_tests.webhook_rules import DEFAULT_SEED

# The exit codes of ``check`` (and of pytest run on the suite), documented in the README.
EXIT_OK, EXIT_VIOLATIONS, EXIT_HARNESS, EXIT_INCONCLUSIVE = 0, 1, 2, 3
EXIT_CODES = {
    EXIT_OK: "every judged rule passed (NOT_APPLICABLE and skipped rules allowed)",
    EXIT_VIOLATIONS: "a rule failed (a contract violation, including a failed pre-flight)",
    EXIT_HARNESS: "usage or harness error: nothing trustworthy was judged (the line says why)",
    EXIT_INCONCLUSIVE: "no rule failed, but at least one could not be judged (INCONCLUSIVE)",
}
STDERR_LINES_SHOWN = 5        # of the client's stderr, under each failure on the console
STDERR_BYTES_KEPT = 8 * 1024  # of the client's stderr, in each verdict's details and the JUnit

VERDICTS = pytest.StashKey[list[Verdict]]()
HARNESS_ERRORS = pytest.StashKey[list[str]]()
SEED = pytest.StashKey[int]()
CRASH = pytest.StashKey[list[str]]()          # the first rule's report of a client that crashed
ITEM_VERDICT = pytest.StashKey[Verdict]()
SKIPPED = pytest.StashKey[dict[str, list[str]]]()  # reason → the cases skipped for it
ORDER = pytest.StashKey[int]()                # an item's place in the catalogue's order
PLACES = pytest.StashKey[dict[str, int]]()    # label → catalogue place, to sort a parallel run's table


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conduit-harness", "conduit-harness contract suite")
    group.addoption("--client", default=None, metavar="CMD", help="command that starts the client under test")
    group.addoption("--client-profile", default=None, metavar="NAME|FILE",
                    help="TOML file with the numbers the client declares, or a bundled profile's name "
                         "(default: the documented numbers)")
    group.addoption("--profile", default=None, metavar="NAME",
                    help="dialect the client speaks (a simulator profile); overrides the client "
                         "profile's profile = key (default documented)")
    group.addoption("--rules", default=None, metavar="PATTERN",
                    help="only rules whose ID matches (glob, comma-separated: 'C-POLL-*,C-AUTH')")
    group.addoption("--seed", type=int, default=None,
                    help="seed for the simulators and the generated webhook bodies (default: a fixed "
                         "one; printed so a failure can be replayed)")
    group.addoption("--webhook-url", default=None, metavar="URL", help="a running webhook receiver to check")
    group.addoption("--webhook-secret", default=None, metavar="SECRET", help="its signing secret")
    group.addoption("--max-rule-seconds", type=float, default=300.0,
                    help="skip a rule whose declared numbers make it wait longer (default 300)")
    group.addoption("--late-tolerance", type=float, default=0.20,
                    help="how late a delay may be, as a fraction (with a 500 ms floor; default 0.20)")
    group.addoption("--early-tolerance-ms", type=float, default=50.0,
                    help="how early a delay may be, in ms (default 50)")
    group.addoption("--client-roles", default=None, help=argparse.SUPPRESS)  # check's probe saw them
    group.addoption("--jobs", type=int, default=1, metavar="N",
                    help="run up to N independent rule cases at once, each in a child process "
                         "(default 1: one after another)")
    group.addoption("--max-stall-ms", type=float, default=DEFAULT_MAX_STALL_MS, metavar="MS",
                    help="judge a FAIL or INCONCLUSIVE again, on a run of its own, when the "
                         f"simulator's event loop stalled longer than MS during it "
                         f"(default {DEFAULT_MAX_STALL_MS:g}; 0: never)")
    group.addoption("--verdicts-json", default=None, metavar="FILE",
                    help="write every verdict (with its numbers and evidence) to FILE as JSON")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "rule(id): the contract rule a test checks (C-*, W-*)")
    config.addinivalue_line("markers", "preflight: the check that the client connects at all")
    config.stash[VERDICTS] = []
    config.stash[HARNESS_ERRORS] = []
    config.stash[CRASH] = []
    config.stash[SKIPPED] = {}
    config.stash[PLACES] = {}
    seed = config.getoption("--seed", None)
    config.stash[SEED] = seed if seed is not None else DEFAULT_SEED
    config.addinivalue_line("markers", "independent: a case with a run of its own, which --jobs may "
                                       "run beside others")
    # Where the verdicts are gathered from the test reports (which carry them from a --jobs child
    # too, see pytest_runtest_makereport).
    config.pluginmanager.register(VerdictCollector(config), "conduit-verdicts")


# -- which rules run ----------------------------------------------------------------------------
def rule_patterns(config: pytest.Config) -> list[str]:
    return split_patterns(config.getoption("--rules"))


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    patterns = rule_patterns(config)
    rules = {item: m.args[0] for item in items if (m := item.get_closest_marker("rule")) is not None}
    known = sorted(set(rules.values()) | {case_name(item) for item in rules})
    unknown = unknown_patterns(patterns, known)
    if unknown:
        raise pytest.UsageError(f"--rules {','.join(unknown)} matches no rule; known: {', '.join(known)}")
    keep, drop = [], []
    for item in items:
        rule = rules.get(item)
        if rule is None or not patterns or any(selects(p, rule, case_name(item)) for p in patterns):
            keep.append(item)
        else:
            drop.append(item)
    # The pre-flight is for the client rules: without any, it has nothing to protect.
    if not any(rules.get(item, "").startswith("C-") for item in keep):
        drop += [i for i in keep if i.get_closest_marker("preflight")]
        keep = [i for i in keep if not i.get_closest_marker("preflight")]
    for place, item in enumerate(keep):
        item.stash[ORDER] = place
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


# -- fixtures -----------------------------------------------------------------------------------
def harness_error(config: pytest.Config, message: str) -> None:
    """Stop the run: something other than the client's behaviour went wrong (exit 2, one line)."""
    config.stash[HARNESS_ERRORS].append(message)
    pytest.exit(message, returncode=EXIT_HARNESS)


def declared_profile(config: pytest.Config) -> ClientProfile:
    """The client profile the options name, with ``--client`` and ``--profile`` applied (raises
    ProfileError, or UsageError for an unknown dialect)."""
    path = config.getoption("--client-profile")
    profile = find_profile(path) if path else ClientProfile()
    command = config.getoption("--client")
    if command:
        profile = ClientProfile(**{**profile.__dict__, "command": command})
    dialect = config.getoption("--profile")
    if dialect:
        from simulator.profiles import REGISTRY

        if dialect not in REGISTRY:
            raise pytest.UsageError(f"--profile {dialect}: not a simulator profile; known: "
                                    f"{', '.join(REGISTRY)}")
        profile = ClientProfile(**{**profile.__dict__, "dialect": dialect})
    return profile


@pytest.fixture(scope="session")
def client_profile(request: pytest.FixtureRequest) -> ClientProfile:
    try:
        return declared_profile(request.config)
    except ProfileError as exc:
        harness_error(request.config, f"--client-profile {exc}")


def ask_roles(profile: ClientProfile) -> set[str]:
    """The roles the client declares in its ``ready`` line (started once to ask). Raises
    ValueError when its command does not parse and DriverError when it does not start."""
    from contract_tests.driver import ClientUnderTest
    from contract_tests.node import NodeUnavailable

    if not profile.command:
        return set()
    try:
        argv = profile.command_argv()
    except (ValueError, NodeUnavailable) as exc:  # ProfileError, or shlex on an unbalanced quote
        raise ValueError(f"--client {profile.command!r}: {exc}") from exc
    client = ClientUnderTest(argv, {
        "CONDUIT_BASE_URL": "http://127.0.0.1:9", "CONDUIT_VIRTUAL_KEY": "vk_rolesprobe",
        "CONDUIT_WEBHOOK_SECRET": "whsec_rolesprobe", "CONDUIT_WEBHOOK_PORT": "0", **profile.env})
    try:
        ready = client.start()
    finally:
        client.stop()
    roles = ready.get("roles") or []
    return {str(r) for r in roles} if isinstance(roles, list) else set()


@pytest.fixture(scope="session")
def client_roles(request: pytest.FixtureRequest, client_profile: ClientProfile) -> set[str]:
    """The client's declared roles. A client that cannot even start is a harness error: no rule
    can be judged. (With ``--jobs`` too it is asked once: the children inherit it.)"""
    from contract_tests.driver import DriverError

    told = request.config.getoption("--client-roles")
    if told is not None and client_profile.command:  # `check` started the client once already
        return {role for role in told.split(",") if role}
    try:
        return ask_roles(client_profile)
    except (ValueError, DriverError) as exc:
        harness_error(request.config, str(exc))


@pytest.fixture(scope="session")
def contract_seed(request: pytest.FixtureRequest) -> int:
    return request.config.stash[SEED]


@pytest.fixture(scope="session")
def contract_tolerance(request: pytest.FixtureRequest) -> Tolerance:
    return Tolerance(late_fraction=request.config.getoption("--late-tolerance"),
                     early_s=request.config.getoption("--early-tolerance-ms") / 1000)


@pytest.fixture
def client_crash(request: pytest.FixtureRequest) -> list[str]:
    """Where a test notes that the client crashed (the first report is kept): later rules then
    say so instead of starting a client that is known to die and waiting out their budgets."""
    return request.config.stash[CRASH]


@pytest.fixture
def record_verdict(request: pytest.FixtureRequest) -> Any:
    """Call with a Verdict (and the client's stderr tail, if any): kept for the table, the JSON and
    the JUnit properties, then turned into the test's outcome: PASS passes, FAIL fails,
    INCONCLUSIVE and NOT_APPLICABLE are skips whose reason starts with the outcome."""

    def record(verdict: Verdict, stderr_tail: str = "") -> Verdict:
        if stderr_tail:
            verdict = with_stderr(verdict, stderr_tail)
            sys.stderr.write(stderr_tail[-STDERR_BYTES_KEPT:])  # the JUnit file keeps it as system-err
        # The test's report carries it to the table (pytest_runtest_makereport), from a child too.
        request.node.stash[ITEM_VERDICT] = verdict
        request.node.user_properties.append(("label", verdict.label))
        cited = citation(verdict.rule)
        if cited is not None:
            request.node.user_properties.append(("cites", str(cited)))
        for name in ("expected", "observed", "tolerance"):
            if getattr(verdict, name):
                # As text (as JUnit writes it): a --jobs child's report travels as plain data.
                request.node.user_properties.append((name, str(getattr(verdict, name))))
        for name, value in verdict.numbers.items():
            request.node.user_properties.append((name, str(value)))
        if verdict.outcome is Outcome.FAIL:
            pytest.fail(verdict.explain(), pytrace=False)
        if verdict.outcome is not Outcome.PASS:
            pytest.skip(f"{verdict.outcome.value}: {verdict.summary}")
        return verdict

    return record


def with_stderr(verdict: Verdict, stderr_tail: str) -> Verdict:
    tail = stderr_tail[-STDERR_BYTES_KEPT:]
    return dataclasses.replace(verdict, details={**verdict.details, "client_stderr_tail": tail})


# -- reports: JUnit names, harness errors, the console --------------------------------------------
def case_name(item: pytest.Item) -> str:
    """The case label (``C-RETRY-AFTER[429]``, ``W-ACCEPT``), or ``PREFLIGHT``."""
    if item.get_closest_marker("preflight"):
        return PREFLIGHT_RULE
    return getattr(getattr(item, "callspec", None), "id", None) or item.name


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    verdict = item.stash.get(ITEM_VERDICT, None)
    case = case_name(item)
    # JUnit (and -v) name the test by its case label, rule ID first (C-RETRY-AFTER[429]), the
    # same in every phase so that JUnit sees one test.
    report.nodeid = f"{item.nodeid.split('::')[0]}::{case}"
    # What the table needs rides on the report as plain attributes, so that it reaches the pytest
    # process from a --jobs child (see pytest_report_to_serializable) as it does in one process.
    report.conduit_case = case  # type: ignore[attr-defined]
    report.conduit_place = item.stash.get(ORDER, -1)  # type: ignore[attr-defined]
    if item.stash.get(RUN_AGAIN, None):  # a side-by-side child's stalled verdict (stalls.py)
        report.conduit_run_again = item.stash[RUN_AGAIN]  # type: ignore[attr-defined]
    if report.failed and verdict is None:
        # Not a verdict: the harness broke (a rule's own bug, a fixture's usage error).
        crash = getattr(report.longrepr, "reprcrash", None)
        lines = str(report.longrepr).strip().splitlines() or ["(no message)"]
        message = crash.message if crash is not None else lines[-1]
        report.conduit_error = f"{case}: {message}"  # type: ignore[attr-defined]
    if verdict is not None and report.when == "call":
        report.conduit_verdict = verdict  # type: ignore[attr-defined]
        if item.config.stash[CRASH]:
            report.conduit_crash = item.config.stash[CRASH][0]  # type: ignore[attr-defined]
        report.conduit_line = progress_line(verdict)  # type: ignore[attr-defined]
    elif report.skipped and verdict is None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.conduit_skipped = reason.removeprefix("Skipped: ")  # type: ignore[attr-defined]
    elif report.failed and verdict is None:
        report.conduit_line = f"{case}  HARNESS ERROR  (see the end)"  # type: ignore[attr-defined]
    return report


def progress_line(verdict: Verdict) -> str:
    return f"{verdict.label}  {verdict.outcome.value}  {verdict.observed or verdict.summary}"


@pytest.hookimpl(wrapper=True)
def pytest_report_to_serializable(config: pytest.Config, report: Any) -> Any:
    """A --jobs child's report goes to the pytest process as data: its verdict as in verdicts.json."""
    data = yield
    if isinstance(data, dict) and isinstance(data.get("conduit_verdict"), Verdict):
        data["conduit_verdict"] = json.loads(json.dumps(data["conduit_verdict"].to_json(), default=str))
    return data


@pytest.hookimpl(wrapper=True)
def pytest_report_from_serializable(config: pytest.Config, data: Any) -> Any:
    report = yield
    if isinstance(report.longrepr, list):  # a skip's (path, line, reason): a tuple before JSON
        report.longrepr = tuple(report.longrepr)
    raw = getattr(report, "conduit_verdict", None)
    if isinstance(raw, dict):
        report.conduit_verdict = Verdict.from_json(raw)
    return report


class VerdictCollector:
    """Gathers the verdicts, skips and harness errors from the test reports as they are logged
    (in the pytest process: a --jobs child's reports are logged there, not in the child)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        config = self.config
        verdict: Verdict | None = getattr(report, "conduit_verdict", None)
        if verdict is not None:
            keep(config, verdict)
        config.stash[PLACES][getattr(report, "conduit_case", "?")] = getattr(report, "conduit_place", -1)
        error = getattr(report, "conduit_error", None)
        if error:
            config.stash[HARNESS_ERRORS].append(error)
        skipped = getattr(report, "conduit_skipped", None)
        if skipped is not None:
            config.stash[SKIPPED].setdefault(skipped, []).append(getattr(report, "conduit_case", "?"))
        crash = getattr(report, "conduit_crash", None)
        if crash and not config.stash[CRASH]:
            config.stash[CRASH].append(crash)  # a --jobs child's: the children forked later see it
        line = getattr(report, "conduit_line", None)
        if line and config.pluginmanager.get_plugin("terminalreporter") is None:  # else pytest reports
            print(line, flush=True)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """With --jobs, put the table, the skipped cases and the JUnit tests in the catalogue's
        order, as a serial run has them (children finish in any order)."""
        config = self.config
        if config.getoption("--jobs", 1) <= 1:
            return
        places = config.stash[PLACES]
        config.stash[VERDICTS].sort(key=lambda v: places.get(v.label, -1))
        for cases in config.stash[SKIPPED].values():
            cases.sort(key=lambda case: places.get(case, -1))
        from _pytest.junitxml import xml_key

        xml = config.stash.get(xml_key, None)
        if xml is not None:
            # (A finished test's reporter keeps only its XML element, named by the case.)
            xml.node_reporters_ordered.sort(key=lambda r: places.get(r.to_xml().get("name"), -1))


def keep(config: pytest.Config, verdict: Verdict) -> None:
    """Add a verdict to the table (a passed pre-flight judged no rule: it stays out of the table
    and verdicts.json; its progress line and, in a serial run, its JUnit test show it ran)."""
    if any(v.label == verdict.label for v in config.stash[VERDICTS]):
        # Rows must tell cases apart; two alike are a bug of the suite, not of the client.
        config.stash[HARNESS_ERRORS].append(
            f"two verdicts labelled {verdict.label}: a rule with several cases must label each")
    if verdict.rule != PREFLIGHT_RULE or not verdict.passed:
        config.stash[VERDICTS].append(verdict)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A suite module that does not import is a harness error; with pytest's reporter off, this
    line is where it is seen."""
    if report.failed:
        lines = str(report.longrepr).strip().splitlines() or ["(no message)"]
        message = f"cannot load {report.nodeid or 'the suite'}: {lines[-1]}"
        print(f"harness error: {message}", file=sys.stderr, flush=True)


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if config.getoption("--client") or config.getoption("--client-profile") or \
            config.getoption("--webhook-url"):
        print(f"conduit-harness check: seed {config.stash[SEED]}", flush=True)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    """With ``--jobs N`` (N > 1): what comes before the first independent case (the pre-flight)
    runs here as usual, the independent cases then run side by side in forked children
    (:mod:`contract_tests.suite.scheduling`), and the rest runs here in order. Otherwise pytest's
    own loop runs everything here, one after another."""
    from contract_tests.suite.scheduling import longest_first, run_side_by_side

    config = session.config
    jobs = config.getoption("--jobs")
    independent = [i for i in session.items if i.get_closest_marker("independent")]
    if jobs <= 1 or len(independent) < 2 or config.option.collectonly:
        return None
    if session.testsfailed and not config.option.continue_on_collection_errors:
        raise session.Interrupted(f"{session.testsfailed} error(s) during collection")
    first = session.items.index(independent[0])
    before, after = session.items[:first], [i for i in session.items[first:] if i not in independent]
    # The session fixtures (profile, roles) stay set up for the children to inherit.
    _run_in_order(session, before, nextitem=independent[0])
    deadline_s = float(config.getini("timeout") or 900)  # pytest-timeout's

    def side_by_side(items: list[pytest.Item], at_once: int) -> list[tuple[pytest.Item, str]]:
        return run_side_by_side(items, at_once, deadline_s, failed=harness_error_report,
                                stop=lambda message: harness_error(config, message))

    if not (session.shouldstop or session.shouldfail):
        config.stash[SIDE_BY_SIDE] = True  # the children inherit it
        again = side_by_side(longest_first(independent, estimated_wait), jobs)
        # A FAIL or INCONCLUSIVE judged while the simulator stalled, judged again with nothing beside it.
        config.stash[SIDE_BY_SIDE] = False
        for item, note in again:
            if session.shouldstop or session.shouldfail:
                break
            config.stash.setdefault(FIRST_RUNS, {})[item.nodeid] = note
            side_by_side([item], 1)
    # Down to what the next item shares (the session), as pytest does between modules.
    session._setupstate.teardown_exact(after[0] if after else None)
    _run_in_order(session, after, nextitem=None)
    return True


def _run_in_order(session: pytest.Session, items: list[pytest.Item], nextitem: pytest.Item | None) -> None:
    for i, item in enumerate(items):
        if session.shouldstop or session.shouldfail:
            return
        following = items[i + 1] if i + 1 < len(items) else nextitem
        item.config.hook.pytest_runtest_protocol(item=item, nextitem=following)


def estimated_wait(item: pytest.Item) -> float:
    """How long a case should take (its rule's estimate with the declared numbers; 0 when it will
    be skipped for its length, or cannot be estimated)."""
    from contract_tests.client_rules import estimated_seconds

    marker = item.get_closest_marker("rule")
    try:
        profile = declared_profile(item.config)
    except (ProfileError, pytest.UsageError):
        return 0.0
    needed = estimated_seconds(marker.args[0], profile, case_name(item)) if marker else 0.0
    return needed if needed <= item.config.getoption("--max-rule-seconds") else 0.0


def harness_error_report(item: pytest.Item, message: str) -> pytest.TestReport:
    """The report of a --jobs child that sent none (it died, or ran out of time)."""
    case = case_name(item)
    return pytest.TestReport(f"{item.nodeid.split('::')[0]}::{case}", item.location, {}, "failed", message,
                             "call", conduit_case=case, conduit_place=item.stash.get(ORDER, -1),
                             conduit_error=f"{case}: {message}",
                             conduit_line=f"{case}  HARNESS ERROR  (see the end)")


def _exit_code(session: pytest.Session, exitstatus: int) -> int:
    config = session.config
    verdicts = config.stash.get(VERDICTS, [])
    if config.stash.get(HARNESS_ERRORS, []):
        return EXIT_HARNESS
    # Before pytest's own status: a failed pre-flight stops the run (pytest calls that
    # "interrupted"), and a violation found before a Ctrl-C is still a violation.
    if any(v.outcome is Outcome.FAIL for v in verdicts):
        return EXIT_VIOLATIONS
    if exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return EXIT_HARNESS
    if not verdicts:
        return EXIT_HARNESS  # nothing judged: never a silent green
    if any(v.outcome is Outcome.INCONCLUSIVE for v in verdicts):
        return EXIT_INCONCLUSIVE
    return EXIT_OK


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    verdicts = config.stash.get(VERDICTS, [])
    path = config.getoption("--verdicts-json", None)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps([_with_citation(v) for v in verdicts], indent=2, default=str))
    code = _exit_code(session, exitstatus)
    if hasattr(config.option, "rules"):  # the suite's run, not a project that loaded the plugin
        _print_summary(config, verdicts, code)
        session.exitstatus = code


def _with_citation(verdict: Verdict) -> dict[str, Any]:
    data = verdict.to_json()
    cited = citation(verdict.rule)
    if cited is not None:
        data["cites"] = cited.to_json()
    return data


def reproduce_command(config: pytest.Config, verdict: Verdict) -> str:
    """The ``check`` command that reruns this one rule with the same seed and subject."""
    words = ["conduit-harness", "check"]
    for option in ("--client", "--client-profile", "--webhook-url", "--webhook-secret"):
        value = config.getoption(option, None)
        if value:
            words += [option, value]
    # The case alone, by its label; the pre-flight runs before any client rule: the cheapest
    # one brings it back.
    rule = verdict.label if verdict.rule.startswith(("C-", "W-")) else "C-AUTH"
    words += ["--rules", rule, "--seed", str(config.stash[SEED])]
    return shlex.join(words)


def _print_summary(config: pytest.Config, verdicts: list[Verdict], code: int) -> None:
    out = sys.stdout
    errors = config.stash.get(HARNESS_ERRORS, [])
    if verdicts:
        width = max(len(v.label) for v in verdicts)
        out.write("\n== contract verdicts ==\n")
        for v in verdicts:
            out.write(f"{v.label:<{width}}  {v.outcome.value}  {v.observed or v.summary}"
                      + (f"  (expected {v.expected})" if v.outcome is Outcome.FAIL and v.expected else "")
                      + "\n")
    # Explained: what did not pass, and a pass with advisories (findings it did not judge).
    explained = [v for v in verdicts if v.outcome in (Outcome.FAIL, Outcome.INCONCLUSIVE)
                 or getattr(v, "advisories", ())]
    for v in explained:
        out.write(f"\n-- {v.label} {v.outcome.value} --\n{v.explain()}\n")
        if v.passed:
            continue
        cited = citation(v.rule)
        if cited is not None:
            out.write(f"  cites:     {cited}\n")
        tail = [line for line in str(v.details.get("client_stderr_tail", "")).splitlines() if line.strip()]
        if tail:
            out.write("  client stderr (last lines):\n" + "".join(
                f"  ! {line[:300]}\n" for line in tail[-STDERR_LINES_SHOWN:]))
        out.write(f"  reproduce: {reproduce_command(config, v)}\n")
    for reason, cases in config.stash.get(SKIPPED, {}).items():
        out.write(f"\nnot run ({len(cases)}): {', '.join(cases)}: {reason}\n")
    for message in errors:
        out.write(f"\nharness error: {message}\n")
    counts = {o: sum(v.outcome is o for v in verdicts) for o in Outcome}
    out.write("\n" + ", ".join(f"{n} {o.value}" for o, n in counts.items() if n)
              + (", " if any(counts.values()) else "")
              + f"exit {code}: {EXIT_CODES[code]}\n")
    out.flush()
