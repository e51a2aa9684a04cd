"""The client address every per-address limit keys on: the socket's peer, or what trusted proxies say.

`X-Forwarded-For` is believed only from proxies the operator names in TRUSTED_PROXIES (addresses or
networks). The header is read right to left: each entry was appended by the hop to its right, so entries are
skipped while they are trusted proxies themselves, and the first one that is not is the client. A direct
client's header is ignored, so a fresh header per request no longer buys a fresh throttle bucket.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.TRUSTED_PROXIES)


def client_address(request: Any) -> str:
    """The caller's address: REMOTE_ADDR, or the client entry of X-Forwarded-For behind trusted proxies."""
    if request is None:
        return "unknown"
    meta = getattr(request, "META", {})
    address = str(meta.get("REMOTE_ADDR") or "unknown")
    if not _trusted(address):
        return address
    hops = [h.strip() for h in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            hop = str(ipaddress.ip_address(hop))
        except ValueError:
            return address  # no proxy of ours writes this: key on the last hop that is known
        if not _trusted(hop):
            return hop
        address = hop
    return address
