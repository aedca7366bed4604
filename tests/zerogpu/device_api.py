"""A stand-in for the ZeroGPU platform's device API, which `spaces` calls around every GPU call:
POST /startup-report at launch, /schedule before a call (its `durationSeconds` is what the call
asks for), /allow from the worker, /release when the call has ended.

Every request is recorded with the time it arrived (`calls`, and a JSON-lines log when given).
`idle=True` lets spaces reuse a warm worker process for the next call; otherwise each call gets a
newly forked one. `uuid` is what the worker puts in CUDA_VISIBLE_DEVICES: on a real GPU, its UUID
(or index).

The platform's refusals, as the hub docs (August 2026) describe them (spaces 0.51.3 turns each
into its own error for the visitor; docs/zerogpu.md, "Today's platform"):
- `quota=S`: the visitor has S seconds of GPU; each call is charged its real time (/allow to
  /release); a /schedule asking more than is left gets HTTP 429 with {left, wait}.
- `auth`: the X-Authenticated header ("regular", "pro", or None for a visitor not logged in).
- `queue_fail={N, ...}`: the N-th /schedule (1-based) answers a queue stream whose only event is
  "failed" ("No GPU was available after 60s").
- `kill_overrun=G`: a worker still holding its GPU G s past the duration it asked for is SIGKILLed.

    python -m tests.zerogpu.device_api PORT LOG [--idle] [--uuid GPU-...]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class DeviceApi:
    def __init__(self, idle: bool = False, uuid: str = "GPU-none", log_path: str | None = None, port: int = 0,
                 quota: float | None = None, auth: str | None = "regular", queue_fail: set[int] = frozenset(),
                 kill_overrun: float | None = None):
        self.idle, self.uuid, self.log_path = idle, uuid, log_path
        self.left, self.auth, self.queue_fail, self.kill_overrun = quota, auth, set(queue_fail), kill_overrun
        self.calls: list[dict] = []
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._schedules = itertools.count(1)
        self._live: dict[str, dict] = {}  # allowToken -> asked, allowed_at, pid
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="device-api", daemon=True)

    def start(self) -> "DeviceApi":
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, path: str, params: dict, **facts) -> None:
        call = {"t": time.time(), "path": path, "params": params, **facts}
        with self._lock:
            self.calls.append(call)
            if self.log_path:
                with open(self.log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(call) + "\n")

    def _kill_at(self, token: str, pid: int, deadline: float) -> None:
        """As the platform does: the worker still holding the GPU past its duration is killed."""
        time.sleep(max(0.0, deadline - time.time()))
        with self._lock:
            still = token in self._live
        if still:
            try:
                os.kill(pid, signal.SIGKILL)
                self._record("KILL", {"allowToken": token, "pid": pid})
            except ProcessLookupError:
                pass

    def kill_running(self) -> list[int]:
        """SIGKILL the worker of every call holding a GPU now (as the platform ends a call at its
        duration, at a moment a test chooses); return their pids."""
        with self._lock:
            live = [(token, call["pid"]) for token, call in self._live.items() if call.get("pid")]
        for token, pid in live:
            try:
                os.kill(pid, signal.SIGKILL)
                self._record("KILL", {"allowToken": token, "pid": pid})
            except ProcessLookupError:
                pass
        return [pid for _, pid in live]

    def of(self, path: str) -> list[dict]:
        with self._lock:
            return [c for c in self.calls if c["path"] == path]

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # as the platform: spaces reads the queue's event stream over it
            def log_message(self, *args):  # the test reads `calls`, not stderr
                pass

            def _answer(self, status: int, body: bytes = b"", kind: str | None = None,
                        headers: dict | None = None) -> None:
                self.send_response(status)
                if kind:
                    self.send_header("content-type", kind)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                url = urlparse(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                headers = {"X-Authenticated": api.auth} if api.auth else {}
                if url.path == "/schedule":
                    self._schedule(params, headers)
                elif url.path == "/allow":
                    self._allow(params)
                elif url.path == "/release":
                    with api._lock:
                        call = api._live.pop(params.get("allowToken"), None)
                        used = time.time() - call.get("allowed_at", call["t"]) if call else None
                        if used is not None and api.left is not None:
                            api.left = max(0.0, api.left - used)
                    api._record(url.path, params, used=used, left=api.left)
                    self._answer(200)
                elif url.path == "/startup-report":
                    api._record(url.path, params)
                    self._answer(200)
                else:
                    self._answer(404)

            def _schedule(self, params: dict, headers: dict) -> None:
                n = next(api._schedules)
                asked = float(params.get("durationSeconds", 60))
                if n in api.queue_fail:
                    api._record("/schedule", params, status="queue-failed")
                    self._answer(200, b"event: failed\n\n", "text/event-stream", headers)
                    return
                if api.left is not None and asked > api.left:
                    api._record("/schedule", params, status=429, left=api.left)
                    body = json.dumps({"left": int(api.left), "wait": 3600}).encode()
                    self._answer(429, body, "application/json", {**headers, "X-Approve-Result": "quota-exceeded"})
                    return
                token = f"token-{next(api._tokens)}"
                with api._lock:
                    api._live[token] = {"asked": asked, "t": time.time()}
                api._record("/schedule", params, status=200, left=api.left)
                body = {"idle": api.idle, "nvidiaIndex": 0, "nvidiaUUID": api.uuid, "allowToken": token}
                self._answer(200, json.dumps(body).encode(), "application/json", headers)

            def _allow(self, params: dict) -> None:
                token, pid = params.get("allowToken"), int(params.get("pid", 0))
                with api._lock:
                    call = api._live.get(token)
                    if call is not None:
                        call["allowed_at"], call["pid"] = time.time(), pid
                api._record("/allow", params)
                if call is not None and api.kill_overrun is not None and pid:
                    deadline = time.time() + call["asked"] + api.kill_overrun
                    threading.Thread(target=api._kill_at, args=(token, pid, deadline), daemon=True).start()
                self._answer(200)

        return Handler


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("log")
    parser.add_argument("--idle", action="store_true")
    parser.add_argument("--uuid", default="GPU-none")
    a = parser.parse_args()
    DeviceApi(a.idle, a.uuid, a.log, a.port).start()._thread.join()
