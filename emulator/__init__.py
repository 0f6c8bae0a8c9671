"""A protocol-faithful LiveKit stand-in: RoomService and Egress over Twirp, webhooks, idle rooms.

Development and test tool only; production code reaches it by URL, never by import.
"""

from .app import create_app
from .config import EmulatorConfig
from .server import Emulator

__all__ = ["Emulator", "EmulatorConfig", "create_app"]
