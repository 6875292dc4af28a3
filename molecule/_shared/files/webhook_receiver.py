#!/usr/bin/env python3
"""A webhook receiver for tests: every POST body (one Alertmanager notification)
is appended as one JSON line to FILE. With TLS_PORT, CERT and KEY, it also
answers GET /health with 200 over HTTPS there (a target for a blackbox probe).
Usage: webhook-receiver PORT FILE [TLS_PORT CERT KEY]"""

import http.server
import json
import ssl
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(sys.argv[2], "a", encoding="utf-8") as out:
            out.write(json.dumps(json.loads(body)) + "\n")
        self.send_response(200)
        self.end_headers()

    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()


if len(sys.argv) == 6:
    secure = http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[3])), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[4], sys.argv[5])
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    threading.Thread(target=secure.serve_forever, daemon=True).start()
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
