"""Numbers in the panel's table: by magnitude, four significant digits, never cut."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kale_ext.widgets._format import (
    GRID_FORMAT,
    MISSING,
    column_width,
    format_number,
    text_width,
)
from tests.widgets.conftest import StoreWriter

finite = st.floats(allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize(("value", "text"), [
    (0.000118, "1.18e-4"), (1.1823e-5, "1.182e-5"), (0.5, "0.5"), (0.1 + 0.2, "0.3"),
    (3.0, "3"), (0.001, "0.001"), (0.0012345, "0.001234"), (9999.0, "9999"),
    (9999.7, "1e+4"), (12345.6, "1.235e+4"), (2.5e6, "2.5e+6"), (-0.000118, "-1.18e-4"),
    (0.0, "0"), (-0.0, "0"), (7, "7"), (128, "128"), (None, MISSING),
    (math.nan, MISSING), (math.inf, "∞"), ("adam", "adam"), (True, "True"),
])
def test_numbers_are_formatted_by_magnitude(value, text):
    assert format_number(value) == text


def test_numpy_scalars_format_as_python_numbers():
    np = pytest.importorskip("numpy")
    assert format_number(np.float32(0.25)) == "0.25"
    assert format_number(np.int64(3)) == "3"
    assert format_number(np.float64("nan")) == MISSING


@given(st.floats(min_value=-1e300, max_value=1e300))  # rounding up may pass float's max
def test_a_formatted_float_reads_back_to_four_significant_digits(x):
    text = format_number(x)
    assert float(text) == pytest.approx(x, rel=5.001e-4, abs=0)


@given(finite)
def test_a_formatted_float_is_short_and_never_hides_a_small_value(x):
    text = format_number(x)
    assert len(text) <= 11  # "-1.235e-308"
    if x != 0:
        assert text not in ("0", "-0")
        assert not text.lstrip("-").startswith("0.000")  # small values go scientific
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e4):
        assert "e" in text
    mantissa = text.split("e")[0]
    assert not ("." in mantissa and mantissa.endswith("0"))  # trailing zeros dropped


@given(st.lists(st.one_of(finite, st.none(), st.integers(-10**9, 10**9)), max_size=20),
       st.text(min_size=1, max_size=30))
def test_a_column_is_wide_enough_for_its_header_and_every_cell(values, header):
    width = column_width(header, values)
    assert width > text_width(header)
    assert all(width > text_width(format_number(v)) for v in values)


def test_the_grid_chooses_the_same_notation_as_format_number():
    # The browser formats the grid's cells with d3; the expression picks '.4~g' exactly
    # where format_number writes plain notation.
    assert "abs(cell.value) >= 0.001" in GRID_FORMAT
    assert "abs(cell.value) < 10000" in GRID_FORMAT
    assert "'.4~g'" in GRID_FORMAT and "'.3~e'" in GRID_FORMAT


def test_the_trial_table_sizes_columns_to_their_content(tmp_path):
    from kale_ext.widgets import TrialBook
    from kale_ext.widgets._feed import StoreFeed
    from kale_ext.widgets._table import TrialTable

    writer = StoreWriter(tmp_path / "fmt.kale.sqlite", trials=3)
    writer.add(0, {"lr": 0.000118, "optimizer": "adam", "layers": 2})
    writer.report(0, 1, val_acc=0.5, a_rather_long_metric_name=123456.789)
    writer.add(1, {"lr": 0.5, "optimizer": "sgd", "layers": 3})  # nothing reported yet
    feed = StoreFeed.open(writer.path)
    try:
        book = TrialBook(feed.definition, feed.created)
        book.apply(feed.poll())
        table = TrialTable(book.frame())
        widths = table.grid.column_widths
        for column in ("lr", "val_acc", "a_rather_long_metric_name", "status", "worker"):
            assert widths[column] > text_width(column)
        assert widths["lr"] > text_width("1.18e-4")
        renderer = table.grid.renderers["lr"]
        assert renderer.format.value == GRID_FORMAT and renderer.missing == MISSING
        # A cell that grows widens its column; columns never shrink.
        before = widths["val_acc"]
        table.update_rows({0: {**table.rows[0], "val_acc": -1.23456789e-12}})
        assert table.grid.column_widths["val_acc"] >= before
        assert table.grid.column_widths["val_acc"] > text_width("-1.235e-12")
    finally:
        feed.close()
        writer.close()
