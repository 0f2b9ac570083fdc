"""Reference webhook receiver in Python (aiohttp), with flag-selected mutants.

    CONDUIT_WEBHOOK_SECRET=... CONDUIT_WEBHOOK_PORT=0 \\
        python -m contract_tests.receivers.python_receiver [--mutant NAME] [--list-mutants]

What a delivery goes through (``POST /webhooks/conduit``), in this order:

1. the body is read in full (at most 2 MiB kept; more is drained and answered 413);
2. any method but POST: 405 (``Allow: POST``); another path: 404;
3. a Content-Type that is not JSON (``application/json`` or ``*/*+json``, parameters allowed): 415;
4. ``X-Conduit-Signature`` must be exactly one header of 64 hex digits whose bytes equal
   HMAC-SHA256(secret, raw body) (``hmac.compare_digest`` on the 32 digest bytes; uppercase hex is
   accepted, it is the same MAC): else 401 and ``{"obs": "webhook", ..., "accepted": false}``;
5. the body must be strict UTF-8 JSON (no NaN/Infinity) holding an object: else 400 (Conduit does
   not retry a 400);
6. a delivery seen before - same ``task_id``, ``event_type``, body ``timestamp`` and SHA-256 of the
   raw body - is answered 200 ``{"received": true, "duplicate": true}`` and not reported again;
7. otherwise it is processed (one ``{"obs": "webhook", "task_id", "event_type", "accepted": true}``
   line) and answered 200 ``{"received": true}`` at once.

The unsigned ``X-Webhook-Timestamp`` header plays no part (it is not covered by the signature).
Nothing reaches a 5xx: every parse error is caught. Mutants (``--mutant``) break one of these on
purpose; see ``contract_tests.receivers.RECEIVER_MUTANTS``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import sys
import threading
from collections import OrderedDict
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from contract_tests.receivers import (
    MAX_BODY_BYTES,
    PLACEHOLDER_SECRET,
    PREVIOUS_SECRET_DEFAULT,
    PREVIOUS_SECRET_VARIABLE,
    RECEIVER_MUTANTS,
    SLOW_ACK_SECONDS,
    WEBHOOK_PATH,
)

SIGNATURE_HEADER = "X-Conduit-Signature"
DRAIN_LIMIT = 32 * 1024 * 1024  # past this an oversized body is not drained any further
DEDUP_LIMIT = 10_000  # deliveries remembered for duplicate detection
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def is_json_media_type(media_type: str) -> bool:
    media_type = media_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/")
                                                 and media_type.endswith("+json"))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes) -> Any:
    """Strict: UTF-8 only (no BOM, no UTF-16 sniffing), no NaN/Infinity. ValueError otherwise."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


class Receiver:
    def __init__(self, secret: str, mutant: str | None = None) -> None:
        self.secret = secret
        self.mutant = mutant
        self.seen: OrderedDict[tuple[str, str, str, str], None] = OrderedDict()
        self._out = threading.Lock()

    # -- observations ------------------------------------------------------------------------
    def emit(self, observation: dict[str, Any]) -> None:
        line = json.dumps(observation, ensure_ascii=True, default=str)
        with self._out, contextlib.suppress(OSError, ValueError):
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def report(self, payload: Any, accepted: bool, reason: str | None = None) -> None:
        fields = payload if isinstance(payload, dict) else {}
        observation: dict[str, Any] = {"obs": "webhook", "task_id": fields.get("task_id"),
                                       "event_type": fields.get("event_type"), "accepted": accepted}
        if reason:
            observation["reason"] = reason
        self.emit(observation)

    # -- signature ---------------------------------------------------------------------------
    def signature_problem(self, raw: bytes, headers: list[str]) -> str | None:
        """None when the delivery is signed correctly, else why not."""
        mutant = self.mutant
        if mutant == "no-verification":
            return None
        if mutant == "accepts-missing-header" and not headers:
            return None
        header = headers[0] if headers else None
        if mutant == "crash-on-length":
            # The guide's timingSafeEqual(Buffer.from(signature), Buffer.from(expected)): throws
            # (here AttributeError / ValueError) on a missing or wrong-length header -> 500.
            given = header.encode()  # type: ignore[union-attr]
            expected = hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest().encode()
            if len(given) != len(expected):
                raise ValueError("Input buffers must have the same byte length")
            return None if hmac.compare_digest(given, expected) else "signature mismatch"
        if mutant == "bytes-eq":
            digest = hmac.new(self.secret.encode(), raw, hashlib.sha256).digest()
            return None if digest == header else "signature mismatch"
        if mutant == "prefix-compare":
            expected_hex = hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
            return None if header is not None and expected_hex.startswith(header) else "signature mismatch"
        if not headers:
            return "missing signature header"
        if len(headers) > 1:
            return "more than one signature header"
        if header == "":
            return "empty signature header"
        if not _HEX64.fullmatch(header or ""):
            return "malformed signature header (want 64 hex digits)"
        secret = PLACEHOLDER_SECRET if mutant == "hardcoded-secret" else self.secret
        signed = raw
        if mutant == "reserialised":
            try:
                signed = json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False).encode()
            except (ValueError, RecursionError):
                return "signature mismatch"
        keys = [secret]
        if mutant == "accepts-placeholder-secret":
            # Key rotation done carelessly: the unset "previous" secret falls back to a default.
            keys.append(os.environ.get(PREVIOUS_SECRET_VARIABLE, PREVIOUS_SECRET_DEFAULT))
        given = bytes.fromhex(header or "")
        for key in keys:
            expected = hmac.new(key.encode("utf-8"), signed, hashlib.sha256).digest()
            if hmac.compare_digest(given, expected):
                return None
        return "signature mismatch"

    # -- HTTP --------------------------------------------------------------------------------
    async def read_body(self, request: web.Request) -> bytes | None:
        """The raw body, or None when it is over MAX_BODY_BYTES (drained, up to DRAIN_LIMIT)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > DRAIN_LIMIT:
                raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=size)
            if size <= MAX_BODY_BYTES:
                chunks.append(chunk)
        return b"".join(chunks) if size <= MAX_BODY_BYTES else None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await self.read_body(request)
        json_type = is_json_media_type(request.headers.get("Content-Type", ""))
        if self.mutant == "crash-on-get" and (request.method != "POST" or not json_type):
            # Reads the event before checking what came: a GET's empty body or a text body raises.
            _ = json.loads(raw or b"")["event_type"]
        if request.path != WEBHOOK_PATH:
            return json_response(404, {"error": "not found"})
        if request.method != "POST":
            return json_response(405, {"error": "method not allowed"}, headers={"Allow": "POST"})
        if raw is None:
            self.report(None, False, "body too large")
            return json_response(413, {"error": "body too large"})
        if not json_type:
            self.report(None, False, "not JSON")
            return json_response(415, {"error": "Content-Type must be application/json"})
        if self.mutant == "parses-before-verifying":
            # Looks at the event first: a body that is not JSON (or nests too deep) raises -> 500.
            _ = json.loads(raw)
        problem = self.signature_problem(raw, request.headers.getall(SIGNATURE_HEADER, []))
        if problem is not None:
            self.report(_claimed(raw), False, problem)
            return json_response(401, {"error": "invalid signature"})
        try:
            payload = parse_json(raw)
        except ValueError as exc:
            self.report(None, False, f"invalid JSON: {exc}")
            return json_response(400, {"error": "invalid JSON"})
        if not isinstance(payload, dict):
            self.report(None, False, "not a JSON object")
            return json_response(400, {"error": "body must be a JSON object"})
        key = (str(payload.get("task_id")), str(payload.get("event_type")), str(payload.get("timestamp")),
               hashlib.sha256(raw).hexdigest())
        if key in self.seen and self.mutant != "processes-duplicates":
            self.seen.move_to_end(key)
            return json_response(200, {"received": True, "duplicate": True})
        self.seen[key] = None
        while len(self.seen) > DEDUP_LIMIT:
            self.seen.popitem(last=False)
        if self.mutant == "slow-ack":
            await asyncio.sleep(SLOW_ACK_SECONDS)  # "processing" before answering
        self.report(payload, True)
        return json_response(200, {"received": True})


def _claimed(raw: bytes) -> Any:
    """What an unverified body claims to be (for the rejection report only)."""
    try:
        return parse_json(raw)
    except ValueError:
        return None


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers=headers)


def _not_a_bad_request(record: logging.LogRecord) -> bool:
    """Keep aiohttp's error log for failures of ours; drop requests it refused as malformed (a
    64 KB header: answered 400 at once), which are the sender's doing and logged nowhere else."""
    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, HttpProcessingError)


def _port_from_env() -> int:
    text = os.environ.get("CONDUIT_WEBHOOK_PORT", "0").strip() or "0"
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {port}")
    return port


async def serve(secret: str, port: int, mutant: str | None) -> int:
    receiver = Receiver(secret, mutant)
    logging.getLogger("aiohttp.server").addFilter(_not_a_bad_request)
    app = web.Application(client_max_size=DRAIN_LIMIT)
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    name = "python-reference-receiver" + (f"/{mutant}" if mutant else "")
    receiver.emit({"obs": "ready", "name": name, "roles": ["webhook"],
                   "webhook_url": f"http://127.0.0.1:{bound}{WEBHOOK_PATH}", "mutant": mutant})

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    def read_commands() -> None:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                command = json.loads(line)
                cmd = command.get("cmd") if isinstance(command, dict) else None
            except ValueError:
                cmd = None
            if cmd == "shutdown":
                break
            if cmd in ("track", "untrack"):
                message = f"a webhook receiver does not track tasks: {cmd!r} ignored"
            else:
                message = f"unknown command ignored: {line[:200]}"
            receiver.emit({"obs": "error", "message": message})
        loop.call_soon_threadsafe(stop.set)  # shutdown, or stdin closed

    threading.Thread(target=read_commands, daemon=True).start()
    await stop.wait()
    await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutant", help="run a known-bad variant (see --list-mutants)")
    parser.add_argument("--list-mutants", action="store_true", help="print the mutants and exit")
    args = parser.parse_args(argv)
    if args.list_mutants:
        for name, rule in RECEIVER_MUTANTS.items():
            print(f"{name}\t{rule}")
        return 0
    if args.mutant is not None and args.mutant not in RECEIVER_MUTANTS:
        known = ", ".join(RECEIVER_MUTANTS)
        print(f"unknown mutant {args.mutant!r}; known mutants: {known}", file=sys.stderr)
        return 2
    secret = os.environ.get("CONDUIT_WEBHOOK_SECRET")
    if not secret:
        print("CONDUIT_WEBHOOK_SECRET must be set (the webhook signing secret)", file=sys.stderr)
        return 2
    try:
        port = _port_from_env()
    except ValueError as exc:
        print(f"CONDUIT_WEBHOOK_PORT is not a port number: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(serve(secret, port, args.mutant))


if __name__ == "__main__":
    sys.exit(main())
