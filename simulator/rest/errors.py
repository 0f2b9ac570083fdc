"""Error responses in the three shapes Conduit uses (conduit-as-built.md §1.3-1.9).

- OpenAI-style ``{"error": {"message", "type", "param", "code"}}``: image routes and every
  validation error of the documented profile (S-REST);
- ProblemDetails ``{"title", "status", "detail"}`` (``application/problem+json``): video routes;
- ErrorResponseDto ``{"error": {"message", "type"}, "details", "code"}``: ``/v1/tasks``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


class RestError(Exception):
    """Raised inside a handler to answer with ``response`` (and nothing created)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def openai_error(status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type_: str = "invalid_request_error") -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return web.json_response(body, status=status)


def task_not_found() -> web.Response:
    """Image routes and the guide's status route: unknown task or another key's task."""
    return openai_error(404, "Task not found", param="task_id", code="not_found")


def problem(status: int, title: str, detail: str) -> web.Response:
    body: dict[str, Any] = {"title": title, "status": status, "detail": detail}
    return web.json_response(body, status=status, content_type="application/problem+json")


def error_dto(status: int, message: str, type_: str) -> web.Response:
    body = {"error": {"message": message, "type": type_}, "details": None, "code": None}
    return web.json_response(body, status=status)


def unauthorized(challenge: str | None) -> web.Response:
    """401 with an empty body; image routes add ``WWW-Authenticate: EphemeralKey``."""
    response = web.Response(status=401)
    if challenge:
        response.headers["WWW-Authenticate"] = challenge
    return response


def poll_fault(status: int, retry_after: int | None, path: str) -> web.Response:
    """A ``poll_errors`` fault's answer: 429 in the IP limiter's shape, 5xx as a server error."""
    if status == 429:
        response = web.json_response({"error": f"Rate limit exceeded for path {path}", "code": 429},
                                     status=429)
    else:
        response = openai_error(status, "Service temporarily unavailable (simulated fault)",
                                type_="server_error", code="service_unavailable")
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response
