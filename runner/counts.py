"""A count an experiment file gives as a whole number or as MIN:MAX (training ranks, serving replicas)."""

from __future__ import annotations

import re
from typing import Any

_RANGE = re.compile(r"(\d+):(\d+)")


def count_or_range(value: Any, high: int) -> tuple[int, int]:
    """(MIN, MAX) of `value`: N gives (N, N). ValueError says what is wrong (the caller names the field)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= high:
            raise ValueError(f"must be a whole number from 1 to {high}, got {value!r}")
        return value, value
    m = _RANGE.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"must be a whole number or MIN:MAX (e.g. 2:4), got {value!r}")
    low, top = int(m.group(1)), int(m.group(2))
    if not 1 <= low <= top <= high:
        raise ValueError(f"{value!r}: needs 1 <= MIN <= MAX <= {high}")
    return low, top
