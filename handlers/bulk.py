"""Bulk creation and job status (`/auth/room/createBulk`, `/auth/job/status`)."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register the bulk routes."""
