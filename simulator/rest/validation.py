"""Create bodies: read at most 1 MiB, parse JSON, check every field before anything is created.

Every problem is an :class:`~simulator.rest.errors.RestError` carrying the OpenAI-style 400 (or
413) the documented profile answers (S-REST: "nothing is half-created").
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from simulator.rest.errors import RestError, openai_error

# 1 MiB, ASP.NET Core's and aiohttp's default request body limit is of the same order (Kestrel 30 MB,
# aiohttp client_max_size 1 MiB); create bodies are a prompt and a few fields.
MAX_BODY = 1024 * 1024
MAX_IMAGES = 10  # OpenAI's n limit for image generation
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", re.ASCII)  # RFC 9110 token
_BAD_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def invalid(message: str, param: str | None, code: str = "invalid_parameter") -> RestError:
    return RestError(openai_error(400, message, param=param, code=code))


async def read_json(request: web.Request) -> Any:
    """The parsed body; 413 above :data:`MAX_BODY`, 400 when it is not JSON."""
    too_large = RestError(openai_error(413, f"Request body is larger than {MAX_BODY} bytes",
                                       code="request_too_large"))
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise too_large
    body = bytearray()
    while chunk := await request.content.read(64 * 1024):
        body += chunk
        if len(body) > MAX_BODY:
            raise too_large
    if not body.strip():
        raise invalid("Request body is empty; send a JSON object", None, "invalid_json")

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        return json.loads(body.decode("utf-8"), parse_constant=no_constants)
    except UnicodeDecodeError as exc:
        raise invalid(f"Request body is not UTF-8: {exc.reason} at byte {exc.start}", None,
                      "invalid_json") from None
    except RecursionError:
        raise invalid("Request body is nested too deeply", None, "invalid_json") from None
    except ValueError as exc:
        raise invalid(f"Request body is not valid JSON: {exc}", None, "invalid_json") from None


@dataclass(frozen=True)
class CreateFields:
    prompt: str
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    webhook_url: str | None = None
    webhook_headers: dict[str, str] = field(default_factory=dict)


def _required_text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise invalid(f"{name.capitalize()} is required", name, "missing_parameter")
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string", name)
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_create(kind: str, data: Any, allowed_webhook_hosts: tuple[str, ...]) -> CreateFields:
    """Check an image (``kind="image"``) or video create body; unknown fields are ignored, as the
    real server puts them into extension data."""
    if not isinstance(data, dict):
        raise invalid("Request body must be a JSON object", None, "invalid_json")
    prompt = _required_text(data, "prompt")
    model = _required_text(data, "model")
    params: dict[str, Any] = {}
    if kind == "image":
        n = data.get("n", 1)
        if not _is_int(n) or not 1 <= n <= MAX_IMAGES:
            raise invalid(f"n must be an integer between 1 and {MAX_IMAGES}", "n")
        params["n"] = n
    if data.get("size") is not None:
        if not isinstance(data["size"], str) or not data["size"].strip():
            raise invalid("size must be a non-empty string such as \"1024x1024\"", "size")
        params["size"] = data["size"]
    if kind == "video" and data.get("duration") is not None:
        duration = data["duration"]
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) \
                or not math.isfinite(duration) or duration <= 0:
            raise invalid("duration must be a positive number of seconds", "duration")
        params["duration"] = duration

    webhook_url = data.get("webhook_url")
    if webhook_url is not None:
        from simulator.channels.webhooks import check_webhook_url

        problem = check_webhook_url(webhook_url, allowed_webhook_hosts)
        if problem is not None:
            raise invalid(problem, "webhook_url")
    headers = data.get("webhook_headers")
    webhook_headers: dict[str, str] = {}
    if headers is not None:
        if not isinstance(headers, dict):
            raise invalid("webhook_headers must be an object of header name to string value",
                          "webhook_headers")
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise invalid(f"webhook_headers: {name!r} is not a valid header name", "webhook_headers")
            if not isinstance(value, str):
                raise invalid(f"webhook_headers: the value of {name!r} must be a string",
                              "webhook_headers")
            if _BAD_HEADER_VALUE.search(value):
                raise invalid(f"webhook_headers: the value of {name!r} contains control characters",
                              "webhook_headers")
            webhook_headers[name] = value
    return CreateFields(prompt=prompt, model=model, params=params, webhook_url=webhook_url,
                        webhook_headers=webhook_headers)
