"""The verdict as data: what the report reads must survive verdicts.json without loss."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from contract_tests.timing import Tolerance
from contract_tests.verdict import Evidence, Measure, Outcome, Statement, Verdict, in_ms

names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
texts = st.text(max_size=40)
numbers = st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=False, allow_infinity=False))
measures = st.builds(Measure, numbers, st.sampled_from(["", "ms", "s", "%", "polls", "connections"]))
statements = st.builds(
    lambda template, found: Statement(template, **found),
    texts, st.dictionaries(names, st.one_of(measures, st.lists(measures, max_size=4).map(tuple)), max_size=4))
evidence = st.builds(Evidence, texts, st.booleans(), st.none() | texts, st.none() | st.integers(100, 599),
                     st.none() | st.floats(0, 1e6), st.none() | texts)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | texts | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3), max_leaves=10)
verdicts = st.builds(
    Verdict, st.sampled_from(["C-POLL-INTERVAL", "C-RETRY-AFTER", "W-REJECT"]), st.sampled_from(Outcome),
    texts, statements, statements, statements, st.lists(evidence, max_size=4).map(tuple),
    st.dictionaries(names, json_values, max_size=4), st.sampled_from(["", "C-RETRY-AFTER[429]"]))


@given(verdicts)
def test_json_round_trip_is_lossless(verdict: Verdict) -> None:
    text = json.dumps(verdict.to_json())
    assert Verdict.from_json(json.loads(text)) == verdict


def test_statements_show_their_measures_and_leave_other_braces_alone() -> None:
    statement = Statement('delays {delays} then {none}; body {"a": 1}', delays=[in_ms(0), in_ms(0.3)])
    assert str(statement) == 'delays [0, 300] ms then {none}; body {"a": 1}'
    assert str(Statement("peak {peak}", peak=Measure(1, "connections"))) == "peak 1 connection"
    assert str(Statement("{share}", share=Measure(20, "%"))) == "20%"
    assert Measure(1500, "ms").to("s") == 1.5 and not Statement()


def test_outcomes_and_labels() -> None:
    verdict = Verdict("C-RETRY-AFTER", Outcome.FAIL, "next poll too soon",
                      expected=Statement("≥ {retry_after}", retry_after=in_ms(2)),
                      observed=Statement("{gap}", gap=in_ms(0.4)), tolerance=Tolerance().early_statement())
    assert verdict.label == "C-RETRY-AFTER" and not verdict.passed
    labelled = verdict.with_label("C-RETRY-AFTER[429]")
    assert str(labelled) == "FAIL C-RETRY-AFTER[429]: next poll too soon"
    assert labelled.numbers == {"gap": "400 ms"}
    assert "  expected:  ≥ 2000 ms" in labelled.explain()
    assert "  tolerance: early by at most 50 ms" in labelled.explain()
    assert not Verdict("C-X", Outcome.INCONCLUSIVE, "no reconnect happened").passed
