"""The documented profile: the guide's hubs, methods, events and ASP.NET Core's default timings.

Group names are the real server's (``image-{taskId}``, ``video-{taskId}``, ``vkey-{key}``), so a
task engine emits to the same groups under either profile.
"""

from __future__ import annotations

from typing import Any

from simulator.channels.signalr import Emission
from simulator.hubs.definition import EventSpec, HubCall, HubDefinition, HubError, HubMethod
from simulator.hubs.options import HubOptions
from simulator.profiles import ClientEvent, HubSpec, Profile
from simulator.rest.tasks import GUIDE_STATUS_PATH, ROUTES
from simulator.tasks.model import EventKind, Task, TaskEvent, TaskStatus, utc_iso


def key_group(key: str) -> str:
    return f"vkey-{key}"


def image_group(task_id: str) -> str:
    return f"image-{task_id}"


def video_group(request_id: str) -> str:
    return f"video-{request_id}"


def _join_key_group(call: HubCall) -> None:
    call.add_to_group(key_group(call.key))


def _check_access(call: HubCall, task_id: object) -> str:
    """Ownership check; the task engine (when there is one) says who owns a task."""
    if not isinstance(task_id, str) or not task_id.strip():
        raise HubError("Invalid task ID")
    # As built: an unknown task and another key's task get the same answer.
    owner = getattr(call.services, "task_owner", None)
    if owner is not None and owner(task_id) != call.key:
        raise HubError("Unauthorized access to task")
    return task_id


def subscribe_to_task(call: HubCall, task_id: str) -> None:
    call.add_to_group(image_group(_check_access(call, task_id)))


def unsubscribe_from_task(call: HubCall, task_id: str) -> None:
    if isinstance(task_id, str):
        call.remove_from_group(image_group(task_id))


def subscribe_to_request(call: HubCall, request_id: str) -> None:
    call.add_to_group(video_group(_check_access(call, request_id)))


def unsubscribe_from_request(call: HubCall, request_id: str) -> None:
    if isinstance(request_id, str):
        call.remove_from_group(video_group(request_id))


IMAGE_HUB = HubDefinition(
    name="image-generation",
    path="/hubs/image-generation",
    methods=(
        HubMethod("SubscribeToTask", subscribe_to_task),
        HubMethod("UnsubscribeFromTask", unsubscribe_from_task),
    ),
    events=(EventSpec("TaskProgress", ("taskId", "progress")),
            EventSpec("TaskCompleted", ("taskId", "result")),
            EventSpec("TaskFailed", ("taskId", "error"))),
    on_connected=_join_key_group,
)

VIDEO_HUB = HubDefinition(
    name="video-generation",
    path="/hubs/video-generation",
    methods=(
        HubMethod("SubscribeToRequest", subscribe_to_request),
        HubMethod("UnsubscribeFromRequest", unsubscribe_from_request),
    ),
    events=(EventSpec("RequestProgress", ("requestId", "progress")),
            EventSpec("RequestCompleted", ("requestId", "result")),
            EventSpec("RequestFailed", ("requestId", "error"))),
    on_connected=_join_key_group,
)

NAVIGATION_HUB = HubDefinition(
    name="navigation-state",
    path="/hubs/navigation-state",
    events=(EventSpec("NavigationStateChanged", ("state",), sent=False,
                      note="no task event maps to it; tests send it through the hub's send API"),
            EventSpec("PageDataUpdated", ("pageData",), sent=False,
                      note="no task event maps to it; tests send it through the hub's send API")),
    on_connected=_join_key_group,
)

CLIENT_HUBS: dict[str, HubSpec] = {
    "image": HubSpec(IMAGE_HUB.path, "SubscribeToTask", "UnsubscribeFromTask",
                     "TaskProgress", "TaskCompleted", "TaskFailed"),
    "video": HubSpec(VIDEO_HUB.path, "SubscribeToRequest", "UnsubscribeFromRequest",
                     "RequestProgress", "RequestCompleted", "RequestFailed"),
}
_GROUPS = {"image": image_group, "video": video_group}


def signalr_events(task: Task, event: TaskEvent) -> list[Emission]:
    """The guide has no cancelled or timed-out event: those end the task with the failed event
    and an error text."""
    spec = CLIENT_HUBS[task.kind]
    if event.kind is EventKind.PROGRESS:
        target, value = spec.progress, event.progress
    elif event.kind is EventKind.COMPLETED:
        target, value = spec.completed, event.result
    else:
        target, value = spec.failed, event.error
    return [Emission(spec.path, _GROUPS[task.kind](task.task_id), target, [task.task_id, value])]


_MEANING = {target: (kind, spec) for spec in CLIENT_HUBS.values()
            for kind, target in zip(("progress", "completed", "failed"), spec.events, strict=True)}


def decode_event(target: str, arguments: list[Any]) -> ClientEvent | None:
    """``(taskId, value)``: the value is the progress, the result or the error text."""
    meaning = _MEANING.get(target)
    if meaning is None or len(arguments) != 2 or not isinstance(arguments[0], str):
        return None
    kind, value = meaning[0], arguments[1]
    if kind == "progress":
        return ClientEvent(kind, arguments[0], progress=value if isinstance(value, int) else None)
    if kind == "completed":
        return ClientEvent(kind, arguments[0], result=value)
    return ClientEvent(kind, arguments[0], error=value if isinstance(value, str) else None)


_WEBHOOK_EVENT_TYPES = {EventKind.PROGRESS: "task.progress", EventKind.COMPLETED: "task.completed"}


def webhook_body(task: Task, event: TaskEvent) -> dict[str, Any]:
    """The guide's webhook body: progress in ``result.progress``, the result on completion,
    ``error`` on failure (cancel and timeout are failures with their own status)."""
    result: Any = None
    if event.kind is EventKind.PROGRESS:
        result = {"progress": event.progress}
    elif event.kind is EventKind.COMPLETED:
        result = event.result
    return {
        "event_type": _WEBHOOK_EVENT_TYPES.get(event.kind, "task.failed"),
        "task_id": task.task_id,
        "status": event.status.value,
        "result": result,
        "error": event.error,
        "timestamp": utc_iso(event.wall),
    }


_STATUSES = tuple(status.value for status in TaskStatus)

PROFILE = Profile(
    name="documented",
    description="the Real-Time API Guide: its hubs, events, webhook body and signature, "
                "with ASP.NET Core's default SignalR timings",
    hubs=(IMAGE_HUB, VIDEO_HUB, NAVIGATION_HUB),
    hub_options=HubOptions(),
    signalr_events=signalr_events,
    webhook_body=webhook_body,
    routes=ROUTES,
    client_hubs=CLIENT_HUBS,
    statuses={"rest": _STATUSES, "rest:create": ("queued", "pending"), "webhook": _STATUSES},
    decode_event=decode_event,
    status_paths={"image": GUIDE_STATUS_PATH, "video": GUIDE_STATUS_PATH},
)
