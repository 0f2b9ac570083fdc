"""Virtual keys (issue 9, outcome 7): any key a transport can carry is accepted, a bad one is
refused with the rule it breaks, and real Conduit keys (``condt_`` + base64, so ``+ / =``) work
over REST and on the hubs, in a header and url-encoded in the ``access_token`` query."""

from __future__ import annotations

import base64
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from harness.cli import build_parser
from simulator.auth import MAX_KEY_LENGTH, KeyStore, key_problem
from simulator.background import BackgroundSimulator
from tests.support.rest import FAST, Http, open_http

ROOT = Path(__file__).resolve().parents[2]
GUIDE_KEY = "vk_your_virtual_key_here"
# As Conduit makes them: condt_ + base64 of 32 bytes; these bytes give all of + / =.
CONDT_KEY = "condt_" + base64.b64encode(bytes.fromhex("fbff" + "fe" * 29 + "ff")).decode()
HANDSHAKE = b'{"protocol":"json","version":1}\x1e'


def test_the_condt_key_has_the_characters_that_need_care() -> None:
    assert len(CONDT_KEY) == 6 + 44 and {"+", "/", "="} <= set(CONDT_KEY)


@pytest.mark.parametrize("key", [GUIDE_KEY, CONDT_KEY, "sk-test.123:abc", "ключ", "x",
                                 "k" * MAX_KEY_LENGTH])
def test_usable_keys_are_accepted(key: str) -> None:
    assert key_problem(key) is None
    assert key in KeyStore([key])
    assert build_parser().parse_args(["serve", "--virtual-key", key]).virtual_keys == [key]


@pytest.mark.parametrize(("key", "rule"), [
    ("", "may not be empty"),
    ("k" * (MAX_KEY_LENGTH + 1), f"at most {MAX_KEY_LENGTH} characters; this one has {MAX_KEY_LENGTH + 1}"),
    ("vk_two words", "may not contain whitespace (' ' at position 6)"),
    ("vk_tab\there", "may not contain whitespace"),
    ("vk_line\n", "may not contain whitespace"),
    ("vk_nul\x00", "may not contain control characters ('\\x00' at position 6)"),
    ("vk_del\x7f", "may not contain control characters"),
])
def test_bad_keys_are_refused_naming_the_rule(key: str, rule: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert rule in (key_problem(key) or "")
    with pytest.raises(ValueError, match="refused: a virtual key") as refused:
        KeyStore([key])
    assert rule in str(refused.value)
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--virtual-key", key])
    assert exited.value.code == 2 and rule in capsys.readouterr().err


def test_serve_starts_with_the_guides_example_key() -> None:
    """The guide's own example key, as a user would type it, on the real console script."""
    cli = ROOT / ".venv" / "bin" / "conduit-harness"
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "harness.cli"]
    proc = subprocess.Popen([*command, "serve", "--virtual-key", GUIDE_KEY], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        banner: dict[str, str] = {}
        for line in proc.stdout:
            name, sep, value = line.rstrip("\n").partition(": ")
            if not sep:
                name, sep, value = line.rstrip("\n").partition(" on ")
            banner[name] = value
            if name == "virtual key":
                break
        assert banner.get("virtual key") == GUIDE_KEY, (banner, proc.poll())
        url = banner["listening"]
        request = urllib.request.Request(f"{url}/api/tasks/task_none/status",
                                         headers={"Authorization": f"Bearer {GUIDE_KEY}"})
        with pytest.raises(urllib.error.HTTPError) as answer:   # known key, unknown task
            urllib.request.urlopen(request, timeout=10)
        assert answer.value.code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def fast(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator(scenario=FAST, seed=3, keys=[CONDT_KEY, GUIDE_KEY])


@pytest.fixture
async def http(fast: BackgroundSimulator) -> AsyncIterator[Http]:
    async with open_http(fast.url) as client:
        yield client


@pytest.mark.parametrize("key", [CONDT_KEY, GUIDE_KEY])
async def test_a_key_works_over_rest_in_either_header(http: Http, key: str) -> None:
    task_id = await http.create("image", key=key)
    assert (await http.status(task_id, key=key))["task_id"] == task_id
    by_api_key = await http("GET", f"/api/tasks/{task_id}/status", key=None, headers={"X-API-Key": key})
    assert by_api_key.status == 200
    other = GUIDE_KEY if key == CONDT_KEY else CONDT_KEY
    assert (await http("GET", f"/api/tasks/{task_id}/status", key=other)).status == 404


async def test_a_condt_key_negotiates_and_connects_url_encoded(fast: BackgroundSimulator, http: Http) -> None:
    hub = "/hubs/image-generation"
    assert (await http("POST", f"{hub}/negotiate?negotiateVersion=1", key=CONDT_KEY)).status == 200
    query = f"negotiateVersion=1&access_token={quote(CONDT_KEY, safe='')}"
    async with http.session.post(URL(f"{fast.url}{hub}/negotiate?{query}", encoded=True)) as negotiated:
        assert negotiated.status == 200, negotiated
        token = (await negotiated.json())["connectionToken"]
    # Not url-encoded, it is another key: '+' in a query means a space (as on ASP.NET Core).
    raw = URL(f"{fast.url}{hub}/negotiate?access_token={CONDT_KEY}", encoded=True)
    async with http.session.post(raw) as refused:
        assert refused.status == 401

    ws_url = URL(f"{fast.url.replace('http', 'ws', 1)}{hub}?id={token}&access_token="
                 f"{quote(CONDT_KEY, safe='')}", encoded=True)
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        await ws.send_str(HANDSHAKE.decode())
        reply = await ws.receive(timeout=5)
        assert reply.data == "{}\x1e"
        connections = [c for h in fast.simulator.hubs.values() for c in h.connections()]
        assert connections and {c.key for c in connections} == {CONDT_KEY}
