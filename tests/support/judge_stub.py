"""A stub OpenAI-compatible judge server on 127.0.0.1 (stdlib http.server in a thread), for the `judge` reward's tests.

What it answers depends on a word in the graded text: GOOD -> "Score: 8", MALFORMED -> no score, RANGE -> "Score: 42",
SLOW -> waits `slow_s` first, FLAKY -> HTTP 500 for its first `flaky_failures` requests, then "Score: 10"; anything
else -> "Score: 5". With `gated`, every request waits until the test sets `gate`, so the requests a client keeps in
flight at once can be counted.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JudgeStub:
    def __init__(self, models=("judge-model",), slow_s: float = 3.0, flaky_failures: int = 2, gated: bool = False):
        self.models, self.slow_s, self.flaky_failures = list(models), slow_s, flaky_failures
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.flaky_seen = 0
        self.in_flight = self.max_in_flight = 0
        self.changed = threading.Condition()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in stub.models]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.changed:
                    stub.bodies.append(body)
                    stub.headers.append(dict(self.headers))
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                    stub.changed.notify_all()
                stub.gate.wait(timeout=10)
                try:
                    status, reply = stub.answer(body["messages"][-1]["content"])
                finally:
                    with stub.changed:  # before answering: the client may send its next request once it has the reply
                        stub.in_flight -= 1
                if status != 200:
                    self._send(status, {"error": "stub failure"})
                    return
                self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server.request_queue_size = 64  # the default backlog (5) refuses a burst of connections
        self.server.server_bind()
        self.server.server_activate()
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, text: str) -> tuple[int, str]:
        if "SLOW" in text:
            time.sleep(self.slow_s)
        if "FLAKY" in text:
            with self.changed:
                self.flaky_seen += 1
                if self.flaky_seen <= self.flaky_failures:
                    return 500, ""
            return 200, "Score: 10"
        if "MALFORMED" in text:
            return 200, "A fine answer, I would say."
        if "RANGE" in text:
            return 200, "Score: 42"
        if "GOOD" in text:
            return 200, "Correct and clear.\nScore: 8"
        return 200, "Score: 5"

    def __enter__(self) -> JudgeStub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
