"""Make what a client sent safe to keep on the timeline and to write as JSON.

Invocation arguments, headers, paths and method names reach the recorder exactly as a client
sent them. Three kinds of value broke ``/_sim/timeline`` (a 500 for the rest of the run) and
``--record`` (a cut connection): MessagePack maps with binary (or other non-JSON) keys, NaN and
infinities (written as a bare ``NaN``, which is not JSON), and nesting deep enough to overflow
the encoder's recursion. And every byte a client sends was kept forever: a 30 KB method name
kept 60 KB per invocation. :func:`json_safe` returns a value with none of these:

* strings longer than :data:`MAX_STRING` characters are cut, ending in
  ``…[truncated, N chars]``; bytes longer than :data:`MAX_BYTES` become a string
  ``<N bytes: ...>`` with a bounded prefix (shorter bytes stay bytes: the JSON writers render
  them with ``str``);
* NaN, ``inf`` and ``-inf`` become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``
  (the names JavaScript's ``String()`` gives them);
* map keys that JSON cannot carry (bytes, tuples, NaN, ...) become bounded strings (bytes
  keys decoded as UTF-8 with replacement);
* containers deeper than :data:`MAX_DEPTH` are replaced by the marker :data:`TOO_DEEP`;
  containers with more than :data:`MAX_ITEMS` entries keep the first ones and say how many were
  dropped (lists: a last string item; maps: the key ``"…"``).

Values already safe are returned as they are (the same object), so the common case costs one
type check per field. Other objects (enums, dataclasses, the server's own types) are left to the
JSON writers' ``default=str``.

An :class:`IdList` (identifiers the simulator made itself, such as the connection ids a broadcast
reached) is also returned as it is, without a check per item and without the :data:`MAX_ITEMS`
cut: nothing in it came from a client, and its length is the number of connections the server
holds, so every recipient of a broadcast stays on the timeline.
"""

from __future__ import annotations

import math
import reprlib
from typing import Any

# Limits, with why: a SignalR message is at most 32 KB by default (ASP.NET Core's
# MaximumReceiveMessageSize), so no legitimate field is near these; they bound what one record can
# pin to a few tens of KB whatever a client sends, and keep the timeline readable.
MAX_STRING = 4096        # characters of one string field (a method name, a path, an argument)
MAX_BYTES = 4096         # bytes of one binary value (MessagePack bin)
MAX_ITEMS = 1000         # entries of one list or map
MAX_DEPTH = 32           # nesting of lists and maps (JSON encoders recurse; 1,000 levels broke ours)
TOO_DEEP = f"…[nested deeper than {MAX_DEPTH} levels]"

_SCALARS = (bool, int, type(None))
_JSON_KEYS = (str, int, bool, type(None))


class IdList(tuple[str, ...]):
    """Identifiers the simulator generated (connection ids: 22 URL-safe base64 characters), in a
    tuple that :func:`json_safe` keeps as it is. Immutable, so the recorder may write the same
    object's JSON once however many records name it (a hub reuses one for every broadcast to all
    its connections until one comes or goes).

    It exists for a broadcast's event record, which names every recipient: at 1,000 recipients,
    checking the ids one by one and then encoding them item by item cost ~120 µs per event, more
    than half of the recorder's cost in the fan-out. The recorder writes an ``IdList`` with one
    join when no item needs escaping in JSON, which it checks in C once per IdList object
    (``simulator.recorder._id_list_items``): a wrong item makes the list slower to write, never
    invalid JSON.
    """

    __slots__ = ()


def truncate_text(text: str, limit: int = MAX_STRING) -> str:
    """``text`` cut to ``limit`` characters with a marker saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[truncated, {len(text)} chars]"


def short_repr(value: Any, limit: int = 200) -> str:
    """``repr(value)`` for an error message, never longer than about ``limit`` characters: levels,
    items and strings are cut (:mod:`reprlib`), so a value built from YAML aliases, or any huge
    structure, is never rendered in full."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    return truncate_text(text, limit)


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = _REPR.maxother = 120
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 8


def _float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _key(key: Any) -> Any:
    if isinstance(key, str):
        return truncate_text(key)
    if isinstance(key, float):
        return _float(key)
    if isinstance(key, _JSON_KEYS):
        return key
    if isinstance(key, (bytes, bytearray)):
        return truncate_text(bytes(key[:MAX_BYTES]).decode("utf-8", errors="replace"))
    return short_repr(key)


def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` made safe for the timeline (see the module docstring); safe values unchanged."""
    kind = type(value)
    if kind is str:
        return value if len(value) <= MAX_STRING else truncate_text(value)
    if kind in _SCALARS:
        return value
    if kind is float:
        return _float(value)
    if isinstance(value, (bytes, bytearray)):
        if len(value) <= MAX_BYTES:
            return value
        return f"<{len(value)} bytes: {bytes(value[:64])!r}…>"
    if kind is IdList:
        return value
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        return _safe_dict(value, depth + 1)
    if isinstance(value, (list, tuple)):
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        return _safe_sequence(value, depth + 1)
    if isinstance(value, str):  # a str subclass
        return truncate_text(value)
    if isinstance(value, float):
        return _float(value)
    return value


def _safe_dict(value: dict[Any, Any], depth: int) -> dict[Any, Any]:
    changed = len(value) > MAX_ITEMS
    out: dict[Any, Any] = {}
    for index, (key, item) in enumerate(value.items()):
        if index >= MAX_ITEMS:
            out["…"] = f"[{len(value) - MAX_ITEMS} more entries dropped]"
            break
        safe_key = _key(key)
        safe_item = json_safe(item, depth)
        if safe_key is not key or safe_item is not item:
            changed = True
        out[safe_key] = safe_item
    return out if changed else value


def _short_strings(value: list[Any] | tuple[Any, ...]) -> bool:
    """Every item a string of at most :data:`MAX_STRING` characters, checked in C rather than
    item by item: such a sequence needs nothing changed. A broadcast records its recipients'
    connection ids (1,000 strings per event in the fan-out benchmark), where the per-item check
    cost 80 µs per event; this costs about a third of that."""
    try:
        total = len("".join(value))  # TypeError for any item that is not a str
    except TypeError:
        return False
    return total <= MAX_STRING or max(map(len, value)) <= MAX_STRING


def _safe_sequence(value: list[Any] | tuple[Any, ...], depth: int) -> list[Any] | tuple[Any, ...]:
    if len(value) <= MAX_ITEMS and _short_strings(value):
        return value
    items = [json_safe(item, depth) for item in value[:MAX_ITEMS]]
    dropped = len(value) - MAX_ITEMS
    if dropped > 0:
        items.append(f"…[{dropped} more items dropped]")
    elif all(new is old for new, old in zip(items, value, strict=True)):
        return value
    return tuple(items) if isinstance(value, tuple) else items


def json_safe_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """A record's fields made safe; the same dict when nothing needed changing (the common case)."""
    out = None
    for name, item in fields.items():
        safe = json_safe(item, 1)
        if safe is not item:
            if out is None:
                out = dict(fields)
            out[name] = safe
    return fields if out is None else out
