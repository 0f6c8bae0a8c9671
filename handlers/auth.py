"""plugNmeet's API authentication: `API-KEY` plus an HMAC of the raw body (`HASH-SIGNATURE`).

The signature is checked over the exact bytes received, before any JSON parsing, with a
constant-time compare.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from handlers.replies import ApiError, StatusCode
from worker.webhooks.signing import verify_body_hmac

MISSING = StatusCode.MISSING_REQUIRED_PARAMETER


def authenticate(headers: Mapping[str, str], body: bytes, api_key: str, api_secret: str) -> None:
    """Raise plugNmeet's 401 ApiError unless the request is signed with our key and secret."""
    key = headers.get("API-KEY")
    if not key:
        raise ApiError(MISSING, "Missing API-KEY header.", 401)
    if not hmac.compare_digest(key.encode(), api_key.encode()):
        raise ApiError(StatusCode.INVALID_API_KEY, "Invalid API key provided.", 401)
    signature = headers.get("HASH-SIGNATURE")
    if not signature:
        raise ApiError(MISSING, "Missing HASH-SIGNATURE header.", 401)
    if not verify_body_hmac(body, signature, api_secret):
        raise ApiError(
            StatusCode.INVALID_TOKEN_OR_SIGNATURE,
            "Failed to verify provided authentication details.",
            401,
        )
