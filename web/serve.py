#!/usr/bin/env python3
"""Serves the web/ folder for the demo page (web/demo/) with the headers that make it
cross-origin isolated (so edgellm-wasm can use threads), the right MIME types for .mjs and .wasm,
and one log line per request on stderr.

usage: python3 web/serve.py [--port 8000] [--host 127.0.0.1] [--models DIR] [--no-isolation]
  --models DIR serves DIR's files under /models/ (e.g. /models/model.gguf)
  then open http://127.0.0.1:8000/demo/?model=/models/model.gguf
"""
import argparse
import functools
import http.server
import os
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    isolation = True
    models_dir = None
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".js": "text/javascript",
                      ".wasm": "application/wasm", ".gguf": "application/octet-stream"}

    def translate_path(self, path):
        if self.models_dir and path.startswith("/models/"):
            name = os.path.basename(path.split("?", 1)[0])
            return os.path.join(self.models_dir, name)
        return super().translate_path(path)

    def end_headers(self):
        if self.isolation:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, fmt, *args):
        sys.stderr.write("%s\n" % (fmt % args))
        sys.stderr.flush()


def main():
    ap = argparse.ArgumentParser(description="serve web/ for the edgellm demo page")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--models", help="a folder served under /models/")
    ap.add_argument("--no-isolation", action="store_true",
                    help="leave out COOP/COEP (the page then runs single-threaded)")
    args = ap.parse_args()
    Handler.isolation = not args.no_isolation
    Handler.models_dir = os.path.abspath(args.models) if args.models else None
    root = os.path.dirname(os.path.abspath(__file__))
    handler = functools.partial(Handler, directory=root)
    server = http.server.ThreadingHTTPServer((args.host, args.port), handler)
    print(f"serving {root} on http://{args.host}:{server.server_port}/demo/", file=sys.stderr)
    server.serve_forever()


if __name__ == "__main__":
    main()
