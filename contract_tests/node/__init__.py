"""Where the Node reference client runs from, and its npm packages.

``node_client.mjs`` imports ``@microsoft/signalr``. Node resolves an ES module's bare imports from
``node_modules`` folders above the *script's* location (``NODE_PATH`` does not apply to ESM), and
an installed package lives in a ``site-packages`` that has none and that we must not write into.
So this package ships the ``package.json`` and ``package-lock.json`` beside this module; on first
use they are installed with ``npm ci`` into a per-user cache folder named for the lock's hash
(``$XDG_CACHE_HOME/conduit-harness/node-<hash>/``), and the script is copied there to run.

In the project's checkout, where ``npm ci`` at the top level (its ``package.json`` is a link to
the one here) has put the pinned ``@microsoft/signalr`` above the script, the script runs in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

SIGNALR = "@microsoft/signalr"
NPM_TIMEOUT_S = 600


class NodeUnavailable(RuntimeError):
    """Node.js (or npm, or its packages) cannot be had here; the message says what is missing."""


def _say_on_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def node_executable() -> str:
    """The ``node`` on PATH, or :class:`NodeUnavailable` saying how to get one."""
    node = shutil.which("node")
    if node is None:
        raise NodeUnavailable("node is not on PATH: install Node.js 20 or later to run the Node "
                              "reference client and receiver")
    return node


def _manifest(name: str) -> bytes:
    return (resources.files(__package__) / name).read_bytes()


def pinned_signalr_version() -> str:
    lock = json.loads(_manifest("package-lock.json"))
    return str(lock["packages"][f"node_modules/{SIGNALR}"]["version"])


def _resolves_in_place(script: Path, version: str) -> bool:
    """Would Node, from ``script``'s folder, find the pinned @microsoft/signalr?"""
    for folder in script.resolve().parents:
        found = folder / "node_modules" / SIGNALR / "package.json"
        if found.is_file():
            with contextlib.suppress(OSError, ValueError):
                return json.loads(found.read_text(encoding="utf-8")).get("version") == version
            return False
    return False


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "conduit-harness"


def packages_dir(say: Callable[[str], None] = _say_on_stderr) -> Path:
    """The cache folder with the locked npm packages installed, installing them on first use."""
    manifest, lock = _manifest("package.json"), _manifest("package-lock.json")
    digest = hashlib.sha256(manifest + b"\0" + lock).hexdigest()[:16]
    target = cache_root() / f"node-{digest}"
    if (target / "node_modules" / SIGNALR / "package.json").is_file():
        return target
    node_executable()
    npm = shutil.which("npm")
    if npm is None:
        raise NodeUnavailable("npm is not on PATH: the Node reference client needs it once, to install "
                              f"{SIGNALR} (install npm with Node.js)")
    say(f"conduit-harness: installing the Node reference client's npm packages into {target} "
        "(first use only)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".node-install-", dir=target.parent))
    try:
        (staging / "package.json").write_bytes(manifest)
        (staging / "package-lock.json").write_bytes(lock)
        try:
            done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=staging,
                                  capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise NodeUnavailable(f"npm ci took over {NPM_TIMEOUT_S} s in {staging}; is the npm "
                                  "registry reachable?") from None
        if done.returncode != 0:
            raise NodeUnavailable(f"npm ci failed (exit {done.returncode}) installing {SIGNALR}: "
                                  f"{(done.stderr or done.stdout).strip()[-1500:]}")
        try:
            staging.rename(target)  # atomic: a concurrent first use either wins or finds it done
        except OSError:
            if not (target / "node_modules" / SIGNALR / "package.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def runnable_script(script: Path, say: Callable[[str], None] = _say_on_stderr) -> Path:
    """A path from which ``node`` can run ``script`` with its imports resolved (see the module doc)."""
    if _resolves_in_place(script, pinned_signalr_version()):
        return script
    folder = packages_dir(say)
    copy = folder / script.name
    content = script.read_bytes()
    if not copy.is_file() or copy.read_bytes() != content:
        fd, staging = tempfile.mkstemp(prefix=f".{script.name}.", dir=folder)
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.replace(staging, copy)
    return copy


def node_client_script(say: Callable[[str], None] = _say_on_stderr) -> Path:
    """The Node reference client, ready to run (``{node_client}`` in a client profile)."""
    node_executable()
    return runnable_script(Path(__file__).resolve().parents[1] / "clients" / "node_client.mjs", say)
