"""Username skeletons (Unicode TS #39) and the one-script rule: names that look alike compare equal.

The data is Unicode's own confusables.txt and Scripts.txt as shipped by `confusable-homoglyphs` (3.3.1, MIT,
pinned): no hand table. That package stores each confusable pair in both directions; every pair joins a
source character to its prototype, so each connected group holds one prototype (the multi-character one,
or the one the others all point at), and the skeleton maps every member of the group to it.

skeleton(name) = NFKC, a small capital to its letter (a capital drawn small reads as the letter once case is
ignored), case fold, each character to its group's prototype, NFD, case fold again (prototypes include
capitals), combining marks dropped, and the pairs a case-insensitive reader confuses: `i`/`l`, `rn`/`m`.
Changing this function changes stored name keys: migrate them (accounts/migrations/*_security_skeleton_*).
"""

from __future__ import annotations

import unicodedata
from functools import cache

from confusable_homoglyphs import categories
from confusable_homoglyphs.confusables import confusables_data

# Scripts that are written together (UTS #39's "highly restrictive" sets); any other mix is refused.
_MIXES_ALLOWED = ({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}, {"LATIN", "HAN", "BOPOMOFO"},
                  {"LATIN", "HAN", "HANGUL"})
_NEUTRAL = {"COMMON", "INHERITED"}  # digits, punctuation, combining marks: part of any script


@cache
def _prototypes() -> dict[str, str]:
    """Each confusable character -> its group's prototype (a character or a short sequence)."""
    mapping: dict[str, str] = {}
    for char, pairs in confusables_data.items():
        if len(char) != 1:
            continue  # sequences are only ever prototypes
        targets = [p["c"] for p in pairs]
        if len(targets) == 1 and (len(targets[0]) > 1 or len(confusables_data.get(targets[0], [])) > 1
                                  or targets[0] < char):
            # A source points at one prototype; a pair of two single characters keeps the smaller one
            mapping[char] = targets[0]
    return mapping


def skeleton(name: str) -> str:
    """The comparison form of a username: equal for names a reader cannot tell apart."""
    folded = "".join(_small_capital(c) for c in unicodedata.normalize("NFKC", name)).casefold()
    for _ in range(2):  # a prototype may be a capital, whose lower case has a prototype of its own
        mapped = "".join(_prototypes().get(c, c) for c in unicodedata.normalize("NFD", folded))
        folded = unicodedata.normalize("NFD", mapped).casefold()
    bare = "".join(c for c in folded if not unicodedata.combining(c))
    return bare.replace("i", "l").replace("rn", "m")


def _small_capital(char: str) -> str:
    name = unicodedata.name(char, "")
    if name.startswith("LATIN LETTER SMALL CAPITAL ") and len(letter := name.rsplit(" ", 1)[1]) == 1:
        return letter.lower()
    return char


def mixed_scripts(name: str) -> list[str]:
    """The scripts of a name that mixes scripts not written together (empty: one script, or a usual mix)."""
    scripts = {categories.alias(c) for c in name} - _NEUTRAL
    if len(scripts) <= 1 or any(scripts <= allowed for allowed in _MIXES_ALLOWED):
        return []
    return sorted(s.title() for s in scripts)
