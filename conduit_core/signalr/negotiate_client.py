"""The client's side of negotiate: which URL to POST, redirects, and the URL to connect to.

A :class:`Negotiation` is a tiny state machine in the h11 manner: ask it for the next
:class:`NegotiateRequest`, do the POST however your I/O library does it, and hand it the status and
body. It answers with the :class:`~conduit_core.signalr.negotiate.NegotiateResult` to connect with,
or ``None`` when the server redirected (the next request then goes to the new URL, with the access
token the redirect carried). It never touches the network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from conduit_core.signalr.errors import LocalProtocolError, NegotiateError
from conduit_core.signalr.negotiate import NegotiateResult, connection_url_id, parse_response

# How many negotiate requests one start may make while the server keeps redirecting. The TS
# client's HttpConnection stops at 100 (MAX_REDIRECTS) with "Negotiate redirection limit
# exceeded."; the .NET client uses the same 100. Matching it means a redirect chain that works
# with the guide's client works with ours, and a loop still ends.
MAX_REDIRECTS = 100

# The negotiate version we ask for: 1 brings a separate connection token (ASP.NET Core 3.0+).
CLIENT_NEGOTIATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class NegotiateRequest:
    """One ``POST {hub}/negotiate``: where to send it and the headers the protocol adds."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)


def negotiate_url(hub_url: str, version: int = CLIENT_NEGOTIATE_VERSION) -> str:
    """``{hub}/negotiate`` keeping the hub URL's query, with ``negotiateVersion`` unless present."""
    parts = urlsplit(hub_url)
    path = parts.path.rstrip("/") + "/negotiate"
    query = parts.query
    if not any(key == "negotiateVersion" for key, _ in parse_qsl(query, keep_blank_values=True)):
        query = (query + "&" if query else "") + urlencode({"negotiateVersion": version})
    return urlunsplit((parts.scheme, parts.netloc, path, query, parts.fragment))


def connection_url(hub_url: str, result: NegotiateResult, *, websocket: bool = False) -> str:
    """The transport URL: the hub URL with ``id=`` (the token at version 1, else the id).

    ``websocket=True`` swaps ``http(s)`` for ``ws(s)``. The id is appended as is: ids are URL-safe
    by construction, and the TS client does not encode it either.
    """
    parts = urlsplit(hub_url)
    scheme = parts.scheme
    if websocket:
        scheme = {"https": "wss", "http": "ws"}.get(scheme, scheme)
    query = (parts.query + "&" if parts.query else "") + "id=" + connection_url_id(result)
    return urlunsplit((scheme, parts.netloc, parts.path, query, parts.fragment))


class Negotiation:
    """Negotiate for one connection start, following redirects up to :data:`MAX_REDIRECTS`."""

    def __init__(self, hub_url: str, access_token: str | None = None, *,
                 max_requests: int = MAX_REDIRECTS) -> None:
        self.hub_url = hub_url
        self.access_token = access_token
        self.max_requests = max_requests
        self.requests = 0
        self.result: NegotiateResult | None = None

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization: Bearer`` with the current token (the redirect's, once one gave one)."""
        return {"Authorization": f"Bearer {self.access_token}"} if self.access_token else {}

    def request(self) -> NegotiateRequest:
        """The next POST to make; LocalProtocolError once negotiate has finished."""
        if self.result is not None:
            raise LocalProtocolError("negotiate has already finished")
        return NegotiateRequest(negotiate_url(self.hub_url), self.headers)

    def receive_response(self, status: int, body: bytes | str | object) -> NegotiateResult | None:
        """Read one answer: the result to connect with, or ``None`` after a redirect.

        ``body`` is the raw body, or an already-parsed JSON document. NegotiateError for a non-200
        status, a body that is not a usable negotiate document, or one redirect too many.
        """
        if self.result is not None:
            raise LocalProtocolError("negotiate has already finished")
        self.requests += 1
        if status != 200:
            text = body[:200].decode("utf-8", "replace").strip() if isinstance(body, bytes) else ""
            raise NegotiateError(f"negotiate failed: HTTP {status}" + (f": {text}" if text else ""),
                                 status)
        if isinstance(body, bytes | str):
            try:
                body = json.loads(body)
            except ValueError as exc:
                raise NegotiateError(f"negotiate failed: the body is not JSON: {exc}") from exc
        result = parse_response(body)
        if not result.is_redirect:
            self.result = result
            return result
        if self.requests >= self.max_requests:
            raise NegotiateError("Negotiate redirection limit exceeded.")
        assert result.url is not None
        self.hub_url = urljoin(self.hub_url, result.url)
        if result.access_token:
            self.access_token = result.access_token
        return None

    def connection_url(self, *, websocket: bool = False) -> str:
        """Where the transport connects, once negotiate has finished."""
        if self.result is None:
            raise LocalProtocolError("negotiate has not finished")
        return connection_url(self.hub_url, self.result, websocket=websocket)
