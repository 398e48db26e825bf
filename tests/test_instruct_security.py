"""Self-instruct's HTTP client and `instruct serve` under hostile or broken peers: redirects never carry the API
key away, a server that never answers cannot hang a run (records kept), the server refuses oversized bodies and
max_tokens, warns when it listens beyond loopback; and a run shows progress and appends records as it goes."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from bad_inputs import Case, run_case

from workbench.errors import WorkbenchError
from workbench.instruct.backends import Completion, Decoding, HTTPBackend
from workbench.instruct.self_instruct import Generator, SelfInstructConfig, read_records

KEY = "sk-test-secret-key-123"
RECORD = json.dumps({"id": "machine_0", "instruction": "Describe a rainy day in the city.",
                     "instances": [{"input": "", "output": "Wet."}], "request_idx": 0})


# ---- helpers ---------------------------------------------------------------------------------------------------------

def _serve(handler_cls) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def _stop(server) -> None:
    server.shutdown()
    server.server_close()


class _Recorder(BaseHTTPRequestHandler):
    """The redirect target: records every request's headers, answers like an OpenAI server."""

    seen: ClassVar[list[dict]] = []

    def log_message(self, *args):
        pass

    def _answer(self):
        type(self).seen.append(dict(self.headers))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"data": [{"id": "m"}], "choices": [{"text": "stolen", "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer


def _redirector(target: str, code: int):
    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _go(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(code)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _go

    return Redirect


class _Silent:
    """A TCP server that accepts every connection and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self._stop = True
        self.sock.close()
        for c in self.held:
            c.close()


# ---- redirects never carry the API key -------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [301, 302, 307, 308])
@pytest.mark.parametrize("path", ["/models", "/completions"])
def test_redirect_to_another_host_never_receives_the_api_key(monkeypatch, code, path):
    _Recorder.seen = []
    target = _serve(_Recorder)
    # "localhost" vs 127.0.0.1: another host name, as a redirect to a foreign server would be.
    source = _serve(_redirector(f"http://localhost:{target.server_port}", code))
    monkeypatch.setenv("WB_TEST_KEY", KEY)
    try:
        base = f"http://127.0.0.1:{source.server_port}/v1"
        error = ""
        try:
            if path == "/models":
                HTTPBackend(base, api_key_env="WB_TEST_KEY", retries=0, timeout=5)
            else:
                backend = HTTPBackend(base, model="m", api_key_env="WB_TEST_KEY", retries=0, timeout=5)
                backend.complete(["hello"], Decoding(max_tokens=4))
        except WorkbenchError as e:
            error = str(e)
        assert not any("authorization" in {k.lower() for k in h} for h in _Recorder.seen), _Recorder.seen
        assert all(KEY not in json.dumps(h) for h in _Recorder.seen)
        assert "redirects" in error and f"127.0.0.1:{source.server_port}/v1{path}" in error, error
    finally:
        _stop(source)
        _stop(target)


def test_redirect_refused_from_the_command_line(tmp_path, monkeypatch, capsys):
    _Recorder.seen = []
    target = _serve(_Recorder)
    source = _serve(_redirector(f"http://localhost:{target.server_port}", 302))
    try:
        case = Case("si-redirect", ["instruct", "self-instruct", "--no-mlflow", "--no-progress",
                                    "--api-base", f"http://127.0.0.1:{source.server_port}/v1",
                                    "--api-key-env", "WB_TEST_KEY", "--out", "si.jsonl"],
                    ["redirects (HTTP 302)", "--api-base"], env={"WB_TEST_KEY": KEY})
        run_case(case, tmp_path, monkeypatch, capsys)
        assert all(KEY not in json.dumps(h) for h in _Recorder.seen)
        assert not (tmp_path / "si.jsonl").exists()
    finally:
        _stop(source)
        _stop(target)


# ---- a server that never answers -------------------------------------------------------------------------------------

def test_never_answering_server_ends_in_seconds_and_keeps_records(tmp_path, monkeypatch, capsys):
    silent = _Silent()
    try:
        url = f"http://127.0.0.1:{silent.port}/v1"
        case = Case("si-hang", ["instruct", "self-instruct", "--no-mlflow", "--no-progress", "--api-base", url,
                                "--model", "m", "--timeout", "0.5", "--retries", "1", "--resume", "--out", "si.jsonl"],
                    [f"{url}/completions", "no answer within 0.5 s (2 attempts)", "1 record(s) are kept",
                     "--resume"], files={"si.jsonl": RECORD + "\n"})
        start = time.monotonic()
        run_case(case, tmp_path, monkeypatch, capsys)
        assert time.monotonic() - start < 10
        assert (tmp_path / "si.jsonl").read_text() == RECORD + "\n"
    finally:
        silent.close()


def test_never_answering_server_probe_fails_before_generation(tmp_path, monkeypatch, capsys):
    silent = _Silent()
    try:
        url = f"http://127.0.0.1:{silent.port}/v1"
        case = Case("si-hang-probe", ["instruct", "self-instruct", "--no-mlflow", "--no-progress", "--api-base", url,
                                      "--timeout", "0.3", "--retries", "0", "--out", "si.jsonl"],
                    [f"{url}/models", "no answer within 0.3 s"])
        start = time.monotonic()
        run_case(case, tmp_path, monkeypatch, capsys)
        assert time.monotonic() - start < 5
        assert not (tmp_path / "si.jsonl").exists()
    finally:
        silent.close()


def test_a_trickling_server_cannot_stretch_one_attempt():
    """Bytes every 0.2 s never let a socket timeout fire; the attempt's own deadline still ends it."""
    class Trickle(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(100):
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.2)

    server = _serve(Trickle)
    try:
        start = time.monotonic()
        with pytest.raises(WorkbenchError, match="no answer within 1 s"):
            HTTPBackend(f"http://127.0.0.1:{server.server_port}/v1", timeout=1, retries=0)
        assert time.monotonic() - start < 4
    finally:
        _stop(server)


def test_first_failure_returns_without_waiting_for_requests_in_flight():
    class Mixed(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if body["prompt"] == "slow":
                time.sleep(20)  # never in time
                return
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = _serve(Mixed)
    try:
        backend = HTTPBackend(f"http://127.0.0.1:{server.server_port}/v1", model="m", timeout=30, retries=0,
                              concurrency=2)
        start = time.monotonic()
        with pytest.raises(WorkbenchError, match="HTTP 400"):
            backend.complete(["slow", "bad", "never asked", "never asked"], Decoding(max_tokens=4))
        assert time.monotonic() - start < 5
    finally:
        _stop(server)


# ---- instruct serve: limits and the warning --------------------------------------------------------------------------

class _StubBackend:
    name = "stub"

    def __init__(self):
        self.calls = []

    def complete(self, prompts, decoding):
        self.calls.append((prompts, decoding))
        return [Completion(f"echo {len(p)}", "stop") for p in prompts]


@pytest.fixture()
def stub_server():
    from workbench.instruct.server import make_server

    backend = _StubBackend()
    server = make_server(backend, "127.0.0.1", 0, max_body_bytes=2048, max_tokens=64)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server, backend
    server.shutdown()
    server.server_close()


def _post(port: int, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/v1/completions", body=body,
                     headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def test_serve_answers_a_normal_request(stub_server):
    server, _ = stub_server
    status, body = _post(server.server_port, json.dumps({"prompt": ["ab", "abc"], "max_tokens": 64}).encode())
    assert status == 200 and [c["text"] for c in body["choices"]] == ["echo 2", "echo 3"]


def test_serve_refuses_an_oversized_body_with_413_without_reading_it(stub_server):
    server, backend = stub_server
    big = json.dumps({"prompt": "x" * 5000, "max_tokens": 4}).encode()
    status, body = _post(server.server_port, big)
    assert status == 413 and "2048" in body["error"]["message"]
    # A huge declared length is refused at once: the server does not wait for (or read) a body.
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.0 413")
    assert backend.calls == []


@pytest.mark.parametrize("payload, message", [
    ({"prompt": "hi", "max_tokens": 65}, "above this server's limit of 64"),
    ({"prompt": "hi", "max_tokens": 0}, "max_tokens must be an integer >= 1"),
    ({"prompt": "hi", "max_tokens": "9"}, "max_tokens must be an integer"),
    ({"max_tokens": 4}, "missing field 'prompt'"),
    ({"prompt": "hi", "temperature": -1}, "temperature"),
    ({"prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}, "at most 4 stop strings"),
    ({"prompt": ["p"] * 65}, "at most 64 prompts"),
])
def test_serve_refuses_bad_requests_with_400(stub_server, payload, message):
    server, backend = stub_server
    status, body = _post(server.server_port, json.dumps(payload).encode())
    assert status == 400 and message in body["error"]["message"]
    assert backend.calls == []


def test_serve_refuses_a_bad_content_length(stub_server):
    server, _ = stub_server
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.0 400")
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.0 411")


def _run_serve(argv, monkeypatch, capsys):
    """`workbench instruct serve ...` with a stub model; serve_forever returns at once (as after Ctrl-C)."""
    from workbench.cli import main
    from workbench.instruct import backends, server

    monkeypatch.setattr(backends.LocalBackend, "load", classmethod(lambda cls, *a, **k: _StubBackend()))
    monkeypatch.setattr(backends, "resolve_local_model", lambda *a, **k: None)

    def stop(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(server.CompletionServer, "serve_forever", stop)
    code = main(["instruct", "serve", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_serve_on_all_interfaces_warns_once_that_there_is_no_authentication(monkeypatch, capsys):
    code, out, err = _run_serve(["--host", "0.0.0.0", "--port", "0"], monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 0 and len(lines) == 1, err
    assert lines[0].startswith("warning: --host 0.0.0.0") and "no authentication" in lines[0]
    assert "serving" in out


def test_serve_on_loopback_does_not_warn(monkeypatch, capsys):
    code, out, err = _run_serve(["--host", "127.0.0.1", "--port", "0"], monkeypatch, capsys)
    assert code == 0 and err.strip() == "" and "serving" in out


# ---- progress and records written as they come -----------------------------------------------------------------------

def _words(seed: int) -> str:
    """Made-up words no other seed shares: instructions that pass the ROUGE-L filter."""
    import hashlib

    return " ".join(hashlib.sha256(f"{seed}:{k}".encode()).hexdigest()[:8] for k in range(6))


class _ScriptedBackend:
    """Plays the model: numbered instructions, 'No' to classification, one output per instance prompt. With
    `fail_after`, the instance call after that many raises (as a server that goes away mid-run)."""

    name = "scripted"
    batch_size = 1

    def __init__(self, fail_after: int | None = None):
        self.fail_after = fail_after
        self.instance_calls = 0
        self.rounds = 0

    def complete(self, prompts, decoding: Decoding):
        out = []
        for p in prompts:
            if p.startswith("Come up with a series of tasks"):
                self.rounds += 1
                a, b = _words(6 * self.rounds), _words(6 * self.rounds + 3)
                out.append(Completion(f" Summarize {a}.\n10. Draw a picture of a cat\n11. Explain {b}.", "stop"))
            elif p.startswith("Can the following task"):
                out.append(Completion("No", "stop"))
            else:
                self.instance_calls += 1
                if self.fail_after is not None and self.instance_calls > self.fail_after:
                    raise WorkbenchError("http://example.invalid/v1/completions: no answer within 1 s (1 attempt)")
                out.append(Completion(f"Output: answer {self.instance_calls}", "stop"))
        return out


def test_progress_shows_candidates_and_rejections(tmp_path, capsys):
    cfg = SelfInstructConfig(out=str(tmp_path / "si.jsonl"), num=4, prompts_per_round=2, log_mlflow=False,
                             progress=True)
    Generator(cfg, _ScriptedBackend()).run()
    err = capsys.readouterr().err
    assert "candidates" in err and "blacklist=" in err and "instances" in err
    assert len(read_records(tmp_path / "si.jsonl")) == 4


def test_records_are_appended_as_they_come_and_kept_when_the_backend_fails(tmp_path):
    out = tmp_path / "si.jsonl"
    cfg = SelfInstructConfig(out=str(out), num=10, prompts_per_round=2, log_mlflow=False, progress=False)
    with pytest.raises(WorkbenchError, match=r"3 record\(s\) are kept in .*si\.jsonl \(continue with --resume\)"):
        Generator(cfg, _ScriptedBackend(fail_after=3)).run()
    recs = read_records(out)
    assert len(recs) == 3  # written one instance chunk at a time, before the round was over
    # ... and the run resumes from them.
    cfg.resume = True
    gen = Generator(cfg, _ScriptedBackend())
    assert len(gen.records) == 3 and gen.state.request_idx >= 1
    gen.run()
    texts = [r["instruction"] for r in read_records(out)]
    assert len(texts) == 10 and len(set(texts)) == 10
