"""Webhook deliveries: listing and redelivery (`/auth/webhook/deliveries`, `/redeliver`)."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register the delivery routes."""
