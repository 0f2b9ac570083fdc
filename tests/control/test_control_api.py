"""The control API under /_sim/: info, keys, tasks, timeline, faults, errors, OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from simulator.background import BackgroundSimulator
from simulator.control import FAULT_SCHEMAS, control_routes
from simulator.scenarios import FAULT_KINDS, FAULT_PARAMS
from tests.support.rest import FAST, Http, open_http
from tests.support.simulator import OTHER_KEY, TEST_KEY

TERMINAL = {"completed", "failed", "cancelled", "timedout"}


@pytest.fixture
def fast(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator(scenario=FAST, seed=11, time_scale=1.0, webhook_secret="whsec_test")


@pytest.fixture
async def http(fast: BackgroundSimulator) -> AsyncIterator[Http]:
    async with open_http(fast.url, fast.control_token) as client:
        yield client


async def sim_get(http: Http, path: str) -> Any:
    reply = await http("GET", path, key=None)
    assert reply.status == 200, reply
    assert reply.headers["Content-Type"].startswith("application/json")
    return reply.json()


# -- info, keys, tasks ----------------------------------------------------------------------------

async def test_info(fast: BackgroundSimulator, http: Http) -> None:
    info = await sim_get(http, "/_sim/info")
    assert info["profile"] == "documented" and info["scenario"] == "rest-fast"
    assert (info["seed"], info["time_scale"], info["webhook_secret"]) == (11, 1.0, "whsec_test")
    assert info["url"] == fast.url
    assert {hub["path"] for hub in info["hubs"]} >= {"/hubs/image-generation", "/hubs/video-generation"}
    assert set(info["keys"]) == {TEST_KEY, OTHER_KEY}


async def test_new_keys_work_on_rest_and_are_listed(http: Http) -> None:
    reply = await http("POST", "/_sim/keys", key=None)
    assert reply.status == 201
    key = reply.json()["key"]
    assert key.startswith("vk_") and key not in (TEST_KEY, OTHER_KEY)
    task_id = await http.create("image", key=key)
    assert (await http("GET", f"/api/tasks/{task_id}/status", key=TEST_KEY)).status == 404
    chosen = await http("POST", "/_sim/keys", key=None, json_body={"key": "vk_chosen42"})
    assert (chosen.status, chosen.json()) == (201, {"key": "vk_chosen42"})
    assert {key, "vk_chosen42"} <= set((await sim_get(http, "/_sim/info"))["keys"])
    for body, message in [({"key": "sk nope"}, "whitespace"), ({"key": 5}, "string"), ({"kee": "x"}, "'kee'"),
                          ([1], "JSON object")]:
        bad = await http("POST", "/_sim/keys", key=None, json_body=body)
        assert bad.status == 400 and message in bad.json()["error"], (body, bad)


async def test_tasks_listing_and_detail(http: Http) -> None:
    mine = await http.create("image")
    theirs = await http.create("video", key=OTHER_KEY, prompt="slow")
    await http.until(mine, TERMINAL)
    listing = (await sim_get(http, "/_sim/tasks"))["tasks"]
    assert {t["task_id"] for t in listing} == {mine, theirs}
    only = (await sim_get(http, f"/_sim/tasks?key={OTHER_KEY}"))["tasks"]
    assert [(t["task_id"], t["kind"], t["script"], t["key"]) for t in only] == [
        (theirs, "video", "slow", OTHER_KEY)]
    assert only[0]["status"] in ("pending", "processing")
    detail = await sim_get(http, f"/_sim/tasks/{mine}")
    assert (detail["status"], detail["progress"], detail["script"]) == ("completed", 100, "ok")
    assert [e["progress"] for e in detail["events"]] == [10, 50, 90, 100]
    missing = await http("GET", "/_sim/tasks/task_nope", key=None)
    assert missing.status == 404 and "task_nope" in missing.json()["error"]


# -- timeline -------------------------------------------------------------------------------------

async def test_timeline_filters(fast: BackgroundSimulator, http: Http) -> None:
    mine = await http.create("image")
    theirs = await http.create("image", key=OTHER_KEY)
    await http.until(mine, TERMINAL)

    everything = await sim_get(http, "/_sim/timeline")
    seqs = [r["seq"] for r in everything["records"]]
    assert seqs == sorted(seqs) and everything["last_seq"] == seqs[-1] and everything["more"] is False
    assert {"seq", "kind", "wall", "mono"} <= set(everything["records"][0])

    by_kind = await sim_get(http, "/_sim/timeline?kind=task_created,poll")
    assert {r["kind"] for r in by_kind["records"]} == {"task_created", "poll"}
    by_key = await sim_get(http, f"/_sim/timeline?key={OTHER_KEY}")
    assert by_key["records"] and all(r["key"] == OTHER_KEY for r in by_key["records"])
    assert any(r["kind"] == "task_created" and r["task_id"] == theirs for r in by_key["records"])
    by_task = await sim_get(http, f"/_sim/timeline?task={mine}&kind=task_event")
    assert [r["progress"] for r in by_task["records"]] == [10, 50, 90, 100]

    # Paging: limit cuts the answer and last_seq is the cursor for the rest.
    first = await sim_get(http, "/_sim/timeline?limit=3")
    assert len(first["records"]) == 3 and first["more"] is True
    assert first["last_seq"] == first["records"][-1]["seq"]
    rest = await sim_get(http, f"/_sim/timeline?since={first['last_seq']}")
    assert [r["seq"] for r in first["records"] + rest["records"]][:len(seqs)] == seqs
    # Without limit, last_seq covers what was scanned, so since=last_seq gives only newer records.
    quiet = await sim_get(http, f"/_sim/timeline?kind=no_such_kind&since={everything['last_seq']}")
    assert quiet["records"] == [] and quiet["last_seq"] >= everything["last_seq"]

    for query, message in [("since=-1", "since"), ("since=abc", "since"), ("limit=0", "limit"),
                           ("limit=x", "limit")]:
        bad = await http("GET", f"/_sim/timeline?{query}", key=None)
        assert bad.status == 400 and message in bad.json()["error"], query


# -- faults ---------------------------------------------------------------------------------------

BAD_FAULTS: list[tuple[Any, str]] = [
    ({}, "kind: required"),
    ({"kind": "poll_error", "count": 1}, "did you mean 'poll_errors'"),
    ({"kind": "poll_errors"}, "count: required for a poll_errors fault"),
    ({"kind": "poll_errors", "count": 0}, "count: must be at least 1"),
    ({"kind": "poll_errors", "count": 1, "status": 404}, "status: must be one of 500, 502, 503, 429"),
    ({"kind": "poll_errors", "count": 1, "retry_after": "soon"}, "retry_after: must be an integer"),
    ({"kind": "drop_connections", "mode": "explode"}, "mode: must be one of"),
    ({"kind": "drop_connections", "hub": "/hubs/nope"}, "hub: no hub '/hubs/nope'"),
    ({"kind": "stop_pings", "duration": "soon"}, "duration: bad duration"),
    ({"kind": "webhook", "mode": "duplicate", "delay": 1}, "delay: only mode slow takes a delay"),
    ({"kind": "delay_event", "nth": 1, "delay": 1, "colour": "red"}, "colour: unknown key"),
    ({"kind": "refuse_reconnects", "count": 1, "at": "2s"}, "at: not accepted here"),
    ({"faults": [{"kind": "stop_pings"}, {"kind": "refuse_reconnects"}]},
     "faults[1].count: required for a refuse_reconnects fault"),
    ({"faults": []}, "non-empty list"),
    ({"faults": {"kind": "stop_pings"}}, "non-empty list"),
    ({"faults": [], "extra": 1}, "extra: unknown key"),
    ([{"kind": "stop_pings"}], "a fault must be a mapping"),
]


@pytest.mark.parametrize(("body", "message"), BAD_FAULTS, ids=[m for _, m in BAD_FAULTS])
async def test_invalid_faults_are_400_naming_the_field_and_arm_nothing(
        fast: BackgroundSimulator, http: Http, body: Any, message: str) -> None:
    reply = await http("POST", "/_sim/faults", key=None, json_body=body)
    assert reply.status == 400, reply
    error = reply.json()["error"]
    assert error.startswith("<control API>:") and message in error, error
    assert (await sim_get(http, "/_sim/faults")) == {"faults": []}
    assert fast.simulator.recorder.records("fault") == []


@pytest.mark.parametrize(("data", "message"), [(b"{", "not valid JSON"), (b"", "empty"),
                                               (b"\xff\xfe", "not UTF-8")])
async def test_bad_json_is_400_saying_what_was_wrong(http: Http, data: bytes, message: str) -> None:
    reply = await http("POST", "/_sim/faults", key=None, data=data)
    assert reply.status == 400 and message in reply.json()["error"]


async def test_faults_arm_list_and_clear(fast: BackgroundSimulator, http: Http) -> None:
    one = await http("POST", "/_sim/faults", key=None, json_body={"kind": "stop_pings"})
    assert one.status == 200
    [applied] = one.json()["applied"]
    assert applied["kind"] == "stop_pings" and applied["duration"] is None
    two = await http("POST", "/_sim/faults", key=None, json_body={"faults": [
        {"kind": "refuse_reconnects", "count": 2, "how": "upgrade_refused"},
        {"kind": "webhook", "mode": "slow"},
    ]})
    assert [(f["kind"], f.get("delay")) for f in two.json()["applied"]] == [
        ("refuse_reconnects", None), ("webhook", 5.0)]
    active = (await sim_get(http, "/_sim/faults"))["faults"]
    assert [f["kind"] for f in active] == ["stop_pings", "refuse_reconnects", "webhook"]
    assert {r.get("source") for r in fast.simulator.recorder.records("fault")} == {"api"}
    cleared = await http("DELETE", "/_sim/faults", key=None)
    assert (cleared.status, cleared.json()) == (200, {"cleared": 3})
    assert (await sim_get(http, "/_sim/faults")) == {"faults": []}
    assert (await http("DELETE", "/_sim/faults", key=None)).json() == {"cleared": 0}


# -- routing errors and the OpenAPI document -----------------------------------------------------

async def test_unknown_route_is_404_json_and_wrong_method_405(http: Http) -> None:
    missing = await http("GET", "/_sim/nothing/here", key=None)
    assert missing.status == 404 and "/_sim/timeline" in missing.json()["error"]
    wrong = await http("PUT", "/_sim/faults", key=None, json_body={})
    assert wrong.status == 405 and wrong.headers["Allow"] == "DELETE, GET, POST"
    assert "PUT" in wrong.json()["error"]


async def test_openapi_describes_every_route(fast: BackgroundSimulator, http: Http) -> None:
    reply = await http("GET", "/_sim/openapi.json", key=None)
    doc = json.loads(reply.body)
    assert doc["openapi"].startswith("3.1") and doc["info"]["title"] and doc["info"]["version"]
    routes = [(r.method, r.path) for r in control_routes(fast.simulator) if "{tail" not in r.path]
    assert len(routes) >= 9
    for method, path in routes:
        assert method.lower() in doc["paths"].get(path, {}), (method, path)
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == set(routes)

    schemas = doc["components"]["schemas"]
    assert [ref["$ref"] for ref in schemas["Fault"]["oneOf"]] == [
        f"#/components/schemas/Fault_{kind}" for kind in FAULT_KINDS]
    for kind in FAULT_KINDS:
        schema = schemas[f"Fault_{kind}"]
        assert set(schema["properties"]) == {"kind", *FAULT_PARAMS[kind]}, kind
        required = {name for name, param in FAULT_PARAMS[kind].items() if param.required}
        assert set(schema["required"]) == {"kind", *required}, kind
        for name, param in FAULT_PARAMS[kind].items():
            if not param.required and param.default is not None:
                assert schema["properties"][name].get("default") == param.default, (kind, name)
    assert set(FAULT_SCHEMAS) == set(FAULT_KINDS)
