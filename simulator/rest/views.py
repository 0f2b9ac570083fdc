"""A task as each route shows it. Pure functions of the task's polled state.

The guide's route (``/api/tasks/{id}/status``) is snake_case; the real routes keep their as-built
shapes (conduit-as-built.md §1.5, §1.8, §1.9): image status snake_case, video status camelCase with
``result`` as a JSON *string*, ``/v1/tasks/{id}`` the internal object with a numeric ``state``.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from simulator.tasks.model import Task, TaskStatus, utc_iso

# TaskState enum numbers of the internal AsyncTaskStatus object (§1.9).
STATE_NUMBERS: dict[TaskStatus, int] = {
    TaskStatus.PENDING: 0, TaskStatus.PROCESSING: 1, TaskStatus.COMPLETED: 2,
    TaskStatus.FAILED: 3, TaskStatus.CANCELLED: 4, TaskStatus.TIMEDOUT: 5,
}
TASK_TYPES = {"image": "image_generation", "video": "video_generation"}
ERROR_STATUSES = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.TIMEDOUT})
MAX_RETRIES = 3  # as built: AsyncTaskStatus.MaxRetries default


def _result(task: Task) -> Any:
    return task.result if task.status is TaskStatus.COMPLETED else None


def _completed_at(task: Task) -> str | None:
    return utc_iso(task.updated_at) if task.status.terminal else None


def guide_status(task: Task) -> dict[str, Any]:
    """``GET /api/tasks/{id}/status``: ``result`` only when completed, ``error`` only when it ended
    without a result (failed, cancelled, timed out)."""
    return {
        "task_id": task.task_id,
        "status": task.status.value,
        "progress": task.progress,
        "result": _result(task),
        "error": task.error if task.status in ERROR_STATUSES else None,
        "created_at": utc_iso(task.created_at),
        "updated_at": utc_iso(task.updated_at),
    }


def image_status(task: Task) -> dict[str, Any]:
    """``GET /v1/images/generations/{id}/status`` (AsyncTaskStatusResponse): error only when failed."""
    return {
        "task_id": task.task_id,
        "status": task.status.value,
        "progress": task.progress,
        "created_at": utc_iso(task.created_at),
        "updated_at": utc_iso(task.updated_at),
        "result": _result(task),
        "error": task.error if task.status is TaskStatus.FAILED else None,
    }


def video_status(task: Task) -> dict[str, Any]:
    """``GET /v1/videos/generations/tasks/{id}``: camelCase, ``result`` serialised to a string,
    ``videoResponse`` (with an empty ``data``, as built) only when completed."""
    result = _result(task)
    video_response = None
    if result is not None:
        usage = result.get("usage") if isinstance(result, dict) else None
        video_response = {"created": int(task.updated_at), "data": [], "model": task.request.model,
                          "usage": usage}
    return {
        "taskId": task.task_id,
        "status": task.status.value,
        "progress": task.progress,
        "createdAt": utc_iso(task.created_at),
        "updatedAt": utc_iso(task.updated_at),
        "completedAt": _completed_at(task),
        "error": task.error,
        "result": json.dumps(result, separators=(",", ":"), default=str) if result is not None else None,
        "videoResponse": video_response,
    }


def virtual_key_id(key: str) -> int:
    """A stable number standing for the key (the real metadata holds the key's database id)."""
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


def internal_status(task: Task) -> dict[str, Any]:
    """``GET /v1/tasks/{id}``: the internal AsyncTaskStatus object, camelCase, numeric ``state``."""
    request = task.request
    return {
        "taskId": task.task_id,
        "taskType": TASK_TYPES.get(task.kind, task.kind),
        "state": STATE_NUMBERS[task.status],
        "createdAt": utc_iso(task.created_at),
        "updatedAt": utc_iso(task.updated_at),
        "completedAt": _completed_at(task),
        "result": _result(task),
        "error": task.error,
        "metadata": {
            "virtualKeyId": virtual_key_id(task.key),
            "model": request.model,
            "prompt": request.prompt,
            "correlationId": None,
            "payload": None,
            "videoId": task.task_id if task.kind == "video" else None,
            "webhookUrl": request.webhook_url,
            "webhookHeaders": dict(request.webhook_headers) or None,
            "priority": 0,
        },
        "progress": task.progress,
        "progressMessage": None,
        "retryCount": task.retries,
        "maxRetries": MAX_RETRIES,
        "isRetryable": True,
        "nextRetryAt": None,
    }


def image_created(task: Task, status_url: str, eta: str | None) -> dict[str, Any]:
    return {"task_id": task.task_id, "status": "queued", "check_status_url": status_url,
            "created_at": utc_iso(task.created_at), "estimated_completion_time": eta}


def video_created(task: Task, status_url: str, eta: str | None) -> dict[str, Any]:
    return {"taskId": task.task_id, "status": "pending", "checkStatusUrl": status_url,
            "createdAt": utc_iso(task.created_at), "estimatedCompletionTime": eta}
