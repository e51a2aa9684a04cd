"""Keyset pages over a seq-ordered queryset, newest first: `?before=<seq>` for older, `?after=<seq>` for
newer. Each page costs one indexed range read whatever the history's length (OFFSET and COUNT cost every
row before the page and every match)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet


@dataclass(frozen=True)
class KeysetPage:
    rows: list[Any]
    has_previous: bool  # newer rows exist
    has_next: bool  # older rows exist

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def newer_seq(self) -> int | None:
        return self.rows[0].seq if self.rows else None

    @property
    def older_seq(self) -> int | None:
        return self.rows[-1].seq if self.rows else None


def keyset_page(newest_first: QuerySet[Any], *, before: int | None, after: int | None,
                size: int) -> KeysetPage:
    """One page of `newest_first` (ordered by -seq): below `before`, or just above `after`, or the newest."""
    if after is not None:
        # The page just newer than `after`: read upwards, then show it newest first like every page.
        upwards = list(newest_first.filter(seq__gt=after).order_by("seq")[:size + 1])
        return KeysetPage(rows=list(reversed(upwards[:size])), has_previous=len(upwards) > size,
                          has_next=newest_first.filter(seq__lte=after).exists())
    page = newest_first if before is None else newest_first.filter(seq__lt=before)
    rows = list(page[:size + 1])
    newer = before is not None and newest_first.filter(seq__gte=before).exists()
    return KeysetPage(rows=rows[:size], has_previous=newer, has_next=len(rows) > size)
