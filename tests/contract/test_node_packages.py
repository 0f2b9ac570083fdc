"""The Node client's npm packages: one lock for the checkout and the package, and where it runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from contract_tests import node

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = Path(node.__file__).parent


@pytest.mark.parametrize("name", ["package.json", "package-lock.json"])
def test_the_checkout_installs_the_packaged_lock(name: str) -> None:
    """``npm ci`` at the top level reads the very files the installed package ships."""
    assert (ROOT / name).resolve() == (PACKAGED / name).resolve()


def test_a_script_runs_in_place_only_beside_the_pinned_version(tmp_path: Path) -> None:
    script = tmp_path / "project" / "client.mjs"
    script.parent.mkdir()
    script.write_text("// nothing\n")
    assert not node._resolves_in_place(script, node.pinned_signalr_version())
    found = tmp_path / "node_modules" / "@microsoft" / "signalr" / "package.json"
    found.parent.mkdir(parents=True)
    found.write_text(json.dumps({"name": "@microsoft/signalr", "version": "0.0.1"}))
    assert not node._resolves_in_place(script, node.pinned_signalr_version())  # another version
    found.write_text(json.dumps({"name": "@microsoft/signalr", "version": node.pinned_signalr_version()}))
    assert node._resolves_in_place(script, node.pinned_signalr_version())


def test_without_node_the_message_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    assert shutil.which("node") is None
    with pytest.raises(node.NodeUnavailable, match="node is not on PATH: install Node.js"):
        node.node_client_script()
