"""The load users' REST and polling calls on Locust's ``FastHttpSession`` (geventhttpclient).

Locust names a request after its HTTP method; ours say ``REST``, ``Poll`` or ``Webhook``. This
module makes each call with ``catch_response=True``, renames the request event's type before it
fires, and decides success itself from the expected statuses (``response.success()`` /
``response.failure(HttpStatusError)``), so a 429 is a failure of ``Poll`` / ``GET ...`` whether or
not geventhttpclient thinks the status is valid. The session's own reporting does the timing and
the response length, so every call is exactly one Locust request event.

The session is made on first use: a SignalR user that only listens never opens an HTTP pool.
"""

from __future__ import annotations

import json
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from locust.contrib.fasthttp import FastHttpSession

USER_AGENT = "conduit-harness-load/0.1"


class HttpStatusError(Exception):
    """A response whose status was not among the expected ones."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}" + (f": {text}" if text else ""))
        self.status = status


@dataclass
class Reply:
    status: int | None  # None: no response (connection refused, timeout, ...)
    body: Any  # parsed JSON, or None
    headers: dict[str, str]
    elapsed_ms: float
    error: BaseException | None

    @property
    def ok(self) -> bool:
        return self.error is None

    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after") if self.headers else None
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


def make_session(base_url: str, request_event: Any, user: Any, *, key: str | None = None,
                 timeout: float = 30.0, headers: dict[str, str] | None = None) -> FastHttpSession:
    """One user's session: its key as ``Authorization: Bearer`` on every request, no retries."""
    default = {"User-Agent": USER_AGENT, **(headers or {})}
    if key:
        default["Authorization"] = f"Bearer {key}"
    return FastHttpSession(base_url.rstrip("/"), request_event, user, network_timeout=timeout,
                           connection_timeout=timeout, max_retries=0, headers=default)


def request(session: FastHttpSession, method: str, url: str, *, request_type: str, name: str,
            expect: Container[int] = (200,), json_body: Any = None, data: bytes | None = None,
            headers: dict[str, str] | None = None) -> Reply:
    """One timed call, reported as ``request_type`` / ``name``; a status outside ``expect`` (or no
    response) is a failure. ``url`` is a path on the session's base URL, or absolute."""
    payload: Any = data
    if data is None and json_body is not None:
        payload = json.dumps(json_body).encode("utf-8")
        headers = {"Content-Type": "application/json", **(headers or {})}
    status: int | None = None
    body: Any = None
    response_headers: dict[str, str] = {}
    with session.request(method, url, name=name, data=payload, headers=headers, catch_response=True,
                         allow_redirects=False) as response:
        response.request_meta["request_type"] = request_type
        error: BaseException | None = getattr(response, "error", None)
        if response.status_code == 0:  # no response at all: the session's error says why
            error = error or ConnectionError("no response")
            response.failure(error)
        else:
            status = response.status_code
            content = response.content or b""
            response_headers = {k.lower(): v for k, v in response.headers.items()}
            if content and "json" in response_headers.get("content-type", ""):
                try:
                    body = json.loads(content)
                except ValueError:
                    body = None
            if status in expect:
                error = None
                response.success()
            else:
                error = HttpStatusError(status, content[:200].decode("utf-8", "replace").strip())
                response.failure(error)
    return Reply(status, body, response_headers, float(response.request_meta["response_time"]), error)
