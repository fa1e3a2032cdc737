"""Ranges written as in mathematics, "[0, 1)" or "(0, inf)": how flags and --augment parameters state the values
they take, shown in --help and checked before anything is read or written."""

from __future__ import annotations

import math
import re
from typing import Any


def range_problem(value: Any, valid: str | None) -> str:
    """What is wrong with a flag's number for the range its definition states ("" when nothing is)."""
    if valid is None or isinstance(value, bool) or not isinstance(value, int | float) or in_interval(value, valid):
        return ""
    return "must be " + ("a finite number" if isinstance(value, float) and not math.isfinite(value) else "in " + valid)


def in_interval(value: float, interval: str) -> bool:
    """Whether `value` lies in an interval written as in mathematics: "[0, 1)", "(0, inf)"; NaN and inf in none."""
    match = re.fullmatch(r"([\[(])\s*(\S+)\s*,\s*(\S+)\s*([\])])", interval)
    assert match, interval  # the flag definitions' own notation
    opening, low, high, closing = match.groups()
    lo, hi = float(low), float(high)
    if math.isnan(value) or math.isinf(value):
        return False
    above = value >= lo if opening == "[" else value > lo
    below = value <= hi if closing == "]" else value < hi
    return above and below
