#!/usr/bin/env python3
"""Loopback-only HTTP server for the store's download tests.

   store_http_server.py ROOT PORT_FILE LOG_FILE

Serves files under ROOT at /MODE/NAME (Range supported), where MODE simulates a fault:
  files      plain
  drop       the first N requests for a path (?n=N, default 1) send a third of the body, then reset
             the connection
  short      the first N requests send Content-Length of the whole but only half the body, then
             close cleanly
  garbage    a body of the right length but wrong bytes
  slow       the body in 64 KiB pieces, 20 ms apart
With ?norange=1 the server behaves like a plain static server without Range support: it ignores
the Range header and answers 200 with the whole body (combine with drop to lose a connection
mid-body first).
Each request is logged as "PATH RANGE-START" so tests can see that a download resumed. The server
exits by itself after 120 s.
"""
import http.server
import os
import socket
import struct
import sys
import threading
import urllib.parse

root, port_file, log_file = sys.argv[1], sys.argv[2], sys.argv[3]
counts = {}
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        parts = url.path.strip("/").split("/", 1)
        if len(parts) != 2 or ".." in parts[1]:
            self.send_error(404)
            return
        mode, name = parts
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        with open(path, "rb") as f:
            data = f.read()
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
        with lock:
            key = url.path
            counts[key] = counts.get(key, 0) + 1
            nth = counts[key]
            with open(log_file, "a") as log:
                log.write(f"{url.path} {start}\n")
        ranges = query.get("norange", ["0"])[0] != "1"
        if not ranges:
            start = 0
        if start > len(data):
            self.send_error(416)
            return
        body = data[start:]
        if mode == "garbage":
            body = bytes((b * 7 + 13) & 0xFF for b in body)
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        if ranges:
            self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        faulty = nth <= int(query.get("n", ["1"])[0])
        if mode == "drop" and faulty:
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            # Reset rather than close: the client sees a broken connection mid-body.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if mode == "short" and faulty:
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        if mode == "slow":
            for i in range(0, len(body), 65536):
                self.wfile.write(body[i : i + 65536])
                self.wfile.flush()
                threading.Event().wait(0.02)
            return
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients hanging up on the fault modes are expected


server = Server(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
threading.Timer(120, server.shutdown).start()
server.serve_forever()
