"""check_receiver against receivers the suite did not start: plain aiohttp apps inside the test
(checked by URL and secret alone, as the driver protocol describes), and the CLI."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import shlex
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from contract_tests.receivers import PREVIOUS_SECRET_DEFAULT, python_receiver_command
from contract_tests.verdict import Outcome, Verdict
from contract_tests.webhook_rules import (
    RULE_IDS,
    ConduitSender,
    RequestBudgetExceeded,
    Target,
    check_no_crash,
    check_raw_body,
    check_receiver,
    check_reject,
)
from contract_tests.webhook_strategies import REJECT_CASES, reserialises_differently
from tests.receivers import SECRET

ROOT = Path(__file__).resolve().parents[2]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/hooks/conduit", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/conduit"
    finally:
        await runner.cleanup()


def users_receiver(processed: list[dict[str, Any]]) -> Handler:
    """How a user might write a correct receiver with aiohttp."""
    seen: set[str] = set()

    async def handle(request: web.Request) -> web.Response:
        if request.method != "POST":
            return web.Response(status=405)
        raw = await request.read()
        if request.content_type != "application/json":
            return web.Response(status=415)
        expected = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Conduit-Signature", ""), expected):
            return web.Response(status=401)
        try:
            event = json.loads(raw)
        except (ValueError, RecursionError):
            return web.Response(status=400)
        if not isinstance(event, dict):
            return web.Response(status=400)
        if expected not in seen:
            seen.add(expected)
            processed.append({"obs": "webhook", "task_id": event.get("task_id"),
                              "event_type": event.get("event_type"), "accepted": True})
        return web.json_response({"received": True})

    return handle


async def test_check_receiver_against_a_plain_aiohttp_receiver() -> None:
    processed: list[dict[str, Any]] = []
    async with serving(users_receiver(processed)) as url:
        without = await check_receiver(url, SECRET)
        with_observations = await check_receiver(url, SECRET, observations=lambda: processed,
                                                 rules=["W-DUPLICATE", "W-REJECT"])
    assert [v.rule for v in without] == list(RULE_IDS)
    assert all(v.passed for v in without), "\n".join(v.explain() for v in without)
    duplicate = next(v for v in without if v.rule == "W-DUPLICATE")
    assert "not checked" in duplicate.summary and duplicate.details["processed_once_checked"] is False
    assert all(v.passed for v in with_observations), "\n".join(v.explain() for v in with_observations)
    assert with_observations[0].details["processed"] == 1
    for verdict in without:  # JSON-ready for reports
        json.dumps(verdict.to_json())


async def test_the_guides_reserialising_receiver_fails_raw_body_with_the_bytes() -> None:
    """The guide's bug in Python: HMAC over the re-serialised JSON instead of the raw bytes."""
    async def handle(request: web.Request) -> web.Response:
        payload = json.dumps(await request.json(), separators=(",", ":"), ensure_ascii=False).encode()
        expected = hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Conduit-Signature", ""), expected):
            return web.Response(status=401)
        return web.json_response({"received": True})

    async with serving(handle) as url:
        verdict = await check_raw_body(Target(url, SECRET), max_examples=10)
    assert not verdict.passed
    smallest = verdict.details["smallest_failing_body"]
    assert isinstance(smallest, bytes) and reserialises_differently(smallest)
    assert smallest in verdict.details["failing_bodies"] or len(verdict.details["failing_bodies"]) == 10
    assert verdict.details["hypothesis"].startswith(("falsified", "stopped"))
    assert repr(smallest)[:40] in verdict.observed  # the smallest failing body, shown in full
    assert verdict.failures() and all(e.status == 401 for e in verdict.failures())


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_an_unreachable_receiver_fails_every_rule_without_raising() -> None:
    verdicts = await check_receiver(f"http://127.0.0.1:{closed_port()}/hook", SECRET, max_examples=2)
    assert [v.rule for v in verdicts] == list(RULE_IDS)
    assert not any(v.passed for v in verdicts)
    assert all(e.error and e.error.startswith("cannot connect") for v in verdicts for e in v.evidence)
    # Nothing was exercised, so nothing is judged: INCONCLUSIVE, saying so.
    assert all(v.outcome is Outcome.INCONCLUSIVE for v in verdicts), [str(v) for v in verdicts]
    assert all("no request reached the receiver" in v.summary for v in verdicts)


async def test_a_receiver_that_drops_connections_fails_no_crash() -> None:
    """Closing the connection instead of answering is reported as such, never raised."""
    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.transport.abort()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        [verdict] = await check_receiver(f"http://127.0.0.1:{port}/hook", SECRET, rules=["W-NO-CRASH"])
    assert not verdict.passed
    assert all(e.status is None and "dropped" in (e.error or "") for e in verdict.evidence)


async def test_the_sender_is_bounded() -> None:
    async with serving(users_receiver([])) as url, ConduitSender(url, SECRET, max_requests=2) as sender:
        await sender.send(b"{}", request="one")
        await sender.send(b"{}", request="two")
        try:
            await sender.send(b"{}", request="three")
        except RequestBudgetExceeded:
            pass
        else:
            raise AssertionError("a third request was sent")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "contract_tests.webhook_rules", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL)


def test_cli_with_a_receiver_command() -> None:
    good = cli("--receiver", shlex.join(python_receiver_command()),
               "--rule", "W-REJECT", "--rule", "W-DUPLICATE")
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.splitlines()[0].startswith("PASS W-REJECT")
    bad = cli("--receiver", shlex.join(python_receiver_command("accepts-missing-header")),
              "--rule", "W-REJECT", "--json")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    [verdict] = json.loads(bad.stdout)
    assert verdict["rule"] == "W-REJECT" and verdict["passed"] is False
    assert any(e["status"] == 200 and "missing" in e["request"] for e in verdict["evidence"])


def test_cli_usage_errors() -> None:
    assert cli("--url", "http://127.0.0.1:1/x").returncode == 2  # no secret
    assert cli("--url", "http://127.0.0.1:1/x", "--secret", "s", "--rule", "W-NOPE").returncode == 2


def verifying_receiver(secret: str = SECRET, *, parse_first: bool = False,
                       catch: tuple[type[BaseException], ...] = (ValueError, RecursionError),
                       accept: bool = True, extra_secrets: tuple[str, ...] = ()) -> Handler:
    """A user's receiver with one knob per way of getting the threat model wrong (or right)."""
    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        if parse_first:
            json.loads(raw)  # an exception escapes: aiohttp answers 500
        given = request.headers.get("X-Conduit-Signature", "")
        if not any(hmac.compare_digest(given, hmac.new(key.encode(), raw, hashlib.sha256).hexdigest())
                   for key in (secret, *extra_secrets)):
            return web.Response(status=401)
        try:
            event = json.loads(raw)
        except catch:
            return web.Response(status=400)
        if not accept or not isinstance(event, dict):
            return web.Response(status=400)
        return web.json_response({"received": True})

    return handle


async def test_a_signed_deep_body_that_crashes_the_parser_is_an_advisory_not_a_failure() -> None:
    """The issue's case: verify first, then json.loads catching ValueError only. A signed body
    100 000 levels deep raises RecursionError (500), but only a holder of the secret can send it."""
    async with serving(verifying_receiver(catch=(ValueError,))) as url:
        verdict = await check_no_crash(Target(url, SECRET))
    assert verdict.outcome is Outcome.PASS, verdict.explain()
    assert any("100 000 levels deep" in a and "500" in a for a in verdict.advisories), verdict.advisories
    assert "advisory:" in verdict.explain()
    again = Verdict.from_json(json.loads(json.dumps(verdict.to_json())))
    assert again.advisories == verdict.advisories and again.outcome is Outcome.PASS


async def test_parsing_before_verifying_fails_no_crash_on_unsigned_bodies() -> None:
    async with serving(verifying_receiver(parse_first=True, catch=(ValueError,))) as url:
        verdict = await check_no_crash(Target(url, SECRET))
    assert verdict.outcome is Outcome.FAIL, verdict.explain()
    bad = [e.request or "" for e in verdict.failures() if e.status == 500]
    assert any("unsigned 100 000 levels deep" in r for r in bad), bad
    assert any("unsigned invalid UTF-8" in r for r in bad), bad


async def test_a_receiver_that_accepts_nothing_proves_nothing_about_rejecting() -> None:
    async with serving(verifying_receiver(accept=False)) as url:
        verdicts = await check_receiver(url, SECRET, rules=["W-ACCEPT", "W-REJECT"])
    accept, reject = verdicts
    assert accept.outcome is Outcome.FAIL
    assert reject.outcome is Outcome.INCONCLUSIVE, reject.explain()
    assert "control delivery was answered 400" in reject.summary


async def test_placeholder_secrets_are_forgeries() -> None:
    """Accepting a body signed with the empty secret, or with a fallback like 'changeme', fails
    W-REJECT - and only the placeholder cases catch the second."""
    async with serving(verifying_receiver(extra_secrets=("",))) as url:
        empty = await check_reject(Target(url, SECRET))
    assert empty.outcome is Outcome.FAIL
    assert any("placeholder secret ''" in (e.request or "") for e in empty.failures()), empty.explain()
    async with serving(verifying_receiver(extra_secrets=(PREVIOUS_SECRET_DEFAULT,))) as url:
        without = await check_reject(Target(url, SECRET),
                                     cases=[m for m in REJECT_CASES if m.kind != "placeholder-secret"])
        fallback = await check_reject(Target(url, SECRET))
    assert without.outcome is Outcome.PASS, without.explain()
    assert fallback.outcome is Outcome.FAIL
    [bad] = fallback.failures()
    assert f"placeholder secret {PREVIOUS_SECRET_DEFAULT!r}" in (bad.request or "")


async def test_a_receiver_configured_with_a_placeholder_is_not_judged_by_it() -> None:
    async with serving(verifying_receiver("changeme")) as url:
        verdict = await check_reject(Target(url, "changeme"))
    assert verdict.outcome is Outcome.PASS, verdict.explain()
    assert verdict.details["placeholders_skipped"] == ["changeme"]
    assert "skipped" in str(verdict.observed)
