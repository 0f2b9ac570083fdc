"""The REST route table of the ``conduit-2025.08`` profile: the real server's routes only.

Shared handlers (cancel, video status) are :class:`~simulator.rest.tasks.RestApi`'s; the ones
here are where the real server answers differently from the documented profile
(conduit-as-built.md §1):

- no guide routes (``/api/tasks/{id}/status``, ``/api/auth/realtime-token``);
- image create has no ``webhook_url``/``webhook_headers`` fields (they land in extension data and
  are ignored, so image webhooks never fire from REST); its ``check_status_url`` is the absolute
  URL of the image status route and ``estimated_completion_time`` is null;
- video create answers ``checkStatusUrl`` relative (``/v1/videos/generations/tasks/{id}``),
  ``estimatedCompletionTime`` = now + 60 s, and its validation errors are ProblemDetails;
- image status ``progress`` stays 0 until completion sets it to 100;
- ``/v1/tasks/{id}`` (GET, poll, cancel) has no ownership check, and a video task's metadata
  carries the raw virtual key (``VirtualKey`` extension field);
- ``POST /v1/videos/generations/tasks/{id}/retry`` (the guide has no retry): a failed task under
  its retry limit runs its script again (§1.8), anything else is a 400 ProblemDetails.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from simulator.rest import views
from simulator.rest.errors import RestError, error_dto, problem, task_not_found
from simulator.rest.tasks import (
    CAMEL,
    EPHEMERAL_CHALLENGE,
    POLL_TIMEOUT_RANGE,
    SNAKE,
    Call,
    RestApi,
    Route,
    int_query,
)
from simulator.rest.validation import read_json
from simulator.rest.views import MAX_RETRIES
from simulator.tasks.model import Task, TaskStatus, utc_iso

IMAGE_STATUS_PATH = "/v1/images/generations/{task_id}/status"
RETRY_PATH = "/v1/videos/generations/tasks/{task_id}/retry"
# The C# TaskState names, as RetryTask's "Current state: {State}" writes them.
STATE_NAMES = {TaskStatus.PENDING: "Pending", TaskStatus.PROCESSING: "Processing",
               TaskStatus.COMPLETED: "Completed", TaskStatus.FAILED: "Failed",
               TaskStatus.CANCELLED: "Cancelled", TaskStatus.TIMEDOUT: "TimedOut"}
VIDEO_STATUS_PATH = "/v1/videos/generations/tasks/{task_id}"
# VideosController: "EstimatedCompletionTime = now + 60 s (default estimate)".
VIDEO_ETA_SECONDS = 60
# Create-body keys the image request model does not have: extension data, never read.
IMAGE_IGNORED_FIELDS = ("webhook_url", "webhook_headers")


def image_progress(task: Task) -> int:
    """No code updates an image task's progress between start and completion (§1.5)."""
    return 100 if task.status is TaskStatus.COMPLETED else 0


def stored_result(task: Task) -> Any:
    """The result object the real task service stores, built from the simulator's result: image
    entries in PascalCase (default serializer options), a video's URL as ``videoUrl`` (§1.5, §1.8;
    the ``usage`` object is reduced to ``videos_generated``)."""
    result = task.result if task.status is TaskStatus.COMPLETED else None
    if not isinstance(result, dict):
        return result
    if task.kind == "image":
        images = result.get("images") if isinstance(result.get("images"), list) else []
        return {
            "images": [{"Url": image.get("url"), "B64Json": None,
                        "RevisedPrompt": image.get("revised_prompt"), "Metadata": None}
                       for image in images if isinstance(image, dict)],
            "duration": max(task.updated_at - task.created_at, 0.0), "cost": 0, "provider": "simulator",
            "model": task.request.model,
        }
    return {"videoUrl": result.get("video_url"), "usage": {"videos_generated": 1},
            "model": task.request.model, "created": int(task.updated_at),
            "duration": result.get("duration")}


def internal_view(task: Task) -> dict[str, Any]:
    """``GET /v1/tasks/{id}``: the internal object, with the as-built image progress and the raw
    key in a video task's metadata (§1.9, §6.15)."""
    body = views.internal_status(task)
    body["result"] = stored_result(task)
    if task.kind == "image":
        body["progress"] = image_progress(task)
    else:
        body["metadata"]["VirtualKey"] = task.key
    return body


async def create_image(api: RestApi, call: Call) -> web.StreamResponse:
    """No webhook fields; check_status_url is the image status route; no completion estimate."""
    data = await read_json(call.request)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in IMAGE_IGNORED_FIELDS}
    task = api.create_from(call, "image", data)
    request = call.request
    url = f"{request.scheme}://{request.host}{IMAGE_STATUS_PATH.format(task_id=task.task_id)}"
    return web.json_response(views.image_created(task, url, None), status=202)


async def create_video(api: RestApi, call: Call) -> web.StreamResponse:
    """checkStatusUrl relative; estimatedCompletionTime now + 60 s; errors as ProblemDetails."""
    data = await read_json(call.request)
    try:
        task = api.create_from(call, "video", data)
    except RestError as error:
        # As built an invalid request is an ArgumentException → ProblemDetails "Invalid Request";
        # the detail is our validator's message (the server's own texts are inferred).
        if error.response.status != 400:
            raise
        body = json.loads(error.response.body)  # type: ignore[arg-type]
        return problem(400, "Invalid Request", body["error"]["message"])
    body = {
        "taskId": task.task_id,
        "status": "pending",
        "createdAt": utc_iso(task.created_at),
        "estimatedCompletionTime": utc_iso(task.created_at + VIDEO_ETA_SECONDS),
        "checkStatusUrl": VIDEO_STATUS_PATH.format(task_id=task.task_id),
    }
    return web.json_response(body, status=202)


async def image_status(api: RestApi, call: Call) -> web.StreamResponse:
    """progress 0 until completion (then 100); result with PascalCase image entries."""
    task = api.own_task(call)
    if task is None:
        return task_not_found()
    body = views.image_status(task)
    body["progress"] = image_progress(task)
    body["result"] = stored_result(task)
    return web.json_response(body)


async def video_status(api: RestApi, call: Call) -> web.StreamResponse:
    """result is the stored object (videoUrl, usage, ...) as a JSON string."""
    task = api.own_task(call)
    if task is None:
        return problem(404, "Task Not Found", "The requested task was not found")
    body = views.video_status(task)
    result = stored_result(task)
    if result is not None:
        body["result"] = json.dumps(result, separators=(",", ":"))
        if body.get("videoResponse") is not None:
            body["videoResponse"]["usage"] = result.get("usage")
    return web.json_response(body)


async def retry_task(api: RestApi, call: Call) -> web.StreamResponse:
    """Manual retry: a failed task with retries left runs its script again; 400 otherwise."""
    task = api.own_task(call)
    if task is None:
        return problem(404, "Task Not Found", "The requested task was not found")
    if task.status is not TaskStatus.FAILED:
        return problem(400, "Invalid Task State",
                       f"Only failed tasks can be retried. Current state: {STATE_NAMES[task.status]}")
    # IsRetryable: the stored task's flag defaults to true and nothing in the simulator clears it
    # (views.internal_status shows it), so that 400 ("Task Not Retryable") never applies here.
    if task.retries >= MAX_RETRIES:
        return problem(400, "Max Retries Exceeded",
                       f"Task has already been retried {task.retries} times (max: {MAX_RETRIES})")
    api.services.tasks.retry(task.task_id, error=f"Manual retry requested (attempt {task.retries + 1}/"
                                                 f"{MAX_RETRIES})")
    call.task_status = task.status.value
    body = views.video_status(task)
    body.update(completedAt=None, result=None, videoResponse=None,
                error=f"Retry {task.retries}/{MAX_RETRIES} scheduled")
    return web.json_response(body)


def _any_task(api: RestApi, call: Call) -> Task | None:
    """The task named in the path, whoever owns it: ``/v1/tasks`` checks no ownership."""
    task = api.services.tasks.get(call.path_task_id)
    if task is not None:
        call.task_status = task.status.value
    return task


async def internal_status(api: RestApi, call: Call) -> web.StreamResponse:
    """No ownership check; a video task's metadata holds the raw key; unknown id: 204."""
    task = _any_task(api, call)
    if task is None:
        return web.Response(status=204)  # Ok(null) → 204 (inferred from MVC's null handling)
    return web.json_response(internal_view(task))


async def long_poll(api: RestApi, call: Call) -> web.StreamResponse:
    """No ownership check; the same internal object as GET /v1/tasks/{id}."""
    timeout = int_query(call.request, "timeout", 300)
    int_query(call.request, "interval", 2)
    timeout = min(max(timeout, POLL_TIMEOUT_RANGE[0]), POLL_TIMEOUT_RANGE[1])
    task = _any_task(api, call)
    if task is None:
        return error_dto(404, f"Task {call.path_task_id} not found", "not_found")
    return await api.poll_until_terminal(call, task, timeout, internal_view)


async def cancel_task(api: RestApi, call: Call) -> web.StreamResponse:
    """No ownership check: any key cancels any task."""
    task = _any_task(api, call)
    if task is None:
        return error_dto(404, f"Task {call.path_task_id} not found", "not_found")
    if not task.status.terminal:
        api.services.tasks.cancel(task.task_id)
    return web.Response(status=204)


ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/images/generations/async", create_image, EPHEMERAL_CHALLENGE, ephemeral=True,
          casing=SNAKE, codes=(202, 400, 401, 413)),
    Route("GET", IMAGE_STATUS_PATH, image_status, EPHEMERAL_CHALLENGE, ephemeral=True, polled=True,
          casing=SNAKE, codes=(200, 401, 404)),
    Route("DELETE", "/v1/images/generations/{task_id}", RestApi.cancel_image, EPHEMERAL_CHALLENGE,
          ephemeral=True, casing=SNAKE, codes=(200, 400, 401, 404)),
    Route("POST", "/v1/videos/generations/async", create_video, casing=CAMEL, codes=(202, 400, 401, 413)),
    Route("GET", VIDEO_STATUS_PATH, video_status, polled=True, casing=CAMEL, codes=(200, 401, 404)),
    Route("POST", RETRY_PATH, retry_task, casing=CAMEL, codes=(200, 400, 401, 404)),
    Route("DELETE", "/v1/videos/generations/{task_id}", RestApi.cancel_video, codes=(204, 401, 404, 409)),
    Route("GET", "/v1/tasks/{task_id}", internal_status, polled=True, casing=CAMEL, codes=(200, 204, 401)),
    Route("GET", "/v1/tasks/{task_id}/poll", long_poll, polled=True, casing=CAMEL,
          codes=(200, 400, 401, 404)),
    Route("POST", "/v1/tasks/{task_id}/cancel", cancel_task, codes=(204, 401, 404)),
    Route("POST", "/v1/auth/ephemeral-key", RestApi.ephemeral_key, casing=CAMEL, codes=(200, 401)),
)
