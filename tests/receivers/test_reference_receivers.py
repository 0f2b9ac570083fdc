"""The bundled reference receivers (Python, Node): every W-* rule passes, the driver protocol holds,
and they take what the simulator's own webhook dispatcher sends."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from contract_tests.receivers import RECEIVER_COMMANDS, RECEIVER_MUTANTS, WEBHOOK_PATH
from contract_tests.webhook_rules import RULE_IDS, ConduitSender, check_receiver
from contract_tests.webhook_strategies import conduit_bytes, documented_body, sign
from simulator.channels.webhooks import WebhookDispatcher
from simulator.faults import FaultController
from simulator.profiles.documented import webhook_body
from simulator.recorder import Recorder
from simulator.tasks.model import EventKind, Task, TaskEvent, TaskRequest, TaskStatus
from tests.receivers import LANGUAGES, SECRET, need_node, receiver

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(language: str, *args: str, secret: str | None = None) -> subprocess.CompletedProcess[str]:
    """The receiver run to completion, with only PATH (and the secret, if given) in its environment."""
    need_node(language)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if secret is not None:
        env["CONDUIT_WEBHOOK_SECRET"] = secret
    return subprocess.run(RECEIVER_COMMANDS[language]() + list(args), capture_output=True, text=True,
                          timeout=30, env=env, cwd=ROOT, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_reference_receiver_passes_every_rule(language: str) -> None:
    with receiver(language) as process:
        verdicts = await check_receiver(process.webhook_url, SECRET, observations=process.observations)
        assert not process.stderr_text(), process.stderr_text()
    assert [v.rule for v in verdicts] == list(RULE_IDS)
    assert all(v.passed for v in verdicts), "\n".join(v.explain() for v in verdicts)
    # They verify before they parse, and survive even the signed pathological bodies.
    assert not any(v.advisories for v in verdicts), [v.advisories for v in verdicts]
    by_rule = {v.rule: v for v in verdicts}
    assert by_rule["W-REJECT"].details["placeholders_tried"] >= 12
    assert by_rule["W-DUPLICATE"].details["processed"] == 1
    assert by_rule["W-REJECT"].details["processed_check"] is True
    assert max(by_rule["W-FAST-ACK"].details["latencies_ms"]) < 5000


@pytest.mark.parametrize("language", LANGUAGES)
def test_ready_line_commands_and_shutdown(language: str) -> None:
    with receiver(language) as process:
        ready = process.ready
        assert ready is not None
        assert ready["roles"] == ["webhook"] and ready["name"]
        url = ready["webhook_url"]
        assert url.startswith("http://127.0.0.1:") and url.endswith(WEBHOOK_PATH)
        process.command_line("frobnicate")
        process.command_line("track", task_id="task_x", kind="image", via="polling")
        process.proc.stdin.write("not json\n")  # type: ignore[union-attr]
        process.proc.stdin.flush()  # type: ignore[union-attr]
        deadline = time.monotonic() + 5
        while len([o for o in process.observations if o.get("obs") == "error"]) < 3:
            assert time.monotonic() < deadline, process.observations
            time.sleep(0.02)
        assert process.stop() == 0


@pytest.mark.parametrize("language", LANGUAGES)
def test_port_from_the_environment(language: str) -> None:
    port = free_port()
    with receiver(language, port=port) as process:
        assert process.webhook_url == f"http://127.0.0.1:{port}{WEBHOOK_PATH}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_stdin_closing_stops_the_receiver(language: str) -> None:
    with receiver(language) as process:
        assert process.proc is not None and process.proc.stdin is not None
        process.proc.stdin.close()
        assert process.proc.wait(10) == 0


@pytest.mark.parametrize("language", LANGUAGES)
def test_unknown_mutant_exits_2_listing_them(language: str) -> None:
    done = run(language, "--mutant", "no-such-mutant", secret=SECRET)
    assert done.returncode == 2
    for name in RECEIVER_MUTANTS:
        assert name in done.stderr


@pytest.mark.parametrize("language", LANGUAGES)
def test_list_mutants_matches_the_table(language: str) -> None:
    done = run(language, "--list-mutants")
    assert done.returncode == 0
    listed = dict(line.split("\t") for line in done.stdout.splitlines())
    assert listed == RECEIVER_MUTANTS


@pytest.mark.parametrize("language", LANGUAGES)
def test_missing_secret_exits_2(language: str) -> None:
    done = run(language)
    assert done.returncode == 2 and "CONDUIT_WEBHOOK_SECRET" in done.stderr


@pytest.mark.parametrize("language", LANGUAGES)
async def test_what_is_reported_and_answered(language: str) -> None:
    with receiver(language) as process:
        body = conduit_bytes(documented_body("task.completed", "task_" + "ab" * 16))
        async with ConduitSender(process.webhook_url, SECRET) as sender:
            first = await sender.send(body, request="delivery")
            again = await sender.send(body, request="the same again")
            unsigned = await sender.send(conduit_bytes(documented_body("task.progress", "task_" + "cd" * 16)),
                                         request="unsigned", signature=None)
            bad = await sender.send(body.replace(b"ab", b"ba", 1), request="tampered after signing",
                                    signature=sign(body, SECRET))
            signed_upper = conduit_bytes(documented_body("task.progress", "task_" + "ef" * 16))
            upper = await sender.send(signed_upper, request="uppercase hex (accepted: same MAC)",
                                      signature=sign(signed_upper, SECRET).upper())
            big = await sender.send(b"{" + b" " * (3 * 1024 * 1024) + b"}", request="3 MiB")
            get = await sender.send(b"", request="GET", method="GET", content_type=None, signature=None)
        assert process.wait_for(lambda o: o.get("reason") == "body too large", 10), process.observations
        await asyncio.sleep(0.2)  # nothing more should come
        webhooks = process.webhook_observations()
    statuses = [e.status for e in (first, again, unsigned, bad, upper, big, get)]
    assert statuses == [200, 200, 401, 401, 200, 413, 405]
    assert json.loads(first.response) == {"received": True}
    assert json.loads(again.response) == {"received": True, "duplicate": True}
    accepted = [(o["task_id"], o["event_type"]) for o in webhooks if o["accepted"]]
    assert accepted == [("task_" + "ab" * 16, "task.completed"), ("task_" + "ef" * 16, "task.progress")]
    refused = [o for o in webhooks if not o["accepted"]]
    # The unsigned one, the tampered one (with the task id it claims), the oversized one.
    assert [o["task_id"] for o in refused] == ["task_" + "cd" * 16, "task_" + "ba" + "ab" * 15, None]
    assert all(o.get("reason") for o in refused)


def _event(task: Task, kind: EventKind, seq: int, progress: int) -> TaskEvent:
    status = {EventKind.PROGRESS: TaskStatus.PROCESSING, EventKind.COMPLETED: TaskStatus.COMPLETED,
              EventKind.FAILED: TaskStatus.FAILED}[kind]
    result = {"images": [{"url": "https://cdn.example.com/v1/i.png", "revised_prompt": "café ☕ <b>"}]} \
        if kind is EventKind.COMPLETED else None
    error = "generation failed: «quota»" if kind is EventKind.FAILED else None
    task.status, task.progress = status, progress
    event = TaskEvent(task_id=task.task_id, kind=kind, seq=seq, status=status, progress=progress,
                      wall=time.time(), result=result, error=error, global_seq=seq)
    task.events.append(event)
    return event


@pytest.mark.parametrize("language", LANGUAGES)
async def test_simulator_deliveries_with_faults(language: str) -> None:
    """The simulator's dispatcher (documented bodies, real signatures and faults) to a reference receiver."""
    recorder = Recorder()
    faults = FaultController(recorder=recorder, time_scale=0.01)
    dispatcher = WebhookDispatcher(secret=SECRET, recorder=recorder, faults=faults, body_for=webhook_body,
                                   time_scale=0.01)
    with receiver(language) as process:
        await dispatcher.start()
        try:
            tasks = [Task(task_id=f"task_{n:032x}", script="test",
                          request=TaskRequest(kind="image", prompt="p", model="m", key="vk_receivertests",
                                              webhook_url=process.webhook_url)) for n in range(1, 6)]
            good, dup, *bad = tasks
            dispatcher(good, _event(good, EventKind.PROGRESS, 1, 40))
            dispatcher(good, _event(good, EventKind.COMPLETED, 2, 100))
            faults.apply(SimpleNamespace(kind="webhook", at=None, params={"mode": "duplicate"}), "test")
            dispatcher(dup, _event(dup, EventKind.FAILED, 1, 0))
            for task, mode in zip(bad, ("bad_signature", "wrong_secret", "truncated_body"), strict=True):
                faults.apply(SimpleNamespace(kind="webhook", at=None, params={"mode": mode}), "test")
                dispatcher(task, _event(task, EventKind.COMPLETED, 1, 100))
            await dispatcher.drain(20)
        finally:
            await dispatcher.stop()
        # One observation per POST, but none for the duplicate.
        expected = len(recorder.records("webhook_attempt")) - 1
        deadline = time.monotonic() + 10
        while len(process.webhook_observations()) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # nothing more should come
        webhooks = process.webhook_observations()
    accepted = sorted((o["task_id"], o["event_type"]) for o in webhooks if o["accepted"])
    assert accepted == [(good.task_id, "task.completed"), (good.task_id, "task.progress"),
                        (dup.task_id, "task.failed")]
    assert len(webhooks) == expected
    outcomes = {(r.get("task_id"), r.get("duplicate")): (r.get("outcome"), r.get("status"))
                for r in recorder.records("webhook_delivery")}
    assert outcomes[(dup.task_id, True)] == ("delivered", 200)  # acknowledged, not processed again
    for task in bad:  # 401 is retried by Conduit: every attempt refused, then given up
        assert outcomes[(task.task_id, False)] == ("gave_up", 401)
        assert any(o["task_id"] in (task.task_id, None) and not o["accepted"] for o in webhooks)
