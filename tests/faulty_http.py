"""A local HTTP file server with deterministic fault injection, for testing reads of flaky sources.

`FaultyServer(root)` serves the files under `root` on 127.0.0.1 (an ephemeral port) with HTTP/1.1
keep-alive, HEAD and single `Range: bytes=a-b` requests (206 + Content-Range; multi-range requests get
416). Range GETs can be made to fail:

- `5xx`: a 500/502/503/504 answer with a short body;
- `timeout`: the server holds the request for `hang_s` seconds (longer than the client's timeout) and
  then drops the connection without answering;
- `truncated`: the headers promise the full range (Content-Length / Content-Range) but only a prefix
  of the bytes (0 to all but one, pseudo-random) is sent before the connection is closed.

Which requests fail is a pure function of (seed, request target, Range header, how many times that same
request was seen before), so runs are repeatable whatever the order in which client threads send them.
Each distinct request (target + range) fails at most `max_faults_per_request` times in all and is then
served cleanly, so faults are transient and a client retrying enough always gets through.
`set_down(prefixes)` makes every request under those path prefixes answer 503 (a source that stays
down) until cleared.

The server runs in a child process (`python faulty_http.py CONFIG`): GDAL calls that hold the GIL
while they wait on the network (e.g. sidecar probing) would stall an in-process server thread. The
parent talks to it over HTTP (`/__control__/...`); `stop()` kills and reaps it. Use as a context
manager.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

FAULT_KINDS = ("5xx", "timeout", "truncated")
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
_STATUSES = (500, 502, 503, 504)
_CONTROL = "/__control__/"


@dataclass(frozen=True)
class FaultRates:
    """Probability of each fault kind for one range GET (the rest are served cleanly)."""

    error_5xx: float = 0.30
    timeout: float = 0.05
    truncated: float = 0.10

    def __post_init__(self) -> None:
        if min(self.error_5xx, self.timeout, self.truncated) < 0 or self.total > 1:
            raise ValueError(f"fault rates must be >= 0 and sum to <= 1, got {self}")

    @property
    def total(self) -> float:
        return self.error_5xx + self.timeout + self.truncated


NO_FAULTS = FaultRates(0.0, 0.0, 0.0)


class FaultyServer:
    """Serve `root` on http://127.0.0.1:<port>/ from a child process, with deterministic faults."""

    def __init__(
        self,
        root: Path,
        rates: FaultRates = NO_FAULTS,
        *,
        seed: int = 0,
        hang_s: float = 3.0,
        max_faults_per_request: int = 2,
    ) -> None:
        self.config = {
            "root": str(Path(root).resolve()),
            "rates": asdict(rates),
            "seed": seed,
            "hang_s": hang_s,
            "max_faults_per_request": max_faults_per_request,
        }
        self._proc: subprocess.Popen[str] | None = None
        self._url: str | None = None
        self._final: Counter[str] | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("server not started")
        return self._url

    @property
    def counts(self) -> Counter[str]:
        """Requests seen ("requests", "down") and faults injected (per kind); kept after `stop()`."""
        if self._proc is None:
            return Counter(self._final or {})
        with urllib.request.urlopen(f"{self.url}{_CONTROL}counts", timeout=10) as r:
            return Counter({k: int(v) for k, v in json.loads(r.read()).items()})

    def faults(self) -> dict[str, int]:
        """Faults injected so far, per kind."""
        counts = self.counts
        return {k: counts[k] for k in FAULT_KINDS}

    def set_down(self, *prefixes: str) -> None:
        """Answer 503 to every request under these path prefixes (none: all sources up again)."""
        body = json.dumps(list(prefixes)).encode()
        req = urllib.request.Request(f"{self.url}{_CONTROL}down", data=body, method="PUT")
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()

    def start(self) -> FaultyServer:
        self._final = None
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), json.dumps(self.config)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"fault server did not start (said {line!r})")
        self._url = line
        return self

    def stop(self) -> None:
        """Keep the final counts, then kill the server process and reap it."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None and self._url is not None:
                self._final = self.counts
        finally:
            proc.kill()
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()
            self._proc = None
            self._url = None

    def __enter__(self) -> FaultyServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------------------


class _State:
    def __init__(self, config: dict[str, Any]) -> None:
        self.root = Path(config["root"])
        self.rates = FaultRates(**config["rates"])
        self.seed = int(config["seed"])
        self.hang_s = float(config["hang_s"])
        self.max_faults = int(config["max_faults_per_request"])
        self.down: tuple[str, ...] = ()
        self.counts: Counter[str] = Counter()
        self.seen: Counter[tuple[str, str]] = Counter()
        self.faulted: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()

    def count(self, kind: str) -> None:
        with self.lock:
            self.counts[kind] += 1

    def fault(self, target: str, range_header: str) -> tuple[str | None, int]:
        """(fault kind or None, pseudo-random int picking status / cut), from (seed, target, range, n)."""
        key = (target, range_header)
        with self.lock:
            n = self.seen[key]
            self.seen[key] += 1
            if self.faulted[key] >= self.max_faults:
                return None, 0
        digest = hashlib.sha256(f"{self.seed}|{target}|{range_header}|{n}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        r = self.rates
        kind: str | None = None
        if u < r.error_5xx:
            kind = "5xx"
        elif u < r.error_5xx + r.timeout:
            kind = "timeout"
        elif u < r.total:
            kind = "truncated"
        if kind:
            with self.lock:
                self.faulted[key] += 1
                self.counts[kind] += 1
        return kind, int.from_bytes(digest[8:16], "big")


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # the process is killed as a whole
    state: _State


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stalls
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        if self.path.startswith(_CONTROL):
            with self.server.state.lock:
                data = json.dumps(dict(self.server.state.counts)).encode()
            self._reply(200, data, "application/json")
            return
        self._serve(body=True)

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.state.down = tuple(json.loads(body))
        self._reply(204, b"", "text/plain")

    def _serve(self, body: bool) -> None:
        state = self.server.state
        rel = unquote(urlsplit(self.path).path).lstrip("/")
        state.count("requests")
        if any(rel.startswith(p) for p in state.down):
            state.count("down")
            self._reply(503, b"source down\n", "text/plain")
            return
        path = (state.root / rel).resolve()
        if state.root not in path.parents or not path.is_file():
            self._reply(404, b"not found\n", "text/plain")
            return
        size = path.stat().st_size
        header = self.headers.get("Range")
        if header is None:
            self._send(path, 0, size - 1, size, 200, body)
            return
        m = _RANGE.match(header.strip())
        if m is None or int(m.group(1)) >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = int(m.group(1))
        end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
        fault, pick = state.fault(self.path, header) if body else (None, 0)
        if fault == "5xx":
            self._reply(_STATUSES[pick % len(_STATUSES)], b"injected error\n", "text/plain")
        elif fault == "timeout":
            threading.Event().wait(state.hang_s)
            self.close_connection = True
        elif fault == "truncated":
            self._send(path, start, end, size, 206, body, keep=pick % (end - start + 1))
        else:
            self._send(path, start, end, size, 206, body)

    def _reply(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":  # a body after a HEAD answer would corrupt the keep-alive stream
            self.wfile.write(data)

    def _send(
        self, path: Path, start: int, end: int, size: int, status: int, body: bool, keep: int | None = None
    ) -> None:
        """Send bytes start..end; with `keep`, send only the first `keep` (< promised) and drop the line."""
        n = end - start + 1
        self.send_response(status)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Content-Length", str(n))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not body:
            return
        with path.open("rb") as fh:
            fh.seek(start)
            data = fh.read(n)
        if keep is None:
            self.wfile.write(data)
            return
        self.wfile.write(data[:keep])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


def _main(config_json: str) -> None:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.state = _State(json.loads(config_json))
    host, port = httpd.server_address[:2]
    print(f"http://{host!s}:{port}", flush=True)
    httpd.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    _main(sys.argv[1])
