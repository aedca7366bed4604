"""A stand-in for the ZeroGPU platform's device API, which `spaces` calls around every GPU call:
POST /startup-report at launch, /schedule before a call (its `durationSeconds` is what the call
asks for), /allow from the worker, /release when the call has ended.

Every request is recorded with the time it arrived (`calls`, and a JSON-lines log when given).
`idle=True` lets spaces reuse a warm worker process for the next call; otherwise each call gets a
newly forked one. `uuid` is what the worker puts in CUDA_VISIBLE_DEVICES: on a real GPU, its UUID
(or index).

    python -m tests.zerogpu.device_api PORT LOG [--idle] [--uuid GPU-...]
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class DeviceApi:
    def __init__(self, idle: bool = False, uuid: str = "GPU-none", log_path: str | None = None, port: int = 0):
        self.idle, self.uuid, self.log_path = idle, uuid, log_path
        self.calls: list[dict] = []
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
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

    def _record(self, path: str, params: dict) -> None:
        call = {"t": time.time(), "path": path, "params": params}
        with self._lock:
            self.calls.append(call)
            if self.log_path:
                with open(self.log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(call) + "\n")

    def of(self, path: str) -> list[dict]:
        with self._lock:
            return [c for c in self.calls if c["path"] == path]

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # the test reads `calls`, not stderr
                pass

            def _answer(self, status: int, body: bytes = b"", kind: str | None = None) -> None:
                self.send_response(status)
                if kind:
                    self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                url = urlparse(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                api._record(url.path, params)
                if url.path == "/schedule":
                    body = {"idle": api.idle, "nvidiaIndex": 0, "nvidiaUUID": api.uuid,
                            "allowToken": f"token-{next(api._tokens)}"}
                    self._answer(200, json.dumps(body).encode(), "application/json")
                elif url.path in ("/startup-report", "/allow", "/release"):
                    self._answer(200)
                else:
                    self._answer(404)

        return Handler


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("log")
    parser.add_argument("--idle", action="store_true")
    parser.add_argument("--uuid", default="GPU-none")
    a = parser.parse_args()
    DeviceApi(a.idle, a.uuid, a.log, a.port).start()._thread.join()
