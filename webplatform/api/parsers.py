"""The JSON parser every endpoint uses: a size cap (413) and a nesting cap (400) before anything else runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding  # type: ignore[attr-defined]  # not in the stubs
from rest_framework.utils import json

from governance.errors import BodyTooDeep, PayloadTooLarge


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether a parsed JSON value nests arrays / objects deeper than `limit` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = list(node.values())
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class GuardedJSONParser(JSONParser):
    """DRF's JSONParser behind JSON_MAX_BYTES (413) and JSON_MAX_DEPTH (400), so no body can cause a 500."""

    def parse(self, stream: IO[Any] | None, media_type: str | None = None,
              parser_context: Mapping[str, Any] | None = None) -> Any:
        limit = settings.JSON_MAX_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"A JSON body may be at most {limit} bytes.", details={"max_bytes": limit})
        encoding = get_encoding(dict(parser_context or {}))  # text codecs only (no bz2 bombs)
        try:
            data = json.loads(
                raw.decode(encoding), parse_constant=json.strict_constant if self.strict else None
            )
        except RecursionError as exc:  # deeper than the interpreter goes: certainly deeper than allowed
            raise BodyTooDeep(details={"max_depth": settings.JSON_MAX_DEPTH}) from exc
        except ValueError as exc:  # bad JSON or bad UTF-8
            raise ParseError(f"JSON parse error - {exc}") from exc
        if json_depth_exceeds(data, settings.JSON_MAX_DEPTH):
            raise BodyTooDeep(details={"max_depth": settings.JSON_MAX_DEPTH})
        return data
