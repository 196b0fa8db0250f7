"""Fetch one URL again and again for SECONDS, then print one JSON line saying what happened.

    python fetch_loop.py PORT PATH SECONDS TIMEOUT

Each fetch is a new connection (``http.client``, which reads chunked and length-delimited
bodies alike), read to the end in 64 KiB pieces and thrown away. The last fetch may end after
SECONDS: it is never cut short. The listing case of ``bench/hardening/`` runs several of
these, each a process of its own, so that their reading never competes with the probe's
thread for the harness's interpreter. Standard library only.
"""

import http.client
import json
import sys
import time

port, path, seconds, timeout = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
end = time.monotonic() + seconds
done = errors = 0
page = None
while True:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            size = 0
            while chunk := response.read(1 << 16):
                size += len(chunk)
            if response.status == 200:
                done += 1
                page = size
            else:
                errors += 1
        finally:
            connection.close()
    except (OSError, http.client.HTTPException):
        errors += 1
    if time.monotonic() >= end:
        break
print(
    json.dumps({"listings": done, "errors": errors, "page_bytes": page, "ended": time.monotonic()})
)
