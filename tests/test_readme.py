"""The README says what the code does: the profile knobs ``check_start`` accepts and the
columns of the search panel's trial table."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _between(start: str, end: str) -> str:
    """The README's text from ``start`` to the end of ``end`` (whitespace collapsed)."""
    a = README.index(start)
    return " ".join(README[a:README.index(end, a) + len(end)].split())


def _knobs(text: str) -> set[str]:
    """The knob names quoted in ``text``, as keywords (underscored)."""
    return {k.replace("-", "_") for k in re.findall(r"`([a-z][a-z-]*)`", text)}


def test_the_profile_knobs_listed_are_those_the_starts_accept():
    from kale_ext.clusters._dask_jobs import BATCH_KEYS, LOCAL_KEYS
    from kale_ext.clusters._idle import IDLE_KEYS
    from kale_ext.clusters._ipp_launchers import _KNOWN as IPP_KEYS

    text = _between("The knobs (dashed in YAML", "`start-timeout`.")
    listed = _knobs(text) - {"ib0"}
    accepted = (LOCAL_KEYS | BATCH_KEYS | IPP_KEYS | IDLE_KEYS) - {"profile"}
    assert listed == accepted, (
        f"README's knobs lack {sorted(accepted - listed)} and list "
        f"{sorted(listed - accepted)}, which no start accepts")
    ipp = _knobs(text[text.index("ipyparallel clusters take"):])
    assert ipp <= IPP_KEYS, f"ipyparallel does not take {sorted(ipp - IPP_KEYS)}"
    local = {"threads_per_worker"}
    assert local == LOCAL_KEYS - BATCH_KEYS, LOCAL_KEYS - BATCH_KEYS


def test_the_panel_columns_listed_are_the_tables(tmp_path):
    from kale_ext.widgets import StoreFeed, TrialBook
    from kale_ext.widgets._model import METRIC_ORDER
    from tests.widgets.conftest import StoreWriter

    text = _between("(ipydatagrid) with the", "`,")
    listed = text[text.index("`") + 1:-2]
    # The README names the groups; the table fills them from the search.
    writer = StoreWriter(tmp_path / "columns.kale.sqlite")
    try:
        writer.add(0, {"lr": 0.01, "optimizer": "adam", "layers": 2})
        writer.report(0, 1, zeta=1.0, val_acc=0.5, acc=0.4, loss=0.9, val_loss=1.0)
        feed = StoreFeed.open(writer.path)
        book = TrialBook(feed.definition, feed.created)
        book.apply(feed.poll())
        frame = book.frame()
        feed.close()
    finally:
        writer.close()
    shown = [frame.index.name, *frame.columns]
    params, metrics = ["lr", "optimizer", "layers"], [*METRIC_ORDER, "zeta"]
    expected = (listed.replace(f"<metrics> ({', '.join(METRIC_ORDER)} first)",
                               ", ".join(metrics))
                .replace("<params>", ", ".join(params))
                .replace("<metric>", "val_acc"))
    assert [c.strip() for c in expected.split(",")] == shown, (listed, shown)
