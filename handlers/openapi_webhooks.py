"""The parts of `/openapi.json` about what roomkeeper sends and how requests are signed.

The `webhooks` section (OpenAPI 3.1) is built from `worker.webhooks.events.EVENT_MODELS`, the one
registry of outgoing events, so a new event appears here by being registered there.
"""

from __future__ import annotations

from typing import Any

from worker.webhooks.events import EVENT_MODELS, event_schemas

REF = "#/components/schemas/{model}"

HASH_SIGNATURE = (
    "The lowercase hex HMAC-SHA256 of the exact raw request body, keyed with the API secret "
    "(ROOMKEEPER_API_SECRET), computed over the bytes sent (sign after serialising, send those "
    "same bytes). Example: secret `zumyyYWqv7KR2kUqvYdq4z4sXg7XTBD2ljT6` and body "
    '`{"room_id":"room01","metadata":{"room_title":"Test room","room_features":'
    '{"allow_webcams":true}}}` give '
    "`dc4dc5897d6e803c2575eeb78ce8b585a8bc0f86836695f107e1ecb94165f79b`."
)

SECURITY_SCHEMES: dict[str, Any] = {
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "API-KEY",
        "description": "The API key (ROOMKEEPER_API_KEY).",
    },
    "hashSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "HASH-SIGNATURE",
        "description": HASH_SIGNATURE,
    },
}

SERVERS = [{"url": "/", "description": "the roomkeeper API that served this document"}]

_SIGNATURE_HEADERS = [
    (
        "Authorization",
        "plugNmeet/LiveKit signature: an HS256 JWT by the API key and secret (no `Bearer`), "
        "whose `sha256` claim is the base64 SHA-256 of the body. Fresh per attempt.",
    ),
    ("Hash-Token", "The same JWT as Authorization."),
    ("webhook-id", "Standard Webhooks: the event `id`, stable across retries and redeliveries."),
    ("webhook-timestamp", "Standard Webhooks: unix seconds of this attempt."),
    (
        "webhook-signature",
        'Standard Webhooks: "v1,<base64 HMAC-SHA256 of id.timestamp.body>" per configured '
        "whsec_ secret, space-separated.",
    ),
]


def webhooks(defs: dict[str, Any]) -> dict[str, Any]:
    """The `webhooks` section; adds every event's schema (and its parts) to `defs`."""
    schemas, names = event_schemas(REF)
    defs.update(schemas)
    section: dict[str, Any] = {}
    for event, spec in EVENT_MODELS.items():
        section[event] = {
            "post": {
                "operationId": f"webhook_{event}",
                "summary": f"`{event}` sent to the room's webhook_url",
                "description": spec.fires,
                "parameters": [
                    {
                        "name": name,
                        "in": "header",
                        "required": True,
                        "description": text,
                        "schema": {"type": "string"},
                    }
                    for name, text in _SIGNATURE_HEADERS
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": REF.format(model=names[event])}}
                    },
                },
                "responses": {
                    "2XX": {"description": "received (anything else is retried)"},
                    "410": {"description": "gone: this (room, URL) queue is dead-lettered"},
                },
            }
        }
    return section
