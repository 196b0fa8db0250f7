"""uvicorn + Starlette ``StaticFiles`` serving DIR on 127.0.0.1, a free port, for ``peers.py``.

Usage: ``python bench/peers/starlette_app.py DIR``. Prints ``http://127.0.0.1:PORT/`` once it
listens; SIGINT or SIGTERM stops it.

Settings, as uvicorn recommends for production on one core: one worker (``uvicorn.Server`` in
this process), httptools and uvloop when installed (``"auto"``), access log off, log level
warning, no lifespan. Starlette's FileResponse reads the file in 64 KiB chunks in a worker
thread and sends them through the ASGI server: no zero-copy path.
"""

# Starlette and uvicorn ship type hints; where they are not installed, this file is still
# checked and the harness skips the peer.
# mypy: disable-error-code="import-not-found"

from __future__ import annotations

import importlib.util
import socket
import sys

import starlette
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: starlette_app.py DIR", file=sys.stderr)
        return 2
    app = Starlette(routes=[Mount("/", app=StaticFiles(directory=argv[0], html=False))])
    config = uvicorn.Config(
        app,
        http="auto",
        loop="auto",
        access_log=False,
        log_level="warning",
        lifespan="off",
        backlog=1024,
    )
    server = uvicorn.Server(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    print(
        f"uvicorn {uvicorn.__version__} ({http}, {loop}) + starlette {starlette.__version__}: "
        f"serving on http://127.0.0.1:{port}/",
        flush=True,
    )
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
