"""The webhook strategies produce what they promise: same value, different bytes; bad signatures."""

from __future__ import annotations

import base64
import json
import random
import re
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract_tests.webhook_strategies import (
    EVENT_TYPES,
    LENIENT_CASES,
    MALFORMED_BODIES,
    MAX_BODY_BYTES,
    MUTATION_KINDS,
    PLACEHOLDER_SECRETS,
    REJECT_CASES,
    EncodingStyle,
    HeaderMutation,
    conduit_bytes,
    conduit_shaped_bodies,
    conduit_shapes,
    encode_json,
    encoding_styles,
    encodings,
    fixed_encodings,
    header_mutations,
    javascript_stringify,
    json_values,
    large_bodies,
    outsider_bodies,
    reserialisations,
    reserialises_differently,
    reserialising_encodings,
    sign,
    tamperable_positions,
    webhook_bodies,
)
from simulator.channels.webhooks import sign as simulator_sign

SECRET = "whsec_strategy_tests"
HEX64 = re.compile(r"[0-9a-f]{64}")
TASK_ID = re.compile(r"task_[0-9a-f]{32}")


@given(webhook_bodies())
def test_documented_bodies(body: dict) -> None:
    assert list(body) == ["event_type", "task_id", "status", "result", "error", "timestamp"]
    assert body["event_type"] in EVENT_TYPES and TASK_ID.fullmatch(body["task_id"])
    assert body["timestamp"].endswith("Z")
    if body["event_type"] == "task.progress":
        assert body["status"] == "processing" and body["error"] is None
        assert 0 <= body["result"]["progress"] <= 100
    elif body["event_type"] == "task.completed":
        assert body["status"] == "completed" and body["result"]["images"] and body["error"] is None
    else:
        assert body["status"] in ("failed", "cancelled", "timedout")
        assert body["result"] is None and body["error"]


@given(json_values(), encoding_styles())
def test_every_encoding_parses_back_to_the_value(value: object, style: EncodingStyle) -> None:
    body = encode_json(value, style)
    assert json.loads(body) == value


def test_the_default_style_is_the_simulators_form() -> None:
    value = {"z": [1, 2.5, None, True], "a": "café / <b> \u2028 🎨 \n"}
    assert encode_json(value) == conduit_bytes(value)


@settings(max_examples=60)
@given(reserialising_encodings(large=False))
def test_reserialising_encodings_defeat_python_and_javascript(encoded) -> None:  # type: ignore[no-untyped-def]
    assert json.loads(encoded.body) == encoded.value
    forms = reserialisations(encoded.body)
    assert encoded.body != forms["python-compact"] and encoded.body != forms["javascript"]
    assert len(encoded.body) <= MAX_BODY_BYTES


@settings(max_examples=3, deadline=None)
@given(encodings(large_bodies()))
def test_large_bodies_stay_under_conduits_limit(encoded) -> None:  # type: ignore[no-untyped-def]
    assert 20_000 < len(encoded.body) <= MAX_BODY_BYTES
    assert json.loads(encoded.body) == encoded.value


def test_fixed_encodings_cover_each_trap() -> None:
    cases = fixed_encodings()
    assert len({c.label for c in cases}) == len(cases) >= 12
    for case in cases:
        assert json.loads(case.body) == case.value, case.label
        assert reserialises_differently(case.body), case.label
    bodies = b"\n".join(c.body for c in cases)
    for trap in (b"\\u00e9", b"\\u00E9", b"\\/", b"\\u003C", b"1e3", b"-0", b".50", b"\r\n\t", b": "):
        assert trap in bodies, trap
    assert any(len(c.body) > 400_000 for c in cases)
    assert "caf\u00e9".encode() in bodies  # raw UTF-8 too


def test_sign_is_the_simulators() -> None:
    body = conduit_bytes({"event_type": "task.progress", "x": "é"})
    assert sign(body, SECRET) == simulator_sign(body, SECRET)
    assert HEX64.fullmatch(sign(body, SECRET))


def _accepts(body: bytes, signature: str | None) -> bool:
    """What a correct verifier concludes (lowercase or uppercase hex of the right MAC)."""
    return signature is not None and bool(re.fullmatch(r"[0-9a-fA-F]{64}", signature)) \
        and signature.lower() == sign(body, SECRET)


@given(webhook_bodies(), header_mutations(include_lenient=True))
def test_mutations(body: dict, mutation: HeaderMutation) -> None:
    raw = conduit_bytes(body)
    right = sign(raw, SECRET)
    signed = mutation.apply(raw, SECRET)
    assert signed == mutation.apply(raw, SECRET)  # deterministic
    if mutation.must_reject:
        assert not _accepts(signed.body, signed.signature), mutation
    kind = mutation.kind
    if kind in ("tampered-body", "appended-whitespace"):
        assert signed.signature == right and signed.body != raw
        parsed = json.loads(signed.body)  # still valid JSON with the same keys
        assert list(parsed) == list(body)
        if kind == "tampered-body":
            assert len(signed.body) == len(raw)
            assert sum(a != b for a, b in zip(signed.body, raw, strict=True)) == 1
    elif kind == "truncated":
        assert right.startswith(signed.signature) and 0 < len(signed.signature) < 64  # type: ignore[arg-type]
    elif kind == "over-long":
        assert signed.signature.startswith(right) and len(signed.signature) > 64  # type: ignore[union-attr]
    elif kind == "non-hex":
        assert len(signed.signature) == 64 and not HEX64.fullmatch(signed.signature)  # type: ignore[arg-type]
    elif kind == "uppercase":
        assert _accepts(signed.body, signed.signature)
    else:
        assert signed.body == raw


def test_fixed_mutation_lists() -> None:
    assert all(m.must_reject for m in REJECT_CASES)
    assert {m.kind for m in REJECT_CASES} == {k for k, (must, _) in MUTATION_KINDS.items() if must}
    assert not any(m.must_reject for m in LENIENT_CASES)
    with pytest.raises(ValueError):
        HeaderMutation("nonsense")
    placeholder = HeaderMutation("wrong-secret", 5).apply(b"{}", SECRET)
    assert placeholder.signature == sign(b"{}", "your-webhook-secret")


def test_tamperable_positions_skip_keys_and_escapes() -> None:
    body = b'{"key": "a\\u00e9b\\nc", "k2" : ["x1"], "n": 12}'
    assert [chr(body[i]) for i in tamperable_positions(body)] == ["a", "b", "c", "x", "1"]


def test_malformed_bodies_are_not_usable_deliveries() -> None:
    from contract_tests.receivers.python_receiver import parse_json

    for name, body in MALFORMED_BODIES.items():
        try:
            value = parse_json(body)
        except ValueError:
            continue
        usable = isinstance(value, dict) and isinstance(value.get("task_id"), str) \
            and value.get("event_type") in EVENT_TYPES and set(value) >= {"status", "timestamp"}
        assert not usable, name


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_javascript_model_matches_node() -> None:
    """javascript_stringify(json.loads(b)) == JSON.stringify(JSON.parse(b)), checked by real Node."""
    rng = random.Random(7)
    floats = [0.0, -0.0, 1.0, 1e21, 1e20, 1e-7, 1e-6, 123.456, 5e-324, 1.7976931348623157e308, 2.0**60]
    floats += [rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30) for _ in range(150)]
    bodies = [c.body for c in fixed_encodings()[:-1]]
    bodies += [json.dumps(floats).encode(), b'{"n":[1e3,1.50,-0,1E+2,10.0,0.1e1]}',
               '{"s":"\\u00e9\\/ \u2028 \\ud83c\\udfa8 \\u001f"}'.encode()]
    script = ("const lines = require('fs').readFileSync(0, 'utf8').trim().split('\\n');"
              "for (const l of lines) { const b = Buffer.from(l, 'base64').toString('utf8');"
              "const out = Buffer.from(JSON.stringify(JSON.parse(b))).toString('base64');"
              "process.stdout.write(out + '\\n'); }")
    stdin = "\n".join(base64.b64encode(b).decode() for b in bodies)
    done = subprocess.run(["node", "-e", script], input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    outputs = [base64.b64decode(line) for line in done.stdout.split()]
    assert len(outputs) == len(bodies)
    for body, node_form in zip(bodies, outputs, strict=True):
        assert javascript_stringify(json.loads(body)) == node_form, body[:200]


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_number_spellings_round_trip(value: float) -> None:
    for style in ("plain", "trailing-zero", "exponent", "upper-exponent", "negative-zero", "mixed"):
        assert json.loads(encode_json([value], EncodingStyle(numbers=style))) == [value]


def test_placeholder_secrets_cover_the_empty_one_and_the_mutants_defaults() -> None:
    from contract_tests.receivers import PLACEHOLDER_SECRET, PREVIOUS_SECRET_DEFAULT

    assert len(set(PLACEHOLDER_SECRETS)) == len(PLACEHOLDER_SECRETS) >= 13
    assert {"", PLACEHOLDER_SECRET, PREVIOUS_SECRET_DEFAULT} <= set(PLACEHOLDER_SECRETS)
    tried = {m.placeholder for m in REJECT_CASES if m.kind == "placeholder-secret"}
    assert tried == set(PLACEHOLDER_SECRETS)
    mutation = HeaderMutation("placeholder-secret", PLACEHOLDER_SECRETS.index("changeme"))
    assert mutation.apply(b"{}", SECRET).signature == sign(b"{}", "changeme")
    assert "'changeme'" in mutation.describe()


def test_conduit_shaped_bodies_are_documented_objects_conduit_could_send() -> None:
    from contract_tests.receivers.python_receiver import parse_json

    bodies = conduit_shaped_bodies(random.Random(3))
    assert len(bodies) >= 6
    event_types = set()
    for name, body in bodies.items():
        value = parse_json(body)
        assert isinstance(value, dict) and len(body) <= MAX_BODY_BYTES, name
        assert {"event_type", "task_id", "status", "result", "error", "timestamp"} <= set(value), name
        event_types.add(value["event_type"])
    assert event_types - set(EVENT_TYPES)  # unknown event types among them
    assert any(len(b) > 900_000 for b in bodies.values())
    assert any(not b.isascii() for b in bodies.values())


def test_outsider_bodies_include_the_pathological_ones() -> None:
    from contract_tests.receivers.python_receiver import parse_json

    bodies = outsider_bodies()
    assert set(MALFORMED_BODIES) <= set(bodies)
    assert any(len(b) > MAX_BODY_BYTES for b in bodies.values())
    deep = [name for name, b in bodies.items() if b.startswith(b"[" * 1000) or b.startswith(b'{"a":' * 1000)]
    assert len(deep) == 2
    for name in deep:
        with pytest.raises(ValueError):
            parse_json(bodies[name])


@given(conduit_shapes())
@settings(max_examples=40, deadline=None)
def test_conduit_shapes_keep_the_documented_keys_and_parse(value: dict) -> None:
    from contract_tests.receivers.python_receiver import parse_json

    assert {"event_type", "task_id", "status", "result", "error", "timestamp"} <= set(value)
    body = conduit_bytes(value)
    assert parse_json(body) == value
