"""Run ``lumi run`` as a real subprocess and talk to it, for integration tests.

Apps run with mTLS on (the default): :meth:`LumiRun.client` makes an HTTP client holding the
operator's certificate that ``lumi run`` issued, and :meth:`LumiRun.endpoint` gives the
``https://`` address to use it with (plain ``http://`` when the app turned mTLS off).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from lumi.transports.tls import Tls, TlsFiles


def wait(
    condition: Callable[[], object], *, timeout: float = 30.0, message: str = "condition"
) -> Any:
    """Poll until ``condition()`` is truthy and return it; fail naming it after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """True if ``pid`` is a live process (not a zombie)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return not any(line.startswith("State:\tZ") for line in status)
    except FileNotFoundError:
        return False


def copy_app(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".lumi", "__pycache__"))
    return target


class LumiRun:
    """``lumi run APP_DIR`` in a subprocess, with its output collected line by line."""

    def __init__(self, app_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.app_dir = app_dir
        self.lines: list[str] = []
        environ = {**os.environ, "NO_COLOR": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lumi.cli.main", "run", str(app_dir), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environ,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._http: httpx.Client | None = None
        self._clients: list[httpx.Client] = []
        self._tls: Tls | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_output(self, text: str, timeout: float = 30.0) -> None:
        wait(
            lambda: text in self.output, timeout=timeout, message=f"output {text!r}\n{self.output}"
        )

    def registry(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(
                (self.app_dir / ".lumi" / "registry.json").read_text()
            )
            return data
        except (FileNotFoundError, ValueError):
            return {}

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"lumi run exited with {self.proc.returncode}:\n{self.output}")
            services = self.registry().get("services", {})
            return (
                bool(services)
                and all(r["state"] == "ready" for s in services.values() for r in s["replicas"])
                and "is running" in self.output
            )

        wait(ready, timeout=timeout, message=f"the app to be ready\n{self.output}")
        return self.registry()

    @property
    def mtls(self) -> bool:
        return bool(self.registry().get("mtls"))

    def operator(self) -> Path:
        """The folder of the operator's certificate bundle."""
        return self.app_dir / ".lumi" / "ca" / "certs" / "operator"

    def operator_tls(self) -> Tls:
        """The operator's certificate, as lumi run keeps renewing it."""
        if self._tls is None:
            self._tls = Tls(TlsFiles.in_folder(self.operator()))
        return self._tls

    def operator_context(self) -> ssl.SSLContext:
        return self.operator_tls().client_context()

    def client(self, **kwargs: Any) -> httpx.Client:
        """An HTTP client that calls as the operator when the app speaks mTLS (closed with the
        run); each request's new connections present the operator's current certificate."""
        if not self.mtls:
            client = httpx.Client(**{"timeout": 30, **kwargs})
        else:
            # Its own certificate object: a reload replaces the context's certificate, which
            # is not safe while another thread's client handshakes with the same context.
            tls = Tls(TlsFiles.in_folder(self.operator()))
            client = httpx.Client(
                verify=tls.client_context(),
                event_hooks={"request": [lambda request: tls.reload() and None]},
                **{"timeout": 30, **kwargs},
            )
        self._clients.append(client)
        return client

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = self.client()
        return self._http

    def raw_endpoint(self, service: str, replica: int = 0) -> str:
        """The endpoint as the registry has it (``http://`` names the transport)."""
        return str(self.registry()["services"][service]["endpoints"][replica])

    def endpoint(self, service: str, replica: int = 0) -> str:
        """The address to call ``service`` at with :meth:`client` (``https://`` over mTLS)."""
        url = self.raw_endpoint(service, replica)
        return url.replace("http://", "https://", 1) if self.mtls else url

    def pids(self) -> list[int]:
        services = self.registry().get("services", {})
        return [r["pid"] for s in services.values() for r in s["replicas"] if r.get("pid")]

    def post(self, service: str, method: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
        headers = {"content-type": "application/json", **kwargs.pop("headers", {})}
        url = f"{self.endpoint(service)}/{service}/{method}"
        return self.http.post(url, content=content, headers=headers, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal lumi run (if it still runs), wait for it, release pipes; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self._close()
        return code

    def _close(self) -> None:
        for client in self._clients:
            client.close()
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()
