"""``conduit-harness profiles`` and the data it reads: declared event shapes match what the payload
builders send, and the .NET-style JSON writer escapes as System.Text.Json does."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from simulator.profiles import load_profile, profile_names
from simulator.profiles.diff import _timeline, diff
from simulator.profiles.dotnet_json import dumps
from simulator.tasks.model import EventKind


def test_profiles_lists_every_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == profile_names()


def test_diff_names_the_differences_client_teams_meet(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles", "diff", "documented", "conduit-2025.08"]) == 0
    out = capsys.readouterr().out
    # Hub events: positional TaskProgress against the object-shaped ImageGenerationProgress.
    assert "TaskProgress(taskId, progress) to image-{taskId}" in out
    assert "ImageGenerationProgress {taskId, progressPercentage, status" in out
    # Status spelling and vocabulary.
    assert "processing, completed, failed, retrying, cancelled" in out
    assert "hub:ImageGenerationProgress" in out
    # Webhook signing.
    assert "X-Conduit-Signature: hex HMAC-SHA256 of the raw body" in out
    assert "none: deliveries are not signed" in out
    # Timings, hubs and the inferred facts.
    assert "keep_alive_interval\n    documented: 15 s\n    conduit-2025.08: 30 s" in out
    assert "/hubs/navigation-state\n    documented: navigation-state; virtual key or short-lived token\n" \
           "    conduit-2025.08: -" in out
    assert "conduit-2025.08: image-generation; virtual key only" in out
    assert "[inferred] webhooks: bodies carry both webhookType and webhook_type" in out


def test_a_profile_does_not_differ_from_itself() -> None:
    profile = load_profile("conduit-2025.08")
    assert all(not section.rows for section in diff(profile, profile))


def test_unknown_profile_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles", "diff", "documented", "nope"]) == 2
    assert "unknown profile 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["documented", "conduit-2025.08"])
@pytest.mark.parametrize("kind", ["image", "video"])
@pytest.mark.parametrize("end", [EventKind.COMPLETED, EventKind.FAILED, EventKind.CANCELLED,
                                 EventKind.TIMEDOUT])
def test_sent_events_are_declared_with_their_shape(name: str, kind: str, end: EventKind) -> None:
    profile = load_profile(name)
    declared = {(hub.path, event.name): event for hub in profile.hubs for event in hub.events}
    task, events = _timeline(kind, end)
    for event in events:
        for emission in profile.signalr_events(task, event):
            spec = declared[(emission.hub, emission.target)]
            assert spec.sent, spec
            if spec.style == "object":
                [payload] = emission.arguments
                assert tuple(payload) == spec.fields
            else:
                assert len(emission.arguments) == len(spec.fields)


def test_client_hubs_name_declared_methods_and_events() -> None:
    for name in profile_names():
        profile = load_profile(name)
        hubs = {hub.path: hub for hub in profile.hubs}
        for spec in profile.client_hubs.values():
            hub = hubs[spec.path]
            assert hub.method(spec.subscribe) and hub.method(spec.unsubscribe)
            assert set(spec.events) <= set(hub.event_names)


def test_dotnet_writer_escapes_like_system_text_json() -> None:
    text = dumps({"a": "caf\u00e9 <b> & 'c' + \"d\" `e` \U0001f600\n", "n": [1, 2.5, 45.0, None, True]})
    assert text == ('{"a":"caf\\u00E9 \\u003Cb\\u003E \\u0026 \\u0027c\\u0027 \\u002B \\u0022d\\u0022 '
                    '\\u0060e\\u0060 \\uD83D\\uDE00\\n","n":[1,2.5,45,null,true]}')
    assert json.loads(text)["a"].startswith("caf\u00e9 <b>")
    with pytest.raises(ValueError):
        dumps(float("nan"))


# The terminal kind a client learns for each way a task ends, per profile (None: nothing is sent).
TERMINAL_SEEN = {
    "documented": {EventKind.COMPLETED: "completed", EventKind.FAILED: "failed",
                   EventKind.CANCELLED: "failed", EventKind.TIMEDOUT: "failed"},
    "conduit-2025.08": {EventKind.COMPLETED: "completed", EventKind.FAILED: "failed",
                        EventKind.CANCELLED: "cancelled", EventKind.TIMEDOUT: None},
}


@pytest.mark.parametrize("name", ["documented", "conduit-2025.08"])
@pytest.mark.parametrize("kind", ["image", "video"])
@pytest.mark.parametrize("end", [EventKind.COMPLETED, EventKind.FAILED, EventKind.CANCELLED,
                                 EventKind.TIMEDOUT])
def test_clients_decode_what_the_profile_sends(name: str, kind: str, end: EventKind) -> None:
    """decode_event is the client half of signalr_events: one source of truth per dialect."""
    profile = load_profile(name)
    assert profile.decode_event is not None
    task, (progress, last) = _timeline(kind, end)
    decoded = [profile.decode_event(e.target, e.arguments) for e in profile.signalr_events(task, progress)]
    seen = [d for d in decoded if d is not None]
    assert seen and all(d.kind == "progress" and d.task_id == task.task_id for d in seen)
    assert all((d.emitted_at is not None) == (name != "documented") for d in seen)
    if name == "documented" or kind == "video":
        assert seen[-1].progress == progress.progress
    terminal = [profile.decode_event(e.target, e.arguments) for e in profile.signalr_events(task, last)]
    expected = TERMINAL_SEEN[name][end]
    if kind == "video" and name != "documented" and end is EventKind.CANCELLED:
        expected = None  # a cancelled video sends no hub event
    assert [t.kind for t in terminal if t is not None] == ([expected] if expected else [])
    assert all(t is None or t.task_id == task.task_id for t in terminal)
    assert set(profile.status_paths) == {"image", "video"}


def test_as_built_events_carry_their_own_emit_time() -> None:
    profile = load_profile("conduit-2025.08")
    assert profile.decode_event is not None
    event = profile.decode_event("ImageGenerationFailed", [
        {"taskId": "task_1", "error": "x", "isRetryable": False, "failedAt": "2025-08-28T12:00:00.5Z"}])
    assert event is not None and event.kind == "failed"
    assert event.emitted_ms == 1756382400500.0
    documented = load_profile("documented").decode_event
    assert documented is not None
    plain = documented("TaskProgress", ["task_1", 40])
    assert plain is not None and plain.progress == 40 and plain.emitted_ms is None
