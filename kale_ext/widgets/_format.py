"""Numbers as the panel shows them: by magnitude, in significant digits.

Ordinary magnitudes (0.001 to 9999) show four significant digits in plain notation;
smaller and larger ones show four in scientific notation, so a learning rate of
0.000118 reads ``1.18e-4`` rather than ``0.00``. Trailing zeros are dropped. What was
not reported shows as an en dash. The trial table renders numbers in the browser with the
d3 specifiers of :data:`GRID_FORMAT`, which give the same text as :func:`format_number`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

MISSING = "\u2013"  # an en dash
SMALL, LARGE = 1e-3, 1e4  # plain notation for SMALL <= |x| < LARGE (and zero)

# The grid's formatter, per cell: a vega expression choosing a d3-format specifier.
GRID_FORMAT = (f"(cell.value == 0 || (abs(cell.value) >= {SMALL:g} && "
               f"abs(cell.value) < {LARGE:g})) ? '.4~g' : '.3~e'")
# Text of a cell whose number is not finite (NaN: not reported yet).
GRID_TEXT = f"isFinite(cell.value) ? default_value : '{MISSING}'"

_EXPONENT = re.compile(r"e([+-])0*(\d)")

# Pixel widths of the grid's 12px sans-serif text, with room for padding and, in a
# header, the sort and filter icons.
CHAR_PX, CELL_PAD_PX, HEADER_PAD_PX, MIN_PX = 7.2, 18, 34, 44


def _trim(mantissa: str) -> str:
    return mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa


def format_number(value: Any) -> str:
    """Return ``value`` as the panel shows it.

    Parameters
    ----------
    value
        A number (ints stay whole), None or NaN (not reported: an en dash), or anything
        else (shown as ``str``).

    Returns
    -------
    str
        Plain notation with four significant digits for 0.001 <= |value| < 10000,
        else scientific with four (``1.18e-4``, ``2.5e+6``); trailing zeros dropped.
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return format_number(value.item())
    if not isinstance(value, float):
        return str(value)
    if math.isnan(value):
        return MISSING
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    plain = value == 0 or SMALL <= abs(value) < LARGE
    # Plain may round up to 1e+04, which is written below as d3 writes it.
    text = f"{value:.4g}" if plain else f"{value:.3e}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = _EXPONENT.sub(r"e\1\2", f"{_trim(mantissa)}e{exponent}")
    return "0" if text == "-0" else text


def text_width(text: str) -> int:
    """Pixels ``text`` takes in the grid's font (an upper estimate)."""
    return math.ceil(len(text) * CHAR_PX)


def column_width(header: str, values: Iterable[Any]) -> int:
    """Pixels a column needs so that neither its header nor any of its cells is cut."""
    body = max((text_width(format_number(v)) for v in values), default=0)
    return max(MIN_PX, text_width(header) + HEADER_PAD_PX, body + CELL_PAD_PX)
