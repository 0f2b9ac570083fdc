"""Loading a run directory (``reports/<run>/``) into plain data for the page.

The directory holds whatever a run produced; every part is optional and a part that is missing
or unreadable becomes a note on the page (``Run.problems``), never an exception::

    manifest.json            run id, times, command, simulator settings, subjects, load, timeline
                             (``check --report DIR`` writes one for its subject, with its dialect)
    <subject>.verdicts.json  a list of Verdict.to_json() dicts (contract_tests/verdict.py)
    <subject>.junit.xml      pytest's JUnit XML for that subject
    verdicts.json, junit.xml the same for one subject, as ``conduit-harness check --report DIR``
                             writes them
    load/                    the report directory of ``conduit-harness load``
    timeline.jsonl           the simulator's records (simulator/recorder.py), one JSON object a line

A subject's ``dialect`` (the simulator profile it was judged in) is its manifest entry's
``dialect``, else the run's ``simulator.profile``; without a run manifest, the ``manifest.json``
beside a ``verdicts.json`` says it.

Paths in the manifest are relative to the run directory (absolute ones are used as they are);
a subject's client profile is looked up relative to the run directory, then the current
directory, then among the bundled profiles by name (``python-reference-fast``; an old manifest's
``.../client_profiles/<name>.toml`` path finds the bundled ``<name>`` too). Without a manifest
the loader takes the directory's name as the run id, every ``**/*.verdicts.json`` and
``**/verdicts.json`` as a subject (``*.junit.xml`` or ``junit.xml`` beside it as its JUnit file),
``load/`` and ``timeline.jsonl`` when they exist.

Every file the loader read is in ``Run.inputs``: rendering writes none of them.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract_tests.verdict import Outcome, Verdict


@dataclass
class Subject:
    """One client or receiver the contract suite checked (a reference or a mutant)."""

    name: str
    kind: str = "client"  # "client" | "receiver"
    profile: str | None = None  # the client profile (TOML) it declared its numbers in
    # The dialect it was judged in (a simulator profile): the subject's own ``dialect``, else the
    # run's ``simulator.profile``; None when the run does not say.
    dialect: str | None = None
    mutant: str | None = None
    expected_rule: str | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    verdicts_path: Path | None = None
    junit_path: Path | None = None
    # From the client profile (None when there is no readable profile).
    reconnect_delays_ms: tuple[int, ...] | None = None
    manual_restart_ms: int | None = None

    @property
    def is_mutant(self) -> bool:
        return bool(self.mutant)

    def verdicts_for(self, rule: str) -> list[Verdict]:
        return [v for v in self.verdicts if v.rule == rule]

    @property
    def passed(self) -> bool:
        return bool(self.verdicts) and all(v.passed for v in self.verdicts)

    @property
    def killed(self) -> bool | None:
        """For a mutant: True when a check of its expected rule failed, False when every check of it
        passed, None when the rule was not run, not judged (INCONCLUSIVE) or no rule was named."""
        if not self.expected_rule:
            return None
        found = self.verdicts_for(self.expected_rule)
        if any(v.outcome is Outcome.FAIL for v in found):
            return True
        if found and all(v.passed for v in found):
            return False
        return None


@dataclass
class LoadRun:
    """The output directory of ``conduit-harness load`` (loadtests/runner.py)."""

    path: Path
    summary: dict[str, Any] | None = None  # summary.json
    samples: dict[str, Any] | None = None  # samples.json
    # locust_stats_history.csv rows of the "Aggregated" line, in time order, numbers parsed
    # (None for Locust's "N/A").
    history: list[dict[str, float | None]] = field(default_factory=list)


@dataclass
class Run:
    path: Path
    run_id: str
    manifest: dict[str, Any] = field(default_factory=dict)
    subjects: list[Subject] = field(default_factory=list)
    load: LoadRun | None = None
    timeline: list[dict[str, Any]] | None = None
    timeline_path: Path | None = None
    problems: list[str] = field(default_factory=list)
    inputs: set[Path] = field(default_factory=set)  # every file read (rendering must not overwrite them)

    @property
    def started(self) -> str | None:
        return _text(self.manifest.get("started"))

    @property
    def finished(self) -> str | None:
        return _text(self.manifest.get("finished"))

    @property
    def command(self) -> str | None:
        return _text(self.manifest.get("command"))

    @property
    def simulator(self) -> dict[str, Any]:
        value = self.manifest.get("simulator")
        return value if isinstance(value, dict) else {}

    @property
    def references(self) -> list[Subject]:
        return [s for s in self.subjects if not s.is_mutant]

    @property
    def mutants(self) -> list[Subject]:
        return [s for s in self.subjects if s.is_mutant]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# -- loading ------------------------------------------------------------------------------------
def load_run(path: str | Path) -> Run:
    """Read a run directory; see the module docstring for what it may hold."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run directory")
    run = Run(path=root, run_id=root.name)
    manifest_path = root / "manifest.json"
    manifest: dict[str, Any] | None = None
    if manifest_path.exists():
        run.inputs.add(manifest_path)
        data = _read_json(manifest_path, run.problems)
        if isinstance(data, dict):
            manifest = data
        elif data is not None:
            run.problems.append("manifest.json: not a JSON object; ignored")
    else:
        run.problems.append("no manifest.json: subjects, load and timeline found by file name")
    if manifest is not None:
        run.manifest = manifest
        run.run_id = str(manifest.get("run") or root.name)
        subjects = manifest.get("subjects") or []
        if not isinstance(subjects, list):
            run.problems.append("manifest.json: subjects is not a list; ignored")
            subjects = []
        for index, entry in enumerate(subjects):
            if not isinstance(entry, dict):
                run.problems.append(f"manifest.json: subjects[{index}] is not an object; ignored")
                continue
            run.subjects.append(_subject(root, entry, run.problems))
        run_dialect = _text(run.simulator.get("profile"))
        for subject in run.subjects:
            subject.dialect = subject.dialect or run_dialect
        load = manifest.get("load")
        timeline = manifest.get("timeline")
    else:
        found = sorted({*root.rglob("*.verdicts.json"), *root.rglob("verdicts.json")})
        for verdicts in found:
            if verdicts.name == "verdicts.json":  # ``check --report DIR``: named after its directory
                name = root.name if verdicts.parent == root else str(verdicts.parent.relative_to(root))
                junit = verdicts.with_name("junit.xml")
            else:
                name = verdicts.name[: -len(".verdicts.json")]
                junit = verdicts.with_name(name + ".junit.xml")
            entry = {"name": name, "verdicts": str(verdicts.relative_to(root)),
                     "junit": str(junit.relative_to(root)) if junit.exists() else None,
                     "dialect": _beside(verdicts, run)}
            run.subjects.append(_subject(root, entry, run.problems))
        load = "load" if (root / "load").is_dir() else None
        timeline = "timeline.jsonl" if (root / "timeline.jsonl").exists() else None
    if load:
        load_path = _resolve(root, str(load))
        if load_path.is_dir():
            run.load = load_load_dir(load_path, run.problems)
        else:
            run.problems.append(f"load: {load}: no such directory")
    if timeline:
        timeline_path = _resolve(root, str(timeline))
        run.timeline_path = timeline_path
        run.timeline = load_timeline(timeline_path, run.problems)
        run.inputs.add(timeline_path)
    for subject in run.subjects:
        run.inputs.update(p for p in (subject.verdicts_path, subject.junit_path) if p is not None)
    if run.load is not None:
        run.inputs.update(p for p in run.load.path.iterdir() if p.is_file())
    run.inputs = {p.resolve() for p in run.inputs}
    return run


def _resolve(root: Path, relative: str) -> Path:
    path = Path(relative)
    return path if path.is_absolute() else root / path


def _read_json(path: Path, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        problems.append(f"{path.name}: cannot read: {exc.strerror or exc}")
    except ValueError as exc:
        problems.append(f"{path.name}: invalid JSON: {exc}")
    return None


def _subject(root: Path, entry: dict[str, Any], problems: list[str]) -> Subject:
    name = str(entry.get("name") or "?")
    kind = str(entry.get("kind") or "client")
    subject = Subject(name=name, kind=kind, profile=_text(entry.get("profile")),
                      dialect=_text(entry.get("dialect")) or None, mutant=_text(entry.get("mutant")) or None,
                      expected_rule=_text(entry.get("expected_rule")) or None)
    if entry.get("verdicts"):
        path = _resolve(root, str(entry["verdicts"]))
        subject.verdicts_path = path
        if path.exists():
            data = _read_json(path, problems)
            if isinstance(data, list):
                subject.verdicts = _verdicts(path, data, problems)
            elif data is not None:
                problems.append(f"{path.name}: not a list of verdicts; ignored")
        else:
            problems.append(f"{name}: verdicts file {entry['verdicts']} is missing")
    if entry.get("junit"):
        path = _resolve(root, str(entry["junit"]))
        if path.exists():
            subject.junit_path = path
        else:
            problems.append(f"{name}: JUnit file {entry['junit']} is missing")
    if subject.profile and subject.kind == "client":  # only clients declare reconnect delays
        _read_profile(root, subject, problems)
    return subject


def _beside(verdicts: Path, run: Run) -> str | None:
    """The dialect that ``check --report`` wrote in the ``manifest.json`` beside a ``verdicts.json``
    found without a run manifest (None when there is none, or it does not say)."""
    manifest = verdicts.with_name("manifest.json")
    if verdicts.name != "verdicts.json" or not manifest.is_file():
        return None
    data = _read_json(manifest, run.problems)
    if not isinstance(data, dict):
        return None
    run.inputs.add(manifest)
    for entry in data.get("subjects") or []:
        if isinstance(entry, dict) and entry.get("verdicts") == verdicts.name and entry.get("dialect"):
            return str(entry["dialect"])
    simulator = data.get("simulator")
    return _text(simulator.get("profile")) if isinstance(simulator, dict) else None


def _verdicts(path: Path, data: list[Any], problems: list[str]) -> list[Verdict]:
    """The verdicts of one file (either format of :meth:`Verdict.from_json`); an entry that is not
    a verdict becomes a note."""
    verdicts = []
    for index, raw in enumerate(data):
        try:
            verdicts.append(Verdict.from_json(raw))
        except (ValueError, TypeError) as exc:
            problems.append(f"{path.name}: entry {index} is not a verdict ({exc}); ignored")
    return verdicts


def _read_profile(root: Path, subject: Subject, problems: list[str]) -> None:
    from contract_tests.client_profile import ProfileError, bundled_profiles, find_profile

    assert subject.profile is not None
    relative = Path(subject.profile)
    candidates = [relative] if relative.is_absolute() else [root / relative, Path.cwd() / relative]
    path: Path | str | None = next((c for c in candidates if c.is_file()), None)
    if path is None and relative.suffix == ".toml" and relative.stem in bundled_profiles():
        path = relative.stem
    elif path is None and subject.profile in bundled_profiles():
        path = subject.profile
    if path is None:
        problems.append(f"{subject.name}: profile {subject.profile} not found")
        return
    try:
        profile = find_profile(path)
    except ProfileError as exc:
        problems.append(f"{subject.name}: {exc}")
        return
    subject.reconnect_delays_ms = tuple(int(d) for d in profile.reconnect_delays_ms)
    subject.manual_restart_ms = int(profile.manual_restart_ms)


def load_load_dir(path: Path, problems: list[str] | None = None) -> LoadRun:
    """``summary.json``, ``samples.json`` and ``locust_stats_history.csv`` of a load run."""
    problems = problems if problems is not None else []
    load = LoadRun(path=path)
    for name in ("summary", "samples"):
        file = path / f"{name}.json"
        if file.exists():
            data = _read_json(file, problems)
            if isinstance(data, dict):
                setattr(load, name, data)
        else:
            problems.append(f"load/{name}.json is missing")
    histories = sorted(path.glob("*_stats_history.csv"))
    if histories:
        load.history = read_stats_history(histories[0], problems)
    else:
        problems.append("load: no *_stats_history.csv")
    return load


def read_stats_history(path: Path, problems: list[str] | None = None) -> list[dict[str, float | None]]:
    """The "Aggregated" rows of a Locust stats history CSV with every number parsed."""
    rows: list[dict[str, float | None]] = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            for raw in csv.DictReader(handle):
                if (raw.get("Name") or "") != "Aggregated":
                    continue
                row: dict[str, float | None] = {}
                for key, value in raw.items():
                    if key in (None, "Type", "Name"):
                        continue
                    row[key] = _number(value)
                if row.get("Timestamp") is not None:
                    rows.append(row)
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        if problems is not None:
            problems.append(f"{path.name}: cannot read: {exc}")
    rows.sort(key=lambda r: r["Timestamp"] or 0.0)
    return rows


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def load_timeline(path: Path, problems: list[str] | None = None) -> list[dict[str, Any]] | None:
    """The records of a JSON Lines timeline; a bad line is skipped (and counted in ``problems``)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        if problems is not None:
            problems.append(f"{path.name}: cannot read: {exc.strerror or exc}")
        return None
    records: list[dict[str, Any]] = []
    bad = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    if bad and problems is not None:
        problems.append(f"{path.name}: {bad} unreadable line(s) skipped")
    return records
