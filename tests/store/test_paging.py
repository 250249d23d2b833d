"""Pages of trials, counts by state and the best trial come from the store's queries.

Generated searches (states, objective values with ties, either mode) check that a page
is the slice of the whole list in the same order, and that the two-query summary says
what the summary of every trial says.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from kale_ext.channel import Message
from kale_ext.search import summarize, summarize_store
from kale_ext.store import Store
from kale_ext.trial import TrialState

STATES = [TrialState.RUNNING, TrialState.COMPLETED, TrialState.PRUNED, TrialState.FAILED,
          TrialState.PAUSED]
trial = st.tuples(st.sampled_from(STATES),
                  st.none() | st.sampled_from([0.1, 0.5, 0.5, 0.9, -2.0, 7.0]))
searches = st.lists(trial, max_size=30)


def _store(folder: str, trials: list[tuple[TrialState, float | None]], mode: str) -> Store:
    store = Store.open(Path(folder) / "s.kale.sqlite", states=TrialState,
                       objective=("acc", mode))
    store.create_search({"name": "s", "metric": "acc", "mode": mode, "trials": len(trials)})
    for n, (state, value) in enumerate(trials):
        store.add_trial(n, {"n": n})
        if value is not None:
            store.append([Message(n, 0, 0, 0, "report", 1.0, {"epoch": 1, "acc": value})])
        store.transition(n, state, "generated")
    return store


@settings(max_examples=60, deadline=None)
@given(searches, st.sampled_from(["max", "min"]), st.integers(0, 12), st.integers(0, 40),
       st.none() | st.sets(st.sampled_from(STATES), min_size=1))
def test_a_page_is_a_slice_of_the_ordered_list(trials, mode, limit, offset, states):
    with tempfile.TemporaryDirectory() as folder, _store(folder, trials, mode) as store:
        every = store.trials()
        assert [t.number for t in every] == list(range(len(trials)))
        kept = [t for t in every if states is None or TrialState(t.state) in states]
        sign = -1 if mode == "max" else 1
        best_first = sorted(kept, key=lambda t: (t.best is None, sign * (t.best or 0),
                                                 t.number))
        wanted_states = None if states is None else [int(s) for s in states]
        for order, expected in ((None, kept), (mode, best_first)):
            page = store.trials(limit=limit or None, offset=offset, states=wanted_states,
                                best_first=order)
            window = expected[offset:offset + limit] if limit else expected[offset:]
            assert [t.number for t in page] == [t.number for t in window]


@settings(max_examples=60, deadline=None)
@given(searches, st.sampled_from(["max", "min"]))
def test_the_summary_in_sql_is_the_summary_of_every_trial(trials, mode):
    with tempfile.TemporaryDirectory() as folder, _store(folder, trials, mode) as store:
        assert summarize_store(store, mode=mode, planned=40) == \
            summarize(store.trials(), mode=mode, planned=40)
