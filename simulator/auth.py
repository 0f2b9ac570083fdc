"""Virtual keys: where a request carries one, and which ones the simulator knows (S-AUTH)."""

from __future__ import annotations

import heapq
import secrets
import string
import time
import unicodedata
from collections.abc import Iterable

from aiohttp import web

# Lifetime of a realtime token (GET /api/auth/realtime-token), like Conduit's ephemeral keys.
REALTIME_TOKEN_TTL = 300.0

# The guide's examples look like ``vk_<alnum>`` while the real server issues ``condt_`` + base64
# (``+ / =`` included), and clients' own test keys can be anything. So the simulator holds keys
# only to what every transport can carry: non-empty, at most MAX_KEY_LENGTH characters, no
# whitespace (it would be cut at a header's edges or read as a separator) and no control
# characters (not allowed in an HTTP header). 512 is ten times a real key and well under any
# server's header or URL limit.
MAX_KEY_LENGTH = 512
# The same rule for JSON Schema (the control API's OpenAPI document); ECMA ``\s`` and Python's
# ``str.isspace`` agree on everything but a few exotic spaces.
KEY_JSON_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH,
                   "pattern": "^[^\\s\\x00-\\x1f\\x7f-\\x9f]+$"}


def make_key(prefix: str = "vk_", length: int = 32) -> str:
    """A fresh key in the guide's shape, for the demo and for per-client keys."""
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def key_problem(key: str) -> str | None:
    """Which rule ``key`` breaks, in words a user can act on; None when it is a usable key."""
    if not key:
        return "a virtual key may not be empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"a virtual key is at most {MAX_KEY_LENGTH} characters; this one has {len(key)}"
    for position, char in enumerate(key):
        if char.isspace():
            return f"a virtual key may not contain whitespace ({char!r} at position {position})"
        if unicodedata.category(char) == "Cc":
            return f"a virtual key may not contain control characters ({char!r} at position {position})"
    return None


def is_well_formed(key: str) -> bool:
    return key_problem(key) is None


def credential_from(request: web.BaseRequest, *, allow_query: bool) -> str | None:
    """The key a request carries, in the order Conduit reads it.

    ``Authorization: Bearer`` first, then ``X-API-Key``; on hubs also the ``access_token`` query
    parameter (browsers' WebSocket and every SSE connection put it there) and ``api_key``.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    api_key = request.headers.get("X-API-Key", "").strip()
    if api_key:
        return api_key
    if allow_query:
        for name in ("access_token", "api_key"):
            value = request.query.get(name, "").strip()
            if value:
                return value
    return None


def _shown(key: str) -> str:
    """The key as an error message may show it: quoted, and cut when it is huge."""
    return repr(key) if len(key) <= 80 else repr(key[:60]) + f"... ({len(key)} characters)"


class KeyStore:
    """The virtual keys this run accepts."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._keys: set[str] = set()
        # token -> (key, expires at, wall clock)
        self._tokens: dict[str, tuple[str, float]] = {}
        # (expires at, token), soonest first: what purge_expired walks.
        self._expiry: list[tuple[float, str]] = []
        for key in keys:
            self.add(key)

    def add(self, key: str) -> str:
        problem = key_problem(key)
        if problem is not None:
            raise ValueError(f"virtual key {_shown(key)} refused: {problem}")
        self._keys.add(key)
        return key

    def new_key(self) -> str:
        return self.add(make_key())

    def issue_token(self, key: str, ttl: float = REALTIME_TOKEN_TTL) -> tuple[str, float]:
        """A short-lived token standing for ``key`` on the hubs; returns (token, expires_at)."""
        self.purge_expired()
        token = "rt_" + secrets.token_urlsafe(24)
        expires_at = time.time() + ttl
        self._tokens[token] = (key, expires_at)
        heapq.heappush(self._expiry, (expires_at, token))
        return token, expires_at

    def purge_expired(self, now: float | None = None) -> int:
        """Forget tokens past their expiry (an expired token is refused either way; this keeps
        a run that issues many from growing); returns how many were forgotten."""
        now = time.time() if now is None else now
        purged = 0
        while self._expiry and self._expiry[0][0] <= now:
            _, token = heapq.heappop(self._expiry)
            if self._tokens.pop(token, None) is not None:
                purged += 1
        return purged

    def resolve(self, credential: str | None, *, allow_tokens: bool = False) -> str | None:
        """The key a credential stands for, or None when it is unknown (or an expired token)."""
        if not credential:
            return None
        if credential in self._keys:
            return credential
        if allow_tokens and credential in self._tokens:
            key, expires_at = self._tokens[credential]
            if time.time() < expires_at:
                return key
            del self._tokens[credential]
        return None

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self):
        return iter(sorted(self._keys))
