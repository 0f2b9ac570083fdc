"""The task routes (S-REST, S-AUTH): one table, one wrapper, one handler per route.

Every route authenticates (``Authorization: Bearer`` or ``X-API-Key``; image routes also take
``X-Ephemeral-Key``), and every request is recorded as ``rest_request``; a 401 is also recorded as
``auth_rejected``. Status routes (``polled``) first ask the fault controller whether to answer
5xx/429, and record each answer as ``poll`` — the contract suite computes poll intervals from
those records.

Routes served (documented profile plus the real ones of conduit-as-built.md §1):

=======  =========================================  ==========================================
method   path                                       answers
=======  =========================================  ==========================================
POST     /v1/images/generations/async               202 snake_case; 400; 413; 401
POST     /v1/videos/generations/async               202 camelCase; 400; 413; 401
GET      /api/tasks/{task_id}/status                200 guide shape; 404 OpenAI error
GET      /v1/images/generations/{task_id}/status    200 AsyncTaskStatusResponse; 404
GET      /v1/videos/generations/tasks/{task_id}     200 camelCase, result as string; 404 Problem
GET      /v1/tasks/{task_id}                        200 internal object; 204 unknown; 404 other key
GET      /v1/tasks/{task_id}/poll                   200 when terminal or timed out; 404
POST     /v1/tasks/{task_id}/cancel                 204; 404 ErrorResponseDto
DELETE   /v1/images/generations/{task_id}           200 message; 400 invalid_operation; 404
DELETE   /v1/videos/generations/{task_id}           204; 409 Problem; 404 Problem
GET      /api/auth/realtime-token                   200 {token, expires_at}
POST     /v1/auth/ephemeral-key                     200 {ephemeralKey, expiresAt, expiresInSeconds}
=======  =========================================  ==========================================
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from simulator.auth import REALTIME_TOKEN_TTL, credential_from
from simulator.recorder import RecordKind
from simulator.rest import views
from simulator.rest.errors import (
    RestError,
    error_dto,
    openai_error,
    poll_fault,
    problem,
    task_not_found,
    unauthorized,
)
from simulator.rest.validation import parse_create, read_json
from simulator.services import Services
from simulator.tasks.engine import TaskAlreadyFinished
from simulator.tasks.model import Task, TaskKind, TaskRequest, TaskStatus, utc_iso

log = logging.getLogger(__name__)

GUIDE_STATUS_PATH = "/api/tasks/{task_id}/status"
EPHEMERAL_CHALLENGE = "EphemeralKey"
# Request headers not copied into TaskRequest.headers (scenario rules match the others).
PRIVATE_HEADERS = frozenset({"authorization", "x-api-key", "x-ephemeral-key", "cookie"})
# GET /v1/tasks/{id}/poll: as built, timeout is clamped to 1..600 s, interval is at least 1 s.
POLL_TIMEOUT_RANGE = (1, 600)
POLL_CHECK_EVERY = 0.02  # how often the long poll looks at the task (the server's own loop)


@dataclass
class Call:
    """One request in flight: who made it and what it touched (for the records)."""

    request: web.Request
    route: Route
    key: str | None = None
    task_id: str | None = None
    task_status: str | None = None  # the task status a status route answered
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path_task_id(self) -> str:
        return self.request.match_info["task_id"]


Handler = Callable[["RestApi", Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    challenge: str | None = None  # WWW-Authenticate on 401
    ephemeral: bool = False  # X-Ephemeral-Key accepted (image routes, as built)
    polled: bool = False  # a status route: poll faults apply and "poll" is recorded
    # What the route answers, as data for ``profiles diff``: the JSON casing of its success body
    # and the status codes it can give (401 included).
    casing: str | None = None
    codes: tuple[int, ...] = ()


class RestApi:
    def __init__(self, services: Services) -> None:
        self.services = services

    # -- the wrapper every route goes through -------------------------------------------------
    def bind(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            call = Call(request, route, task_id=request.match_info.get("task_id"))
            response = await self._answer(call)
            self._record(call, response.status)
            return response

        handle.__name__ = route.handler.__name__
        return handle

    async def _answer(self, call: Call) -> web.StreamResponse:
        route = call.route
        call.key = self._authenticate(call)
        if call.key is None:
            return unauthorized(route.challenge)
        if route.polled:
            fault = self.services.faults.poll_error(call.key)
            if fault is not None:
                status, retry_after = fault
                call.extra = {"fault": True, "retry_after": retry_after}
                return poll_fault(status, retry_after, call.request.path)
        try:
            return await route.handler(self, call)
        except RestError as error:
            return error.response
        except Exception:
            log.exception("%s %s failed", call.request.method, call.request.path)
            return openai_error(500, "Internal simulator error", type_="server_error", code="internal_error")

    def _authenticate(self, call: Call) -> str | None:
        request = call.request
        keys = self.services.keys
        credential = credential_from(request, allow_query=False)
        key = keys.resolve(credential)
        if key is None and call.route.ephemeral:
            ephemeral = request.headers.get("X-Ephemeral-Key", "").strip()
            if ephemeral:
                credential = credential or ephemeral
                key = keys.resolve(ephemeral, allow_tokens=True)
        if key is None:
            self.services.recorder.record(
                RecordKind.AUTH_REJECTED, stage="rest", method=request.method, path=request.path,
                route=call.route.path, reason="missing key" if credential is None else "unknown key",
            )
        return key

    def _record(self, call: Call, status: int) -> None:
        recorder = self.services.recorder
        request = call.request
        if call.route.polled:
            recorder.record(RecordKind.POLL, key=call.key, task_id=call.task_id, route=call.route.path,
                            path=request.path, status=status, task_status=call.task_status,
                            fault=call.extra.get("fault", False),
                            retry_after=call.extra.get("retry_after"))
            if status == 200 and call.task_id is not None and call.task_status is not None:
                # An event held back until this task's next poll goes out with this answer.
                self.services.faults.polled(call.task_id, call.task_status)
        recorder.record(RecordKind.REST_REQUEST, method=request.method, path=request.path,
                        route=call.route.path,
                        key=call.key, status=status, task_id=call.task_id)

    # -- helpers ------------------------------------------------------------------------------
    def own_task(self, call: Call) -> Task | None:
        """The caller's task named in the path; None when unknown or another key's."""
        task = self.services.tasks.get(call.path_task_id, call.key)
        if task is not None:
            call.task_status = task.status.value
        return task

    def _estimated_completion(self, task: Task) -> str | None:
        scripts = getattr(self.services.scenario, "scripts", None) or {}
        script = scripts.get(task.script)
        if script is None:
            return None
        return utc_iso(task.created_at + script.duration * self.services.time_scale)

    async def _create(self, call: Call, kind: TaskKind) -> Task:
        return self.create_from(call, kind, await read_json(call.request))

    def create_from(self, call: Call, kind: TaskKind, data: Any) -> Task:
        """Create a task from an already parsed body (a profile may strip fields first)."""
        fields = parse_create(kind, data, self.services.allowed_webhook_hosts)
        headers = {name.lower(): value for name, value in call.request.headers.items()
                   if name.lower() not in PRIVATE_HEADERS}
        assert call.key is not None
        task = self.services.tasks.create(TaskRequest(
            kind=kind, prompt=fields.prompt, model=fields.model, key=call.key, headers=headers,
            params=fields.params, webhook_url=fields.webhook_url, webhook_headers=fields.webhook_headers,
        ))
        call.task_id = task.task_id
        return task

    def _status_url(self, call: Call, task: Task) -> str:
        request = call.request
        return f"{request.scheme}://{request.host}{GUIDE_STATUS_PATH.format(task_id=task.task_id)}"

    # -- create -------------------------------------------------------------------------------
    async def create_image(self, call: Call) -> web.StreamResponse:
        task = await self._create(call, "image")
        body = views.image_created(task, self._status_url(call, task), self._estimated_completion(task))
        return web.json_response(body, status=202)

    async def create_video(self, call: Call) -> web.StreamResponse:
        task = await self._create(call, "video")
        body = views.video_created(task, self._status_url(call, task), self._estimated_completion(task))
        return web.json_response(body, status=202)

    # -- status -------------------------------------------------------------------------------
    async def guide_status(self, call: Call) -> web.StreamResponse:
        task = self.own_task(call)
        return task_not_found() if task is None else web.json_response(views.guide_status(task))

    async def image_status(self, call: Call) -> web.StreamResponse:
        task = self.own_task(call)
        return task_not_found() if task is None else web.json_response(views.image_status(task))

    async def video_status(self, call: Call) -> web.StreamResponse:
        task = self.own_task(call)
        if task is None:
            return problem(404, "Task Not Found", "The requested task was not found")
        return web.json_response(views.video_status(task))

    def _internal_task(self, call: Call) -> Task | None:
        """As built, an unknown id is 204; another key's task is 404 here (S-AUTH)."""
        task = self.own_task(call)
        if task is None and self.services.tasks.get(call.path_task_id) is not None:
            raise RestError(error_dto(404, f"Task {call.path_task_id} not found", "not_found"))
        return task

    async def internal_status(self, call: Call) -> web.StreamResponse:
        task = self._internal_task(call)
        if task is None:
            return web.Response(status=204)
        return web.json_response(views.internal_status(task))

    async def long_poll(self, call: Call) -> web.StreamResponse:
        timeout = int_query(call.request, "timeout", 300)
        interval = int_query(call.request, "interval", 2)
        del interval  # as built it only paces the server's own checks; ours check every 20 ms
        timeout = min(max(timeout, POLL_TIMEOUT_RANGE[0]), POLL_TIMEOUT_RANGE[1])
        task = self.own_task(call)
        if task is None:
            return error_dto(404, f"Task {call.path_task_id} not found", "not_found")
        return await self.poll_until_terminal(call, task, timeout, views.internal_status)

    async def poll_until_terminal(self, call: Call, task: Task, timeout: float,
                                  view: Callable[[Task], dict[str, Any]]) -> web.StreamResponse:
        """The long poll's wait: until the task is terminal, the timeout passes or the client goes."""
        deadline = time.monotonic() + timeout
        transport = call.request.transport
        while not task.status.terminal and time.monotonic() < deadline:
            if transport is None or transport.is_closing():
                break
            await asyncio.sleep(min(POLL_CHECK_EVERY, max(deadline - time.monotonic(), 0)))
        call.task_status = task.status.value
        return web.json_response(view(task))

    # -- cancel -------------------------------------------------------------------------------
    async def cancel_image(self, call: Call) -> web.StreamResponse:
        task = self.own_task(call)
        if task is None:
            return task_not_found()
        try:
            self.services.tasks.cancel(task.task_id)
        except TaskAlreadyFinished:
            return openai_error(400, "Task has already completed", param="task_id", code="invalid_operation")
        return web.json_response({"message": "Task cancellation requested", "task_id": task.task_id})

    async def cancel_video(self, call: Call) -> web.StreamResponse:
        task = self.own_task(call)
        if task is None:
            return problem(404, "Task Not Found", "The requested task was not found")
        if task.status in (TaskStatus.COMPLETED, TaskStatus.FAILED):
            return problem(409, "Cannot Cancel Task",
                           f"Task {task.task_id} cannot be cancelled because it is {task.status.value}")
        # As built, a cancelled or timed-out task is not blocked: cancelling it again is a 204.
        if not task.status.terminal:
            self.services.tasks.cancel(task.task_id)
        return web.Response(status=204)

    async def cancel_task(self, call: Call) -> web.StreamResponse:
        task = self.own_task(call)
        if task is None:
            return error_dto(404, f"Task {call.path_task_id} not found", "not_found")
        # As built there is no state check (a finished task would be overwritten to cancelled);
        # the engine keeps a finished task as it is, and the answer is the same 204.
        if not task.status.terminal:
            self.services.tasks.cancel(task.task_id)
        return web.Response(status=204)

    # -- tokens -------------------------------------------------------------------------------
    async def realtime_token(self, call: Call) -> web.StreamResponse:
        assert call.key is not None
        token, expires_at = self.services.keys.issue_token(call.key)
        self.services.recorder.record(RecordKind.TOKEN_ISSUED, key=call.key, route=call.route.path,
                                      expires_at=utc_iso(expires_at))
        return web.json_response({"token": token, "expires_at": utc_iso(expires_at)})

    async def ephemeral_key(self, call: Call) -> web.StreamResponse:
        assert call.key is not None
        token, expires_at = self.services.keys.issue_token(call.key)
        self.services.recorder.record(RecordKind.TOKEN_ISSUED, key=call.key, route=call.route.path,
                                      expires_at=utc_iso(expires_at))
        return web.json_response({"ephemeralKey": token, "expiresAt": utc_iso(expires_at),
                                  "expiresInSeconds": int(REALTIME_TOKEN_TTL)})


def int_query(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise RestError(problem(400, "One or more validation errors occurred.",
                                f"The value '{raw}' is not valid for {name}.")) from None


SNAKE, CAMEL = "snake_case", "camelCase"

ROUTES: tuple[Route, ...] = (
    # The guide's documented routes.
    Route("POST", "/v1/images/generations/async", RestApi.create_image, EPHEMERAL_CHALLENGE, ephemeral=True,
          casing=SNAKE, codes=(202, 400, 401, 413)),
    Route("POST", "/v1/videos/generations/async", RestApi.create_video,
          casing=CAMEL, codes=(202, 400, 401, 413)),
    Route("GET", GUIDE_STATUS_PATH, RestApi.guide_status, polled=True, casing=SNAKE, codes=(200, 401, 404)),
    Route("DELETE", "/v1/images/generations/{task_id}", RestApi.cancel_image, EPHEMERAL_CHALLENGE,
          ephemeral=True, casing=SNAKE, codes=(200, 400, 401, 404)),
    Route("DELETE", "/v1/videos/generations/{task_id}", RestApi.cancel_video, codes=(204, 401, 404, 409)),
    Route("GET", "/api/auth/realtime-token", RestApi.realtime_token, casing=SNAKE, codes=(200, 401)),
    # The real server's routes (conduit-as-built.md §1), with their own shapes.
    Route("GET", "/v1/images/generations/{task_id}/status", RestApi.image_status, EPHEMERAL_CHALLENGE,
          ephemeral=True, polled=True, casing=SNAKE, codes=(200, 401, 404)),
    Route("GET", "/v1/videos/generations/tasks/{task_id}", RestApi.video_status, polled=True,
          casing=CAMEL, codes=(200, 401, 404)),
    Route("GET", "/v1/tasks/{task_id}", RestApi.internal_status, polled=True, casing=CAMEL,
          codes=(200, 204, 401, 404)),
    Route("GET", "/v1/tasks/{task_id}/poll", RestApi.long_poll, polled=True, casing=CAMEL,
          codes=(200, 400, 401, 404)),
    Route("POST", "/v1/tasks/{task_id}/cancel", RestApi.cancel_task, codes=(204, 401, 404)),
    Route("POST", "/v1/auth/ephemeral-key", RestApi.ephemeral_key, casing=CAMEL, codes=(200, 401)),
)


def task_routes(services: Services, routes: tuple[Route, ...] = ROUTES) -> list[web.RouteDef]:
    """Bind a route table (the profile's) to this run's services."""
    api = RestApi(services)
    return [web.route(route.method, route.path, api.bind(route)) for route in routes]
