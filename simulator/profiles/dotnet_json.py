"""JSON written the way System.Text.Json's default writer writes it, for the as-built webhooks.

The real server's webhook bodies come out of ``JsonSerializer`` with the default
``JavaScriptEncoder``: compact, keys in the order given, and every non-ASCII character and each
of ``" & ' + < > `` `` ` `` written as an upper-case ``\\uXXXX`` escape (astral characters as a
surrogate pair). Receivers that re-serialise a body before checking it see different bytes; the
simulator sends these bytes so that difference shows up against the harness as it would in
production. Which ASCII characters the encoder escapes beyond ``<>&'+`` (the reference names
those) is inferred from the encoder's documented HTML-safe behaviour.
"""

from __future__ import annotations

import json
import math
from typing import Any

# Escaped although ASCII (JavaScriptEncoder.Default is HTML-safe).
_ESCAPED_ASCII = frozenset('"&\'+<>`')
_SHORT = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _escape_char(ch: str) -> str:
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    if code < 0x20 or code >= 0x7F or ch in _ESCAPED_ASCII:
        if code > 0xFFFF:
            code -= 0x10000
            return f"\\u{0xD800 + (code >> 10):04X}\\u{0xDC00 + (code & 0x3FF):04X}"
        return f"\\u{code:04X}"
    return ch


def _string(text: str) -> str:
    return '"' + "".join(_escape_char(ch) for ch in text) + '"'


def _number(value: int | float) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not valid JSON")  # STJ throws on NaN/Infinity too
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))  # STJ writes 45.0 as 45
    return json.dumps(value)


def dumps(value: Any) -> str:
    """``value`` (dicts, lists, strings, numbers, booleans, None) as STJ's default writer would."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_string(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def dumps_bytes(value: Any) -> bytes:
    """:func:`dumps` as UTF-8 bytes (all ASCII: everything else is escaped)."""
    return dumps(value).encode("ascii")
