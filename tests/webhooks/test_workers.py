"""The dispatcher's per-URL workers: keep-alive connections, any HTTP/1.x framing, the backlog bound."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from aiohttp import web

from simulator.channels import webhooks
from simulator.channels.webhooks import sign
from simulator.tasks.model import EventKind
from tests.support.webhooks import SECRET, Harness


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    await harness.close()


class RawReceiver:
    """An HTTP/1.1 endpoint on 127.0.0.1 that answers each request with scripted raw bytes.

    After the script it answers ``200`` with a Content-Length. An answer ending the connection
    (HTTP/1.0 without keep-alive, ``Connection: close``) is followed by closing it; ``None`` in the
    script never answers.
    """

    OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self, answers: Sequence[bytes | None] = ()) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> RawReceiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0) if self.answers else self.OK
                if answer is None:
                    await asyncio.sleep(3600)
                    break
                writer.write(answer)
                await writer.drain()
                if answer.startswith(b"HTTP/1.0") or b"connection: close" in answer.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def raw() -> AsyncIterator[list[RawReceiver]]:
    started: list[RawReceiver] = []
    yield started
    for receiver in started:
        await receiver.stop()


async def test_deliveries_reuse_keep_alive_connections_up_to_the_per_url_limit(
        h: Harness, raw: list[RawReceiver]) -> None:
    receiver = await RawReceiver().start()
    raw.append(receiver)
    dispatcher = await h.dispatcher(per_receiver_limit=2)
    tasks = [h.task(receiver.url) for _ in range(3)]
    for progress in range(10, 100, 10):
        for task in tasks:
            h.publish(dispatcher, task, progress=progress)
    await dispatcher.drain(5)

    assert len(receiver.requests) == 27
    assert 1 <= receiver.connections <= 2
    assert [d.get("outcome") for d in h.kinds("webhook_delivery")] == ["delivered"] * 27
    head = receiver.requests[0].split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("POST /hook HTTP/1.1\r\nHost: 127.0.0.1:")
    await h.wait_for(lambda: not dispatcher._workers, timeout=1.0)  # workers exit when idle


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\n\r\nbody until the connection closes",
])
async def test_any_http1_framing_of_the_answer_is_understood(
        h: Harness, raw: list[RawReceiver], answer: bytes) -> None:
    receiver = await RawReceiver([answer, answer]).start()
    raw.append(receiver)
    dispatcher = await h.dispatcher(per_receiver_limit=1)
    task = h.task(receiver.url)
    for progress in (10, 20, 30):
        h.publish(dispatcher, task, progress=progress)
    await dispatcher.drain(5)

    assert [(a.get("attempt"), a.get("error")) for a in h.kinds("webhook_attempt")] == [(1, None)] * 3
    assert [d.get("outcome") for d in h.kinds("webhook_delivery")] == ["delivered"] * 3
    assert len(receiver.requests) == 3


async def test_a_malformed_answer_is_a_failed_attempt_and_is_retried(
        h: Harness, raw: list[RawReceiver]) -> None:
    receiver = await RawReceiver([b"HTTP/1.1 OK\r\n\r\n"]).start()
    raw.append(receiver)
    dispatcher = await h.dispatcher()
    h.publish(dispatcher, h.task(receiver.url), EventKind.COMPLETED)
    await dispatcher.drain(5)

    first, second = h.kinds("webhook_attempt")
    assert first.get("status") is None and "ResponseError" in first.get("error")
    assert (second.get("attempt"), second.get("status")) == (2, 200)
    assert receiver.connections == 2  # the connection that carried a bad answer is not reused
    assert receiver.requests[0] == receiver.requests[1]


async def test_a_request_times_out_at_its_own_deadline_on_a_reused_connection(
        h: Harness, raw: list[RawReceiver]) -> None:
    receiver = await RawReceiver([RawReceiver.OK, None]).start()
    raw.append(receiver)
    dispatcher = await h.dispatcher(per_receiver_limit=1, timeout=0.3)
    task = h.task(receiver.url)
    h.publish(dispatcher, task, progress=10)
    await h.wait_for(lambda: h.kinds("webhook_delivery"), timeout=2.0)
    await asyncio.sleep(0.1)  # the second request starts well after the first one's deadline was set
    h.publish(dispatcher, task, EventKind.COMPLETED)
    await dispatcher.drain(5)

    first, hung, retried = h.kinds("webhook_attempt")
    assert first.get("status") == 200
    assert hung.get("status") is None and "timeout" in hung.get("error")
    assert 300 - 10 <= hung.get("latency_ms") < 1000
    assert (retried.get("attempt"), retried.get("status")) == (2, 200)
    assert receiver.connections == 2


async def test_past_the_backlog_bound_a_delivery_is_recorded_as_overflow(
        h: Harness, raw: list[RawReceiver]) -> None:
    slow = await h.receiver(delay=3.0)
    fast = await RawReceiver().start()
    raw.append(fast)
    dispatcher = await h.dispatcher(per_receiver_limit=1, max_backlog=2)
    for _ in range(3):
        h.publish(dispatcher, h.task(slow.url), EventKind.COMPLETED)
    assert dispatcher.pending == 2
    [overflow] = h.kinds("webhook_delivery", outcome="overflow")
    assert (overflow.get("attempts"), overflow.get("url")) == (0, slow.url)

    h.publish(dispatcher, h.task(fast.url), EventKind.COMPLETED)  # another URL has its own bound
    assert await h.wait_for(lambda: h.kinds("webhook_delivery", outcome="delivered"), timeout=2.0)
    await dispatcher.stop()
    assert len(h.kinds("webhook_delivery", outcome="cancelled")) == 2
    assert dispatcher.pending == 0


async def test_an_unused_receiver_is_forgotten_and_its_connections_closed(
        h: Harness, raw: list[RawReceiver], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks, "KEEPALIVE_S", 0.05)
    receiver = await RawReceiver().start()
    raw.append(receiver)
    dispatcher = await h.dispatcher()
    h.publish(dispatcher, h.task(receiver.url), EventKind.COMPLETED)
    await dispatcher.drain(5)
    assert len(dispatcher._receivers) == 1  # its idle connection is kept for a while
    assert await h.wait_for(lambda: not dispatcher._receivers, timeout=1.0)


async def test_user_info_in_the_url_becomes_basic_credentials(h: Harness, raw: list[RawReceiver]) -> None:
    receiver = await RawReceiver().start()
    raw.append(receiver)
    dispatcher = await h.dispatcher()
    url = receiver.url.replace("http://", "http://hook-user:s3cret@")
    h.publish(dispatcher, h.task(url), EventKind.COMPLETED)
    await dispatcher.drain(5)

    head = receiver.requests[0].split(b"\r\n\r\n", 1)[0]
    assert b"\r\nAuthorization: Basic aG9vay11c2VyOnMzY3JldA==" in head  # base64("hook-user:s3cret")
    assert b"s3cret" not in head


async def test_many_tasks_with_failures_keep_each_tasks_order_and_one_outcome_per_event(h: Harness) -> None:
    receiver = await h.receiver([500 if i % 3 == 0 else 200 for i in range(400)])
    dispatcher = await h.dispatcher(per_receiver_limit=4)
    tasks = [h.task(receiver.url) for _ in range(20)]
    for progress in range(10, 60, 10):
        for task in tasks:
            h.publish(dispatcher, task, progress=progress)
    for task in tasks:
        h.publish(dispatcher, task, EventKind.COMPLETED)
    await dispatcher.drain(10)

    for task in tasks:
        seqs = [r.seq for r in receiver.received if r.task_id == task.task_id]
        # A retry repeats a delivery; nothing overtakes it.
        assert seqs == sorted(seqs) and sorted(set(seqs)) == list(range(1, 7))
    deliveries = h.kinds("webhook_delivery")
    assert sorted((d.get("task_id"), d.get("event_seq")) for d in deliveries) == sorted(
        (t.task_id, seq) for t in tasks for seq in range(1, 7))  # one outcome per event
    # Which attempt meets a 500 depends on arrival order: an unlucky delivery may meet four.
    assert all(d.get("outcome") == "delivered" or (d.get("outcome"), d.get("attempts")) == ("gave_up", 4)
               for d in deliveries)
    attempts = sum(d.get("attempts") for d in deliveries)
    assert attempts == len(h.kinds("webhook_attempt")) == len(receiver.received)
    assert receiver.max_in_flight <= 4


async def test_https_receivers_are_reached_over_verified_tls(h: Harness, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    bodies: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls).start()
        url = f"https://127.0.0.1:{runner.addresses[0][1]}/hook"
        dispatcher = await h.dispatcher()
        dispatcher._ssl = ssl.create_default_context(cafile=str(cert))  # trust the test's own CA
        h.publish(dispatcher, h.task(url), EventKind.COMPLETED)
        await dispatcher.drain(5)
        [delivery] = h.kinds("webhook_delivery")
        assert delivery.get("outcome") == "delivered"
        [attempt] = h.kinds("webhook_attempt")
        assert attempt.get("signature") == sign(bodies[0], SECRET)

        untrusting = await h.dispatcher()  # the system's CAs: a self-signed receiver is refused
        h.publish(untrusting, h.task(url), EventKind.COMPLETED)
        await h.wait_for(lambda: len(h.kinds("webhook_attempt")) == 2, timeout=5.0)
        assert "CERTIFICATE_VERIFY_FAILED" in h.kinds("webhook_attempt")[1].get("error")
    finally:
        await runner.cleanup()
