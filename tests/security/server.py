#!/usr/bin/env python3
"""What a web page, a local process or a careless key file can do to `edgellm serve` (issue 11,
items 2, 3 and 5): foreign Host names (DNS rebinding) get 421, POST bodies that are not
application/json (what a page may send cross-origin without a preflight) get 415, key files with
NUL/control bytes or over 1024 bytes are refused whole, the Bearer scheme matches in any case,
requests without the key or with a declared length over the limit are answered before their body
is read (no "100 Continue"), and a busy port gives one error line. Standard library only."""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
import test_server as ts  # noqa: E402  (the server harness: Server, check)

EDGELLM = ts.EDGELLM
SHARED = ts.SHARED
TMP = tempfile.mkdtemp(prefix="security-server-", dir=os.environ.get("TEST_TMP", "/tmp"))
MODEL = ts.MODEL
KEY = "k3y-for-security-tests"
check = ts.check


class Server(ts.Server):
    """The harness's server on the test model with one sequence and one thread; requests are
    written byte by byte so that Host and every header are exactly what a test sends."""

    def __init__(self, *args):
        self.name = "serve"
        super().__init__(MODEL, "--parallel", "1", "--threads", "1", *args)

    def raw(self, data, timeout=10):
        """Sends raw bytes, returns (status of the first response line, whole answer)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(data)
            got = b""
            while True:
                try:
                    piece = s.recv(65536)
                except socket.timeout:
                    break
                if not piece:
                    break
                got += piece
        finally:
            s.close()
        line = got.split(b"\r\n", 1)[0].split(b" ")
        status = int(line[1]) if len(line) > 1 and line[1].isdigit() else None
        return status, got

    def request(self, method, path, host=None, headers=None, body=None):
        h = {"Host": host if host is not None else "127.0.0.1:%d" % self.port}
        h.update(headers or {})
        lines = ["%s %s HTTP/1.1" % (method, path)] + ["%s: %s" % kv for kv in h.items()]
        data = body if isinstance(body, bytes) else (body or "").encode()
        if body is not None:
            lines.append("Content-Length: %d" % len(data))
        lines.append("Connection: close")
        status, got = self.raw(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)
        payload = got.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in got else b""
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = payload
        return status, parsed



COMPLETION = json.dumps({"prompt": "Once upon", "max_tokens": 2, "temperature": 0})
JSON = {"Content-Type": "application/json"}


def openai_error(body, status_code):
    return (isinstance(body, dict) and "error" in body
            and set(body["error"].keys()) == {"message", "type", "param", "code"}
            and body["error"]["code"] == status_code)


def test_host(s):
    """Item 2: DNS rebinding. A page on evil.example whose name now resolves to 127.0.0.1 sends
    its own name as Host; only this machine's names and the bound address are served."""
    port = s.port
    for host in ["evil.example", "evil.example:%d" % port, "localhost.evil.example",
                 "127.0.0.1.nip.io:%d" % port, "[::2]:%d" % port, "10.1.2.3", "localhost:http",
                 "127.0.0.1:%d:1" % port, "[::1", "::1"]:
        st, body = s.request("GET", "/v1/models", host=host)
        check(st == 421 and openai_error(body, "host_not_allowed")
              and "--allowed-hosts" in body["error"]["message"],
              "Host %r -> 421 naming --allowed-hosts: %s %s" % (host, st, body))
    st, body = s.request("POST", "/v1/completions", host="evil.example", headers=JSON, body=COMPLETION)
    check(st == 421, "POST with a foreign Host -> 421: %s" % st)
    st, _ = s.request("GET", "/health", host="evil.example")
    check(st == 421, "/health with a foreign Host -> 421: %s" % st)
    st, _ = s.request("OPTIONS", "/v1/completions", host="evil.example",
                      headers={"Origin": "http://evil.example"})
    check(st == 421, "preflight with a foreign Host -> 421: %s" % st)
    for host in ["localhost", "localhost:%d" % port, "LocalHost:%d" % port, "127.0.0.1",
                 "127.0.0.1:%d" % port, "[::1]", "[::1]:%d" % port]:
        st, body = s.request("GET", "/v1/models", host=host)
        check(st == 200, "Host %r is this machine -> 200: %s %s" % (host, st, body))
    # HTTP/1.0 without Host: no browser sends that.
    st, _ = s.raw(b"GET /v1/models HTTP/1.0\r\n\r\n")
    check(st == 200, "HTTP/1.0 without Host -> 200: %s" % st)


def test_allowed_hosts():
    s = Server("--allowed-hosts", "mybox.example, Other.Example")
    try:
        for host in ["mybox.example", "mybox.example:8080", "MYBOX.example", "other.example:1"]:
            st, _ = s.request("GET", "/v1/models", host=host)
            check(st == 200, "--allowed-hosts admits %r: %s" % (host, st))
        st, _ = s.request("GET", "/v1/models", host="evil.example")
        check(st == 421, "--allowed-hosts still refuses others: %s" % st)
    finally:
        s.stop()
    s = Server("--allowed-hosts", "*")
    try:
        st, _ = s.request("GET", "/v1/models", host="anything.example")
        check(st == 200, "--allowed-hosts * admits any name: %s" % st)
    finally:
        s.stop()
    # Bound to every interface, clients reach it by any of this machine's addresses; names still
    # need --allowed-hosts.
    s = Server("--host", "0.0.0.0")
    try:
        st, _ = s.request("GET", "/v1/models", host="192.0.2.7:8080")
        check(st == 200, "0.0.0.0: an IP literal Host -> 200: %s" % st)
        st, _ = s.request("GET", "/v1/models", host="evil.example")
        check(st == 421, "0.0.0.0: a name Host -> 421: %s" % st)
    finally:
        s.stop()
    for bad in ["mybox.example:8080", "http://mybox.example", "[::1]"]:
        rc, err = serve_refusal(["--allowed-hosts", bad])
        check(rc == 2 and len(err.splitlines()) == 1 and "--allowed-hosts" in err,
              "--allowed-hosts %r refused with one line, exit 2: %s %r" % (bad, rc, err))


def test_content_type(s):
    """Item 2: a page may POST text/plain, form data or nothing cross-origin without a preflight;
    only application/json (which needs one) is processed."""
    for ctype in ["text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
                  "multipart/form-data; boundary=x", "application/jsonp", "application/json-seq",
                  "", None]:
        headers = {"Content-Type": ctype} if ctype is not None else {}
        for path in ["/v1/completions", "/tokenize"]:
            body = COMPLETION if path == "/v1/completions" else '{"content": "hi"}'
            st, answer = s.request("POST", path, headers=headers, body=body)
            check(st == 415 and openai_error(answer, "unsupported_media_type")
                  and "application/json" in answer["error"]["message"],
                  "POST %s with Content-Type %r -> 415: %s %s" % (path, ctype, st, answer))
    for ctype in ["application/json", "application/json; charset=utf-8", "Application/JSON",
                  "application/json ;charset=UTF-8"]:
        st, answer = s.request("POST", "/v1/completions", headers={"Content-Type": ctype},
                               body=COMPLETION)
        check(st == 200, "POST with Content-Type %r -> 200: %s %s" % (ctype, st, answer))


def serve_refusal(args):
    """Runs `serve` with options it must refuse: (exit code, stderr); a server that starts
    instead is stopped and reported as exit None."""
    proc = subprocess.Popen([EDGELLM, "serve", "-m", MODEL, "--port", "0"] + args,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=10)
        return proc.returncode, err.decode().strip()
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return None, "(it started serving) " + err.decode().strip()


def write_key(name, data):
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def refused_key_file(data, what, needle):
    path = write_key("key-%d" % time.monotonic_ns(), data)
    rc, err = serve_refusal(["--api-key-file", path])
    check(rc == 1 and len(err.splitlines()) == 1 and path in err and needle in err,
          "key file with %s refused with one line naming it: exit %s, %r" % (what, rc, err))


def test_alias():
    """The same class as the key file: an --alias longer than the id buffer was cut silently, and
    clients naming it in full got model_not_found."""
    rc, err = serve_refusal(["--alias", "m" * 300])
    check(rc == 2 and len(err.splitlines()) == 1 and "--alias" in err,
          "--alias of 300 bytes refused with one line, exit 2: %s %r" % (rc, err))
    alias = "m" * 255
    s = Server("--alias", alias)
    try:
        st, body = s.request("GET", "/v1/models")
        check(st == 200 and body["data"][0]["id"] == alias, "a 255-byte alias is served whole")
    finally:
        s.stop()


def test_ready_file():
    """A --ready-file that cannot be written was skipped in silence: the server ran, and a script
    waiting for the file waited forever. It is now a one-line refusal naming the path."""
    path = os.path.join(TMP, "no-such-dir", "ready")
    rc, err = serve_refusal(["--ready-file", path])
    check(rc == 1 and path in err and "--ready-file" in err,
          "an unwritable --ready-file stops the server, exit 1, naming it: %s %r" % (rc, err))
    test_ready_file_temporaries()


def serve_until_ready(path, limit_bytes=None):
    """Starts `serve --ready-file path` (under a file size limit, when given) and stops it once
    the file appeared: (exit code, stderr, the file's text or None)."""
    import resource

    def limit():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    proc = subprocess.Popen([EDGELLM, "serve", "-m", MODEL, "--port", "0", "--ready-file", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=limit)
    deadline = time.time() + 30
    while not os.path.exists(path) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    text = open(path).read() if os.path.exists(path) else None
    if proc.poll() is None:
        proc.terminate()
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err.decode().strip(), text


def test_ready_file_temporaries():
    """The ready file went through a fixed PATH.tmp: two servers given one path, or one killed
    while writing it, collided (a PATH.tmp in the way stopped the next server). Each writer now
    has its own locked temporary, and the ones killed writers left are deleted."""
    import fcntl
    d = os.path.join(TMP, "ready-dir")
    os.makedirs(d)
    path = os.path.join(d, "ready")
    os.mkdir(path + ".tmp")  # what another writer's fixed temporary would be
    stale = path + ".tmp.4000000.0"
    held = path + ".tmp.4000001.0"
    alike = path + ".tmp.x"
    for name in (stale, held, alike):
        open(name, "w").close()
    holder = open(held)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        rc, err, text = serve_until_ready(path)
    finally:
        holder.close()
    check(text is not None and text.startswith("127.0.0.1:"),
          "a PATH.tmp in the way does not stop the ready file: %s %r %r" % (rc, text, err))
    check(not os.path.exists(stale) and os.path.exists(held) and os.path.exists(alike),
          "the ready file's unlocked temporary is deleted, a locked one and a look-alike kept: %s"
          % sorted(os.listdir(d)))
    # A full disk (here a file size limit): a clear error, exit 1, nothing at PATH.
    full = os.path.join(d, "full")
    rc, err, text = serve_until_ready(full, limit_bytes=0)
    left = [n for n in os.listdir(d) if n.startswith("full")]
    check(rc == 1 and "--ready-file" in err and "File too large" in err and not left,
          "a ready file that cannot be written: exit 1, why, nothing left: %s %r %s"
          % (rc, err, left))


def test_long_piece():
    """The same class again: /tokenize with_pieces gave "" for a token longer than 255 bytes. The
    vocabulary here has a 320-byte token built by merges of 1, 2, 4, ... 256 and 320 'a's."""
    import struct
    tokens = [(0.0, b"<unk>"), (0.0, b"<s>"), (0.0, b"</s>")]
    tokens += [(0.0, b"<0x%02X>" % b) for b in range(256)]
    tokens += [(float(k), b"a" * k) for k in (1, 2, 4, 8, 16, 32, 64, 128, 256, 320)]
    tokens += [(-1000.0, b"filler%d" % i) for i in range(512 - len(tokens))]
    tok_path = os.path.join(TMP, "long-token.bin")
    with open(tok_path, "wb") as f:
        f.write(struct.pack("<i", 320))
        for score, text in tokens:
            f.write(struct.pack("<fi", score, len(text)) + text)
    model = os.path.join(TMP, "long-token.gguf")
    subprocess.run([EDGELLM, "convert", "--from", "llama2c", os.path.join(SHARED, "models", "aidreams260K.bin"),
                    "--tokenizer", tok_path, "-o", model], check=True, capture_output=True)
    s = Server("-m", model)
    try:
        st, body = s.request("POST", "/tokenize", headers=JSON,
                             body=json.dumps({"content": "a" * 320, "with_pieces": True}))
        pieces = [t["piece"] for t in body["tokens"]] if st == 200 else body
        check(st == 200 and pieces[-1] == "a" * 320,
              "/tokenize gives the whole 320-byte piece: %s" % [len(p) for p in pieces])
        # The logprob token strings (completions' echo and chat's) had the same 255-byte cut.
        st, body = s.request("POST", "/v1/completions", headers=JSON,
                             body=json.dumps({"prompt": "a" * 320, "echo": True, "logprobs": 1,
                                              "max_tokens": 0}))
        toks = body["choices"][0]["logprobs"]["tokens"] if st == 200 else body
        check(st == 200 and "a" * 320 in toks,
              "echo logprobs name the whole 320-byte token: %s" % [len(t) for t in toks])
    finally:
        s.stop()


def test_key_files():
    """Item 3: a key file is taken whole or refused; never cut at a NUL byte or at 1023 bytes."""
    refused_key_file(b"Q\0rest-of-the-key\n", "a NUL byte", "NUL")
    refused_key_file(b"abc\x01def", "a control byte", "control")
    refused_key_file(b"key\n\n", "two trailing newlines", "control")
    refused_key_file(b"two words", "a space", "space")
    refused_key_file(b"x" * 1025, "1025 bytes", "1024")
    refused_key_file(b"x" * 1500 + b"\n", "1500 bytes", "1024")
    refused_key_file(b"", "nothing", "empty")
    refused_key_file(b"\n", "only a newline", "empty")
    rc, err = serve_refusal(["--api-key", "two words"])
    check(rc == 2 and len(err.splitlines()) == 1 and "space" in err,
          "--api-key with a space: exit 2, one line: %s %r" % (rc, err))
    # The longest key, with a Windows line end: the full key and nothing shorter is accepted.
    long_key = "".join(chr(33 + (i * 7) % 94) for i in range(1024))
    s = Server("--api-key-file", write_key("key-long", long_key.encode() + b"\r\n"))
    try:
        st, _ = s.request("GET", "/v1/models", headers={"Authorization": "Bearer " + long_key})
        check(st == 200, "the whole 1024-byte key -> 200: %s" % st)
        st, _ = s.request("GET", "/v1/models", headers={"Authorization": "Bearer " + long_key[:1023]})
        check(st == 401, "its 1023-byte prefix -> 401: %s" % st)
        st, _ = s.request("GET", "/v1/models", headers={"Authorization": "Bearer " + long_key + "x"})
        check(st == 401, "the key plus a byte -> 401: %s" % st)
    finally:
        s.stop()


def test_bearer(s):
    """RFC 7235: the scheme is case-insensitive, one or more spaces before the credentials."""
    for value in ["Bearer " + KEY, "bearer " + KEY, "BEARER " + KEY, "bEaReR  " + KEY]:
        st, _ = s.request("GET", "/v1/models", headers={"Authorization": value})
        check(st == 200, "Authorization %r -> 200: %s" % (value[:12], st))
    for value in ["Bearer" + KEY, "Basic " + KEY, "Bearer " + KEY[:-1], "Bearer " + KEY + "x",
                  "Bearer", "Bearer ", KEY, "Bearer " + KEY[:1]]:
        st, body = s.request("GET", "/v1/models", headers={"Authorization": value})
        check(st == 401 and openai_error(body, "invalid_api_key"),
              "Authorization %r -> 401: %s" % (value[:16], st))


def test_answer_before_body(s):
    """Item 5: no key, or a declared length over --max-body, is answered from the headers: no
    "100 Continue", and no waiting for (or buffering of) a body that is never sent."""
    head = ("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
            "Expect: 100-continue\r\nContent-Length: 50000000\r\n" % s.port)
    for what, auth, want in [("without the key", "", 401),
                             ("with the key over --max-body", "Authorization: Bearer %s\r\n" % KEY, 413)]:
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        sock.sendall((head + auth + "\r\n").encode())
        got = b""
        try:
            while b"\r\n\r\n" not in got:
                piece = sock.recv(4096)
                if not piece:
                    break
                got += piece
        except socket.timeout:
            pass
        sock.close()
        first = got.split(b"\r\n", 1)[0]
        check(first.startswith(b"HTTP/1.1 %d" % want),
              "Expect: 100-continue, 50 MB declared, %s -> %d before the body: %r" % (what, want, first))
    # No Expect header either: the answer comes while the client still holds its 1 MB body back.
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    sock.sendall(("POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  "Content-Length: 1000000\r\n\r\n").encode())
    try:
        first = sock.recv(4096).split(b"\r\n", 1)[0]
    except socket.timeout:
        first = b"(nothing within 5 s)"
    sock.close()
    check(first.startswith(b"HTTP/1.1 401"), "no key, body held back -> 401 at once: %r" % first)
    # The unread body of a refused request is never taken for a next request on the connection.
    inner = b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n\r\n" % KEY.encode()
    st, got = s.raw(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(inner) + inner, timeout=5)
    check(st == 401 and got.count(b"HTTP/1.1 ") == 1 and b"Connection: close" in got,
          "a refused request's body is not served as a request: %r" % got[:300])
    # With the key and a body within the limit, the request still works.
    st, _ = s.request("POST", "/v1/completions", headers=dict(JSON, Authorization="Bearer " + KEY),
                      body=COMPLETION)
    check(st == 200, "keyed request after the refusals -> 200: %s" % st)


def test_unauthenticated_memory(s):
    """Item 5 measured: 100 connections without the key each send a 1 MB body (half to a POST
    endpoint, half to /health, which needs no key) and stay open; the server's memory must not
    hold them (it grew by about 40 MB before). Under AddressSanitizer RSS means little: skipped."""
    if os.environ.get("ASAN_OPTIONS"):
        print("sanitizer build: the RSS bound is not applied")
        return
    def rss_mb():
        with open("/proc/%d/status" % s.proc.pid) as f:
            return int([l for l in f if l.startswith("VmRSS")][0].split()[1]) / 1024
    body = b"a" * 1000000
    base = rss_mb()
    socks = []
    for i in range(100):
        head = (b"POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\n" if i % 2 else
                b"GET /health HTTP/1.1\r\n")
        c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        c.sendall(head + b"Host: localhost\r\nContent-Length: %d\r\n\r\n" % len(body))
        try:
            c.sendall(body)
        except OSError:
            pass  # refused and closed before the body: what is wanted
        socks.append(c)
    time.sleep(1)
    grown = rss_mb() - base
    for c in socks:
        c.close()
    check(grown < 16, "100 unauthenticated 1 MB bodies grew the server by %.1f MB (limit 16)" % grown)


def test_connection_flood(s):
    """A client holding the 1024 connections the server allows and opening more in a loop: each
    one turned away got a line of libmicrohttpd's in the log (140 000 in 8 s under wrk), enough
    to fill a disk. Now at most 5 such lines a second, and a count of the rest (printed with the
    next second's first line, or at exit). Ends with the server stopped."""
    import http.client
    import math
    held = []
    try:
        for _ in range(1024):  # each answered once: the server holds every one of them
            c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
            c.request("GET", "/health")
            c.getresponse().read()
            held.append(c)
    except (OSError, http.client.HTTPException) as e:
        check(False, "the server holds 1024 connections: the %dth failed: %s" % (len(held) + 1, e))
    t0 = time.time()
    for _ in range(2000):
        socket.create_connection(("127.0.0.1", s.port), timeout=10).close()
    for c in held:
        c.close()
    # Connections are accepted in order: once a new one is answered, every earlier one was seen.
    status = None
    while status != 200 and time.time() - t0 < 60:
        try:
            status = s.request("GET", "/health")[0]
        except OSError:
            pass
    check(status == 200, "/health answers after the flood: %s" % status)
    check(s.stop() == 0, "the server exits 0 after the flood")
    elapsed = time.time() - t0
    lines = [l for l in s.logtext().splitlines() if ": http: " in l]
    turned_away = [l for l in lines if "not shown" not in l]
    counted = sum(int(l.split(": http: ")[1].split()[0]) for l in lines if "not shown" in l)
    check(turned_away and counted > 0, "the flood reached the connection limit: %d lines, %d "
          "counted" % (len(turned_away), counted))
    check(len(turned_away) <= 5 * (math.ceil(elapsed) + 1),
          "at most 5 lines a second of turned-away connections: %d lines in %.1f s, e.g. %r"
          % (len(turned_away), elapsed, turned_away[:1]))


def test_busy_port(s):
    r = subprocess.run([EDGELLM, "serve", "-m", MODEL, "--port", str(s.port)], capture_output=True,
                       timeout=30)
    lines = r.stderr.decode().strip().splitlines()
    check(r.returncode == 1 and len(lines) == 1 and "in use" in lines[0] and str(s.port) in lines[0],
          "busy port: exit 1 and one line naming it: %s %r" % (r.returncode, lines))


POST_HEAD = "POST /tokenize HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"


def closed_after_sending(port, first, then=b"", every=None, sock=None):
    """Sends first (then, a byte every `every` s) on a new connection (or sock), returns the
    seconds until the server closed the connection (None: still open after 15 s)."""
    sock = sock or socket.create_connection(("127.0.0.1", port))
    sock.settimeout(0.25)
    t0 = time.monotonic()
    try:
        sock.sendall(first)
        sent = 0
        while time.monotonic() - t0 < 15:
            if every and sent < len(then) and time.monotonic() - t0 > every * (sent + 1):
                try:
                    sock.sendall(then[sent:sent + 1])
                except (BrokenPipeError, ConnectionResetError):
                    return time.monotonic() - t0
                sent += 1
            try:
                if sock.recv(4096) == b"":
                    return time.monotonic() - t0
            except socket.timeout:
                pass
            except ConnectionResetError:
                return time.monotonic() - t0
        return None
    finally:
        sock.close()


def test_trickled_heads(s):
    """With --body-timeout 2 a request's head was bounded by silence only: a byte every 1.5 s
    held the connection until libmicrohttpd's header buffer filled (hours). The head now has 2 s
    from the connection's opening (or, on a kept-alive connection, from its request line)."""
    drip = b"X-Pad: " + b"a" * 40
    cases = [
        ("headers dripped a byte every 1.5 s", POST_HEAD.encode(), drip),
        ("a request line dripped a byte every 1.5 s", b"P", POST_HEAD[1:].encode() + drip),
    ]
    for what, first, then in cases:
        dt = closed_after_sending(s.port, first, then, 1.5)
        print("%s on %s: closed after %s s" % (what, s.name, dt and round(dt, 2)))
        check(dt is not None and dt < 4,
              "%s on %s is cut 2 s after the connection opened: %s s" % (what, s.name, dt))
    # A kept-alive connection: one whole request, then the next one's headers dripped.
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
    got = b""
    while b"\r\n\r\n" not in got:
        got += sock.recv(65536) or b"\r\n\r\n"
    head, rest = got.split(b"\r\n\r\n", 1)
    length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
              if line.lower().startswith(b"content-length:")]
    while length and len(rest) < length[0]:
        rest += sock.recv(65536) or b" " * length[0]
    check(got.startswith(b"HTTP/1.1 200"), "a whole request first: %r" % got[:40])
    dt = closed_after_sending(s.port, POST_HEAD.encode(), drip, 1.5, sock=sock)
    print("a kept-alive connection's next head on %s: closed after %s s" % (s.name,
                                                                           dt and round(dt, 2)))
    check(dt is not None and dt < 4,
          "the next head dripped on a kept-alive connection of %s is cut within 2 s of its "
          "request line: %s s" % (s.name, dt))
    st = s.request("GET", "/health")[0]
    check(st == 200, "%s still answers after the dripped heads: %s" % (s.name, st))


class Gateway(Server):
    """`edgellm gateway` under the same harness (its HTTP layer is serve's); its cloud is a
    closed port, never reached by these tests."""

    def __init__(self, *args):
        self.name = "gateway"
        ts.Server.__init__(self, MODEL, "--cloud-url", "http://127.0.0.1:9/v1", "--threads", "1",
                           *args, command="gateway", env=dict(os.environ, EDGELLM_CLOUD_KEY="k"))


def test_stalled_requests(s):
    """A request that stops while it arrives (a body cut short, a chunk size of 2^64 - 1, headers
    never ended) or trickles held its connection for the 300 s idle timeout, so 1024 of them
    locked the server out. With --body-timeout 2 each is closed within a few seconds, while a
    whole request's keep-alive connection still waits 300 s for the next one."""
    post = POST_HEAD

    def closed_after(first, then=b"", every=None):
        return closed_after_sending(s.port, first, then, every)

    body = b'{"content": "' + b"a" * 200 + b'"}'
    cases = [
        ("a Content-Length body that stops half-way",
         (post + "Content-Length: %d\r\n\r\n" % len(body)).encode() + body[:20], b"", None),
        ("a chunk size of 2^64 - 1", (post + "Transfer-Encoding: chunked\r\n\r\n"
                                       "ffffffffffffffff\r\nabc").encode(), b"", None),
        ("headers never ended", post.encode(), b"", None),
        ("a body trickled a byte every 0.5 s",
         (post + "Content-Length: %d\r\n\r\n" % len(body)).encode(), body, 0.5),
    ]
    for what, first, then, every in cases:
        dt = closed_after(first, then, every)
        check(dt is not None and dt < 6, "%s is cut within the body timeout (2 s): %s s" % (what, dt))
    # A whole request: its connection then idles past the body timeout and serves a second one.
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    try:
        req = (post + "Content-Length: %d\r\n\r\n" % len(body)).encode() + body
        answers = []
        for _ in range(2):
            sock.sendall(req)
            got = b""
            while got.count(b"HTTP/1.1 200") < 1 or not got.endswith(b"}"):
                piece = sock.recv(65536)
                if not piece:
                    break
                got += piece
            answers.append(got.split(b"\r\n", 1)[0])
            time.sleep(3.5)
        check(answers == [b"HTTP/1.1 200 OK"] * 2,
              "a keep-alive connection idles past the body timeout: %r" % answers)
    finally:
        sock.close()
    st, _ = s.request("GET", "/health")
    check(st == 200, "the server still answers after the stalled requests: %s" % st)
    r = subprocess.run([EDGELLM, "serve", "-m", MODEL, "--body-timeout", "0"], capture_output=True,
                       timeout=30)
    check(r.returncode == 2 and b"--body-timeout" in r.stderr,
          "--body-timeout 0 is refused: %s %r" % (r.returncode, r.stderr))


def with_server(args, tests):
    """Runs tests against one server; a server that does not start fails them, the rest go on."""
    try:
        s = Server(*args)
    except RuntimeError as e:
        check(False, "%s: %s" % (", ".join(t.__name__ for t in tests), e))
        return
    try:
        for t in tests:
            t(s)
        check(s.stop() == 0, "server %s exits 0" % (args,))
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


def main():
    with_server([], [test_host, test_content_type, test_busy_port])
    for group in (test_allowed_hosts, test_key_files, test_alias, test_ready_file,
                  test_long_piece):
        try:
            group()
        except RuntimeError as e:
            check(False, "%s: %s" % (group.__name__, e))
    with_server(["--body-timeout", "2"], [test_stalled_requests, test_trickled_heads])
    try:
        g = Gateway("--body-timeout", "2")
        try:
            test_trickled_heads(g)
        finally:
            g.stop()
    except RuntimeError as e:
        check(False, "test_trickled_heads on the gateway: %s" % e)
    with_server(["--api-key", KEY], [test_bearer, test_answer_before_body, test_unauthenticated_memory])
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))
        with_server([], [test_connection_flood])  # the server inherits the limit
    else:
        print("test_connection_flood not run: 4096 descriptors needed, the hard limit is %d" % hard)
    print("security_server: %d checks, %d failed" % (ts.checks, len(ts.failures)))
    sys.exit(1 if ts.failures else 0)


if __name__ == "__main__":
    main()
