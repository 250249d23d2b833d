"""The trial table's selection across whole-grid reloads, with the browser's echo played
by hand: a reload makes the grid in the page clear its selection and send that back."""

from __future__ import annotations

import time

import pandas as pd

from kale_ext.widgets._table import TrialTable


def _frame(trials: int) -> pd.DataFrame:
    return pd.DataFrame({"status": ["running"] * trials,
                         "lr": [0.01 * (t + 1) for t in range(trials)]},
                        index=pd.Index(range(trials), name="trial"))


def _echo(table: TrialTable) -> None:
    """What the page sends after it took new data: its selection, emptied."""
    table.grid.selections = []


def test_a_lagging_echo_of_a_reload_keeps_the_selection(monkeypatch):
    table = TrialTable(_frame(3))
    table.select_trials([1])
    table.reload(_frame(4))
    # The page lags: its echo of the reload comes long after (a fake clock, 30 s on).
    late = time.monotonic() + 30
    monkeypatch.setattr(time, "monotonic", lambda: late)
    _echo(table)
    assert table.selected == [1]
    assert table.grid.selections[0]["r1"] == 1


def test_each_reload_has_one_echo_and_a_users_clear_after_it_counts():
    table = TrialTable(_frame(3))
    seen: list[list[int]] = []
    table.on_select(seen.append)
    table.select_trials([2])
    table.reload(_frame(4))
    table.reload(_frame(5))
    _echo(table)
    _echo(table)
    assert table.selected == [2] and seen == [[2]]
    _echo(table)  # no reload left unanswered: the user cleared the selection
    assert table.selected == [] and seen == [[2], []]


def test_a_reload_without_a_selection_expects_no_echo():
    table = TrialTable(_frame(3))
    table.reload(_frame(4))  # nothing selected: the page has nothing to clear
    table.select_trials([0])
    _echo(table)  # so this is the user's clear
    assert table.selected == []


def test_bulk_cell_updates_replace_the_data_and_count_as_reloads():
    table = TrialTable(_frame(3))
    table.select_trials([1])
    assert table.update_rows({0: {"lr": 1.0}, 2: {"lr": 3.0}}) == 2  # whole data sent
    _echo(table)
    assert table.selected == [1]
    _echo(table)
    assert table.selected == []
