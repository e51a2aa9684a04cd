"""Upload handling that keeps files in memory (no plaintext temp files) and refuses oversize ones early."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import MemoryFileUploadHandler

from governance.errors import PayloadTooLarge


class CappedMemoryUploadHandler(MemoryFileUploadHandler):
    """Memory-only upload handler that stops reading once a file passes UPLOAD_MAX_BYTES."""

    def handle_raw_input(self, input_data: Any, META: Any, content_length: int, boundary: Any,
                         encoding: Any = None) -> None:
        # Always in memory: Django's default would spill large files to /tmp as plaintext.
        self.activated = True
        self._received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self._received += len(raw_data)
        if self._received > settings.UPLOAD_MAX_BYTES:
            raise PayloadTooLarge(f"The file is larger than {settings.UPLOAD_MAX_BYTES} bytes.",
                                  details={"max_bytes": settings.UPLOAD_MAX_BYTES})
        return super().receive_data_chunk(raw_data, start)
