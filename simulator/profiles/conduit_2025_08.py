"""The ``conduit-2025.08`` profile: the real Conduit server as built (knnlabs/Conduit at 7c3fd76).

What differs from ``documented``, all as data beside it:

- hubs ``/hubs/image-generation``, ``/hubs/video-generation`` and ``/hubs/tasks`` with their real
  methods and ownership errors; no ``/hubs/navigation-state``;
- image and video events are ``ImageGeneration*`` / ``VideoGeneration*`` with **one camelCase
  object** argument; TaskHub declares positional events, but nothing in the image or video flow
  sends to it;
- keep-alive 30 s, client timeout 60 s, JSON protocol only (a MessagePack handshake is refused);
- webhooks: ``webhook_type``/``status`` bodies (with the duplicated ``webhookType`` key), written
  by System.Text.Json's escaping writer, ``Content-Type: application/json; charset=utf-8``,
  ``X-Webhook-Type``, and **no signature**; video progress webhooks are never sent;
- the REST table of :mod:`simulator.rest.as_built`.

Everything marked inferred in the reference, and every simplification of the simulator, is a
:class:`~simulator.profiles.Fact` in :data:`FACTS`.
"""

from __future__ import annotations

import json
from typing import Any

from simulator.channels.signalr import Emission
from simulator.channels.webhooks import WebhookDialect
from simulator.hubs.definition import EventSpec, HubCall, HubDefinition, HubError, HubMethod
from simulator.hubs.options import HubOptions
from simulator.profiles import ClientEvent, Fact, HubSpec, Profile
from simulator.profiles.dotnet_json import dumps_bytes
from simulator.rest.as_built import (
    IMAGE_STATUS_PATH,
    ROUTES,
    VIDEO_ETA_SECONDS,
    VIDEO_STATUS_PATH,
    stored_result,
)
from simulator.rest.views import TASK_TYPES, virtual_key_id
from simulator.tasks.model import EventKind, Task, TaskEvent, utc_iso

IMAGE_PATH = "/hubs/image-generation"
VIDEO_PATH = "/hubs/video-generation"
TASK_PATH = "/hubs/tasks"
# What VideoGenerationOrchestrator publishes at start, and MiniMax's progress status.
VIDEO_START_PROVIDER = "pending"
VIDEO_PROGRESS_STATUS = "Processing"
MAX_RETRIES = 3
VIDEO_CANCEL_ERROR = "Video generation was cancelled by user request"
IMAGE_CANCEL_ERROR = "Task was cancelled by user request"
UNAUTHORIZED = "Unauthorized access to task"


# -- groups (SignalRConstants; all per hub type) ----------------------------------------------
def key_group(key: str) -> str:
    """``vkey-{virtualKeyId}``: the key's number, the same one ``/v1/tasks`` metadata shows."""
    return f"vkey-{virtual_key_id(key)}"


def image_group(task_id: str) -> str:
    return f"image-{task_id}"


def video_group(task_id: str) -> str:
    return f"video-{task_id}"


def task_group(task_id: str) -> str:
    return f"task-{task_id}"


def task_type_group(key: str, task_type: str) -> str:
    return f"vkey-{virtual_key_id(key)}-{task_type}"


# -- hub methods ------------------------------------------------------------------------------
def _join_key_group(call: HubCall) -> None:
    call.add_to_group(key_group(call.key))


def _owner(call: HubCall, task_id: str) -> str | None:
    owner = getattr(call.services, "task_owner", None)
    return call.key if owner is None else owner(task_id)


def _media_access(call: HubCall, task_id: object) -> str:
    """Image and video hubs (SecureHub.CanAccessTaskAsync): a blank, unknown or foreign task all
    get the same answer."""
    if not isinstance(task_id, str) or not task_id.strip() or _owner(call, task_id) != call.key:
        raise HubError(UNAUTHORIZED)
    return task_id


def subscribe_image(call: HubCall, task_id: str) -> None:
    call.add_to_group(image_group(_media_access(call, task_id)))


def unsubscribe_image(call: HubCall, task_id: str) -> None:
    if isinstance(task_id, str):
        call.remove_from_group(image_group(task_id))


def subscribe_video(call: HubCall, task_id: str) -> None:
    call.add_to_group(video_group(_media_access(call, task_id)))


def unsubscribe_video(call: HubCall, task_id: str) -> None:
    if isinstance(task_id, str):
        call.remove_from_group(video_group(task_id))


def subscribe_task(call: HubCall, task_id: str) -> None:
    """TaskHub tells the three cases apart."""
    if not isinstance(task_id, str) or not task_id.strip():
        raise HubError("Invalid task ID")
    owner = _owner(call, task_id)
    if owner is None:
        raise HubError("Task not found")
    if owner != call.key:
        raise HubError(UNAUTHORIZED)
    call.add_to_group(task_group(task_id))


def unsubscribe_task(call: HubCall, task_id: str) -> None:
    if isinstance(task_id, str):
        call.remove_from_group(task_group(task_id))


def subscribe_task_type(call: HubCall, task_type: str) -> None:
    call.add_to_group(task_type_group(call.key, str(task_type)))


def unsubscribe_task_type(call: HubCall, task_type: str) -> None:
    call.remove_from_group(task_type_group(call.key, str(task_type)))


_NEVER_CALLED = "defined on the server, never called"
_NO_TASKHUB_SENDER = "nothing in the image or video flow sends to TaskHub"

IMAGE_HUB = HubDefinition(
    name="image-generation",
    path=IMAGE_PATH,
    methods=(
        HubMethod("SubscribeToTask", subscribe_image),
        HubMethod("UnsubscribeFromTask", unsubscribe_image),
    ),
    events=(
        EventSpec("ImageGenerationProgress", ("taskId", "progressPercentage", "status", "imagesCompleted",
                                              "totalImages", "message", "timestamp"), "object"),
        EventSpec("ImageGenerationCompleted", ("taskId", "imageUrls", "durationSeconds", "cost",
                                               "completedAt"), "object"),
        EventSpec("ImageGenerationFailed", ("taskId", "error", "isRetryable", "failedAt"), "object"),
        EventSpec("ImageGenerationStarted", ("taskId", "prompt", "numberOfImages", "size", "style",
                                             "startedAt"), "object", sent=False, note=_NEVER_CALLED),
        EventSpec("ImageGenerationCancelled", ("taskId", "reason", "cancelledAt"), "object", sent=False,
                  note=_NEVER_CALLED + "; a cancel is an ImageGenerationProgress with status cancelled"),
    ),
    on_connected=_join_key_group,
    accepts_tokens=False,
)

VIDEO_HUB = HubDefinition(
    name="video-generation",
    path=VIDEO_PATH,
    methods=(
        HubMethod("SubscribeToTask", subscribe_video),
        HubMethod("UnsubscribeFromTask", unsubscribe_video),
    ),
    events=(
        EventSpec("VideoGenerationStarted", ("taskId", "provider", "startedAt", "estimatedSeconds"),
                  "object"),
        EventSpec("VideoGenerationProgress", ("taskId", "status", "progress", "message", "framesCompleted",
                                              "totalFrames", "timestamp"), "object"),
        EventSpec("VideoGenerationCompleted", ("taskId", "status", "videoUrl", "previewUrl", "duration",
                                               "resolution", "fileSize", "cost", "provider", "model",
                                               "completedAt", "generationDuration"), "object"),
        EventSpec("VideoGenerationFailed", ("taskId", "status", "error", "errorCode", "isRetryable",
                                            "retryCount", "maxRetries", "nextRetryAt", "failedAt"), "object"),
        EventSpec("VideoGenerationCancelled", ("taskId", "reason", "cancelledAt"), "object", sent=False,
                  note=_NEVER_CALLED + "; a cancelled video sends no hub event"),
    ),
    on_connected=_join_key_group,
    accepts_tokens=False,
)

TASK_HUB = HubDefinition(
    name="tasks",
    path=TASK_PATH,
    methods=(
        HubMethod("SubscribeToTask", subscribe_task),
        HubMethod("UnsubscribeFromTask", unsubscribe_task),
        HubMethod("SubscribeToTaskType", subscribe_task_type),
        HubMethod("UnsubscribeFromTaskType", unsubscribe_task_type),
    ),
    events=tuple(
        EventSpec(name, fields, "positional", sent=False, note=_NO_TASKHUB_SENDER)
        for name, fields in (
            ("TaskStarted", ("taskId", "taskType", "metadata")),
            ("TaskProgress", ("taskId", "progress", "message")),
            ("TaskCompleted", ("taskId", "result")),
            ("TaskFailed", ("taskId", "error", "isRetryable")),
            ("TaskCancelled", ("taskId", "reason")),
            ("TaskTimedOut", ("taskId", "timeoutSeconds")),
            ("TaskRetrying", ("taskId", "attemptNumber", "nextRetryDelay")),
        )
    ),
    on_connected=_join_key_group,
    accepts_tokens=False,
)

CLIENT_HUBS: dict[str, HubSpec] = {
    "image": HubSpec(IMAGE_PATH, "SubscribeToTask", "UnsubscribeFromTask", "ImageGenerationProgress",
                     "ImageGenerationCompleted", "ImageGenerationFailed"),
    "video": HubSpec(VIDEO_PATH, "SubscribeToTask", "UnsubscribeFromTask", "VideoGenerationProgress",
                     "VideoGenerationCompleted", "VideoGenerationFailed"),
}


# -- what a task's events look like on the wire ------------------------------------------------
def images_requested(task: Task) -> int:
    n = task.request.params.get("n", 1)
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1


def images_completed(task: Task, progress: int) -> int:
    """The image count behind a progress value: the real server counts stored images, not
    percent (the simulator's scripts speak percent)."""
    total = images_requested(task)
    return max(0, min(total, progress * total // 100))


def _attempt_before(task: Task, event: TaskEvent) -> list[TaskEvent]:
    """The task's events before ``event`` in the same attempt: a retried task (POST .../retry)
    starts over after its failure, so its first progress is a start again."""
    earlier: list[TaskEvent] = []
    for other in task.events:
        if other.seq >= event.seq:
            break
        earlier = [] if other.kind.terminal else [*earlier, other]
    return earlier


def _image_counts(task: Task, event: TaskEvent) -> tuple[int | None, int]:
    """(count at the previous progress event or None if this is the first, count now)."""
    previous: int | None = None
    for earlier in _attempt_before(task, event):
        if earlier.kind is EventKind.PROGRESS:
            previous = images_completed(task, earlier.progress)
    return previous, images_completed(task, event.progress)


def _is_first_progress(task: Task, event: TaskEvent) -> bool:
    return not any(e.kind is EventKind.PROGRESS for e in _attempt_before(task, event))


def _percent(done: int, total: int) -> int:
    return done * 100 // total if total > 0 else 0


def _image_progress(task: Task, status: str, done: int, total: int, message: str | None,
                    wall: float) -> dict[str, Any]:
    return {"taskId": task.task_id, "progressPercentage": _percent(done, total), "status": status,
            "imagesCompleted": done, "totalImages": total, "message": message, "timestamp": utc_iso(wall)}


def _stored_message(done: int, total: int) -> str:
    return f"Processed {done} of {total} images"


def image_urls(result: Any) -> list[str]:
    images = result.get("images") if isinstance(result, dict) else None
    urls: list[str] = []
    for image in images if isinstance(images, list) else []:
        url = image.get("url") if isinstance(image, dict) else image
        urls.append(url if isinstance(url, str) else "")
    return urls


def video_url(result: Any) -> str:
    url = result.get("video_url") if isinstance(result, dict) else None
    return url if isinstance(url, str) else ""


def _image_events(task: Task, event: TaskEvent) -> list[tuple[str, dict[str, Any]]]:
    total = images_requested(task)
    if event.kind is EventKind.PROGRESS:
        previous, done = _image_counts(task, event)
        out = []
        if previous is None:  # the orchestrator's start notice
            out.append(("ImageGenerationProgress", _image_progress(task, "processing", 0, total, None,
                                                                   event.wall)))
            previous = 0
        if done != previous:  # the 500 ms storage check reports only a changed count
            out.append(("ImageGenerationProgress", _image_progress(
                task, "storing", done, total, _stored_message(done, total), event.wall)))
        return out
    if event.kind is EventKind.COMPLETED:
        return [("ImageGenerationCompleted", {
            "taskId": task.task_id, "imageUrls": image_urls(event.result),
            "durationSeconds": max(event.wall - task.created_at, 0.0), "cost": 0,
            "completedAt": utc_iso(event.wall)})]
    if event.kind is EventKind.FAILED:
        return [("ImageGenerationFailed", {"taskId": task.task_id, "error": event.error,
                                           "isRetryable": False, "failedAt": utc_iso(event.wall)})]
    if event.kind is EventKind.CANCELLED:
        return [("ImageGenerationProgress", _image_progress(task, "cancelled", 0, 0, "Task cancelled",
                                                            event.wall))]
    return []  # timed out: nothing sends it


def _video_events(task: Task, event: TaskEvent) -> list[tuple[str, dict[str, Any]]]:
    if event.kind is EventKind.PROGRESS:
        out = []
        if _is_first_progress(task, event):
            out.append(("VideoGenerationStarted", {
                "taskId": task.task_id, "provider": VIDEO_START_PROVIDER, "startedAt": utc_iso(event.wall),
                "estimatedSeconds": VIDEO_ETA_SECONDS}))
        out.append(("VideoGenerationProgress", {
            "taskId": task.task_id, "status": VIDEO_PROGRESS_STATUS, "progress": event.progress,
            "message": f"Video generation {VIDEO_PROGRESS_STATUS.lower()}", "framesCompleted": None,
            "totalFrames": None, "timestamp": utc_iso(event.wall)}))
        return out
    if event.kind is EventKind.COMPLETED:
        # The orchestrator fills only the URL, completedAt and the generation time.
        return [("VideoGenerationCompleted", {
            "taskId": task.task_id, "status": "completed", "videoUrl": video_url(event.result),
            "previewUrl": None, "duration": 0, "resolution": "", "fileSize": 0, "cost": 0, "provider": "",
            "model": "", "completedAt": utc_iso(event.wall),
            "generationDuration": max(event.wall - task.created_at, 0.0)})]
    if event.kind is EventKind.FAILED:
        return [("VideoGenerationFailed", {
            "taskId": task.task_id, "status": "failed", "error": event.error, "errorCode": None,
            "isRetryable": False, "retryCount": task.retries, "maxRetries": MAX_RETRIES, "nextRetryAt": None,
            "failedAt": utc_iso(event.wall)})]
    return []  # cancelled and timed out: no hub event


def signalr_events(task: Task, event: TaskEvent) -> list[Emission]:
    if task.kind == "image":
        path, group, targets = IMAGE_PATH, image_group(task.task_id), _image_events(task, event)
    else:
        path, group, targets = VIDEO_PATH, video_group(task.task_id), _video_events(task, event)
    return [Emission(path, group, target, [payload]) for target, payload in targets]


def _webhook(webhook_type: str, fields: dict[str, Any], task: Task, status: str,
             event: TaskEvent) -> dict[str, Any]:
    """Derived-class keys first, then the base's; ``webhookType`` twice (inferred, see FACTS)."""
    return {"webhookType": webhook_type, **fields, "task_id": task.task_id, "status": status,
            "timestamp": utc_iso(event.wall), "webhook_type": webhook_type}


def _image_webhook(task: Task, event: TaskEvent) -> dict[str, Any] | None:
    total = images_requested(task)
    request = task.request
    if event.kind is EventKind.PROGRESS:
        previous, done = _image_counts(task, event)
        if done == (previous or 0):
            return None
        return _webhook("image_generation_progress", {
            "images_completed": done, "total_images": total, "progress_percentage": _percent(done, total),
            "message": _stored_message(done, total)}, task, "processing", event)
    statuses = {EventKind.COMPLETED: "completed", EventKind.FAILED: "failed",
                EventKind.CANCELLED: "cancelled"}
    if event.kind not in statuses:
        return None
    urls = image_urls(event.result) if event.kind is EventKind.COMPLETED else None
    error = IMAGE_CANCEL_ERROR if event.kind is EventKind.CANCELLED else event.error
    return _webhook("image_generation_completed", {
        "image_urls": urls, "images_generated": len(urls) if urls is not None else 0,
        "images_requested": total, "generation_duration_seconds": max(event.wall - task.created_at, 0.0),
        "model": request.model, "prompt": request.prompt, "size": request.params.get("size"),
        "response_format": "url", "error": None if event.kind is EventKind.COMPLETED else error,
    }, task, statuses[event.kind], event)


def _video_webhook(task: Task, event: TaskEvent) -> dict[str, Any] | None:
    request = task.request
    if event.kind is EventKind.COMPLETED:
        fields = {"video_url": video_url(event.result), "error": None,
                  "generation_duration_seconds": max(event.wall - task.created_at, 0.0)}
        status = "completed"
    elif event.kind is EventKind.FAILED:
        fields = {"video_url": None, "error": event.error, "generation_duration_seconds": None}
        status = "failed"
    elif event.kind is EventKind.CANCELLED:
        fields = {"video_url": None, "error": VIDEO_CANCEL_ERROR, "generation_duration_seconds": None}
        status = "cancelled"
    else:
        return None  # progress webhooks are dead code; nothing sends a timed-out one
    return _webhook("video_generation_completed",
                    {**fields, "model": request.model, "prompt": request.prompt}, task, status, event)


def webhook_body(task: Task, event: TaskEvent) -> dict[str, Any] | None:
    return _image_webhook(task, event) if task.kind == "image" else _video_webhook(task, event)


def webhook_type_header(event: TaskEvent) -> dict[str, str]:
    """``X-Webhook-Type``: progress for TaskProgress, completion for every other event type."""
    return {"X-Webhook-Type": "progress" if event.kind is EventKind.PROGRESS else "completion"}


WEBHOOK_DIALECT = WebhookDialect(
    content_type="application/json; charset=utf-8",
    signature=None,
    event_headers=webhook_type_header,
    serialise=dumps_bytes,
    event_type_key="webhook_type",
)

def decode_event(target: str, arguments: list[Any]) -> ClientEvent | None:
    """One camelCase object per event; its own timestamp is the emit time. A cancelled image is
    an ImageGenerationProgress with status ``cancelled``; VideoGenerationStarted carries no
    progress and means nothing to a task tracker."""
    if len(arguments) != 1 or not isinstance(arguments[0], dict):
        return None
    payload = arguments[0]
    task_id = payload.get("taskId")
    if not isinstance(task_id, str):
        return None
    if target in ("ImageGenerationProgress", "VideoGenerationProgress"):
        if payload.get("status") == "cancelled":
            return ClientEvent("cancelled", task_id, error=payload.get("message"),
                               emitted_at=payload.get("timestamp"))
        progress = payload.get("progressPercentage", payload.get("progress"))
        return ClientEvent("progress", task_id, progress=progress if isinstance(progress, int) else None,
                           emitted_at=payload.get("timestamp"))
    if target in ("ImageGenerationCompleted", "VideoGenerationCompleted"):
        return ClientEvent("completed", task_id, result=payload, emitted_at=payload.get("completedAt"))
    if target in ("ImageGenerationFailed", "VideoGenerationFailed"):
        return ClientEvent("failed", task_id, error=payload.get("error"), emitted_at=payload.get("failedAt"))
    return None


def reported_results(task: Task) -> list[Any]:
    """A completed task's result as a client can learn it: the completed hub event's object, or
    the status route's ``result`` (the stored object; a JSON string on the video route)."""
    forms: list[Any] = []
    for event in task.events:
        if event.kind is EventKind.COMPLETED:
            forms += [e.arguments[0] for e in signalr_events(task, event) if e.arguments]
    stored = stored_result(task)
    forms.append(stored if task.kind == "image" or stored is None
                 else json.dumps(stored, separators=(",", ":")))
    return forms


REST_STATUSES = ("pending", "processing", "completed", "failed", "cancelled", "timedout")

FACTS: tuple[Fact, ...] = (
    Fact("webhooks", "bodies carry both webhookType and webhook_type (System.Text.Json does not "
                     "inherit [JsonPropertyName] on an override)"),
    Fact("webhooks", "the server likely sends bodies chunked without Content-Length (JsonContent "
                     "streams); the simulator sends a Content-Length", inferred=True),
    Fact("webhooks", "besides <>&'+ and non-ASCII, the writer also escapes \" and ` (the default "
                     "encoder's HTML-safe set)"),
    Fact("rest", "GET /v1/tasks/{id} for an unknown id is 204 (MVC's Ok(null))"),
    Fact("rest", "video create validation errors: the ProblemDetails detail texts are the "
                 "simulator's validator's, not the server's"),
    Fact("hubs", "hub errors read \"An unexpected error occurred invoking '<Method>' on the server. "
                 "HubException: <msg>\" (ASP.NET's standard wrapping)"),
    Fact("hubs", "vkey-{id} groups use a stable number derived from the key; the server uses the "
                 "key's database id", inferred=False),
    Fact("events", "video progress: the server sends it only for MiniMax; the simulator sends one "
                   "per progress step, with MiniMax's status \"Processing\"", inferred=False),
    Fact("events", "image progress counts stored images: imagesCompleted = progress x n / 100, and "
                   "only a changed count is sent", inferred=False),
    Fact("events", "cost is 0 and provider is \"\": the simulator prices nothing", inferred=False),
    Fact("events", "no automatic retries (failure events say isRetryable false): the webhook status "
                   "\"retrying\", TaskRetrying and \"Retry n/m scheduled\" are never sent",
         inferred=False),
    Fact("rest", "POST .../tasks/{id}/retry re-runs the task's script as a new attempt; the reference "
                 "says only that the state goes back to pending, not what runs the task again",
         inferred=False),
    Fact("rest", "a manual retry counts one retry (retryCount + 1, at most 3); whether the server's "
                 "status update increments RetryCount is not in the reference; the 400 titles "
                 "(Invalid Task State, Max Retries Exceeded) are VideosController's"),
    Fact("events", "a timed-out task sends no hub event and no webhook: nothing in the image or video "
                   "flow sends one"),
    Fact("auth", "the 402 balance check and the per-IP 429 limiter are not simulated (poll faults "
                 "answer 429 in the limiter's shape)",
         inferred=False),
    Fact("hubs", "only the three task hubs are served; /hubs/webhooks, /hubs/notifications, /hubs/spend "
                 "and the other mapped hubs are not", inferred=False),
)

PROFILE = Profile(
    name="conduit-2025.08",
    description="the real Conduit server as built (knnlabs/Conduit 7c3fd76, 2025-08-28): "
                "object-shaped hub events, 30/60 s timings, JSON only, unsigned webhooks",
    hubs=(IMAGE_HUB, VIDEO_HUB, TASK_HUB),
    hub_options=HubOptions(keep_alive_interval=30.0, client_timeout=60.0, handshake_timeout=15.0,
                           protocols=("json",)),
    signalr_events=signalr_events,
    webhook_body=webhook_body,
    routes=ROUTES,
    webhook=WEBHOOK_DIALECT,
    client_hubs=CLIENT_HUBS,
    statuses={
        "rest": REST_STATUSES,
        "rest:create": ("queued", "pending"),
        "rest:/v1/tasks state": tuple(str(n) for n in range(6)),
        "webhook": ("processing", "completed", "failed", "retrying", "cancelled"),
        "hub:ImageGenerationProgress": ("processing", "storing", "cancelled"),
        "hub:VideoGenerationProgress": (VIDEO_PROGRESS_STATUS,),
        "task types": tuple(TASK_TYPES.values()),
    },
    facts=FACTS,
    decode_event=decode_event,
    status_paths={"image": IMAGE_STATUS_PATH, "video": VIDEO_STATUS_PATH},
    reported_results=reported_results,
)
