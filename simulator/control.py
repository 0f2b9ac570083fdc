"""The control API under ``/_sim/``: inspect a run and steer it while it runs.

JSON in and out; every request needs the run's control token (:mod:`simulator.security`).
``GET /_sim/openapi.json`` describes every route; the table :data:`ROUTES` is what the
application mounts, and the tests check that the document and the table agree.

=======  ======================  ======================================================
method   path                    does
=======  ======================  ======================================================
GET      /_sim/openapi.json      this API as an OpenAPI 3.1 document
GET      /_sim/info              profile, scenario, seed, time scale, secret, hubs, keys
GET      /_sim/timeline          recorder records, one bounded page (key, task, kind, since, limit)
GET      /_sim/faults            faults in force
POST     /_sim/faults            arm one fault, or ``{"faults": [...]}`` (all or none)
DELETE   /_sim/faults            disarm every fault
POST     /_sim/keys              a new virtual key (201)
GET      /_sim/tasks             every task (filter: key)
GET      /_sim/tasks/{task_id}   one task with its events
=======  ======================  ======================================================
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from simulator.auth import KEY_JSON_SCHEMA
from simulator.recorder import RecordKind
from simulator.scenarios.fault_schema import FAULT_KINDS, fault_json_schemas
from simulator.tasks.model import Task, utc_iso

if TYPE_CHECKING:
    from simulator.app import Simulator

log = logging.getLogger(__name__)

PREFIX = "/_sim"
MAX_BODY = 1024 * 1024
# /_sim/timeline pages: the default and largest number of records, and the byte size past
# which a page ends early (a page always holds at least one record; one record is bounded by
# simulator.jsonsafe).
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
MAX_PAGE_BYTES = 8 * 1024 * 1024

_dumps = partial(json.dumps, default=str)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


class BadRequest(Exception):
    """Answered as ``400 {"error": message}``."""


Handler = Callable[["ControlApi", web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str


class ControlApi:
    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator

    def bind(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                return await route.handler(self, request)
            except BadRequest as exc:
                return _json({"error": str(exc)}, status=400)
            except Exception as exc:
                log.exception("control API %s %s failed", request.method, request.path)
                return _json({"error": f"internal error: {type(exc).__name__}: {exc}"}, status=500)

        handle.__name__ = route.handler.__name__
        return handle

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    async def _body(request: web.Request, *, empty: Any = ...) -> Any:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise BadRequest(f"request body is larger than {MAX_BODY} bytes")
        raw = bytearray()
        while chunk := await request.content.read(64 * 1024):
            raw += chunk
            if len(raw) > MAX_BODY:
                raise BadRequest(f"request body is larger than {MAX_BODY} bytes")
        if not raw.strip():
            if empty is not ...:
                return empty
            raise BadRequest("request body is empty; send a JSON object")
        try:
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise BadRequest(f"request body is not UTF-8: {exc.reason} at byte {exc.start}") from None
        except RecursionError:
            raise BadRequest("request body is nested too deeply") from None
        except ValueError as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from None

    @staticmethod
    def _int_param(request: web.Request, name: str, default: int | None, low: int,
                   high: int | None = None) -> int | None:
        raw = request.query.get(name)
        if raw is None or raw == "":
            return default
        if len(raw) > 20:
            raise BadRequest(f"query parameter {name} must be an integer, not {raw[:20]!r}…")
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"query parameter {name} must be an integer, not {raw!r}") from None
        if value < low:
            raise BadRequest(f"query parameter {name} must be at least {low}, not {value}")
        if high is not None and value > high:
            raise BadRequest(f"query parameter {name} must be at most {high}, not {value}; "
                             "follow the answer's next link for the rest")
        return value

    def _task_json(self, task: Task, *, events: bool = False) -> dict[str, Any]:
        request = task.request
        out: dict[str, Any] = {
            "task_id": task.task_id, "kind": task.kind, "key": task.key, "status": task.status.value,
            "progress": task.progress, "script": task.script, "model": request.model,
            "prompt": request.prompt, "params": request.params, "webhook_url": request.webhook_url,
            "created_at": utc_iso(task.created_at), "updated_at": utc_iso(task.updated_at),
            "result": task.result, "error": task.error, "event_count": len(task.events),
        }
        if events:
            out["events"] = [event.to_json() for event in task.events]
        return out

    # -- routes -------------------------------------------------------------------------------
    async def openapi(self, request: web.Request) -> web.StreamResponse:
        return _json(openapi_document())

    async def info(self, request: web.Request) -> web.StreamResponse:
        sim = self.simulator
        services = sim.services
        payloads = getattr(sim.tasks, "payloads", None)
        return _json({
            "url": sim.url,
            "profile": sim.profile.name,
            "scenario": getattr(sim.scenario, "name", None),
            # The seed in use (a run without --seed draws one; this is it, to replay the run).
            "seed": getattr(payloads, "seed", services.seed),
            "time_scale": services.time_scale,
            "webhook_secret": services.webhook_secret,
            "hubs": [{"name": hub.definition.name, "path": hub.path} for hub in sim.hubs.values()],
            "keys": list(sim.keys),
        })

    async def timeline(self, request: web.Request) -> web.StreamResponse:
        """One page of the timeline. Never more than :data:`MAX_LIMIT` records or about
        :data:`MAX_PAGE_BYTES` of JSON, whatever is asked (without ``limit``,
        :data:`DEFAULT_LIMIT`): one unbounded answer once took 25 s and stalled every other
        connection. The page is gathered in a worker thread, so reading records that had left
        memory never blocks the event loop. The body is the records' own JSON lines, not
        decoded and encoded again."""
        since = self._int_param(request, "since", 0, 0) or 0
        limit = self._int_param(request, "limit", DEFAULT_LIMIT, 1, high=MAX_LIMIT) or DEFAULT_LIMIT
        kinds = {k.strip() for k in request.query.get("kind", "").split(",") if k.strip()} or None
        key = request.query.get("key") or None
        task = request.query.get("task") or None
        page = await asyncio.to_thread(self.simulator.recorder.page, kinds=kinds, key=key, task_id=task,
                                       since=since, limit=limit, max_bytes=MAX_PAGE_BYTES)
        query = {name: value for name, value in request.query.items() if name != "since"}
        query["since"] = str(page.last_seq)
        tail = {"last_seq": page.last_seq, "more": page.more,
                "next": f"{PREFIX}/timeline?{urlencode(query)}"}
        body = b'{"records": [' + b", ".join(page.lines) + b"], " + _dumps(tail)[1:].encode()
        return web.Response(body=body, content_type="application/json")

    async def list_faults(self, request: web.Request) -> web.StreamResponse:
        return _json({"faults": self.simulator.faults.active()})

    async def add_faults(self, request: web.Request) -> web.StreamResponse:
        from simulator.scenarios import CONTROL_API, ScenarioError, parse_fault

        data = await self._body(request)
        if isinstance(data, dict) and "faults" in data and "kind" not in data:
            extra = sorted(set(data) - {"faults"})
            if extra:
                raise BadRequest(f"{CONTROL_API}: {extra[0]}: unknown key next to faults; send "
                                 "{\"faults\": [...]} or one fault object")
            items = data["faults"]
            if not isinstance(items, list) or not items:
                raise BadRequest(f"{CONTROL_API}: faults: must be a non-empty list of fault objects")
            wheres = [f"faults[{index}]" for index in range(len(items))]
        else:
            items, wheres = [data], [""]
        specs = []
        for item, where in zip(items, wheres, strict=True):
            try:
                spec = parse_fault(item, where)
            except ScenarioError as exc:
                raise BadRequest(str(exc)) from None
            self._check_fault(spec, where)
            specs.append(spec)
        applied = [self.simulator.faults.apply(spec, "api") for spec in specs]
        return _json({"applied": applied})

    def _check_fault(self, spec: Any, where: str) -> None:
        """What parse_fault cannot know: the hubs of this run; ``at`` (a scenario's schedule)."""
        from simulator.scenarios import CONTROL_API

        def field(name: str) -> str:
            return f"{where}.{name}" if where else name

        if spec.at is not None:
            raise BadRequest(f"{CONTROL_API}: {field('at')}: not accepted here; the control API arms a "
                             "fault when it is posted (schedule faults in a scenario file instead)")
        hub = spec.params.get("hub")
        if hub is not None and hub not in self.simulator.hubs:
            raise BadRequest(f"{CONTROL_API}: {field('hub')}: no hub {hub!r} in this run; hubs: "
                             f"{', '.join(self.simulator.hubs)}")

    async def clear_faults(self, request: web.Request) -> web.StreamResponse:
        return _json({"cleared": self.simulator.faults.clear()})

    async def new_key(self, request: web.Request) -> web.StreamResponse:
        data = await self._body(request, empty={})
        if not isinstance(data, dict):
            raise BadRequest("request body must be a JSON object (or empty)")
        unknown = sorted(set(data) - {"key"})
        if unknown:
            raise BadRequest(f"unknown key {unknown[0]!r}; the body may only have key")
        keys = self.simulator.keys
        wanted = data.get("key")
        if wanted is None:
            key = keys.new_key()
        elif not isinstance(wanted, str):
            raise BadRequest("key must be a string")
        else:
            try:
                key = keys.add(wanted)
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
        self.simulator.recorder.record(RecordKind.KEY_ADDED, key=key, source="api")
        return _json({"key": key}, status=201)

    async def list_tasks(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("key") or None
        tasks = [self._task_json(task) for task in self.simulator.tasks.tasks.values()
                 if key is None or task.key == key]
        return _json({"tasks": tasks})

    async def get_task(self, request: web.Request) -> web.StreamResponse:
        task = self.simulator.tasks.get(request.match_info["task_id"])
        if task is None:
            return _json({"error": f"no task {request.match_info['task_id']!r}"}, status=404)
        return _json(self._task_json(task, events=True))

    async def fallback(self, request: web.Request) -> web.StreamResponse:
        """Unknown ``/_sim/`` paths: 404 JSON; a known path with another method: 405 JSON."""
        allowed = sorted({route.method for route in ROUTES if _matches(route.path, request.path)})
        if allowed:
            return _json({"error": f"method {request.method} not allowed on {request.path}; "
                                   f"allowed: {', '.join(allowed)}"},
                         status=405, headers={"Allow": ", ".join(allowed)})
        paths = sorted({route.path for route in ROUTES})
        return _json({"error": f"no control route {request.path}; routes: {', '.join(paths)}"}, status=404)


def _matches(template: str, path: str) -> bool:
    want = template.strip("/").split("/")
    got = path.strip("/").split("/")
    return len(want) == len(got) and all(
        w == g or (w.startswith("{") and w.endswith("}") and g) for w, g in zip(want, got, strict=True))


ROUTES: tuple[Route, ...] = (
    Route("GET", f"{PREFIX}/openapi.json", ControlApi.openapi, "This API as an OpenAPI 3.1 document"),
    Route("GET", f"{PREFIX}/info", ControlApi.info, "What this run serves"),
    Route("GET", f"{PREFIX}/timeline", ControlApi.timeline, "The recorder's records"),
    Route("GET", f"{PREFIX}/faults", ControlApi.list_faults, "Faults in force"),
    Route("POST", f"{PREFIX}/faults", ControlApi.add_faults, "Arm faults now"),
    Route("DELETE", f"{PREFIX}/faults", ControlApi.clear_faults, "Disarm every fault"),
    Route("POST", f"{PREFIX}/keys", ControlApi.new_key, "Add a virtual key"),
    Route("GET", f"{PREFIX}/tasks", ControlApi.list_tasks, "Every task"),
    Route("GET", f"{PREFIX}/tasks/{{task_id}}", ControlApi.get_task, "One task with its events"),
)


def control_routes(simulator: Simulator) -> list[web.RouteDef]:
    api = ControlApi(simulator)
    defs = [web.route(route.method, route.path, api.bind(route)) for route in ROUTES]
    defs.append(web.route("*", PREFIX + "/{tail:.*}", api.fallback))
    return defs


# ---------------------------------------------------------------------------------------------
# The OpenAPI document. The routes are described here; the fault schemas are generated from the
# pydantic models that also validate every POSTed fault (simulator.scenarios.fault_schema).

# kind -> the JSON schema of that fault's request object.
_FAULT_DOCUMENTS = fault_json_schemas()
FAULT_SCHEMAS: dict[str, dict[str, Any]] = {kind: _FAULT_DOCUMENTS[f"Fault_{kind}"] for kind in FAULT_KINDS}


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = {"$ref": "#/components/schemas/Error"}
_BAD = _ok(_ERROR, "Bad request: the message names the field and the problem")


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def openapi_document() -> dict[str, Any]:
    armed = {"type": "object", "description": "an armed fault: its parameters plus bookkeeping",
             "properties": {"id": {"type": "integer"}, "kind": {"type": "string"},
                            "hits": {"type": "integer"}, "remaining": {"type": ["integer", "null"]},
                            "target_event": {"type": ["integer", "null"]}, "spent": {"type": "boolean"}},
             "additionalProperties": True}
    task = {"type": "object", "properties": {
        name: {"type": t} for name, t in (
            ("task_id", "string"), ("kind", "string"), ("key", "string"), ("status", "string"),
            ("progress", "integer"), ("script", "string"), ("model", "string"), ("prompt", "string"),
            ("created_at", "string"), ("updated_at", "string"), ("event_count", "integer"))}}
    paths: dict[str, Any] = {
        f"{PREFIX}/openapi.json": {"get": {"summary": "This document", "responses": {
            "200": _ok({"type": "object"})}}},
        f"{PREFIX}/info": {"get": {"summary": "What this run serves", "responses": {"200": _ok({
            "type": "object", "properties": {
                "url": {"type": "string"}, "profile": {"type": "string"}, "scenario": {"type": "string"},
                "seed": {"type": "integer"}, "time_scale": {"type": "number"},
                "webhook_secret": {"type": "string"},
                "hubs": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "path": {"type": "string"}}}},
                "keys": {"type": "array", "items": {"type": "string"}}}})}}},
        f"{PREFIX}/timeline": {"get": {
            "summary": "Recorder records, oldest first, one bounded page at a time",
            "description": f"At most limit records (default {DEFAULT_LIMIT}, at most {MAX_LIMIT}) "
                           f"and about {MAX_PAGE_BYTES // (1024 * 1024)} MiB; when more is true, "
                           "follow next (the same filters with since=last_seq) for the rest.",
            "parameters": [
                _query("key", "only records whose key field equals this", {"type": "string"}),
                _query("task", "only records whose task_id field equals this", {"type": "string"}),
                _query("kind", "record kinds, comma-separated (e.g. poll,rest_request)", {"type": "string"}),
                _query("since", "only records after this seq (use the last answer's last_seq)",
                       {"type": "integer", "minimum": 0}),
                _query("limit", "at most this many records (then more is true)",
                       {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
            ],
            "responses": {"200": _ok({"type": "object", "required": ["records", "last_seq", "more", "next"],
                                      "properties": {
                "records": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
                "last_seq": {"type": "integer", "description": "pass as since to get only newer records"},
                "more": {"type": "boolean", "description": "a limit cut the answer short"},
                "next": {"type": "string", "description": "this query with since=last_seq"}}}),
                "400": _BAD}}},
        f"{PREFIX}/faults": {
            "get": {"summary": "Faults in force", "responses": {"200": _ok({
                "type": "object", "properties": {"faults": {"type": "array", "items": armed}}})}},
            "post": {
                "summary": "Arm faults now (all or none: one invalid fault arms nothing)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                    {"$ref": "#/components/schemas/Fault"},
                    {"type": "object", "required": ["faults"], "additionalProperties": False,
                     "properties": {"faults": {"type": "array", "minItems": 1,
                                               "items": {"$ref": "#/components/schemas/Fault"}}}}]}}}},
                "responses": {"200": _ok({"type": "object", "properties": {
                    "applied": {"type": "array", "items": armed}}}), "400": _BAD}},
            "delete": {"summary": "Disarm every fault", "responses": {"200": _ok({
                "type": "object", "properties": {"cleared": {"type": "integer"}}})}},
        },
        f"{PREFIX}/keys": {"post": {
            "summary": "Add a virtual key: a new one, or the one given",
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False, "properties": {
                    "key": KEY_JSON_SCHEMA}}}}},
            "responses": {"201": _ok({"type": "object", "properties": {"key": {"type": "string"}}},
                                     "Created"), "400": _BAD}}},
        f"{PREFIX}/tasks": {"get": {
            "summary": "Every task of the run",
            "parameters": [_query("key", "only this key's tasks", {"type": "string"})],
            "responses": {"200": _ok({"type": "object", "properties": {
                "tasks": {"type": "array", "items": task}}})}}},
        f"{PREFIX}/tasks/{{task_id}}": {"get": {
            "summary": "One task with its events",
            "parameters": [{"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _ok(task), "404": _ok(_ERROR, "No such task")}}},
    }
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "Record": {"type": "object", "required": ["seq", "kind", "wall", "mono"],
                   "properties": {"seq": {"type": "integer",
                                          "description": "the record's place on the timeline"},
                                  "kind": {"type": "string"},
                                  "wall": {"type": "number", "description": "Unix time, seconds"},
                                  "mono": {"type": "number", "description": "monotonic clock, seconds"}},
                   "additionalProperties": True},
        **_FAULT_DOCUMENTS,
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "conduit-harness simulator control API", "version": "1",
                 "description": "Inspect and steer a running simulator. Every request needs the "
                                "control token printed at start, in X-Conduit-Control-Token (or "
                                "Authorization: Bearer); without it 401. Errors are "
                                "400/404/405 with {\"error\": message}."},
        "paths": paths,
        "components": {"schemas": schemas},
    }
