"""What a search resumed after its driver was killed must show: nothing rerun, nothing lost.

The trials are :func:`tests.search.trainables.slow_checkpointed`, which log every report
acknowledged to them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kale_ext.store import Store, TrialRecord
from kale_ext.trial import TrialState

Rows = set[tuple[int, int, int]]


def stored(path: str | Path) -> tuple[dict[int, TrialRecord], Rows]:
    """Return the trials of the store at ``path`` by number, and its metric rows' keys."""
    with Store.open(path, readonly=True, states=TrialState) as store:
        return ({t.number: t for t in store.trials()},
                {(m.trial, m.attempt, m.seq) for m in store.metrics()})


def check_resumed(search: Any, before: dict[int, TrialRecord], rows_before: Rows,
                  log: Path, trials: int) -> None:
    """Assert that ``search`` ended whole after a resume from the state ``before``.

    Every trial completed; the completed ones were not run again; no stored row was
    lost; every report acknowledged to a trial (its log) is in the store.
    """
    after = {t.number: t for t in search.store.trials()}
    assert len(after) == trials
    assert all(t.state is TrialState.COMPLETED for t in after.values()), after
    for n, t in before.items():
        if t.state is TrialState.COMPLETED:  # not rerun
            assert after[n].attempt == t.attempt
            assert after[n].ended == t.ended
    assert rows_before <= {(m.trial, m.attempt, m.seq) for m in search.store.metrics()}
    by_tag: dict[int, set[int]] = {}
    for m in search.store.metrics():
        by_tag.setdefault(search.store.trial(m.trial).params["tag"], set()).add(
            m.values["epoch"])
    acked = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() \
        else []
    for entry in acked:
        assert entry["epoch"] in by_tag[entry["tag"]]
