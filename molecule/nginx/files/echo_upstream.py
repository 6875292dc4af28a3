#!/usr/bin/env python3
"""Test upstream of the nginx scenario: what an app host behind nginx sees.

HTTP/1.1 with keep-alive on :8000. Every request is answered with JSON naming
this host, the method, the path and the request headers; /health says ok;
/ws/ with an Upgrade header completes the websocket handshake and echoes text
frames; /api/crash notes the request's method and X-Request-ID in
$STATE_DIRECTORY/crashes (/var/lib/echo-upstream) and closes the connection
without an answer, as an app that died mid-request. Standard library only (the lab hosts have no pip).
"""

import asyncio
import base64
import hashlib
import json
import os
import socket
import struct

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def read_request(reader):
    line = await reader.readline()
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, value = raw.decode("latin-1").split(":", 1)
        headers[name.strip().lower()] = value.strip()
    body = b""
    if int(headers.get("content-length", "0")):
        body = await reader.readexactly(int(headers["content-length"]))
    return method, path, headers, body


async def websocket(reader, writer, headers):
    accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + WS_GUID).encode()).digest()).decode()
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
    )
    await writer.drain()
    while True:
        head = await reader.readexactly(2)
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", await reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await reader.readexactly(8))[0]
        mask = await reader.readexactly(4) if head[1] & 0x80 else b"\0\0\0\0"
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(await reader.readexactly(length)))
        if opcode == 0x8:  # close
            writer.write(b"\x88\x00")
            await writer.drain()
            return
        if opcode == 0x1:  # text: echo it, unmasked, as the server must
            reply = f"{socket.gethostname()}: {data.decode()}".encode()
            frame = bytes([0x81]) + (bytes([len(reply)]) if len(reply) < 126 else bytes([126]) + struct.pack("!H", len(reply)))
            writer.write(frame + reply)
            await writer.drain()


async def handle(reader, writer):
    try:
        while True:
            request = await read_request(reader)
            if request is None:
                break
            method, path, headers, body = request
            if path.startswith("/ws/") and headers.get("upgrade", "").lower() == "websocket":
                await websocket(reader, writer, headers)
                break
            if path.startswith("/api/crash"):
                with open(os.path.join(os.environ.get("STATE_DIRECTORY", "/tmp"), "crashes"), "a",
                          encoding="utf-8") as crashes:
                    crashes.write(f"{method} {headers.get('x-request-id', '-')}\n")
                break
            if path == "/health":
                payload = {"status": "ok", "host": socket.gethostname()}
            else:
                payload = {"host": socket.gethostname(), "method": method, "path": path,
                           "headers": headers, "body_bytes": len(body)}
            data = json.dumps(payload).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Powered-By: echo-upstream\r\n"
                + f"Content-Length: {len(data)}\r\n\r\n".encode() + data
            )
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "0.0.0.0", 8000)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
