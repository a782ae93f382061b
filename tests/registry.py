"""A real OCI registry for tests: Debian's ``docker-registry`` (CNCF distribution) on a free
loopback port, with htpasswd basic auth (bcrypt, written by apache2-utils' ``htpasswd``).

``scripts/test-deps`` installs both; a missing binary fails the test that needs it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.servers import free_port

REGISTRY_BIN = "/usr/bin/docker-registry"
USER, PASSWORD = "lumi", "s3cret-test-password"


class Registry:
    """A running registry: ``url`` (http://127.0.0.1:P), ``host``, ``root`` (its storage)."""

    def __init__(self) -> None:
        for tool in (REGISTRY_BIN, "htpasswd"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is missing: run scripts/test-deps")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.dir = Path(tempfile.mkdtemp(prefix="lumi-registry-"))
        self.root = self.dir / "storage"
        htpasswd = self.dir / "htpasswd"
        line = subprocess.run(
            ["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True, text=True
        ).stdout
        htpasswd.write_text(line)
        config = self.dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: error, accesslog: {disabled: true}}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.root}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: '{self.host}', secret: lumi-test-secret}}\n"
            f"auth: {{htpasswd: {{realm: lumi-test, path: {htpasswd}}}}}\n"
        )
        self.log = open(self.dir / "registry.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config)], stdout=self.log, stderr=subprocess.STDOUT
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.read_log()}")
            try:
                urllib.request.urlopen(f"{self.url}/v2/", timeout=1)
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # up, and asking for credentials
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"docker-registry not ready after {timeout}s: {self.read_log()}")

    def read_log(self) -> str:
        return (self.dir / "registry.log").read_text(errors="replace")[-2000:]

    def blob_path(self, digest: str) -> Path:
        """Where distribution's filesystem driver keeps a blob's bytes."""
        hexdigest = digest.removeprefix("sha256:")
        return self.root / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
