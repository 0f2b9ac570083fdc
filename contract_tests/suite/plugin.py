"""The contract suite's own pytest plugin, loaded by the suite's ``pytest.ini`` (``-p``).

It lives apart from :mod:`contract_tests.plugin` (the ``pytest11`` entry point every project that
installs conduit-harness loads) so that only the suite's runs (``conduit-harness check``) get its
options ``--client``, ``--client-profile``, ``--rules``, ``--webhook-url``/``--webhook-secret``,
``--max-rule-seconds``, the tolerances and ``--verdicts-json``; the ``client_profile``,
``contract_run``-building and ``record_verdict`` fixtures; and the table of verdicts at the end.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest

from contract_tests.client_profile import ClientProfile, ProfileError, find_profile
from contract_tests.timing import Tolerance
from contract_tests.verdict import Verdict

VERDICTS = pytest.StashKey[list[Verdict]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conduit-harness", "conduit-harness contract suite")
    group.addoption("--client", default=None, metavar="CMD", help="command that starts the client under test")
    group.addoption("--client-profile", default=None, metavar="NAME|FILE",
                    help="TOML file with the numbers the client declares, or a bundled profile's name "
                         "(default: the documented numbers)")
    group.addoption("--rules", default=None, metavar="PATTERN",
                    help="only rules whose ID matches (glob, comma-separated: 'C-POLL-*,C-AUTH')")
    group.addoption("--webhook-url", default=None, metavar="URL", help="a running webhook receiver to check")
    group.addoption("--webhook-secret", default=None, metavar="SECRET", help="its signing secret")
    group.addoption("--max-rule-seconds", type=float, default=300.0,
                    help="skip a rule whose declared numbers make it wait longer (default 300)")
    group.addoption("--late-tolerance", type=float, default=0.20,
                    help="how late a delay may be, as a fraction (with a 500 ms floor; default 0.20)")
    group.addoption("--early-tolerance-ms", type=float, default=50.0,
                    help="how early a delay may be, in ms (default 50)")
    group.addoption("--verdicts-json", default=None, metavar="FILE",
                    help="write every verdict (with its numbers and evidence) to FILE as JSON")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "rule(id): the contract rule a test checks (C-*, W-*)")
    config.stash[VERDICTS] = []


def rule_patterns(config: pytest.Config) -> list[str]:
    raw = config.getoption("--rules") or ""
    return [p.strip() for p in raw.split(",") if p.strip()]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    patterns = rule_patterns(config)
    if not patterns:
        return
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("rule")
        if marker is None or any(fnmatch.fnmatchcase(marker.args[0], p) for p in patterns):
            keep.append(item)
        else:
            drop.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def client_profile(request: pytest.FixtureRequest) -> ClientProfile:
    config = request.config
    path = config.getoption("--client-profile")
    try:
        profile = find_profile(path) if path else ClientProfile()
    except ProfileError as exc:
        raise pytest.UsageError(str(exc)) from exc
    command = config.getoption("--client")
    if command:
        profile = ClientProfile(**{**profile.__dict__, "command": command})
    return profile


@pytest.fixture(scope="session")
def client_roles(client_profile: ClientProfile) -> set[str]:
    """The roles the client declares in its ``ready`` line (started once to ask)."""
    if not client_profile.command:
        return set()
    from contract_tests.driver import ClientUnderTest, DriverError
    from contract_tests.node import NodeUnavailable

    try:
        argv = client_profile.command_argv()
    except (ProfileError, NodeUnavailable) as exc:
        raise pytest.UsageError(str(exc)) from exc
    client = ClientUnderTest(argv, {
        "CONDUIT_BASE_URL": "http://127.0.0.1:9", "CONDUIT_VIRTUAL_KEY": "vk_rolesprobe",
        "CONDUIT_WEBHOOK_SECRET": "whsec_rolesprobe", "CONDUIT_WEBHOOK_PORT": "0", **client_profile.env})
    try:
        ready = client.start()
    except DriverError as exc:
        raise pytest.UsageError(str(exc)) from exc
    finally:
        client.stop()
    roles = ready.get("roles") or []
    return {str(r) for r in roles} if isinstance(roles, list) else set()


@pytest.fixture(scope="session")
def contract_tolerance(request: pytest.FixtureRequest) -> Tolerance:
    return Tolerance(late_fraction=request.config.getoption("--late-tolerance"),
                     early_s=request.config.getoption("--early-tolerance-ms") / 1000)


@pytest.fixture
def record_verdict(request: pytest.FixtureRequest) -> Any:
    """Call with a Verdict: kept for the summary table and the JUnit properties, then asserted."""

    def record(verdict: Verdict) -> Verdict:
        request.config.stash[VERDICTS].append(verdict)
        for name in ("expected", "observed", "tolerance"):
            if getattr(verdict, name):
                request.node.user_properties.append((name, getattr(verdict, name)))
        for name, value in verdict.numbers.items():
            request.node.user_properties.append((name, str(value)))
        assert verdict.passed, verdict.explain()
        return verdict

    return record


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("--verdicts-json", None)
    if path:
        verdicts = session.config.stash.get(VERDICTS, [])
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps([v.to_json() for v in verdicts], indent=2, default=str))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    verdicts = config.stash.get(VERDICTS, [])
    if not verdicts:
        return
    terminalreporter.section("contract verdicts")
    width = max(len(v.rule) for v in verdicts)
    for v in verdicts:
        terminalreporter.write_line(
            f"{v.rule:<{width}}  {v.outcome.value}  {v.observed or v.summary}"
            + (f"  (expected {v.expected})" if not v.passed and v.expected else ""))
