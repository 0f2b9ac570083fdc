"""Thin harnesses around the two real third-party Python SignalR clients.

* :class:`PySignalRSession` drives ``pysignalr`` (asyncio): ``run()`` is a task in the test's loop.
* :class:`SignalRCoreSession` drives ``signalrcore`` (threads): every wait is bounded.

They only wire up callbacks and record what the clients report; nothing of the clients is
replaced, so every byte goes through the real client code over loopback sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from pysignalr.client import SignalRClient
from pysignalr.messages import CompletionMessage
from pysignalr.protocol.json import JSONProtocol
from pysignalr.protocol.messagepack import MessagepackProtocol
from signalrcore.hub_connection_builder import HubConnectionBuilder
from signalrcore.protocol.messagepack_protocol import MessagePackHubProtocol
from signalrcore.types import HttpTransportType

from contract_tests.waiting import async_wait_until, wait_until

IMAGE_HUB = "/hubs/image-generation"
EVENTS = ("TaskProgress", "TaskCompleted", "TaskFailed")


# -- pysignalr ------------------------------------------------------------------------------------
class PySignalRSession:
    """A pysignalr ``SignalRClient`` whose ``run()`` is a task in the running loop.

    ``key`` goes into ``headers`` (pysignalr's ``access_token_factory`` is only read at the
    handshake, so the first negotiate would go out without a token). ``on_open_send`` is sent
    (without awaiting the Completion: ``on_open`` runs before pysignalr reads messages) every time
    the client (re)connects, which is how a pysignalr user re-subscribes after a reconnect.
    """

    def __init__(
        self,
        url: str,
        *,
        key: str | None,
        protocol: str = "json",
        events: tuple[str, ...] = EVENTS,
        on_open_send: tuple[str, list[Any]] | None = None,
        **client_kwargs: Any,
    ) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        self.client = SignalRClient(
            url,
            protocol=MessagepackProtocol() if protocol == "messagepack" else JSONProtocol(),
            headers=headers,
            **client_kwargs,
        )
        self.events: list[tuple[str, list[Any]]] = []
        self.errors: list[CompletionMessage] = []
        self.opened = 0
        self.closed = 0
        self.on_open_send = on_open_send
        self.on_open_completions: list[CompletionMessage] = []
        self.task: asyncio.Task[None] | None = None
        for name in events:
            self.client.on(name, self._event_handler(name))
        self.client.on_open(self._on_open)
        self.client.on_close(self._on_close)
        # Without it an error Completion raises RuntimeError inside pysignalr and drops the link.
        self.client.on_error(self._on_error)

    def _event_handler(self, name: str) -> Callable[[list[Any]], Awaitable[None]]:
        async def handler(arguments: list[Any]) -> None:
            self.events.append((name, arguments))

        return handler

    async def _on_open(self) -> None:
        self.opened += 1
        if self.on_open_send is not None:
            method, arguments = self.on_open_send

            async def done(message: CompletionMessage) -> None:
                self.on_open_completions.append(message)

            await self.client.send(method, arguments, on_invocation=done)

    async def _on_close(self) -> None:
        self.closed += 1

    async def _on_error(self, message: CompletionMessage) -> None:
        self.errors.append(message)

    def describe(self) -> str:
        task = self.task
        state = "not started" if task is None else (
            f"finished: {task.exception()!r}" if task.done() and not task.cancelled()
            else "cancelled" if task.done() else "running")
        return (f"run(): {state}; opened={self.opened} closed={self.closed} "
                f"events={self.events[-5:]} errors={self.errors[-5:]}")

    async def until(self, predicate: Callable[[], Any], timeout: float = 5.0,
                    what: str = "") -> Any:
        """Poll ``predicate`` without blocking the loop; fail after ``timeout`` or if run() ends."""
        what = what or repr(predicate)

        def met() -> Any:
            value = predicate()
            if not value and self.task is not None and self.task.done():
                raise AssertionError(f"pysignalr run() ended while waiting for {what}; {self.describe()}")
            return value

        return await async_wait_until(met, timeout, what, describe=self.describe)

    async def start(self, timeout: float = 5.0) -> None:
        self.task = asyncio.create_task(self.client.run())
        await self.until(lambda: self.opened >= 1, timeout, "on_open")

    async def invoke(self, method: str, arguments: list[Any],
                     timeout: float = 5.0) -> CompletionMessage:
        """Send a blocking invocation and return the server's Completion (error or not)."""
        future: asyncio.Future[CompletionMessage] = asyncio.get_running_loop().create_future()

        async def done(message: CompletionMessage) -> None:
            if not future.done():
                future.set_result(message)

        await self.client.send(method, arguments, on_invocation=done)
        await self.until(future.done, timeout, f"Completion of {method}")
        return future.result()

    async def next_event(self, name: str, timeout: float = 5.0, since: int = 0) -> list[Any]:
        """Arguments of the first ``name`` event at index ``since`` or later."""
        def find() -> list[Any] | None:
            for target, arguments in self.events[since:]:
                if target == name:
                    return arguments
            return None

        await self.until(lambda: find() is not None, timeout, f"event {name}")
        result = find()
        assert result is not None
        return result

    async def stop(self, timeout: float = 5.0) -> None:
        if self.task is None:
            return
        if not self.task.done():
            self.task.cancel()
        await asyncio.wait({self.task}, timeout=timeout)
        if self.task.done() and not self.task.cancelled():
            self.task.exception()  # mark retrieved; the test asserts on it when it matters


# -- signalrcore ----------------------------------------------------------------------------------
TRANSPORTS = {
    "WebSockets": HttpTransportType.web_sockets,
    "ServerSentEvents": HttpTransportType.server_sent_events,
    "LongPolling": HttpTransportType.long_polling,
}


class SignalRCoreSession:
    """A signalrcore ``HubConnection`` with its callbacks recorded (they run on its threads).

    ``key_in_query`` also puts the key in the hub URL as ``access_token``: signalrcore's long-poll
    GETs carry only an ``Accept`` header, never the ``Authorization`` one.
    """

    def __init__(
        self,
        url: str,
        *,
        key: str,
        protocol: str = "json",
        transport: str | None = None,
        reconnect: dict[str, Any] | None = None,
        events: tuple[str, ...] = EVENTS,
        key_in_query: bool = False,
    ) -> None:
        if key_in_query:
            url = f"{url}?{urlencode({'access_token': key})}"
        options: dict[str, Any] = {"access_token_factory": lambda: key}
        if transport is not None:
            options["transport"] = TRANSPORTS[transport]
        builder = HubConnectionBuilder().with_url(url, options=options)
        if protocol == "messagepack":
            builder = builder.with_hub_protocol(MessagePackHubProtocol())
        if reconnect is not None:
            builder = builder.with_automatic_reconnect(reconnect)
        self.connection = builder.build()
        self._lock = threading.Lock()
        self.events: list[tuple[str, list[Any]]] = []
        self.errors: list[Any] = []
        self.completions: dict[str, Any] = {}
        self.opened = 0
        self.closed = 0
        self.reconnected = 0
        for name in events:
            self.connection.on(name, self._event_handler(name))
        self.connection.on_open(self._count("opened"))
        self.connection.on_close(self._count("closed"))
        self.connection.on_reconnect(self._count("reconnected"))
        self.connection.on_error(self._on_error)

    def _event_handler(self, name: str) -> Callable[[list[Any]], None]:
        def handler(arguments: list[Any]) -> None:
            with self._lock:
                self.events.append((name, arguments))

        return handler

    def _count(self, attribute: str) -> Callable[[], None]:
        def callback() -> None:
            with self._lock:
                setattr(self, attribute, getattr(self, attribute) + 1)

        return callback

    def _on_error(self, message: Any) -> None:
        with self._lock:
            self.errors.append(message)

    def describe(self) -> str:
        with self._lock:
            return (f"opened={self.opened} closed={self.closed} reconnected={self.reconnected} "
                    f"events={self.events[-5:]} errors={[vars(e) for e in self.errors[-5:]]}")

    def until(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
        return wait_until(predicate, timeout, what, describe=self.describe)

    def start(self, timeout: float = 5.0) -> None:
        assert self.connection.start() is True
        self.until(lambda: self.opened >= 1, timeout, "on_open")

    def invoke(self, method: str, arguments: list[Any], timeout: float = 5.0) -> Any:
        """Invoke and return the Completion. signalrcore hands a successful one to
        ``on_invocation`` and an error one only to the global ``on_error``; match by id."""
        invocation_id = str(uuid.uuid4())

        def done(message: Any) -> None:
            with self._lock:
                self.completions[invocation_id] = message

        def find() -> Any:
            with self._lock:
                if invocation_id in self.completions:
                    return self.completions[invocation_id]
                for error in self.errors:
                    if getattr(error, "invocation_id", None) == invocation_id:
                        return error
            return None

        self.connection.send(method, arguments, on_invocation=done, invocation_id=invocation_id)
        return self.until(find, timeout, f"Completion of {method}")

    def next_event(self, name: str, timeout: float = 5.0, since: int = 0) -> list[Any]:
        def find() -> list[Any] | None:
            with self._lock:
                for target, arguments in self.events[since:]:
                    if target == name:
                        return arguments
            return None

        return self.until(find, timeout, f"event {name}")

    def stop(self, timeout: float = 5.0) -> None:
        """``stop()`` joins the client's threads without a timeout; bound it."""
        def run() -> None:
            with contextlib.suppress(Exception):
                self.connection.stop()

        stopper = threading.Thread(target=run, name="signalrcore-stop", daemon=True)
        stopper.start()
        stopper.join(timeout)
