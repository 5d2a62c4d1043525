#!/usr/bin/env python3
"""A webhook receiver written the way our users write theirs: it verifies every delivery with the
`standardwebhooks` package (pip install standardwebhooks) and prints one JSON line per request.

    python3 tests/receiver.py PORT whsec_...

Answers 204 to a delivery whose signature verifies and 400 to any other request.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

port, secret = int(sys.argv[1]), sys.argv[2]
verifier = Webhook(secret)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            payload = verifier.verify(body, headers)
            line = {"verified": True, "id": headers["webhook-id"], "type": payload["type"],
                    "idempotencyKey": headers.get("idempotency-key"),
                    "userAgent": headers.get("user-agent")}
            self.send_response(204)
        except Exception as e:  # any failure to verify is an answer, not a crash
            line = {"verified": False, "error": str(e)}
            self.send_response(400)
        self.end_headers()
        print(json.dumps(line), flush=True)

    def log_message(self, *args):
        pass


print(json.dumps({"listening": port}), flush=True)
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
