"""The closed control plane: /_sim/ needs the control token, CORS grants only configured origins
(never on /_sim/, never ``null``), the Host header must name the bound address, and a
non-loopback bind needs an explicit flag. Real HTTP against a real simulator."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from simulator.app import Simulator
from simulator.background import BackgroundSimulator
from simulator.cors import normalise_origin
from simulator.security import CONTROL_TOKEN_HEADER, HostPolicy, check_bind_host, is_loopback
from tests.support.simulator import TEST_KEY

ROOT = Path(__file__).resolve().parents[2]
EVIL = "http://evil.example"
GOOD = "http://localhost:3000"
NEGOTIATE = "/hubs/image-generation/negotiate?negotiateVersion=1"


async def fetch(method: str, url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.request(method, url, headers=headers) as r:
        await r.read()
        return r.status, dict(r.headers)


def run(coro: object) -> tuple[int, dict[str, str]]:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture
def guarded(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator(cors_origins=[GOOD])


# -- control token -------------------------------------------------------------------------------

def test_evil_origin_gets_no_grant_and_401_without_the_token(guarded: BackgroundSimulator) -> None:
    status, headers = run(fetch("GET", guarded.url + "/_sim/info", {"Origin": EVIL}))
    assert status == 401
    assert "Access-Control-Allow-Origin" not in headers
    assert "Access-Control-Allow-Credentials" not in headers
    assert CONTROL_TOKEN_HEADER in headers["WWW-Authenticate"]


@pytest.mark.parametrize("path", ["/_sim/info", "/_sim/timeline", "/_sim/keys", "/_sim/nothing", "/_sim"])
def test_every_control_path_needs_the_token(guarded: BackgroundSimulator, path: str) -> None:
    assert run(fetch("GET", guarded.url + path))[0] == 401
    assert run(fetch("GET", guarded.url + path, {CONTROL_TOKEN_HEADER: "ctl_wrong"}))[0] == 401
    # a virtual key is not a control token
    assert run(fetch("GET", guarded.url + path, {"Authorization": f"Bearer {TEST_KEY}"}))[0] == 401


def test_the_token_opens_the_control_api_in_either_header(guarded: BackgroundSimulator) -> None:
    token = guarded.control_token
    assert token.startswith("ctl_") and len(token) > 30
    assert run(fetch("GET", guarded.url + "/_sim/info", guarded.control_headers))[0] == 200
    assert run(fetch("GET", guarded.url + "/_sim/info", {"Authorization": f"Bearer {token}"}))[0] == 200


def test_a_chosen_token_is_used_and_a_weak_one_refused(
        make_simulator: Callable[..., BackgroundSimulator]) -> None:
    sim = make_simulator(control_token="ctl_chosen_for_this_test")
    assert sim.control_token == "ctl_chosen_for_this_test"
    chosen = {CONTROL_TOKEN_HEADER: "ctl_chosen_for_this_test"}
    assert run(fetch("GET", sim.url + "/_sim/info", chosen))[0] == 200
    with pytest.raises(ValueError, match="16 to 200"):
        Simulator(control_token="short")


def test_the_task_api_does_not_need_the_control_token(guarded: BackgroundSimulator) -> None:
    status, _ = run(fetch("POST", guarded.url + NEGOTIATE, {"Authorization": f"Bearer {TEST_KEY}"}))
    assert status == 200


# -- CORS ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("origin", [EVIL, "null", "http://localhost:3001", "https://localhost:3000",
                                    "http://localhost:3000.evil.example", "not an origin"])
def test_cors_grants_no_other_origin(guarded: BackgroundSimulator, origin: str) -> None:
    preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    for method, headers in (("OPTIONS", preflight),
                            ("POST", {"Origin": origin, "Authorization": f"Bearer {TEST_KEY}"})):
        _, answer = run(fetch(method, guarded.url + NEGOTIATE, headers))
        assert "Access-Control-Allow-Origin" not in answer, (method, origin)
        assert "Access-Control-Allow-Credentials" not in answer


def test_cors_grants_a_configured_origin_but_never_on_the_control_api(guarded: BackgroundSimulator) -> None:
    headers = {"Origin": "HTTP://LOCALHOST:3000", "Access-Control-Request-Method": "POST"}
    status, answer = run(fetch("OPTIONS", guarded.url + NEGOTIATE, headers))
    assert status == 204 and answer["Access-Control-Allow-Origin"] == "HTTP://LOCALHOST:3000"
    for method in ("OPTIONS", "GET"):
        _, answer = run(fetch(method, guarded.url + "/_sim/info", {
            "Origin": GOOD, "Access-Control-Request-Method": "GET", **guarded.control_headers}))
        assert "Access-Control-Allow-Origin" not in answer, method


def test_no_origin_is_granted_by_default(make_simulator: Callable[..., BackgroundSimulator]) -> None:
    sim = make_simulator()
    preflight = {"Origin": GOOD, "Access-Control-Request-Method": "POST"}
    _, answer = run(fetch("OPTIONS", sim.url + NEGOTIATE, preflight))
    assert "Access-Control-Allow-Origin" not in answer


def test_origins_are_checked_when_configured() -> None:
    assert normalise_origin("HTTP://[::1]:80/") == "http://[::1]:80"
    for bad in ("null", "localhost:3000", "http://x/path", "ftp://x", "http://u@x"):
        with pytest.raises(ValueError):
            normalise_origin(bad)


# -- Host header (DNS rebinding) -------------------------------------------------------------------

def test_a_foreign_host_header_is_refused(guarded: BackgroundSimulator) -> None:
    port = guarded.simulator.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        status, _ = run(fetch("GET", guarded.url + "/_sim/info", {"Host": host, **guarded.control_headers}))
        assert status == 200, host
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1:{port + 1}", f"127.0.0.1:{port}x", ":"):
        status, _ = run(fetch("GET", guarded.url + "/_sim/info", {"Host": host, **guarded.control_headers}))
        assert status in (400, 421), host
    status, _ = run(fetch("POST", guarded.url + NEGOTIATE, {"Host": f"rebound.example:{port}",
                                                            "Authorization": f"Bearer {TEST_KEY}"}))
    assert status == 421


def test_host_policy_by_bind_address() -> None:
    loop = HostPolicy("127.0.0.1", lambda: 8080)
    assert loop.allows("127.0.0.1:8080") and loop.allows("[::1]:8080") and loop.allows("localhost:8080")
    assert loop.allows("127.0.0.1")  # no port: signalrcore's WebSocket upgrade sends this
    assert not loop.allows("10.0.0.5:8080") and not loop.allows("evil.example") and not loop.allows(None)
    assert not loop.allows("::1:8080") and not loop.allows("[::1") and not loop.allows("x:99999999")
    wild = HostPolicy("0.0.0.0", lambda: 80)
    assert wild.allows("10.0.0.5") and wild.allows("[fe80::1]:80") and not wild.allows("rebind.example")
    named = HostPolicy("192.168.1.5", lambda: 9000)
    assert named.allows("192.168.1.5:9000") and not named.allows("192.168.1.6:9000")


# -- bind address ------------------------------------------------------------------------------------

def test_non_loopback_needs_the_flag() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("::")
    with pytest.raises(ValueError, match="--allow-non-loopback"):
        Simulator(host="0.0.0.0")
    check_bind_host("0.0.0.0", allow_non_loopback=True)


def test_serve_refuses_a_non_loopback_host_without_the_flag() -> None:
    done = subprocess.run([sys.executable, "-m", "harness.cli", "serve", "--host", "0.0.0.0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert "--allow-non-loopback" in done.stderr and "Traceback" not in done.stderr
