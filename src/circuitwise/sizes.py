"""Sizes in bytes, as people write and read them (``--max-memory 8GB``; "1.2 GB" in the plan).

Its own module, importing nothing, so that the config (which every layer reads) can validate a
size without reaching into the model layer.
"""

from __future__ import annotations

import math
import re

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 1 << 10, "m": 1e6, "mb": 1e6, "mib": 1 << 20,
          "g": 1e9, "gb": 1e9, "gib": 1 << 30, "t": 1e12, "tb": 1e12, "tib": 1 << 40}


def parse_size(text: str | int | float) -> int:
    """``"8GB"``, ``"500MiB"``, ``"1.5g"`` or a number of bytes → bytes. Raises ValueError with the accepted forms."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        m = _SIZE.match(str(text))
        if not m or m.group(2) is not None and m.group(2).lower() not in _UNITS:
            raise ValueError(f"{text!r} is not a size; write it as 8GB, 500MiB, 1.5G or a number of bytes")
        value = float(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r} is not a positive size")
    return int(value)


def human(n: float) -> str:
    """Bytes for people: 1.2 GB, 340 MB."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def duration(secs: float) -> str:
    """Seconds for people: <1 s, 42 s, 7 min (the plan's estimates and the report's table)."""
    if secs < 1:
        return "<1 s"
    if secs < 120:
        return f"{secs:.0f} s"
    return f"{secs / 60:.0f} min"


__all__ = ["duration", "human", "parse_size"]
