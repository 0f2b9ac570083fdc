"""A timed HTTP client for the REST and polling calls of the load users.

Locust's HttpSession reports every request with ``request_type`` = the HTTP method; ours must say
"REST" or "Poll", so this small wrapper around ``requests.Session`` (gevent-friendly once Locust
has monkey-patched sockets) measures each call itself and hands it to a ``report`` callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import requests

Report = Callable[[str, str, float, int, BaseException | None], None]


class HttpStatusError(Exception):
    """A response whose status was not among the expected ones."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}" + (f": {text}" if text else ""))
        self.status = status


@dataclass
class Reply:
    status: int | None
    body: Any  # parsed JSON, or None
    headers: dict[str, str]
    elapsed_ms: float
    error: BaseException | None

    @property
    def ok(self) -> bool:
        return self.error is None

    def retry_after(self) -> float | None:
        value = self.headers.get("Retry-After") if self.headers else None
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


class RestClient:
    def __init__(self, base_url: str, key: str | None, report: Report, *, timeout: float = 30.0,
                 user_agent: str = "conduit-harness-load/0.1") -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.report = report
        self.timeout = timeout
        self.user_agent = user_agent
        self._session: requests.Session | None = None  # made on first use: listeners never need one

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = requests.Session()
            self._session.headers["User-Agent"] = self.user_agent
            if self.key:
                self._session.headers["Authorization"] = f"Bearer {self.key}"
        return self._session

    def request(self, method: str, path: str, *, request_type: str, name: str,
                expect: Iterable[int] = (200,), json_body: Any = None, data: bytes | None = None,
                headers: dict[str, str] | None = None, url: str | None = None) -> Reply:
        started = time.perf_counter()
        status: int | None = None
        body: Any = None
        length = 0
        error: BaseException | None = None
        response_headers: dict[str, str] = {}
        try:
            response = self.session.request(method, url or self.base_url + path, json=json_body, data=data,
                                            headers=headers, timeout=self.timeout, allow_redirects=False)
            status = response.status_code
            content = response.content
            length = len(content)
            response_headers = dict(response.headers)
            if content and "json" in response.headers.get("Content-Type", ""):
                try:
                    body = response.json()
                except ValueError:
                    body = None
            if status not in tuple(expect):
                error = HttpStatusError(status, content[:200].decode("utf-8", "replace").strip())
        except requests.RequestException as exc:
            error = exc
        elapsed = (time.perf_counter() - started) * 1000.0
        self.report(request_type, name, elapsed, length, error)
        return Reply(status, body, response_headers, elapsed, error)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
