"""``conduit-harness profiles``: list the profiles, and show where two of them disagree.

Every line of a diff is computed from the two profiles' data: their route tables, hub tables,
declared event shapes, statuses, hub options and webhook dialects, and what their payload builders
actually produce for one synthetic image task and one synthetic video task. Nothing here is
written by hand about either dialect, so the diff cannot drift from what the simulator serves.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from simulator.channels.webhooks import WebhookDialect
from simulator.profiles import Profile, load_profile, profile_names
from simulator.tasks.model import EventKind, Task, TaskEvent, TaskRequest, TaskStatus

ABSENT = "-"
_KEY = "vk_profilediff0000"
_STATUS_OF = {EventKind.PROGRESS: TaskStatus.PROCESSING, EventKind.COMPLETED: TaskStatus.COMPLETED,
              EventKind.FAILED: TaskStatus.FAILED, EventKind.CANCELLED: TaskStatus.CANCELLED,
              EventKind.TIMEDOUT: TaskStatus.TIMEDOUT}
_RESULTS = {
    "image": {"images": [{"url": "https://cdn.example.test/a.png", "revised_prompt": "p"},
                         {"url": "https://cdn.example.test/b.png", "revised_prompt": "p"}],
              "model": "m", "created": 0},
    "video": {"video_url": "https://cdn.example.test/v.mp4", "duration": 5, "model": "m",
              "resolution": "1280x720"},
}


@dataclass(frozen=True)
class Row:
    key: str
    left: str
    right: str


@dataclass(frozen=True)
class Section:
    """One section of a diff: ``key`` names it for programs (the report picks the sections a rule
    depends on by key), ``title`` is what people read."""

    key: str
    title: str
    rows: tuple[Row, ...]


# -- facts of one profile, section by section (key → text) -----------------------------------------
def _routes(profile: Profile) -> dict[str, str]:
    return {f"{r.method} {r.path}": "/".join(map(str, r.codes)) or "served" for r in profile.routes}


def _handlers(profile: Profile) -> dict[str, str]:
    """Which code answers each route: a different handler is a different behaviour (the
    ``simulator.rest.as_built`` docstring says what each of its handlers changes)."""
    rows = {}
    for route in profile.routes:
        handler = route.handler
        doc = (handler.__doc__ or "").strip().splitlines()
        summary = f": {doc[0]}" if doc else ""
        rows[f"{route.method} {route.path}"] = f"{handler.__module__}.{handler.__qualname__}{summary}"
    return rows


def _casing(profile: Profile) -> dict[str, str]:
    return {f"{r.method} {r.path}": r.casing or "no body" for r in profile.routes}


def _statuses(profile: Profile) -> dict[str, str]:
    return {surface: ", ".join(values) for surface, values in profile.statuses.items()}


def _hubs(profile: Profile) -> dict[str, str]:
    return {hub.path: f"{hub.name}; " + ("virtual key or short-lived token" if hub.accepts_tokens
                                         else "virtual key only") for hub in profile.hubs}


def _methods(profile: Profile) -> dict[str, str]:
    rows = {}
    for hub in profile.hubs:
        for method in hub.methods:
            params = ", ".join(["arg"] * method.arity)
            rows[f"{hub.path} {method.name}"] = f"{method.name}({params})"
    return rows


def _declared_events(profile: Profile) -> dict[str, str]:
    rows = {}
    for hub in profile.hubs:
        for event in hub.events:
            text = event.signature() + ("" if event.sent else f"  [never sent: {event.note}]")
            rows[f"{hub.path} {event.name}"] = text
    return rows


def _timings(profile: Profile) -> dict[str, str]:
    options = profile.hub_options
    return {f.name: _plain(getattr(options, f.name)) for f in dataclasses.fields(options)}


def _plain(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g} s"
    return str(value)


# -- what the payload builders produce for synthetic tasks -----------------------------------------
def _timeline(kind: str, end: EventKind) -> tuple[Task, list[TaskEvent]]:
    """A two-image (or video) task that makes progress to 50 % and then ends with ``end``."""
    params = {"n": 2} if kind == "image" else {"duration": 5}
    request = TaskRequest(kind=kind, prompt="p", model="m", key=_KEY, params=params,  # type: ignore[arg-type]
                          webhook_url="http://127.0.0.1/hook")
    task = Task(task_id="task_" + "0" * 32, request=request, script="diff", created_at=0.0, updated_at=0.0)
    events = []
    for seq, (event_kind, progress) in enumerate(((EventKind.PROGRESS, 50), (end, 100)), start=1):
        status = _STATUS_OF[event_kind]
        completed = event_kind is EventKind.COMPLETED
        event = TaskEvent(task_id=task.task_id, kind=event_kind, seq=seq, status=status, progress=progress,
                          wall=float(seq), result=_RESULTS[kind] if completed else None,
                          error=None if completed or event_kind is EventKind.PROGRESS else "boom")
        task.status, task.progress = status, progress
        task.events.append(event)
        events.append(event)
    return task, events


def _synthetic(build: Callable[[Task, TaskEvent], str]) -> dict[str, str]:
    rows = {}
    for kind in ("image", "video"):
        for end in (EventKind.COMPLETED, EventKind.FAILED, EventKind.CANCELLED, EventKind.TIMEDOUT):
            task, (progress, last) = _timeline(kind, end)
            rows[f"{kind} progress"] = build(task, progress)
            rows[f"{kind} {end.value}"] = build(task, last)
    return rows


def _shape(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(value) + "}"
    return type(value).__name__ if value is not None else "null"


def _emissions(profile: Profile) -> Callable[[Task, TaskEvent], str]:
    declared = {(hub.path, event.name): event for hub in profile.hubs for event in hub.events}

    def build(task: Task, event: TaskEvent) -> str:
        parts = []
        for emission in profile.signalr_events(task, event):
            spec = declared.get((emission.hub, emission.target))
            args = emission.arguments
            if spec is not None and spec.style == "positional" and len(spec.fields) == len(args):
                shape = f"({', '.join(spec.fields)})"
            elif len(args) == 1 and isinstance(args[0], dict):
                shape = " " + _shape(args[0])
                if "status" in args[0]:
                    shape += f" status={args[0]['status']}"
            else:
                shape = "(" + ", ".join(_shape(a) for a in args) + ")"
            group = emission.group.replace(task.task_id, "{taskId}")
            parts.append(f"{emission.target}{shape} to {group} on {emission.hub}")
        return " + ".join(parts) or "nothing sent"

    return build


def _webhooks(profile: Profile) -> Callable[[Task, TaskEvent], str]:
    def build(task: Task, event: TaskEvent) -> str:
        body = profile.webhook_body(task, event)
        if body is None:
            return "nothing sent"
        key = profile.webhook.event_type_key
        return f"{key}={body.get(key)} status={body.get('status')} keys {_shape(body)}"

    return build


def _signing(profile: Profile) -> dict[str, str]:
    dialect: WebhookDialect = profile.webhook
    signature = dialect.signature
    task, (progress, last) = _timeline("video", EventKind.COMPLETED)
    sample = dialect.serialise({"text": "caf\u00e9 <&>"}).decode("utf-8")
    return {
        "signature": "none: deliveries are not signed" if signature is None
        else f"{signature.header}: {signature.encoding} HMAC-SHA256 of the raw body",
        "Content-Type": dialect.content_type,
        "headers on a progress event": _headers(dialect.headers_for(progress)),
        "headers on other events": _headers(dialect.headers_for(last)),
        "event name field": dialect.event_type_key,
        "serialised {\"text\": \"caf\u00e9 <&>\"}": sample,
    }


def _headers(headers: dict[str, str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in headers.items()) or "none beyond the common ones"


SECTIONS: tuple[tuple[str, str, Callable[[Profile], dict[str, str]]], ...] = (
    ("routes", "routes (status codes)", _routes),
    ("handlers", "route handlers", _handlers),
    ("casing", "casing", _casing),
    ("statuses", "statuses", _statuses),
    ("hubs", "hubs", _hubs),
    ("methods", "methods", _methods),
    ("events", "events and shapes (declared)", _declared_events),
    ("emissions", "events and shapes (sent for a 2-image task / a video task)",
     lambda p: _synthetic(_emissions(p))),
    ("timings", "timings", _timings),
    ("webhook-bodies", "webhook bodies", lambda p: _synthetic(_webhooks(p))),
    ("webhook-signing", "webhook signing and framing", _signing),
)
SECTION_KEYS: tuple[str, ...] = tuple(key for key, _title, _facts in SECTIONS)


def diff(left: Profile, right: Profile, only: Iterable[str] | None = None) -> list[Section]:
    """Every section (or those whose keys are in ``only``, in :data:`SECTIONS` order), with only the
    rows where the two profiles differ. The CLI prints this; the HTML report shows the sections a
    rule depends on beside its verdicts."""
    wanted = None if only is None else set(only)
    if wanted is not None and not wanted <= set(SECTION_KEYS):
        raise ValueError(f"no diff section {', '.join(sorted(wanted - set(SECTION_KEYS)))}; "
                         f"known: {', '.join(SECTION_KEYS)}")
    sections = []
    for key, title, facts in SECTIONS:
        if wanted is not None and key not in wanted:
            continue
        a, b = facts(left), facts(right)
        keys = list(a) + [k for k in b if k not in a]
        rows = tuple(Row(k, a.get(k, ABSENT), b.get(k, ABSENT)) for k in keys if a.get(k) != b.get(k))
        sections.append(Section(key, title, rows))
    return sections


def render_diff(left: Profile, right: Profile) -> str:
    lines = [f"profiles diff {left.name} {right.name}", ""]
    for section in diff(left, right):
        lines.append(f"== {section.title}: {len(section.rows) or 'no'} difference"
                     f"{'' if len(section.rows) == 1 else 's'}")
        for row in section.rows:
            lines += [f"  {row.key}", f"    {left.name}: {row.left}", f"    {right.name}: {row.right}"]
        lines.append("")
    for profile in (left, right):
        if profile.facts:
            lines.append(f"== inferred facts and simplifications of {profile.name}")
            lines += [f"  [{'inferred' if f.inferred else 'simplified'}] {f.topic}: {f.text}"
                      for f in profile.facts]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_list(names: Iterable[str]) -> str:
    lines = []
    for name in names:
        profile = load_profile(name)
        lines.append(f"{name:<18} {profile.description}")
    return "\n".join(lines) + "\n"


# -- the CLI subcommand -----------------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = ("List the simulator's profiles, or show section by section where two of "
                          "them differ (computed from the profiles' own tables).")
    sub = parser.add_subparsers(dest="profiles_command", metavar="ACTION")
    compare = sub.add_parser("diff", help="where two profiles differ, section by section")
    compare.add_argument("left", help="a profile name, e.g. documented")
    compare.add_argument("right", help="a profile name, e.g. conduit-2025.08")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "profiles_command", None) != "diff":
        sys.stdout.write(render_list(profile_names()))
        return 0
    try:
        left, right = load_profile(args.left), load_profile(args.right)
    except ValueError as exc:
        print(f"conduit-harness: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render_diff(left, right))
    return 0
