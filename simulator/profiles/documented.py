"""The documented profile: the guide's hubs, methods, events and ASP.NET Core's default timings.

Group names are the real server's (``image-{taskId}``, ``video-{taskId}``, ``vkey-{key}``), so a
task engine emits to the same groups under either profile.
"""

from __future__ import annotations

from simulator.hubs.definition import HubCall, HubDefinition, HubError, HubMethod
from simulator.hubs.options import HubOptions
from simulator.profiles import Profile


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
    authorize = getattr(call.services, "task_owner", None)
    if authorize is not None and authorize(task_id) != call.key:
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
    events=("TaskProgress", "TaskCompleted", "TaskFailed"),
    on_connected=_join_key_group,
)

VIDEO_HUB = HubDefinition(
    name="video-generation",
    path="/hubs/video-generation",
    methods=(
        HubMethod("SubscribeToRequest", subscribe_to_request),
        HubMethod("UnsubscribeFromRequest", unsubscribe_from_request),
    ),
    events=("RequestProgress", "RequestCompleted", "RequestFailed"),
    on_connected=_join_key_group,
)

NAVIGATION_HUB = HubDefinition(
    name="navigation-state",
    path="/hubs/navigation-state",
    events=("NavigationStateChanged", "PageDataUpdated"),
    on_connected=_join_key_group,
)

PROFILE = Profile(
    name="documented",
    hubs=(IMAGE_HUB, VIDEO_HUB, NAVIGATION_HUB),
    hub_options=HubOptions(),
)
