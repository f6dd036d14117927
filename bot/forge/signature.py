"""Webhook signatures, as Gitea and Forgejo compute them: HMAC-SHA256 of the exact body, lowercase hex.

``X-Gitea-Signature`` and ``X-Forgejo-Signature`` carry the bare hex digest, ``X-Hub-Signature-256``
carries it with a ``sha256=`` prefix. Any one of them matching is enough; all are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

SIGNATURE_HEADERS = ("X-Forgejo-Signature", "X-Gitea-Signature", "X-Hub-Signature-256")


def sign(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def presented(headers: Mapping[str, str]) -> list[str]:
    """The signatures a request carries, prefixes removed; empty values do not count."""
    found = []
    for name in SIGNATURE_HEADERS:
        value = headers.get(name, "").strip()
        if name == "X-Hub-Signature-256":
            if not value.startswith("sha256="):
                continue
            value = value.removeprefix("sha256=")
        if value:
            found.append(value.lower())
    return found


def verify(secret: bytes, body: bytes, headers: Mapping[str, str]) -> bool:
    """True when at least one signature header matches the body's HMAC under ``secret``."""
    candidates = presented(headers)
    if not candidates:
        return False
    expected = sign(secret, body).encode()
    matched = False
    for candidate in candidates:
        # Every candidate is compared, so timing does not tell which header matched.
        matched |= hmac.compare_digest(expected, candidate.encode("ascii", "replace"))
    return matched
