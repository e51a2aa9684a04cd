"""The filesystem object store, all or nothing: a save lands whole under its name, or leaves no file."""

from __future__ import annotations

import os
import uuid
from contextlib import suppress
from typing import Any

from django.core.files.storage import FileSystemStorage

# A save in progress: the reconciler may list one a crashed process left, and deletes it after its grace.
PARTIAL_SUFFIX = ".partial"


class AtomicFileSystemStorage(FileSystemStorage):
    """FileSystemStorage that writes under a temporary name and links the finished file into place.

    Django's own save writes the final name directly, so a full disk left a truncated file there until the
    reconciler's grace period ran out. Here a failed write removes its partial file at once, and a reader
    never sees a file that is still being written.
    """

    def _save(self, name: str, content: Any) -> str:
        partial: str | None = None
        temporary = f"{name}.{uuid.uuid4().hex}{PARTIAL_SUFFIX}"
        try:
            partial = super()._save(temporary, content)  # type: ignore[misc]  # django-stubs omit _save
            while True:
                try:
                    os.link(self.path(partial), self.path(name))  # never replaces an existing object
                    break
                except FileExistsError:
                    name = self.get_available_name(name)
        finally:
            with suppress(FileNotFoundError):
                os.unlink(self.path(partial or temporary))
        return name
