"""Starting `edgellm serve` or `edgellm gateway` for the benchmarks: on a free loopback port
(reported through --ready-file), returning once /health answers 200."""
import http.client
import os
import subprocess
import time


def start(argv, tmp):
    """Runs argv (`edgellm serve -m MODEL ...` or `edgellm gateway ...`); returns (process, port)
    when it is ready, or exits naming what went wrong. Its stderr is discarded."""
    ready = os.path.join(tmp, "ready-%d" % time.monotonic_ns())
    proc = subprocess.Popen(argv + ["--port", "0", "--ready-file", ready], stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not os.path.exists(ready):
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit("a server did not start: %s" % " ".join(argv))
        time.sleep(0.02)
    port = int(open(ready).read().strip().rsplit(":", 1)[1])
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        if proc.poll() is not None:
            raise SystemExit("a server exited while loading: %s" % " ".join(argv))
        time.sleep(0.05)
