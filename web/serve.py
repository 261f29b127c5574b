#!/usr/bin/env python3
"""Serves the web/ folder for the demo page (web/demo/) with the headers that make it
cross-origin isolated (so edgellm-wasm can use threads), the right MIME types for .mjs and .wasm,
and one log line per request on stderr.

usage: python3 web/serve.py [--port 8000] [--host 127.0.0.1] [--models DIR] [--no-isolation]
                           [--cut-first-download BYTES]
  --models DIR serves DIR's files under /models/ (e.g. /models/model.gguf), with range requests
  then open http://127.0.0.1:8000/demo/?model=/models/model.gguf
  --cut-first-download BYTES ends the first download of each model after BYTES bytes (to try
  how the page resumes a broken download), once /hang-up is requested or 10 s have passed: a
  test asks for it when the page shows that every byte arrived
  /models/NAME?stall-after=BYTES sends BYTES bytes of the model and then nothing, with the
  connection left open until the client closes it (to try cancelling a download); the log says
  when it did; ?bytes-per-second=N sends it no faster than that (to try a slow connection)
"""
import argparse
import functools
import http.server
import os
import re
import select
import socket
import sys
import threading
import time


class Handler(http.server.SimpleHTTPRequestHandler):
    isolation = True
    models_dir = None
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".js": "text/javascript",
                      ".wasm": "application/wasm", ".gguf": "application/octet-stream"}

    cut_first_download = None
    cut_done = set()
    hang_up = threading.Event()

    def do_GET(self):
        if self.path == "/hang-up":
            self.hang_up.set()
            self.send_response(204)
            self.end_headers()
        elif self.models_dir and self.path.startswith("/models/"):
            self.send_model()
        else:
            super().do_GET()

    def send_model(self):
        """A model file, whole (200) or from a byte range (206), as the download cache asks."""
        path = self.translate_path(self.path)
        try:
            f = open(path, "rb")
        except OSError:
            self.send_error(404, "no such model")
            return
        with f:
            st = os.fstat(f.fileno())
            size = st.st_size
            start, end = 0, size - 1
            wanted = self.headers.get("Range")
            if wanted:
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())
                if not m or int(m[1]) >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = int(m[1])
                end = min(int(m[2]), size - 1) if m[2] else size - 1
            self.send_response(206 if wanted else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{st.st_mtime_ns:x}-{size:x}"')
            if wanted:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            limit = end - start + 1
            if self.cut_first_download is not None and path not in self.cut_done:
                self.cut_done.add(path)
                limit = min(limit, self.cut_first_download)
                self.close_connection = True
            stall_after = re.search(r"[?&]stall-after=(\d+)", self.path)
            if stall_after:
                limit = min(limit, int(stall_after[1]))
                self.close_connection = True
            rate = re.search(r"[?&]bytes-per-second=(\d+)", self.path)
            rate = max(1, int(rate[1])) if rate else None
            f.seek(start)
            cut = limit < end - start + 1
            to_send = limit
            while limit > 0:
                block = f.read(min(limit, 1 << 16, max(1, rate // 10) if rate else 1 << 16))
                if not block:
                    break
                self.wfile.write(block)
                limit -= len(block)
                if rate:
                    self.wfile.flush()
                    time.sleep(len(block) / rate)
            if stall_after:
                self.wait_for_client_to_close(to_send - limit)
            elif cut:
                # Chromium drops body bytes the page has not read yet when the connection ends
                # early, so hanging up at once can leave the page nothing to resume from: on a
                # busy machine no fixed time is enough, the page's own progress says when.
                self.wfile.flush()
                self.hang_up.wait(10)
                self.hang_up.clear()

    def wait_for_client_to_close(self, sent, seconds=120):
        self.wfile.flush()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.connection], [], [], 0.2)
            try:
                if readable and self.connection.recv(1, socket.MSG_PEEK) == b"":
                    self.log_message('"%s" closed by the client after %d bytes', self.requestline, sent)
                    return
            except OSError:
                self.log_message('"%s" closed by the client after %d bytes', self.requestline, sent)
                return
        self.log_message('"%s" still open after %d s', self.requestline, seconds)

    def log_request(self, code="-", size="-"):
        wanted = self.headers.get("Range") if self.headers else None
        self.log_message('"%s" %s%s', self.requestline, code, f" range={wanted}" if wanted else "")

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
    ap.add_argument("--cut-first-download", type=int, metavar="BYTES",
                    help="end the first download of each model after BYTES bytes")
    args = ap.parse_args()
    Handler.cut_first_download = args.cut_first_download
    Handler.isolation = not args.no_isolation
    Handler.models_dir = os.path.abspath(args.models) if args.models else None
    root = os.path.dirname(os.path.abspath(__file__))
    handler = functools.partial(Handler, directory=root)
    server = http.server.ThreadingHTTPServer((args.host, args.port), handler)
    print(f"serving {root} on http://{args.host}:{server.server_port}/demo/", file=sys.stderr)
    server.serve_forever()


if __name__ == "__main__":
    main()
