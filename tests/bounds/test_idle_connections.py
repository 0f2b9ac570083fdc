"""HTTP connections that send no request, or never finish their headers, are closed.

1,100 such connections once took every file descriptor of a 1,024-fd server for good; with the
idle timeout they are closed and a healthy request gets through.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time

import pytest

from simulator.accept_errors import ACCEPT_FAILED, quiet_accept_errors
from tests.support.rest import open_http

IDLE_TIMEOUT = 0.5


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the server closed the connection (EOF or reset)."""
    started = time.monotonic()
    try:
        data = await asyncio.wait_for(reader.read(), seconds)
    except ConnectionResetError:
        data = b""
    assert data == b"", data
    return time.monotonic() - started


@pytest.mark.parametrize("sent", [b"", b"GET /api/tasks/x/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "],
                         ids=["silent", "headers-unfinished"])
async def test_an_idle_connection_is_closed_and_others_still_served(make_simulator, sent) -> None:
    sim = make_simulator(idle_timeout=IDLE_TIMEOUT)
    idle = [await asyncio.open_connection("127.0.0.1", sim.simulator.port) for _ in range(20)]
    for _, writer in idle:
        writer.write(sent)
    async with open_http(sim.url) as http:
        assert (await http("GET", "/api/tasks/unknown/status")).status == 404
    waited = await asyncio.gather(*(closed_within(reader, IDLE_TIMEOUT + 5) for reader, _ in idle))
    assert max(waited) < IDLE_TIMEOUT + 5
    for _, writer in idle:
        writer.close()


async def test_a_keep_alive_connection_is_closed_when_idle(make_simulator) -> None:
    sim = make_simulator(idle_timeout=IDLE_TIMEOUT)
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.simulator.port)
    writer.write(b"GET /api/tasks/x/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    status = await reader.readline()
    assert status.startswith(b"HTTP/1.1 "), status
    # Read the answer (it has a Content-Length), then nothing more is sent.
    length = 0
    while (line := await reader.readline()) != b"\r\n":
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    assert await closed_within(reader, IDLE_TIMEOUT + 5) < IDLE_TIMEOUT + 5
    writer.close()


def test_running_out_of_descriptors_logs_one_line_not_a_traceback_per_retry(caplog) -> None:
    loop = asyncio.new_event_loop()
    passed_on: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: passed_on.append(context))
    try:
        quiet_accept_errors(loop)
        exhausted = OSError(errno.EMFILE, "Too many open files")
        with caplog.at_level(logging.WARNING):
            for _ in range(1000):
                loop.call_exception_handler({"message": ACCEPT_FAILED, "exception": exhausted})
        other = {"message": "something else", "exception": RuntimeError("boom")}
        loop.call_exception_handler(other)
    finally:
        loop.close()
    lines = [r for r in caplog.records if r.name == "simulator.accept_errors"]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert "Too many open files" in lines[0].getMessage()
    assert passed_on == [other]
