"""Virtual keys: where a request carries one, and which ones the simulator knows (S-AUTH)."""

from __future__ import annotations

import re
import secrets
import string
import time
from collections.abc import Iterable

from aiohttp import web

# Lifetime of a realtime token (GET /api/auth/realtime-token), like Conduit's ephemeral keys.
REALTIME_TOKEN_TTL = 300.0

# The guide's keys look like ``vk_<alnum>``; the real server also issues ``condt_`` keys.
KEY_PATTERN = re.compile(r"^(vk|condt)_[A-Za-z0-9]+$")


def make_key(prefix: str = "vk_", length: int = 32) -> str:
    """A fresh key in the guide's shape, for the demo and for per-client keys."""
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def is_well_formed(key: str) -> bool:
    return bool(KEY_PATTERN.match(key))


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


class KeyStore:
    """The virtual keys this run accepts."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._keys: set[str] = set()
        # token -> (key, expires at, wall clock)
        self._tokens: dict[str, tuple[str, float]] = {}
        for key in keys:
            self.add(key)

    def add(self, key: str) -> str:
        if not is_well_formed(key):
            raise ValueError(
                f"virtual key {key!r} is not of the form vk_<letters and digits> "
                "(or condt_<letters and digits>)"
            )
        self._keys.add(key)
        return key

    def new_key(self) -> str:
        return self.add(make_key())

    def issue_token(self, key: str, ttl: float = REALTIME_TOKEN_TTL) -> tuple[str, float]:
        """A short-lived token standing for ``key`` on the hubs; returns (token, expires_at)."""
        token = "rt_" + secrets.token_urlsafe(24)
        expires_at = time.time() + ttl
        self._tokens[token] = (key, expires_at)
        return token, expires_at

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
