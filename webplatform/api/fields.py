"""Input fields stricter than DRF's defaults where the contract says so (API.md, the OpenAPI schema)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from rest_framework import serializers

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$")


class Rfc3339DateTimeField(serializers.DateTimeField):
    """Exactly RFC 3339 `date-time`, as the schema says: offset required, `t`/`z` in either case, any
    fraction (kept to microseconds), a leap second read as the last microsecond before it."""

    default_error_messages = {
        "invalid": "Use an RFC 3339 date-time such as 2030-06-01T12:00:00Z.",
        "overflow": "Date-time value out of range.",
    }

    def to_internal_value(self, value: object) -> datetime:
        match = _RFC3339.match(value) if isinstance(value, str) else None
        if match is None:
            self.fail("invalid")
            raise AssertionError  # fail() raises
        year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
        micro = int((match.group(7) or "0")[:6].ljust(6, "0"))
        leap = second == 60
        try:
            if match.group(8):
                tz: timezone = UTC
            else:
                sign = 1 if match.group(9) == "+" else -1
                tz = timezone(sign * timedelta(hours=int(match.group(10)), minutes=int(match.group(11))))
            parsed = datetime(
                year, month, day, hour, minute, 59 if leap else second, 999_999 if leap else micro, tzinfo=tz
            )
            return parsed.astimezone(UTC)
        # day 31 of June, hour 24, offset past ±24h, year 1 minus an offset
        except (ValueError, OverflowError):
            self.fail("overflow")
            raise AssertionError from None


class ExplicitBooleanField(serializers.BooleanField):
    """A boolean that must be sent, as JSON true/false or the form strings "true"/"false", on every parser.

    DRF reads a boolean missing from a form as False (an unticked checkbox); where False is destructive
    (withdrawing processing consent deletes photos) absence and loose spellings ("1", "yes", 0) are errors.
    """

    default_empty_html = serializers.empty

    def to_internal_value(self, data: object) -> bool:
        if isinstance(data, bool):
            return data
        if data in ("true", "false"):
            return data == "true"
        self.fail("invalid", input=data)
        raise AssertionError  # fail() raises
