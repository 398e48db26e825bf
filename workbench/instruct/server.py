"""A minimal OpenAI-compatible completions server over a local backend (stdlib only).

`workbench instruct serve --model smollm2-135m --port 8000` exposes `GET /v1/models` and
`POST /v1/completions`, so anything that speaks that API (including `--api-base` here) can use a local model;
the HTTP backend's tests run against it on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from workbench.instruct.backends import Decoding, LocalBackend


def make_server(backend: LocalBackend, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    lock = threading.Lock()  # one generation at a time: the model is not thread-safe and the CPU is shared

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # keep the console for the caller's progress bar
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": backend.name, "object": "model"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            if self.path.rstrip("/") not in ("/v1/completions", "/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                prompts = req["prompt"] if isinstance(req["prompt"], list) else [req["prompt"]]
                stop = req.get("stop") or ()
                dec = Decoding(max_tokens=int(req.get("max_tokens", 16)), temperature=float(req.get("temperature", 1.0)),
                               top_p=float(req.get("top_p", 1.0)), stop=tuple([stop] if isinstance(stop, str) else stop),
                               seed=req.get("seed"))
            except (KeyError, ValueError, TypeError, json.JSONDecodeError) as e:
                self._send(400, {"error": {"message": f"bad request: {e}"}})
                return
            with lock:
                outs = backend.complete([str(p) for p in prompts], dec)
            self._send(200, {
                "id": f"cmpl-{time.time_ns()}", "object": "text_completion", "created": int(time.time()),
                "model": backend.name,
                "choices": [{"index": i, "text": o.text, "finish_reason": o.finish_reason, "logprobs": None}
                            for i, o in enumerate(outs)],
            })

    return ThreadingHTTPServer((host, port), Handler)
