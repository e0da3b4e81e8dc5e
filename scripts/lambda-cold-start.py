#!/usr/bin/env python3
"""Cold starts of Lambda function binaries against a local Lambda Runtime API.

For each binary, starts it N times as Lambda would (AWS_LAMBDA_RUNTIME_API pointing at this
script's emulator of the runtime API) and measures:
  * init: process start -> its first `GET /runtime/invocation/next` (Lambda's Init phase:
    configuration, adapters, clients built once per cold start);
  * first invoke: process start -> the response to the first event.
Prints the median of the runs. Usage:
  lambda-cold-start.py RUNS FUNCTION=BINARY=EVENT_FILE [...]
The function's configuration comes from this process's environment.
"""

import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid


class RuntimeApi(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, event: bytes):
        super().__init__(("127.0.0.1", 0), Handler)
        self.event = event
        self.first_next = threading.Event()
        self.responded = threading.Event()
        self.served = False
        self.t_next = None
        self.t_response = None
        self.response_body = b""


class Handler(http.server.BaseHTTPRequestHandler):
    server: RuntimeApi

    def log_message(self, *_):
        pass

    def do_GET(self):
        if not self.path.endswith("/runtime/invocation/next"):
            self.send_error(404)
            return
        if self.server.served:
            # One event per cold start: later polls wait until the process is stopped.
            time.sleep(60)
            return
        self.server.served = True
        self.server.t_next = time.perf_counter()
        self.server.first_next.set()
        request_id = str(uuid.uuid4())
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30_000))
        self.send_header(
            "Lambda-Runtime-Invoked-Function-Arn",
            "arn:aws:lambda:eu-west-1:123456789012:function:bench",
        )
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
        self.send_header("Content-Length", str(len(self.server.event)))
        self.end_headers()
        self.wfile.write(self.server.event)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        if "/response" in self.path or "/error" in self.path:
            self.server.t_response = time.perf_counter()
            self.server.response_body = body if "/response" in self.path else b"error: " + body
            self.server.responded.set()


def cold_start(binary: str, function: str, event: bytes):
    api = RuntimeApi(event)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    env = dict(os.environ)
    env.update(
        AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{api.server_address[1]}",
        AWS_LAMBDA_FUNCTION_NAME=function,
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128",
        AWS_LAMBDA_LOG_GROUP_NAME=f"/aws/lambda/{function}",
        AWS_LAMBDA_LOG_STREAM_NAME="bench",
        _HANDLER="bootstrap",
    )
    t0 = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not api.first_next.wait(30):
            raise RuntimeError(f"{function}: no call to /next within 30 s: {proc.stderr.read1(4000)!r}")
        if not api.responded.wait(30):
            raise RuntimeError(f"{function}: no response within 30 s")
    finally:
        proc.kill()
        proc.wait()
        api.shutdown()
        api.server_close()
    if api.response_body.startswith(b"error: "):
        raise RuntimeError(f"{function}: the invocation failed: {api.response_body[:300]!r}")
    return (api.t_next - t0) * 1000, (api.t_response - t0) * 1000


def main():
    runs = int(sys.argv[1])
    print(f"{'function':<16} {'init ms (median)':>17} {'first invoke ms':>16}   ({runs} cold starts each)")
    for spec in sys.argv[2:]:
        function, binary, event_file = spec.split("=", 2)
        with open(event_file, "rb") as f:
            event = f.read()
        inits, firsts = zip(*(cold_start(binary, function, event) for _ in range(runs)))
        print(f"{function:<16} {statistics.median(inits):>17.1f} {statistics.median(firsts):>16.1f}")


if __name__ == "__main__":
    main()
