"""A Lambda Runtime API server for tests, and the official runtime client running a zip.

No Lambda emulator runs here, but the Runtime API is a small documented HTTP protocol
(https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html): the runtime client polls
``GET /2018-06-01/runtime/invocation/next`` for an event and posts the answer to
``.../invocation/<id>/response`` or ``.../error``. :class:`RuntimeApi` serves it on a loopback
port; :class:`LambdaFunction` unpacks a zip from ``lumi build lambda`` and runs it under
``python -m awslambdaric`` (the client AWS's own Python runtimes use), with only the zip on
its import path.
"""

from __future__ import annotations

import http.server
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

PREFIX = "/2018-06-01/runtime"


class Invocation:
    def __init__(self, event: Any) -> None:
        self.id = str(uuid.uuid4())
        self.event = event
        self.done = threading.Event()
        self.outcome = ""  # "response" | "error"
        self.body: Any = None


class RuntimeApi:
    """The Runtime API on 127.0.0.1:<free port>; :meth:`invoke` runs one event through it."""

    def __init__(self) -> None:
        self.pending: queue.Queue[Invocation] = queue.Queue()
        self.invocations: dict[str, Invocation] = {}
        self.init_errors: list[Any] = []
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self.send_error(404)
                    return
                invocation = api.pending.get()
                body = json.dumps(invocation.event).encode()
                self.send_response(200)
                # awslambdaric needs a Content-Type on /next, or it fails.
                self.send_header("Content-Type", "application/json")
                self.send_header("Lambda-Runtime-Aws-Request-Id", invocation.id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
                self.send_header(
                    "Lambda-Runtime-Invoked-Function-Arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:lumi-test",
                )
                self.send_header(
                    "Lambda-Runtime-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793"
                )
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = self.path.removeprefix(PREFIX).strip("/").split("/")
                if parts == ["init", "error"]:
                    api.init_errors.append(json.loads(raw or b"null"))
                elif (
                    len(parts) == 3
                    and parts[0] == "invocation"
                    and parts[2] in ("response", "error")
                ):
                    invocation = api.invocations[parts[1]]
                    invocation.outcome = parts[2]
                    invocation.body = json.loads(raw) if raw else None
                    invocation.done.set()
                else:
                    self.send_error(404)
                    return
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def invoke(self, event: Any, timeout: float = 60.0) -> tuple[str, Any]:
        """Queue ``event``; ``("response" | "error", body)`` once the function answered."""
        invocation = Invocation(event)
        self.invocations[invocation.id] = invocation
        self.pending.put(invocation)
        if not invocation.done.wait(timeout):
            raise AssertionError(f"no answer to the invocation after {timeout}s")
        return invocation.outcome, invocation.body

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LambdaFunction:
    """A zip from ``lumi build lambda`` running under awslambdaric against ``api``."""

    def __init__(
        self, zip_path: Path, folder: Path, api: RuntimeApi, env: dict[str, str] | None = None
    ) -> None:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(folder)
        self.folder = folder
        self.api = api
        self.log = folder.parent / f"{folder.name}.log"
        environ = {
            "PATH": os.environ["PATH"],
            "HOME": str(folder.parent),
            "PYTHONPATH": str(folder),  # the zip only: its own Lumi and dependencies
            "LAMBDA_TASK_ROOT": str(folder),
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_LAMBDA_FUNCTION_NAME": "lumi-test",
            "AWS_REGION": "us-east-1",
            "LUMI_STATE_DIR": str(folder.parent / f"{folder.name}-state"),
            **(env or {}),
        }
        self._log = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", "lumi_lambda.handler"],
            cwd=folder,
            env=environ,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def invoke(self, event: Any) -> tuple[str, Any]:
        if self.proc.poll() is not None:
            raise AssertionError(f"the runtime client exited:\n{self.output()}")
        return self.api.invoke(event)

    def output(self) -> str:
        self._log.flush()
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()
        self._log.close()
