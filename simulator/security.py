"""Who may talk to the simulator: the control token, the Host check, the bind-address policy.

The simulator runs on a developer's machine next to their browser, and ``/_sim/`` can read the
webhook secret and every key and inject faults. Three guards keep a web page the user happens
to open out of it:

* **Control token.** Every ``/_sim/`` request must carry the run's control token, in the
  ``X-Conduit-Control-Token`` header (preferred: it never collides with a virtual key) or as
  ``Authorization: Bearer <token>`` (handy with curl). Without it: ``401``, with a
  ``WWW-Authenticate`` naming the header. The token is made at start (``ctl_`` and 32 random
  letters and digits) and printed like the virtual key, or chosen with ``--control-token``. The
  harness's own tools get it from :class:`~simulator.background.BackgroundSimulator` or from the
  ``CONDUIT_CONTROL_TOKEN`` environment variable.
* **Host check (DNS rebinding).** A page on ``evil.example`` whose name is re-pointed at
  127.0.0.1 reaches the port with ``Host: evil.example``. Requests are served only when the
  ``Host`` header names the bound address: ``127.0.0.1``, ``localhost`` or ``[::1]``, or the
  ``--host`` value, each with our port or none (some clients leave it out); and, when bound to a
  wildcard such as ``0.0.0.0`` with ``--allow-non-loopback``, any IP literal — a rebinding page
  always sends a name, never an address. Another host: ``421 Misdirected Request``; no Host header: ``400``.
* **Loopback by default.** Binding a non-loopback address needs ``allow_non_loopback`` (the
  ``--allow-non-loopback`` flag), and the CLI prints a warning: anyone who can reach the port
  with the token can steer the run, and anyone can reach the task API with a key.

CORS (``simulator.cors``) grants only configured origins and never on ``/_sim/``.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from simulator.auth import make_key

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CONTROL_PREFIX = "/_sim"
CONTROL_TOKEN_HEADER = "X-Conduit-Control-Token"
CONTROL_TOKEN_ENV = "CONDUIT_CONTROL_TOKEN"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARDS = ("0.0.0.0", "::", "")


def make_control_token() -> str:
    return make_key("ctl_", 32)


def is_control_path(path: str) -> bool:
    return path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")


def is_loopback(host: str) -> bool:
    """True for loopback addresses and the name ``localhost``; a wildcard is not loopback."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind_host(host: str, allow_non_loopback: bool) -> None:
    """Refuse a non-loopback bind address unless it was asked for explicitly."""
    if not is_loopback(host) and not allow_non_loopback:
        raise ValueError(
            f"--host {host or '(all addresses)'} is not a loopback address: the control API and "
            "the task API would be reachable from other machines. Pass --allow-non-loopback to "
            "do this on purpose, or keep the default 127.0.0.1")


def check_control_token(token: str) -> str:
    """A chosen token must be 16 to 200 printable ASCII characters without spaces (it travels in a
    header, and a short one could be guessed)."""
    if not 16 <= len(token) <= 200 or not all(33 <= ord(c) < 127 for c in token):
        raise ValueError("a control token must be 16 to 200 printable ASCII characters without spaces")
    return token


def control_token_from(request: web.BaseRequest) -> str | None:
    header = request.headers.get(CONTROL_TOKEN_HEADER, "").strip()
    if header:
        return header
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def control_headers(token: str) -> dict[str, str]:
    """The header a client of ``/_sim/`` sends (one place, for every internal tool)."""
    return {CONTROL_TOKEN_HEADER: token}


def _split_host(value: str) -> tuple[str, int | None] | None:
    """``name:port`` / ``[v6]:port`` / ``name`` → (lower-case name, port or None); None if malformed."""
    value = value.strip().lower()
    if not value:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    else:
        name, sep, port_text = value.rpartition(":")
        if not sep:
            name, port_text = value, None
        if ":" in name:  # a bare IPv6 address without brackets is not a valid Host
            return None
    if port_text is None:
        return name, None
    if not port_text.isdigit() or len(port_text) > 5:
        return None
    return name, int(port_text)


class HostPolicy:
    """Which ``Host`` header values this run answers (see the module docstring)."""

    def __init__(self, bound_host: str, port_of: Callable[[], int], extra: Iterable[str] = ()) -> None:
        self.bound_host = bound_host.strip("[]").lower()
        self._port_of = port_of
        self.names = {*LOOPBACK_NAMES, self.bound_host, *(h.strip("[]").lower() for h in extra)}
        self.any_ip = self.bound_host in WILDCARDS

    def allows(self, value: str | None) -> bool:
        if value is None:
            return False
        parsed = _split_host(value)
        if parsed is None:
            return False
        name, port = parsed
        # The name is what tells a rebound page apart; the port may be missing (signalrcore sends
        # "127.0.0.1" on its WebSocket upgrade) but, when given, must be ours.
        if port is not None and port != self._port_of():
            return False
        if name in self.names:
            return True
        if self.any_ip:
            try:
                ipaddress.ip_address(name)
            except ValueError:
                return False
            return True
        return False


def _refuse(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def host_middleware(policy: HostPolicy) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        if host is None:
            return _refuse(400, "request has no Host header")
        if not policy.allows(host):
            shown = host if len(host) <= 100 else host[:100] + "..."
            return _refuse(421, f"this server does not answer for Host {shown!r}; use the address "
                                "it printed (a guard against DNS rebinding)")
        return await handler(request)

    return check_host


def control_auth_middleware(token: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    expected = token.encode()

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_control_path(request.path):
            given = control_token_from(request)
            if given is None or not hmac.compare_digest(given.encode(), expected):
                reason = "no control token" if given is None else "wrong control token"
                return _refuse(401, f"{reason}: /_sim/ needs the token printed at start, in the "
                                    f"{CONTROL_TOKEN_HEADER} header (or Authorization: Bearer)",
                               headers={"WWW-Authenticate": f'Bearer realm="conduit-harness control", '
                                                            f'header="{CONTROL_TOKEN_HEADER}"'})
        return await handler(request)

    return require_token
