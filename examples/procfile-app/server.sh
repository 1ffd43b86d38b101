#!/usr/bin/env bash
# A Procfile-only app: no buildpack language, just a command. Serves one page with Python's
# standard library, which every Slipway host has.
exec python3 -c '
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("Hello from %s, release %s\n" % (os.environ["DYNO"], os.environ.get("GREETING", "-"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
HTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
'
