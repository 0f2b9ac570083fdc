"""Micro-benchmarks of the protocol core, each paired with a plain-library baseline in the same run.

    .venv/bin/python -m pytest benchmarks/test_bench_protocol.py --benchmark-json reports/bench/protocol.json

Every case runs as ``role=simulator`` and ``role=baseline``; ``benchmarks/conftest.py`` writes
the baseline/simulator ratios to ``reports/bench/protocol_ratios.json``. The tests assert only
that both sides compute the same thing, never a time.

The message is a typical server emit: ``TaskProgress(task_id, progress)`` with the
``x-conduit-emit-time`` header, as :meth:`HubLifetime._emit` sends it.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from benchmarks.conftest import BASELINES, Pairs
from conduit_core.signalr import (
    HubProtocolConnection,
    Invocation,
    Role,
    handshake,
    json_protocol,
    msgpack_protocol,
)
from simulator.channels.webhooks import sign

TASK_ID = "task_01HZX5V6Q8M3W2N7K4J9B1C0DE"
EMIT = "1767225600123.456"
MESSAGE = Invocation("TaskProgress", [TASK_ID, 42], headers={"x-conduit-emit-time": EMIT})
AS_DICT = {"type": 1, "headers": {"x-conduit-emit-time": EMIT}, "target": "TaskProgress",
           "arguments": [TASK_ID, 42]}
AS_ARRAY = [1, {"x-conduit-emit-time": EMIT}, None, "TaskProgress", [TASK_ID, 42], []]

JSON_RECORD = json_protocol.encode(MESSAGE)  # with the trailing 0x1e
JSON_BODY = JSON_RECORD[:-1]
MSGPACK_FRAME = msgpack_protocol.encode(MESSAGE)  # varint length prefix + array
MSGPACK_BODY = msgpack.packb(AS_ARRAY, use_bin_type=True)
HANDSHAKE = b'{"protocol":"json","version":1}'
SECRET = "whsec_benchmarksecret0123456789abcdef"
BODY_1K = json.dumps({"event_type": "task.progress", "task_id": TASK_ID, "status": "processing",
                      "result": {"progress": 42}, "error": None, "padding": "x" * 1024},
                     separators=(",", ":")).encode()[:1024]
JSON_100 = b"".join(json_protocol.encode(Invocation("TaskProgress", [TASK_ID, i],
                                                    headers={"x-conduit-emit-time": EMIT}))
                    for i in range(100))
MSGPACK_100 = b"".join(msgpack_protocol.encode(Invocation("TaskProgress", [TASK_ID, i],
                                                          headers={"x-conduit-emit-time": EMIT}))
                       for i in range(100))
# Client → server: what a busy client sends (non-blocking invocations), for the receive path.
CLIENT_100 = b"".join(json_protocol.encode(Invocation("SubscribeToTask", [f"{TASK_ID}{i}"]))
                      for i in range(100))
LIMIT = 32 * 1024


def _naive_msgpack_split(buffer: bytearray) -> list[bytes]:
    """Baseline framing: every message here is under 128 bytes, so its prefix is one byte."""
    out, i, n = [], 0, len(buffer)
    while i < n:
        length = buffer[i]
        out.append(bytes(buffer[i + 1:i + 1 + length]))
        i += 1 + length
    return out


def _open_server() -> HubProtocolConnection:
    conn = HubProtocolConnection(Role.SERVER)
    conn.receive_data(HANDSHAKE + b"\x1e")
    return conn


def _receive_100() -> list[Any]:
    conn = _open_server()  # not timed separately: a handshake is a few µs, see handshake_parse
    return conn.receive_data(CLIENT_100)


def _receive_100_baseline() -> list[Any]:
    json.loads(HANDSHAKE)
    return [json.loads(r) for r in bytearray(CLIENT_100).split(b"\x1e")[:-1]]


# case -> (simulator, baseline, description of the baseline, check(sim_result, base_result))
CASES: dict[str, tuple[Callable[[], Any], Callable[[], Any], str, Callable[[Any, Any], bool]]] = {
    "json_encode": (
        lambda: json_protocol.encode(MESSAGE),
        lambda: json.dumps(AS_DICT, separators=(",", ":"), ensure_ascii=False).encode() + b"\x1e",
        "json.dumps(dict, separators) + 0x1e",
        lambda a, b: a == b,
    ),
    "json_decode": (
        lambda: json_protocol.decode(JSON_BODY),
        lambda: json.loads(JSON_BODY),
        "json.loads(record)",
        lambda a, b: a == MESSAGE and b == AS_DICT,
    ),
    "msgpack_encode": (
        lambda: msgpack_protocol.encode(MESSAGE),
        lambda: msgpack.packb(AS_ARRAY, use_bin_type=True),
        "msgpack.packb(array) (no length prefix)",
        lambda a, b: a.endswith(b),
    ),
    "msgpack_decode": (
        lambda: msgpack_protocol.decode(MSGPACK_BODY),
        lambda: msgpack.unpackb(MSGPACK_BODY),
        "msgpack.unpackb(payload)",
        lambda a, b: a == MESSAGE and b == AS_ARRAY,
    ),
    "json_split_records_100": (
        lambda: json_protocol.split_records(bytearray(JSON_100), LIMIT),
        lambda: bytearray(JSON_100).split(b"\x1e")[:-1],
        "bytearray.split(0x1e)",
        lambda a, b: a == [bytes(x) for x in b] and len(a) == 100,
    ),
    "msgpack_split_records_100": (
        lambda: msgpack_protocol.split_records(bytearray(MSGPACK_100), LIMIT),
        lambda: _naive_msgpack_split(bytearray(MSGPACK_100)),
        "a plain loop over one-byte length prefixes",
        lambda a, b: a == b and len(a) == 100,
    ),
    "json_receive_100": (
        _receive_100,
        _receive_100_baseline,
        "handshake json.loads + split(0x1e) + json.loads per record",
        lambda a, b: len(a) == len(b) == 100,
    ),
    "handshake_parse": (
        lambda: handshake.parse_request(HANDSHAKE),
        lambda: json.loads(HANDSHAKE),
        "json.loads(record)",
        lambda a, b: a.protocol == b["protocol"] == "json" and a.version == b["version"] == 1,
    ),
    "sign_1kib": (
        lambda: sign(BODY_1K, SECRET),
        lambda: hmac.new(SECRET.encode("utf-8"), BODY_1K, hashlib.sha256).hexdigest(),
        "hmac.new(secret, body, sha256).hexdigest()",
        lambda a, b: a == b,
    ),
    "sign_1kib_vs_hmac_digest": (
        lambda: sign(BODY_1K, SECRET),
        lambda: hmac.digest(SECRET.encode("utf-8"), BODY_1K, "sha256").hex(),
        "hmac.digest(secret, body, 'sha256').hex() (the one-shot C path)",
        lambda a, b: a == b,
    ),
}
BASELINES.update({case: spec[2] for case, spec in CASES.items()})


def _plan(fn: Callable[[], Any]) -> tuple[int, int]:
    """Iterations per round (a round lasts about 100 µs, well above the timer's resolution) and
    rounds (about 0.3 s in all), from a quick calibration."""
    import time

    for _ in range(20):
        fn()
    n, started = 0, time.perf_counter()
    while n < 50 or time.perf_counter() - started < 0.01:
        fn()
        n += 1
    per_call = (time.perf_counter() - started) / n
    iterations = max(1, int(100e-6 / per_call))
    rounds = max(30, min(3000, int(0.3 / (iterations * per_call))))
    return iterations, rounds


@pytest.mark.parametrize("role", ["simulator", "baseline"])
@pytest.mark.parametrize("case", list(CASES))
def test_protocol(benchmark: Any, pairs: Pairs, case: str, role: str) -> None:
    simulator_fn, baseline_fn, _, same = CASES[case]
    fn = simulator_fn if role == "simulator" else baseline_fn
    benchmark.group = case
    benchmark.extra_info["role"] = role
    iterations, rounds = _plan(fn)
    gc.collect()
    gc.disable()  # a collection inside a timed round is noise, not the code's cost
    try:
        result = benchmark.pedantic(fn, iterations=iterations, rounds=rounds,
                                    warmup_rounds=max(3, rounds // 20))
    finally:
        gc.enable()
    # Both sides must do the same job (checked outside the timed part).
    assert same(simulator_fn(), baseline_fn())
    assert result is not None
    pairs.record(case, role, benchmark)
    if role == "simulator" and not getattr(benchmark, "disabled", False):
        pairs.interleave(case, simulator_fn, baseline_fn)
