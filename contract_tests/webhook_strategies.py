"""Hypothesis strategies (and fixed cases) for testing a Conduit webhook receiver.

Importable by anyone testing their own receiver::

    from hypothesis import given
    from contract_tests.webhook_strategies import reserialising_encodings, header_mutations, sign

    @given(reserialising_encodings())
    def test_my_receiver_checks_the_raw_bytes(encoded):
        response = my_app.post("/hook", data=encoded.body,
                               headers={"X-Conduit-Signature": sign(encoded.body, SECRET)})
        assert response.status_code == 200

What is here:

* **documented bodies** (:func:`webhook_bodies`): the guide's body
  ``{event_type, task_id, status, result, error, timestamp}`` with the simulator's types;
  :func:`conduit_bytes` writes a value the way the simulator does (compact, UTF-8, key order kept).
* **encodings** (:func:`encode_json`, :class:`EncodingStyle`, :func:`reserialising_encodings`): the
  same JSON value written differently - key order, whitespace, ``\\u`` escapes instead of raw UTF-8
  (and the .NET encoder's ``\\u003C``-style escapes of ``<>&'+``), ``\\/``, numbers spelled ``1.0``,
  ``1e3``, ``-0``, ``1.50``, and large bodies. :func:`reserialising_encodings` only yields bytes that a
  receiver re-serialising with ``json.dumps(json.loads(b), separators=(",", ":"), ensure_ascii=False)``
  **or** JavaScript's ``JSON.stringify(JSON.parse(b))`` would get wrong, so a receiver that
  verifies anything but the exact bytes fails on every example.
* **header mutations** (:class:`HeaderMutation`, :func:`header_mutations`, :data:`REJECT_CASES`):
  each turns a correctly signed delivery into one a receiver must refuse (W-REJECT), or - for the
  *lenient* kinds - one it may accept or refuse but must not crash on (W-NO-CRASH).
* **the threat model** (W-NO-CRASH): what a sender *without* the secret can send
  (:func:`outsider_bodies`: every body of :data:`MALFORMED_BODIES` - truncated, not UTF-8,
  100 000 levels deep, ... - and an oversized one, unsigned or wrongly signed; huge headers,
  :data:`HUGE_HEADERS`) must never get a 5xx or a dropped connection: a receiver that verifies
  before it parses never looks inside them and answers 4xx. Signed, a receiver only sees what
  Conduit could send (:func:`conduit_shaped_bodies`: unknown event types, extra fields, nulls,
  large results, non-ASCII; :func:`conduit_shapes` draws more); the same malformed bodies
  *signed* come only from a holder of the secret, so how a receiver treats them is a finding, not
  a failure.
* **placeholder secrets** (:data:`PLACEHOLDER_SECRETS`): the empty secret and the values a
  copy-pasted receiver or an unset variable's default ends up with; a body signed with one of them
  is a forgery anyone can make (W-REJECT).

Uppercase hex: Conduit (and the simulator) send **lowercase** hex. A signature in uppercase hex
carries the same MAC, so it is not a forgery: the rules neither require a receiver to accept it
nor to refuse it (the ``uppercase`` mutation is lenient: only W-NO-CRASH uses it). The bundled
reference receivers accept it (they decode the hex and compare the 32 digest bytes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

SIGNATURE_HEADER = "X-Conduit-Signature"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
USER_AGENT = "Conduit-LLM/1.0"
EVENT_TYPES = ("task.progress", "task.completed", "task.failed")
FAILED_STATUSES = ("failed", "cancelled", "timedout")
MAX_BODY_BYTES = 1_048_576  # Conduit replaces a payload over 1 MiB by an error stub (as built, 2.2)
MAX_SAFE_INTEGER = 2**53  # integers beyond this do not survive JavaScript or an exponent spelling


def sign(body: bytes, secret: str) -> str:
    """Lowercase hex HMAC-SHA256 of the exact body bytes, keyed with the UTF-8 secret (as Conduit)."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def conduit_bytes(value: Any) -> bytes:
    """The bytes the simulator sends for ``value``: compact, non-ASCII as raw UTF-8, key order kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def documented_body(event_type: str, task_id: str, *, progress: int = 50, result: Any = None,
                    error: str | None = None, status: str | None = None,
                    timestamp: str | None = None) -> dict[str, Any]:
    """One documented webhook body (guide, "Webhook Notifications"; simulator ``webhook_body``)."""
    if event_type == "task.progress":
        status, result, error = status or "processing", {"progress": progress}, None
    elif event_type == "task.completed":
        status = status or "completed"
        if result is None:
            result = {"images": [{"url": f"https://cdn.example.com/v1/images/{task_id}/0.png"}]}
        error = None
    else:
        status, result, error = status or "failed", None, error or "generation failed"
    return {"event_type": event_type, "task_id": task_id, "status": status, "result": result,
            "error": error, "timestamp": timestamp or utc_iso(datetime.now(UTC))}


def new_task_id(rng: random.Random | None = None) -> str:
    """``task_`` + 32 lowercase hex, like Conduit's ids."""
    return f"task_{(rng or random).getrandbits(128):032x}"


# -- JSON encodings ------------------------------------------------------------------------------
KEY_ORDERS = ("as-is", "reversed", "sorted", "reverse-sorted", "shuffled")
NUMBER_STYLES = ("plain", "trailing-zero", "exponent", "upper-exponent", "negative-zero", "mixed")
_HTML_CHARS = "<>&'+"  # .NET's default JavaScriptEncoder writes these as \u003C ... (as built, 2.3)
_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


@dataclass(frozen=True)
class EncodingStyle:
    """How :func:`encode_json` writes a value; the default is the simulator's own form."""

    item_separator: str = ","  # JSON whitespace only (space, \t, \n, \r) around the comma
    key_separator: str = ":"
    indent: int | None = None  # pretty-print with this many spaces (0 = newlines only)
    leading: str = ""  # whitespace before / after the top-level value
    trailing: str = ""
    key_order: str = "as-is"  # one of KEY_ORDERS
    escape_non_ascii: bool = False  # \u00e9 (surrogate pairs beyond the BMP) instead of raw UTF-8
    uppercase_escapes: bool = False  # \u00E9
    escape_slash: bool = False  # "\/"
    escape_html: bool = False  # < > & ' + as \u003c ... (what .NET does)
    escape_ascii: bool = False  # some ASCII letters as \u00XX
    numbers: str = "plain"  # one of NUMBER_STYLES
    seed: int = 0  # drives shuffles and the per-item choices of "mixed"

    def features(self) -> list[str]:
        """What differs from the simulator's form, for reports."""
        default = EncodingStyle()
        out = [f"{name}={getattr(self, name)!r}" for name in
               ("item_separator", "key_separator", "indent", "leading", "trailing", "key_order", "numbers")
               if getattr(self, name) != getattr(default, name)]
        out += [name for name in ("escape_non_ascii", "uppercase_escapes", "escape_slash", "escape_html",
                                  "escape_ascii") if getattr(self, name)]
        return out


def _hex4(code: int, upper: bool) -> str:
    return f"\\u{code:04X}" if upper else f"\\u{code:04x}"


def _int_spellings(n: int) -> dict[str, str]:
    """Ways to write the integer ``n`` that parse back to the same number, by number style."""
    digits, exponent = str(abs(n)), 0
    while len(digits) > 1 and digits.endswith("0"):
        digits, exponent = digits[:-1], exponent + 1
    sign_ = "-" if n < 0 else ""
    out = {"plain": str(n), "trailing-zero": f"{n}.0", "exponent": f"{sign_}{digits}e{exponent}",
           "upper-exponent": f"{sign_}{digits}E+{exponent}", "two-zeros": f"{n}.00"}
    if n == 0:
        out.update({"negative-zero": "-0", "negative-zero-float": "-0.0", "zero-exponent": "0e5"})
    return out


def _float_spellings(f: float) -> dict[str, str]:
    """Ways to write the finite float ``f`` that parse back to exactly ``f`` (``==``)."""
    text = repr(f)
    sign_, digits, exponent = Decimal(text).as_tuple()
    mantissa = "".join(map(str, digits)) or "0"
    negative = "-" if sign_ else ""
    out = {"plain": text,
           "trailing-zero": text + "0" if "e" not in text else text,
           "exponent": f"{negative}{mantissa}e{exponent}",
           "upper-exponent": f"{negative}{mantissa}E{int(exponent):+d}"}
    if f == 0:
        out["negative-zero"] = "-0.0"
    return out


class _Encoder:
    def __init__(self, style: EncodingStyle) -> None:
        self.style = style
        self.rng = random.Random(style.seed)
        escapes = ['"', "\\\\", "\\x00-\\x1f"]
        if style.escape_slash:
            escapes.append("/")
        if style.escape_html:
            escapes.append(re.escape(_HTML_CHARS))
        if style.escape_non_ascii:
            escapes.append("\\x80-\\U0010ffff")
        else:
            escapes.append("\\ud800-\\udfff")  # lone surrogates cannot be raw UTF-8
        self.pattern = re.compile(f"[{''.join(escapes)}]")

    def encode(self, value: Any) -> str:
        return self.style.leading + self.value(value, 0) + self.style.trailing

    def value(self, value: Any, depth: int) -> str:
        if value is None:
            return "null"
        if value is True:
            return "true"
        if value is False:
            return "false"
        if isinstance(value, int):
            return self.int_(value)
        if isinstance(value, float):
            return self.float_(value)
        if isinstance(value, str):
            return self.string(value)
        if isinstance(value, dict):
            items = list(value.items())
            order = self.style.key_order
            if order == "reversed":
                items.reverse()
            elif order == "sorted":
                items.sort(key=lambda kv: str(kv[0]))
            elif order == "reverse-sorted":
                items.sort(key=lambda kv: str(kv[0]), reverse=True)
            elif order == "shuffled":
                self.rng.shuffle(items)
            sep = self.style.key_separator
            parts = [self.string(str(k)) + sep + self.value(v, depth + 1) for k, v in items]
            return self.container("{", parts, "}", depth)
        if isinstance(value, list | tuple):
            return self.container("[", [self.value(v, depth + 1) for v in value], "]", depth)
        raise TypeError(f"not a JSON value: {type(value).__name__}")

    def container(self, opening: str, parts: list[str], closing: str, depth: int) -> str:
        if not parts:
            return opening + closing
        if self.style.indent is None:
            return opening + self.style.item_separator.join(parts) + closing
        inner = "\n" + " " * (self.style.indent * (depth + 1))
        outer = "\n" + " " * (self.style.indent * depth)
        return opening + inner + ("," + inner).join(parts) + outer + closing

    def int_(self, n: int) -> str:
        return self.pick(_int_spellings(n) if abs(n) <= MAX_SAFE_INTEGER else {"plain": str(n)})

    def float_(self, f: float) -> str:
        if not math.isfinite(f):
            raise ValueError("JSON has no NaN or infinities")
        return self.pick(_float_spellings(f))

    def pick(self, spellings: dict[str, str]) -> str:
        style = self.style.numbers
        if style == "mixed":
            return self.rng.choice(sorted(spellings.values()))
        return spellings.get(style, spellings["plain"])

    def string(self, text: str) -> str:
        upper = self.style.uppercase_escapes

        def escape(match: re.Match[str]) -> str:
            ch = match.group()
            if ch in _SHORT:
                return _SHORT[ch]
            if ch == "/":
                return "\\/"
            code = ord(ch)
            if code > 0xFFFF:
                code -= 0x10000
                return _hex4(0xD800 + (code >> 10), upper) + _hex4(0xDC00 + (code & 0x3FF), upper)
            return _hex4(code, upper)

        out = self.pattern.sub(escape, text)
        if self.style.escape_ascii and self.rng.random() < 0.7:
            # Write the first ASCII letter outside an escape as \u00XX.
            index = _first_plain_letter(out)
            if index is not None:
                out = out[:index] + _hex4(ord(out[index]), upper) + out[index + 1:]
        return '"' + out + '"'


def _first_plain_letter(escaped: str) -> int | None:
    i = 0
    while i < len(escaped):
        ch = escaped[i]
        if ch == "\\":
            i += 6 if escaped[i + 1:i + 2] == "u" else 2
            continue
        if ch.isascii() and ch.isalpha():
            return i
        i += 1
    return None


def encode_json(value: Any, style: EncodingStyle | None = None) -> bytes:
    """``value`` written in ``style`` as UTF-8 bytes; ``json.loads`` gives it back (``==``)."""
    return _Encoder(style or EncodingStyle()).encode(value).encode("utf-8")


def _js_number(value: float | int) -> str:
    """ECMAScript Number::toString (what JSON.stringify writes) for a finite number."""
    try:
        f = float(value)  # what JSON.parse makes of it
    except OverflowError:
        return "null"  # Infinity
    if f == 0:
        return "0"
    # Shortest round-trip digits (Python's repr has the same), laid out by ECMAScript's rules.
    _, digits, exponent = Decimal(repr(abs(f))).normalize().as_tuple()
    s = "".join(map(str, digits))
    k = len(s)
    n = exponent + k  # value = 0.s * 10**n
    if k <= n <= 21:
        text = s + "0" * (n - k)
    elif 0 < n <= 21:
        text = s[:n] + "." + s[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + s
    else:
        e = n - 1
        text = s[0] + ("." + s[1:] if k > 1 else "") + "e" + ("+" if e >= 0 else "-") + str(abs(e))
    return ("-" if f < 0 else "") + text


def javascript_stringify(value: Any) -> bytes:
    """What ``JSON.stringify(JSON.parse(body))`` gives for the value ``json.loads(body)`` gave."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    if isinstance(value, int | float):
        return _js_number(value).encode()
    if isinstance(value, dict):
        return b"{" + b",".join(json.dumps(str(k), ensure_ascii=False).encode("utf-8") + b":" +
                               javascript_stringify(v) for k, v in value.items()) + b"}"
    return b"[" + b",".join(javascript_stringify(v) for v in value) + b"]"


def reserialisations(body: bytes) -> dict[str, bytes]:
    """What common wrong receivers verify instead of ``body`` (after parsing it)."""
    value = json.loads(body)
    return {
        "python-compact": conduit_bytes(value),
        "python-default": json.dumps(value).encode(),
        "python-sorted": json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                                    sort_keys=True).encode(),
        "javascript": javascript_stringify(value),
    }


def reserialises_differently(body: bytes) -> bool:
    """True when both a Python (compact, UTF-8) and a JavaScript re-serialisation change the bytes."""
    forms = reserialisations(body)
    return body != forms["python-compact"] and body != forms["javascript"]


@dataclass(frozen=True)
class EncodedBody:
    """A JSON value and the exact bytes to sign and send for it."""

    value: Any
    body: bytes
    style: EncodingStyle = field(default_factory=EncodingStyle)
    label: str = ""

    def describe(self) -> str:
        features = ", ".join(self.style.features()) or "simulator form"
        return f"{self.label + ': ' if self.label else ''}{len(self.body)} B [{features}]"


# -- Hypothesis strategies ------------------------------------------------------------------------
SPECIAL_CHARS = "/<>&'+\"\\\n\t\r\b\f\x00\x1f\x7f é–«»日本語🎨\u2028\u2029\ufeff"
_HEX = "0123456789abcdef"


def texts(*, min_size: int = 0, max_size: int = 24) -> st.SearchStrategy[str]:
    """Text rich in what encoders write differently (no lone surrogates: they are not UTF-8)."""
    alphabet = st.one_of(st.sampled_from(SPECIAL_CHARS), st.characters(codec="utf-8"))
    return st.text(alphabet=alphabet, min_size=min_size, max_size=max_size)


def task_ids() -> st.SearchStrategy[str]:
    return st.binary(min_size=16, max_size=16).map(lambda b: "task_" + b.hex())


def timestamps() -> st.SearchStrategy[str]:
    return st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31),
                        timezones=st.just(UTC)).map(utc_iso)


def numbers() -> st.SearchStrategy[int | float]:
    """Integers and floats, weighted towards the ones that are spelled differently (0, 1.0, 1e3)."""
    return st.one_of(
        st.sampled_from([0, 1, 1000, -20, 0.0, -0.0, 1.0, 7.0, 45.5, 0.1, 1e-7, 1e21, 123456.789]),
        st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
        st.floats(allow_nan=False, allow_infinity=False),
    )


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), numbers(), texts())
    return st.recursive(
        scalars,
        lambda children: (st.lists(children, max_size=4)
                          | st.dictionaries(texts(max_size=8), children, max_size=4)),
        max_leaves=max_leaves,
    )


def urls() -> st.SearchStrategy[str]:
    hosts = st.sampled_from(["cdn.example.com", "storage.example.org/bucket", "127.0.0.1:9000"])
    names = st.text(alphabet=_HEX, min_size=4, max_size=12)
    return st.builds(lambda h, n, q: f"https://{h}/v1/images/{n}.png{q}", hosts, names,
                     st.sampled_from(["", "?sig=a+b/c&exp=1", "?x=<y>"]))


def completed_results(*, rich: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    image = st.fixed_dictionaries({"url": urls()},
                                  optional={"revised_prompt": texts(), "b64_json": st.none()})
    optional: dict[str, st.SearchStrategy[Any]] = {
        "model": st.sampled_from(["dall-e-3", "minimax-video", "sdxl"]),
        "prompt": texts(),
        "seed": st.integers(0, 2**32),
        "generation_duration_seconds": numbers(),
        "size": st.sampled_from(["1024x1024", "512x512"]),
    }
    if rich:
        optional["metadata"] = json_values()
    return st.fixed_dictionaries({"images": st.lists(image, min_size=1, max_size=3)}, optional=optional)


@st.composite
def webhook_bodies(draw: st.DrawFn, event_types: Sequence[str] = EVENT_TYPES, *,
                   task_id: str | None = None, rich: bool = False) -> dict[str, Any]:
    """Documented webhook bodies. ``rich`` adds arbitrary JSON (non-ASCII, floats) to results."""
    event_type = draw(st.sampled_from(list(event_types)))
    tid = task_id if task_id is not None else draw(task_ids())
    timestamp = draw(timestamps())
    if event_type == "task.progress":
        return documented_body(event_type, tid, progress=draw(st.integers(0, 100)), timestamp=timestamp)
    if event_type == "task.completed":
        result = draw(completed_results(rich=rich))
        return documented_body(event_type, tid, result=result, timestamp=timestamp)
    return documented_body(event_type, tid, status=draw(st.sampled_from(FAILED_STATUSES)),
                           error=draw(texts(min_size=1)), timestamp=timestamp)


def encoding_styles() -> st.SearchStrategy[EncodingStyle]:
    ws = st.sampled_from(["", " ", "\n", "\r\n", "\t", " \n\t"])
    return st.builds(
        EncodingStyle,
        item_separator=st.sampled_from([",", ", ", " ,", ",\n", ",\r\n\t", " , "]),
        key_separator=st.sampled_from([":", ": ", " :", " : ", ":\t"]),
        indent=st.one_of(st.none(), st.integers(0, 4)),
        leading=ws,
        trailing=ws,
        key_order=st.sampled_from(KEY_ORDERS),
        escape_non_ascii=st.booleans(),
        uppercase_escapes=st.booleans(),
        escape_slash=st.booleans(),
        escape_html=st.booleans(),
        escape_ascii=st.booleans(),
        numbers=st.sampled_from(NUMBER_STYLES),
        seed=st.integers(0, 2**32 - 1),
    )


def _fit(value: dict[str, Any], style: EncodingStyle, max_bytes: int) -> bytes:
    """Encode; when a padded body is over ``max_bytes``, shorten its ``blob`` until it fits."""
    body = encode_json(value, style)
    result = value.get("result")
    for _ in range(8):
        if len(body) <= max_bytes or not isinstance(result, dict) or "blob" not in result:
            break
        blob = result["blob"]
        result["blob"] = blob[: int(len(blob) * max_bytes / len(body) * 0.95)]
        body = encode_json(value, style)
    return body


@st.composite
def large_bodies(draw: st.DrawFn, min_bytes: int = 64_000, max_bytes: int = 400_000) -> dict[str, Any]:
    """A completed body whose result carries a ``blob`` of about ``min_bytes``..``max_bytes``."""
    value = draw(webhook_bodies(event_types=("task.completed",)))
    pattern = draw(texts(min_size=1, max_size=16))
    size = draw(st.integers(min_bytes, max_bytes))
    per_char = max(1, len(pattern.encode("utf-8")) // len(pattern))
    value["result"]["blob"] = (pattern * (size // (per_char * len(pattern)) + 1))[: size // per_char]
    return value


@st.composite
def encodings(draw: st.DrawFn, values: st.SearchStrategy[Any] | None = None,
              styles: st.SearchStrategy[EncodingStyle] | None = None,
              max_bytes: int = MAX_BODY_BYTES) -> EncodedBody:
    """A value (documented body by default) written in a drawn style; may equal the simulator form."""
    value = draw(values if values is not None else webhook_bodies(rich=True))
    style = draw(styles if styles is not None else encoding_styles())
    return EncodedBody(value, _fit(value, style, max_bytes), style)


def reserialising_encodings(values: st.SearchStrategy[Any] | None = None, *, large: bool = True,
                            max_bytes: int = MAX_BODY_BYTES) -> st.SearchStrategy[EncodedBody]:
    """Encodings whose Python-compact *and* JavaScript re-serialisations differ from the bytes.

    With ``large`` about one example in ten carries a large (64-400 KB) blob.
    """
    if values is None:
        regular = webhook_bodies(rich=True)
        values = (st.integers(0, 9).flatmap(lambda k: large_bodies() if k == 9 else regular)
                  if large else regular)
    return encodings(values, max_bytes=max_bytes).filter(lambda e: reserialises_differently(e.body))


# -- fixed encodings (what W-RAW-BODY always sends) ------------------------------------------------
def fixed_encodings(task_id: str | None = None, rng: random.Random | None = None) -> list[EncodedBody]:
    """One case per re-serialisation trap, each differing from both Python and JavaScript forms."""
    rng = rng or random.Random(0)

    def tid() -> str:
        return task_id or new_task_id(rng)

    completed = documented_body("task.completed", tid(), result={
        "images": [{"url": "https://cdn.example.com/v1/images/a/b.png?sig=a+b/c",
                    "revised_prompt": "café ☕ «naïve» Zürich – 日本語 🎨 <b>&'+</b>"}],
        "seed": 1000, "generation_duration_seconds": 45.5, "guidance_scale": 7.0, "strength": 0.0})
    cases = [
        ("keys in reverse-sorted order, pretty-printed", completed,
         EncodingStyle(key_order="reverse-sorted", indent=2)),
        ("pretty-printed with a trailing newline", completed, EncodingStyle(indent=2, trailing="\n")),
        ("non-ASCII as \\u escapes (surrogate pair for U+1F3A8)", completed,
         EncodingStyle(escape_non_ascii=True)),
        ("raw UTF-8 non-ASCII with ', ' and ': ' separators", completed,
         EncodingStyle(item_separator=", ", key_separator=": ")),
        ("Python json.dumps defaults (ASCII escapes, spaces)", completed,
         EncodingStyle(item_separator=", ", key_separator=": ", escape_non_ascii=True)),
        ("numbers written 1.0-style", completed, EncodingStyle(numbers="trailing-zero")),
        ("numbers written 1e3-style", completed, EncodingStyle(numbers="exponent")),
        ("zero written -0", documented_body("task.progress", tid(), progress=0),
         EncodingStyle(numbers="negative-zero")),
        ("escaped slashes \\/", completed, EncodingStyle(escape_slash=True)),
        (".NET encoder: non-ASCII and <>&'+ as \\u003C-style escapes", completed,
         EncodingStyle(escape_non_ascii=True, escape_html=True, uppercase_escapes=True)),
        ("CRLF and tab whitespace", documented_body("task.failed", tid(), error="timeout / <retry>"),
         EncodingStyle(item_separator=",\r\n\t", key_separator=" : ", leading="\r\n", trailing="\t")),
    ]
    out = [EncodedBody(value, encode_json(value, style), style, label) for label, value, style in cases]
    big = documented_body("task.completed", tid(), result={
        "images": [{"url": "https://cdn.example.com/v1/images/big.png"}],
        "blob": ("Größe ☕ /path/ <tag> 1.0 " * 20000)[:480_000]})
    big_style = EncodingStyle(item_separator=", ", key_separator=": ", escape_slash=True)
    out.append(EncodedBody(big, encode_json(big, big_style), big_style, "large body (~500 KB)"))
    return out


# -- header mutations -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Signed:
    """A body and the signature header to send with it (``None`` = no header at all)."""

    body: bytes
    signature: str | None


# Secrets anyone can guess: the empty one (an unset variable read as ""), the guide's placeholder,
# framework / tutorial defaults and the values an unset variable's fallback ends up with. A body
# signed with one of them is a forgery, unless the receiver really was configured with it.
PLACEHOLDER_SECRETS: tuple[str, ...] = (
    "", "your-webhook-secret", "your_webhook_secret", "your-secret-here", "secret", "changeme",
    "change-me", "whsec_test", "whsec_", "webhook_secret", "webhook-secret", "password", "test",
    "default", "123456", "xxx", "null", "undefined", "None", "CONDUIT_WEBHOOK_SECRET",
)

# kind -> (must the receiver refuse it, what it is)
MUTATION_KINDS: dict[str, tuple[bool, str]] = {
    "wrong-signature": (True, "a random 64-hex signature"),
    "wrong-secret": (True, "signed with a wrong secret"),
    "placeholder-secret": (True, "signed with a common placeholder secret (see PLACEHOLDER_SECRETS)"),
    "other-body": (True, "the valid signature of a different body"),
    "missing": (True, "no signature header"),
    "empty": (True, "an empty signature header"),
    "non-hex": (True, "the right signature with one character replaced by a non-hex one"),
    "truncated": (True, "the right signature truncated"),
    "over-long": (True, "the right signature with hex digits appended"),
    "tampered-body": (True, "one byte of the body changed after signing (still valid JSON)"),
    "appended-whitespace": (True, "whitespace appended to the body after signing (still valid JSON)"),
    "uppercase": (False, "the right signature in uppercase hex (lenient: same MAC)"),
    "sha256-prefix": (False, "'sha256=' + the right signature (lenient: GitHub style)"),
    "base64": (False, "the right MAC in base64 (lenient: Conduit's batch-send encoding)"),
}


def tamperable_positions(body: bytes) -> list[int]:
    """Offsets of ASCII letters/digits inside JSON string *values* (not keys) and outside escapes.

    Replacing one of them with another letter/digit keeps the body valid JSON with the same keys.
    """
    positions: list[int] = []
    current: list[int] | None = None  # positions in the string being scanned
    i = 0
    while i < len(body):
        b = body[i]
        if current is not None:
            if b == 0x5C:  # backslash: skip the escape
                i += 6 if body[i + 1:i + 2] == b"u" else 2
                continue
            if b == 0x22:
                rest = body[i + 1:i + 64].lstrip(b" \t\r\n")
                if not rest.startswith(b":"):  # a value, not a key
                    positions.extend(current)
                current = None
            elif 0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A:
                current.append(i)
        elif b == 0x22:
            current = []
        i += 1
    return positions


def _replacement(byte: int, rng: random.Random) -> int:
    if 0x30 <= byte <= 0x39:
        pool = b"0123456789"
    elif 0x41 <= byte <= 0x5A:
        pool = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    else:
        pool = b"abcdefghijklmnopqrstuvwxyz"
    return rng.choice([c for c in pool if c != byte])


@dataclass(frozen=True)
class HeaderMutation:
    """Turns a correctly signed delivery into a bad one; ``param`` picks the variant."""

    kind: str
    param: int = 0

    def __post_init__(self) -> None:
        if self.kind not in MUTATION_KINDS:
            raise ValueError(f"unknown mutation {self.kind!r}; known: {', '.join(MUTATION_KINDS)}")

    @property
    def must_reject(self) -> bool:
        return MUTATION_KINDS[self.kind][0]

    @property
    def placeholder(self) -> str:
        """The secret a ``placeholder-secret`` mutation signs with."""
        return PLACEHOLDER_SECRETS[self.param % len(PLACEHOLDER_SECRETS)]

    def describe(self) -> str:
        if self.kind == "placeholder-secret":
            return f"{self.kind}[{self.param}]: signed with the placeholder secret {self.placeholder!r}"
        return f"{self.kind}[{self.param}]: {MUTATION_KINDS[self.kind][1]}"

    def apply(self, body: bytes, secret: str) -> Signed:
        rng = random.Random(f"{self.kind}/{self.param}")
        right = sign(body, secret)
        kind = self.kind
        if kind == "wrong-signature":
            wrong = right
            while wrong == right:
                wrong = "".join(rng.choice(_HEX) for _ in range(64))
            return Signed(body, wrong)
        if kind == "wrong-secret":
            variants = [f"wrong-{secret}", "", secret + " ", secret.swapcase(), secret[:-1],
                        "your-webhook-secret"]
            wrong_secret = variants[self.param % len(variants)]
            if wrong_secret == secret:
                wrong_secret = f"wrong-{secret}"
            return Signed(body, sign(body, wrong_secret))
        if kind == "placeholder-secret":
            return Signed(body, sign(body, self.placeholder))
        if kind == "other-body":
            other = body + b" " if self.param % 2 else b"{}"
            return Signed(body, sign(other, secret))
        if kind == "missing":
            return Signed(body, None)
        if kind == "empty":
            return Signed(body, "")
        if kind == "non-hex":
            at = self.param % 64
            return Signed(body, right[:at] + rng.choice("ghijklmnopqrstuvwxyzGXZ_-+=/") + right[at + 1:])
        if kind == "truncated":
            return Signed(body, right[: 1 + self.param % 63])
        if kind == "over-long":
            extra = "".join(rng.choice(_HEX) for _ in range(1 + self.param % 64))
            return Signed(body, right + extra)
        if kind == "tampered-body":
            positions = tamperable_positions(body)
            if not positions:
                return Signed(body + b" ", right)
            at = positions[self.param % len(positions)]
            changed = body[:at] + bytes([_replacement(body[at], rng)]) + body[at + 1:]
            return Signed(changed, right)
        if kind == "appended-whitespace":
            return Signed(body + [b"\n", b" ", b"\t", b"\r\n"][self.param % 4], right)
        if kind == "uppercase":
            return Signed(body, right.upper())
        if kind == "sha256-prefix":
            return Signed(body, "sha256=" + right)
        if kind == "base64":
            return Signed(body, base64.b64encode(bytes.fromhex(right)).decode())
        raise AssertionError(kind)


def header_mutations(*, include_lenient: bool = False) -> st.SearchStrategy[HeaderMutation]:
    """Mutations a receiver must refuse with 401/403 (and, with ``include_lenient``, the lenient ones)."""
    kinds = [k for k, (must, _) in MUTATION_KINDS.items() if must or include_lenient]
    return st.builds(HeaderMutation, kind=st.sampled_from(kinds), param=st.integers(0, 2**16))


# What W-REJECT sends: every must-reject kind, the length-sensitive ones at several lengths.
REJECT_CASES: tuple[HeaderMutation, ...] = (
    HeaderMutation("wrong-signature"),
    HeaderMutation("wrong-secret", 0),
    HeaderMutation("wrong-secret", 1),  # the empty secret
    HeaderMutation("wrong-secret", 5),  # the guide-style placeholder
    HeaderMutation("other-body", 0),
    HeaderMutation("missing"),
    HeaderMutation("empty"),
    HeaderMutation("non-hex", 0),
    HeaderMutation("non-hex", 63),
    HeaderMutation("truncated", 62),  # 63 chars
    HeaderMutation("truncated", 31),  # 32 chars
    HeaderMutation("over-long", 0),  # 65 chars
    HeaderMutation("over-long", 63),  # 128 chars
    HeaderMutation("tampered-body", 3),
    HeaderMutation("tampered-body", 40),
    HeaderMutation("appended-whitespace", 0),
    *(HeaderMutation("placeholder-secret", index) for index in range(len(PLACEHOLDER_SECRETS))),
)
LENIENT_CASES: tuple[HeaderMutation, ...] = tuple(
    HeaderMutation(kind) for kind, (must, _) in MUTATION_KINDS.items() if not must)


# -- malformed bodies (application/json; W-NO-CRASH sends them unsigned, wrongly signed and signed) --
MALFORMED_BODIES: dict[str, bytes] = {
    "empty body": b"",
    "truncated JSON": b'{"event_type":"task.completed","task_id":"task_0123',
    "not JSON": b"event_type=task.completed&task_id=x",
    "binary garbage": bytes(range(256)),
    "invalid UTF-8 in a string": b'{"event_type":"task.progress","task_id":"\xff\xfe",'
                                 b'"result":{"progress":1}}',
    "UTF-16 JSON": '{"event_type":"task.progress"}'.encode("utf-16"),
    "UTF-8 BOM": b'\xef\xbb\xbf{"event_type":"task.progress","task_id":"task_bom"}',
    "JSON array": b'[{"event_type":"task.completed"}]',
    "JSON string": b'"task.completed"',
    "JSON null": b"null",
    "100 000 levels deep": b"[" * 100_000 + b"]" * 100_000,
    "NaN and Infinity": b'{"event_type":"task.progress","task_id":"task_nan","result":{"progress":NaN},'
                        b'"error":Infinity}',
    "a 5000-digit integer": b'{"event_type":"task.progress","task_id":"task_big","result":{"progress":'
                            + b"9" * 5000 + b"}}",
    "raw control characters in a string": b'{"event_type":"task.failed","task_id":"task_\x01\x02",'
                                          b'"error":"a\nb"}',
    "lone surrogate escape": b'{"event_type":"task.failed","task_id":"task_\\ud800","error":"\\udfff"}',
    "fields of the wrong type": b'{"event_type":["task.completed"],"task_id":{"id":1},"status":7,'
                                b'"result":"x","timestamp":false}',
    "duplicate keys": b'{"event_type":"task.progress","event_type":"task.completed","task_id":"task_dup",'
                      b'"task_id":null}',
    "missing fields": b"{}",
    "trailing garbage": b'{"event_type":"task.progress","task_id":"task_tail"} {"x":1}',
}


# Headers no sender with the secret needs: each (name, value) is sent once, with a documented body.
HUGE_HEADERS: dict[str, tuple[str, str]] = {
    "a 64 KB signature header": (SIGNATURE_HEADER, "a" * 65_536),
    "a 64 KB extra header": ("X-Padding", "p" * 65_536),
}
OVERSIZED_BODY_BYTES = 3 * 1024 * 1024  # three times what Conduit ever sends (MAX_BODY_BYTES)


def outsider_bodies() -> dict[str, bytes]:
    """Bodies for a sender without the secret: every malformed body, deep objects, an oversized one."""
    bodies = dict(MALFORMED_BODIES)
    bodies["100 000 levels of objects"] = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    bodies["an oversized body (3 MiB)"] = (b'{"event_type":"task.completed","blob":"'
                                           + b"x" * OVERSIZED_BODY_BYTES + b'"}')
    return bodies


def conduit_shaped_bodies(rng: random.Random | None = None) -> dict[str, bytes]:
    """Signed bodies Conduit could send that the guide does not list: a receiver must not 5xx them.

    Unknown event types (Conduit may add some), extra fields, nulls where values were documented,
    a result near the 1 MiB cap, non-ASCII text - all documented in *shape*: one JSON object.
    """
    rng = rng or random.Random(0)
    tid = new_task_id(rng)
    unknown = documented_body("task.completed", tid)
    unknown["event_type"] = "task.cancelled"
    extra = documented_body("task.progress", new_task_id(rng), progress=12)
    extra.update(attempt=2, webhook_id="wh_01", metadata={"tenant": "t-42", "tags": ["a", None]})
    nulls = documented_body("task.completed", new_task_id(rng))
    nulls.update(result=None, error=None, status=None)
    null_progress = documented_body("task.progress", new_task_id(rng))
    null_progress["result"] = {"progress": None}
    large = documented_body("task.completed", new_task_id(rng), result={
        "images": [{"url": "https://cdn.example.com/v1/images/large.png"}],
        "blob": "0123456789abcdef" * 60_000})
    text = documented_body("task.failed", new_task_id(rng),
                           error="Zeitüberschreitung – 超时 ⏱ «réessayez» 🎨")
    return {
        "an unknown event type (task.cancelled)": conduit_bytes(unknown),
        "an unknown event type with an unknown status": conduit_bytes(
            {**documented_body("task.progress", new_task_id(rng)), "event_type": "video.segment_ready",
             "status": "segmenting"}),
        "extra fields (attempt, webhook_id, metadata)": conduit_bytes(extra),
        "nulls for result, error and status": conduit_bytes(nulls),
        "a null progress": conduit_bytes(null_progress),
        "a large result (~960 KB)": conduit_bytes(large),
        "non-ASCII error text": conduit_bytes(text),
        "non-ASCII as \\u escapes": encode_json(
            documented_body("task.failed", new_task_id(rng), error="naïve ☕ 日本"),
            EncodingStyle(escape_non_ascii=True)),
    }


@st.composite
def conduit_shapes(draw: st.DrawFn) -> dict[str, Any]:
    """Bodies Conduit could sign beyond the documented ones (what :func:`conduit_shaped_bodies`
    samples): a documented body whose event type may be unknown, with extra fields and nulls."""
    value = draw(webhook_bodies(rich=True))
    if draw(st.booleans()):
        value["event_type"] = draw(st.sampled_from(["task.cancelled", "task.queued", "video.segment_ready",
                                                    "batch.completed"]))
    for name in draw(st.lists(st.sampled_from(["result", "error", "status"]), unique=True)):
        value[name] = None
    extra = draw(st.dictionaries(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
                                 .filter(lambda k: k not in value), json_values(), max_size=3))
    value.update(extra)
    return value


def malformed_bodies() -> st.SearchStrategy[tuple[str, bytes]]:
    return st.sampled_from(sorted(MALFORMED_BODIES.items()))


def with_style(encoded: EncodedBody, **changes: Any) -> EncodedBody:
    """The same value re-encoded with some style fields changed."""
    style = replace(encoded.style, **changes)
    return EncodedBody(encoded.value, encode_json(encoded.value, style), style, encoded.label)
