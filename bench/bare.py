"""The baseline server: a bare aiohttp handler that reads the body and answers JSON."""

from __future__ import annotations

import sys

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    """Read the body and answer like a queued create would, doing nothing else."""
    await request.read()
    return web.json_response(
        {"status": True, "msg": "queued", "status_code": "SUCCESS", "job_id": "x"}, status=202
    )


if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
