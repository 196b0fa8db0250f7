"""aiohttp's ``web.static`` serving DIR on 127.0.0.1, a free port; for ``bench/peers.py``.

Usage: ``python bench/peers/aiohttp_app.py DIR``. Prints ``http://127.0.0.1:PORT/`` once it
listens; SIGINT or SIGTERM stops it.

Settings, as aiohttp recommends for serving files itself: no access log; the default asyncio
event loop, whose ``loop.sendfile`` is ``os.sendfile`` (aiohttp's FileResponse uses it unless
``AIOHTTP_NOSENDFILE`` is set; uvloop's loop has no native sendfile and would fall back to
read/send, so it is deliberately not used here); no directory index; symlinks not followed.
"""

# aiohttp ships type hints; where it is not installed, this file is still checked and the
# harness skips the peer.
# mypy: disable-error-code="import-not-found"

from __future__ import annotations

import socket
import sys

import aiohttp
from aiohttp import web


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: aiohttp_app.py DIR", file=sys.stderr)
        return 2
    app = web.Application()
    app.add_routes([web.static("/", argv[0], show_index=False, follow_symlinks=False)])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    print(f"aiohttp {aiohttp.__version__}: serving on http://127.0.0.1:{port}/", flush=True)
    web.run_app(app, sock=sock, access_log=None, print=None, backlog=1024)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
