"""Fill a template and record where each placeholder and marker word landed.

Roles are character offsets into the filled text (see :class:`circuitwise.tasks.Example`), so
builders compute them while filling, never by searching the finished prompt — a noun that also
occurs earlier in the prompt (or a word like "but" inside another word) would be found at the
wrong place.
"""

from __future__ import annotations

import re
import string
from typing import Mapping

# Words that take "an"/"a" against their first letter: the article follows the sound.
_AN_EXCEPTIONS = frozenset({"hour", "honest", "honour", "honor", "heir", "herb"})
_A_EXCEPTIONS = frozenset({"unicorn", "uniform", "unit", "university", "user", "one", "european",
                           "ewe", "union", "unique", "usual", "utensil", "ukulele"})


def article(word: str) -> str:
    """``"a"`` or ``"an"`` for ``word`` (by sound for the listed exceptions, else by letter)."""
    w = word.lower()
    if w in _AN_EXCEPTIONS:
        return "an"
    if w in _A_EXCEPTIONS:
        return "a"
    return "an" if w[:1] in "aeiou" else "a"


def fill(template: str, values: Mapping[str, str], markers: Mapping[str, str] | None = None
         ) -> tuple[str, dict[str, int]]:
    """``template.format(**values)`` and the start offset of every field and marker word.

    ``markers`` maps a role name to a literal word of the template (``{"BUT": "but"}``); its
    first whole-word occurrence in the literal text gives that role's offset. ``END`` is always
    the start of the last word, the position whose next-token prediction is the answer.
    """
    out: list[str] = []
    offsets: dict[str, int] = {}
    length = 0
    for literal, field, spec, conv in string.Formatter().parse(template):
        for role, word in (markers or {}).items():
            if role not in offsets:
                m = re.search(rf"\b{re.escape(word)}\b", literal)
                if m:
                    offsets[role] = length + m.start()
        out.append(literal)
        length += len(literal)
        if field is not None:
            text = format(values[field], spec or "")
            offsets.setdefault(field, length)
            out.append(text)
            length += len(text)
    filled = "".join(out)
    last = filled.rstrip()
    offsets["END"] = len(last) - len(last.split()[-1]) if last.split() else 0
    return filled, offsets
