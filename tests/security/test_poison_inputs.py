"""Poison inputs are contained: what a client sends reaches the timeline JSON-safe and bounded,
a huge negotiateVersion is a 400, a YAML alias bomb is refused quickly with a short message, and
client profiles refuse NaN, infinity and out-of-range numbers naming the file and the field."""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest

from conduit_core.signalr import Completion, Invocation
from conduit_core.signalr.msgpack_protocol import encode_varint
from contract_tests.client_profile import ProfileError, load_profile, parse_profile
from simulator.app import Simulator
from simulator.background import BackgroundSimulator
from simulator.jsonsafe import MAX_DEPTH, MAX_STRING, TOO_DEEP, json_safe, short_repr
from simulator.recorder import Recorder
from simulator.scenarios import ScenarioError, loads_scenario
from simulator.scenarios.yaml_bounds import MAX_ALIASES
from tests.server.raw_client import RawHubSocket, auth
from tests.support.simulator import FAST_HUB_OPTIONS, TEST_KEY

HUB = "/hubs/image-generation"


def strict_loads(text: str) -> Any:
    """JSON as a browser reads it: bare NaN / Infinity are errors."""
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


# -- the sanitiser -------------------------------------------------------------------------------

def test_json_safe_binary_keys_nan_and_depth() -> None:
    value = {b"\xff\x00key": 1, (1, 2): "tuple key", "n": math.nan, "i": [math.inf, -math.inf],
             "deep": nested(1000), "ok": {"a": [1, "b", None, True, 2.5]}}
    safe = json_safe(value)
    # json.dumps raises on NaN (allow_nan=False), on bytes keys and on deep recursion
    text = json.dumps(safe, allow_nan=False, ensure_ascii=False)
    back = strict_loads(text)
    assert back["n"] == "NaN" and back["i"] == ["Infinity", "-Infinity"]
    assert "\ufffd\x00key" in back and "(1, 2)" in back
    assert back["ok"] == value["ok"]
    assert TOO_DEEP in text and text.count("[") <= MAX_DEPTH + 5


def test_json_safe_leaves_safe_values_alone_and_truncates_long_ones() -> None:
    fields = {"target": "SubscribeToTask", "arguments": ["task_1", 3], "raw": b"\x00\x01"}
    assert json_safe(fields) is fields
    long = json_safe("m" * 30_000)
    assert len(long) < MAX_STRING + 40 and long.endswith("…[truncated, 30000 chars]")
    assert json_safe(b"x" * 100_000).startswith("<100000 bytes: ")
    many = json_safe(list(range(5000)))
    assert len(many) == 1001 and "4000 more items dropped" in many[-1]


def test_recorder_fields_are_bounded_and_the_sink_never_breaks() -> None:
    sink = io.StringIO()
    recorder = Recorder(sink)
    record = recorder.record("invocation", target="M" * 30_000, arguments=[{b"k": math.nan}, nested(1000)])
    assert len(record.fields["target"]) < MAX_STRING + 40
    line = strict_loads(sink.getvalue())
    assert line["arguments"][0] == {"k": "NaN"}
    assert len(sink.getvalue()) < 10_000


def test_short_repr_of_a_huge_structure_is_short_and_quick() -> None:
    laughs: Any = ["lol"] * 9
    for _ in range(8):
        laughs = [laughs] * 9  # 9^9 strings when expanded
    started = time.monotonic()
    text = short_repr(laughs)
    assert len(text) <= 260 and time.monotonic() - started < 1
    assert short_repr(10 ** 5000) == "<int>"


# -- through the server --------------------------------------------------------------------------

def invocation_frame(*arguments: bytes) -> bytes:
    """A MessagePack Invocation built by hand (the packer refuses 1,000 levels)."""
    items = msgpack.packb([1, {}, "inv1", "SubscribeToTask"])[1:]  # without its fixarray(4) header
    body = b"\x95" + items + bytes([0x90 | len(arguments)]) + b"".join(arguments)
    return encode_varint(len(body)) + body


@pytest.mark.parametrize("argument", [
    msgpack.packb({b"\x00bin": 1}, use_bin_type=True),
    msgpack.packb(float("nan")),
    msgpack.packb(float("inf")),
    b"\x91" * 999 + b"\xc0",
    msgpack.packb("x" * 30_000),
], ids=["binary-key", "nan", "inf", "depth-1000", "30k-string"])
async def test_poison_invocation_keeps_the_timeline_and_record_valid(
        tmp_path: Path, argument: bytes) -> None:
    record_file = tmp_path / "run.jsonl"
    with record_file.open("w", encoding="utf-8") as sink:
        background = BackgroundSimulator(Simulator(keys=[TEST_KEY], recorder=Recorder(sink),
                                                   hub_options=FAST_HUB_OPTIONS))
        background.start()
        try:
            async with aiohttp.ClientSession() as session:
                client = RawHubSocket(session, background.url + HUB, TEST_KEY)
                await client.open("messagepack")
                await client.ws.send_bytes(invocation_frame(argument))
                await client.receive_until(lambda m: isinstance(m, Completion))
                # the connection is still usable
                await client.send(Invocation("SubscribeToTask", ["task_x"], invocation_id="2"))
                await client.receive_until(lambda m: isinstance(m, Completion) and m.invocation_id == "2")
                async with session.get(background.url + "/_sim/timeline",
                                       headers=background.control_headers) as reply:
                    assert reply.status == 200
                    timeline = strict_loads(await reply.text())
        finally:
            background.stop()
    invocations = [r for r in timeline["records"] if r["kind"] == "invocation"]
    assert invocations and len(json.dumps(invocations[0])) < 10_000
    for line in record_file.read_text(encoding="utf-8").splitlines():
        strict_loads(line)


async def test_negotiate_version_with_thousands_of_digits_is_refused(sim: BackgroundSimulator) -> None:
    """Not a 500: the answer ASP gives to any invalid version (HTTP 200, ``{"error": ...}``), with
    the value cut short."""
    async with aiohttp.ClientSession() as session:
        for version in ("9" * 5000, "-" + "9" * 20, "1" + "0" * 4400):
            url = f"{sim.url}{HUB}/negotiate?negotiateVersion={version}"
            async with session.post(url, headers=auth(TEST_KEY)) as reply:
                assert reply.status == 200, version[:20]
                body = await reply.read()
                assert len(body) < 500 and "invalid protocol version" in json.loads(body)["error"]
        # leading zeros are still a number, as int.TryParse reads it
        async with session.post(f"{sim.url}{HUB}/negotiate?negotiateVersion={'0' * 5000}1",
                                headers=auth(TEST_KEY)) as reply:
            assert (await reply.json())["negotiateVersion"] == 1


# -- scenarios -----------------------------------------------------------------------------------

LAUGHS = "[&l0 [lol], " + ", ".join(
    f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)) + "]"


@pytest.mark.parametrize("field", ["name", "description"])
def test_a_yaml_alias_bomb_in_a_string_field_is_refused_quickly(field: str) -> None:
    """9^9 strings in nine lines: the error message used to repr() all of them."""
    started = time.monotonic()
    with pytest.raises(ScenarioError, match=f"{field}: must be a string") as caught:
        loads_scenario(f"{field}: {LAUGHS}\n", "bomb.yaml")
    assert time.monotonic() - started < 2
    assert len(str(caught.value)) < 300


def test_more_aliases_than_the_limit_are_refused_with_their_line() -> None:
    text = "a: &a x\nname: n\nmany: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    with pytest.raises(ScenarioError, match="aliases") as caught:
        loads_scenario(text, "many.yaml")
    assert caught.value.line == 1  # the anchor's line: an alias is the anchored node itself


def test_a_few_aliases_still_load_and_a_cycle_is_refused() -> None:
    text = """\
name: aliased
scripts:
  s: {steps: &steps [{after: 1, status: completed}]}
  t: {steps: *steps}
"""
    assert set(loads_scenario(text, "few.yaml").scripts) >= {"s", "t"}
    with pytest.raises(ScenarioError, match="name: must be a string"):
        loads_scenario("name: &n [*n]\n", "cycle.yaml")


def test_scenario_errors_never_render_a_huge_value() -> None:
    with pytest.raises(ScenarioError) as caught:
        loads_scenario(f"name: ok\nscripts:\n  s: {{steps: [{{after: {'9' * 5000}}}]}}\n", "big.yaml")
    assert len(str(caught.value)) < 400


# -- client profiles -------------------------------------------------------------------------------

@pytest.mark.parametrize(("toml", "field"), [
    ("[polling]\ninterval_ms = nan\n", "polling.interval_ms"),
    ("[polling]\ninterval_ms = inf\n", "polling.interval_ms"),
    ("[polling]\ninterval_ms = 0\n", "polling.interval_ms"),
    ("[polling]\nlimit = 1e12\n", "polling.limit"),
    ("[latency]\nsignalr_p95_ms = -inf\n", "latency.signalr_p95_ms"),
    ("[latency]\nwebhook_p95_ms = 1e300\n", "latency.webhook_p95_ms"),
    ("[reconnect]\ndelays_ms = [0, 1e400]\n", "reconnect.delays_ms"),
    ("[reconnect]\nmanual_restart_ms = 99999999999\n", "reconnect.manual_restart_ms"),
    ("[reconnect]\nformula = 100000000\n", "reconnect.formula"),
    ("[pool]\nmax_connections = 0\n", "pool.max_connections"),
])
def test_client_profiles_refuse_non_finite_and_out_of_range(tmp_path: Path, toml: str, field: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml, encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert str(caught.value).startswith(f"{path}: {field}: "), caught.value
    assert time.monotonic() - started < 1


def test_the_bundled_profiles_still_load() -> None:
    profiles = Path(__file__).resolve().parents[2] / "contract_tests" / "client_profiles"
    for path in sorted(profiles.glob("*.toml")):
        load_profile(path)
    assert parse_profile({"polling": {"interval_ms": 400}, "latency": {"signalr_p95_ms": 12.5}},
                         "x").poll_interval_ms == 400
