"""CORS for browser clients, for the origins the user configured and nothing else.

Negotiate, long-poll, POST and DELETE requests carry credentials and custom headers, so browsers
preflight them; ``*`` is not allowed with credentials, so a granted Origin is echoed back (the
pattern of ASP's SignalR FunctionalTests server). Echoing *any* Origin would let every web page
the user opens read the API with the user's cookies, so only origins given with
``--cors-origin`` (compared as ``scheme://host[:port]``, case-insensitively) are granted. Never
granted: the ``null`` origin (sandboxed frames, ``file:`` pages), anything on ``/_sim/`` (the
control plane is for the harness's tools, not for pages), and any origin when none is
configured (the default).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import web

from simulator.security import is_control_path

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def normalise_origin(origin: str) -> str:
    """``HTTP://Example.com:3000/`` → ``http://example.com:3000``; ValueError when it is not an
    http(s) origin (a scheme, a host, an optional port, and no path beyond ``/``)."""
    parts = urlsplit(origin.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{origin[:100]!r} is not an origin: use scheme://host[:port], "
                         "e.g. http://localhost:3000")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{origin[:100]!r} is not an origin: no path, query or user, "
                         "e.g. http://localhost:3000")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{origin[:100]!r} has an invalid port") from None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def cors_middleware(origins: Iterable[str] = ()) -> Callable[..., Awaitable[web.StreamResponse]]:
    allowed = frozenset(normalise_origin(origin) for origin in origins)

    def granted(origin: str | None, path: str) -> bool:
        if not origin or not allowed or is_control_path(path):
            return False
        try:
            return normalise_origin(origin) in allowed
        except ValueError:  # "null" and other non-origins
            return False

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        grant = granted(origin, request.path)
        if grant and request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = request.headers.get(
                "Access-Control-Request-Method", "GET, POST, DELETE, OPTIONS")
            requested = request.headers.get("Access-Control-Request-Headers")
            if requested:
                response.headers["Access-Control-Allow-Headers"] = requested
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                if not grant:
                    raise
                response = exc
        if grant and origin and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
        if allowed and not response.prepared:
            response.headers.add("Vary", "Origin")
        return response

    return cors
