"""`roomkeeper create-rooms FILE`: bulk creation from CSV or JSON Lines through the API."""

from __future__ import annotations

import argparse
import sys


async def main(args: argparse.Namespace) -> int:
    """Not built yet."""
    print("roomkeeper create-rooms: not available yet", file=sys.stderr)
    return 2
