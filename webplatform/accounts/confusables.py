"""Username skeletons: two names that look alike on screen get the same skeleton (NFKC, case, homoglyphs).

A small vendored subset of Unicode TR39's confusables for the scripts a Latin-looking name is usually
forged from (Cyrillic, Greek, a few Latin and digit look-alikes). No pinned PyPI package fits:
`confusable_homoglyphs` detects mixed scripts but computes no skeleton to index and compare. Because names
are compared case-insensitively, a lower-case letter maps to the Latin letter its upper case resembles
too (Cyrillic `в`, whose capital is `В`, maps to `b`).
"""

from __future__ import annotations

import unicodedata

_HOMOGLYPHS = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "з": "3", "к": "k", "м": "m", "н": "h", "о": "o", "п": "n",
    "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ь": "b", "ѕ": "s", "і": "i", "ї": "i", "ј": "j",
    "ԁ": "d", "ԛ": "q", "ԝ": "w", "ү": "y", "һ": "h", "ӏ": "l", "ɡ": "g",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "ζ": "z", "η": "n", "ι": "i", "κ": "k", "μ": "m", "ν": "v",
    "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ϲ": "c", "ϳ": "j", "ς": "c",
    # Latin and digits that pass for other letters
    "ı": "i", "ł": "l", "ɩ": "i", "ƅ": "b", "0": "o", "1": "l", "|": "l", "5": "s",
}
_TABLE = str.maketrans(_HOMOGLYPHS)


def skeleton(name: str) -> str:
    """The comparison form of a username: NFKC, case-folded, homoglyphs mapped, combining marks dropped."""
    folded = unicodedata.normalize("NFKC", name).casefold().translate(_TABLE)
    bare = "".join(c for c in unicodedata.normalize("NFD", folded) if not unicodedata.combining(c))
    # "i" and "l" are the classic pair; "rn" reads as "m" in most fonts.
    return bare.replace("i", "l").replace("rn", "m")
