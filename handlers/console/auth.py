"""Who may use the console: HTTP Basic, and a CSRF token on every form that changes something.

The credentials are the API key and secret (user and password), or any user with
`ROOMKEEPER_CONSOLE_PASSWORD`. The CSRF token is an HMAC of the request's own credentials under
the API secret, so it needs no server-side session and differs for every set of credentials.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from aiohttp import web

from worker.settings import Settings

REALM = 'Basic realm="roomkeeper console", charset="UTF-8"'


def _credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def allowed(settings: Settings, header: str) -> bool:
    """Whether an Authorization header carries console credentials."""
    creds = _credentials(header)
    if creds is None:
        return False
    user, password = creds
    secret = settings.api_secret.get_secret_value()
    ok = hmac.compare_digest(user.encode(), settings.api_key.encode()) & hmac.compare_digest(
        password.encode(), secret.encode()
    )
    if settings.console_password is not None:
        ok |= hmac.compare_digest(
            password.encode(), settings.console_password.get_secret_value().encode()
        )
    return bool(ok)


def unauthorized() -> web.Response:
    """401 with the Basic challenge (the browser asks for credentials)."""
    return web.Response(
        status=401,
        text="401: the console needs the API key and secret (or the console password)\n",
        headers={"WWW-Authenticate": REALM},
    )


def csrf_token(settings: Settings, header: str) -> str:
    """The CSRF token for the credentials in `header`."""
    key = settings.api_secret.get_secret_value().encode()
    msg = b"roomkeeper-console-csrf|" + hashlib.sha256(header.encode()).digest()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def csrf_ok(settings: Settings, header: str, token: str) -> bool:
    """Whether a submitted form carries the token of these credentials."""
    return hmac.compare_digest(token.encode(), csrf_token(settings, header).encode())
