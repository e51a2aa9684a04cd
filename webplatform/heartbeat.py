"""Liveness for long work: a side thread that says "still alive" while a block runs (jobs, training runs)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError, connection

log = logging.getLogger(__name__)


@contextmanager
def heartbeat(beat: Callable[[], Any], *, every: float, name: str) -> Iterator[None]:
    """While the block runs, call `beat` (one UPDATE) every `every` seconds from a side thread."""
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.wait(every):
                try:
                    beat()
                except DatabaseError:  # a missed beat at worst lets a sweeper take the work back
                    log.warning("heartbeat of %s failed", name, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=loop, name=f"heartbeat-{name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
