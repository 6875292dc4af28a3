#!/usr/bin/env python3
"""Open many websockets through nginx at once and hold them.

    ws_hold.py HOST PORT PATH COUNT HOLD_SECONDS CAFILE

Test client of the scenarios (standard library only): COUNT TLS connections to HOST:PORT,
verified against CAFILE, each upgraded to a websocket on PATH. Prints "holding OK FAILED"
once every attempt has ended, keeps the open ones HOLD_SECONDS, then prints
"done OK FAILED" and the first errors. The process's open-file limit is raised to its
hard limit first.
"""

import asyncio
import base64
import collections
import os
import resource
import ssl
import sys

host, port, path, count, hold, cafile = (sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]),
                                         float(sys.argv[5]), sys.argv[6])
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
context = ssl.create_default_context(cafile=cafile)
errors = collections.Counter()


async def open_one(gate):
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=context, server_hostname=host), 30)
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
            status = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)).split(b"\r\n", 1)[0].decode()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ssl.SSLError) as error:
            errors[f"{type(error).__name__}: {error}"] += 1
            return None
        if " 101 " not in status:
            errors[status] += 1
            writer.close()
            return None
        return writer


async def main():
    gate = asyncio.Semaphore(200)  # handshakes in flight at once
    writers = [w for w in await asyncio.gather(*(open_one(gate) for _ in range(count))) if w]
    print("holding", len(writers), count - len(writers), flush=True)
    await asyncio.sleep(hold)
    print("done", len(writers), count - len(writers), flush=True)
    for error, times in errors.most_common(5):
        print(f"{times} x {error}", flush=True)
    for writer in writers:
        writer.close()


asyncio.run(main())
