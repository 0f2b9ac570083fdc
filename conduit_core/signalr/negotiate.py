"""The negotiate step (``POST {hub}/negotiate``) as pure functions: ids, version choice, bodies.

The server side follows ASP's HttpConnectionDispatcher.ProcessNegotiate; the client side reads a
body the way the TS client's HttpConnection does. The one rule that matters most for the Python
clients (signalr-protocol.md §1): a request *without* ``negotiateVersion`` gets version 0 and no
``connectionToken``, because pysignalr and signalrcore put ``connectionId`` in ``id=``.
"""

from __future__ import annotations

import base64
import copy
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conduit_core.signalr.errors import NegotiateError

# ASP's bounds: MinimumProtocolVersion defaults to 0; the newest negotiate version is 1.
MIN_NEGOTIATE_VERSION = 0
MAX_NEGOTIATE_VERSION = 1

# ASP ids are 16 random bytes, base64url without padding: 22 URL-safe characters. URL safety
# matters because the TS client appends ``id=<token>`` without URL-encoding it.
CONNECTION_ID_BYTES = 16

# ASP parses the version with int.TryParse: optional surrounding whitespace and sign, ASCII
# digits, 32-bit range. Python's int() would also take "1_0" and non-ASCII digits.
_INT32_TEXT = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

# ASP's order, and Text before Binary: signalrcore takes the first transport and its first
# format as its protocol.
TRANSPORTS: list[dict[str, Any]] = [
    {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]},
    {"transport": "ServerSentEvents", "transferFormats": ["Text"]},
    {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]},
]


def new_connection_id() -> str:
    """A fresh connection id or token: 22 URL-safe characters from ``secrets``."""
    raw = secrets.token_bytes(CONNECTION_ID_BYTES)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _query_value(query: Mapping[str, str], name: str) -> str | None:
    # ASP's query collection is case-insensitive; keep the first match, as ``getone`` would.
    wanted = name.casefold()
    for key in query:
        if key.casefold() == wanted:
            return query[key]
    return None


def requested_version(query: Mapping[str, str]) -> int:
    """The negotiate version to answer with, from the request's query string.

    Absent means an old client: version 0. Above our maximum is answered with the maximum. Not an
    integer, or below the minimum, is a NegotiateError whose text ASP sends as ``{"error": ...}``.
    """
    text = _query_value(query, "negotiateVersion")
    if text is None:
        return MIN_NEGOTIATE_VERSION
    # Length first: int() refuses more than 4,300 digits with a ValueError (and is slow before
    # that); past 10 significant digits the value is out of the 32-bit range anyway.
    digits = text.strip().lstrip("+-").lstrip("0") or "0"
    version = None
    if len(digits) <= 10 and _INT32_TEXT.fullmatch(text):
        version = -int(digits) if text.strip().startswith("-") else int(digits)
    if version is None or not _INT32_MIN <= version <= _INT32_MAX:
        shown = text if len(text) <= 32 else text[:32] + "..."
        raise NegotiateError(f"The client requested an invalid protocol version '{shown}'")
    if version < MIN_NEGOTIATE_VERSION:
        raise NegotiateError(
            f"The client requested version '{version}', but the server does not support this "
            "version."
        )
    return min(version, MAX_NEGOTIATE_VERSION)


def wants_stateful_reconnect(query: Mapping[str, str]) -> bool:
    """Whether the client asked for stateful reconnect (``useStatefulReconnect=true``).

    ASP parses the value with bool.TryParse, which ignores case and surrounding whitespace.
    """
    text = _query_value(query, "useStatefulReconnect")
    return text is not None and text.strip().lower() == "true"


def build_response(
    version: int,
    connection_id: str,
    connection_token: str | None,
    transports: list[dict[str, Any]] | None = None,
    stateful_reconnect: bool = False,
) -> dict[str, Any]:
    """The negotiate body for ``version`` (from :func:`requested_version`).

    Version 0 has no ``connectionToken``: clients then use ``connectionId`` as ``id``. Version 1
    carries the secret token. There is never a ``ProtocolVersion`` key: the TS client takes it
    for an old ASP.NET SignalR server and refuses to connect.
    """
    if version not in (0, 1):
        raise ValueError(f"negotiate version must be 0 or 1, not {version!r}")
    body: dict[str, Any] = {"connectionId": connection_id, "negotiateVersion": version}
    if version >= 1:
        if not connection_token:
            raise ValueError("negotiate version 1 needs a connection token")
        body["connectionToken"] = connection_token
    body["availableTransports"] = copy.deepcopy(TRANSPORTS if transports is None else transports)
    body["useStatefulReconnect"] = bool(stateful_reconnect)
    return body


def error_response(message: str) -> dict[str, str]:
    """A failed negotiate: ASP still answers HTTP 200, with only an ``error`` property."""
    return {"error": message}


@dataclass(frozen=True, slots=True)
class NegotiateResult:
    """A negotiate body as a client reads it: either a connection or a redirect (``url``)."""

    version: int = 0
    connection_id: str | None = None
    connection_token: str | None = None
    transports: list[dict[str, Any]] = field(default_factory=list)
    stateful_reconnect: bool = False
    url: str | None = None
    access_token: str | None = None
    error: str | None = None

    @property
    def is_redirect(self) -> bool:
        return self.url is not None


def parse_response(body: Any) -> NegotiateResult:
    """Read a negotiate body as the TS client does; NegotiateError when it cannot be used.

    Unknown properties are ignored (SPEC). For version 0 (or a missing version) the token is the
    connection id, exactly as the TS client sets it.
    """
    if not isinstance(body, dict):
        raise NegotiateError("Invalid negotiate response: expected a JSON object.")
    if "ProtocolVersion" in body:
        raise NegotiateError(
            "Detected a connection attempt to an ASP.NET SignalR Server. This client only "
            "supports connecting to an ASP.NET Core SignalR Server."
        )
    if body.get("error") is not None:
        raise NegotiateError(str(body["error"]))
    if "url" in body:
        return _parse_redirect(body)
    version = body.get("negotiateVersion", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise NegotiateError("Invalid negotiate response: 'negotiateVersion' is not an integer.")
    connection_id = _non_empty_str(body, "connectionId")
    token = _non_empty_str(body, "connectionToken") if version >= 1 else connection_id
    stateful = body.get("useStatefulReconnect", False)
    if not isinstance(stateful, bool):
        raise NegotiateError("Invalid negotiate response: 'useStatefulReconnect' is not a bool.")
    return NegotiateResult(
        version=version,
        connection_id=connection_id,
        connection_token=token,
        transports=_parse_transports(body.get("availableTransports")),
        stateful_reconnect=stateful,
    )


def _parse_redirect(body: dict[str, Any]) -> NegotiateResult:
    url, token = body["url"], body.get("accessToken")
    if not isinstance(url, str) or not url:
        raise NegotiateError("Invalid negotiate response: 'url' is not a string.")
    if token is not None and not isinstance(token, str):
        raise NegotiateError("Invalid negotiate response: 'accessToken' is not a string.")
    return NegotiateResult(url=url, access_token=token)


def _non_empty_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise NegotiateError(f"Invalid negotiate response: '{key}' is missing or empty.")
    return value


def _parse_transports(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise NegotiateError("Invalid negotiate response: 'availableTransports' is not a list.")
    for entry in value:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("transport"), str)
            or not isinstance(entry.get("transferFormats"), list)
            or not all(isinstance(f, str) for f in entry["transferFormats"])
        ):
            raise NegotiateError(f"Invalid negotiate response: bad transport entry {entry!r}.")
    return value


def connection_url_id(result: NegotiateResult) -> str:
    """What a client puts in ``id=``: the token at version 1, the connection id at version 0."""
    if result.connection_id is None:
        raise NegotiateError("A redirect negotiate response has no connection id.")
    if result.version >= 1 and result.connection_token:
        return result.connection_token
    return result.connection_id
