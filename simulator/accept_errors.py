"""One line, not a traceback, when the server runs out of file descriptors.

When every descriptor is in use, asyncio's accept loop logs ``socket.accept() out of system
resource`` with a full traceback each time it retries; 1,100 idle connections against a 1,024-fd
limit wrote 23,000 of them (9.4 MB) in 13 s. The condition is worth one line now and then; the
idle timeout (:data:`simulator.app.DEFAULT_IDLE_TIMEOUT`) is what frees the descriptors.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

ACCEPT_FAILED = "socket.accept() out of system resource"
# At most one line per this many seconds.
REPORT_EVERY = 10.0
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Install on ``loop`` a handler that turns accept failures for lack of descriptors or memory
    into a rate-limited one-line warning, and passes every other error to the previous handler."""
    previous = loop.get_exception_handler()
    last_report = -REPORT_EVERY
    suppressed = 0

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        nonlocal last_report, suppressed
        exc = context.get("exception")
        if context.get("message") != ACCEPT_FAILED or not (
                isinstance(exc, OSError) and exc.errno in _EXHAUSTED):
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - last_report < REPORT_EVERY:
            suppressed += 1
            return
        more = f" ({suppressed} more since the last report)" if suppressed else ""
        log.warning("cannot accept connections: %s; new connections wait until idle ones time out%s",
                    exc.strerror, more)
        last_report, suppressed = now, 0

    loop.set_exception_handler(handle)
