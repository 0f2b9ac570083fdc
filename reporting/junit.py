"""One JUnit XML file for the whole run: one ``<testsuite>`` per subject.

Each subject's own JUnit file (pytest's, a ``<testsuites>`` or a bare ``<testsuite>``) gives its
test cases; they are copied unchanged except that ``classname`` is prefixed with the subject's
name, so that CI viewers which group by class keep two subjects' identical test ids apart. A
subject without a JUnit file gets one test case per verdict (named by its label, the rule id
first), so the merged file still says what was checked; an unreadable file becomes one ``<error>`` test case.
"""

from __future__ import annotations

import contextlib
import copy
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from contract_tests.verdict import Outcome, Verdict
from reporting.run_dir import Subject


def merge_junit(subjects: Iterable[Subject], run_id: str = "") -> ET.ElementTree:
    root = ET.Element("testsuites", {"name": f"conduit-harness {run_id}".strip()})
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for subject in subjects:
        suite = _subject_suite(subject)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
        total_time += float(suite.get("time", "0") or 0)
        root.append(suite)
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(subjects: Iterable[Subject], path: Path, run_id: str = "") -> Path:
    tree = merge_junit(subjects, run_id)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path


def _subject_suite(subject: Subject) -> ET.Element:
    suite = ET.Element("testsuite", {"name": subject.name})
    properties = ET.SubElement(suite, "properties")
    for name, value in (("kind", subject.kind), ("profile", subject.profile), ("dialect", subject.dialect),
                        ("mutant", subject.mutant), ("expected_rule", subject.expected_rule)):
        if value:
            ET.SubElement(properties, "property", {"name": name, "value": str(value)})
    cases: list[ET.Element] = []
    timestamp = hostname = None
    if subject.junit_path is not None:
        try:
            source = ET.parse(subject.junit_path).getroot()
        except (ET.ParseError, OSError) as exc:
            case = ET.Element("testcase", {"classname": subject.name, "name": "junit", "time": "0"})
            ET.SubElement(case, "error", {"message": f"cannot read {subject.junit_path.name}: {exc}"})
            cases.append(case)
        else:
            suites = [source] if source.tag == "testsuite" else source.iter("testsuite")
            for found in suites:
                timestamp = timestamp or found.get("timestamp")
                hostname = hostname or found.get("hostname")
                for case in found.iter("testcase"):
                    copied = copy.deepcopy(case)
                    classname = copied.get("classname")
                    copied.set("classname", f"{subject.name}.{classname}" if classname else subject.name)
                    cases.append(copied)
    else:
        cases = [_verdict_case(subject, v) for v in subject.verdicts]
    if len(properties) == 0:
        suite.remove(properties)
    counts = {"tests": len(cases), "failures": 0, "errors": 0, "skipped": 0}
    seconds = 0.0
    for case in cases:
        if case.find("failure") is not None:
            counts["failures"] += 1
        elif case.find("error") is not None:
            counts["errors"] += 1
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        with contextlib.suppress(ValueError):
            seconds += float(case.get("time") or 0)
        suite.append(case)
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{seconds:.3f}")
    if timestamp:
        suite.set("timestamp", timestamp)
    if hostname:
        suite.set("hostname", hostname)
    return suite


def _verdict_case(subject: Subject, verdict: Verdict) -> ET.Element:
    """A test case named by the verdict's label (rule id first). FAIL is a ``<failure>``,
    INCONCLUSIVE an ``<error>`` (the rule could not judge: never a pass), NOT_APPLICABLE
    ``<skipped>``."""
    case = ET.Element("testcase", {"classname": subject.name, "name": verdict.label, "time": "0"})
    properties = ET.SubElement(case, "properties")
    for name, value in (("outcome", verdict.outcome.value), ("expected", str(verdict.expected)),
                        ("observed", str(verdict.observed)), ("tolerance", str(verdict.tolerance))):
        if value:
            ET.SubElement(properties, "property", {"name": name, "value": value})
    tag = {Outcome.FAIL: "failure", Outcome.INCONCLUSIVE: "error", Outcome.NOT_APPLICABLE: "skipped"}.get(
        verdict.outcome)
    if tag is not None:
        element = ET.SubElement(case, tag, {"message": verdict.summary or verdict.outcome.value})
        element.text = verdict.explain(all_evidence=True, limit=200)
    return case
