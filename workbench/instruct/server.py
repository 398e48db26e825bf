"""A minimal OpenAI-compatible completions server over a local backend (stdlib only).

`workbench instruct serve --model smollm2-135m --port 8000` exposes `GET /v1/models` and
`POST /v1/completions`, so anything that speaks that API (including `--api-base` here) can use a local model;
the HTTP backend's tests run against it on 127.0.0.1.

It has no authentication: bind it to a loopback address (the default), or put it behind a proxy that checks
keys. Requests are bounded: a body over `max_body_bytes` is refused with 413 (unread), `max_tokens` over
`max_tokens` (or a malformed request) with 400, more than `MAX_PROMPTS` prompts in one request with 400, and a
client that sends nothing for `CLIENT_TIMEOUT` seconds is dropped.
"""

from __future__ import annotations

import ipaddress
import json
import math
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from workbench.instruct.backends import Decoding, LocalBackend

DEFAULT_MAX_BODY_BYTES = 1_048_576  # 1 MiB: far above any completion prompt we send
DEFAULT_MAX_TOKENS = 1024  # the largest max_tokens a request may ask for (the reference's own maximum)
MAX_PROMPTS = 64  # prompts in one request
MAX_STOP = 4  # stop strings, as the OpenAI API
CLIENT_TIMEOUT = 60.0  # seconds a connection may stay silent


class BadRequest(ValueError):
    pass


def _number(req: dict, key: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
    value = req.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"{key} must be a number")
    if value > hi or (value <= lo if lo_open else value < lo):
        raise BadRequest(f"{key} must be {'>' if lo_open else '>='} {lo:g} and <= {hi:g}, got {value!r}")
    return float(value)


def parse_request(req, max_tokens_cap: int) -> tuple[list[str], Decoding]:
    """The prompts and decoding of a completions request, or BadRequest naming the field."""
    if not isinstance(req, dict):
        raise BadRequest("the body must be a JSON object")
    if "prompt" not in req:
        raise BadRequest("missing field 'prompt'")
    prompt = req["prompt"]
    prompts = prompt if isinstance(prompt, list) else [prompt]
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise BadRequest("prompt must be a string or a non-empty list of strings")
    if len(prompts) > MAX_PROMPTS:
        raise BadRequest(f"at most {MAX_PROMPTS} prompts per request, got {len(prompts)}")
    max_tokens = req.get("max_tokens", 16)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadRequest(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
    if max_tokens > max_tokens_cap:
        raise BadRequest(f"max_tokens {max_tokens} is above this server's limit of {max_tokens_cap} "
                         f"(workbench instruct serve --max-tokens)")
    stop = req.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else stop
    if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) and s for s in stop):
        raise BadRequest("stop must be a string or a list of non-empty strings")
    if len(stop) > MAX_STOP:
        raise BadRequest(f"at most {MAX_STOP} stop strings")
    seed = req.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63):
        raise BadRequest("seed must be an integer >= 0")
    dec = Decoding(max_tokens=max_tokens, temperature=_number(req, "temperature", 1.0, 0, 2),
                   top_p=_number(req, "top_p", 1.0, 0, 1, lo_open=True), stop=tuple(stop), seed=seed)
    return prompts, dec


class CompletionServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, backend, max_body_bytes: int, max_tokens: int):
        host = address[0]
        if ":" in host:  # an IPv6 literal such as ::1
            self.address_family = socket.AF_INET6
        self.backend = backend
        self.max_body_bytes = max_body_bytes
        self.max_tokens = max_tokens
        self.lock = threading.Lock()  # one generation at a time: the model is not thread-safe, the CPU shared
        super().__init__(address, handler)

    def server_bind(self):
        # HTTPServer.server_bind looks the host up in DNS (getfqdn), which can stall where there is no resolver.
        import socketserver

        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    @property
    def is_loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.server_address[0]).is_loopback
        except ValueError:
            return False


class Handler(BaseHTTPRequestHandler):
    server: CompletionServer
    timeout = CLIENT_TIMEOUT  # a silent client is dropped instead of holding a thread forever
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):  # keep the console for the caller's progress bar
        pass

    def _send(self, code: int, body: dict, close: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, message: str, kind: str = "invalid_request_error", close: bool = False) -> None:
        self._send(code, {"error": {"message": message, "type": kind, "code": code}}, close=close)

    def do_GET(self):
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            backend = self.server.backend
            self._send(200, {"object": "list", "data": [{"id": backend.name, "object": "model"}]})
        else:
            self._error(404, f"no route {self.path}")

    def _body(self) -> bytes | None:
        """The request body within the size cap; None when an error was sent."""
        if self.headers.get("Transfer-Encoding"):
            self._error(411, "send the body with a Content-Length (chunked transfer is not supported)", close=True)
            return None
        length = self.headers.get("Content-Length")
        if length is None:
            self._error(411, "a Content-Length header is required", close=True)
            return None
        try:
            size = int(length)
            if size < 0:
                raise ValueError
        except ValueError:
            self._error(400, f"bad Content-Length {length!r}", close=True)
            return None
        cap = self.server.max_body_bytes
        if size > cap:
            # Refused unread; the connection is closed, so the unread body cannot be taken for a next request.
            self._error(413, f"request body of {size} bytes is over this server's limit of {cap} bytes "
                             f"(workbench instruct serve --max-body-bytes)", close=True)
            return None
        data = self.rfile.read(size)
        if len(data) < size:
            self.close_connection = True
            return None
        return data

    def do_POST(self):
        if self.path.rstrip("/") not in ("/v1/completions", "/completions"):
            self._error(404, f"no route {self.path}", close=True)
            return
        data = self._body()
        if data is None:
            return
        try:
            req = json.loads(data or b"{}")
            prompts, dec = parse_request(req, self.server.max_tokens)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            self._error(400, f"bad request: the body is not JSON ({e})")
            return
        except BadRequest as e:
            self._error(400, f"bad request: {e}")
            return
        backend = self.server.backend
        try:
            with self.server.lock:
                outs = backend.complete(prompts, dec)
        except Exception as e:  # noqa: BLE001 - one failed generation must not take the server down
            print(f"error: generation failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                  file=sys.stderr, flush=True)
            self._error(500, f"generation failed: {type(e).__name__}", kind="server_error")
            return
        self._send(200, {
            "id": f"cmpl-{time.time_ns()}", "object": "text_completion", "created": int(time.time()),
            "model": backend.name,
            "choices": [{"index": i, "text": o.text, "finish_reason": o.finish_reason, "logprobs": None}
                        for i, o in enumerate(outs)],
        })


def make_server(backend: LocalBackend | None, host: str = "127.0.0.1", port: int = 8000,
                max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_tokens: int = DEFAULT_MAX_TOKENS) -> CompletionServer:
    """Bind the server (port 0 picks a free one). `backend` may be set later (`server.backend = ...`), so the
    address can be checked before a model loads."""
    return CompletionServer((host, port), Handler, backend, max_body_bytes, max_tokens)
