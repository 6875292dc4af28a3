#!/usr/bin/env python3
"""Send one websocket text message through nginx and print the reply.

    ws_client.py HOST PORT PATH MESSAGE CAFILE

Test client of the scenarios (nginx, app) (standard library only): TLS to HOST:PORT,
verified against CAFILE, the upgrade handshake on PATH, one masked text frame,
one frame back, printed on stdout.
"""

import base64
import os
import socket
import ssl
import sys

host, port, path, message, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
context = ssl.create_default_context(cafile=cafile)
with socket.create_connection((host, port), timeout=10) as raw, context.wrap_socket(raw, server_hostname=host) as conn:
    key = base64.b64encode(os.urandom(16)).decode()
    conn.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += conn.recv(1)
    status = response.split(b"\r\n", 1)[0].decode()
    if " 101 " not in status:
        sys.exit(f"no upgrade: {status}")
    mask = os.urandom(4)
    payload = message.encode()
    conn.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    head = conn.recv(2)
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(conn.recv(2), "big")
    data = b""
    while len(data) < length:
        data += conn.recv(length - len(data))
    print(data.decode())
    conn.sendall(bytes([0x88, 0x80]) + os.urandom(4))
