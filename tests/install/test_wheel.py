"""The harness as a user gets it: built, installed into a fresh venv, run from an empty folder.

The checkout's tracked files are copied aside (so no stale ``build/`` or ``node_modules`` can
help), a wheel is built with ``pip wheel --no-deps`` and an sdist with ``python -m build``, and
the wheel is installed with its dependencies into a new venv (no ``--system-site-packages``: the
pip cache makes that about 20 s here). Every command then runs from an empty temporary folder,
with no ``PYTHONPATH`` and a cache folder of its own, so nothing can lean on the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Package data that must travel in the wheel and the sdist (globs over the checkout).
DATA = ["simulator/scenarios/bundled/*.yaml", "contract_tests/client_profiles/*.toml",
        "contract_tests/suite/pytest.ini", "contract_tests/clients/*.mjs", "contract_tests/receivers/*.mjs",
        "contract_tests/node/package.json", "contract_tests/node/package-lock.json"]
FAST_RULES = "C-AUTH,C-POLL-STOP"
Done = subprocess.CompletedProcess[str]

pytestmark = pytest.mark.timeout(600)


@dataclass
class Installed:
    wheel: Path
    sdist: Path
    venv: Path
    work: Path  # the empty folder commands run from

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["XDG_CACHE_HOME"] = str(self.work.parent / "cache")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 300) -> Done:
        return subprocess.run(list(args), cwd=cwd or self.work, env=self.env(), capture_output=True,
                              text=True, timeout=timeout)

    def harness(self, *args: str, timeout: float = 300) -> Done:
        return self.run(str(self.venv / "bin" / "conduit-harness"), *args, timeout=timeout)


def _copy_sources(target: Path) -> None:
    """The tracked files only (what a fresh clone holds)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot tell the tracked files")
    for name in listed.stdout.decode().split("\0"):
        source = ROOT / name
        if not name or not (source.is_file() or source.is_symlink()):
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / name, follow_symlinks=False)


def _expected_data() -> set[str]:
    return {str(p.relative_to(ROOT)) for pattern in DATA for p in ROOT.glob(pattern)}


def _ok(done: Done) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("install")
    source, dist, venv, work = base / "src", base / "dist", base / "venv", base / "work"
    for folder in (source, dist, work):
        folder.mkdir()
    _copy_sources(source)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def step(*args: str) -> None:
        done = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, \
            f"{args}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"

    step(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source))
    step(sys.executable, "-m", "build", "--sdist", "--outdir", str(dist), str(source))
    step(sys.executable, "-m", "venv", str(venv))
    [wheel] = dist.glob("*.whl")
    [sdist] = dist.glob("*.tar.gz")
    step(str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel))
    return Installed(wheel=wheel, sdist=sdist, venv=venv, work=work)


@pytest.fixture(scope="module")
def checked(installed: Installed) -> tuple[Done, Path]:
    """``check`` of the bundled Python reference client, named, on a few fast rules."""
    report = Path("reports") / "check"
    done = installed.harness("check", "--client-profile", "python-reference-fast", "--rules", FAST_RULES,
                             "--report", str(report))
    return done, installed.work / report


@pytest.fixture(scope="module")
def loaded(installed: Installed) -> tuple[Done, Path | None]:
    """``load`` with its default report folder, which lands under the current folder."""
    done = installed.harness("load", "-u", "30", "-r", "15", "-t", "10s", timeout=200)
    found = sorted((installed.work / "reports" / "load").glob("*/summary.json"))
    return done, found[-1].parent if found else None


def test_the_wheel_and_the_sdist_carry_the_data(installed: Installed) -> None:
    expected = _expected_data()
    assert len(expected) >= 12, expected  # the globs still match the checkout
    in_wheel = set(zipfile.ZipFile(installed.wheel).namelist())
    assert expected <= in_wheel, expected - in_wheel
    with tarfile.open(installed.sdist) as sdist:
        in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert expected <= in_sdist, expected - in_sdist


def test_serve_starts_from_an_empty_folder_and_stops(installed: Installed) -> None:
    proc = subprocess.Popen([str(installed.venv / "bin" / "conduit-harness"), "serve",
                             "--virtual-key", "vk_demo123"], cwd=installed.work, env=installed.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner: list[str] = []
        while not any(line.startswith("scenario:") for line in banner) and len(banner) < 20:
            banner.append(proc.stdout.readline().strip())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert banner[0].startswith("listening on http://127.0.0.1:"), (banner, err)
    assert banner[1] == "virtual key: vk_demo123"
    assert banner[-1].startswith("scenario: happy-path"), banner
    assert any(line.startswith("control token: ctl_") for line in banner), banner
    assert proc.returncode == 0 and "stopped" in out, (out, err)


def test_check_a_bundled_client_by_name(checked: tuple[Done, Path]) -> None:
    done, report = checked
    assert "contract verdicts" in _ok(done)
    verdicts = json.loads((report / "verdicts.json").read_text())
    assert {v["rule"] for v in verdicts} == set(FAST_RULES.split(","))
    assert all(v["passed"] for v in verdicts), verdicts
    assert (report / "junit.xml").is_file()


def test_check_a_bundled_receiver_by_name(installed: Installed, tmp_path: Path) -> None:
    done = installed.harness("check", "--client-profile", "python-receiver", "--rules", "W-ACCEPT,W-REJECT",
                             "--report", str(tmp_path))
    _ok(done)
    verdicts = json.loads((tmp_path / "verdicts.json").read_text())
    assert {v["rule"] for v in verdicts} == {"W-ACCEPT", "W-REJECT"}


@pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                    reason="node and npm are not installed")
def test_the_node_client_installs_its_packages_once(installed: Installed, tmp_path: Path) -> None:
    first = installed.harness("check", "--client-profile", "node-reference-fast", "--rules", "C-AUTH",
                              "--report", str(tmp_path / "first"))
    _ok(first)
    assert first.stderr.count("installing the Node reference client's npm packages") == 1, first.stderr
    again = installed.harness("check", "--client-profile", "node-reference-fast", "--rules", "C-AUTH",
                              "--report", str(tmp_path / "again"))
    _ok(again)
    assert "installing" not in again.stderr


def test_check_without_node_says_so(installed: Installed) -> None:
    env = installed.env()
    env["PATH"] = str(installed.venv / "bin")  # no node here
    command = [str(installed.venv / "bin" / "conduit-harness"), "check",
               "--client-profile", "node-reference-fast"]
    done = subprocess.run(command, cwd=installed.work, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "node is not on PATH" in done.stderr, done.stderr


def test_load_writes_under_the_current_folder(loaded: tuple[Done, Path | None],
                                              installed: Installed) -> None:
    done, directory = loaded
    out = _ok(done)
    assert directory is not None, out[-2000:]
    assert f"reports: {directory}" in out
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["run"]["users"] == 30


def test_a_report_renders_from_the_outputs(installed: Installed, checked: tuple[Done, Path],
                                           loaded: tuple[Done, Path | None]) -> None:
    (_, check_dir), (_, load_dir) = checked, loaded
    assert load_dir is not None
    run = installed.work / "reports" / "run"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({
        "run": "run", "command": "test", "load": str(load_dir),
        "subjects": [{"name": "python-reference", "kind": "client", "profile": "python-reference-fast",
                      "verdicts": str(check_dir / "verdicts.json"), "junit": str(check_dir / "junit.xml")}],
    }))
    _ok(installed.run(str(installed.venv / "bin" / "python"), "-m", "reporting", str(run)))
    page = (run / "index.html").read_text()
    assert "C-AUTH" in page and "python-reference" in page
    assert "not found" not in page  # the bundled profile was found by its name


def test_the_pytest_plugin_in_another_project(installed: Installed, tmp_path: Path) -> None:
    project = tmp_path / "client-project"
    project.mkdir()
    (project / "test_against_conduit.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.conduit(seed=1)\n"
        "def test_create(conduit_simulator):\n"
        "    task_id = conduit_simulator.create_task(key=conduit_simulator.key)\n"
        "    assert task_id\n")
    python = str(installed.venv / "bin" / "python")
    out = _ok(installed.run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project, timeout=120))
    assert "1 passed" in out
    helps = _ok(installed.run(python, "-m", "pytest", "--help", cwd=project, timeout=120))
    for suite_option in ("--client", "--rules", "--webhook-url", "--verdicts-json", "--max-rule-seconds"):
        assert suite_option not in helps, f"the suite's {suite_option} leaks into other projects"
    markers = _ok(installed.run(python, "-m", "pytest", "--markers", cwd=project, timeout=120))
    assert "@pytest.mark.conduit(" in markers


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_demo_from_an_empty_folder(installed: Installed) -> None:
    done = installed.harness("demo", "--load-seconds", "10", timeout=1400)
    out = _ok(done)
    assert "did not run" not in out
    assert (installed.work / "reports" / "latest" / "index.html").is_file()
